//! Focused, deterministic scenarios on the simulation harness: each builds one world,
//! injects one kind of fault at a known virtual time and asserts what the core did
//! (counts, states, virtual times). No real sleeping anywhere.

use tether_core::{
    AttemptKind, AuthConfig, BackoffConfig, Config, ConfigBuilder, Duration, Event, FallbackConfig,
    HeartbeatConfig, Jitter, OverflowPolicy, QueueConfig, SendError, State, TerminalReason,
    TransportFailure,
};
use tether_sim::{Fault, Params, Sim, SimEvent, UserAction};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn protocol() -> ConfigBuilder {
    Config::builder("ws://sim.invalid/ws")
        .protocol()
        .backoff(BackoffConfig {
            initial_delay: ms(200),
            factor: 2.0,
            max_delay: secs(2),
            jitter: Jitter::Full,
            max_attempts: None,
        })
        .heartbeat(Some(HeartbeatConfig {
            interval: secs(2),
            timeout: secs(1),
            max_missed: 2,
        }))
}

fn world(builder: ConfigBuilder) -> Sim {
    let params = Params {
        base_latency: ms(20),
        jitter: ms(5),
        record: true,
        trace: true,
        trace_lines: 300,
        ..Params::default()
    };
    Sim::new(builder.build().expect("valid config"), params).expect("sim")
}

/// Fails with the violation and the trace.
fn ok<T>(sim: &Sim, r: Result<T, tether_sim::Violation>) -> T {
    match r {
        Ok(v) => v,
        Err(v) => panic!("{v}\n{}", sim.trace.tail(120)),
    }
}

macro_rules! run {
    ($sim:expr, $e:expr) => {{
        let r = $e;
        ok(&$sim, r)
    }};
}

fn count(sim: &Sim, f: impl Fn(&Event) -> bool) -> usize {
    sim.events.iter().filter(|(_, e)| f(e)).count()
}

fn first_at(sim: &Sim, after: Duration, f: impl Fn(&Event) -> bool) -> Option<Duration> {
    sim.events
        .iter()
        .find(|(at, e)| *at >= after && f(e))
        .map(|(at, _)| *at)
}

fn connected(sim: &Sim) -> bool {
    sim.conn().state() == State::Connected
}

fn quiesce(sim: &mut Sim) {
    run!(
        sim,
        sim.run_until_true(secs(120), "quiescent", Sim::quiescent)
    );
    run!(sim, sim.check.finish());
}

/// Connects, exchanges five messages each way, then restarts the server (its sessions
/// kept) for `downtime`; five more are sent meanwhile (and, with `server_sends`, five by
/// the server), and the run goes on until the client is connected again after it.
/// Returns when the restart began.
fn restart_after_an_exchange(
    sim: &mut Sim,
    downtime: Duration,
    graceful: bool,
    server_sends: bool,
) -> Duration {
    run!(sim, sim.connect());
    run!(sim, sim.run_until_true(secs(5), "connected", connected));
    for _ in 0..5 {
        run!(sim, sim.send_one()).expect("accepted");
        run!(sim, sim.server_send());
    }
    run!(sim, sim.run_for(secs(1)));
    let restart = sim.now();
    run!(
        sim,
        sim.inject(Fault::Restart {
            downtime,
            lose_state: false,
            graceful,
        })
    );
    for _ in 0..5 {
        run!(sim, sim.send_one()).expect("queued");
        if server_sends {
            run!(sim, sim.server_send());
        }
    }
    run!(
        sim,
        sim.run_until_true(secs(30), "reconnected", |s| {
            connected(s) && s.now() > restart + downtime
        })
    );
    restart
}

#[test]
fn reconnects_after_a_server_restart_and_resumes_the_session() {
    let mut sim = world(protocol());
    let restart = restart_after_an_exchange(&mut sim, secs(3), true, false);
    let back = sim.now();
    // Down for 3 s; then at most one more backoff (≤ 2 s) and a handshake.
    assert!(
        back - restart <= secs(3) + secs(2) + ms(300),
        "back after {:?}",
        back - restart
    );
    quiesce(&mut sim);
    assert_eq!(
        sim.server.app.received,
        (1..=10).collect::<Vec<_>>(),
        "in order, once"
    );
    assert_eq!(count(&sim, |e| matches!(e, Event::SessionReset { .. })), 0);
    assert_eq!(count(&sim, |e| matches!(e, Event::Delivered { .. })), 10);
    assert_eq!(sim.conn().metrics(sim.clock.now()).reconnects, 1);
}

