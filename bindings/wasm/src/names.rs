//! How the core's configuration fields are spelled in JavaScript, so that a
//! [`ConfigError`] names the option the user actually wrote.

use tether_core::{ConfigError, ConfigProblem};

/// The JavaScript option for a core field (`backoff.initial_delay` →
/// `options.backoff.initialDelayMs`).
pub fn js_option(field: &str) -> String {
    let known = match field {
        "url" => "url",
        "protocols" => "options.protocols",
        "connect_timeout" => "options.connectTimeoutMs",
        "max_retry_hint" => "options.maxRetryHintMs",
        "backoff.initial_delay" => "options.backoff.initialDelayMs",
        "backoff.max_delay" => "options.backoff.maxDelayMs",
        "backoff.factor" => "options.backoff.factor",
        "backoff.max_attempts" => "options.backoff.maxAttempts",
        "heartbeat.interval" => "options.heartbeat.intervalMs",
        "heartbeat.timeout" => "options.heartbeat.timeoutMs",
        "heartbeat.max_missed" => "options.heartbeat.maxMissed",
        "wire.heartbeat" => "options.heartbeat.ping",
        "quality.window" => "options.quality.window",
        "quality.hysteresis" => "options.quality.hysteresis",
        "quality.levels" => "options.quality.levels",
        "queue.max_messages" => "options.queue.maxMessages",
        "queue.max_bytes" => "options.queue.maxBytes",
        "queue.max_age" => "options.queue.maxAgeMs",
        "fallback" | "fallback.poll_url" => "options.pollUrl",
        "fallback.after_failures" => "options.fallback.afterFailures",
        "fallback.min_interval" => "options.fallback.minIntervalMs",
        "fallback.max_interval" => "options.fallback.maxIntervalMs",
        "fallback.probe_interval" => "options.fallback.probeIntervalMs",
        "fallback.request_timeout" => "options.fallback.requestTimeoutMs",
        "auth.fetch_timeout" => "options.auth.fetchTimeoutMs",
        "auth.refresh_lead" => "options.auth.refreshLeadMs",
        "auth.placement" => "options.auth.queryParam",
        "close_rules" => "options.closeRules",
        "resume_gap" => "options.resumeGapMs",
        "liveness_timeout" => "options.livenessTimeoutMs",
        "close_linger" => "options.closeLingerMs",
        "max_message_bytes" => "options.maxMessageBytes",
        "ack_every" => "options.ack.every",
        "ack_delay" => "options.ack.delayMs",
        "seed" => "options.seed",
        other => {
            let mut name = String::from("options.");
            name.push_str(&camel_case(other));
            return name;
        }
    };
    known.to_owned()
}

/// `a_b.c_d` → `aB.cD`: the spelling of a field this table does not know yet. The
/// core's field names are ASCII: `char::to_uppercase` would ship Unicode's case table
/// (about 12 kB) for nothing.
fn camel_case(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut upper = false;
    for c in field.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The message of the `RangeError` thrown for `error`, naming JavaScript options. Built
/// with `push_str`: a `format!` per message costs more wasm than the message.
pub fn config_message(error: &ConfigError) -> String {
    let mut message = js_option(error.field);
    message.push(' ');
    let problem = match &error.problem {
        ConfigProblem::Zero => "must be greater than zero",
        ConfigProblem::Empty => "must not be empty",
        ConfigProblem::MustNotExceed { other } => {
            message.push_str("must not exceed ");
            message.push_str(&js_option(other));
            return message;
        }
        ConfigProblem::OutOfRange { expected } => {
            message.push_str("must be ");
            expected
        }
        ConfigProblem::OutOfOrder => "must be in increasing order",
        ConfigProblem::NotWebSocketUrl => "must be a ws://, wss://, http:// or https:// URL",
        ConfigProblem::NotHttpUrl => "must be an http:// or https:// URL",
        ConfigProblem::MalformedUrl => "is not a valid URL (no host, or white space)",
        ConfigProblem::InvalidSubprotocol => "must hold valid subprotocol names (HTTP tokens)",
        ConfigProblem::InvalidQueryName => "must be a valid query parameter name (an HTTP token)",
        ConfigProblem::NeedsProtocol => "needs protocol: true (the Tether protocol)",
        _ => "is invalid",
    };
    message.push_str(problem);
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_core::{BackoffConfig, Config, Duration, FallbackConfig, HeartbeatConfig};

    #[test]
    fn every_field_the_core_names_has_a_javascript_spelling() {
        let cases: Vec<(Result<Config, ConfigError>, &str)> = vec![
            (
                Config::builder("ftp://x").build(),
                "url must be a ws://, wss://, http:// or https:// URL",
            ),
            (
                Config::builder("ws://x")
                    .connect_timeout(Duration::ZERO)
                    .build(),
                "options.connectTimeoutMs must be greater than zero",
            ),
            (
                Config::builder("ws://x")
                    .backoff(BackoffConfig {
                        initial_delay: Duration::from_secs(20),
                        ..BackoffConfig::default()
                    })
                    .build(),
                "options.backoff.initialDelayMs must not exceed options.backoff.maxDelayMs",
            ),
            (
                Config::builder("ws://x")
                    .heartbeat(Some(HeartbeatConfig {
                        max_missed: 0,
                        ..HeartbeatConfig::default()
                    }))
                    .build(),
                "options.heartbeat.maxMissed must be greater than zero",
            ),
            (
                Config::builder("ws://x")
                    .fallback(FallbackConfig::new("http://x/poll"))
                    .build(),
                "options.pollUrl needs protocol: true (the Tether protocol)",
            ),
            (
                Config::builder("ws://x")
                    .protocol()
                    .fallback(FallbackConfig::new("ws://x/poll"))
                    .build(),
                "options.pollUrl must be an http:// or https:// URL",
            ),
        ];
        for (result, message) in cases {
            assert_eq!(config_message(&result.unwrap_err()), message);
        }
    }

    #[test]
    fn unknown_fields_fall_back_to_camel_case() {
        assert_eq!(
            js_option("some_new.field_name"),
            "options.someNew.fieldName"
        );
    }
}
