//! The SQS commands: `enqueue` and `retry` (one SendMessage each, after checking the batch in
//! the payouts table), `dlq peek` (look without taking) and `redrive` (SQS's message-move task,
//! or a receive → send → delete move where the service has no move tasks).

use crate::progress::Progress;
use crate::{OpsError, rfc3339};
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};
use payouts_core::domain::ItemStatus;
use payouts_core::job::PayoutJob;
use payouts_core::ports::repository::PayoutRepository;
use serde::Serialize;
use std::fmt;
use std::time::Duration;

fn sqs_error<E, R>(what: &str, err: SdkError<E, R>) -> OpsError
where
    E: std::error::Error + 'static,
    R: fmt::Debug,
{
    OpsError::Runtime(format!(
        "SQS {what} failed: {} (check the AWS credentials, region and queue URL, then run the command again)",
        DisplayErrorContext(&err)
    ))
}

// -------------------------------------------------------------------------- enqueue / retry

/// A job `enqueue` or `retry` sent: what, where, and SQS's message id (to find it in logs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SentJob {
    /// The batch the job is for.
    pub batch_id: String,
    /// Its `jobId`, which the executor logs.
    pub job_id: Option<String>,
    /// SQS's id for the message.
    pub message_id: String,
    /// Where it was sent.
    pub queue_url: String,
    /// The message body, exactly as sent.
    pub body: String,
}

impl fmt::Display for SentJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "enqueued payout.execute for batch {}: message {}",
            self.batch_id, self.message_id
        )?;
        writeln!(f, "  body: {}", self.body)
    }
}

/// Sends `job` to the jobs queue after checking (strongly consistent read) that its batch
/// exists. The body is validated as the executor parses it first: a job it would drop as
/// poison is refused here, before anything is sent.
async fn send_job(
    store: &dyn PayoutRepository,
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    job: &PayoutJob,
) -> Result<SentJob, OpsError> {
    let body = serde_json::to_string(job).map_err(|e| OpsError::Runtime(e.to_string()))?;
    PayoutJob::parse(Some(&body)).map_err(|e| OpsError::Usage(e.to_string()))?;
    let batch_id = &job.payload.batch_id;
    if store.get_batch(batch_id).await?.is_none() {
        return Err(OpsError::BatchNotFound(batch_id.clone()));
    }
    let out = sqs
        .send_message()
        .queue_url(queue_url)
        .message_body(&body)
        .send()
        .await
        .map_err(|e| sqs_error("SendMessage to the jobs queue", e))?;
    Ok(SentJob {
        batch_id: batch_id.clone(),
        job_id: job.job_id.clone(),
        message_id: out.message_id.unwrap_or_default(),
        queue_url: queue_url.to_owned(),
        body,
    })
}

/// Sends a whole-batch `payout.execute` job for `batch_id` (as upstream does), refusing a
/// batch that is not in the payouts table: a job for it would only be dropped as poison.
pub async fn enqueue(
    store: &dyn PayoutRepository,
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    batch_id: &str,
    job_id: Option<String>,
) -> Result<SentJob, OpsError> {
    send_job(
        store,
        sqs,
        queue_url,
        &PayoutJob::for_batch(batch_id, job_id),
    )
    .await
}

/// What `retry` sent, and what its run will find to do (the batch's live counts when read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetrySent {
    /// The job sent.
    pub sent: SentJob,
    /// The batch record's status before the retry.
    pub batch_status: String,
    /// Whether a run has counted the batch (otherwise the counts below are unknown: zeros).
    pub counted: bool,
    /// Items the run picks up (`pending`, `pending_kyc`, `failed`, `submitting` without a live
    /// lease): `failed` ones under a new idempotency key, so a refused transfer is tried again.
    pub failed: u64,
    /// Items whose recipient was not payable: re-checked.
    pub pending_kyc: u64,
    /// Items never tried.
    pub pending: u64,
    /// Items an interrupted attempt left: driven again once their lease has run out.
    pub submitting: u64,
}

