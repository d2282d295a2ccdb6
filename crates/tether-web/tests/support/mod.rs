//! Helpers of the wasm tests: the harness (scripts/wasm-harness.mjs, a proxy in front of
//! the reference server that makes faults on command), waits with deadlines, configs.
//!
//! The harness's address comes in at compile time, `TETHER_HARNESS=127.0.0.1:PORT`, set
//! by scripts/test-wasm.sh: a browser test has no environment to read at run time.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;

use js_sys::Promise;
use tether_core::{BackoffConfig, Config, ConfigBuilder, Duration, Event, Jitter};
use tether_web::Events;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen(inline_js = r#"
export function post(url, body) {
  return fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
    .then((r) => r.text());
}
export class Sleep {
  constructor(ms) { this.promise = new Promise((r) => { this.handle = setTimeout(r, ms); }); }
  cancel() { clearTimeout(this.handle); }
}
export function random() { return Math.random(); }
// A fetch whose every answer is 200 with a body of `chunks` × 64 KiB zeros, no
// Content-Length (a body "that never ends", bounded here); counts the chunks pulled.
export function endlessFetch(chunks) {
  const f = async () => {
    let sent = 0;
    const body = new ReadableStream({
      pull(c) {
        if (sent >= chunks) { c.close(); return; }
        sent += 1;
        f.pulled += 1;
        c.enqueue(new Uint8Array(64 * 1024));
      },
    });
    return new Response(body, { status: 200 });
  };
  f.pulled = 0;
  return f;
}
export function dispatch(type) {
  const target = type === 'visibilitychange' || type === 'freeze' || type === 'resume'
    ? globalThis.document : globalThis.window;
  if (!target) return false;
  target.dispatchEvent(new Event(type));
  return true;
}
"#)]
extern "C" {
    fn post(url: &str, body: &str) -> Promise;
    /// A fetch answering 200 with `chunks` × 64 KiB and no Content-Length.
    #[wasm_bindgen(js_name = endlessFetch)]
    pub fn endless_fetch(chunks: u32) -> JsValue;
    type Sleep;
    #[wasm_bindgen(constructor)]
    fn new(ms: u32) -> Sleep;
    #[wasm_bindgen(method, getter)]
    fn promise(this: &Sleep) -> Promise;
    #[wasm_bindgen(method)]
    fn cancel(this: &Sleep);
    fn random() -> f64;
    /// Dispatches a page event on `window` (or `document`); false outside a page.
    pub fn dispatch(event: &str) -> bool;
}

/// The harness's address.
pub fn harness() -> &'static str {
    match option_env!("TETHER_HARNESS") {
        Some(address) => address,
        None => panic!("TETHER_HARNESS is unset: run the wasm tests through scripts/test-wasm.sh"),
    }
}

/// A tag of this test's own, so that its faults touch only its connections.
pub fn tag(name: &str) -> String {
    format!("{name}-{}", (random() * 1e9) as u64)
}

/// `ws://harness/t/<tag><path>`.
pub fn ws_url(tag: &str, path: &str) -> String {
    format!("ws://{}/t/{tag}{path}", harness())
}

/// `http://harness/t/<tag><path>`.
pub fn http_url(tag: &str, path: &str) -> String {
    format!("http://{}/t/{tag}{path}", harness())
}

/// POSTs `body` (JSON) to `url` and returns the answer's text.
pub async fn post_json(url: &str, body: &str) -> String {
    let text = JsFuture::from(post(url, body))
        .await
        .unwrap_or_else(|e| panic!("POST {url} failed: {e:?}"));
    text.as_string().unwrap_or_default()
}

/// Tells the harness to make a fault for `tag`: drop, block, unblock, stall, restart.
pub async fn fault(command: &str, tag: &str) {
    post_json(
        &format!("http://{}/__harness/{command}?tag={tag}", harness()),
        "",
    )
    .await;
}

/// Waits `ms` (for pacing a test's own sends, never for an outcome).
pub async fn pause(ms: u32) {
    let sleep = Sleep::new(ms);
    let _ = JsFuture::from(sleep.promise()).await;
}

/// `future`'s output, or a panic naming `what` after `ms`.
pub async fn within<F: Future>(ms: u32, what: &str, future: F) -> F::Output {
    let sleep = Sleep::new(ms);
    let mut timer = JsFuture::from(sleep.promise());
    let mut future = pin!(future);
    let out = poll_fn(|cx| {
        if let Poll::Ready(v) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if std::pin::Pin::new(&mut timer).poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await;
    sleep.cancel();
    out.unwrap_or_else(|| panic!("timed out after {ms} ms waiting for {what}"))
}

/// The first event matching `matches`, within `ms`.
pub async fn until(
    events: &mut Events,
    ms: u32,
    what: &str,
    mut matches: impl FnMut(&Event) -> bool,
) -> Event {
    within(ms, what, async {
        loop {
            match events.recv().await {
                Some(event) if matches(&event) => return event,
                Some(_) => {}
                None => panic!("the client went away while waiting for {what}"),
            }
        }
    })
    .await
}

/// A config for the harness: quick retries without jitter, so tests take little time.
pub fn config(url: &str) -> ConfigBuilder {
    Config::builder(url)
        .backoff(BackoffConfig {
            initial_delay: Duration::from_millis(50),
            factor: 1.5,
            max_delay: Duration::from_millis(300),
            jitter: Jitter::None,
            max_attempts: None,
        })
        .connect_timeout(Duration::from_secs(3))
}
