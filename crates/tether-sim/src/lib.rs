//! # tether-sim
//!
//! A deterministic simulation of the Tether core ([`tether_core::Connection`]): virtual
//! time, a seeded network and server, seeded fault schedules, and an invariant checker
//! run after every step. In the spirit of quinn-proto's test utilities and str0m's
//! netem: no sockets, no threads, no sleeping, and every run replays from its seed.
//!
//! - [`clock`]: the virtual clock and the agenda of things due.
//! - [`net`]: links with latency and ordering, and the network's faults.
//! - [`server`]: both wire modes on the reference server's rules
//!   ([`tether_core::endpoint::Endpoint`]), tokens, and an application that sends and
//!   records numbered messages.
//! - [`schedule`]: a configuration and a script of faults and traffic from a seed.
//! - [`check`]: the invariants.
//! - [`quality`]: the reported quality level follows the injected latency and loss.
//! - [`sim`]: the harness that drives the core like a real driver.
//!
//! ```
//! let outcome = tether_sim::run_seed(7, false);
//! assert!(outcome.is_ok(), "{:?}", outcome.err());
//! ```
//!
//! ## What a schedule does
//!
//! [`Plan::new`] draws a configuration from sane ranges (plain or protocol wire, every
//! jitter kind, queue limits and overflow policy, heartbeat on or off, polling fallback
//! on or off, auth on or off) and 40–240 virtual seconds of traffic both ways (numbered
//! `c…`/`s…` messages, text and binary, and bursts past the queue's limits) mixed with
//! faults: refused and hanging connects, server drops and network resets, half-open
//! stalls, latency spikes, server restarts that keep or lose sessions, auth outages and
//! revoked tokens, a failing token provider, offline/online and visibility hints,
//! process sleeps, and networks where only polling works; half the runs are a browser,
//! whose connects to a server that is down fail like any other failure (not as refused),
//! so that a restart's failures count toward the fallback; the user closes and
//! reconnects now and then; in protocol mode an adversary forges Hellos (the client's
//! id, its session id, transport number `u64::MAX`, no secret or a wrong one) and
//! polling requests (guessed `t`) at random times, and must read none of the client's
//! messages, get none of its secrets and change nothing of its sessions. Then the
//! network heals, a stopped connection is restarted, and the run must become quiescent
//! (everything acknowledged) within [`QUIESCE_WITHIN`], after which every message is
//! accounted for ([`check`]).
//!
//! ## Sessions and their secrets
//!
//! The server finds a session by the secret its Welcome gave (PROTOCOL.md 4.1), so a
//! client whose first Welcome is lost gets another fresh session, and server messages
//! only the first one had are lost to it: the checker allows that loss each time the
//! client's newest Hello gets a fresh session ([`check::Checker::session_abandoned`]),
//! and fails a client that sends a Hello or a polling request without its secret once
//! it has been connected.
//!
//! ## Late frames and resets
//!
//! The network delivers what the client wrote on a transport even after the client has
//! moved on to a newer one: a `Hello` or a polling request may reach the server after
//! the newer transport's `Hello`. The server must refuse it as stale (by its transport
//! number, PROTOCOL.md 3.4) rather than re-attach it. And the checker allows one reset
//! per session the server lost, no more: when the reset `Welcome` never reaches the
//! client, its next `Hello` still names the old session, and the server must start the
//! client over in the new numbering without losing messages (PROTOCOL.md 6.1). The
//! simulation found both weaknesses in an earlier protocol (seeds 156, 853, 1003 and
//! 435, 1778, 2189 of that time); its servers count the stale transports they refuse
//! ([`Summary::stale_transports`]).
//!
//! ## Sweeps beyond the default range
//!
//! Seeds 10000–1589999 were swept (2026-12-05). Their failures are fixed and replayed on
//! every run (`REGRESSIONS` in `tests/simulation.rs`); among them seeds 126039, 346036
//! and 366588 ("sessions reset only when the server lost them"): a WebSocket probe the
//! client abandoned (its connect timeout) after writing its Hello; the client took the
//! parked polling transport up again and acknowledged more on it, and the probe's Hello
//! reached the server only then, behind that Ack, a client gone back in time: the server
//! reset the session. Now a probe that wrote its Hello and failed leaves the parked
//! transport for a new one numbered above it (PROTOCOL.md 3.5), and the late Hello is
//! stale. (A server rule refusing such a Hello as stale was tried and not taken: a
//! client resuming a handoff taken before its giver acknowledged more, a frozen leader
//! tab's, would be refused for ever.)
//!
//! Replay a failing seed with its trace:
//! `TETHER_SIM_SEED=<seed> TETHER_SIM_SEEDS=1 cargo test -p tether-sim --test simulation -- --nocapture`
//! (`TETHER_SIM_TRACE_LINES=<n>` shows more than the last 200 lines).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod check;
pub mod clock;
pub mod net;
pub mod quality;
mod rand;
pub mod schedule;
pub mod server;
pub mod sim;
pub mod trace;

use std::panic::{catch_unwind, AssertUnwindSafe};

use tether_core::Duration;

pub use check::Violation;
pub use rand::Draw;
pub use schedule::Plan;
pub use sim::{Fault, Params, Reader, Sim, SimEvent, TokenMode, UserAction};

/// After healing, everything must be delivered within this much virtual time.
pub const QUIESCE_WITHIN: Duration = Duration::from_secs(600);

