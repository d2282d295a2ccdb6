//! Seeded schedules: a configuration drawn from sane ranges, and a script of faults,
//! user actions and server messages over 40–240 virtual seconds. The same seed always
//! makes the same schedule.

use tether_core::rng::Rng;
use tether_core::{
    AuthConfig, BackoffConfig, Config, Duration, FallbackConfig, HeartbeatConfig, Hint, Jitter,
    OverflowPolicy, QueueConfig, TokenPlacement, TransportFailure,
};

use crate::rand::Draw;
use crate::sim::{Fault, Params, SimEvent, TokenMode, UserAction};

/// One schedule: what to build and what to do to it.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Its seed.
    pub seed: u64,
    /// The core's configuration.
    pub config: Config,
    /// The harness's knobs.
    pub params: Params,
    /// How long faults and traffic go on before healing.
    pub duration: Duration,
    /// The script, by virtual time.
    pub script: Vec<(Duration, SimEvent)>,
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A configuration drawn from sane ranges.
#[must_use]
pub fn random_config(rng: &mut Rng, seed: u64) -> Config {
    let protocol = rng.chance(0.65);
    let mut b = Config::builder("ws://sim.invalid/ws").seed(seed ^ 0x6a69_7474);
    b = if protocol {
        b.protocol()
    } else if rng.chance(0.7) {
        b.plain_heartbeat("ping", "pong")
    } else {
        b
    };
    let initial = rng.range(20, 1500);
    let max = rng.range(initial.max(500), 30_000);
    b = b.backoff(BackoffConfig {
        initial_delay: ms(initial),
        factor: 1.0 + rng.next_f64() * 2.0,
        max_delay: ms(max),
        jitter: *rng.pick(&[Jitter::Full, Jitter::Decorrelated, Jitter::None]),
        max_attempts: if rng.chance(0.2) {
            Some(rng.range(3, 20) as u32)
        } else {
            None
        },
    });
    b = b.connect_timeout(ms(rng.range(500, 10_000)));
    b = b.heartbeat(if rng.chance(0.8) {
        let interval = rng.range(500, 10_000);
        Some(HeartbeatConfig {
            interval: ms(interval),
            timeout: ms(rng.range(interval / 4, interval).max(100)),
            max_missed: rng.range(1, 4) as u32,
        })
    } else {
        None
    });
    let max_messages = *rng.pick(&[5, 20, 64, 200, 1000]);
    b = b.queue(QueueConfig {
        max_messages,
        max_bytes: *rng.pick(&[400, 2_000, 20_000, 1 << 20]),
        max_age: if rng.chance(0.25) {
            Some(ms(rng.range(2_000, 60_000)))
        } else {
            None
        },
        overflow: if rng.chance(0.5) {
            OverflowPolicy::DropOldest
        } else {
            OverflowPolicy::RejectNew
        },
    });
    if protocol && rng.chance(0.5) {
        let min = rng.range(20, 500);
        b = b.fallback(FallbackConfig {
            poll_url: "http://sim.invalid/poll".into(),
            after_failures: rng.range(1, 5) as u32,
            min_interval: ms(min),
            max_interval: ms(rng.range(min, 5_000)),
            probe_interval: ms(rng.range(1_000, 20_000)),
            probe_timeout: ms(rng.range(200, 5_000)),
            request_timeout: ms(rng.range(1_000, 10_000)),
        });
    }
    if rng.chance(0.4) {
        b = b.auth(AuthConfig {
            refresh_lead: ms(rng.range(500, 10_000)),
            placement: if rng.chance(0.5) {
                TokenPlacement::Header
            } else {
                TokenPlacement::Query("access_token".into())
            },
            fetch_timeout: ms(rng.range(500, 5_000)),
        });
    }
    b = b
        .resume_gap(ms(rng.range(1_000, 10_000)))
        .liveness_timeout(ms(rng.range(200, 3_000)))
        .close_linger(ms(rng.range(100, 3_000)))
        .ack(rng.range(1, 32) as u32, ms(rng.range(1, 200)));
    b.build().expect("sane ranges make a valid config")
}

