//! The `payout.execute` SQS consumer: turns each SQS record into one batch run, and the runs'
//! outcomes into SQS's partial-batch response (`docs/design.md#job-messages-and-their-fate`).
//! The protocol itself is `payouts_core::executor`; this crate decides what SQS should do with
//! each message. `main.rs` builds the concrete store, adapters and queue.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures_util::future::join_all;
use payouts_core::executor::{BatchSummary, Executor};
use payouts_core::job::PayoutJob;
use payouts_core::ports::queue::JobQueue;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;
use tracing::{Instrument, error, info, info_span, warn};

/// Everything the handler needs, built once per Lambda instance.
pub struct App {
    pub executor: Executor,
    /// Where a batch that ran out of time is continued; `None` falls back to SQS's retry.
    pub continuation: Option<Arc<dyn JobQueue>>,
}

/// What becomes of one SQS record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// The batch needs nothing more from this message: delete it.
    Done(Option<BatchSummary>),
    /// Ran out of time; a continuation job was enqueued, so this message is deleted.
    Continued(BatchSummary),
    /// Something retryable happened: SQS redelivers after the visibility timeout.
    Retry(String),
    /// The message can never succeed (malformed, unknown type, unknown batch, unpayable batch):
    /// logged with its reason and deleted, never retried.
    Poison(String),
}

/// Handles one SQS event: each record in its own span, concurrently, sharing the deadline.
/// Records that must be retried are reported in `batchItemFailures`.
pub async fn handle_sqs_event(
    app: &App,
    event: SqsEvent,
    deadline: Option<Instant>,
) -> SqsBatchResponse {
    info!(
        records = event.records.len(),
        time_left_ms =
            deadline.map(|d| d.saturating_duration_since(Instant::now()).as_millis() as u64),
        "SQS event received"
    );
    let runs = event.records.into_iter().map(|message| {
        let message_id = message.message_id.clone().unwrap_or_default();
        let span = info_span!("sqs_message", message_id = %message_id);
        async move { (message_id, handle_message(app, message, deadline).await) }.instrument(span)
    });
    let mut response = SqsBatchResponse::default();
    for (message_id, disposition) in join_all(runs).await {
        if let Disposition::Retry(_) = disposition {
            response.add_failure(message_id);
        }
    }
    response
}

/// Runs one message and decides its fate.
pub async fn handle_message(
    app: &App,
    message: SqsMessage,
    deadline: Option<Instant>,
) -> Disposition {
    let job = match PayoutJob::parse(message.body.as_deref()) {
        Ok(job) => job,
        Err(err) => {
            let body = message.body.as_deref().unwrap_or("");
            let excerpt: String = body.chars().take(512).collect();
            error!(reason = %err, body = %excerpt, "poison message dropped: it can never be executed");
            return Disposition::Poison(err.to_string());
        }
    };
    let batch_id = job.payload.batch_id.clone();
    let span =
        info_span!("batch", batch_id = %batch_id, job_id = job.job_id.as_deref().unwrap_or(""));
    async {
        let run = match &job.payload.resume_after {
            None => app.executor.execute_payout_batch(&batch_id, deadline).await,
            Some(after) => {
                info!(resume_after = %after, "continuation: resuming after the last item started");
                app.executor
                    .continue_payout_batch(&batch_id, after, deadline)
                    .await
            }
        };
        let summary = match run {
            Ok(summary) => summary,
            Err(err) if err.is_retryable() => {
                warn!(error = %err, "batch run failed; SQS will redeliver");
                return Disposition::Retry(err.to_string());
            }
            Err(err) => {
                error!(error = %err, "poison message dropped: the batch cannot be executed as it stands");
                return Disposition::Poison(err.to_string());
            }
        };
        dispose_of_run(app, &job, summary).await
    }
    .instrument(span)
    .await
}

/// After a run: done; continued by a job that resumes where this run stopped (out of time and
/// items moved forward); or redelivered by SQS (errors, items held elsewhere, a platform
/// refusal, or a run that moved nothing: a chain without progress ends in the DLQ, alarmed).
async fn dispose_of_run(app: &App, job: &PayoutJob, summary: BatchSummary) -> Disposition {
    if !summary.needs_another_run() {
        info!("batch fully submitted");
        return Disposition::Done(Some(summary));
    }
    let progressed = summary.moved > 0;
    if summary.stopped_for_time() && !progressed {
        warn!("out of time without moving any item forward: not continued; SQS redelivers the job");
    }
    let continuation = app.continuation.as_ref();
    if let Some(queue) = continuation.filter(|_| summary.stopped_for_time() && progressed) {
        let next = PayoutJob::continuation(job, summary.resume_after.clone());
        match queue.enqueue(&next).await {
            Ok(()) => {
                info!(
                    deferred = summary.deferred,
                    resume_after = ?summary.resume_after,
                    "out of time: continuation job enqueued"
                );
                return Disposition::Continued(summary);
            }
            Err(err) => {
                warn!(error = %err, "continuation not enqueued; SQS will redeliver instead")
            }
        }
    }
    let reason = format!(
        "batch not fully submitted: retryable={} in_flight={} deferred={} halted={} read_all_pages={}",
        summary.retryable,
        summary.in_flight,
        summary.deferred,
        summary.halted,
        summary.read_all_pages
    );
    info!(%reason, "SQS will redeliver the job");
    Disposition::Retry(reason)
}

/// Converts the Lambda context's deadline (epoch milliseconds) into an `Instant`.
pub fn deadline_from_epoch_ms(deadline_ms: u64) -> Instant {
    // Lambda sends epoch milliseconds; `cargo lambda watch` sends the timeout itself (e.g. 600000).
    // Anything before 2001 cannot be an epoch deadline, so it is read as a duration from now.
    if deadline_ms < 1_000_000_000_000 {
        return Instant::now() + Duration::from_millis(deadline_ms);
    }
    let deadline = SystemTime::UNIX_EPOCH + Duration::from_millis(deadline_ms);
    let left = deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    Instant::now() + left
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn deadlines_are_read_as_epoch_ms_or_as_cargo_lambdas_timeout() {
        let now_ms = payouts_core::clock::now_ms();
        let left = |deadline: Instant| deadline.saturating_duration_since(Instant::now());
        let epoch = left(deadline_from_epoch_ms(now_ms + 30_000));
        assert!(
            epoch > Duration::from_secs(29) && epoch <= Duration::from_secs(30),
            "{epoch:?}"
        );
        let relative = left(deadline_from_epoch_ms(600_000));
        assert!(relative > Duration::from_secs(599), "{relative:?}");
        assert_eq!(left(deadline_from_epoch_ms(now_ms - 5_000)), Duration::ZERO);
    }
}
