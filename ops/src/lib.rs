//! The operator CLI's operations, as a library so they can be tested against a real DynamoDB
//! API: a batch's status, enqueueing its `payout.execute` job, and redriving the DLQ.
//!
//! The SQS side is deliberately thin (one SendMessage for `enqueue`; Receive → Send → Delete per
//! message for `redrive`); everything that decides something reads DynamoDB through
//! [`PayoutRepository`].

use aws_sdk_sqs::error::DisplayErrorContext;
use payouts_core::domain::{ItemStatus, PayoutBatch, PayoutItem};
use payouts_core::job::PayoutJob;
use payouts_core::ports::repository::{PayoutRepository, StoreError};
use std::fmt;

/// Exit code: the command did what it was asked.
pub const EXIT_OK: u8 = 0;
/// Exit code: an AWS call failed, or a record could not be read.
pub const EXIT_RUNTIME: u8 = 1;
/// Exit code: bad arguments or missing configuration (queue URL, table name, region).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the batch does not exist in the payouts table.
pub const EXIT_BATCH_NOT_FOUND: u8 = 3;

/// Why a command failed; each kind has its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("{0}")]
    Usage(String),
    #[error("missing configuration: {0}")]
    Config(String),
    #[error("batch {0:?} does not exist in the payouts table")]
    BatchNotFound(String),
    #[error("{0}")]
    Runtime(String),
}

impl OpsError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            OpsError::Usage(_) | OpsError::Config(_) => EXIT_USAGE,
            OpsError::BatchNotFound(_) => EXIT_BATCH_NOT_FOUND,
            OpsError::Runtime(_) => EXIT_RUNTIME,
        }
    }
}

impl From<StoreError> for OpsError {
    fn from(err: StoreError) -> Self {
        OpsError::Runtime(err.to_string())
    }
}

fn sqs_error<E, R>(what: &str, err: aws_sdk_sqs::error::SdkError<E, R>) -> OpsError
where
    E: std::error::Error + 'static,
    R: fmt::Debug,
{
    OpsError::Runtime(format!("SQS {what} failed: {}", DisplayErrorContext(&err)))
}

/// One item worth an operator's attention, or any item when listing them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemLine {
    pub item_id: String,
    pub user_id: String,
    pub net_amount: String,
    pub status: ItemStatus,
    /// `failureReason` for `failed`/`pending_kyc`, the PSP's id for `processing`/`paid`.
    pub detail: Option<String>,
}

impl From<PayoutItem> for ItemLine {
    fn from(item: PayoutItem) -> Self {
        let detail = match item.status {
            ItemStatus::Failed | ItemStatus::PendingKyc => item.failure_reason,
            _ => item.provider_payout_id.or(item.failure_reason),
        };
        ItemLine {
            item_id: item.item_id,
            user_id: item.user_id,
            net_amount: item.net_amount,
            status: item.status,
            detail,
        }
    }
}

/// A batch's status: its live per-status counts (one small read of its counter shards,
/// whatever the batch's size), and its items when asked for.
#[derive(Debug, Clone)]
pub struct BatchStatus {
    pub batch: PayoutBatch,
    /// Items per status, every status of [`ItemStatus::ALL`] in that order (zeros included).
    pub counts: Vec<(ItemStatus, usize)>,
    /// Whether the counts come from the batch's counter shards (`false`: no run has started,
    /// so they were counted from the items).
    pub live_counts: bool,
    /// The `failed` and `pending_kyc` items, with their reasons, in item order (read with
    /// the items: `--items`, or a batch that has not started).
    pub attention: Vec<ItemLine>,
    /// Every item, in item order, when asked for (`--items`).
    pub items: Option<Vec<ItemLine>>,
    /// Records that could not be decoded, with why.
    pub unreadable: Vec<String>,
    /// How many Query pages of items were read (0 without `--items` once the batch started).
    pub pages: usize,
}

impl BatchStatus {
    pub fn total(&self) -> usize {
        let counted = self.counts.iter().map(|(_, n)| n).sum::<usize>();
        if self.live_counts {
            // Unreadable records are counted with the items (as `pending`).
            counted
        } else {
            counted + self.unreadable.len()
        }
    }

    pub fn count(&self, status: ItemStatus) -> usize {
        self.counts
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n)
    }
}

