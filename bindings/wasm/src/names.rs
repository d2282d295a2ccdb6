//! The core's configuration fields by number, for `js/options.js`, which spells each as
//! the option the user wrote (`backoff.initial_delay` → `options.backoff.initialDelayMs`)
//! in the `RangeError` of a [`tether_core::ConfigError`].

use tether_core::ConfigField;

/// The index of `field` in `FIELDS` of `js/options.js`. Every field has its arm: a field
/// the core adds fails this build until it has a number (and a spelling there).
pub fn field_code(field: ConfigField) -> u8 {
    match field {
        ConfigField::Url => 0,
        ConfigField::Protocols => 1,
        ConfigField::ConnectTimeout => 2,
        ConfigField::MaxRetryHint => 3,
        ConfigField::BackoffInitialDelay => 4,
        ConfigField::BackoffMaxDelay => 5,
        ConfigField::BackoffFactor => 6,
        ConfigField::BackoffMaxAttempts => 7,
        ConfigField::HeartbeatInterval => 8,
        ConfigField::HeartbeatTimeout => 9,
        ConfigField::HeartbeatMaxMissed => 10,
        ConfigField::WireHeartbeat => 11,
        ConfigField::QualityWindow => 12,
        ConfigField::QualityMaxAge => 13,
        ConfigField::QualityHysteresis => 14,
        ConfigField::QualityLevels => 15,
        ConfigField::QueueMaxMessages => 16,
        ConfigField::QueueMaxBytes => 17,
        ConfigField::QueueMaxAge => 18,
        ConfigField::Fallback | ConfigField::FallbackPollUrl => 19,
        ConfigField::FallbackAfterFailures => 20,
        ConfigField::FallbackMinInterval => 21,
        ConfigField::FallbackMaxInterval => 22,
        ConfigField::FallbackProbeInterval => 23,
        ConfigField::FallbackProbeTimeout => 24,
        ConfigField::FallbackRequestTimeout => 25,
        ConfigField::AuthFetchTimeout => 26,
        ConfigField::AuthPlacement => 27,
        ConfigField::CloseRules => 28,
        ConfigField::ResumeGap => 29,
        ConfigField::LivenessTimeout => 30,
        ConfigField::CloseLinger => 31,
        ConfigField::MaxUnreadBytes => 32,
        ConfigField::MaxUnreadMessages => 33,
        ConfigField::MaxMessageBytes => 34,
        ConfigField::AckEvery => 35,
        ConfigField::AckDelay => 36,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `FIELDS` of js/options.js, in order.
    fn js_fields() -> Vec<&'static str> {
        let source = include_str!("../js/options.js");
        let start = source
            .find("const FIELDS = [")
            .expect("FIELDS in js/options.js");
        let end = start + source[start..].find("];").expect("the end of FIELDS");
        source[start..end]
            .lines()
            .skip(1)
            .map(|line| line.trim().trim_end_matches(',').trim_matches('\''))
            .collect()
    }

    #[test]
    fn every_field_the_core_names_has_a_javascript_spelling() {
        use ConfigField::*;
        let spellings = [
            (Url, "url"),
            (Protocols, "options.protocols"),
            (ConnectTimeout, "options.connectTimeoutMs"),
            (MaxRetryHint, "options.maxRetryHintMs"),
            (BackoffInitialDelay, "options.backoff.initialDelayMs"),
            (BackoffMaxDelay, "options.backoff.maxDelayMs"),
            (BackoffFactor, "options.backoff.factor"),
            (BackoffMaxAttempts, "options.backoff.maxAttempts"),
            (HeartbeatInterval, "options.heartbeat.intervalMs"),
            (HeartbeatTimeout, "options.heartbeat.timeoutMs"),
            (HeartbeatMaxMissed, "options.heartbeat.maxMissed"),
            (WireHeartbeat, "options.heartbeat.ping"),
            (QualityWindow, "options.quality.window"),
            (QualityMaxAge, "options.quality.maxAgeMs"),
            (QualityHysteresis, "options.quality.hysteresis"),
            (QualityLevels, "options.quality.levels"),
            (QueueMaxMessages, "options.queue.maxMessages"),
            (QueueMaxBytes, "options.queue.maxBytes"),
            (QueueMaxAge, "options.queue.maxAgeMs"),
            (Fallback, "options.pollUrl"),
            (FallbackPollUrl, "options.pollUrl"),
            (FallbackAfterFailures, "options.fallback.afterFailures"),
            (FallbackMinInterval, "options.fallback.minIntervalMs"),
            (FallbackMaxInterval, "options.fallback.maxIntervalMs"),
            (FallbackProbeInterval, "options.fallback.probeIntervalMs"),
            (FallbackProbeTimeout, "options.fallback.probeTimeoutMs"),
            (FallbackRequestTimeout, "options.fallback.requestTimeoutMs"),
            (AuthFetchTimeout, "options.auth.fetchTimeoutMs"),
            (AuthPlacement, "options.auth.queryParam"),
            (CloseRules, "options.closeRules"),
            (ResumeGap, "options.resumeGapMs"),
            (LivenessTimeout, "options.livenessTimeoutMs"),
            (CloseLinger, "options.closeLingerMs"),
            (MaxUnreadBytes, "options.maxUnreadBytes"),
            (MaxUnreadMessages, "options.maxUnreadMessages"),
            (MaxMessageBytes, "options.maxMessageBytes"),
            (AckEvery, "options.ack.every"),
            (AckDelay, "options.ack.delayMs"),
        ];
        let fields = js_fields();
        for (field, spelling) in spellings {
            assert_eq!(
                fields.get(usize::from(field_code(field))),
                Some(&spelling),
                "{field}"
            );
        }
        // One spelling per number, none left over.
        assert_eq!(fields.len(), usize::from(field_code(AckDelay)) + 1);
    }
}
