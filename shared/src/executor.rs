//! The executor: pays one batch with DESIGN.md's claim → pay → record protocol. Items are read
//! page by page and streamed to a bounded pool of PSP calls, so memory stays flat whatever the
//! batch size, and it stops starting items when the caller's deadline draws near.

use crate::domain::{ItemStatus, PayoutBatch, PayoutItem, PayoutMethod};
use crate::money::{PayoutAmount, currency_exponent};
use crate::psp::{
    IdempotencyKey, PaymentAdapter, PaymentAdapterFactory, PaymentError, TransferRequest,
    UnknownProvider,
};
use crate::store::{Claim, ClaimOutcome, PayoutStore, StoreError, TransitionOutcome, now_ms};
use futures_util::StreamExt;
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{Instrument, error, info, info_span, warn};

/// How the executor runs; see the README's configuration table for the environment names.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutorConfig {
    /// PSP calls in flight at once.
    pub concurrency: usize,
    /// How long a claim holds an item; must outlive one bounded PSP call plus its record write.
    pub lease: Duration,
    /// Upper bound on one PSP call; past it the outcome is unknown and the item is re-driven later.
    pub psp_timeout: Duration,
    /// Items per Query page; `None` lets DynamoDB fill 1 MB pages.
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

/// A setting in the environment that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{name}={value:?} is not valid: {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("required setting {0} is not set")]
    Missing(&'static str),
}

impl ExecutorConfig {
    /// Reads `PAYOUT_CONCURRENCY`, `PAYOUT_LEASE_SECONDS` and `PAYOUT_PSP_TIMEOUT_SECONDS`,
    /// keeping the defaults for unset ones.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut config = ExecutorConfig::default();
        if let Some(value) = env_value("PAYOUT_CONCURRENCY") {
            config.concurrency = value
                .parse()
                .ok()
                .filter(|n| (1..=1024).contains(n))
                .ok_or(ConfigError::Invalid {
                    name: "PAYOUT_CONCURRENCY",
                    value,
                    expected: "an integer from 1 to 1024",
                })?;
        }
        config.lease = env_seconds("PAYOUT_LEASE_SECONDS")?.unwrap_or(config.lease);
        config.psp_timeout =
            env_seconds("PAYOUT_PSP_TIMEOUT_SECONDS")?.unwrap_or(config.psp_timeout);
        if config.lease <= config.psp_timeout {
            return Err(ConfigError::Invalid {
                name: "PAYOUT_LEASE_SECONDS",
                value: format!("{:?}", config.lease.as_secs_f64()),
                expected: "longer than PAYOUT_PSP_TIMEOUT_SECONDS, so a live attempt is never taken over",
            });
        }
        Ok(config)
    }

    /// Time kept free before the deadline when starting an item: one PSP call and its record.
    fn start_reserve(&self) -> Duration {
        self.psp_timeout + Duration::from_secs(1)
    }
}

/// A set, non-empty environment variable.
pub fn env_value(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A required environment variable.
pub fn env_required(name: &'static str) -> Result<String, ConfigError> {
    env_value(name).ok_or(ConfigError::Missing(name))
}

pub(crate) fn env_seconds(name: &'static str) -> Result<Option<Duration>, ConfigError> {
    env_value(name)
        .map(|value| {
            value
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0 && *s < 86_400.0)
                .map(Duration::from_secs_f64)
                .ok_or(ConfigError::Invalid {
                    name,
                    value,
                    expected: "a positive number of seconds under a day",
                })
        })
        .transpose()
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
}

impl ExecuteError {
    /// Whether running the same job later may succeed (DynamoDB trouble) rather than needing a fix.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ExecuteError::Store(StoreError::Dynamo { .. }))
    }
}