impl fmt::Display for RetrySent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "sent a fresh payout.execute job for batch {} (job {}, message {})",
            self.sent.batch_id,
            self.sent.job_id.as_deref().unwrap_or("-"),
            self.sent.message_id
        )?;
        writeln!(f, "  body: {}", self.sent.body)?;
        if !self.counted {
            return writeln!(
                f,
                "the batch has not started: its first run pays every payable item"
            );
        }
        let todo = self.failed + self.pending_kyc + self.pending + self.submitting;
        if todo == 0 {
            writeln!(
                f,
                "nothing to retry: no failed, pending_kyc, pending or submitting item (batch {})",
                self.batch_status
            )
        } else {
            writeln!(
                f,
                "its run retries {} failed and {} pending_kyc item(s), and drives {} pending and {} submitting; processing and paid items are skipped",
                self.failed, self.pending_kyc, self.pending, self.submitting
            )?;
            writeln!(
                f,
                "watch it with: payouts-ops status {}",
                self.sent.batch_id
            )
        }
    }
}

/// Sends a fresh whole-batch job for `batch_id` (job id `ops-retry-<now as RFC 3339>`, so its
/// runs are told apart in the logs): what an operator runs once the cause of failures is fixed.
/// A job's first run retries `failed` items under a new key generation and re-checks the
/// `pending_kyc` ones; paid and processing items are skipped, so a retry never pays twice.
/// Same checks as [`enqueue`]; the batch's live counts (one small read) say what the run has
/// to do.
pub async fn retry(
    store: &dyn PayoutRepository,
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    batch_id: &str,
    now_ms: u64,
) -> Result<RetrySent, OpsError> {
    let job_id = format!("ops-retry-{}", payouts_core::clock::rfc3339_from_ms(now_ms));
    let job = PayoutJob::for_batch(batch_id, Some(job_id));
    // Validate before reading, as `send_job` does, so a bad id is a usage error (exit 2).
    PayoutJob::parse(Some(
        &serde_json::to_string(&job).map_err(|e| OpsError::Runtime(e.to_string()))?,
    ))
    .map_err(|e| OpsError::Usage(e.to_string()))?;
    let counts = store
        .batch_counts(batch_id)
        .await?
        .ok_or_else(|| OpsError::BatchNotFound(batch_id.to_owned()))?;
    let sent = send_job(store, sqs, queue_url, &job).await?;
    Ok(RetrySent {
        sent,
        batch_status: counts.status.clone(),
        counted: counts.total.is_some(),
        failed: counts.count(ItemStatus::Failed),
        pending_kyc: counts.count(ItemStatus::PendingKyc),
        pending: counts.count(ItemStatus::Pending),
        submitting: counts.count(ItemStatus::Submitting),
    })
}

// --------------------------------------------------------------------------------- dlq peek

/// How long `peek_dlq` holds the messages it received before making them visible again: if
/// the command dies in between, they come back on their own after this.
const PEEK_HOLD_SECS: i32 = 30;

/// One DLQ message as `dlq peek` saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DlqMessage {
    /// SQS's id for the message.
    pub message_id: String,
    /// `ApproximateReceiveCount`: receives in the DLQ (this peek's included).
    pub receive_count: Option<u64>,
    /// When the message was first sent (to the jobs queue; a DLQ keeps the original time).
    pub sent_at: Option<String>,
    /// The batch, when the body is a `payout.execute` job.
    pub batch_id: Option<String>,
    /// The body, exactly as stored.
    pub body: String,
}

/// The messages `dlq peek` saw, left in the DLQ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DlqPeek {
    /// The DLQ looked at.
    pub queue_url: String,
    /// `ApproximateNumberOfMessages` + `…NotVisible` before the peek.
    pub approximate_messages: Option<u64>,
    /// The messages seen, each once.
    pub messages: Vec<DlqMessage>,
    /// Messages whose visibility could not be reset: they are visible again after
    /// [`PEEK_HOLD_SECS`] seconds instead of at once (nothing is lost).
    pub warnings: Vec<String>,
}

impl fmt::Display for DlqPeek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self
            .approximate_messages
            .map_or(String::new(), |n| format!(" of about {n}"));
        if self.messages.is_empty() {
            writeln!(f, "no message in the DLQ")?;
        } else {
            writeln!(
                f,
                "{} message(s){total} in the DLQ (left there)",
                self.messages.len()
            )?;
        }
        for m in &self.messages {
            writeln!(
                f,
                "message {}  receives {}  sent {}{}",
                m.message_id,
                m.receive_count.map_or("-".into(), |n| n.to_string()),
                m.sent_at.as_deref().unwrap_or("-"),
                m.batch_id
                    .as_deref()
                    .map_or(String::new(), |b| format!("  batch {b}"))
            )?;
            writeln!(f, "  {}", m.body)?;
        }
        for warning in &self.warnings {
            writeln!(f, "warning: {warning}")?;
        }
        Ok(())
    }
}

