//! Human durations: `150ms`, `30s`, `5m`, `1h30m`, `2d`.
//!
//! Runbooks never take a bare number where time is meant (`delay: 3` — seconds? ms?): the
//! unit is required, and the error says so.

use std::fmt;
use std::time::Duration as StdDuration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::yaml::de::is_placeholder;

/// A span of time written with units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub StdDuration);

const UNITS: &[(&str, u64)] = &[
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
    ("w", 604_800_000),
];

impl Duration {
    pub const ZERO: Duration = Duration(StdDuration::ZERO);

    pub fn from_secs(s: u64) -> Duration {
        Duration(StdDuration::from_secs(s))
    }

    pub fn from_millis(ms: u64) -> Duration {
        Duration(StdDuration::from_millis(ms))
    }

    pub fn std(self) -> StdDuration {
        self.0
    }

    /// Parses `1h30m`, `250ms`, `0s`. Fractions are allowed on the last part: `1.5s`.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let s = text.trim();
        if s.is_empty() {
            return Err("expected a duration such as `30s`, found an empty string".into());
        }
        if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err(format!("`{s}` has no unit; write `{s}s`, `{s}ms` or `{s}m`"));
        }
        // In microseconds, exactly: decimals are read as digits, never as floats, so a
        // duration printed and read back is the same duration.
        let mut total_us: u128 = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let number_len = rest.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
            if number_len == 0 {
                return Err(format!("invalid duration `{s}`: expected a number at `{rest}`; use units ms, s, m, h, d, w"));
            }
            let text = &rest[..number_len];
            let not_a_number = || format!("invalid duration `{s}`: `{text}` is not a number");
            let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
            if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') || whole.len() > 20 {
                return Err(not_a_number());
            }
            rest = rest[number_len..].trim_start();
            let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
            let unit = &rest[..unit_len];
            let Some(&(_, ms)) = UNITS.iter().find(|(u, _)| *u == unit) else {
                return Err(if unit.is_empty() {
                    format!("invalid duration `{s}`: a number needs a unit (ms, s, m, h, d, w)")
                } else {
                    format!("invalid duration `{s}`: unknown unit `{unit}`; use ms, s, m, h, d or w")
                });
            };
            let unit_us = u128::from(ms) * 1000;
            let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| not_a_number())? };
            // Digits past the microsecond of the largest unit change nothing.
            let digits = &fraction[..fraction.len().min(12)];
            let scale = 10u128.pow(digits.len() as u32);
            let fraction: u128 = if digits.is_empty() { 0 } else { digits.parse().map_err(|_| not_a_number())? };
            total_us += whole * unit_us + (fraction * unit_us + scale / 2) / scale;
            if total_us > 1_000_000_000_000_000_000 {
                return Err(format!("duration `{s}` is too long"));
            }
            rest = rest[unit_len..].trim_start();
        }
        Ok(Duration(StdDuration::from_micros(total_us as u64)))
    }
}