#[test]
fn half_open_is_detected_within_the_heartbeat_bounds() {
    let mut sim = world(protocol());
    run!(sim, sim.connect());
    run!(sim, sim.run_until_true(secs(5), "connected", connected));
    run!(sim, sim.run_for(ms(2_500)));
    let stalled = sim.now();
    run!(sim, sim.inject(Fault::Stall));
    run!(
        sim,
        sim.run_until_true(secs(30), "lost", |s| s.conn().state() != State::Connected)
    );
    let lost = first_at(&sim, stalled, |e| matches!(e, Event::Disconnected { .. })).expect("lost");
    // interval 2 s, timeout 1 s, 2 missed: at most interval × missed + timeout.
    let took = lost - stalled;
    assert!(took >= secs(1), "declared dead too early: {took:?}");
    assert!(took <= secs(2) * 2 + secs(1), "took {took:?}");
    let half_open = sim.events.iter().any(|(_, e)| {
        matches!(e, Event::Disconnected { cause, .. } if cause.reason.contains("half-open"))
    });
    assert!(half_open, "the cause names the half-open socket");
    run!(sim, sim.run_until_true(secs(10), "reconnected", connected));
    assert_eq!(sim.counters.opens, 2);
}

#[test]
fn token_is_refreshed_before_expiry_without_a_disconnect() {
    let auth = AuthConfig {
        refresh_lead: secs(5),
        ..AuthConfig::default()
    };
    let mut sim = Sim::new(
        protocol().auth(auth).build().expect("config"),
        Params {
            token_ttl: secs(20),
            record: true,
            trace: true,
            trace_lines: 300,
            ..Params::default()
        },
    )
    .expect("sim");
    run!(sim, sim.connect());
    run!(sim, sim.run_for(secs(75)));
    assert!(connected(&sim));
    assert_eq!(count(&sim, |e| matches!(e, Event::Disconnected { .. })), 0);
    // Fetched at 0, then refreshed every ~15 s (5 s before each 20 s expiry).
    let refreshed = count(&sim, |e| matches!(e, Event::TokenRefreshed));
    assert!((4..=5).contains(&refreshed), "{refreshed} refreshes");
    assert_eq!(sim.counters.opens, 1, "one connection throughout");
    assert_eq!(sim.counters.fetches as usize, 1 + refreshed);
}

#[test]
fn auth_rejection_stops_after_exactly_one_refresh() {
    let mut sim = world(protocol().auth(AuthConfig::default()));
    run!(sim, sim.connect());
    run!(sim, sim.run_until_true(secs(5), "connected", connected));
    assert_eq!(sim.counters.fetches, 1);
    run!(sim, sim.inject(Fault::AuthOutage(true)));
    run!(sim, sim.inject(Fault::Revoke));
    run!(
        sim,
        sim.run_until_true(secs(30), "stopped", |s| s.conn().state() == State::Error)
    );
    assert!(matches!(
        sim.conn().terminal_reason(),
        Some(TerminalReason::AuthRejected(_))
    ));
    assert_eq!(sim.counters.fetches, 2, "one refreshed token, then stop");
    assert_eq!(sim.counters.opens, 2);
    // Nothing more happens until the user acts.
    let before = (sim.counters.fetches, sim.counters.opens);
    run!(sim, sim.run_for(secs(60)));
    assert_eq!((sim.counters.fetches, sim.counters.opens), before);
    run!(sim, sim.inject(Fault::AuthOutage(false)));
    run!(sim, sim.user(UserAction::Reconnect));
    run!(sim, sim.run_until_true(secs(5), "connected", connected));
}

