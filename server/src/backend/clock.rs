//! The hand-written loops' clock: milliseconds since the loop began, in four bytes, so that a
//! connection's last activity fits beside the rest of its state. Idle timeouts are capped
//! below half the wrap (24 days), so the wrapping difference of two stamps is the true time
//! between them wherever it is read.

use std::time::{Duration, Instant};

/// How often the loops look at the shutdown phase and idle timers when nothing happens.
pub(crate) const TICK: Duration = Duration::from_millis(50);

/// The longest idle timeout the clock measures (24 days, half its wrap); a longer one acts
/// as this.
const MAX_IDLE_MS: u32 = u32::MAX / 2;

/// A loop's millisecond clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    epoch: Instant,
}

impl Clock {
    /// A clock whose zero is now.
    pub fn new() -> Self {
        Clock {
            epoch: Instant::now(),
        }
    }

    /// `t` on this clock, wrapping after 49 days.
    pub fn stamp(&self, t: Instant) -> u32 {
        t.duration_since(self.epoch).as_millis() as u32
    }

    /// An idle timeout in the clock's milliseconds, capped at [`MAX_IDLE_MS`].
    pub fn limit(d: Duration) -> u32 {
        d.as_millis().min(u128::from(MAX_IDLE_MS)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_survive_the_wrap() {
        let before = u32::MAX - 10;
        let after = before.wrapping_add(30);
        assert_eq!(after.wrapping_sub(before), 30);
        assert_eq!(Clock::limit(Duration::from_secs(1)), 1000);
        assert_eq!(Clock::limit(Duration::from_secs(u64::MAX / 4)), MAX_IDLE_MS);
    }
}
