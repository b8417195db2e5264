//! RFC 3339 timestamps in UTC without a date library, using Howard
//! Hinnant's days-from-civil / civil-from-days algorithms.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECS_PER_DAY: i64 = 86_400;
/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the years RFC 3339 can
/// write with four digits.
const MIN_SECS: i64 = -62_167_219_200;
const MAX_SECS: i64 = 253_402_300_799;

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian (year, month, day) of a day count since 1970-01-01.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // day is 1..=31 and month 1..=12 by construction.
    (year, month as u32, day as u32)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Seconds (floored) and nanoseconds since the epoch, clamped to the years
/// 0000..=9999.
fn split(t: SystemTime) -> (i64, u32) {
    let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(before) => {
            let d = before.duration();
            let secs = i64::try_from(d.as_secs()).map_or(i64::MIN, |s| -s);
            match d.subsec_nanos() {
                0 => (secs, 0),
                n => (secs.saturating_sub(1), 1_000_000_000 - n),
            }
        }
    };
    if secs < MIN_SECS {
        (MIN_SECS, 0)
    } else if secs > MAX_SECS {
        (MAX_SECS, 999_999_999)
    } else {
        (secs, nanos)
    }
}

struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: i64,
    minute: i64,
    second: i64,
    millis: u32,
}

fn civil(t: SystemTime) -> Civil {
    let (secs, nanos) = split(t);
    let (year, month, day) = civil_from_days(secs.div_euclid(SECS_PER_DAY));
    let second_of_day = secs.rem_euclid(SECS_PER_DAY);
    Civil {
        year,
        month,
        day,
        hour: second_of_day / 3600,
        minute: second_of_day / 60 % 60,
        second: second_of_day % 60,
        millis: nanos / 1_000_000,
    }
}

/// `t` in UTC as RFC 3339 with milliseconds, e.g. `2026-11-21T10:00:00.123Z`.
/// Sub-millisecond digits are cut, not rounded; times outside the years
/// 0000..=9999 are clamped to them.
pub fn rfc3339(t: SystemTime) -> String {
    let c = civil(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis
    )
}

/// The current time as [`rfc3339`].
pub fn rfc3339_now() -> String {
    rfc3339(SystemTime::now())
}

/// `t` in UTC for file names: `20261121T100000.123Z` (no colons).
pub(crate) fn compact_utc(t: SystemTime) -> String {
    let c = civil(t);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}.{:03}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis
    )
}

/// Parses an RFC 3339 date-time: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`
/// (`t`, `z` and a space for `T` accepted, as RFC 3339 allows). Fractions
/// beyond nanoseconds are cut. A leap second (`:60`) is read as the next
/// second. Anything else, including impossible dates, gives `None`.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let year = i64::from(digits(&b[0..4])?);
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &b[19..];
    let mut nanos: u32 = 0;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let len = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        for (i, digit) in fraction[..len].iter().enumerate() {
            if i < 9 {
                nanos = nanos * 10 + u32::from(digit - b'0');
            }
        }
        for _ in len..9 {
            nanos *= 10;
        }
        rest = &fraction[len..];
    }
    let offset_secs: i64 = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = digits(&[*h1, *h2])?;
            let minutes = digits(&[*m1, *m2])?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = i64::from(hours * 3600 + minutes * 60);
            if *sign == b'-' { -offset } else { offset }
        }
        _ => return None,
    };
    let secs = days_from_civil(year, month, day) * SECS_PER_DAY
        + i64::from(hour) * 3600
        + i64::from(minute) * 60
        + i64::from(second)
        - offset_secs;
    let whole = Duration::from_secs(secs.unsigned_abs());
    let base = if secs >= 0 {
        UNIX_EPOCH.checked_add(whole)?
    } else {
        UNIX_EPOCH.checked_sub(whole)?
    };
    base.checked_add(Duration::from_nanos(u64::from(nanos)))
}