#[test]
fn polling_fallback_when_websockets_are_blocked_and_upgrade_back() {
    let fallback = FallbackConfig {
        after_failures: 2,
        probe_interval: secs(3),
        min_interval: ms(50),
        max_interval: ms(500),
        ..FallbackConfig::new("http://sim.invalid/poll")
    };
    let mut sim = world(protocol().fallback(fallback));
    run!(
        sim,
        sim.inject(Fault::Blocked(Some(TransportFailure::Blocked)))
    );
    run!(sim, sim.connect());
    run!(sim, sim.run_until_true(secs(10), "polling", connected));
    assert!(sim.conn().metrics(sim.clock.now()).fallback_active);
    assert_eq!(
        count(&sim, |e| matches!(
            e,
            Event::FallbackChanged { active: true }
        )),
        1
    );
    for _ in 0..20 {
        run!(sim, sim.send_one()).expect("accepted");
        run!(sim, sim.server_send());
        run!(sim, sim.run_for(ms(150)));
    }
    assert!(sim.counters.polls > 10);
    // Probes fail while blocked; polling goes on.
    run!(sim, sim.run_for(secs(7)));
    assert!(connected(&sim) && sim.conn().metrics(sim.clock.now()).fallback_active);
    let lifted = sim.now();
    run!(sim, sim.inject(Fault::Blocked(None)));
    for _ in 0..10 {
        run!(sim, sim.send_one()).expect("accepted");
        run!(sim, sim.server_send());
    }
    run!(
        sim,
        sim.run_until_true(secs(30), "upgraded", |s| {
            !s.conn().metrics(s.clock.now()).fallback_active
        })
    );
    let upgraded = first_at(&sim, lifted, |e| {
        matches!(e, Event::FallbackChanged { active: false })
    })
    .expect("upgraded");
    // The next probe (its interval doubles after each failed one, ≤ 60 s) upgrades.
    assert!(upgraded - lifted <= secs(60), "{:?}", upgraded - lifted);
    quiesce(&mut sim);
    assert_eq!(
        sim.server.app.received,
        (1..=30).collect::<Vec<_>>(),
        "no loss, no dup"
    );
    assert_eq!(sim.check.figures().1, 30);
}

fn overflow(policy: OverflowPolicy) -> Sim {
    let mut sim = world(protocol().queue(QueueConfig {
        max_messages: 5,
        max_bytes: 1 << 20,
        max_age: None,
        overflow: policy,
    }));
    run!(sim, sim.inject(Fault::Refuse(true)));
    run!(sim, sim.connect());
    sim
}

#[test]
fn queue_overflow_with_reject_new() {
    let mut sim = overflow(OverflowPolicy::RejectNew);
    let results: Vec<_> = (0..8).map(|_| run!(sim, sim.send_one())).collect();
    assert!(results[..5].iter().all(Result::is_ok));
    for r in &results[5..] {
        assert!(
            matches!(r, Err(SendError::QueueFull { messages: 5, .. })),
            "{r:?}"
        );
    }
    assert_eq!(count(&sim, |e| matches!(e, Event::Dropped { .. })), 0);
    run!(sim, sim.inject(Fault::Refuse(false)));
    quiesce(&mut sim);
    assert_eq!(sim.server.app.received, vec![1, 2, 3, 4, 5]);
}

