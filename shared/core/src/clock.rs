//! Time: the injectable [`Clock`] every lease, key age and timestamp is read from (so tests and
//! the fault simulation can move time instead of rewriting records), and the formats time is
//! stored in: leases are epoch milliseconds, timestamps for operators RFC 3339 (UTC) like
//! upstream's `createdAt`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall-clock time as the core reads it. Leases, key ages and settle delays compare these
/// readings, so one clock must serve a whole executor or settlement.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The machine's clock: what every deployed function uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        now_ms()
    }
}

/// The machine's time shifted forward by an amount tests choose: tests and the fault simulation
/// let leases run out and keys age by moving this clock, instead of editing records by hand,
/// while time still passes as usual between moves.
#[derive(Debug, Clone, Default)]
pub struct ShiftedClock(Arc<AtomicU64>);

impl ShiftedClock {
    /// A clock reading the machine's time (no shift yet).
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by`, for every reader of this clock.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ShiftedClock {
    fn now_ms(&self) -> u64 {
        now_ms() + self.0.load(Ordering::SeqCst)
    }
}

/// Milliseconds since the Unix epoch on the machine's clock. Prefer an injected [`Clock`].
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `ms` since the epoch as RFC 3339 UTC with milliseconds, e.g. `2026-11-25T11:30:00.123Z`.
pub fn rfc3339_from_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm), valid for every date after 1970.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Parses the RFC 3339 UTC times this crate writes (`2026-11-25T11:30:00.123Z`, fraction
/// optional) back to epoch milliseconds; `None` for anything else.
pub fn ms_from_rfc3339(text: &str) -> Option<u64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut date_parts = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (
        date_parts.next()??,
        date_parts.next()??,
        date_parts.next()??,
    );
    let (hms, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut time_parts = hms.splitn(3, ':').map(|p| p.parse::<u64>().ok());
    let (hour, minute, second) = (
        time_parts.next()??,
        time_parts.next()??,
        time_parts.next()??,
    );
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let millis = format!("{fraction:0<3}").get(..3)?.parse::<u64>().ok()?;
    // Days-from-civil (Howard Hinnant's algorithm).
    let y = year - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    Some(((days * 86_400 + hour * 3_600 + minute * 60 + second) * 1_000) + millis)
}

#[cfg(test)]
mod tests {
    use super::{Clock, ShiftedClock, SystemClock};
    use std::time::Duration;

    #[test]
    fn a_shifted_clock_moves_forward_only_when_told_and_with_time() {
        let clock = ShiftedClock::new();
        let before = SystemClock.now_ms();
        assert!(clock.now_ms() >= before && clock.now_ms() < before + 1_000);
        clock.clone().advance(Duration::from_secs(3_600));
        assert!(clock.now_ms() >= before + 3_600_000);
    }
    #[test]
    fn parses_what_it_formats() {
        for ms in [0, 951_782_400_000, 1_795_606_200_123, 1_709_251_199_999] {
            assert_eq!(
                super::ms_from_rfc3339(&super::rfc3339_from_ms(ms)),
                Some(ms)
            );
        }
        assert_eq!(
            super::ms_from_rfc3339("2026-11-25T09:00:00Z"),
            Some(1_795_597_200_000)
        );
        assert_eq!(super::ms_from_rfc3339("2026-11-25 09:00:00"), None);
        assert_eq!(super::ms_from_rfc3339("2026-13-25T09:00:00Z"), None);
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(super::rfc3339_from_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::rfc3339_from_ms(1_795_606_200_123),
            "2026-11-25T11:30:00.123Z"
        );
        assert_eq!(
            super::rfc3339_from_ms(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