/// A fixed-width run of ASCII digits as a number.
fn digits(bytes: &[u8]) -> Option<u32> {
    bytes.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64, nanos: u32) -> SystemTime {
        let t = if secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
        };
        t + Duration::from_nanos(u64::from(nanos))
    }

    #[test]
    fn known_instants() {
        // Expected strings from `date -u -d @SECS +%Y-%m-%dT%H:%M:%S`.
        let cases = [
            (0, 0, "1970-01-01T00:00:00.000Z"),
            (951_782_400, 0, "2000-02-29T00:00:00.000Z"),
            (1_795_255_200, 123_456_789, "2026-11-21T10:00:00.123Z"),
            (4_107_542_399, 999_999_999, "2100-02-28T23:59:59.999Z"),
            (-1, 500_000_000, "1969-12-31T23:59:59.500Z"),
            (-2_208_988_800, 0, "1900-01-01T00:00:00.000Z"),
            (-62_135_596_800, 0, "0001-01-01T00:00:00.000Z"),
            (MIN_SECS, 0, "0000-01-01T00:00:00.000Z"),
            (MAX_SECS, 0, "9999-12-31T23:59:59.000Z"),
        ];
        for (secs, nanos, text) in cases {
            assert_eq!(rfc3339(at(secs, nanos)), text, "secs {secs}");
            let millis = nanos / 1_000_000 * 1_000_000;
            assert_eq!(parse_rfc3339(text), Some(at(secs, millis)), "{text}");
        }
        assert_eq!(
            compact_utc(at(1_795_255_200, 123_000_000)),
            "20261121T100000.123Z"
        );
    }

    #[test]
    fn out_of_range_times_are_clamped() {
        assert_eq!(rfc3339(at(MAX_SECS + 10, 0)), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(at(MIN_SECS - 10, 0)), "0000-01-01T00:00:00.000Z");
    }

    #[test]
    fn civil_round_trip_over_every_day_of_four_centuries_and_more() {
        // Every day from 1600-01-01 to 2400-12-31 (covers all leap rules) and
        // consecutive days stay consecutive dates.
        let start = days_from_civil(1600, 1, 1);
        let end = days_from_civil(2400, 12, 31);
        let mut previous = civil_from_days(start - 1);
        for days in start..=end {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            assert!(d >= 1 && d <= days_in_month(y, m), "{y}-{m}-{d}");
            let (py, pm, pd) = previous;
            let next_of_previous = if pd < days_in_month(py, pm) {
                (py, pm, pd + 1)
            } else if pm < 12 {
                (py, pm + 1, 1)
            } else {
                (py + 1, 1, 1)
            };
            assert_eq!((y, m, d), next_of_previous);
            previous = (y, m, d);
        }
    }

    #[test]
    fn parse_accepts_offsets_and_variants() {
        let base = parse_rfc3339("2026-11-21T10:00:00Z").unwrap();
        for same in [
            "2026-11-21t10:00:00z",
            "2026-11-21 10:00:00Z",
            "2026-11-21T12:30:00+02:30",
            "2026-11-21T05:00:00-05:00",
            "2026-11-20T23:00:00-11:00",
            "2026-11-21T10:00:00.000000000000Z",
        ] {
            assert_eq!(parse_rfc3339(same), Some(base), "{same}");
        }
        assert_eq!(
            parse_rfc3339("2026-11-21T10:00:00.5Z"),
            Some(base + Duration::from_millis(500))
        );
        assert_eq!(
            parse_rfc3339("2026-11-21T10:00:00.123456789987Z"),
            Some(base + Duration::from_nanos(123_456_789))
        );
        assert_eq!(
            parse_rfc3339("2016-12-31T23:59:60Z"),
            parse_rfc3339("2017-01-01T00:00:00Z")
        );
    }

    #[test]
    fn parse_rejects_garbage() {
        for bad in [
            "",
            "2026-11-21",
            "2026-11-21T10:00:00",
            "2026-11-21T10:00:00ZZ",
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-11-00T00:00:00Z",
            "2026-11-21T24:00:00Z",
            "2026-11-21T10:60:00Z",
            "2026-11-21T10:00:61Z",
            "2026-11-21T10:00:00.Z",
            "2026-11-21T10:00:00+0200",
            "2026-11-21T10:00:00+24:00",
            "2026-11-21T10:00:00+02:60",
            "2026-11-21X10:00:00Z",
            "2026/11/21T10:00:00Z",
            "+2026-11-21T10:00:00Z",
            "2026-1-021T10:00:00Z",
            "2026-11-21T10:00:00Zé",
            "ééééééééééééééééééééé",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        assert!(parse_rfc3339("2000-02-29T00:00:00Z").is_some());
    }

    #[test]
    fn format_parse_round_trip() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let secs = (x % (MAX_SECS - MIN_SECS) as u64) as i64 + MIN_SECS;
            let nanos = (x >> 40) as u32 % 1000 * 1_000_000;
            let t = at(secs, nanos);
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t), "secs {secs}");
        }
    }
}
