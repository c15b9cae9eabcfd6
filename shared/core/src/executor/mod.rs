//! The executor: pays one batch with the claim → pay → record protocol
//! (`docs/design.md#the-item-protocol-claim-pay-record`). Items are read page by page and
//! streamed to a bounded pool of PSP calls, so memory stays flat whatever the batch size, and
//! it stops starting items when the caller's deadline draws near.

mod item;
mod summary;

pub use summary::BatchSummary;

use crate::clock::Clock;
use crate::domain::{PayoutBatch, PayoutItem, PayoutMethod};
use crate::job::{ItemRange, PayoutJob};
use crate::money::Currency;
use crate::ports::payment::PaymentAdapter;
use crate::ports::repository::{PageCursor, PayoutRepository, StoreError};
use crate::registry::{PaymentAdapterRegistry, UnknownProvider};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{error, info, warn};

/// How the executor runs; `payouts-config` reads it from the environment (README's table).
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutorConfig {
    /// PSP calls in flight at once.
    pub concurrency: usize,
    /// How long a claim holds an item; must outlive one bounded PSP call plus its record write.
    pub lease: Duration,
    /// Upper bound on one PSP call; past it the outcome is unknown and the item is re-driven later.
    pub psp_timeout: Duration,
    /// Items per Query page; `None` lets the store fill its largest pages.
    pub page_size: Option<i32>,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            concurrency: 32,
            lease: Duration::from_secs(120),
            psp_timeout: Duration::from_secs(15),
            page_size: None,
        }
    }
}

/// The path an item will take once started, which decides how much time it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ItemPath {
    /// Claim, pay, record.
    Pay,
    /// Claim, look the transfer up by reference, then perhaps pay, record.
    ReconcileThenPay,
}

impl ExecutorConfig {
    /// Time kept free before the deadline when starting an item on `path`: each PSP call it
    /// may make, bounded by the PSP timeout, plus a second for its writes.
    pub(crate) fn start_reserve(&self, path: ItemPath) -> Duration {
        let calls = match path {
            ItemPath::Pay => 1,
            ItemPath::ReconcileThenPay => 2,
        };
        self.psp_timeout * calls + Duration::from_secs(1)
    }

    /// The longest an item can hold its lease: a lookup and a submit, each up to the PSP
    /// timeout, and its writes. A lease shorter than this can never pay an item that needs
    /// reconciliation.
    pub fn longest_item_path(&self) -> Duration {
        self.start_reserve(ItemPath::ReconcileThenPay)
    }
}

/// Why a batch could not be executed at all.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error("batch {0:?} does not exist in the payouts table")]
    BatchNotFound(String),
    #[error(transparent)]
    UnknownProvider(#[from] UnknownProvider),
    #[error("batch {batch_id:?} cannot be paid: {reason}")]
    InvalidBatch { batch_id: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The batch cannot be paid as it stands, but items of it were left `submitting` by
    /// interrupted attempts and may already be paid: retried (towards the DLQ, alarmed), never
    /// dropped, until the batch is fixed.
    #[error(
        "batch {batch_id:?} cannot be paid ({reason}), but {in_flight} of its items are in flight and may be paid already: fix the batch; the job is retried meanwhile"
    )]
    UnpayableWithItemsInFlight {
        batch_id: String,
        reason: String,
        in_flight: u64,
    },
}

impl ExecuteError {
    /// A short, stable name of the reason (a metric dimension, a log field).
    pub fn code(&self) -> &'static str {
        match self {
            ExecuteError::BatchNotFound(_) => "batch_not_found",
            ExecuteError::UnknownProvider(_) => "unknown_provider",
            ExecuteError::InvalidBatch { .. } => "invalid_batch",
            ExecuteError::Store(StoreError::Malformed { .. }) => "malformed_batch",
            ExecuteError::Store(_) => "store",
            ExecuteError::UnpayableWithItemsInFlight { .. } => "unpayable_in_flight",
        }
    }

    /// Whether the job must be kept (retried later) rather than dropped as poison: store
    /// trouble, or a batch that needs a fix while items of it are in flight.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ExecuteError::Store(StoreError::Unavailable { .. })
                | ExecuteError::UnpayableWithItemsInFlight { .. }
        )
    }
}

