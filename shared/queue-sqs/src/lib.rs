//! The jobs queue on SQS (`PAYOUT_JOBS_QUEUE_URL`): where a batch that ran out of time is
//! continued, so a long batch advances without spending the message's receive count; where a
//! fanned-out batch's segment jobs go; where the reconciler resumes a batch nothing is running;
//! and how a job to retry is made visible again after its backoff.

use payouts_core::job::PayoutJob;
use payouts_core::ports::queue::{JobQueue, QueueError};
use std::time::Duration;

/// SQS's own bound on a message's visibility timeout (12 hours).
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
/// Messages per SendMessageBatch request (SQS's limit).
const SEND_BATCH: usize = 10;

/// Sends `payout.execute` jobs to one SQS queue.
pub struct SqsJobQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsJobQueue {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: String) -> Self {
        SqsJobQueue { client, queue_url }
    }
}

/// SQS's own words when it answered, the transport's otherwise.
fn service_detail<E, R>(e: &aws_sdk_sqs::error::SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    e.as_service_error()
        .map(|s| s.to_string())
        .unwrap_or_else(|| e.to_string())
}

fn body(job: &PayoutJob) -> Result<String, QueueError> {
    serde_json::to_string(job).map_err(|e| QueueError::enqueue(e.to_string()))
}

#[async_trait::async_trait]
impl JobQueue for SqsJobQueue {
    async fn enqueue(&self, job: &PayoutJob) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body(job)?)
            .send()
            .await
            .map_err(|e| QueueError::enqueue(service_detail(&e)))?;
        Ok(())
    }

    async fn enqueue_all(&self, jobs: &[PayoutJob]) -> Result<(), QueueError> {
        use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
        for chunk in jobs.chunks(SEND_BATCH) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (index, job) in chunk.iter().enumerate() {
                entries.push(
                    SendMessageBatchRequestEntry::builder()
                        .id(index.to_string())
                        .message_body(body(job)?)
                        .build()
                        .map_err(|e| QueueError::enqueue(e.to_string()))?,
                );
            }
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| QueueError::enqueue(service_detail(&e)))?;
            if let Some(failed) = out.failed.first() {
                return Err(QueueError::enqueue(format!(
                    "{} of {} messages refused, first: {} {}",
                    out.failed.len(),
                    chunk.len(),
                    failed.code,
                    failed.message.as_deref().unwrap_or("")
                )));
            }
        }
        Ok(())
    }

    async fn redeliver_after(
        &self,
        receipt_handle: &str,
        delay: Duration,
    ) -> Result<(), QueueError> {
        let seconds = delay.min(MAX_VISIBILITY).as_secs_f64().ceil() as i32;
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds)
            .send()
            .await
            .map_err(|e| QueueError::delay(service_detail(&e)))?;
        Ok(())
    }
}
