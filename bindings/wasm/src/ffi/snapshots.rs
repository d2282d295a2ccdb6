//! Getters and snapshots: the state, quality and client id, `metrics()`, `health()`,
//! `handoff()`, and the self-test's criteria and verdicts.

use tether_core::Duration;

use super::drain::{quality, state, terminal};
use super::options::Numbers;
use super::*;

// ---------------------------------------------------------------------------------------
// Getters and snapshots.

/// The state (0 disconnected … 5 closed), or -1 for no client.
#[no_mangle]
pub extern "C" fn tw_state(c: u32) -> i32 {
    client(c).map_or(-1, |d| i32::from(state(d.connection().state())))
}

/// The quality (0 excellent … 4 critical), or -1 before it is measured.
#[cfg(feature = "quality")]
#[no_mangle]
pub extern "C" fn tw_quality(c: u32) -> i32 {
    client(c)
        .and_then(|d| d.connection().quality())
        .map_or(-1, |q| i32::from(quality(q)))
}

/// The client's id (8 bytes in `tw_out`).
#[no_mangle]
pub extern "C" fn tw_client_id(c: u32) -> usize {
    answer(|w| {
        if let Some(d) = client(c) {
            w.u64(d.connection().client_id());
        }
    })
}

/// `metrics()`: every figure in `tw_out`, in the order of bindings/wasm's `metrics`.
#[cfg(feature = "metrics")]
#[no_mangle]
pub extern "C" fn tw_metrics(c: u32, now: f64) -> usize {
    answer(|w| {
        let Some(d) = client(c) else { return };
        let m = d.connection().metrics(at(now));
        w.u8(state(m.state));
        w.u32(m.attempt);
        w.u32(m.reconnects);
        w.opt_ms(m.uptime);
        w.ms(m.total_uptime);
        w.opt(m.last_close_code.map(f64::from));
        match &m.last_close_reason {
            Some(r) => {
                w.u8(1);
                w.str(r);
            }
            None => w.u8(0),
        }
        w.opt_ms(m.rtt);
        w.opt_ms(m.rtt_mean);
        w.opt_ms(m.rtt_p50);
        w.opt_ms(m.rtt_p99);
        w.opt_ms(m.jitter);
        w.f64(m.loss);
        w.u8(m.quality.map_or(255, quality));
        w.u8(m.reliability);
        for n in [
            m.messages_in,
            m.messages_out,
            m.bytes_in,
            m.bytes_out,
            m.queue_depth as u64,
            m.queue_bytes as u64,
            m.unread_bytes_peak,
        ] {
            w.f64(n as f64);
        }
        w.u8(u8::from(m.reading_paused));
        w.u8(u8::from(m.fallback_active));
        match &m.terminal_reason {
            Some(t) => {
                w.u8(1);
                terminal(w, t);
            }
            None => w.u8(0),
        }
    })
}

/// `health()`: the alerts (severity, kind, value, threshold) and the recommendations.
#[cfg(feature = "health")]
#[no_mangle]
pub extern "C" fn tw_health(c: u32, now: f64) -> usize {
    use tether_core::advice::{assess, AlertKind, AlertThresholds, Recommendation, Severity};
    answer(|w| {
        let Some(d) = client(c) else { return };
        let a = assess(
            &d.connection().metrics(at(now)),
            &AlertThresholds::default(),
        );
        w.u32(a.alerts.len() as u32);
        for alert in &a.alerts {
            w.u8(match alert.severity {
                Severity::Warning => 0,
                Severity::Error => 1,
                _ => 2,
            });
            let (kind, value, threshold) = match &alert.kind {
                AlertKind::Latency { mean, threshold } => (
                    0,
                    mean.as_secs_f64() * 1000.0,
                    threshold.as_secs_f64() * 1000.0,
                ),
                AlertKind::Loss { loss, threshold } => (1, *loss, *threshold),
                AlertKind::QualityCritical => (2, f64::NAN, f64::NAN),
                AlertKind::Unreachable { attempts } => (3, f64::from(*attempts), f64::NAN),
                _ => (4, f64::NAN, f64::NAN),
            };
            w.u8(kind);
            w.f64(value);
            w.f64(threshold);
        }
        w.u32(a.recommendations.len() as u32);
        for r in &a.recommendations {
            w.u8(match r {
                Recommendation::AllowWebSockets => 0,
                Recommendation::ReduceTraffic => 1,
                Recommendation::ConnectedElsewhere => 2,
                Recommendation::CheckCredentials => 3,
                Recommendation::CheckServer => 4,
                Recommendation::ReadFaster => 5,
                Recommendation::MessagesWaiting => 6,
                _ => 7,
            });
        }
    })
}