/// What one run did to a batch: the per-batch summary line, and the caller's basis for
/// deciding whether the batch needs another run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchSummary {
    pub batch_id: String,
    /// Items read.
    pub total: u64,
    /// Items the PSP accepted in this run (now `processing`, or moved on by a webhook).
    pub submitted: u64,
    /// Items left alone: already `processing`/`paid`, or taken by a racing worker.
    pub skipped: u64,
    /// Items without a verified payout method.
    pub pending_kyc: u64,
    /// Items the PSP rejected for good.
    pub failed: u64,
    /// Items (or reads) that hit a retryable PSP or DynamoDB error; a later run retries them.
    pub retryable: u64,
    /// Items whose record or amount is unusable; logged, nothing written, never paid.
    pub invalid: u64,
    /// Items held by another live attempt; a later run checks them once the lease ends.
    pub in_flight: u64,
    /// Items not started because the deadline was near; the next run continues with them.
    pub deferred: u64,
    /// False when the run stopped reading before the last page (deadline or read error).
    pub read_all_pages: bool,
}

impl BatchSummary {
    /// Whether anything in the batch is left for another run to do.
    pub fn needs_another_run(&self) -> bool {
        self.retryable > 0 || self.in_flight > 0 || self.deferred > 0 || !self.read_all_pages
    }

    /// Whether only the time budget, not an error or another worker, kept the run from finishing:
    /// the batch can be continued at once.
    pub fn stopped_for_time(&self) -> bool {
        self.retryable == 0 && self.in_flight == 0 && (self.deferred > 0 || !self.read_all_pages)
    }

    /// Adds `other`'s item counts to these (the reader's and the workers' halves of one run).
    fn absorb(&mut self, other: BatchSummary) {
        self.total += other.total;
        self.submitted += other.submitted;
        self.skipped += other.skipped;
        self.pending_kyc += other.pending_kyc;
        self.failed += other.failed;
        self.retryable += other.retryable;
        self.invalid += other.invalid;
        self.in_flight += other.in_flight;
        self.deferred += other.deferred;
    }

