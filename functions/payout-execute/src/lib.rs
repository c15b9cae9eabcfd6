//! The `payout.execute` SQS consumer: turns each SQS record into one batch run, and the runs'
//! outcomes into SQS's partial-batch response (`docs/design.md#job-messages-and-their-fate`).
//! The protocol itself is `payouts_core::executor`; this crate decides what SQS should do with
//! each message. `main.rs` builds the concrete store, adapters and queue.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures_util::future::join_all;
use payouts_core::executor::{BatchSummary, ExecuteError, Executor, FanOut, RunPlan};
use payouts_core::job::PayoutJob;
use payouts_core::metrics::{MetricsLine, MetricsSink, PSP_METRICS, StdoutMetrics, psp_call_lines};
use payouts_core::ports::queue::JobQueue;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;
use tracing::{Instrument, error, info, info_span, warn};

/// The function's name in its metrics (dimension `Function`).
pub const FUNCTION: &str = "payout-execute";

/// Every metric this function emits (namespace `Payouts`): what the template's alarms and
/// dashboard may use, checked by the template test.
pub const EXECUTE_METRICS: &[&str] = &[
    "ItemsSubmitted",
    "ItemsPendingKyc",
    "ItemsFailed",
    "ItemsRetryable",
    "ItemsInvalid",
    "ItemsDeferred",
    "ItemsHalted",
    "DoublePayments",
    "JobsRetried",
    "JobsContinued",
    "SegmentsSent",
    "PoisonMessages",
];

/// [`EXECUTE_METRICS`] and the PSP-health metrics.
pub fn emitted_metrics() -> Vec<&'static str> {
    EXECUTE_METRICS.iter().chain(PSP_METRICS).copied().collect()
}

/// Everything the handler needs, built once per Lambda instance.
pub struct App {
    pub executor: Executor,
    /// The jobs queue: where a batch that ran out of time is continued, where a large batch's
    /// segments go, and where a job to retry gets its backoff. `None` (a local run without a
    /// queue): no fan-out, and SQS's own visibility timeout times retries.
    pub queue: Option<Arc<dyn JobQueue>>,
    /// When a whole-batch job is split into segments (off without a queue).
    pub fan_out: FanOut,
    /// How long a job to retry waits before it is received again.
    pub retry: RetryBackoff,
    /// Where each message's metrics go (stdout, as EMF, in Lambda).
    pub metrics: Arc<dyn MetricsSink>,
}

impl App {
    /// An app with the default backoff; fan-out is off until [`App::with_fan_out`].
    pub fn new(executor: Executor, queue: Option<Arc<dyn JobQueue>>) -> Self {
        App {
            executor,
            queue,
            fan_out: FanOut::OFF,
            retry: RetryBackoff::default(),
            metrics: Arc::new(StdoutMetrics),
        }
    }

    /// Sends the metrics to `sink` instead of stdout.
    pub fn with_metrics(mut self, sink: Arc<dyn MetricsSink>) -> Self {
        self.metrics = sink;
        self
    }

    /// Fans large batches out as `fan_out` says (only with a queue to send the segments to).
    pub fn with_fan_out(mut self, fan_out: FanOut) -> Self {
        self.fan_out = fan_out;
        self
    }
}

/// The wait before a job that must be retried is received again: exponential in the message's
/// receive count, capped, with "equal jitter" (between half and all of the step, so jobs that
/// failed together do not return together), and never shorter than a PSP's `Retry-After`.
/// The queue's `maxReceiveCount` bounds the attempts; the DLQ catches what never succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryBackoff {
    /// The step after the first receive.
    pub first: Duration,
    /// No step is longer.
    pub cap: Duration,
}

impl Default for RetryBackoff {
    fn default() -> Self {
        RetryBackoff {
            first: Duration::from_secs(5),
            cap: Duration::from_secs(300),
        }
    }
}

