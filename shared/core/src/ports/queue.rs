//! Where `payout.execute` jobs go: the executor's Lambda enqueues a continuation when a batch
//! outlasts one invocation and a segment job per part of a fanned-out batch, and sets when a
//! job that must be retried is received again.

use crate::job::PayoutJob;
use std::time::Duration;

/// The jobs queue refused a request; the caller falls back to the queue's own redelivery.
#[derive(Debug, thiserror::Error)]
#[error("the jobs queue refused to {action}: {detail}; the message is left for redelivery instead")]
pub struct QueueError {
    /// What was asked ("enqueue a job", "delay a redelivery").
    pub action: &'static str,
    pub detail: String,
}

impl QueueError {
    pub fn enqueue(detail: impl Into<String>) -> Self {
        QueueError {
            action: "enqueue a job",
            detail: detail.into(),
        }
    }

    pub fn delay(detail: impl Into<String>) -> Self {
        QueueError {
            action: "delay a redelivery",
            detail: detail.into(),
        }
    }
}

/// The jobs queue, as the handler sees it.
#[async_trait::async_trait]
pub trait JobQueue: Send + Sync {
    /// Sends `job` to the queue the executor consumes.
    async fn enqueue(&self, job: &PayoutJob) -> Result<(), QueueError>;

    /// Sends every job of `jobs` (a fan-out's segments); all or an error. A queue that can send
    /// several in one request overrides this.
    async fn enqueue_all(&self, jobs: &[PayoutJob]) -> Result<(), QueueError> {
        for job in jobs {
            self.enqueue(job).await?;
        }
        Ok(())
    }

    /// The message received with `receipt_handle` is received again after `delay` instead of
    /// after the queue's visibility timeout: a job that must be retried waits seconds, not the
    /// half hour the timeout is sized for.
    async fn redeliver_after(
        &self,
        receipt_handle: &str,
        delay: Duration,
    ) -> Result<(), QueueError>;
}
