//! The reliability self-test's criteria and verdicts for the npm package's `selfTest`:
//! the package measures, the core decides ([`tether_core::selftest`]), so that a check
//! passes in JavaScript exactly when it would in Rust.

use js_sys::Reflect;
use tether_core::selftest::{Check, Criteria, Measurement};
use tether_core::Duration;
use wasm_bindgen::prelude::*;

use crate::convert::ms;
use crate::errors::type_error;

/// The criteria in the order of CRITERIA in js/options.js (`criteriaObject` names them).
fn js_criteria(c: &Criteria) -> JsValue {
    let values = [
        ms(c.connect_within),
        f64::from(c.round_trips),
        ms(c.latency_below),
        f64::from(c.burst),
        ms(c.burst_within),
        ms(c.stable_for),
        ms(c.reconnect_within),
    ];
    js_sys::Float64Array::from(&values[..]).into()
}

/// The self-test's criteria: the defaults with what `criteria` overrides, checked. A key
/// that is not a criterion or a value of the wrong type throws a `TypeError`; a count
/// outside 1 to 10000 or a duration outside 1 ms to 10 minutes a `RangeError`.
// The wrapper (js/index.js) passes `criteria` as `packCriteria` (js/options.js) packs it
// and names what this returns.
#[wasm_bindgen(js_name = selfTestCriteria, unchecked_return_type = "TetherSelfTestCriteria")]
pub fn self_test_criteria(
    #[wasm_bindgen(unchecked_optional_param_type = "Partial<TetherSelfTestCriteria>")]
    criteria: JsValue,
) -> Result<JsValue, JsValue> {
    crate::options::criteria(&criteria).map(|c| js_criteria(&c))
}

fn number(object: &JsValue, key: &str) -> Option<f64> {
    Reflect::get(object, &JsValue::from_str(key))
        .ok()?
        .as_f64()
        .filter(|n| n.is_finite() && *n >= 0.0)
}

fn duration(object: &JsValue, key: &str) -> Option<Duration> {
    number(object, key).map(|n| Duration::from_micros((n * 1000.0).min(1e18) as u64))
}

/// A whole number: `{ drops: 0.5 }` is no measurement (it would read as 0 drops).
fn count(object: &JsValue, key: &str) -> Option<u32> {
    number(object, key)
        .filter(|n| n.fract() == 0.0)
        .map(|n| n.min(f64::from(u32::MAX)) as u32)
}

/// Whether a measurement meets its check's criterion (the package's `selfTest` calls it;
/// not part of the API). `measured`: `{ ms }` for connectivity, latency and
/// reconnection, `{ sent, inOrder, misordered, tookMs }` for high-frequency, `{ drops }`
/// for stability; anything else (`{ nothing }`) fails.
#[wasm_bindgen(js_name = __selfTestPasses, skip_typescript)]
pub fn self_test_passes(
    criteria: JsValue,
    check: &str,
    measured: JsValue,
) -> Result<bool, JsValue> {
    let criteria = crate::options::criteria(&criteria)?;
    let check = match check {
        "connectivity" => Check::Connectivity,
        "latency" => Check::Latency,
        "high-frequency" => Check::HighFrequency,
        "stability" => Check::Stability,
        "reconnection" => Check::Reconnection,
        _ => return Err(type_error("check must be a self-test check's name")),
    };
    let measured = if let Some(t) = duration(&measured, "ms") {
        Measurement::Time(t)
    } else if let Some(drops) = count(&measured, "drops") {
        Measurement::Drops(drops)
    } else if let (Some(sent), Some(in_order), Some(misordered), Some(took)) = (
        count(&measured, "sent"),
        count(&measured, "inOrder"),
        count(&measured, "misordered"),
        duration(&measured, "tookMs"),
    ) {
        Measurement::Echoes {
            sent,
            in_order,
            misordered,
            took,
        }
    } else {
        Measurement::Nothing("")
    };
    Ok(criteria.passes(check, &measured))
}