/// The slow application and the unread bounds, drawn from a generator of their own so
/// that every other draw of a seed (and so the schedules of seeds recorded before them)
/// stays as it was: a quarter of the runs read one message per 1–60 ms, a quarter pause
/// reading after 1–64 unread messages or 64 B–8 KiB.
fn delivery_factors(seed: u64, mut config: Config, mut params: Params) -> (Config, Params) {
    let mut rng = Rng::new(seed.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ 0x5107);
    if rng.chance(0.25) {
        params.slow_reader = Some(ms(rng.range(1, 60)));
    }
    if rng.chance(0.25) {
        config.max_unread_messages = rng.range(1, 64) as usize;
        config.max_unread_bytes = rng.range(64, 8_192) as usize;
    }
    if rng.chance(0.3) {
        // A server with small resume limits whose application waits for room (room
        // for the largest message: one past `max_bytes` alone is not kept).
        params.server_limits = Some(tether_core::protocol::ResumeLimits {
            max_messages: rng.range(1, 64) as usize,
            max_bytes: rng.range(512, 8_192) as usize,
            max_age: Duration::from_secs(24 * 3600),
        });
    }
    (config, params)
}

/// The platform's knobs, from a generator of their own (as `delivery_factors`): half the
/// runs are a browser, which cannot tell a refused connect from another failure.
fn platform_factors(seed: u64, mut params: Params) -> Params {
    let mut rng = Rng::new(seed.wrapping_mul(0xA24B_AED4_963E_E407) ^ 0xb4_0e5e);
    params.browser = rng.chance(0.5);
    params
}