/// Looks at up to `max` DLQ messages without removing them: receives them (held for
/// [`PEEK_HOLD_SECS`] so that each is seen once), then makes them visible again at once
/// (ChangeMessageVisibility to 0). It never deletes. A receive counts in the message's
/// `ApproximateReceiveCount` in the DLQ, which has no redrive policy of its own.
pub async fn peek_dlq(
    sqs: &aws_sdk_sqs::Client,
    dlq_url: &str,
    max: usize,
) -> Result<DlqPeek, OpsError> {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(dlq_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| sqs_error("GetQueueAttributes of the DLQ", e))?
        .attributes
        .unwrap_or_default();
    let approximate_messages = [
        QueueAttributeName::ApproximateNumberOfMessages,
        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
    ]
    .iter()
    .map(|name| attributes.get(name).and_then(|v| v.parse::<u64>().ok()))
    .sum::<Option<u64>>();

    let mut messages = Vec::new();
    let mut handles = Vec::new();
    let mut failure = None;
    while messages.len() < max {
        let want = (max - messages.len()).min(10) as i32;
        let out = match sqs
            .receive_message()
            .queue_url(dlq_url)
            .max_number_of_messages(want)
            .wait_time_seconds(1)
            .visibility_timeout(PEEK_HOLD_SECS)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
        {
            Ok(out) => out,
            Err(err) => {
                failure = Some(sqs_error("ReceiveMessage from the DLQ", err));
                break;
            }
        };
        let received = out.messages.unwrap_or_default();
        if received.is_empty() {
            break;
        }
        for m in received {
            let system = m.attributes.unwrap_or_default();
            let number = |name| {
                system
                    .get(&name)
                    .and_then(|v: &String| v.parse::<u64>().ok())
            };
            let body = m.body.unwrap_or_default();
            messages.push(DlqMessage {
                message_id: m.message_id.unwrap_or_default(),
                receive_count: number(MessageSystemAttributeName::ApproximateReceiveCount),
                sent_at: rfc3339(number(MessageSystemAttributeName::SentTimestamp)),
                batch_id: PayoutJob::parse(Some(&body))
                    .ok()
                    .map(|job| job.payload.batch_id),
                body,
            });
            if let Some(handle) = m.receipt_handle {
                handles.push(handle);
            }
        }
    }
    let warnings = make_visible(sqs, dlq_url, &handles).await;
    if let Some(err) = failure {
        return Err(err);
    }
    Ok(DlqPeek {
        queue_url: dlq_url.to_owned(),
        approximate_messages,
        messages,
        warnings,
    })
}

/// Makes received messages visible again at once; what could not be reset, as warnings.
async fn make_visible(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    handles: &[String],
) -> Vec<String> {
    let mut warnings = Vec::new();
    for chunk in handles.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, handle)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(handle)
                    .visibility_timeout(0)
                    .build()
                    .ok()
            })
            .collect::<Vec<_>>();
        match sqs
            .change_message_visibility_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => {
                for failed in out.failed() {
                    warnings.push(format!(
                        "a message's visibility was not reset ({}: {}); it is visible again within {PEEK_HOLD_SECS} s",
                        failed.code(),
                        failed.message().unwrap_or("")
                    ));
                }
            }
            Err(err) => warnings.push(format!(
                "ChangeMessageVisibilityBatch failed ({}); {} message(s) are visible again within {PEEK_HOLD_SECS} s",
                DisplayErrorContext(&err),
                chunk.len()
            )),
        }
    }
    warnings
}

// ---------------------------------------------------------------------------------- redrive

/// How `redrive` moves messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RedriveMethod {
    /// SQS's own message-move task (StartMessageMoveTask): SQS moves the whole DLQ, keeping
    /// each message's body and attributes.
    MoveTask,
    /// Receive → SendMessage → DeleteMessage, one message at a time (`--max`, or a service
    /// without move tasks).
    ByHand,
}

