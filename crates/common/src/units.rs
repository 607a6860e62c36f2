//! Sizes and durations as people write them in flags and environment
//! variables. The node's flags and the CLI's `--timeout` use these parsers,
//! so both accept the same forms.

use std::time::Duration;

/// The longest duration either parser accepts: one day.
pub const MAX_DURATION: Duration = Duration::from_secs(86_400);

/// Units of a size, each with its factor. Longer suffixes come first, so
/// that `KiB` is not read as a number ending in `K` followed by `iB`.
const SIZE_UNITS: [(&str, u64); 9] = [
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("K", 1 << 10),
    ("M", 1 << 20),
    ("G", 1 << 30),
];

/// Bytes as a whole number, bare or with a unit: `65536`; `64K`, `64KiB`,
/// `64M`, `64MiB`, `1G`, `1GiB` (powers of 1024); `10KB`, `10MB`, `1GB`
/// (powers of 1000). A space may stand between the number and its unit.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, factor) = SIZE_UNITS
        .iter()
        .find_map(|(unit, factor)| text.strip_suffix(unit).map(|n| (n, *factor)))
        .unwrap_or((text, 1));
    number
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| "expected a size in bytes, such as 65536, 64KiB, 64M, 1GiB or 10MB".into())
}

/// A duration of at most a day: bare seconds (`5`, `0.5`) or a number with
/// a unit, `ms`, `s` or `m` (`250ms`, `2s`, `1.5m`). A space may stand
/// between the number and its unit. Zero is a duration; callers that need
/// more say so themselves.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, seconds_per_unit) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    match number.trim().parse::<f64>() {
        Ok(n)
            if n.is_finite() && n >= 0.0 && n * seconds_per_unit <= MAX_DURATION.as_secs_f64() =>
        {
            Ok(Duration::from_secs_f64(n * seconds_per_unit))
        }
        _ => Err("expected seconds, such as 5 or 0.5, or a time with a unit: 250ms, 2s, 1m".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_bytes_and_binary_units() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size(" 64 MiB "), Ok(64 << 20));
    }

    #[test]
    fn sizes_in_decimal_units() {
        assert_eq!(parse_size("10KB"), Ok(10_000));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
    }

    #[test]
    fn bad_sizes_are_refused() {
        for text in [
            "", "MiB", "lots", "-1", "1.5MiB", "64mib", "64 KiBs", "1T", "64iB",
        ] {
            assert!(parse_size(text).is_err(), "{text:?}");
        }
        assert!(parse_size(&format!("{}GiB", u64::MAX)).is_err());
        assert!(parse_size("17179869184GiB").is_err(), "2^64 bytes overflow");
    }

    #[test]
    fn durations_in_seconds_and_units() {
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration(" 500 ms "), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("86400"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("1440m"), Ok(MAX_DURATION));
    }

    #[test]
    fn bad_durations_are_refused() {
        for text in [
            "", "soon", "-1", "-5ms", "s", "ms", "5h", "5 sec", "inf", "NaN", "86401", "1441m",
            "1e10",
        ] {
            assert!(parse_duration(text).is_err(), "{text:?}");
        }
    }
}
