//! Order statistics of small samples.

use serde_json::{Value, json};

/// The `q` quantile (0-1) by linear interpolation between closest ranks; NaN when empty.
pub(crate) fn quantile(samples: &[f64], q: f64) -> f64 {
    let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

pub(crate) fn median(samples: &[f64]) -> f64 {
    quantile(samples, 0.5)
}

/// Median, quartiles and extremes, plus the samples themselves.
pub(crate) fn summary(samples: &[f64]) -> Value {
    json!({
        "median": round(median(samples)),
        "q1": round(quantile(samples, 0.25)),
        "q3": round(quantile(samples, 0.75)),
        "min": round(quantile(samples, 0.0)),
        "max": round(quantile(samples, 1.0)),
        "n": samples.len(),
        "samples": samples.iter().map(|v| round(*v)).collect::<Vec<_>>(),
    })
}

/// Six significant digits are plenty for a report and keep the JSON readable.
pub(crate) fn round(v: f64) -> Value {
    if !v.is_finite() {
        return Value::Null;
    }
    if v == 0.0 {
        return json!(0.0);
    }
    let digits = 6 - v.abs().log10().ceil() as i32;
    let scale = 10f64.powi(digits.clamp(0, 12));
    json!((v * scale).round() / scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let s = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(median(&s), 3.0);
        assert_eq!(quantile(&s, 0.25), 2.0);
        assert_eq!(quantile(&s, 1.0), 5.0);
        assert_eq!(median(&[1.0, 2.0]), 1.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn rounding() {
        assert_eq!(round(1.234_567_89), json!(1.23457));
        assert_eq!(round(123_456_789.0), json!(123_456_789.0));
        assert_eq!(round(f64::NAN), Value::Null);
    }
}
