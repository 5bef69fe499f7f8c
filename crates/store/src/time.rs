//! Time: the clock readings the crate uses, and ISO-8601 dates (the one parser and formatter of
//! the crate, for imports and the JSON-lines tools).

use std::time::{SystemTime, UNIX_EPOCH};

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

/// Parses `YYYY-MM-DD[(T| )HH:MM[:SS[.fraction]]][Z|±HH[:MM]]` into Unix seconds, and whether
/// the text had no timezone (then it is read as UTC).
pub(crate) fn parse_iso8601(s: &str) -> Option<(f64, bool)> {
    let b = s.trim().as_bytes();
    let mut p = Cursor { b, i: 0 };
    let neg_year = p.eat(b'-');
    let year = p.digits(4, 6)?;
    let year = if neg_year { -year } else { year };
    p.expect(b'-')?;
    let month = p.digits(2, 2)?;
    p.expect(b'-')?;
    let day = p.digits(2, 2)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let (mut hour, mut minute, mut second, mut nanos) = (0, 0, 0, 0u32);
    let mut naive = true;
    let mut offset = 0i64;
    if p.eat(b'T') || p.eat(b't') || p.eat(b' ') {
        hour = p.digits(2, 2)?;
        p.expect(b':')?;
        minute = p.digits(2, 2)?;
        if p.eat(b':') {
            second = p.digits(2, 2)?;
            if p.eat(b'.') || p.eat(b',') {
                let start = p.i;
                let mut scale = 100_000_000u32;
                while let Some(d) = p.peek().filter(u8::is_ascii_digit) {
                    nanos += u32::from(d - b'0') * scale;
                    scale /= 10;
                    p.i += 1;
                }
                if p.i == start {
                    return None;
                }
            }
        }
        if hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        if p.eat(b'Z') || p.eat(b'z') {
            naive = false;
        } else if let Some(sign) = p.peek().filter(|c| *c == b'+' || *c == b'-') {
            p.i += 1;
            let oh = p.digits(2, 2)?;
            p.eat(b':');
            let om = if p.peek().is_some() { p.digits(2, 2)? } else { 0 };
            if oh > 23 || om > 59 {
                return None;
            }
            offset = (oh * 60 + om) * 60;
            if sign == b'-' {
                offset = -offset;
            }
            naive = false;
        }
    }
    if p.i != b.len() {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Some((secs as f64 + f64::from(nanos) / 1e9, naive))
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        self.eat(c).then_some(())
    }

    /// Between `min` and `max` ASCII digits.
    fn digits(&mut self, min: usize, max: usize) -> Option<i64> {
        let mut v = 0i64;
        let mut n = 0;
        while n < max {
            match self.peek() {
                Some(d) if d.is_ascii_digit() => {
                    v = v * 10 + i64::from(d - b'0');
                    self.i += 1;
                    n += 1;
                }
                _ => break,
            }
        }
        (n >= min).then_some(v)
    }
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Formats seconds since the Unix epoch as `2026-05-03T17:00:10.035508+00:00` (UTC, microseconds).
pub(crate) fn format_iso8601(t: f64) -> String {
    let t = if t.is_finite() { t.max(0.0) } else { 0.0 };
    let mut secs = t.floor() as i64;
    let mut micros = ((t - t.floor()) * 1e6).round() as i64;
    if micros >= 1_000_000 {
        secs += 1;
        micros -= 1_000_000;
    }
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let r = secs.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}+00:00", r / 3600, r / 60 % 60, r % 60)
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