/// What `redrive` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedriveOptions {
    /// Move at most this many messages, by hand (a move task always moves the whole DLQ).
    pub max: Option<usize>,
    /// Watch the move task until it ends (`false`: `--no-wait`, report it started).
    pub wait: bool,
    /// How often to look at the move task while waiting.
    pub poll_every: Duration,
    /// The move task's `MaxNumberOfMessagesPerSecond` (SQS's default: up to 500/s).
    pub rate: Option<i32>,
}

impl Default for RedriveOptions {
    fn default() -> Self {
        RedriveOptions {
            max: None,
            wait: true,
            poll_every: Duration::from_secs(2),
            rate: None,
        }
    }
}

/// A message-move task as ListMessageMoveTasks reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MoveTask {
    /// Present while the task runs (CancelMessageMoveTask takes it).
    pub task_handle: Option<String>,
    /// `RUNNING`, `COMPLETED`, `CANCELLING`, `CANCELLED` or `FAILED`.
    pub status: String,
    /// The DLQ.
    pub source_arn: String,
    /// The jobs queue.
    pub destination_arn: String,
    /// `ApproximateNumberOfMessagesMoved`.
    pub moved: u64,
    /// `ApproximateNumberOfMessagesToMove`, the DLQ's depth when the task started.
    pub to_move: Option<u64>,
    /// Why a `FAILED` task failed.
    pub failure_reason: Option<String>,
    /// When the task started (RFC 3339).
    pub started_at: Option<String>,
}

/// What `redrive` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RedriveReport {
    /// How the messages were moved.
    pub method: RedriveMethod,
    /// Messages moved to the jobs queue (for a move task, SQS's approximate count).
    pub moved: u64,
    /// The move task, when one was started.
    pub task: Option<MoveTask>,
    /// Why the messages were moved by hand rather than by a move task.
    pub by_hand_because: Option<String>,
}

impl fmt::Display for RedriveReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.method, &self.task) {
            (RedriveMethod::MoveTask, Some(task)) => {
                let of = task.to_move.map_or(String::new(), |n| format!(" of {n}"));
                writeln!(
                    f,
                    "redrive by SQS message-move task: {} ({} message(s){of} moved)",
                    task.status, task.moved
                )?;
                if let Some(handle) = &task.task_handle {
                    writeln!(f, "  task handle {handle}")?;
                }
                if task.status == "RUNNING" {
                    writeln!(
                        f,
                        "  SQS goes on moving; watch it with `aws sqs list-message-move-tasks --source-arn {}`",
                        task.source_arn
                    )?;
                }
                Ok(())
            }
            _ => {
                writeln!(f, "redrove {} message(s) from the DLQ", self.moved)?;
                if let Some(why) = &self.by_hand_because {
                    writeln!(f, "  moved one by one: {why}")?;
                }
                Ok(())
            }
        }
    }
}

/// Whether an SQS error answer means "this service does not know the operation": AWS's
/// `UnknownOperationException` / `InvalidAction` / `UnsupportedOperation` / `NotImplemented`
/// codes, HTTP 501, or an HTTP 500 that carries no AWS error code at all (how moto answers an
/// operation it does not implement: an HTML "Internal Server Error"). Only then does `redrive`
/// fall back to moving messages by hand.
pub fn unsupported_operation(code: Option<&str>, http_status: Option<u16>) -> bool {
    const CODES: [&str; 5] = [
        "UnknownOperationException",
        "InvalidAction",
        "UnsupportedOperation",
        "AWS.SimpleQueueService.UnsupportedOperation",
        "NotImplemented",
    ];
    code.is_some_and(|code| CODES.contains(&code))
        || http_status == Some(501)
        || (http_status == Some(500) && code.is_none_or(str::is_empty))
}

type HttpResponse = aws_sdk_sqs::config::http::HttpResponse;

fn http_status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

fn is_unsupported<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    unsupported_operation(err.code(), http_status(err))
}

/// The error in a few words: its AWS code, else its HTTP status.
fn short_error<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> String {
    match (err.code(), http_status(err)) {
        (Some(code), _) => code.to_owned(),
        (None, Some(status)) => format!("HTTP {status} without an AWS error code"),
        (None, None) => "no answer".to_owned(),
    }
}