impl fmt::Display for Duration {
    /// The shortest exact form: `150ms`, `30s`, `1h30m`, `1.5s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.0.as_micros();
        if micros == 0 {
            return f.write_str("0s");
        }
        // Decimals written from integers (exact), trailing zeros dropped.
        let decimal = |whole: u128, part: u128, width: usize| format!("{whole}.{part:0width$}").trim_end_matches('0').to_string();
        if !micros.is_multiple_of(1000) {
            return write!(f, "{}ms", decimal(micros / 1000, micros % 1000, 3));
        }
        let mut ms = (micros / 1000) as u64;
        if ms < 1000 {
            return write!(f, "{ms}ms");
        }
        if !ms.is_multiple_of(1000) {
            return write!(f, "{}s", decimal(u128::from(ms / 1000), u128::from(ms % 1000), 3));
        }
        for &(unit, size) in UNITS.iter().rev().filter(|(u, _)| *u != "ms") {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

/// Short wall-clock text for reports: `12ms`, `1.2s`, `2m03s`.
pub fn short(d: StdDuration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 1.0 {
        format!("{:.2}ms", ms)
    } else if ms < 1000.0 {
        format!("{ms:.0}ms")
    } else if ms < 60_000.0 {
        format!("{:.1}s", ms / 1000.0)
    } else {
        let s = d.as_secs();
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as `30s`, `5m` or `150ms`")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Duration, E> {
                if is_placeholder(s) {
                    return Ok(Duration::ZERO);
                }
                Duration::parse(s).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Duration, E> {
                if v == 0 {
                    return Ok(Duration::ZERO);
                }
                Err(E::custom(format!("`{v}` has no unit; write `{v}s`, `{v}ms` or `{v}m`")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Duration, E> {
                Err(E::custom(format!("`{v}` is not a duration; write e.g. `{}s`", v.unsigned_abs())))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Duration, E> {
                Err(E::custom(format!("`{v}` has no unit; write `{v}s`")))
            }
        }
        d.deserialize_str(V)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Duration {
    /// Why a zero `timeout` is refused.
    pub const ZERO_TIMEOUT: &'static str = "`timeout` must be longer than 0s";
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(\\.[0-9]+)?(ms|s|m|h|d|w))+$",
            "description": "A duration with units: 150ms, 30s, 5m, 1h30m, 2d",
        })
    }
}

/// An age in whole seconds for messages: `42s`, `3d2h1m` (an hour or more drops its
/// seconds); a negative one (a clock ahead) is `0s`.
pub fn age(seconds: i64) -> String {
    let s = seconds.max(0) as u64;
    Duration::from_secs(if s >= 3600 { s - s % 60 } else { s }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_durations() {
        assert_eq!(age(42), "42s");
        assert_eq!(age(3 * 86400 + 2 * 3600 + 61), "3d2h1m");
        assert_eq!(age(-5), "0s");
    }

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(Duration::parse("150ms").unwrap(), Duration::from_millis(150));
        assert_eq!(Duration::parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(Duration::parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(Duration::parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(Duration::parse("0s").unwrap(), Duration::ZERO);
        assert_eq!(Duration::parse("2d").unwrap(), Duration::from_secs(172_800));
    }

    #[test]
    fn rejects_bad_durations_with_a_reason() {
        assert_eq!(Duration::parse("3").unwrap_err(), "`3` has no unit; write `3s`, `3ms` or `3m`");
        assert_eq!(Duration::parse("5 minutes").unwrap_err(), "invalid duration `5 minutes`: unknown unit `minutes`; use ms, s, m, h, d or w");
        assert_eq!(Duration::parse("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(Duration::parse("10x").unwrap_err(), "invalid duration `10x`: unknown unit `x`; use ms, s, m, h, d or w");
        assert!(Duration::parse("").is_err());
    }

    #[test]
    fn displays_the_shortest_exact_form() {
        for s in ["150ms", "30s", "1h30m", "1.5s", "0s", "2d", "1w", "0.25ms", "34563456001.52s"] {
            assert_eq!(Duration::parse(s).unwrap().to_string(), s);
        }
        // Found by fuzzing (fuzz/regressions/units): a long duration with milliseconds read
        // back 4µs short when decimals were floats.
        let long = Duration::parse("1520ms0d400040d").unwrap();
        assert_eq!(Duration::parse(&long.to_string()).unwrap(), long);
        assert_eq!(Duration::parse(".5s").unwrap(), Duration::from_millis(500));
        assert_eq!(Duration::parse("1.2345678s").unwrap(), Duration(StdDuration::from_micros(1_234_568)));
        assert!(Duration::parse("1.2.3s").unwrap_err().contains("is not a number"));
        assert!(Duration::parse(".s").unwrap_err().contains("is not a number"));
        assert_eq!(Duration::parse("99999999999999999999w").unwrap_err(), "duration `99999999999999999999w` is too long");
    }
}
