//! The reliability self-test's criteria and verdicts for the npm package's `selfTest`:
//! the package measures, the core decides ([`tether_core::selftest`]), so that a check
//! passes in JavaScript exactly when it would in Rust.

use js_sys::Float64Array;
use tether_core::selftest::{Check, Criteria, Measurement};
use tether_core::Duration;
use wasm_bindgen::prelude::*;

use crate::convert::ms;

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

/// Whether a measurement meets its check's criterion (the package's `selfTest` calls it;
/// not part of the API). `check`: the index of its name in CHECKS of js/index.js (the
/// wrapper checks the name). `measured`: the wrapper's Float64Array of `ms`, `drops`,
/// `sent`, `inOrder`, `misordered`, `tookMs` (NaN for what is not a number): `{ ms }` for
/// connectivity, latency and reconnection, `{ sent, inOrder, misordered, tookMs }` for
/// high-frequency, `{ drops }` for stability; anything else (`{ nothing }`) fails.
#[wasm_bindgen(js_name = __selfTestPasses, skip_typescript)]
pub fn self_test_passes(criteria: JsValue, check: u32, measured: JsValue) -> Result<bool, JsValue> {
    let criteria = crate::options::criteria(&criteria)?;
    let check = match check {
        0 => Check::Connectivity,
        1 => Check::Latency,
        2 => Check::HighFrequency,
        3 => Check::Stability,
        _ => Check::Reconnection,
    };
    let m = measured.unchecked_ref::<Float64Array>().to_vec();
    let number = |i: usize| m.get(i).copied().filter(|n| n.is_finite() && *n >= 0.0);
    let duration = |i| number(i).map(|n| Duration::from_micros((n * 1000.0).min(1e18) as u64));
    // A whole number: `{ drops: 0.5 }` is no measurement (it would read as 0 drops).
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
    Ok(criteria.passes(check, &measured))
}
