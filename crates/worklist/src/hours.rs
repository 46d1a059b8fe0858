//! Local hours of the day (`FROM-TO`, wrapping midnight): routing rules by time of day and
//! readers' duty hours.

use crate::Error;

/// Parse `FROM-TO` in local hours 0-24, e.g. `8-18` or `20-8`.
pub fn parse_hours(h: &str) -> Result<(u32, u32), Error> {
    let bad = || Error::Invalid(format!("hours {h:?}: expected FROM-TO in local hours 0-24, e.g. 8-18 or 20-8"));
    let (a, b) = h.split_once('-').ok_or_else(bad)?;
    let (a, b) = (a.trim().parse::<u32>().map_err(|_| bad())?, b.trim().parse::<u32>().map_err(|_| bad())?);
    if a > 24 || b > 24 {
        return Err(bad());
    }
    Ok((a, b))
}

/// Is `at` (ms since the epoch) within local hours `from..to` (wrapping midnight if
/// `from > to`)?
pub fn in_hours(from: u32, to: u32, at: i64, utc_offset_hours: i32) -> bool {
    let local_hour = ((at.div_euclid(3_600_000) + utc_offset_hours as i64).rem_euclid(24)) as u32;
    if from <= to {
        (from..to).contains(&local_hour)
    } else {
        local_hour >= from || local_hour < to
    }
}

