//! Logging bad input at a bounded rate: a peer sending garbage must not be able
//! to flood the log. At most `BURST` lines per `WINDOW` per category; the number
//! suppressed is reported with the next line that gets through.

use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(10);
const BURST: u32 = 20;

#[derive(Debug)]
pub struct RateLimited {
    state: Mutex<(Option<Instant>, u32, u64)>,
    window: Duration,
    burst: u32,
}

impl Default for RateLimited {
    fn default() -> Self {
        RateLimited::new()
    }
}

impl RateLimited {
    pub const fn new() -> Self {
        RateLimited::per(WINDOW, BURST)
    }

    /// At most `burst` lines per `window`: for a failure retried every
    /// second (a database out of reach), a line a minute says enough.
    pub const fn per(window: Duration, burst: u32) -> Self {
        RateLimited {
            state: Mutex::new((None, 0, 0)),
            window,
            burst,
        }
    }

    /// `Some(suppressed)` when a line may be written now.
    pub fn allow(&self) -> Option<u64> {
        let mut s = self.state.lock().ok()?;
        let now = Instant::now();
        if s.0
            .is_none_or(|start| now.duration_since(start) >= self.window)
        {
            *s = (Some(now), 0, s.2);
        }
        if s.1 < self.burst {
            s.1 += 1;
            let suppressed = s.2;
            s.2 = 0;
            Some(suppressed)
        } else {
            s.2 += 1;
            None
        }
    }
}

pub(crate) static BAD_DATAGRAM: RateLimited = RateLimited::new();
pub(crate) static BAD_STREAM: RateLimited = RateLimited::new();
pub(crate) static REFUSED_CONNECTION: RateLimited = RateLimited::new();
pub(crate) static QUEUE_FULL: RateLimited = RateLimited::new();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_suppresses() {
        let r = RateLimited::new();
        for _ in 0..BURST {
            assert_eq!(r.allow(), Some(0));
        }
        assert_eq!(r.allow(), None);
        assert_eq!(r.allow(), None);
    }

    #[test]
    fn a_slower_limit_lets_one_line_a_window_through() {
        let r = RateLimited::per(Duration::from_secs(60), 1);
        assert_eq!(r.allow(), Some(0));
        assert_eq!(r.allow(), None);
        assert_eq!(r.allow(), None);
    }
}