/// Moves the DLQ's messages back to the jobs queue.
///
/// Without `max`: by SQS's own message-move task (source: the DLQ's ARN, destination: the jobs
/// queue's, from GetQueueAttributes `QueueArn`), then watches it (ListMessageMoveTasks, every
/// `poll_every`, reporting to `progress`) until it ends, unless `wait` is off. A task that
/// fails or is cancelled is an error. Where the service answers that it does not support move
/// tasks ([`unsupported_operation`]), the messages are moved by hand instead.
///
/// With `max`: by hand, exactly `max` messages at most: each received, sent (body and message
/// attributes) and deleted from the DLQ only after the jobs queue accepted it. A failure stops
/// the run: a message not yet sent stays in the DLQ (visible again after 60 s); one sent but
/// not deleted is redriven twice, which the executor's idempotency makes harmless.
pub async fn redrive(
    sqs: &aws_sdk_sqs::Client,
    dlq_url: &str,
    queue_url: &str,
    options: RedriveOptions,
    progress: &mut dyn Progress,
) -> Result<RedriveReport, OpsError> {
    if dlq_url == queue_url {
        return Err(OpsError::Usage(
            "the DLQ and the jobs queue are the same queue: check PAYOUT_DLQ_URL and PAYOUT_JOBS_QUEUE_URL".into(),
        ));
    }
    if let Some(max) = options.max {
        let moved = move_by_hand(sqs, dlq_url, queue_url, Some(max), progress).await?;
        return Ok(RedriveReport {
            method: RedriveMethod::ByHand,
            moved,
            task: None,
            by_hand_because: Some(format!(
                "--max {max} (a move task always moves the whole DLQ)"
            )),
        });
    }
    let source_arn = queue_arn(sqs, dlq_url, "the DLQ").await?;
    let destination_arn = queue_arn(sqs, queue_url, "the jobs queue").await?;
    let started = sqs
        .start_message_move_task()
        .source_arn(&source_arn)
        .destination_arn(&destination_arn)
        .set_max_number_of_messages_per_second(options.rate)
        .send()
        .await;
    let handle = match started {
        Ok(out) => out.task_handle,
        Err(err) if is_unsupported(&err) => {
            let because = format!(
                "the service does not support message-move tasks (StartMessageMoveTask: {})",
                short_error(&err)
            );
            let moved = move_by_hand(sqs, dlq_url, queue_url, None, progress).await?;
            return Ok(RedriveReport {
                method: RedriveMethod::ByHand,
                moved,
                task: None,
                by_hand_because: Some(because),
            });
        }
        Err(err) => {
            return Err(OpsError::Runtime(format!(
                "SQS StartMessageMoveTask failed: {} (a move task may already be running on the DLQ: \
                 `aws sqs list-message-move-tasks --source-arn {source_arn}`; the DLQ must be the \
                 dead-letter queue of a queue; or move messages one by one with --max N)",
                DisplayErrorContext(&err)
            )));
        }
    };
    loop {
        let task = match current_task(sqs, &source_arn, handle.as_deref()).await {
            Ok(task) => task,
            Err(err) => {
                progress.finish();
                return Err(err);
            }
        };
        let task = task.unwrap_or_else(|| MoveTask {
            task_handle: handle.clone(),
            status: "RUNNING".into(),
            source_arn: source_arn.clone(),
            destination_arn: destination_arn.clone(),
            moved: 0,
            to_move: None,
            failure_reason: None,
            started_at: None,
        });
        progress.update("messages moved", task.moved, task.to_move);
        let ended = !matches!(task.status.as_str(), "RUNNING" | "CANCELLING");
        if ended || !options.wait {
            progress.finish();
            return match task.status.as_str() {
                "FAILED" => Err(OpsError::Runtime(format!(
                    "the message-move task failed after moving {} message(s): {} (fix that, then run redrive again; what was not moved is still in the DLQ)",
                    task.moved,
                    task.failure_reason.as_deref().unwrap_or("no reason given")
                ))),
                "CANCELLED" => Err(OpsError::Runtime(format!(
                    "the message-move task was cancelled after moving {} message(s) (CancelMessageMoveTask); run redrive again to move the rest",
                    task.moved
                ))),
                _ => Ok(RedriveReport {
                    method: RedriveMethod::MoveTask,
                    moved: task.moved,
                    task: Some(task),
                    by_hand_because: None,
                }),
            };
        }
        tokio::time::sleep(options.poll_every).await;
    }
}

