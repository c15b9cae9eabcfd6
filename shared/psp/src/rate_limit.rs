//! A client-side request pacer shared by every call of one adapter: requests are started at
//! most `rate` per second, evenly spaced, however many callers wait at once. A PSP's 429 can
//! push every later start back (`pause_until`), so one rate-limit answer slows the whole process
//! instead of turning into a storm of retries.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Paces request starts to a fixed rate (a leaky bucket with no burst: start times are at
/// least `1 / rate` apart, so any one-second window holds at most `rate` starts, plus one at
/// its closed edge).
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    next_start: Mutex<Instant>,
}

impl RateLimiter {
    /// A limiter allowing `per_second` request starts per second (at least 1).
    pub fn per_second(per_second: u32) -> Self {
        RateLimiter {
            interval: Duration::from_secs(1) / per_second.max(1),
            next_start: Mutex::new(Instant::now()),
        }
    }

    /// The spacing between two starts.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Waits for this caller's start slot. Slots are handed out in call order; a caller that
    /// gives up while waiting leaves its slot unused (the rate only gets lower).
    pub async fn acquire(&self) {
        let slot = {
            let mut next = self.next_start.lock().expect("rate limiter poisoned");
            let slot = (*next).max(Instant::now());
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// No start before `until` (the PSP said "retry after").
    pub fn pause_until(&self, until: Instant) {
        let mut next = self.next_start.lock().expect("rate limiter poisoned");
        if until > *next {
            *next = until;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn spaces_concurrent_callers_evenly() {
        let limiter = Arc::new(RateLimiter::per_second(100));
        let started = Instant::now();
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    limiter.acquire().await;
                    Instant::now()
                })
            })
            .collect();
        let mut starts = Vec::new();
        for task in tasks {
            starts.push(task.await.unwrap());
        }
        starts.sort();
        // 20 starts 10 ms apart: the last no earlier than 190 ms after the first slot.
        assert!(
            starts[19] - started >= Duration::from_millis(189),
            "{starts:?}"
        );
    }

    #[tokio::test]
    async fn a_pause_delays_the_next_start() {
        let limiter = RateLimiter::per_second(1_000);
        let started = Instant::now();
        limiter.pause_until(started + Duration::from_millis(120));
        limiter.acquire().await;
        assert!(started.elapsed() >= Duration::from_millis(119));
    }
}
