//! Go's duration syntax (`time.ParseDuration`), which Dapr's Resiliency files use: a sequence of
//! decimal numbers with units, like `300ms`, `1.5s`, `1h30m`; `0` alone is zero.

use std::time::Duration;

/// Parses a Go duration; negative durations are refused (no policy has a use for them).
pub fn parse(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("is empty (use a duration like 500ms, 5s or 1m30s)".to_string());
    }
    if s.starts_with('-') {
        return Err(format!("{text:?} is negative"));
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number = &rest[..number_len];
        let value: f64 = number
            .parse()
            .ok()
            .filter(|_| !number.is_empty() && number != ".")
            .ok_or_else(|| format!("{text:?} is not a duration (use a number with a unit, like 500ms, 5s or 1m30s)"))?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let nanos_per_unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("{text:?} has a number without a unit (ns, us, ms, s, m, h)")),
            unit => return Err(format!("{text:?} has an unknown unit {unit:?} (ns, us, ms, s, m, h)")),
        };
        total += value * nanos_per_unit;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return Err(format!("{text:?} is too long"));
    }
    Ok(Duration::from_nanos(total.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::parse;
    use std::time::Duration;

    #[test]
    fn go_durations() {
        assert_eq!(parse("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("2m3s10ms"), Ok(Duration::from_millis(123_010)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        assert_eq!(parse("10us"), Ok(Duration::from_micros(10)));
    }

    #[test]
    fn bad_durations_say_why() {
        assert!(parse("5").unwrap_err().contains("without a unit"));
        assert!(parse("5 seconds").unwrap_err().contains("unknown unit"));
        assert!(parse("-1s").unwrap_err().contains("negative"));
        assert!(parse("abc").unwrap_err().contains("not a duration"));
        assert!(parse("").unwrap_err().contains("empty"));
    }
}