#[test]
fn queue_overflow_with_drop_oldest() {
    let mut sim = overflow(OverflowPolicy::DropOldest);
    let ids: Vec<_> = (0..8)
        .map(|_| run!(sim, sim.send_one()).expect("accepted"))
        .collect();
    let dropped: Vec<_> = sim
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Dropped { id, reason } => Some((*id, *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        dropped,
        ids[..3]
            .iter()
            .map(|id| (*id, tether_core::DropReason::Overflow))
            .collect::<Vec<_>>()
    );
    assert_eq!(sim.conn().metrics(sim.clock.now()).queue_depth, 5);
    run!(sim, sim.inject(Fault::Refuse(false)));
    quiesce(&mut sim);
    assert_eq!(sim.server.app.received, vec![4, 5, 6, 7, 8]);
}

/// Seed 35847 of the simulation, its essential steps: the process sleeps through the
/// last connect timeout (the connection gives up) and through the queue's `max_age`.
/// The wake gives up, then expires the queue; the confirmed send (the fourth message)
/// must hear `Dropped(Expired)` as its event says, not a stop claiming it retained (the
/// harness checks every answer against the events).
#[test]
fn a_sleep_through_giving_up_and_max_age_answers_the_confirmed_send_with_the_expiry() {
    let builder = protocol()
        .connect_timeout(secs(2))
        .backoff(BackoffConfig {
            initial_delay: ms(200),
            factor: 2.0,
            max_delay: secs(2),
            jitter: Jitter::Full,
            max_attempts: Some(1),
        })
        .queue(QueueConfig {
            max_age: Some(secs(10)),
            ..QueueConfig::default()
        });
    let mut sim = world(builder);
    run!(sim, sim.inject(Fault::Hang(true)));
    run!(sim, sim.connect());
    for _ in 0..4 {
        run!(sim, sim.send_one()).expect("queued");
    }
    assert_eq!(
        sim.waiting_callers(),
        (1, 0),
        "c4 waits for its confirmation"
    );
    run!(
        sim,
        sim.inject(Fault::Sleep {
            duration: secs(60),
            stall: false,
        })
    );
    run!(sim, sim.run_for(secs(61)));
    let gave_up = first_at(&sim, secs(0), |e| {
        matches!(e, Event::Stopped(TerminalReason::GaveUp { .. }))
    });
    let expired = first_at(&sim, secs(0), |e| {
        matches!(
            e,
            Event::Dropped {
                reason: tether_core::DropReason::Expired,
                ..
            }
        )
    });
    assert_eq!(gave_up, Some(secs(60)), "gave up at the wake");
    assert_eq!(expired, gave_up, "and expired the queue in the same step");
    assert_eq!(sim.waiting_callers(), (0, 0), "c4 was answered");
    assert_eq!(sim.counters.answered, 1);
}

#[test]
fn offline_stops_attempts_and_online_reconnects_at_once() {
    let mut sim = world(protocol());
    run!(sim, sim.connect());
    run!(sim, sim.run_until_true(secs(5), "connected", connected));
    run!(sim, sim.inject(Fault::Offline { reset: true }));
    run!(sim, sim.run_for(secs(1)));
    assert_eq!(sim.conn().state(), State::Disconnected);
    let (opens, scheduled) = (
        sim.counters.opens,
        count(&sim, |e| matches!(e, Event::ReconnectScheduled { .. })),
    );
    run!(sim, sim.run_for(secs(60)));
    assert_eq!(sim.counters.opens, opens, "no attempts while offline");
    assert_eq!(
        count(&sim, |e| matches!(e, Event::ReconnectScheduled { .. })),
        scheduled
    );
    assert_eq!(
        sim.conn().poll_timeout(),
        None,
        "nothing armed while offline and idle"
    );
    let online = sim.now();
    run!(sim, sim.inject(Fault::Online));
    assert_eq!(sim.counters.opens, opens + 1, "attempts at once");
    assert_eq!(
        sim.actions.last().map(|(at, _)| *at),
        Some(online),
        "at the same virtual instant"
    );
    run!(sim, sim.run_until_true(secs(1), "connected", connected));
}

#[test]
fn a_sleep_triggers_a_liveness_check_not_a_false_timeout() {
    let builder = protocol()
        .heartbeat(Some(HeartbeatConfig {
            interval: secs(4),
            timeout: secs(3),
            max_missed: 1,
        }))
        .resume_gap(secs(5))
        .liveness_timeout(secs(2));
    // A healthy socket survives the sleep: one quick ping, answered.
    let mut sim = world(builder.clone());
    run!(sim, sim.connect());
    run!(sim, sim.run_until_true(secs(5), "connected", connected));
    run!(sim, sim.run_for(ms(4_500))); // a ping is in flight at 4 s... answered by now
    run!(
        sim,
        sim.inject(Fault::Sleep {
            duration: secs(60),
            stall: false,
        })
    );
    let wake = sim.now() + secs(60);
    run!(sim, sim.run_for(secs(70)));
    assert!(connected(&sim));
    assert_eq!(
        count(&sim, |e| matches!(e, Event::Disconnected { .. })),
        0,
        "no false timeout"
    );
    let ping_at_wake = sim.actions.iter().any(|(at, a)| {
        *at == wake
            && matches!(a, tether_dispatch::Command::Send { frame: tether_core::Payload::Text(t), .. } if t.starts_with("P "))
    });
    assert!(ping_at_wake, "a liveness ping at the wake");
    assert_eq!(sim.counters.opens, 1);

    // A socket that died during the sleep is replaced within the liveness timeout.
    let mut sim = world(builder);
    run!(sim, sim.connect());
    run!(sim, sim.run_until_true(secs(5), "connected", connected));
    run!(
        sim,
        sim.inject(Fault::Sleep {
            duration: secs(60),
            stall: true,
        })
    );
    let wake = sim.now() + secs(60);
    run!(sim, sim.run_for(secs(61) + secs(3)));
    let lost = first_at(&sim, wake, |e| matches!(e, Event::Disconnected { .. })).expect("replaced");
    assert!(lost - wake <= secs(2) + ms(10), "after {:?}", lost - wake);
    let liveness = sim.events.iter().any(
        |(_, e)| matches!(e, Event::Disconnected { cause, .. } if cause.reason.contains("liveness check")),
    );
    assert!(liveness, "the cause is the failed liveness check");
    run!(sim, sim.run_until_true(secs(10), "reconnected", connected));
}

#[test]
fn an_adversary_between_the_clients_transports_reads_nothing_and_locks_nobody_out() {
    let mut sim = world(protocol().fallback(FallbackConfig::new("http://sim.invalid/poll")));
    run!(sim, sim.connect());
    run!(sim, sim.run_until_true(secs(5), "connected", connected));
    for round in 0..6u64 {
        for _ in 0..3 {
            run!(sim, sim.send_one()).expect("accepted");
            run!(sim, sim.server_send());
        }
        // The client is cut off with unacknowledged messages both ways; while it is
        // away the adversary makes forged Hellos and guessed polling requests (with the
        // client's id, its session id, transport u64::MAX, no or wrong secrets).
        run!(sim, sim.inject(Fault::NetReset));
        for i in 0..8 {
            sim.schedule(sim.now() + ms(10 * i), tether_sim::SimEvent::Adversary);
        }
        run!(sim, sim.run_for(ms(100)));
        if round % 2 == 1 {
            run!(sim, sim.server_send());
        }
        run!(
            sim,
            sim.run_until_true(secs(30), "back after the adversary", connected)
        );
    }
    quiesce(&mut sim);
    assert_eq!(sim.counters.adversary, 48);
    assert!(
        sim.server.sessions() > 1,
        "the adversary got fresh sessions"
    );
    assert_eq!(
        sim.server.app.received,
        (1..=18).collect::<Vec<_>>(),
        "in order, once"
    );
    assert_eq!(count(&sim, |e| matches!(e, Event::SessionReset { .. })), 0);
    assert_eq!(count(&sim, |e| matches!(e, Event::Message(_))), 21);
}

/// The done-when, on virtual time: with default settings on both sides, an
/// application that takes 50 ms per message still sees every message of a 10,000-message
/// server burst,
/// once and in order, through three connection drops; reading from the socket pauses
/// meanwhile, so the client never holds much more than `max_unread_bytes` unread.
#[test]
fn a_reader_taking_50ms_per_message_sees_every_message_of_a_10000_burst_through_three_drops() {
    const BURST: u64 = 10_000;
    let config = Config::builder("ws://sim.invalid/ws")
        .protocol()
        .build()
        .expect("defaults");
    let bound = config.max_unread_bytes as u64;
    let params = Params {
        base_latency: ms(20),
        jitter: ms(5),
        // 10,000 messages of up to 400 bytes: more than the unread bound.
        pad_max: 400,
        slow_reader: Some(ms(50)),
        record: true,
        trace: true,
        trace_lines: 300,
        // The reference server's defaults (1,024 messages, 1 MiB, 2 min): its
        // application waits for room, as `Hub::send_to_user_wait` does.
        server_limits: Some(tether_core::protocol::ResumeLimits::default()),
        ..Params::default()
    };
    let mut sim = Sim::new(config, params).expect("sim");
    run!(sim, sim.connect());
    run!(sim, sim.run_until_true(secs(5), "connected", connected));
    for _ in 0..BURST {
        run!(sim, sim.server_send());
    }
    // Three drops while the application is still reading the burst (500 s).
    let start = sim.now();
    sim.schedule(start + secs(60), SimEvent::Fault(Fault::NetReset));
    sim.schedule(
        start + secs(180),
        SimEvent::Fault(Fault::ServerDrop {
            code: None,
            retry_ms: None,
        }),
    );
    sim.schedule(
        start + secs(300),
        SimEvent::Fault(Fault::Restart {
            downtime: secs(2),
            lose_state: false,
            graceful: false,
        }),
    );
    let mut paused = false;
    let mut backlog_peak = 0;
    run!(
        sim,
        sim.run_until_true(secs(700), "every message read", |s| {
            paused |= s.conn().metrics(s.clock.now()).reading_paused;
            backlog_peak = backlog_peak.max(s.server.app_backlog());
            s.reader.read == BURST
        })
    );
    assert!(paused, "reading paused while the reader was behind");
    assert!(backlog_peak > 0, "the server's application waited for room");
    assert!(
        sim.check.server_messages_done(),
        "every message, once, in order"
    );
    let m = sim.conn().metrics(sim.clock.now());
    assert_eq!(m.reconnects, 3);
    assert_eq!(count(&sim, |e| matches!(e, Event::SessionReset { .. })), 0);
    assert_eq!(
        count(&sim, |e| matches!(e, Event::Message(_))),
        BURST as usize
    );
    // Past the bound only by what was already read when it passed: one message.
    assert!(
        m.unread_bytes_peak <= bound + 512,
        "unread peak {} over the bound {bound}",
        m.unread_bytes_peak
    );
    assert!(sim.now() - start >= secs(500), "50 ms a message");
    eprintln!(
        "burst read in {:?} virtual, unread peak {} bytes ({} messages waiting at most), {} steps",
        sim.now() - start,
        m.unread_bytes_peak,
        sim.reader.peak,
        sim.counters.steps
    );
    quiesce(&mut sim);
}

/// The React example's 2 s server restart, in a browser (which cannot tell a refused
/// connect from a blocked WebSocket), with the default backoff and fallback: the
/// attempts may fail `after_failures` times within the 2 s and start the polling trial,
/// but once polling answers the WebSocket is probed first, so the fallback is never
/// reported, the session comes back on the WebSocket, and nothing is lost or repeated.
/// Over many seeds of jitter and latency, some of which reach the trial.
#[test]
fn a_brief_server_restart_in_a_browser_never_reports_the_fallback() {
    let mut trials = 0;
    for seed in 0..300 {
        let config = Config::builder("ws://sim.invalid/ws")
            .protocol()
            .seed(seed)
            .fallback(FallbackConfig::new("http://sim.invalid/poll"));
        let params = Params {
            browser: true,
            seed,
            record: true,
            trace: true,
            trace_lines: 300,
            ..Params::default()
        };
        let mut sim = Sim::new(config.build().expect("valid config"), params).expect("sim");
        restart_after_an_exchange(&mut sim, secs(2), false, true);
        quiesce(&mut sim);
        let polled = count(&sim, |e| {
            matches!(
                e,
                Event::AttemptStarted {
                    kind: AttemptKind::Polling,
                    ..
                }
            )
        });
        trials += usize::from(polled > 0);
        assert_eq!(
            count(&sim, |e| matches!(e, Event::FallbackChanged { .. })),
            0,
            "seed {seed}: the fallback reported\n{}",
            sim.trace.tail(60)
        );
        let last = sim.events.iter().rev().find_map(|(_, e)| match e {
            Event::AttemptStarted { kind, .. } => Some(*kind),
            _ => None,
        });
        assert_ne!(last, Some(AttemptKind::Polling), "seed {seed}: on polling");
        assert!(connected(&sim), "seed {seed}");
        assert_eq!(
            sim.server.app.received,
            (1..=10).collect::<Vec<_>>(),
            "seed {seed}: in order, once"
        );
        assert_eq!(count(&sim, |e| matches!(e, Event::Delivered { .. })), 10);
        assert_eq!(count(&sim, |e| matches!(e, Event::Message(_))), 10);
    }
    assert!(trials > 0, "no run reached the polling trial");
    println!("{trials} of 300 runs went through the polling trial");
}
