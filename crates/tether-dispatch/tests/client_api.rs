//! The native and the web clients offer the same methods, but for the few each platform
//! has alone: this test lists every public method of each from their sources, so that
//! neither can grow one the other lacks without saying why here.

use std::collections::BTreeSet;
use std::path::Path;

/// `(type, method)` for every `pub fn` in an inherent `impl` block of `types` in `source`.
fn public_methods(source: &str, types: &[&str]) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    let mut current: Option<String> = None;
    for line in source.lines() {
        if let Some(header) = line.strip_prefix("impl") {
            current = implemented_type(header).filter(|t| types.contains(&t.as_str()));
            continue;
        }
        if line.starts_with('}') {
            current = None;
            continue;
        }
        let Some(ty) = &current else { continue };
        let rest = line.trim_start();
        let rest = rest
            .strip_prefix("pub async fn ")
            .or_else(|| rest.strip_prefix("pub fn "));
        // Only methods at the block's own indentation: not helpers inside a body.
        if let (Some(rest), true) = (rest, line.starts_with("    pub")) {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.insert((ty.clone(), name));
        }
    }
    found
}

/// The type of an inherent impl header (`<T> Client<T>`, ` Events {`); `None` for a
/// trait impl (`… for …`), whose methods the trait fixes.
fn implemented_type(header: &str) -> Option<String> {
    if header.contains(" for ") {
        return None;
    }
    let mut rest = header.trim_start();
    if rest.starts_with('<') {
        let mut depth = 0;
        let end = rest.char_indices().find_map(|(i, c)| {
            match c {
                '<' => depth += 1,
                '>' => depth -= 1,
                _ => {}
            }
            (depth == 0).then_some(i)
        })?;
        rest = rest[end + 1..].trim_start();
    }
    let name: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

fn read(path: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn set(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items
        .iter()
        .map(|(t, m)| ((*t).to_owned(), (*m).to_owned()))
        .collect()
}

const TYPES: &[&str] = &["Client", "ClientBuilder", "Events"];

#[test]
fn both_clients_offer_the_same_methods() {
    let native = public_methods(
        &(read("tether-native/src/client.rs") + &read("tether-native/src/events.rs")),
        TYPES,
    );
    let web = public_methods(&read("tether-web/src/client.rs"), TYPES);

    // What only one platform can offer, and why.
    let native_only = set(&[
        // A tokio watch of the state; the web client's counterpart is `on_event`.
        ("Client", "state_watch"),
        // Readers that fall behind have their status events coalesced, bounded by this.
        ("ClientBuilder", "event_buffer"),
    ]);
    let web_only = set(&[
        // Synchronous JavaScript-style listeners, called as events happen.
        ("Client", "on_event"),
        // The page's online, visibility and freeze events.
        ("ClientBuilder", "page_hints"),
    ]);

    let shared = set(&[
        ("Client", "builder"),
        ("Client", "connect"),
        ("Client", "send"),
        ("Client", "send_wait"),
        ("Client", "send_confirmed"),
        ("Client", "flush"),
        ("Client", "events"),
        ("Client", "state"),
        ("Client", "quality"),
        ("Client", "metrics"),
        ("Client", "client_id"),
        ("Client", "reconnect"),
        ("Client", "hint"),
        ("Client", "close"),
        ("Client", "close_now"),
        ("Client", "handoff"),
        ("ClientBuilder", "resume"),
        ("ClientBuilder", "token_provider"),
        ("ClientBuilder", "transport"),
        ("ClientBuilder", "spawn"),
        ("Events", "recv"),
        ("Events", "try_recv"),
        ("Events", "missed"),
    ]);
    let want_native: BTreeSet<_> = shared.union(&native_only).cloned().collect();
    let want_web: BTreeSet<_> = shared.union(&web_only).cloned().collect();
    assert_eq!(
        native.difference(&want_native).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "tether-native has public methods the web client lacks: add them there, or list them here with the reason"
    );
    assert_eq!(
        want_native.difference(&native).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "tether-native lacks these methods"
    );
    assert_eq!(
        web.difference(&want_web).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "tether-web has public methods the native client lacks: add them there, or list them here with the reason"
    );
    assert_eq!(
        want_web.difference(&web).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "tether-web lacks these methods"
    );
}

#[test]
fn the_parser_sees_inherent_methods_only() {
    let source = "\
impl<T> Client<T>
where
    T: Send,
{
    pub fn send(&self) {}
    pub async fn close(&self) {}
    fn private(&self) {}
}

impl Drop for Client {
    fn drop(&mut self) {}
}

impl Other {
    pub fn elsewhere(&self) {}
}
";
    assert_eq!(
        public_methods(source, TYPES),
        set(&[("Client", "send"), ("Client", "close")])
    );
}
