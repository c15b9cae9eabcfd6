//! Where `payout.execute` jobs go: the executor's Lambda enqueues a continuation when a batch
//! outlasts one invocation.

use crate::job::PayoutJob;

/// A job could not be enqueued; the caller falls back to the queue's own redelivery.
#[derive(Debug, thiserror::Error)]
#[error("enqueueing the payout job failed: {0}; the message is left for redelivery instead")]
pub struct EnqueueError(pub String);

/// The jobs queue, as the handler sees it.
#[async_trait::async_trait]
pub trait JobQueue: Send + Sync {
    /// Sends `job` to the queue the executor consumes.
    async fn enqueue(&self, job: &PayoutJob) -> Result<(), EnqueueError>;
}