/// Which items a run reads and what it does with `failed` ones: a job's first run over the
/// whole batch or one segment, or a continuation resuming at its cursor.
#[derive(Debug, Clone)]
struct RunScope {
    /// Reading starts after this item (`None`: at the first).
    after: Option<String>,
    /// The last item read (inclusive; `None`: the batch's last).
    through: Option<String>,
    failed_items: FailedItems,
}

impl RunScope {
    fn of_job(job: &PayoutJob) -> Self {
        let segment = job.payload.segment.clone().unwrap_or_default();
        match &job.payload.resume_after {
            Some(cursor) => RunScope {
                after: Some(cursor.clone()),
                through: segment.through,
                failed_items: FailedItems::Leave,
            },
            None => RunScope {
                after: (!segment.after.is_empty()).then_some(segment.after),
                through: segment.through,
                failed_items: FailedItems::Retry,
            },
        }
    }
}

/// How a whole-batch job is run: by itself, or fanned out into segment jobs that several
/// invocations run at once (`docs/design.md#fan-out-and-the-rate-budget`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunPlan {
    /// Small enough for one invocation, or fan-out is off: run the job as it is.
    Whole,
    /// Send one job per segment and let them pay the batch.
    Segments(Vec<ItemRange>),
}

/// When a batch is fanned out, and into how many segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanOut {
    /// The most segments one batch gets: the executor instances that may run at once, since
    /// more segments than instances only queue.
    pub max_segments: u64,
    /// No segment holds fewer items: below it, a segment's fixed reads and job cost more than
    /// running those items in an instance already started.
    pub min_segment_items: u64,
}

impl FanOut {
    /// No fan-out: every job runs its batch in one invocation at a time.
    pub const OFF: FanOut = FanOut {
        max_segments: 1,
        min_segment_items: u64::MAX,
    };

    /// How many items each segment of a batch of `total` items holds; `None` when the batch
    /// runs whole.
    pub fn segment_items(&self, total: u64) -> Option<u64> {
        let segments = self.max_segments.min(total / self.min_segment_items.max(1));
        (segments >= 2).then(|| total.div_ceil(segments))
    }
}

/// What a run does with items that are `failed` when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailedItems {
    /// A job's first run retries them (under the next key generation).
    Retry,
    /// Continuations leave them: each job retries a failed item at most once.
    Leave,
}

/// What the page reader works with.
struct Reading<'a> {
    batch: &'a PayoutBatch,
    currency: Currency,
    adapter: &'a dyn PaymentAdapter,
    scope: &'a RunScope,
    resume: &'a ResumePoint,
}

/// An item's place in the run's reading order, and the item read just before it: where a
/// continuation resumes if this item is not started.
#[derive(Debug, Clone)]
pub(crate) struct ReadPosition {
    index: u64,
    after: String,
}

/// The earliest place in reading order that a run left unstarted (deadline), shared by the
/// reader and the workers.
#[derive(Debug, Default)]
pub(crate) struct ResumePoint(std::sync::Mutex<Option<ReadPosition>>);

impl ResumePoint {
    pub(crate) fn offer(&self, index: u64, after: &str) {
        let mut earliest = self.0.lock().expect("resume point poisoned");
        if earliest.as_ref().is_none_or(|e| index < e.index) {
            *earliest = Some(ReadPosition {
                index,
                after: after.to_owned(),
            });
        }
    }

    pub(crate) fn offer_position(&self, position: &ReadPosition) {
        self.offer(position.index, &position.after);
    }

    fn into_resume_after(self) -> Option<String> {
        self.0
            .into_inner()
            .expect("resume point poisoned")
            .map(|p| p.after)
    }
}

/// Set once the PSP refuses the platform itself during a run: no item starts after it.
#[derive(Debug, Default)]
pub(crate) struct PlatformHalt(std::sync::atomic::AtomicBool);

