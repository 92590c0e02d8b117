//! `Date`: RFC 1123 form in GMT only, e.g. `Sat, 13 Nov 2010 23:29:00 GMT`.

use super::TypedHeader;
use crate::name::HeaderKind;
use crate::scan::{parse_decimal, Invalid, Scan};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Date {
    /// Seconds since the Unix epoch.
    pub unix: i64,
}

const WKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl<'a> TypedHeader<'a> for Date {
    const KIND: HeaderKind = HeaderKind::Date;
    fn parse(value: &'a str) -> Scan<Self> {
        let b = value.as_bytes();
        // "Www, DD Mmm YYYY HH:MM:SS GMT" is exactly 29 bytes.
        if b.len() != 29
            || &b[3..5] != b", "
            || b[7] != b' '
            || b[11] != b' '
            || b[16] != b' '
            || b[19] != b':'
            || b[22] != b':'
            || &b[25..] != b" GMT"
        {
            return Err(Invalid);
        }
        let wk = value.get(0..3).ok_or(Invalid)?;
        if !WKDAYS.contains(&wk) {
            return Err(Invalid);
        }
        let num = |r: std::ops::Range<usize>, max: u64| parse_decimal(&b[r], max);
        let day = num(5..7, 31)?;
        let month = MONTHS
            .iter()
            .position(|m| Some(*m) == value.get(8..11))
            .ok_or(Invalid)? as u64
            + 1;
        let year = num(12..16, 9999)?;
        let (h, m, s) = (num(17..19, 23)?, num(20..22, 59)?, num(23..25, 60)?);
        if day == 0 || day > days_in_month(year, month) {
            return Err(Invalid);
        }
        let days = days_from_civil(year as i64, month as i64, day as i64);
        Ok(Date {
            unix: days * 86_400 + (h * 3600 + m * 60 + s) as i64,
        })
    }
}

fn days_in_month(y: u64, m: u64) -> u64 {
    let leap = (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(
            Date::parse("Thu, 01 Jan 1970 00:00:00 GMT").unwrap().unix,
            0
        );
        assert_eq!(
            Date::parse("Sat, 13 Nov 2010 23:29:00 GMT").unwrap().unix,
            1_289_690_940
        );
        assert!(Date::parse("Fri, 01 Jan 2010 16:00:00 EST").is_err());
        assert!(Date::parse("Sat, 30 Feb 2010 23:29:00 GMT").is_err());
        assert!(Date::parse("Sat, 13 Nov 2010 24:29:00 GMT").is_err());
    }
}