impl Plan {
    /// The schedule of `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Plan {
        let mut rng = Rng::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5eed);
        let config = random_config(&mut rng, seed);
        let duration = Duration::from_secs(rng.range(40, 240));
        let params = Params {
            base_latency: ms(rng.range(1, 80)),
            jitter: ms(rng.range(0, 60)),
            token_ttl: Duration::from_secs(rng.range(15, 120)),
            pad_max: *rng.pick(&[0, 8, 64, 300]),
            binary_share: *rng.pick(&[0.0, 0.2, 0.5]),
            os_reset_after: Duration::from_secs(rng.range(20, 120)),
            seed,
            ..Params::default()
        };
        let (config, params) = delivery_factors(seed, config, params);
        let params = platform_factors(seed, params);
        let mut script = Vec::new();
        let at = |rng: &mut Rng| ms(rng.range(0, duration.as_millis() as u64));

        // Traffic: both sides send at random (Poisson) times.
        for (mean, event) in [
            (rng.range(500, 5_000), SimEvent::User(UserAction::Send(1))),
            (rng.range(500, 5_000), SimEvent::ServerApp),
        ] {
            let mut t = Duration::ZERO;
            loop {
                t += rng.exp(ms(mean));
                if t >= duration {
                    break;
                }
                script.push((t, event.clone()));
            }
        }
        // Bursts past the queue's limits.
        for _ in 0..rng.range(0, 3) {
            let n = (config.queue.max_messages as u64 * 3 / 2).clamp(10, 300);
            script.push((at(&mut rng), SimEvent::User(UserAction::Send(n as u32))));
        }
        // The user closes and comes back.
        if rng.chance(0.25) {
            let t = at(&mut rng);
            script.push((t, SimEvent::User(UserAction::Close)));
            script.push((
                t + ms(rng.range(10, 20_000)),
                SimEvent::User(UserAction::Reconnect),
            ));
        }
        // Faults, about one every 10–40 s.
        let faults = duration.as_secs() / rng.range(10, 40);
        for _ in 0..=faults {
            let t = at(&mut rng);
            let len = ms(rng.range(500, 30_000));
            let end = t + len;
            let fault = |f| SimEvent::Fault(f);
            match rng.range(0, 16) {
                0 => {
                    script.push((t, fault(Fault::Refuse(true))));
                    script.push((end, fault(Fault::Refuse(false))));
                }
                1 => {
                    script.push((t, fault(Fault::Hang(true))));
                    script.push((end, fault(Fault::Hang(false))));
                }
                2 => {
                    let code = *rng.pick(&[None, Some(1000), Some(1001), Some(1011), Some(4408)]);
                    let retry_ms = rng.chance(0.3).then(|| rng.range(100, 5_000));
                    script.push((t, fault(Fault::ServerDrop { code, retry_ms })));
                }
                3 => script.push((t, fault(Fault::NetReset))),
                4 => script.push((t, fault(Fault::Stall))),
                5 => {
                    script.push((t, fault(Fault::Latency(ms(rng.range(200, 5_000))))));
                    script.push((end, fault(Fault::Latency(Duration::ZERO))));
                }
                6 | 7 => script.push((
                    t,
                    fault(Fault::Restart {
                        downtime: ms(rng.range(100, 10_000)),
                        lose_state: rng.chance(0.4),
                        graceful: rng.chance(0.5),
                    }),
                )),
                8 if config.auth.is_some() => {
                    script.push((t, fault(Fault::AuthOutage(true))));
                    script.push((end, fault(Fault::AuthOutage(false))));
                    if rng.chance(0.7) {
                        // The user restarts a connection the outage stopped.
                        script.push((
                            end + ms(rng.range(0, 5_000)),
                            SimEvent::User(UserAction::Reconnect),
                        ));
                    }
                }
                9 if config.auth.is_some() => {
                    script.push((t, fault(Fault::Revoke)));
                }
                10 if config.auth.is_some() => {
                    let mode = if rng.chance(0.5) {
                        TokenMode::Fail
                    } else {
                        TokenMode::Hang
                    };
                    script.push((t, fault(Fault::Tokens(mode))));
                    script.push((end, fault(Fault::Tokens(TokenMode::Normal))));
                }
                11 => {
                    script.push((
                        t,
                        fault(Fault::Offline {
                            reset: rng.chance(0.5),
                        }),
                    ));
                    script.push((end, fault(Fault::Online)));
                }
                12 => {
                    let h = *rng.pick(&[Hint::Visible, Hint::Resumed, Hint::Hidden, Hint::Online]);
                    script.push((t, fault(Fault::Hint(h))));
                }
                13 => script.push((
                    t,
                    fault(Fault::Sleep {
                        duration: ms(rng.range(2_000, 120_000)),
                        stall: rng.chance(0.4),
                    }),
                )),
                14 => {
                    let failure = if config.fallback.is_some() || rng.chance(0.3) {
                        TransportFailure::Blocked
                    } else {
                        TransportFailure::Refused
                    };
                    script.push((t, fault(Fault::Blocked(Some(failure)))));
                    script.push((end + ms(rng.range(0, 30_000)), fault(Fault::Blocked(None))));
                    if config.fallback.is_none() {
                        script.push((
                            end + ms(rng.range(0, 40_000)),
                            SimEvent::User(UserAction::Reconnect),
                        ));
                    }
                }
                _ => {
                    // A user who restarts a stopped connection now and then.
                    script.push((t, SimEvent::User(UserAction::Reconnect)));
                }
            }
        }
        // The adversary (protocol mode): forged Hellos and polling requests at random
        // times, drawn apart so the rest of the schedule is the same with or without it.
        if config.is_protocol() {
            let mut adversary = Rng::new(seed ^ 0xad7e_5a11_0f0e);
            for _ in 0..adversary.range(2, 12) {
                let t = ms(adversary.range(0, duration.as_millis() as u64));
                script.push((t, SimEvent::Adversary));
            }
        }
        Plan {
            seed,
            config,
            params,
            duration,
            script,
        }
    }
}
