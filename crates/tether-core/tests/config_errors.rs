//! Every configuration mistake is a typed error naming its field, never a panic.

use tether_core::{
    AuthConfig, BackoffConfig, CloseClass, CloseRule, Config, ConfigBuilder, ConfigError,
    ConfigField, ConfigProblem, Connection, Duration, FallbackConfig, HeartbeatConfig, Instant,
    QualityBound, QualityConfig, QueueConfig, TokenPlacement,
};

fn base() -> ConfigBuilder {
    Config::builder("wss://example.com/ws")
}

fn err(builder: ConfigBuilder) -> ConfigError {
    builder.build().expect_err("must be rejected")
}

fn check(builder: ConfigBuilder, field: ConfigField, problem: ConfigProblem) {
    let e = err(builder);
    assert_eq!((e.field, &e.problem), (field, &problem), "{e}");
    assert!(
        e.to_string().contains(field.as_str()),
        "message names the field: {e}"
    );
}

#[test]
fn defaults_are_valid() {
    base().build().unwrap();
    base().protocol().build().unwrap();
    base()
        .protocol()
        .fallback(FallbackConfig::new("https://example.com/poll"))
        .auth(AuthConfig::default())
        .build()
        .unwrap();
    Config::builder("WS://LOCALHOST:8080").build().unwrap();
}

#[test]
fn urls() {
    for bad in [
        "example.com",
        "/ws",
        "",
        "wss//x",
        "ftp://x",
        "httpx://x",
        "é://x",
    ] {
        check(
            Config::builder(bad),
            ConfigField::Url,
            ConfigProblem::NotWebSocketUrl,
        );
    }
    // http(s):// is the ws(s):// URL of the same place; the rest of it is checked as usual.
    for (given, taken) in [
        ("http://example.com/ws", "ws://example.com/ws"),
        (
            "HTTPS://example.com:8443/ws?a=b",
            "wss://example.com:8443/ws?a=b",
        ),
        ("https://[::1]/ws", "wss://[::1]/ws"),
    ] {
        assert_eq!(Config::builder(given).build().unwrap().url, taken);
    }
    check(
        Config::builder("http://"),
        ConfigField::Url,
        ConfigProblem::MalformedUrl,
    );
    check(
        Config::builder("https://:80/ws"),
        ConfigField::Url,
        ConfigProblem::MalformedUrl,
    );
    Config::builder("ws://[::1]:8080/ws").build().unwrap();
    Config::builder("wss://user@example.com/ws")
        .build()
        .unwrap();
    for bad in [
        "ws://",
        "ws:///path",
        "ws://:80/",
        "ws://exa mple.com",
        "ws://host:99999/",
        "ws://host:0/",
        "ws://host:http/",
        "ws://[::1]:x/",
        // What a browser's URL parser refuses too (its WebSocket constructor would throw
        // at every attempt): a sign before the port, no host after the user info, text
        // after an IPv6 address that is no port.
        "ws://host:+80/",
        "ws://@/",
        "ws://user:pass@/",
        "ws://user@:80/",
        "ws://[::1]80/",
    ] {
        check(
            Config::builder(bad),
            ConfigField::Url,
            ConfigProblem::MalformedUrl,
        );
    }
    check(
        base()
            .protocol()
            .fallback(FallbackConfig::new("ws://example.com/poll")),
        ConfigField::FallbackPollUrl,
        ConfigProblem::NotHttpUrl,
    );
    check(
        base().protocol().fallback(FallbackConfig::new("https://")),
        ConfigField::FallbackPollUrl,
        ConfigProblem::MalformedUrl,
    );
}