    fn count(&mut self, outcome: ItemOutcome) {
        let counter = match outcome {
            ItemOutcome::Submitted => &mut self.submitted,
            ItemOutcome::Skipped => &mut self.skipped,
            ItemOutcome::PendingKyc => &mut self.pending_kyc,
            ItemOutcome::Failed => &mut self.failed,
            ItemOutcome::Retryable => &mut self.retryable,
            ItemOutcome::Invalid => &mut self.invalid,
            ItemOutcome::InFlight => &mut self.in_flight,
            ItemOutcome::Deferred => &mut self.deferred,
        };
        *counter += 1;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ItemOutcome {
    Submitted,
    Skipped,
    PendingKyc,
    Failed,
    Retryable,
    Invalid,
    InFlight,
    Deferred,
}

/// An item that may need work, with everything needed to do it.
struct Work {
    item: PayoutItem,
    amount: PayoutAmount,
    method: Option<PayoutMethod>,
}

/// Pays batches. Build once per process and share.
#[derive(Clone)]
pub struct Executor {
    store: PayoutStore,
    adapters: PaymentAdapterFactory,
    config: ExecutorConfig,
}

impl Executor {
    pub fn new(
        store: PayoutStore,
        adapters: PaymentAdapterFactory,
        config: ExecutorConfig,
    ) -> Self {
        Executor {
            store,
            adapters,
            config,
        }
    }

    pub fn store(&self) -> &PayoutStore {
        &self.store
    }

    /// Runs the protocol over every item of `batch_id` that is not already `processing`/`paid`.
    /// Starts no item after `deadline` minus one PSP call's time. Errors only when the batch
    /// itself cannot be run; per-item trouble is counted in the summary.
    pub async fn execute_payout_batch(
        &self,
        batch_id: &str,
        deadline: Option<Instant>,
    ) -> Result<BatchSummary, ExecuteError> {
        let batch = self
            .store
            .get_batch(batch_id)
            .await?
            .ok_or_else(|| ExecuteError::BatchNotFound(batch_id.to_owned()))?;
        let adapter = self.adapters.adapter_for(&batch.provider)?;
        currency_exponent(&batch.currency).map_err(|e| ExecuteError::InvalidBatch {
            batch_id: batch_id.to_owned(),
            reason: e.to_string(),
        })?;
        let start_by = deadline.map(|d| d.checked_sub(self.config.start_reserve()).unwrap_or(d));

        let (work_tx, mut work_rx) = mpsc::channel::<Work>(self.config.concurrency * 2);
        let read = self.read_items(&batch, work_tx, start_by);
        let run = async {
            let work = futures_util::stream::poll_fn(|cx| work_rx.poll_recv(cx));
            work.map(|work| self.run_item(&batch, adapter.as_ref(), work, start_by))
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
        if !summary.needs_another_run() {
            // A batch whose items all ended without a transfer (pending_kyc, failed) gets no
            // webhook to complete it; one consistent Query here does (it stops at the first
            // page that still has an item awaiting its PSP's final word).
            if let Err(err) = self
                .store
                .refresh_batch_completion(batch_id, now_ms())
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
            read_all_pages = summary.read_all_pages,
            "payout batch summary"
        );
        Ok(summary)
    }

    /// Reads the batch page by page, counts what needs no work, and sends the rest (with the
    /// recipients' methods, read in bulk per page) to the workers.
    async fn read_items(
        &self,
        batch: &PayoutBatch,
        work_tx: mpsc::Sender<Work>,
        start_by: Option<Instant>,
    ) -> BatchSummary {
        let mut summary = BatchSummary::default();
        let mut start = None;
        loop {
            if start_by.is_some_and(|t| Instant::now() >= t) {
                info!(batch_id = %batch.batch_id, "deadline near: stopping before the next page");
                return summary;
            }
            let page = match self
                .store
                .query_items_page(&batch.batch_id, start.take(), self.config.page_size)
                .await
            {
                Ok(page) => page,
                Err(err) => {
                    error!(batch_id = %batch.batch_id, error = %err, "reading items failed; the batch will be retried");
                    summary.retryable += 1;
                    return summary;
                }
            };
            let now = now_ms();
            let mut candidates = Vec::new();
            for decoded in page.items {
                summary.total += 1;
                match classify(batch, decoded, now) {
                    Ok(work) => candidates.push(work),
                    Err(outcome) => summary.count(outcome),
                }
            }
            let mut user_ids: Vec<String> = candidates
                .iter()
                .map(|(item, _)| item.user_id.clone())
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
            for (item, amount) in candidates {
                let method = methods.get(&item.user_id).cloned();
                if work_tx
                    .send(Work {
                        item,
                        amount,
                        method,
                    })
                    .await
                    .is_err()
                {
                    return summary;
                }
            }
            match page.next {
                Some(next) => start = Some(next),
                None => {
                    summary.read_all_pages = true;
                    return summary;
                }
            }
        }
    }

    async fn run_item(
        &self,
        batch: &PayoutBatch,
        adapter: &dyn PaymentAdapter,
        work: Work,
        start_by: Option<Instant>,
    ) -> ItemOutcome {
        let span = info_span!("item", batch_id = %work.item.batch_id, item_id = %work.item.item_id);
        match self
            .pay_item(batch, adapter, work, start_by)
            .instrument(span)
            .await
        {
            Ok(outcome) => outcome,
            Err(err) => {
                error!(error = %err, "storage error; the item will be retried");
                ItemOutcome::Retryable
            }
        }
    }

    async fn pay_item(
        &self,
        batch: &PayoutBatch,
        adapter: &dyn PaymentAdapter,
        Work {
            item,
            amount,
            method,
        }: Work,
        start_by: Option<Instant>,
    ) -> Result<ItemOutcome, StoreError> {
        let destination = match PayoutMethod::payable_account(method.as_ref(), &batch.provider) {
            Ok(account) => account.to_owned(),
            // An earlier attempt may have paid this item; it must not be parked in `pending_kyc`
            // (which would later be paid under the same key to whatever account is then on
            // file) nor re-driven to an account that is no longer payable. Retried, so it ends
            // in the DLQ (alarmed) if nobody fixes the recipient.
            Err(reason) if item.status == ItemStatus::Submitting => {
                warn!(%reason, attempt = item.attempt.attempt, "item left submitting by an earlier attempt, but its recipient can no longer be paid; needs the recipient fixed or a manual reconciliation");
                return Ok(ItemOutcome::Retryable);
            }
            Err(reason) => return self.hold_for_kyc(&item, &reason).await,
        };
        if start_by.is_some_and(|t| Instant::now() >= t) {
            return Ok(ItemOutcome::Deferred);
        }
        let reconcile = reconciliation_due(&item, adapter, now_ms());
        if let Some(why) = reconcile {
            let settle = adapter.reconciliation_settle_delay().as_millis() as u64;
            let last_call = item
                .attempt
                .reconcile_since_ms
                .max(item.attempt.updated_ms)
                .unwrap_or(0);
            if now_ms() < last_call.saturating_add(settle) {
                info!(
                    reason = why,
                    settle_ms = settle,
                    "outcome unknown under the current key; left to settle before the lookup by reference"
                );
                return Ok(ItemOutcome::Retryable);
            }
        }
        let mut claim = match self.store.claim(&item, now_ms(), self.config.lease).await? {
            ClaimOutcome::Claimed(claim) => claim,
            ClaimOutcome::Lost { current } => {
                info!(seen = %item.status, current = ?current.map(ItemStatus::as_str), "item changed since it was read; left to its new owner");
                return Ok(ItemOutcome::Skipped);
            }
        };
        info!(
            from = %item.status, to = %ItemStatus::Submitting, attempt = claim.attempt,
            key_generation = claim.key_generation, "item transition"
        );
        let mut request = TransferRequest {
            idempotency_key: IdempotencyKey::for_item(
                &batch.batch_id,
                &item.item_id,
                claim.key_generation,
            ),
            batch_id: batch.batch_id.clone(),
            item_id: item.item_id.clone(),
            destination,
            amount_minor: amount.minor_units,
            currency: amount.currency.clone(),
        };
        if let Some(why) = reconcile {
            match self
                .reconcile(adapter, &mut claim, &mut request, why)
                .await?
            {
                Reconciled::Absent => {}
                Reconciled::Done(outcome) => return Ok(outcome),
            }
        }
        let answer = self
            .bounded(adapter.submit_transfer(&request))
            .await
            .unwrap_or_else(|reason| Err(PaymentError::OutcomeUnknown { reason }));
        self.record(&claim, answer).await
    }

    /// Runs one PSP call under the configured bound.
    async fn bounded<T>(&self, call: impl Future<Output = T>) -> Result<T, String> {
        tokio::time::timeout(self.config.psp_timeout, call)
            .await
            .map_err(|_| format!("no answer within {:?}", self.config.psp_timeout))
    }

    /// Reconciliation (DESIGN.md, "Recover"): the current key cannot tell what an earlier call
    /// did, so the transfer is looked up by reference. Found → recorded as the item's transfer,
    /// never paid again. Certainly absent → the item moves to the next key generation (one
    /// write fenced on this attempt and on the generation being left) and `request` carries
    /// the new key. A failed lookup releases the item; the next attempt looks again.
    async fn reconcile(
        &self,
        adapter: &dyn PaymentAdapter,
        claim: &mut Claim,
        request: &mut TransferRequest,
        why: &'static str,
    ) -> Result<Reconciled, StoreError> {
        let found = self
            .bounded(adapter.find_transfer(request))
            .await
            .unwrap_or_else(|reason| {
                Err(PaymentError::Transient {
                    reason,
                    retry_after: None,
                })
            });
        match found {
            Ok(Some(receipt)) => {
                info!(
                    attempt = claim.attempt, reason = why, provider_payout_id = %receipt.provider_payout_id,
                    "reconciliation found the item's transfer: recorded, not paid again"
                );
                Ok(Reconciled::Done(self.record(claim, Ok(receipt)).await?))
            }
            Err(err) => {
                warn!(attempt = claim.attempt, reason = why, error = %err, "reconciliation lookup failed; lease released, the item will be looked up again");
                self.store.release(claim, false, now_ms()).await?;
                Ok(Reconciled::Done(ItemOutcome::Retryable))
            }
            Ok(None) => {
                let lease_left = claim.lease_until_ms.saturating_sub(now_ms());
                if lease_left
                    <= (self.config.psp_timeout + Duration::from_secs(1)).as_millis() as u64
                {
                    info!(
                        attempt = claim.attempt,
                        "transfer certainly absent, but the lease has no room for the payment; left to the next attempt"
                    );
                    self.store.release(claim, false, now_ms()).await?;
                    return Ok(Reconciled::Done(ItemOutcome::Retryable));
                }
                let left = claim.key_generation;
                match self.store.advance_key_generation(claim, now_ms()).await? {
                    TransitionOutcome::Applied => {
                        info!(
                            attempt = claim.attempt,
                            reason = why,
                            from_generation = left,
                            key_generation = claim.key_generation,
                            "reconciliation: no transfer under the old key; paying under the next key generation"
                        );
                        request.idempotency_key = IdempotencyKey::for_item(
                            &request.batch_id,
                            &request.item_id,
                            claim.key_generation,
                        );
                        Ok(Reconciled::Absent)
                    }
                    TransitionOutcome::Superseded { current } => {
                        warn!(attempt = claim.attempt, current = ?current.map(ItemStatus::as_str), "item moved on during reconciliation; not paid");
                        Ok(Reconciled::Done(ItemOutcome::Skipped))
                    }
                }
            }
        }
    }

    /// Records the PSP's answer under the claim's fence.
    async fn record(
        &self,
        claim: &Claim,
        answer: Result<crate::psp::TransferReceipt, PaymentError>,
    ) -> Result<ItemOutcome, StoreError> {
        let now = now_ms();
        match answer {
            Ok(receipt) => {
                let written = self
                    .store
                    .record_accepted(claim, &receipt.provider_payout_id, now)
                    .await?;
                match written {
                    TransitionOutcome::Applied => info!(
                        from = %ItemStatus::Submitting, to = %ItemStatus::Processing, attempt = claim.attempt,
                        provider_payout_id = %receipt.provider_payout_id, replayed = receipt.replayed, "item transition"
                    ),
                    TransitionOutcome::Superseded { current } => warn!(
                        attempt = claim.attempt, provider_payout_id = %receipt.provider_payout_id,
                        current = ?current.map(ItemStatus::as_str),
                        "PSP accepted, but the item moved on meanwhile (webhook or newer attempt); not overwritten"
                    ),
                }
                Ok(ItemOutcome::Submitted)
            }
            Err(rejected @ PaymentError::Rejected { .. }) => {
                let unreconciled = rejected.requires_reconciliation();
                let PaymentError::Rejected { code, message } = rejected else {
                    unreachable!("matched above")
                };
                let reason = format!("{code}: {message}");
                if unreconciled {
                    error!(attempt = claim.attempt, reason = %reason, "the PSP refused the key as used with other parameters: the item is failed and will be reconciled by lookup before any new key is used");
                }
                let written = self
                    .store
                    .record_rejected(claim, &reason, unreconciled, now)
                    .await?;
                match written {
                    TransitionOutcome::Applied => {
                        info!(from = %ItemStatus::Submitting, to = %ItemStatus::Failed, attempt = claim.attempt, reason = %reason, reconcile = unreconciled, "item transition");
                        Ok(ItemOutcome::Failed)
                    }
                    TransitionOutcome::Superseded { current } => {
                        warn!(attempt = claim.attempt, reason = %reason, current = ?current.map(ItemStatus::as_str), "PSP rejected, but the item moved on meanwhile; not overwritten");
                        Ok(ItemOutcome::Skipped)
                    }
                }
            }
            Err(unknown @ PaymentError::NeedsReconciliation { .. }) => {
                warn!(attempt = claim.attempt, error = %unknown, "the PSP stored an unknown outcome under this key; lease released, the next attempt reconciles by lookup instead of resending the key");
                self.store.release(claim, true, now).await?;
                Ok(ItemOutcome::Retryable)
            }
            Err(retryable) => {
                warn!(attempt = claim.attempt, error = %retryable, "PSP call did not complete; lease released, the item will be retried with the same key");
                self.store.release(claim, false, now).await?;
                Ok(ItemOutcome::Retryable)
            }
        }
    }

    async fn hold_for_kyc(
        &self,
        item: &PayoutItem,
        reason: &str,
    ) -> Result<ItemOutcome, StoreError> {
        if item.status == ItemStatus::PendingKyc && item.failure_reason.as_deref() == Some(reason) {
            return Ok(ItemOutcome::PendingKyc);
        }
        match self.store.mark_pending_kyc(item, reason, now_ms()).await? {
            TransitionOutcome::Applied => {
                info!(from = %item.status, to = %ItemStatus::PendingKyc, reason, "item transition");
                Ok(ItemOutcome::PendingKyc)
            }
            TransitionOutcome::Superseded { current } => {
                info!(seen = %item.status, current = ?current.map(ItemStatus::as_str), "item changed since it was read; left to its new owner");
                Ok(ItemOutcome::Skipped)
            }
        }
    }
}

/// What a reconciliation left to do.
enum Reconciled {
    /// The transfer is certainly absent and the claim now holds a fresh key generation: pay.
    Absent,
    /// Nothing more to do in this attempt.
    Done(ItemOutcome),
}

/// Why an item's earlier outcome must be looked up by reference before its key is sent
/// (again), or `None` when the current key can still answer for it.
fn reconciliation_due(
    item: &PayoutItem,
    adapter: &dyn PaymentAdapter,
    now: u64,
) -> Option<&'static str> {
    if item.attempt.reconcile_since_ms.is_some() {
        return Some("the PSP stored an unknown outcome under the current key");
    }
    // Only a `submitting` item's current key may have been sent without a known outcome.
    if item.status != ItemStatus::Submitting {
        return None;
    }
    let window = adapter.key_reuse_window()?.as_millis() as u64;
    match item.attempt.key_first_used_ms {
        None => Some("the current key's first use is not recorded; the PSP may have forgotten it"),
        Some(first) if now.saturating_sub(first) >= window => {
            Some("the current key is older than the PSP is trusted to keep it")
        }
        Some(_) => None,
    }
}

/// Sorts a read item into "needs work" (with its validated amount) or an outcome needing none.
fn classify(
    batch: &PayoutBatch,
    decoded: Result<PayoutItem, StoreError>,
    now: u64,
) -> Result<(PayoutItem, PayoutAmount), ItemOutcome> {
    let item = decoded.map_err(|err| {
        error!(batch_id = %batch.batch_id, error = %err, "unreadable item skipped; nothing written");
        ItemOutcome::Invalid
    })?;
    match item.status {
        ItemStatus::Processing | ItemStatus::Paid => return Err(ItemOutcome::Skipped),
        ItemStatus::Submitting if item.is_leased_at(now) => return Err(ItemOutcome::InFlight),
        _ => {}
    }
    match PayoutAmount::parse(&item.net_amount, &batch.currency) {
        Ok(amount) => Ok((item, amount)),
        Err(err) => {
            error!(batch_id = %batch.batch_id, item_id = %item.item_id, error = %err, "item has an unpayable amount; skipped, nothing written");
            Err(ItemOutcome::Invalid)
        }
    }
}

/// Builds the adapters a deployment pays through, from the environment: the sandbox when
/// `SANDBOX_PSP_ENABLED`, Stripe when `STRIPE_SECRET_KEY` is set (see the README).
pub fn adapters_from_env() -> Result<PaymentAdapterFactory, ConfigError> {
    let mut factory = PaymentAdapterFactory::new();
    if env_value("SANDBOX_PSP_ENABLED").is_some_and(|v| v == "true" || v == "1") {
        let latency = env_value("SANDBOX_PSP_LATENCY_MS")
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or_default();
        let secrets = crate::psp::webhook::secrets_from(env_value("SANDBOX_WEBHOOK_SECRET"));
        let sandbox = crate::psp::sandbox::SandboxPsp::new(latency).with_webhook_secrets(secrets);
        factory = factory.with_adapter(Arc::new(sandbox));
    }
    if let Some(stripe) = crate::psp::stripe::StripeAdapter::from_env()? {
        factory = factory.with_adapter(Arc::new(stripe));
    }
    Ok(factory)
}