impl RetryBackoff {
    /// The wait after receive number `receive_count` (1 for the first) of the message
    /// `message_id`, at least `at_least`.
    pub fn delay(
        &self,
        receive_count: u32,
        message_id: &str,
        at_least: Option<Duration>,
    ) -> Duration {
        let doublings = receive_count.saturating_sub(1).min(20);
        let step = self.first.saturating_mul(1 << doublings).min(self.cap);
        // Jitter from the message and attempt: spread like a random draw, and repeatable.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (message_id, receive_count).hash(&mut hasher);
        let fraction = (hasher.finish() % 1_000) as f64 / 1_000.0;
        let jittered = step / 2 + step.mul_f64(fraction / 2.0);
        jittered.max(at_least.unwrap_or_default())
    }
}

/// What becomes of one SQS record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// The batch needs nothing more from this message: delete it.
    Done(Option<BatchSummary>),
    /// Ran out of time; a continuation job was enqueued, so this message is deleted.
    Continued(BatchSummary),
    /// A large batch was split: this many segment jobs were enqueued, so this message is deleted.
    FannedOut(usize),
    /// Something retryable happened: SQS redelivers after the backoff ([`RetryBackoff`]).
    Retry(String),
    /// The message can never succeed (malformed, unknown type, unknown batch, unpayable batch):
    /// logged with its reason and deleted, never retried. `code` names the reason in metrics.
    Poison { code: &'static str, reason: String },
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

/// Runs one message and decides its fate. A message to retry is given its backoff here.
pub async fn handle_message(
    app: &App,
    message: SqsMessage,
    deadline: Option<Instant>,
) -> Disposition {
    let run = run_message(app, &message, deadline).await;
    if let Disposition::Retry(reason) = &run.disposition {
        // The longest wait a PSP asked for in the run (a 429's `Retry-After`).
        let retry_after = run
            .summary
            .as_ref()
            .and_then(|s| s.retry_after_ms)
            .map(Duration::from_millis);
        delay_redelivery(app, &message, retry_after, reason).await;
    }
    emit_metrics(app, &run);
    run.disposition
}

/// What running one message came to.
struct MessageRun {
    disposition: Disposition,
    /// What the batch run did, when there was one.
    summary: Option<BatchSummary>,
}

impl From<Disposition> for MessageRun {
    fn from(disposition: Disposition) -> Self {
        MessageRun {
            disposition,
            summary: None,
        }
    }
}

/// The message's metrics: what its run did to items, what became of the job, and the PSP calls
/// made meanwhile.
fn emit_metrics(app: &App, run: &MessageRun) {
    let now_ms = payouts_core::clock::now_ms();
    let mut line = MetricsLine::new(FUNCTION, now_ms);
    if let Some(summary) = &run.summary {
        if !summary.provider.is_empty() {
            line = line.by("Provider", &summary.provider);
        }
        line = line
            .count("ItemsSubmitted", summary.submitted)
            .count("ItemsPendingKyc", summary.pending_kyc)
            .count("ItemsFailed", summary.failed)
            .count("ItemsRetryable", summary.retryable)
            .count("ItemsInvalid", summary.invalid)
            .count("ItemsDeferred", summary.deferred)
            .count("ItemsHalted", summary.halted)
            .count("DoublePayments", summary.double_payments);
    }
    line = match &run.disposition {
        Disposition::Done(_) => line,
        Disposition::Continued(_) => line.count("JobsContinued", 1),
        Disposition::FannedOut(segments) => line.count("SegmentsSent", *segments as u64),
        Disposition::Retry(_) => line.count("JobsRetried", 1),
        Disposition::Poison { code, .. } => line.by("Reason", code).count("PoisonMessages", 1),
    };
    app.metrics.emit(&line);
    for line in psp_call_lines(FUNCTION, now_ms, &app.executor.adapters().take_call_stats()) {
        app.metrics.emit(&line);
    }
}

/// Sets when a message to retry is received again; on failure the queue's visibility timeout
/// applies, which is slower but loses nothing.
async fn delay_redelivery(
    app: &App,
    message: &SqsMessage,
    retry_after: Option<Duration>,
    reason: &str,
) {
    let (Some(queue), Some(receipt_handle)) = (&app.queue, &message.receipt_handle) else {
        return;
    };
    let receive_count = message
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let message_id = message.message_id.as_deref().unwrap_or_default();
    let delay = app.retry.delay(receive_count, message_id, retry_after);
    match queue.redeliver_after(receipt_handle, delay).await {
        Ok(()) => info!(
            receive_count,
            retry_in_ms = delay.as_millis() as u64,
            psp_retry_after_ms = retry_after.map(|d| d.as_millis() as u64),
            %reason,
            "job to be retried: redelivered after its backoff"
        ),
        Err(err) => {
            warn!(error = %err, receive_count, "backoff not set; the queue's visibility timeout applies")
        }
    }
}

/// Runs one message.
async fn run_message(app: &App, message: &SqsMessage, deadline: Option<Instant>) -> MessageRun {
    let job = match PayoutJob::parse(message.body.as_deref()) {
        Ok(job) => job,
        Err(err) => {
            let body = message.body.as_deref().unwrap_or("");
            let excerpt: String = body.chars().take(512).collect();
            error!(reason = %err, body = %excerpt, "poison message dropped: it can never be executed");
            return Disposition::Poison {
                code: err.code(),
                reason: err.to_string(),
            }
            .into();
        }
    };
    let batch_id = job.payload.batch_id.clone();
    let segment = job.payload.segment.as_ref();
    let span = info_span!(
        "batch",
        batch_id = %batch_id,
        job_id = job.job_id.as_deref().unwrap_or(""),
        segment_after = segment.map(|s| s.after.as_str()),
        segment_through = segment.and_then(|s| s.through.as_deref()),
    );
    async {
        if let Some(after) = &job.payload.resume_after {
            info!(resume_after = %after, "continuation: resuming after the last item started");
        }
        if let Some(disposition) = fan_out(app, &job).await {
            return disposition.into();
        }
        let summary = match app.executor.run_job(&job, deadline).await {
            Ok(summary) => summary,
            Err(err) => return refused_run(err).into(),
        };
        MessageRun {
            disposition: dispose_of_run(app, &job, summary.clone()).await,
            summary: Some(summary),
        }
    }
    .instrument(span)
    .await
}

/// A run that could not start: retried (store trouble, items in flight) or poison.
fn refused_run(err: ExecuteError) -> Disposition {
    if err.is_retryable() {
        warn!(error = %err, "batch run failed; SQS will redeliver");
        Disposition::Retry(err.to_string())
    } else {
        error!(error = %err, code = err.code(), "poison message dropped: the batch cannot be executed as it stands");
        Disposition::Poison {
            code: err.code(),
            reason: err.to_string(),
        }
    }
}

/// A whole-batch job's first run: when the batch is large, sends one job per segment and
/// returns `FannedOut`; `None` when the job runs as it is (small batch, a segment or a
/// continuation already, no queue). Sending twice (a redelivered plan) only repeats reads:
/// each item is still paid once.
async fn fan_out(app: &App, job: &PayoutJob) -> Option<Disposition> {
    let queue = app.queue.as_ref()?;
    if job.payload.segment.is_some() || job.payload.resume_after.is_some() {
        return None;
    }
    let segments = match app
        .executor
        .plan_run(&job.payload.batch_id, app.fan_out)
        .await
    {
        Ok(RunPlan::Whole) => return None,
        Ok(RunPlan::Segments(segments)) => segments,
        Err(err) => return Some(refused_run(err)),
    };
    let jobs: Vec<PayoutJob> = segments
        .into_iter()
        .map(|segment| PayoutJob::segment(job, segment))
        .collect();
    Some(match queue.enqueue_all(&jobs).await {
        Ok(()) => {
            info!(
                segments = jobs.len(),
                "batch fanned out: one job per segment enqueued"
            );
            Disposition::FannedOut(jobs.len())
        }
        Err(err) => {
            warn!(error = %err, "segment jobs not all enqueued; SQS will redeliver the job, which plans again");
            Disposition::Retry(err.to_string())
        }
    })
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
    let continuation = app.queue.as_ref();
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
