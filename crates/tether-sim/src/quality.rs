//! The quality property: the level the client reports follows the latency and loss the
//! network injects, within a bounded number of samples after each change, in both
//! directions, on a WebSocket (heartbeat pings) and on HTTP polling (receive polls).
//!
//! A run ([`follow`]) connects with the production configuration (apart from the
//! polling URL), then holds a seeded sequence of conditions, each for a while: an extra
//! one-way latency chosen well inside one level's bounds, or (on a WebSocket) a latency
//! past the pong timeout, which makes every ping a loss. After each change the reported
//! level must be the expected one by [`bound`] and stay so until the next change (no
//! flapping); nothing may reconnect meanwhile.
//!
//! [`recovery`] measures how long the level takes to settle after one change, for the
//! figures in BENCHMARKS.md.
//!
//! ```
//! use tether_sim::quality::{follow, Path};
//! follow(Path::WebSocket, 3).expect("quality follows the network");
//! ```

use tether_core::{Config, Duration, Event, FallbackConfig, Quality, State, TransportFailure};

use crate::check::Violation;
use crate::rand::Draw;
use crate::sim::{Fault, Params, Sim};

/// Which transport carries the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// A WebSocket with heartbeat pings.
    WebSocket,
    /// HTTP polling (WebSockets blocked by a proxy).
    Polling,
}

/// One-way base latency of the simulated network (a LAN: round trips of about 1 ms).
const BASE: Duration = Duration::from_micros(400);
/// Random part of the one-way latency.
const JITTER: Duration = Duration::from_micros(200);

/// A world with the production configuration, connected on `path`.
///
/// # Errors
/// A broken invariant, or a connection that does not come up.
pub fn world(path: Path, seed: u64) -> Result<Sim, Violation> {
    let mut builder = Config::builder("ws://sim.invalid/ws").protocol();
    if path == Path::Polling {
        builder = builder.fallback(FallbackConfig::new("http://sim.invalid/poll"));
    }
    let config = builder.build().map_err(|e| Violation {
        invariant: "valid configuration",
        detail: e.to_string(),
    })?;
    let params = Params {
        base_latency: BASE,
        jitter: JITTER,
        record: true,
        seed,
        ..Params::default()
    };
    let mut sim = Sim::new(config, params).map_err(|e| Violation {
        invariant: "valid configuration",
        detail: e.to_string(),
    })?;
    if path == Path::Polling {
        sim.inject(Fault::Blocked(Some(TransportFailure::Blocked)))?;
    }
    sim.connect()?;
    sim.run_until_true(Duration::from_secs(60), "connected", |s| {
        s.conn().state() == State::Connected
            && s.conn().metrics(s.clock.now()).fallback_active == (path == Path::Polling)
    })?;
    Ok(sim)
}

/// The level reported at virtual time `at`, from the recorded events: the last
/// `QualityChanged`, unless the connection left `Connected` since (a new transport is
/// measured anew).
#[must_use]
pub fn reported_at(sim: &Sim, at: Duration) -> Option<Quality> {
    let mut level = None;
    for (_, event) in sim.events.iter().take_while(|(t, _)| *t <= at) {
        match event {
            Event::QualityChanged { quality, .. } => level = Some(*quality),
            Event::StateChanged { to, .. } if *to != State::Connected => level = None,
            _ => {}
        }
    }
    level
}

/// The first virtual time at or after `from` when the reported level is `want` and
/// stays so until `until`; `None` if it is not `want` at `until`.
#[must_use]
pub fn settled(sim: &Sim, from: Duration, until: Duration, want: Quality) -> Option<Duration> {
    if reported_at(sim, until) != Some(want) {
        return None;
    }
    // The last change of the reported level at or before `until`.
    let mut last = from;
    let mut level = reported_at(sim, from);
    for (t, event) in sim.events.iter() {
        if *t <= from || *t > until {
            continue;
        }
        let next = match event {
            Event::QualityChanged { quality, .. } => Some(*quality),
            Event::StateChanged { to, .. } if *to != State::Connected => None,
            _ => continue,
        };
        if next != level {
            level = next;
            last = *t;
        }
    }
    Some(last)
}

/// How often the level is sampled on `path` with `config`, at most: the heartbeat
/// interval, or the longest poll interval plus a round trip.
fn sample_period(config: &Config, path: Path, rtt: Duration) -> Duration {
    match path {
        Path::WebSocket => config
            .heartbeat
            .as_ref()
            .map_or(Duration::ZERO, |h| h.interval),
        Path::Polling => {
            config
                .fallback
                .as_ref()
                .map_or(Duration::ZERO, |f| f.max_interval)
                + rtt
        }
    }
}

/// The longest a change of conditions may take to show as the right level: every
/// sample of the old conditions leaves the window (the last `window` samples, or
/// `max_age`, whichever holds fewer), then `hysteresis` samples of the new ones, each
/// at most a sample period (plus the round trip, or the pong timeout for a loss) apart.
#[must_use]
pub fn bound(config: &Config, path: Path, rtt: Duration) -> Duration {
    let q = &config.quality;
    let period = sample_period(config, path, rtt);
    let answer = config
        .heartbeat
        .as_ref()
        .map_or(rtt, |h| rtt.max(h.timeout));
    let by_count = period.saturating_mul(u32::try_from(q.window).unwrap_or(u32::MAX));
    let window = by_count.min(q.max_age);
    window + period.saturating_mul(q.hysteresis) + answer
}

/// One injected condition: extra one-way latency, and whether every ping is lost.
#[derive(Clone, Copy, Debug)]
struct Condition {
    extra: Duration,
    expect: Quality,
}

