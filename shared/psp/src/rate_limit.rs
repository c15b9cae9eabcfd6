//! A client-side request pacer shared by every call of one adapter: requests are started at
//! most `rate` per second, evenly spaced, however many callers wait at once. A PSP's 429 can
//! push every later start back (`pause_until`), so one rate-limit answer slows the whole process
//! instead of turning into a storm of retries.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// No start slot is free before the caller's deadline: nothing was reserved, nothing sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no request slot before the deadline (the next is {wait:?} away)")]
pub struct NoSlot {
    pub wait: Duration,
}

/// Paces request starts to a fixed rate (a leaky bucket with no burst: start times are at
/// least `1 / rate` apart, so any one-second window holds at most `rate` starts, plus one at
/// its closed edge). A slot whose caller gives up before its start is given back, so waiting
/// callers that time out never push the pace ahead of the clock.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    slots: Mutex<Slots>,
}

#[derive(Debug)]
struct Slots {
    /// The first slot never handed out.
    next_start: Instant,
    /// Slots handed out and given back before their start, reusable by the next caller.
    freed: BTreeSet<Instant>,
}

impl RateLimiter {
    /// A limiter allowing `per_second` request starts per second (at least 1).
    pub fn per_second(per_second: u32) -> Self {
        Self::every(Duration::from_secs(1) / per_second.max(1))
    }

    /// A limiter starting requests at least `interval` apart.
    pub fn every(interval: Duration) -> Self {
        RateLimiter {
            interval,
            slots: Mutex::new(Slots {
                next_start: Instant::now(),
                freed: BTreeSet::new(),
            }),
        }
    }

    /// The spacing between two starts.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Waits for this caller's start slot, however long. Slots are handed out in call order.
    pub async fn acquire(&self) {
        let _ = self.acquire_by(None).await;
    }

    /// Waits for this caller's start slot if one is free no later than `deadline`; otherwise
    /// returns at once, having reserved nothing. A caller dropped while waiting gives its slot
    /// back.
    pub async fn acquire_by(&self, deadline: Option<Instant>) -> Result<(), NoSlot> {
        let slot = self.reserve(deadline)?;
        let mut held = HeldSlot {
            limiter: self,
            slot,
            started: false,
        };
        tokio::time::sleep_until(slot).await;
        held.started = true;
        Ok(())
    }

    fn reserve(&self, deadline: Option<Instant>) -> Result<Instant, NoSlot> {
        let mut slots = self.slots.lock().expect("rate limiter poisoned");
        let now = Instant::now();
        // A freed slot whose time has passed unused is gone: the pace never bursts to catch up.
        while slots.freed.first().is_some_and(|first| *first < now) {
            slots.freed.pop_first();
        }
        let slot = match slots.freed.first() {
            Some(freed) => *freed,
            None => slots.next_start.max(now),
        };
        if let Some(deadline) = deadline
            && slot > deadline
        {
            return Err(NoSlot { wait: slot - now });
        }
        if !slots.freed.remove(&slot) {
            slots.next_start = slot + self.interval;
        }
        Ok(slot)
    }

    fn give_back(&self, slot: Instant) {
        let mut slots = self.slots.lock().expect("rate limiter poisoned");
        if slot < slots.next_start {
            slots.freed.insert(slot);
        }
        // The latest slots given back shorten the queue itself.
        while let Some(last) = slots.freed.last().copied() {
            if last + self.interval != slots.next_start {
                break;
            }
            slots.freed.pop_last();
            slots.next_start = last;
        }
    }

    /// No start before `until` (the PSP said "retry after").
    pub fn pause_until(&self, until: Instant) {
        let mut slots = self.slots.lock().expect("rate limiter poisoned");
        if until > slots.next_start {
            slots.next_start = until;
        }
        slots.freed.retain(|slot| *slot >= until);
    }
}

/// A reserved slot, given back if its caller stops waiting before it starts.
struct HeldSlot<'a> {
    limiter: &'a RateLimiter,
    slot: Instant,
    started: bool,
}

impl Drop for HeldSlot<'_> {
    fn drop(&mut self) {
        if !self.started && Instant::now() < self.slot {
            self.limiter.give_back(self.slot);
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
    async fn slots_abandoned_before_their_start_are_given_back() {
        let limiter = Arc::new(RateLimiter::per_second(10));
        // Twenty callers queue for slots up to 1.9 s out, and all but the first give up.
        let waiters: Vec<_> = (0..20)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    tokio::time::timeout(Duration::from_millis(50), limiter.acquire()).await
                })
            })
            .collect();
        for waiter in waiters {
            let _ = waiter.await;
        }
        let started = Instant::now();
        limiter.acquire().await;
        assert!(
            started.elapsed() < Duration::from_millis(250),
            "the pace drifted ahead of the clock: waited {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn after_a_pause_the_pace_resumes_at_the_configured_rate() {
        let limiter = Arc::new(RateLimiter::per_second(20));
        let paused_at = Instant::now();
        limiter.pause_until(paused_at + Duration::from_millis(300));
        let mut starts = Vec::new();
        for _ in 0..10 {
            limiter.acquire().await;
            starts.push(Instant::now());
        }
        assert!(starts[0] - paused_at >= Duration::from_millis(299));
        let span = starts[9] - starts[0];
        assert!(
            span >= Duration::from_millis(440) && span < Duration::from_millis(1_000),
            "10 starts at 20/s after the pause took {span:?}"
        );
    }

    #[tokio::test]
    async fn no_slot_before_the_deadline_reserves_nothing() {
        let limiter = RateLimiter::per_second(2);
        limiter.acquire().await;
        let deadline = Instant::now() + Duration::from_millis(100);
        assert!(limiter.acquire_by(Some(deadline)).await.is_err());
        let started = Instant::now();
        limiter.acquire().await;
        assert!(
            started.elapsed() < Duration::from_millis(600),
            "the refused caller reserved a slot: waited {:?}",
            started.elapsed()
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
