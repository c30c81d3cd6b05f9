//! Human-readable durations in the config file: `"500ms"`, `"10s"`, `"5m"`, `"1h"`.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration written with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dur(pub(crate) Duration);

impl Dur {
    pub(crate) const fn secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }
}

pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| {
        format!("duration {text:?} has no unit; write e.g. \"500ms\", \"10s\", \"5m\" or \"1h\"")
    })?;
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("duration {text:?} must start with a whole number, e.g. \"10s\""))?;
    let millis = match unit {
        "ms" => Some(value),
        "s" => value.checked_mul(1000),
        "m" => value.checked_mul(60_000),
        "h" => value.checked_mul(3_600_000),
        _ => {
            return Err(format!(
                "duration {text:?} has unknown unit {unit:?}; use ms, s, m or h"
            ));
        }
    }
    .ok_or_else(|| format!("duration {text:?} is too large"))?;
    Ok(Duration::from_millis(millis))
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// A duration is a string with a unit; a bare number gets an error that says what to
        /// write instead, rather than serde's "expected a string".
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Text(String),
            Integer(i64),
            Float(f64),
        }
        match Written::deserialize(deserializer)? {
            Written::Text(text) => parse(&text).map(Dur).map_err(serde::de::Error::custom),
            Written::Integer(n) => Err(serde::de::Error::custom(format!(
                "a duration is a string with a unit: write \"{n}s\" (or \"{n}ms\", \"{n}m\", \"{n}h\"), not {n}"
            ))),
            Written::Float(n) => Err(serde::de::Error::custom(format!(
                "a duration is a string with a whole number and a unit, e.g. \"1500ms\", not {n}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse("10").is_err());
        assert!(parse("s").is_err());
        assert!(parse("10 s").is_err());
        assert!(parse("10d").is_err());
        assert!(parse("-1s").is_err());
    }
}
