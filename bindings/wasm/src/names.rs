//! How the core's configuration fields are spelled in JavaScript, so that a
//! [`ConfigError`] names the option the user actually wrote.

use tether_core::{ConfigError, ConfigField, ConfigProblem};

/// The JavaScript option for a core field (`backoff.initial_delay` →
/// `options.backoff.initialDelayMs`). Every field has its arm: a field the core adds
/// fails this build until it is spelled here. The few the JavaScript options cannot set
/// (their defaults are valid) are spelled as they would be.
pub fn js_option(field: ConfigField) -> &'static str {
    match field {
        ConfigField::Url => "url",
        ConfigField::Protocols => "options.protocols",
        ConfigField::ConnectTimeout => "options.connectTimeoutMs",
        ConfigField::MaxRetryHint => "options.maxRetryHintMs",
        ConfigField::BackoffInitialDelay => "options.backoff.initialDelayMs",
        ConfigField::BackoffMaxDelay => "options.backoff.maxDelayMs",
        ConfigField::BackoffFactor => "options.backoff.factor",
        ConfigField::BackoffMaxAttempts => "options.backoff.maxAttempts",
        ConfigField::HeartbeatInterval => "options.heartbeat.intervalMs",
        ConfigField::HeartbeatTimeout => "options.heartbeat.timeoutMs",
        ConfigField::HeartbeatMaxMissed => "options.heartbeat.maxMissed",
        ConfigField::WireHeartbeat => "options.heartbeat.ping",
        ConfigField::QualityWindow => "options.quality.window",
        ConfigField::QualityMaxAge => "options.quality.maxAgeMs",
        ConfigField::QualityHysteresis => "options.quality.hysteresis",
        ConfigField::QualityLevels => "options.quality.levels",
        ConfigField::QueueMaxMessages => "options.queue.maxMessages",
        ConfigField::QueueMaxBytes => "options.queue.maxBytes",
        ConfigField::QueueMaxAge => "options.queue.maxAgeMs",
        ConfigField::Fallback | ConfigField::FallbackPollUrl => "options.pollUrl",
        ConfigField::FallbackAfterFailures => "options.fallback.afterFailures",
        ConfigField::FallbackMinInterval => "options.fallback.minIntervalMs",
        ConfigField::FallbackMaxInterval => "options.fallback.maxIntervalMs",
        ConfigField::FallbackProbeInterval => "options.fallback.probeIntervalMs",
        ConfigField::FallbackProbeTimeout => "options.fallback.probeTimeoutMs",
        ConfigField::FallbackRequestTimeout => "options.fallback.requestTimeoutMs",
        ConfigField::AuthFetchTimeout => "options.auth.fetchTimeoutMs",
        ConfigField::AuthPlacement => "options.auth.queryParam",
        ConfigField::CloseRules => "options.closeRules",
        ConfigField::ResumeGap => "options.resumeGapMs",
        ConfigField::LivenessTimeout => "options.livenessTimeoutMs",
        ConfigField::CloseLinger => "options.closeLingerMs",
        ConfigField::MaxUnreadBytes => "options.maxUnreadBytes",
        ConfigField::MaxUnreadMessages => "options.maxUnreadMessages",
        ConfigField::MaxMessageBytes => "options.maxMessageBytes",
        ConfigField::AckEvery => "options.ack.every",
        ConfigField::AckDelay => "options.ack.delayMs",
    }
}

/// The message of the `RangeError` thrown for `error`, naming JavaScript options. Built
/// with `push_str`: a `format!` per message costs more wasm than the message.
pub fn config_message(error: &ConfigError) -> String {
    let mut message = js_option(error.field).to_owned();
    message.push(' ');
    let problem = match &error.problem {
        ConfigProblem::Zero => "must be greater than zero",
        ConfigProblem::Empty => "must not be empty",
        ConfigProblem::MustNotExceed { other } => {
            message.push_str("must not exceed ");
            message.push_str(js_option(*other));
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
}