/// Conditions well inside each level's bounds (default levels), and one where every
/// pong comes after the pong timeout (loss: critical).
fn conditions(path: Path) -> Vec<Condition> {
    let ms = Duration::from_millis;
    let mut all = vec![
        Condition {
            extra: ms(0),
            expect: Quality::Excellent,
        },
        Condition {
            extra: ms(35),
            expect: Quality::Good,
        },
        Condition {
            extra: ms(75),
            expect: Quality::Fair,
        },
        Condition {
            extra: ms(150),
            expect: Quality::Poor,
        },
        Condition {
            extra: ms(400),
            expect: Quality::Critical,
        },
    ];
    if path == Path::WebSocket {
        // Round trips of 4 s against a pong timeout of 3 s: each ping is lost, yet the
        // late pongs show the socket alive, so it is not replaced.
        all.push(Condition {
            extra: ms(2_000),
            expect: Quality::Critical,
        });
    }
    all
}

/// The property on `path` for the schedule of `seed`: eight changes of conditions,
/// each held for twice its [`bound`]; the reported level must be the expected one by
/// the bound and stay so until the next change.
///
/// # Errors
/// The first change the level did not follow, or a broken invariant of the run.
pub fn follow(path: Path, seed: u64) -> Result<(), Violation> {
    let mut sim = world(path, seed)?;
    let mut rng = tether_core::rng::Rng::new(seed ^ 0x9e37_79b9);
    let all = conditions(path);
    let opens = sim.counters.opens;
    // Settle on the healthy network first.
    let mut current = all[0];
    let mut changed = sim.now();
    let rtt = (BASE + JITTER).saturating_mul(2);
    sim.run_for(bound(sim.config(), path, rtt).saturating_mul(2))?;
    for _ in 0..8 {
        let next = loop {
            let pick = *rng.pick(&all);
            if pick.expect != current.expect || pick.extra != current.extra {
                break pick;
            }
        };
        check_held(&sim, path, current, changed)?;
        sim.inject(Fault::Latency(next.extra))?;
        current = next;
        changed = sim.now();
        let rtt = (BASE + JITTER + next.extra).saturating_mul(2);
        sim.run_for(bound(sim.config(), path, rtt).saturating_mul(2))?;
    }
    check_held(&sim, path, current, changed)?;
    if path == Path::WebSocket && sim.counters.opens != opens {
        return Err(Violation {
            invariant: "quality follows the network",
            detail: format!("{} reconnections", sim.counters.opens - opens),
        });
    }
    Ok(())
}

/// Since `changed` to now, the reported level was `c.expect` from the bound on.
fn check_held(sim: &Sim, path: Path, c: Condition, changed: Duration) -> Result<(), Violation> {
    let rtt = (BASE + JITTER + c.extra).saturating_mul(2);
    let by = changed + bound(sim.config(), path, rtt);
    let now = sim.now();
    match settled(sim, changed, now, c.expect) {
        Some(at) if at <= by => Ok(()),
        at => Err(Violation {
            invariant: "quality follows the network",
            detail: format!(
                "{path:?}: {} ms more latency from {:.1} s: {:?} expected by {:.1} s, \
                 settled at {:?}, reported {:?} at {:.1} s",
                c.extra.as_millis(),
                changed.as_secs_f64(),
                c.expect,
                by.as_secs_f64(),
                at.map(|t| t.as_secs_f64()),
                reported_at(sim, now),
                now.as_secs_f64(),
            ),
        }),
    }
}

/// Seconds from a change to the moment the level settles on `want`, measured in a
/// world on `path`: the world first holds `before` (extra one-way latency) for a minute,
/// then `after`. `None` if it does not settle within two minutes.
///
/// # Errors
/// A broken invariant of the run.
pub fn recovery(
    path: Path,
    before: Duration,
    after: Duration,
    want: Quality,
) -> Result<Option<Duration>, Violation> {
    let mut sim = world(path, 1)?;
    sim.inject(Fault::Latency(before))?;
    sim.run_for(Duration::from_secs(60))?;
    sim.inject(Fault::Latency(after))?;
    let changed = sim.now();
    sim.run_for(Duration::from_secs(120))?;
    Ok(settled(&sim, changed, sim.now(), want).map(|at| at - changed))
}

/// Seconds from the end of a half-open episode (the client replaced the silent socket
/// and is connected again) to `excellent` on the new WebSocket.
///
/// # Errors
/// A broken invariant of the run.
pub fn recovery_after_half_open() -> Result<Option<Duration>, Violation> {
    let mut sim = world(Path::WebSocket, 1)?;
    sim.run_for(Duration::from_secs(60))?;
    let opens = sim.counters.opens;
    sim.inject(Fault::Stall)?;
    sim.run_until_true(Duration::from_secs(60), "reconnected", |s| {
        s.counters.opens > opens && s.conn().state() == State::Connected
    })?;
    let back = sim.now();
    sim.run_for(Duration::from_secs(120))?;
    Ok(settled(&sim, back, sim.now(), Quality::Excellent).map(|at| at - back))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_core::quality::classify;

    #[test]
    fn classification_of_the_conditions() {
        let config = Config::builder("ws://x/").build().expect("config");
        for c in conditions(Path::Polling) {
            let rtt = (BASE + c.extra).saturating_mul(2);
            let high = (BASE + JITTER + c.extra).saturating_mul(2);
            assert_eq!(classify(rtt, 0.0, &config.quality), c.expect, "{c:?}");
            assert_eq!(classify(high, 0.0, &config.quality), c.expect, "{c:?}");
        }
    }
}