/// Reads the batch and its live counts (`docs/design.md#batch-counts-and-lifecycle`): the batch
/// record and one Query of its counter shards. The items are read (strongly consistent,
/// paginated Query; `page_size` caps a page, `None` lets DynamoDB fill 1 MB pages) only when
/// `list_items` asks for them, or when no run has started the batch yet (no counts exist).
pub async fn batch_status(
    store: &dyn PayoutRepository,
    batch_id: &str,
    page_size: Option<i32>,
    list_items: bool,
) -> Result<BatchStatus, OpsError> {
    let batch = store
        .get_batch(batch_id)
        .await?
        .ok_or_else(|| OpsError::BatchNotFound(batch_id.to_owned()))?;
    let live = store
        .batch_counts(batch_id)
        .await?
        .ok_or_else(|| OpsError::BatchNotFound(batch_id.to_owned()))?;
    let live_counts = live.total.is_some();
    let mut counts: Vec<(ItemStatus, usize)> = ItemStatus::ALL
        .iter()
        .map(|status| (*status, live.count(*status) as usize))
        .collect();
    let mut attention = Vec::new();
    let mut items = list_items.then(Vec::new);
    let mut unreadable = Vec::new();
    let mut pages = 0;
    if list_items || !live_counts {
        let mut start = None;
        loop {
            let page = store
                .query_items_page(batch_id, start, None, page_size)
                .await?;
            pages += 1;
            for item in page.items {
                let item = match item {
                    Ok(item) => item,
                    Err(err) => {
                        unreadable.push(err.to_string());
                        continue;
                    }
                };
                if !live_counts
                    && let Some((_, n)) = counts.iter_mut().find(|(s, _)| *s == item.status)
                {
                    *n += 1;
                }
                let line = ItemLine::from(item);
                if matches!(line.status, ItemStatus::Failed | ItemStatus::PendingKyc) {
                    attention.push(line.clone());
                }
                if let Some(items) = items.as_mut() {
                    items.push(line);
                }
            }
            match page.next {
                Some(next) => start = Some(next),
                None => break,
            }
        }
    }
    Ok(BatchStatus {
        batch,
        counts,
        live_counts,
        attention,
        items,
        unreadable,
        pages,
    })
}

impl fmt::Display for BatchStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.batch;
        writeln!(
            f,
            "batch {} provider={} currency={} status={} items={}",
            b.batch_id,
            b.provider,
            b.currency,
            b.status,
            self.total()
        )?;
        for (status, n) in &self.counts {
            writeln!(f, "  {:<12} {n:>8}", status.as_str())?;
        }
        let line = |f: &mut fmt::Formatter<'_>, item: &ItemLine| {
            let text = format!(
                "  {:<14} {:<22} {:>10}  {:<12} {}",
                item.item_id,
                item.user_id,
                item.net_amount,
                item.status.as_str(),
                item.detail.as_deref().unwrap_or("")
            );
            writeln!(f, "{}", text.trim_end())
        };
        if let Some(items) = &self.items {
            writeln!(f, "items:")?;
            for item in items {
                line(f, item)?;
            }
        } else if !self.attention.is_empty() {
            writeln!(f, "failed / pending_kyc:")?;
            for item in &self.attention {
                line(f, item)?;
            }
        } else if self.count(ItemStatus::Failed) + self.count(ItemStatus::PendingKyc) > 0 {
            writeln!(
                f,
                "failed / pending_kyc: list them, with their reasons, with --items"
            )?;
        }
        if !self.unreadable.is_empty() {
            writeln!(f, "unreadable records ({}):", self.unreadable.len())?;
            for problem in &self.unreadable {
                writeln!(f, "  {problem}")?;
            }
        }
        Ok(())
    }
}

/// Sends a `payout.execute` job for `batch_id` to `queue_url`, after checking (strongly
/// consistent read) that the batch exists. Returns the SQS message id.
pub async fn enqueue(
    store: &dyn PayoutRepository,
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    batch_id: &str,
    job_id: Option<String>,
) -> Result<String, OpsError> {
    let job = PayoutJob::for_batch(batch_id, job_id);
    // The executor would drop a job it cannot parse as poison: refuse it here instead.
    let body = serde_json::to_string(&job).map_err(|e| OpsError::Runtime(e.to_string()))?;
    PayoutJob::parse(Some(&body)).map_err(|e| OpsError::Usage(e.to_string()))?;
    if store.get_batch(batch_id).await?.is_none() {
        return Err(OpsError::BatchNotFound(batch_id.to_owned()));
    }
    let out = sqs
        .send_message()
        .queue_url(queue_url)
        .message_body(body)
        .send()
        .await
        .map_err(|e| sqs_error("SendMessage to the jobs queue", e))?;
    Ok(out.message_id.unwrap_or_default())
}

/// What `redrive` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedriveReport {
    /// Messages sent to the jobs queue and deleted from the DLQ.
    pub moved: usize,
}

/// Moves messages from `dlq_url` to `queue_url` (body and message attributes), each deleted
/// from the DLQ only after the jobs queue accepted it, until the DLQ answers empty or `limit`
/// messages were moved. A failure stops the run: a message not yet sent stays in the DLQ (it
/// is visible again after 60 s); one sent but not deleted is redriven twice, which the
/// executor's idempotency makes harmless.
pub async fn redrive(
    sqs: &aws_sdk_sqs::Client,
    dlq_url: &str,
    queue_url: &str,
    limit: Option<usize>,
) -> Result<RedriveReport, OpsError> {
    let mut report = RedriveReport::default();
    loop {
        let want = limit.map_or(10, |limit| limit.saturating_sub(report.moved).min(10));
        if want == 0 {
            return Ok(report);
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
            .map_err(|e| partial(report, sqs_error("ReceiveMessage from the DLQ", e)))?;
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(report);
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
                        report,
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
                        report,
                        sqs_error(
                            &format!(
                                "DeleteMessage of DLQ message {id} (already sent to the jobs queue; it will be redriven again)"
                            ),
                            e,
                        ),
                    )
                })?;
            report.moved += 1;
        }
    }
}

fn partial(report: RedriveReport, err: OpsError) -> OpsError {
    OpsError::Runtime(format!("{err} (moved {} before this)", report.moved))
}
