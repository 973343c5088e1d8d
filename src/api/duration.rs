//! The one duration type of the API: Kubernetes-style strings such as `150ms`, `1.5s`, `10m`.
//!
//! Every duration in a `Chaos` is written as one number and one unit. Compound forms like
//! `1h30m` are refused on purpose: one unit per value keeps manifests easy to read and keeps the
//! CRD's pattern, the CEL `duration()` function and this parser in exact agreement.

use std::{borrow::Cow, fmt, str::FromStr, time::Duration};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The regular expression the CRD schema uses for every duration field.
pub const DURATION_PATTERN: &str = r"^[0-9]+(\.[0-9]+)?(ms|s|m|h)$";

/// A duration as written in a manifest, e.g. `150ms`, `1.5s`, `10m`, `2h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct KubeDuration(pub Duration);

/// Why a duration string was refused; the text is shown to users as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DurationError(String);

impl KubeDuration {
    /// Wraps a standard duration.
    pub const fn new(d: Duration) -> Self {
        Self(d)
    }
    /// A duration of this many milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }
    /// A duration of this many seconds.
    pub const fn from_secs(s: u64) -> Self {
        Self(Duration::from_secs(s))
    }
    /// The standard-library duration.
    pub const fn get(self) -> Duration {
        self.0
    }
    /// True for a zero-length duration.
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl From<Duration> for KubeDuration {
    fn from(d: Duration) -> Self {
        Self(d)
    }
}

impl FromStr for KubeDuration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s).map(Self)
    }
}

/// Parses `NUMBER UNIT` with unit `ms`, `s`, `m` or `h`; the number may have a decimal part.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let expected = || {
        DurationError(format!(
            "{text:?} is not a duration: expected a number and a unit among ms, s, m, h (like 150ms, 1.5s, 10m)"
        ))
    };
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(expected)?;
    let (number, unit) = text.split_at(split);
    let nanos_per_unit: u128 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return Err(expected()),
    };
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) if !f.is_empty() => (w, f),
        Some(_) => return Err(expected()),
        None => (number, ""),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(expected());
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(expected());
    }
    let too_long = || {
        DurationError(format!(
            "{text:?} is too long: no duration may exceed 10000h"
        ))
    };
    // 20 digits would overflow u64 before any range check, so refuse absurd inputs early.
    if whole.len() > 12 {
        return Err(too_long());
    }
    let whole: u128 = whole.parse().map_err(|_| expected())?;
    let mut nanos = whole * nanos_per_unit;
    // Fractions below a nanosecond are dropped, as Kubernetes does.
    let mut scale = nanos_per_unit;
    for digit in fraction.bytes().take(18) {
        scale /= 10;
        nanos += u128::from(digit - b'0') * scale;
    }
    // Far above every field's own limit, so those limits produce the messages users see.
    const LIMIT: u128 = 10_000 * 3_600_000_000_000;
    if nanos > LIMIT {
        return Err(too_long());
    }
    Ok(Duration::from_nanos(nanos as u64))
}

/// Renders the shortest exact form among the accepted units (`1500ms` → `1.5s`).
pub fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    for (unit, per) in [
        ("h", 3_600_000_000_000u128),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
    ] {
        if nanos.is_multiple_of(per) {
            return format!("{}{unit}", nanos / per);
        }
    }
    if nanos >= 1_000_000_000 {
        return format!("{}s", trim_decimal(nanos, 1_000_000_000));
    }
    format!("{}ms", trim_decimal(nanos, 1_000_000))
}

fn trim_decimal(nanos: u128, per: u128) -> String {
    let whole = nanos / per;
    let rest = nanos % per;
    if rest == 0 {
        return whole.to_string();
    }
    let width = per.ilog10() as usize;
    let frac = format!("{rest:0width$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

impl fmt::Display for KubeDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format(self.0))
    }
}

impl Serialize for KubeDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(self.0))
    }
}

impl<'de> Deserialize<'de> for KubeDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for KubeDuration {
    fn schema_name() -> Cow<'static, str> {
        "KubeDuration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "maxLength": 32,
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_decimals() {
        assert_eq!(parse("150ms").unwrap(), Duration::from_millis(150));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse("0.25ms").unwrap(), Duration::from_micros(250));
    }

    #[test]
    fn refuses_what_the_crd_pattern_refuses() {
        for bad in [
            "", "s", "10", "-1s", "1h30m", "1.s", ".5s", "1 s", "1S", "10us", "1e3s", "٣s",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn refuses_huge_values_without_overflow() {
        assert!(parse("99999999999999999999999h").is_err());
        assert!(parse("25d").is_err());
        assert!(parse("10001h").is_err());
        assert!(parse("10000h").is_ok());
    }

    #[test]
    fn formats_round_trip() {
        for text in ["150ms", "1.5s", "10m", "2h", "0s", "0.25ms", "61s"] {
            let d = parse(text).unwrap();
            assert_eq!(parse(&format(d)).unwrap(), d, "{text}");
        }
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format(Duration::from_secs(90)), "90s");
    }
}