/// What one schedule did.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Its seed.
    pub seed: u64,
    /// Protocol (not plain) mode.
    pub protocol: bool,
    /// Messages `send` accepted.
    pub client_messages: usize,
    /// Messages the server application sent.
    pub server_messages: usize,
    /// Virtual time simulated.
    pub virtual_time: Duration,
    /// Steps taken.
    pub steps: u64,
    /// Hellos and polling requests the server refused as stale.
    pub stale_transports: u64,
    /// Welcomes that started a numbering over (`resumed: false`), first ones included.
    pub resets: u64,
    /// Forged Hellos and polling requests the adversary sent (all refused or answered
    /// with a fresh session of its own).
    pub adversary_moves: u64,
    /// Callers answered (confirmed sends, `close()` calls).
    pub answered: u64,
}

/// Why a schedule failed.
#[derive(Clone, Debug)]
pub struct Failure {
    /// Its seed.
    pub seed: u64,
    /// The broken invariant, or the panic.
    pub violation: Violation,
    /// Virtual time of the failure.
    pub at: Duration,
    /// The last trace lines (when run with a trace).
    pub trace: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "seed {} failed at {:.3}s: {}",
            self.seed,
            self.at.as_secs_f64(),
            self.violation
        )?;
        writeln!(
            f,
            "replay: TETHER_SIM_SEED={} TETHER_SIM_SEEDS=1 cargo test -p tether-sim --test simulation -- --nocapture",
            self.seed
        )?;
        f.write_str(&self.trace)
    }
}

/// How a run reports.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Trace lines shown for a failure (`TETHER_SIM_TRACE_LINES`, default 200).
    pub trace_lines: usize,
}

impl Options {
    /// From `TETHER_SIM_TRACE_LINES`.
    #[must_use]
    pub fn from_env() -> Self {
        Options {
            trace_lines: std::env::var("TETHER_SIM_TRACE_LINES")
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(200),
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options { trace_lines: 200 }
    }
}

/// Runs the schedule of `seed` (with a trace of the last lines when `trace`), under
/// `catch_unwind`: a panic in the core is a failure like any other.
pub fn run_seed(seed: u64, trace: bool) -> Result<Summary, Failure> {
    run_seed_with(seed, trace, Options::default())
}

/// [`run_seed`] with [`Options`].
pub fn run_seed_with(seed: u64, trace: bool, options: Options) -> Result<Summary, Failure> {
    let mut plan = Plan::new(seed);
    plan.params.trace = trace;
    plan.params.trace_lines = options.trace_lines;
    let mut sim = match Sim::new(plan.config.clone(), plan.params.clone()) {
        Ok(sim) => sim,
        Err(e) => {
            return Err(Failure {
                seed,
                violation: Violation {
                    invariant: "valid schedule",
                    detail: e.to_string(),
                },
                at: Duration::ZERO,
                trace: String::new(),
            })
        }
    };
    let result = catch_unwind(AssertUnwindSafe(|| drive(&mut sim, &plan)));
    let violation = match result {
        Ok(Ok(())) => {
            let (client_messages, server_messages, _) = sim.check.figures();
            return Ok(Summary {
                seed,
                protocol: plan.config.is_protocol(),
                client_messages,
                server_messages,
                virtual_time: sim.now(),
                steps: sim.counters.steps,
                stale_transports: sim.server.stale,
                resets: sim.server.resets,
                adversary_moves: sim.counters.adversary,
                answered: sim.counters.answered,
            });
        }
        Ok(Err(v)) => v,
        Err(panic) => Violation {
            invariant: "no panic",
            detail: panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "panic".into()),
        },
    };
    Err(Failure {
        seed,
        violation,
        at: sim.now(),
        trace: if trace {
            sim.trace.tail(options.trace_lines)
        } else {
            String::new()
        },
    })
}

/// The whole life of one schedule: connect, the script, heal, quiesce, final checks.
fn drive(sim: &mut Sim, plan: &Plan) -> Result<(), Violation> {
    for (at, event) in &plan.script {
        sim.schedule(*at, event.clone());
    }
    sim.connect()?;
    sim.run_until(plan.duration)?;
    sim.heal()?;
    // A user restarts a connection that stops after healing (an attempt that was already
    // failing may still exhaust `max_attempts`), at most a few times.
    let deadline = sim.now() + QUIESCE_WITHIN;
    for _ in 0..3 {
        let left = deadline.saturating_sub(sim.now());
        sim.run_until_true(left, "quiescent after healing", |s| {
            s.quiescent() || s.conn().state().is_stopped()
        })?;
        if !sim.conn().state().is_stopped() {
            break;
        }
        sim.user(UserAction::Reconnect)?;
    }
    let left = deadline.saturating_sub(sim.now());
    sim.run_until_true(left, "quiescent after healing", Sim::quiescent)?;
    // Let acknowledgements and pings settle, then account for everything.
    sim.run_for(Duration::from_secs(5))?;
    // Quiescent: every message's fate is known, so every caller was answered.
    if sim.waiting_callers() != (0, 0) {
        return Err(Violation {
            invariant: "every caller is answered",
            detail: format!(
                "(confirmed sends, close calls) still waiting: {:?}",
                sim.waiting_callers()
            ),
        });
    }
    sim.check.finish()
}
