//! The jobs queue on SQS (`PAYOUT_JOBS_QUEUE_URL`): where a batch that ran out of time is
//! continued, so a long batch advances without spending the message's receive count, and where
//! the reconciler resumes a batch nothing is running.

use payouts_core::job::PayoutJob;
use payouts_core::ports::queue::{EnqueueError, JobQueue};

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

#[async_trait::async_trait]
impl JobQueue for SqsJobQueue {
    async fn enqueue(&self, job: &PayoutJob) -> Result<(), EnqueueError> {
        let body = serde_json::to_string(job).map_err(|e| EnqueueError(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| {
                EnqueueError(
                    e.as_service_error()
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| e.to_string()),
                )
            })?;
        Ok(())
    }
}