/// `handoff()`: the session in `tw_out` (as `session` reads it), or 0 before a welcome.
#[cfg(feature = "handoff")]
#[no_mangle]
pub extern "C" fn tw_handoff(c: u32) -> usize {
    let Some(h) = client(c).and_then(|d| d.connection().handoff()) else {
        return 0;
    };
    answer(|w| {
        w.u64(h.client_id);
        w.u64(h.session);
        w.str(&h.secret.to_hex());
        w.u64(h.last_transport);
        w.u64(h.recv_seq);
        w.u64(h.send_seq);
        w.u32(h.unacknowledged.len() as u32);
        for (seq, data) in &h.unacknowledged {
            w.u64(*seq);
            w.payload(data);
        }
        w.u32(h.unsent.len() as u32);
        for data in &h.unsent {
            w.payload(data);
        }
    })
}

/// The self-test's criteria from `r` (a count, then up to 7 slots; NaN: the default).
#[cfg(feature = "selftest")]
pub(super) fn criteria(r: &mut Reader<'_>) -> Result<tether_core::selftest::Criteria, u32> {
    use tether_core::selftest::{Criteria, CriteriaField};
    let n = Numbers::read(r);
    let mut c = Criteria::default();
    n.set_ms(0, &mut c.connect_within);
    n.set_count(1, &mut c.round_trips);
    n.set_ms(2, &mut c.latency_below);
    n.set_count(3, &mut c.burst);
    n.set_ms(4, &mut c.burst_within);
    n.set_ms(5, &mut c.stable_for);
    n.set_ms(6, &mut c.reconnect_within);
    c.validate().map_err(|field| match field {
        CriteriaField::ConnectWithin => 0u32,
        CriteriaField::RoundTrips => 1,
        CriteriaField::LatencyBelow => 2,
        CriteriaField::Burst => 3,
        CriteriaField::BurstWithin => 4,
        CriteriaField::StableFor => 5,
        _ => 6,
    })?;
    Ok(c)
}

/// `selfTestCriteria`: the criteria of the input, checked, in `tw_out` (7 numbers);
/// returns their length, or -1 - the index of the criterion out of range.
#[cfg(feature = "selftest")]
#[no_mangle]
pub extern "C" fn tw_criteria() -> i32 {
    match criteria(&mut Reader::input()) {
        Ok(c) => answer(|w| {
            w.ms(c.connect_within);
            w.f64(f64::from(c.round_trips));
            w.ms(c.latency_below);
            w.f64(f64::from(c.burst));
            w.ms(c.burst_within);
            w.ms(c.stable_for);
            w.ms(c.reconnect_within);
        }) as i32,
        Err(field) => -1 - field as i32,
    }
}

/// Whether a measurement meets check `check` (0 connectivity … 4 reconnection): the
/// input is the criteria (as `tw_criteria` reads them), then a count and the measured
/// `ms`, `drops`, `sent`, `inOrder`, `misordered`, `tookMs` (NaN: not a number). Returns
/// 1 or 0, or -1 - the criterion out of range.
#[cfg(feature = "selftest")]
#[no_mangle]
pub extern "C" fn tw_selftest_passes(check: u32) -> i32 {
    use tether_core::selftest::{Check, Measurement};
    let mut r = Reader::input();
    let criteria = match criteria(&mut r) {
        Ok(c) => c,
        Err(field) => return -1 - field as i32,
    };
    let check = match check {
        0 => Check::Connectivity,
        1 => Check::Latency,
        2 => Check::HighFrequency,
        3 => Check::Stability,
        _ => Check::Reconnection,
    };
    let m = Numbers::read(&mut r).0;
    let number = |i: usize| m.get(i).copied().filter(|n| n.is_finite() && *n >= 0.0);
    let duration = |i| number(i).map(|n| Duration::from_micros((n * 1000.0).min(1e18) as u64));
    let count = |i| {
        number(i)
            .filter(|n| n.fract() == 0.0)
            .map(|n| n.min(f64::from(u32::MAX)) as u32)
    };
    let measured = if let Some(t) = duration(0) {
        Measurement::Time(t)
    } else if let Some(drops) = count(1) {
        Measurement::Drops(drops)
    } else if let (Some(sent), Some(in_order), Some(misordered), Some(took)) =
        (count(2), count(3), count(4), duration(5))
    {
        Measurement::Echoes {
            sent,
            in_order,
            misordered,
            took,
        }
    } else {
        Measurement::Nothing("")
    };
    i32::from(criteria.passes(check, &measured))
}