/// Ports and schemes as a browser's URL parser and an ASCII-case-insensitive prefix read
/// them: a port of digits only, leading zeros allowed, 1 to 65535.
#[test]
fn url_ports_and_schemes_spelled_every_way() {
    for good in [
        "ws://host:00080/",
        "ws://host:65535",
        "ws://host:1?x=:0",
        "ws://user:pw@host/",
        "ws://user:pw@host:8080#:x",
        "ws://[::1]/",
        "ws://[::1]:1/",
        "Ws://host/",
        "wSS://host/",
        "ws://hôst:80/",
        "ws://h@:80@host/",
    ] {
        Config::builder(good)
            .build()
            .unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    for bad in [
        "ws://host:/",
        "ws://host:+80/",
        "ws://[::1]:+1/",
        "ws://host:+/",
        "ws://host:++80/",
        "ws://host:-80/",
        "ws://host:65536/",
        "ws://host:655350/",
        "ws://host:99999999999999999999999/",
        "ws://host:8 0/",
        "ws://host:８０/",
        "ws://[::1]:/",
        "ws://[::1]:0/",
        "ws://host/\u{a0}",
        "ws://host/\u{3000}x",
        "ws://host/\t",
        "ws://?x",
        "ws://#x",
    ] {
        check(
            Config::builder(bad),
            ConfigField::Url,
            ConfigProblem::MalformedUrl,
        );
    }
    check(
        Config::builder("wś://host/"),
        ConfigField::Url,
        ConfigProblem::NotWebSocketUrl,
    );
    check(
        base()
            .protocol()
            .fallback(FallbackConfig::new("HTTPS://host:0/")),
        ConfigField::FallbackPollUrl,
        ConfigProblem::MalformedUrl,
    );
}

#[test]
fn subprotocols_and_query_names() {
    check(
        base().protocols(["chat v2"]),
        ConfigField::Protocols,
        ConfigProblem::InvalidSubprotocol,
    );
    check(
        base().protocols([""]),
        ConfigField::Protocols,
        ConfigProblem::InvalidSubprotocol,
    );
    check(
        base().auth(AuthConfig {
            placement: TokenPlacement::Query("a=b".into()),
            ..AuthConfig::default()
        }),
        ConfigField::AuthPlacement,
        ConfigProblem::InvalidQueryName,
    );
}

#[test]
fn backoff() {
    let b = BackoffConfig::default;
    check(
        base().backoff(BackoffConfig {
            initial_delay: Duration::ZERO,
            ..b()
        }),
        ConfigField::BackoffInitialDelay,
        ConfigProblem::Zero,
    );
    check(
        base().backoff(BackoffConfig {
            max_delay: Duration::ZERO,
            ..b()
        }),
        ConfigField::BackoffMaxDelay,
        ConfigProblem::Zero,
    );
    check(
        base().backoff(BackoffConfig {
            initial_delay: Duration::from_secs(20),
            max_delay: Duration::from_secs(10),
            ..b()
        }),
        ConfigField::BackoffInitialDelay,
        ConfigProblem::MustNotExceed {
            other: ConfigField::BackoffMaxDelay,
        },
    );
    // One delay given alone bends the other's default; both given are taken as they are.
    let s = Duration::from_secs;
    for one in [(Some(s(30)), None), (None, Some(Duration::from_millis(1)))] {
        assert!(base()
            .backoff(BackoffConfig::with_delays(one.0, one.1))
            .build()
            .is_ok());
    }
    check(
        base().backoff(BackoffConfig::with_delays(Some(s(20)), Some(s(10)))),
        ConfigField::BackoffInitialDelay,
        ConfigProblem::MustNotExceed {
            other: ConfigField::BackoffMaxDelay,
        },
    );
    for factor in [0.5, f64::NAN, f64::INFINITY, 1000.0] {
        let e = err(base().backoff(BackoffConfig { factor, ..b() }));
        assert_eq!(e.field, ConfigField::BackoffFactor);
        assert!(matches!(e.problem, ConfigProblem::OutOfRange { .. }));
    }
    check(
        base().backoff(BackoffConfig {
            max_attempts: Some(0),
            ..b()
        }),
        ConfigField::BackoffMaxAttempts,
        ConfigProblem::Zero,
    );
}

#[test]
fn timeouts() {
    check(
        base().connect_timeout(Duration::ZERO),
        ConfigField::ConnectTimeout,
        ConfigProblem::Zero,
    );
    check(
        base().resume_gap(Duration::ZERO),
        ConfigField::ResumeGap,
        ConfigProblem::Zero,
    );
    check(
        base().liveness_timeout(Duration::ZERO),
        ConfigField::LivenessTimeout,
        ConfigProblem::Zero,
    );
    check(
        base().close_linger(Duration::ZERO),
        ConfigField::CloseLinger,
        ConfigProblem::Zero,
    );
    check(
        base().unread_limits(10, 0),
        ConfigField::MaxUnreadBytes,
        ConfigProblem::Zero,
    );
    check(
        base().unread_limits(0, 1024),
        ConfigField::MaxUnreadMessages,
        ConfigProblem::Zero,
    );
    check(
        base().ack(0, Duration::from_millis(5)),
        ConfigField::AckEvery,
        ConfigProblem::Zero,
    );
    check(
        base().ack(8, Duration::ZERO),
        ConfigField::AckDelay,
        ConfigProblem::Zero,
    );
    check(
        base().max_message_bytes(0),
        ConfigField::MaxMessageBytes,
        ConfigProblem::Zero,
    );
    check(
        base().auth(AuthConfig {
            fetch_timeout: Duration::ZERO,
            ..AuthConfig::default()
        }),
        ConfigField::AuthFetchTimeout,
        ConfigProblem::Zero,
    );
}

#[test]
fn heartbeat() {
    let h = HeartbeatConfig::default;
    check(
        base().heartbeat(Some(HeartbeatConfig {
            interval: Duration::ZERO,
            ..h()
        })),
        ConfigField::HeartbeatInterval,
        ConfigProblem::Zero,
    );
    check(
        base().heartbeat(Some(HeartbeatConfig {
            timeout: Duration::ZERO,
            ..h()
        })),
        ConfigField::HeartbeatTimeout,
        ConfigProblem::Zero,
    );
    check(
        base().heartbeat(Some(HeartbeatConfig {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            ..h()
        })),
        ConfigField::HeartbeatTimeout,
        ConfigProblem::MustNotExceed {
            other: ConfigField::HeartbeatInterval,
        },
    );
    check(
        base().heartbeat(Some(HeartbeatConfig {
            max_missed: 0,
            ..h()
        })),
        ConfigField::HeartbeatMaxMissed,
        ConfigProblem::Zero,
    );
    check(
        base().plain_heartbeat("", "pong"),
        ConfigField::WireHeartbeat,
        ConfigProblem::Empty,
    );
    base().heartbeat(None).build().unwrap();
}

#[test]
fn quality() {
    let q = QualityConfig::default;
    check(
        base().quality(QualityConfig { window: 0, ..q() }),
        ConfigField::QualityWindow,
        ConfigProblem::Zero,
    );
    check(
        base().quality(QualityConfig {
            max_age: Duration::ZERO,
            ..q()
        }),
        ConfigField::QualityMaxAge,
        ConfigProblem::Zero,
    );
    check(
        base().quality(QualityConfig {
            hysteresis: 0,
            ..q()
        }),
        ConfigField::QualityHysteresis,
        ConfigProblem::Zero,
    );
    let mut swapped = q();
    swapped.levels.swap(1, 2);
    check(
        base().quality(swapped),
        ConfigField::QualityLevels,
        ConfigProblem::OutOfOrder,
    );
    let mut bad = q();
    bad.levels[0] = QualityBound {
        rtt: Duration::from_millis(10),
        loss: 1.5,
    };
    let e = err(base().quality(bad));
    assert_eq!(e.field, ConfigField::QualityLevels);
    assert!(matches!(e.problem, ConfigProblem::OutOfRange { .. }));
    let mut nan = q();
    nan.levels[3].loss = f64::NAN;
    assert_eq!(err(base().quality(nan)).field, ConfigField::QualityLevels);
}

#[test]
fn queue() {
    let q = QueueConfig::default;
    check(
        base().queue(QueueConfig {
            max_messages: 0,
            ..q()
        }),
        ConfigField::QueueMaxMessages,
        ConfigProblem::Zero,
    );
    check(
        base().queue(QueueConfig {
            max_bytes: 0,
            ..q()
        }),
        ConfigField::QueueMaxBytes,
        ConfigProblem::Zero,
    );
    check(
        base().queue(QueueConfig {
            max_age: Some(Duration::ZERO),
            ..q()
        }),
        ConfigField::QueueMaxAge,
        ConfigProblem::Zero,
    );
}

#[test]
fn fallback() {
    let f = || FallbackConfig::new("https://example.com/poll");
    check(
        base().fallback(f()),
        ConfigField::Fallback,
        ConfigProblem::NeedsProtocol,
    );
    let p = || base().protocol();
    check(
        p().fallback(FallbackConfig {
            after_failures: 0,
            ..f()
        }),
        ConfigField::FallbackAfterFailures,
        ConfigProblem::Zero,
    );
    check(
        p().fallback(FallbackConfig {
            min_interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(1),
            ..f()
        }),
        ConfigField::FallbackMinInterval,
        ConfigProblem::MustNotExceed {
            other: ConfigField::FallbackMaxInterval,
        },
    );
    for (field, mut cfg) in [
        (ConfigField::FallbackMinInterval, f()),
        (ConfigField::FallbackMaxInterval, f()),
        (ConfigField::FallbackProbeInterval, f()),
        (ConfigField::FallbackProbeTimeout, f()),
        (ConfigField::FallbackRequestTimeout, f()),
    ] {
        match field {
            ConfigField::FallbackMinInterval => cfg.min_interval = Duration::ZERO,
            ConfigField::FallbackMaxInterval => cfg.max_interval = Duration::ZERO,
            ConfigField::FallbackProbeInterval => cfg.probe_interval = Duration::ZERO,
            ConfigField::FallbackProbeTimeout => cfg.probe_timeout = Duration::ZERO,
            _ => cfg.request_timeout = Duration::ZERO,
        }
        check(p().fallback(cfg), field, ConfigProblem::Zero);
    }
}

#[test]
fn close_rules() {
    check(
        base().close_rule(CloseRule::range(4100, 4000, CloseClass::Fatal)),
        ConfigField::CloseRules,
        ConfigProblem::OutOfOrder,
    );
}

#[test]
fn connection_new_validates_a_hand_edited_config() {
    let mut config = base().build().unwrap();
    config.queue.max_messages = 0;
    let e = Connection::new(config, Instant::now(), tether_core::Entropy::fixed(1))
        .expect_err("rejected");
    assert_eq!(e.field, ConfigField::QueueMaxMessages);
}
