//! The quality property (`tether_sim::quality`): the reported level follows the injected
//! latency and loss within a bounded number of samples, in both directions, on a
//! WebSocket and on polling; and the recovery times BENCHMARKS.md records.

use tether_core::{Duration, Quality};
use tether_sim::quality::{follow, recovery, recovery_after_half_open, Path};

fn seeds() -> u64 {
    std::env::var("TETHER_SIM_QUALITY_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
}

#[test]
fn quality_follows_the_network_on_a_websocket() {
    for seed in 0..seeds() {
        if let Err(v) = follow(Path::WebSocket, seed) {
            panic!("seed {seed}: {v}");
        }
    }
}

#[test]
fn quality_follows_the_network_on_polling() {
    for seed in 0..seeds() {
        if let Err(v) = follow(Path::Polling, seed) {
            panic!("seed {seed}: {v}");
        }
    }
}

/// Seconds, for the message.
fn s(d: Option<Duration>) -> String {
    d.map_or("never".into(), |d| format!("{:.1} s", d.as_secs_f64()))
}

#[test]
fn recovery_times() {
    let ms = Duration::from_millis;
    let limit = Duration::from_secs(20);
    let half_open = recovery_after_half_open().expect("run");
    // 300 ms of round trip: 150 ms each way.
    let removed = recovery(Path::WebSocket, ms(150), ms(0), Quality::Excellent).expect("run");
    let added = recovery(Path::WebSocket, ms(0), ms(150), Quality::Poor).expect("run");
    let polling_removed = recovery(Path::Polling, ms(150), ms(0), Quality::Excellent).expect("run");
    let polling_added = recovery(Path::Polling, ms(0), ms(150), Quality::Poor).expect("run");
    println!(
        "half-open, new WebSocket to excellent: {}; 300 ms removed: {} (polling {}); \
         300 ms added, to poor: {} (polling {})",
        s(half_open),
        s(removed),
        s(polling_removed),
        s(added),
        s(polling_added)
    );
    for (what, d) in [
        ("half-open", half_open),
        ("removed", removed),
        ("added", added),
        ("polling removed", polling_removed),
        ("polling added", polling_added),
    ] {
        assert!(d.is_some_and(|d| d <= limit), "{what}: {}", s(d));
    }
}
