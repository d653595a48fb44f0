//! A minimum data rate for bulk uploads (SMTP DATA/BDAT, IMAP literals):
//! Postfix's `smtpd_min_data_rate`. A client that trickles a byte now and
//! then never trips an idle timeout, so once an upload starts it must keep
//! up an average rate: the deadline is a grace period plus one second per
//! `min_rate` bytes received.

use std::time::{Duration, Instant};

/// Time any upload gets before the rate counts (a slow start, a pause).
pub const GRACE: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Pace {
    /// Bytes per second; 0 turns the check off.
    min_rate: u64,
    upload: Option<(Instant, u64)>,
}

impl Pace {
    pub fn new(min_rate: u64) -> Self {
        Pace {
            min_rate,
            upload: None,
        }
    }

    /// How long the next read may wait: `idle` between uploads; during one
    /// (`uploading`), no longer than the upload's deadline.
    pub fn read_timeout(&mut self, uploading: bool, idle: Duration) -> Duration {
        self.read_timeout_at(uploading, idle, Instant::now())
    }

    fn read_timeout_at(&mut self, uploading: bool, idle: Duration, now: Instant) -> Duration {
        if !uploading || self.min_rate == 0 {
            self.upload = None;
            return idle;
        }
        let (start, bytes) = *self.upload.get_or_insert((now, 0));
        let allowed = GRACE + Duration::from_secs_f64(bytes as f64 / self.min_rate as f64);
        let deadline = start + allowed;
        idle.min(deadline.saturating_duration_since(now))
    }

    /// `n` bytes arrived (counted only during an upload).
    pub fn received(&mut self, n: usize) {
        if let Some((_, bytes)) = &mut self.upload {
            *bytes += n as u64;
        }
    }

    /// Is an upload being timed now (so a timeout means "too slow")?
    pub fn uploading(&self) -> bool {
        self.upload.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_must_keep_up_the_rate_after_the_grace() {
        let idle = Duration::from_secs(300);
        let mut p = Pace::new(500);
        let t0 = Instant::now();
        assert_eq!(p.read_timeout_at(false, idle, t0), idle);
        assert_eq!(p.read_timeout_at(true, idle, t0), GRACE);
        // 5,000 bytes earn 10 s more; 20 s have passed.
        p.received(5_000);
        let left = p.read_timeout_at(true, idle, t0 + Duration::from_secs(20));
        assert_eq!(left, Duration::from_secs(20));
        // A trickler: 40 bytes in 40 s has no time left.
        let mut slow = Pace::new(500);
        slow.read_timeout_at(true, idle, t0);
        slow.received(40);
        assert_eq!(
            slow.read_timeout_at(true, idle, t0 + Duration::from_secs(40)),
            Duration::ZERO
        );
        // The upload ended: idle again, and the next one starts afresh.
        assert_eq!(
            slow.read_timeout_at(false, idle, t0 + Duration::from_secs(41)),
            idle
        );
        assert_eq!(
            slow.read_timeout_at(true, idle, t0 + Duration::from_secs(42)),
            GRACE
        );
        assert_eq!(Pace::new(0).read_timeout_at(true, idle, t0), idle);
    }
}