/// The queue's ARN (GetQueueAttributes `QueueArn`): move tasks name queues by ARN.
async fn queue_arn(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    which: &str,
) -> Result<String, OpsError> {
    sqs.get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| sqs_error(&format!("GetQueueAttributes (QueueArn) of {which}"), e))?
        .attributes
        .unwrap_or_default()
        .remove(&QueueAttributeName::QueueArn)
        .ok_or_else(|| OpsError::Runtime(format!("SQS did not return the QueueArn of {which}")))
}

/// The DLQ's move task: the one with our handle, else the most recent (a finished task has
/// no handle any more, and only one task runs per source queue at a time).
async fn current_task(
    sqs: &aws_sdk_sqs::Client,
    source_arn: &str,
    handle: Option<&str>,
) -> Result<Option<MoveTask>, OpsError> {
    let out = sqs
        .list_message_move_tasks()
        .source_arn(source_arn)
        .max_results(10)
        .send()
        .await
        .map_err(|e| sqs_error("ListMessageMoveTasks", e))?;
    let mut tasks = out.results.unwrap_or_default();
    let index = tasks
        .iter()
        .position(|t| handle.is_some() && t.task_handle() == handle)
        .or_else(|| {
            tasks
                .iter()
                .enumerate()
                .max_by_key(|(_, t)| t.started_timestamp())
                .map(|(i, _)| i)
        });
    Ok(index.map(|i| {
        let t = tasks.swap_remove(i);
        MoveTask {
            status: t.status().unwrap_or("UNKNOWN").to_owned(),
            source_arn: t.source_arn().unwrap_or(source_arn).to_owned(),
            destination_arn: t.destination_arn().unwrap_or_default().to_owned(),
            moved: t.approximate_number_of_messages_moved().max(0) as u64,
            to_move: t
                .approximate_number_of_messages_to_move()
                .map(|n| n.max(0) as u64),
            failure_reason: t.failure_reason().map(str::to_owned),
            started_at: rfc3339(
                u64::try_from(t.started_timestamp())
                    .ok()
                    .filter(|ms| *ms > 0),
            ),
            task_handle: t.task_handle,
        }
    }))
}

/// Receive → send → delete, until the DLQ answers empty or `limit` messages were moved.
async fn move_by_hand(
    sqs: &aws_sdk_sqs::Client,
    dlq_url: &str,
    queue_url: &str,
    limit: Option<usize>,
    progress: &mut dyn Progress,
) -> Result<u64, OpsError> {
    let result = move_by_hand_inner(sqs, dlq_url, queue_url, limit, progress).await;
    progress.finish();
    result
}

async fn move_by_hand_inner(
    sqs: &aws_sdk_sqs::Client,
    dlq_url: &str,
    queue_url: &str,
    limit: Option<usize>,
    progress: &mut dyn Progress,
) -> Result<u64, OpsError> {
    let mut moved: u64 = 0;
    let partial =
        |moved: u64, err: OpsError| OpsError::Runtime(format!("{err} (moved {moved} before this)"));
    loop {
        let want = limit.map_or(10, |limit| limit.saturating_sub(moved as usize).min(10));
        if want == 0 {
            return Ok(moved);
        }
        let out = sqs
            .receive_message()
            .queue_url(dlq_url)
            .max_number_of_messages(want as i32)
            .wait_time_seconds(1)
            .visibility_timeout(60)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| partial(moved, sqs_error("ReceiveMessage from the DLQ", e)))?;
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(moved);
        }
        for message in messages {
            let id = message.message_id.clone().unwrap_or_default();
            sqs.send_message()
                .queue_url(queue_url)
                .message_body(message.body.unwrap_or_default())
                .set_message_attributes(message.message_attributes)
                .send()
                .await
                .map_err(|e| {
                    partial(
                        moved,
                        sqs_error(&format!("SendMessage of DLQ message {id}"), e),
                    )
                })?;
            sqs.delete_message()
                .queue_url(dlq_url)
                .receipt_handle(message.receipt_handle.unwrap_or_default())
                .send()
                .await
                .map_err(|e| {
                    partial(
                        moved,
                        sqs_error(
                            &format!(
                                "DeleteMessage of DLQ message {id} (already sent to the jobs queue; it will be redriven again)"
                            ),
                            e,
                        ),
                    )
                })?;
            moved += 1;
            progress.update("messages moved", moved, limit.map(|l| l as u64));
        }
    }
}