impl PlatformHalt {
    pub(crate) fn raise(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub(crate) fn is_raised(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Work the page reader sends to the pool of workers.
enum ItemWork {
    /// An item that may be paid, with its amount in the PSP's minor units and its recipient's
    /// payout method.
    Pay {
        item: PayoutItem,
        amount_minor: i64,
        method: Option<PayoutMethod>,
        position: ReadPosition,
    },
    /// An item that can never be paid as it stands: it becomes `failed` with the reason.
    Refuse { item: PayoutItem, reason: String },
}

impl ItemWork {
    fn item(&self) -> &PayoutItem {
        match self {
            ItemWork::Pay { item, .. } | ItemWork::Refuse { item, .. } => item,
        }
    }
}

/// Pays batches. Build once per process and share.
#[derive(Clone)]
pub struct Executor {
    store: Arc<dyn PayoutRepository>,
    adapters: PaymentAdapterRegistry,
    config: ExecutorConfig,
    clock: Arc<dyn Clock>,
}

impl Executor {
    pub fn new(
        store: Arc<dyn PayoutRepository>,
        adapters: PaymentAdapterRegistry,
        config: ExecutorConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Executor {
            store,
            adapters,
            config,
            clock,
        }
    }

    pub fn store(&self) -> &Arc<dyn PayoutRepository> {
        &self.store
    }

    /// The adapters this executor pays through (their call statistics feed the metrics).
    pub fn adapters(&self) -> &PaymentAdapterRegistry {
        &self.adapters
    }

    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Runs the protocol over every item of `batch_id` that is not already `processing`/`paid`.
    /// Starts no item without the time its path needs before `deadline`. Errors only when the
    /// batch itself cannot be run; per-item trouble is counted in the summary.
    pub async fn execute_payout_batch(
        &self,
        batch_id: &str,
        deadline: Option<Instant>,
    ) -> Result<BatchSummary, ExecuteError> {
        self.run_job(&PayoutJob::for_batch(batch_id, None), deadline)
            .await
    }

    /// Continues a run that stopped for time: from the item after `resume_after` (empty: the
    /// first), leaving `failed` items, which the job's first run already tried, so a chain of
    /// continuations visits each item once and cannot loop on items that keep failing.
    pub async fn continue_payout_batch(
        &self,
        batch_id: &str,
        resume_after: &str,
        deadline: Option<Instant>,
    ) -> Result<BatchSummary, ExecuteError> {
        let job = PayoutJob::continuation(
            &PayoutJob::for_batch(batch_id, None),
            Some(resume_after.to_owned()),
        );
        self.run_job(&job, deadline).await
    }

    /// Runs one job: the whole batch, one segment of it, or a continuation of either (which
    /// resumes at its cursor and stops at its segment's end).
    pub async fn run_job(
        &self,
        job: &PayoutJob,
        deadline: Option<Instant>,
    ) -> Result<BatchSummary, ExecuteError> {
        self.run_batch(&job.payload.batch_id, RunScope::of_job(job), deadline)
            .await
    }

    /// Decides how a whole-batch job runs: checks that the batch can be paid (the same refusals
    /// as a run), starts its run (the first one counts its items), and when it is large enough
    /// for `fan_out`, splits it into segments of about equal size (a keys-only read).
    pub async fn plan_run(&self, batch_id: &str, fan_out: FanOut) -> Result<RunPlan, ExecuteError> {
        if fan_out.max_segments < 2 {
            return Ok(RunPlan::Whole);
        }
        self.payable_batch(batch_id).await?;
        let counts = self
            .store
            .start_batch_run(batch_id, true, self.now_ms())
            .await?;
        let Some(every) = counts.total.and_then(|total| fan_out.segment_items(total)) else {
            return Ok(RunPlan::Whole);
        };
        let mut boundaries = self.store.sample_item_ids(batch_id, every).await?;
        // The last sampled id would end the last segment: that one stays open-ended instead.
        boundaries.truncate(fan_out.max_segments.saturating_sub(1) as usize);
        if boundaries.is_empty() {
            return Ok(RunPlan::Whole);
        }
        let segments = ItemRange::split_at(&boundaries);
        info!(
            batch_id,
            segments = segments.len(),
            items_per_segment = every,
            "batch fanned out into segments"
        );
        Ok(RunPlan::Segments(segments))
    }

    /// The batch, its adapter and currency; or why it cannot be paid (kept for retry while
    /// items of it are in flight).
    async fn payable_batch(
        &self,
        batch_id: &str,
    ) -> Result<(PayoutBatch, Arc<dyn PaymentAdapter>, Currency), ExecuteError> {
        let batch = self
            .store
            .get_batch(batch_id)
            .await?
            .ok_or_else(|| ExecuteError::BatchNotFound(batch_id.to_owned()))?;
        let payable = self
            .adapters
            .adapter_for(&batch.provider)
            .map_err(ExecuteError::from)
            .and_then(|adapter| {
                let currency =
                    Currency::parse(&batch.currency).map_err(|e| ExecuteError::InvalidBatch {
                        batch_id: batch_id.to_owned(),
                        reason: e.to_string(),
                    })?;
                Ok((adapter, currency))
            });
        match payable {
            Ok((adapter, currency)) => Ok((batch, adapter, currency)),
            Err(unpayable) => Err(self.keep_if_in_flight(batch_id, unpayable).await?),
        }
    }

    async fn run_batch(
        &self,
        batch_id: &str,
        scope: RunScope,
        deadline: Option<Instant>,
    ) -> Result<BatchSummary, ExecuteError> {
        let (batch, adapter, currency) = self.payable_batch(batch_id).await?;
        // The batch's lifecycle and the baseline of its counts: `pending` → `executing` (the
        // item total is recorded once), or re-opened when this run retries settled items.
        let retry_settled = scope.failed_items == FailedItems::Retry;
        self.store
            .start_batch_run(batch_id, retry_settled, self.now_ms())
            .await?;
        let read_by = deadline.map(|d| {
            d.checked_sub(self.config.start_reserve(ItemPath::Pay))
                .unwrap_or(d)
        });

        let (work_tx, mut work_rx) = mpsc::channel::<ItemWork>(self.config.concurrency * 2);
        let resume = ResumePoint::default();
        let reading = Reading {
            batch: &batch,
            currency,
            adapter: adapter.as_ref(),
            scope: &scope,
            resume: &resume,
        };
        let read = self.read_items(reading, work_tx, read_by);
        let halt = PlatformHalt::default();
        let run = async {
            let work = futures_util::stream::poll_fn(|cx| work_rx.poll_recv(cx));
            work.map(|work| self.run_item(&batch, adapter.as_ref(), work, deadline, &halt, &resume))
                .buffer_unordered(self.config.concurrency)
                .fold(BatchSummary::default(), |mut summary, outcome| async move {
                    summary.count(outcome);
                    summary
                })
                .await
        };
        let (mut summary, run_summary) = tokio::join!(read, run);
        summary.absorb(run_summary);
        summary.batch_id = batch_id.to_owned();
        summary.provider.clone_from(&batch.provider);
        summary.resume_after = resume.into_resume_after();
        if !summary.needs_another_run() {
            // A batch whose items all ended without a transfer (pending_kyc, failed) gets no
            // webhook to complete it; the completion check here does.
            if let Err(err) = self
                .store
                .refresh_batch_completion(batch_id, self.now_ms())
                .await
            {
                warn!(batch_id, error = %err, "batch completion check failed; the next event or run repeats it");
            }
        }
        info!(
            batch_id,
            provider = %batch.provider,
            total = summary.total,
            submitted = summary.submitted,
            skipped = summary.skipped,
            pending_kyc = summary.pending_kyc,
            failed = summary.failed,
            retryable = summary.retryable,
            invalid = summary.invalid,
            in_flight = summary.in_flight,
            deferred = summary.deferred,
            double_payments = summary.double_payments,
            halted = summary.halted,
            read_all_pages = summary.read_all_pages,
            "payout batch summary"
        );
        Ok(summary)
    }

    /// A batch-level refusal, unless items of the batch are in flight: then the job is kept.
    /// Reads every page, which only a batch that cannot be paid ever costs.
    async fn keep_if_in_flight(
        &self,
        batch_id: &str,
        unpayable: ExecuteError,
    ) -> Result<ExecuteError, ExecuteError> {
        let mut in_flight = 0;
        let mut cursor = None;
        loop {
            let page = self
                .store
                .query_items_page(batch_id, cursor.take(), None, self.config.page_size)
                .await?;
            in_flight += page
                .items
                .iter()
                .filter(|item| match item {
                    Ok(item) => item.status == crate::domain::ItemStatus::Submitting,
                    Err(StoreError::Malformed { in_flight, .. }) => *in_flight,
                    Err(_) => false,
                })
                .count() as u64;
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        if in_flight == 0 {
            return Ok(unpayable);
        }
        error!(batch_id, error = %unpayable, in_flight, "the batch cannot be paid as it stands, but items of it are in flight and may be paid already: the job is kept and retried");
        Ok(ExecuteError::UnpayableWithItemsInFlight {
            batch_id: batch_id.to_owned(),
            reason: unpayable.to_string(),
            in_flight,
        })
    }

    /// Reads the batch page by page, counts what needs no work, and sends the rest (with the
    /// recipients' methods, read in bulk per page) to the workers.
    async fn read_items(
        &self,
        Reading {
            batch,
            currency,
            adapter,
            scope,
            resume,
        }: Reading<'_>,
        work_tx: mpsc::Sender<ItemWork>,
        read_by: Option<Instant>,
    ) -> BatchSummary {
        let mut summary = BatchSummary::default();
        let failed_items = scope.failed_items;
        let mut last_read = scope.after.clone().unwrap_or_default();
        let mut cursor = scope
            .after
            .clone()
            .map(|after_item_id| PageCursor { after_item_id });
        let mut index = 0_u64;
        loop {
            if read_by.is_some_and(|t| Instant::now() >= t) {
                info!(batch_id = %batch.batch_id, "deadline near: stopping before the next page");
                resume.offer(index, &last_read);
                return summary;
            }
            let page = match self
                .store
                .query_items_page(
                    &batch.batch_id,
                    cursor.take(),
                    scope.through.as_deref(),
                    self.config.page_size,
                )
                .await
            {
                Ok(page) => page,
                Err(err) => {
                    error!(batch_id = %batch.batch_id, error = %err, "reading items failed; the batch will be retried");
                    summary.retryable += 1;
                    return summary;
                }
            };
            let now = self.now_ms();
            let mut candidates = Vec::new();
            let mut refused = Vec::new();
            for decoded in page.items {
                summary.total += 1;
                index += 1;
                let position = ReadPosition {
                    index,
                    after: last_read.clone(),
                };
                if let Ok(item) = &decoded {
                    last_read.clone_from(&item.item_id);
                }
                match item::sort_read_item(batch, currency, adapter, decoded, now, failed_items) {
                    item::Sorted::Pay(item, amount_minor) => {
                        candidates.push((item, amount_minor, position))
                    }
                    item::Sorted::Refuse(item, reason) => {
                        refused.push(ItemWork::Refuse { item, reason })
                    }
                    item::Sorted::Done(outcome) => summary.count(outcome),
                }
            }
            for work in refused {
                if work_tx.send(work).await.is_err() {
                    return summary;
                }
            }
            let mut user_ids: Vec<String> = candidates
                .iter()
                .map(|(item, _, _)| item.user_id.clone())
                .collect();
            user_ids.sort_unstable();
            user_ids.dedup();
            let methods = match self.store.get_payout_methods(&user_ids).await {
                Ok(methods) => methods,
                Err(err) => {
                    error!(batch_id = %batch.batch_id, error = %err, "reading recipients' settings failed; the batch will be retried");
                    summary.retryable += candidates.len() as u64;
                    return summary;
                }
            };
            for (item, amount_minor, position) in candidates {
                let method = methods.get(&item.user_id).cloned();
                let work = ItemWork::Pay {
                    item,
                    amount_minor,
                    method,
                    position,
                };
                if work_tx.send(work).await.is_err() {
                    return summary;
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => {
                    summary.read_all_pages = true;
                    return summary;
                }
            }
        }
    }
}
