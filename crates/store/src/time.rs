//! Time: the clock readings the crate uses, and ISO-8601 dates (the one parser and formatter of
//! the crate, for imports and the JSON-lines tools), through `jiff`.

use std::time::{SystemTime, UNIX_EPOCH};

use jiff::SignedDuration;
use jiff::civil::{DateTime, Time};
use jiff::fmt::temporal::{DateTimePrinter, Pieces};
use jiff::tz::Offset;

/// Seconds since the Unix epoch (fractional); 0 if the clock is before 1970.
pub(crate) fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(0)).unwrap_or(0)
}

/// Nanoseconds since the Unix epoch (for unique scratch names).
pub(crate) fn now_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// Parses an ISO-8601 / RFC 3339 date, or date and time, into Unix seconds, and whether the text
/// had no UTC offset (then it is read as UTC). The grammar is jiff's (RFC 9557 / Temporal):
/// `YYYY-MM-DD[(T|t| )HH[:MM[:SS[(.|,)fraction]]][Z|z|±HH[[:]MM]]]`, years from -9999 to 9999
/// (six digits with a sign for the extended form), up to nine fraction digits, the basic forms
/// without separators too. Refused besides what jiff refuses: a time zone annotation
/// (`[Europe/Paris]`: no time zone database is built in) and an offset of 24 hours or more.
pub(crate) fn parse_iso8601(s: &str) -> Option<(f64, bool)> {
    let pieces = Pieces::parse(s.trim()).ok()?;
    if pieces.time_zone_annotation().is_some() {
        return None;
    }
    let (offset, naive) = match pieces.offset() {
        Some(o) => (o.to_numeric_offset(), false),
        None => (Offset::UTC, true),
    };
    if offset.seconds().unsigned_abs() >= 24 * 3600 {
        return None;
    }
    let time = pieces.time().unwrap_or(Time::midnight());
    // Civil arithmetic, not `Timestamp`: jiff's timestamps end at 9999-12-30T22:00Z (so that
    // every one has a civil time in every offset), and 9999-12-31 is a valid date here.
    let since =
        pieces.date().to_datetime(time).duration_since(EPOCH) - SignedDuration::from_secs(offset.seconds().into());
    // Whole seconds rounded down and a non-negative fraction, added as before jiff (the same f64
    // for every input, before 1970 too).
    let (mut secs, mut nanos) = (since.as_secs(), since.subsec_nanos());
    if nanos < 0 {
        secs -= 1;
        nanos += 1_000_000_000;
    }
    Some((secs as f64 + f64::from(nanos) / 1e9, naive))
}

/// 1970-01-01T00:00:00, the Unix epoch as a civil time in UTC.
const EPOCH: DateTime = DateTime::constant(1970, 1, 1, 0, 0, 0, 0);

/// Formats seconds since the Unix epoch as `2026-05-03T17:00:10.035508+00:00` (UTC, microseconds).
/// Before 1970 (and NaN) is the epoch; after the year 9999, its last microsecond.
pub(crate) fn format_iso8601(t: f64) -> String {
    let t = if t.is_finite() { t.max(0.0) } else { 0.0 };
    let mut secs = t.floor() as i64;
    let mut micros = ((t - t.floor()) * 1e6).round() as i32;
    if micros >= 1_000_000 {
        secs += 1;
        micros -= 1_000_000;
    }
    let at = EPOCH.checked_add(SignedDuration::new(secs, micros * 1_000)).unwrap_or(DateTime::MAX);
    let mut out = DateTimePrinter::new().precision(Some(6)).datetime_to_string(&at);
    out.push_str("+00:00");
    out
}

/// A new time-ordered (v7) UUID for a message without a client id. A clock set before 1970
/// (a board without a real-time clock at boot) gets the epoch's timestamp with random bits
/// instead of the panic of `Uuid::now_v7`.
pub(crate) fn new_uuid_v7() -> uuid::Uuid {
    if SystemTime::now().duration_since(UNIX_EPOCH).is_ok() {
        uuid::Uuid::now_v7()
    } else {
        uuid::Uuid::new_v7(uuid::Timestamp::from_unix(uuid::timestamp::context::NoContext, 0, 0))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// What changed when the hand-written parser was replaced by jiff's (all odd inputs; the
    /// forms the import and JSON-lines tests pin read as before).
    #[test]
    fn iso8601_edges() {
        let p = |s: &str| parse_iso8601(s).map(|(t, _)| t);
        // The last second of 9999 (the JSON-lines limit) is a date, though not a jiff timestamp.
        assert_eq!(p("9999-12-31T23:59:59Z"), Some(253_402_300_799.0));
        assert_eq!(format_iso8601(253_402_300_799.0), "9999-12-31T23:59:59.000000+00:00");
        // After 9999: the last representable microsecond (was a five-digit year).
        assert_eq!(format_iso8601(1.7e12), "9999-12-31T23:59:59.999999+00:00");
        assert_eq!(format_iso8601(f64::NAN), "1970-01-01T00:00:00.000000+00:00");
        assert_eq!(format_iso8601(-5.0), "1970-01-01T00:00:00.000000+00:00");
        assert_eq!(format_iso8601(0.999_999_6), "1970-01-01T00:00:01.000000+00:00");
        // A leap second is its minute's last second (was the next minute's first).
        assert_eq!(p("2016-12-31T23:59:60Z"), p("2016-12-31T23:59:59Z"));
        // Newly accepted: ISO-8601 basic forms, an hour alone, offsets with seconds, signed years.
        assert_eq!(p("20260503T165910Z"), p("2026-05-03T16:59:10Z"));
        assert_eq!(p("2026-05-03T16Z"), p("2026-05-03T16:00:00Z"));
        assert_eq!(p("1970-01-01T00:00:30+00:00:30"), Some(0.0));
        assert_eq!(p("+001970-01-01T00:00:00Z"), Some(0.0));
        // Newly refused: more than nine fraction digits, unsigned years of five or six digits, a
        // negative year of four; still refused: a time zone name, an offset of a day or more.
        for bad in [
            "2026-05-03T16:59:10.1234567891Z",
            "20260-05-03T00:00:00Z",
            "-0001-01-01T00:00:00Z",
            "2026-05-03T16:59:10+01:00[Europe/Paris]",
            "2026-05-03T16:59:10+24:00",
        ] {
            assert_eq!(p(bad), None, "{bad}");
        }
        // Before 1970: whole seconds rounded down plus a non-negative fraction, as before.
        assert_eq!(p("1969-12-31T23:59:59.25Z"), Some(-0.75));
    }
}
