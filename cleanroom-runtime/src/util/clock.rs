//! Time as cleanroom records it.

use std::sync::OnceLock;
use std::time::Instant;

/// When this process started, as near as cleanroom can tell (its start hook).
pub(crate) static PROCESS_START: OnceLock<Instant> = OnceLock::new();

/// Where this process got to, and when (microseconds from its start): the
/// breakdown of a process's time before its first test, in its report.
static MARKS: std::sync::Mutex<Vec<(String, u64)>> = std::sync::Mutex::new(Vec::new());

/// Marks that this process reached `what` now; only the first time counts.
pub(crate) fn mark(what: impl Into<String>) {
    let Some(start) = PROCESS_START.get() else { return };
    let micros = start.elapsed().as_micros() as u64;
    let what = what.into();
    let mut marks = MARKS.lock().unwrap_or_else(|e| e.into_inner());
    if !marks.iter().any(|(w, _)| *w == what) {
        marks.push((what, micros));
    }
}

/// This process's marks, in the order they were reached.
pub(crate) fn marks() -> Vec<(String, u64)> {
    let mut marks = MARKS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    marks.sort_by_key(|(_, micros)| *micros);
    marks
}

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Seconds since the epoch of an RFC 3339 time as engines write them
/// (`2026-11-27T02:40:00.123456789Z`, or with a `+01:00` offset); `None` if
/// it is not one.
pub(crate) fn parse_rfc3339(text: &str) -> Option<i64> {
    let (date, rest) = text.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let time_end = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (time, zone) = rest.split_at(time_end);
    let time = time.split('.').next()?;
    let mut t = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (t.next()??, t.next()??, t.next()??);
    let offset = match zone {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let (h, m) = zone[1..].split_once(':')?;
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
        }
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::*;

        #[test]
        fn read_the_times_engines_write() {
            assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
            assert_eq!(parse_rfc3339("2026-11-27T02:40:00.123456789Z"), Some(1_795_747_200));
            assert_eq!(parse_rfc3339("2026-11-27T03:40:00+01:00"), Some(1_795_747_200));
            assert_eq!(parse_rfc3339("2000-02-29T12:00:00Z"), Some(951_825_600));
            assert_eq!(parse_rfc3339("yesterday"), None);
            assert_eq!(parse_rfc3339("2026-13-01T00:00:00Z"), None);
        }

        #[test]
        fn agree_with_this_machines_clock() {
            let now = now_secs();
            let days = now.div_euclid(86_400);
            let secs = now.rem_euclid(86_400);
            // Walk back from the days count to a date through the parser.
            let mut year = 1970 + days / 366;
            while days_from_civil(year + 1, 1, 1) <= days {
                year += 1;
            }
            let mut month = 1;
            while month < 12 && days_from_civil(year, month + 1, 1) <= days {
                month += 1;
            }
            let day = days - days_from_civil(year, month, 1) + 1;
            let text =
                format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60);
            assert_eq!(parse_rfc3339(&text), Some(now), "{text}");
        }
    }
}
