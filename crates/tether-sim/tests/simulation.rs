//! Runs N seeded schedules through the simulation and fails listing every violation.
//!
//! `TETHER_SIM_SEEDS` (default 10000) schedules, seeds `TETHER_SIM_SEED` (default 0)
//! onwards. A failing seed is run again with its trace, so the report shows the last 200
//! lines (virtual time, inputs, actions, events) that led to the violation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

fn env(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}")),
        Err(_) => default,
    }
}

/// Seeds outside the default range that once failed (a confirmed send answered
/// `Stopped` for a message that step expired; a message written before a session reset
/// reported `Expired`; a polling trial kept busy by a backlog, its probe late and its
/// token expired; the same written message pushed out of a full `DropOldest` queue
/// reported `Overflow`; a failed probe's late Hello, behind an Ack the client sent on
/// the polling transport it took up again, resetting the session; a polling attempt
/// going with a token that expired while the process slept, its 401 stopping the client),
/// replayed on every run.
const REGRESSIONS: &[u64] = &[
    35847, 197861, 183115, 266819, 126039, 346036, 366588, 5011248,
];

#[test]
fn regression_seeds() {
    for &seed in REGRESSIONS {
        if let Err(failure) = tether_sim::run_seed(seed, true) {
            panic!("{failure}");
        }
    }
}

#[test]
fn seeded_schedules() {
    let count = env("TETHER_SIM_SEEDS", 10_000);
    let first = env("TETHER_SIM_SEED", 0);
    let options = tether_sim::Options::from_env();
    let next = AtomicU64::new(0);
    let failures = Mutex::new(Vec::new());
    let totals = Mutex::new((0u64, 0u64, 0u64, 0u64, 0f64, 0u64, 0u64, 0u64, 0u64));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let seed = first + i;
                match tether_sim::run_seed_with(seed, false, options) {
                    Ok(summary) => {
                        let mut t = totals.lock().unwrap();
                        t.0 += u64::from(summary.protocol);
                        t.1 += summary.client_messages as u64;
                        t.2 += summary.server_messages as u64;
                        t.3 += summary.steps;
                        t.4 += summary.virtual_time.as_secs_f64();
                        t.5 += summary.stale_transports;
                        t.6 += summary.resets;
                        t.7 += summary.adversary_moves;
                        t.8 += summary.answered;
                    }
                    Err(_) => {
                        // Deterministic: the replay with a trace fails the same way.
                        let failure = tether_sim::run_seed_with(seed, true, options)
                            .err()
                            .map(|f| f.to_string())
                            .unwrap_or_else(|| {
                                format!("seed {seed} failed once, passed on replay: nondeterminism")
                            });
                        failures.lock().unwrap().push((seed, failure));
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap();
    failures.sort_by_key(|(seed, _)| *seed);
    let (protocol, sent, server, steps, virt, stale, resets, adversary, answered) =
        totals.into_inner().unwrap();
    eprintln!(
        "simulated {count} schedules ({protocol} protocol, {} plain) in {:.1?}: {sent} client and {server} server messages, {steps} steps, {:.0} virtual hours, {stale} stale transports refused, {resets} numberings started, {adversary} adversary moves refused, {answered} callers answered",
        count - failures.len() as u64 - protocol,
        started.elapsed(),
        virt / 3600.0,
    );
    if failures.is_empty() {
        println!("simulation: {count} schedules, 0 violations");
        eprintln!("simulation: {count} schedules, 0 violations");
        return;
    }
    for (_, f) in failures.iter().take(3) {
        eprintln!("{f}");
    }
    let seeds: Vec<String> = failures
        .iter()
        .map(|(s, f)| format!("{s}: {}", f.lines().next().unwrap_or("")))
        .collect();
    panic!(
        "simulation: {count} schedules, {} violations:\n{}",
        failures.len(),
        seeds.join("\n")
    );
}
