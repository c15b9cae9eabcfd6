//! The reconciler's sweep (`docs/design.md#reconciler`): no item is left stranded when a
//! webhook is lost or refused, a job is lost, or a recipient is verified after their item went
//! `pending_kyc`. Each sweep reads the open batches (a sparse index: its cost is open work, not
//! the table) and their items, and for each batch:
//!
//! - an item `processing` for longer than the threshold: asks the PSP for its transfer by id and
//!   applies the answer through the same settlement as a webhook, under a synthetic event id
//!   (`reconciler:<transfer>:<state>`), so the sweep and a late real event never both move it;
//! - an item `submitting` whose lease ran out, an item `pending` while nothing has moved in the
//!   batch for longer than the threshold, or an item `pending_kyc` whose recipient is now
//!   payable: enqueues one job for the batch (a continuation from the start: it leaves `failed`
//!   items, which only an operator's retry pays again).
//!
//! Before the batches, it lists every PSP's transfers made since the last sweep; it reports those
//! that name one of our items which does not record them (orphans: a possible double payment) as
//! it reads the items, so each batch's items are read once per sweep.
//!
//! The sweep never pays and never moves an item itself except through settlement.

use crate::clock::Clock;
use crate::domain::{ItemStatus, PayoutItem, PayoutMethod};
use crate::job::PayoutJob;
use crate::ports::payment::TransferState;
use crate::ports::queue::JobQueue;
use crate::ports::repository::{PayoutRepository, StoreError};
use crate::ports::webhook::{ItemReference, PaymentEvent, PaymentEventKind};
use crate::registry::PaymentAdapterRegistry;
use crate::settlement::{SettlementOutcome, apply_payment_event};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info, warn};

/// The event type of the sweep's synthetic events, as the event records show it.
pub const RECONCILER_EVENT_TYPE: &str = "reconciler.transfer_state";

/// How far back the first orphan check lists (there is no previous check to start from).
const FIRST_ORPHAN_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// The new transfers naming one batch's items: item id → (transfer id, provider).
type NamedTransfers = HashMap<String, Vec<(String, String)>>;

/// The PSPs' transfers since the last orphan check, by the batch they name.
struct NewTransfers {
    /// Where the window ends (the sweep's start).
    until: u64,
    /// Whether every PSP listed the window in full and every named batch was read: only then
    /// does the window move on.
    listed_all: bool,
    by_batch: BTreeMap<String, NamedTransfers>,
}

/// Reports each of `transfers` (naming `item`) that the item does not know as an orphan. An
/// item `submitting` is left alone: an attempt may be recording the transfer.
fn report_orphans(item: &PayoutItem, transfers: &[(String, String)], summary: &mut SweepSummary) {
    if item.status == ItemStatus::Submitting {
        return;
    }
    for (transfer_id, provider) in transfers {
        if item.knows_transfer(transfer_id) {
            continue;
        }
        error!(
            batch_id = %item.batch_id, item_id = %item.item_id, provider, transfer_id,
            recorded = ?item.provider_payout_id, status = %item.status,
            "ORPHAN TRANSFER: the PSP made a transfer for this item that the item does not record (a possible double payment, or a lost record); investigate and recover"
        );
        summary.orphan_transfers += 1;
    }
}

/// How the sweep decides what is stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcilerConfig {
    /// An item `processing` (or a batch with `pending` items and no movement) for longer than
    /// this is looked up or resumed (`RECONCILE_STUCK_AFTER_SECONDS`, default 1 h).
    pub stuck_after: Duration,
}

impl Default for ReconcilerConfig {
    fn default() -> Self {
        ReconcilerConfig {
            stuck_after: Duration::from_secs(3600),
        }
    }
}

/// How long an item has been stuck, for the metric's bands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AgeBand {
    /// Past the threshold, under 6 hours.
    UnderSixHours,
    /// 6 to 24 hours.
    UnderADay,
    /// A day or more.
    DayOrMore,
}

impl AgeBand {
    fn of(age: Duration) -> Self {
        match age.as_secs() / 3600 {
            0..6 => AgeBand::UnderSixHours,
            6..24 => AgeBand::UnderADay,
            _ => AgeBand::DayOrMore,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AgeBand::UnderSixHours => "under_6h",
            AgeBand::UnderADay => "6h_to_24h",
            AgeBand::DayOrMore => "over_24h",
        }
    }
}

/// What one sweep found and did; logged as one line and emitted as metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepSummary {
    pub open_batches: u64,
    pub items_read: u64,
    /// Items past the threshold and still not settled after the sweep, by status and age band.
    pub stuck: BTreeMap<(ItemStatus, AgeBand), u64>,
    /// Items the sweep settled through settlement (`paid`, `failed`, or a reversal recorded).
    pub items_settled: u64,
    /// Batches the sweep enqueued a job for.
    pub batches_enqueued: u64,
    /// Transfers the PSP did not know, though an item records them (investigate).
    pub transfers_not_found: u64,
    /// Transfers the PSP made that name one of our items, which does not know them: a
    /// possible double payment or a lost record (ERROR logged with both ids).
    pub orphan_transfers: u64,
    /// Lookups, listings or enqueues that failed (retried by the next sweep).
    pub errors: u64,
}

impl SweepSummary {
    pub fn stuck_total(&self) -> u64 {
        self.stuck.values().sum()
    }
}

/// Why a batch gets a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resume {
    /// An attempt died holding an item (`submitting`, lease run out).
    InterruptedAttempt,
    /// Items wait `pending` and nothing moved in the batch for longer than the threshold.
    LostJob,
    /// A `pending_kyc` recipient is payable now.
    RecipientVerified,
}

/// The sweep and what it needs. Built once per process; a test calls [`Reconciler::sweep`].
pub struct Reconciler {
    store: Arc<dyn PayoutRepository>,
    adapters: PaymentAdapterRegistry,
    queue: Arc<dyn JobQueue>,
    clock: Arc<dyn Clock>,
    config: ReconcilerConfig,
}

impl Reconciler {
    /// The adapters the sweep asks (their call statistics feed the metrics).
    pub fn adapters(&self) -> &PaymentAdapterRegistry {
        &self.adapters
    }

    pub fn new(
        store: Arc<dyn PayoutRepository>,
        adapters: PaymentAdapterRegistry,
        queue: Arc<dyn JobQueue>,
        clock: Arc<dyn Clock>,
        config: ReconcilerConfig,
    ) -> Self {
        Reconciler {
            store,
            adapters,
            queue,
            clock,
            config,
        }
    }

    /// One sweep over every open batch. A storage error on the index ends the sweep (the next
    /// one starts over); anything else is counted and logged, and the sweep goes on.
    pub async fn sweep(&self) -> Result<SweepSummary, StoreError> {
        let mut summary = SweepSummary::default();
        // The PSPs' new transfers first, so each batch's items are read once per sweep: an open
        // batch's pass checks the transfers naming its items; other batches are read after.
        let mut new = match self.list_new_transfers(&mut summary).await {
            Ok(new) => Some(new),
            Err(err) => {
                summary.errors += 1;
                warn!(error = %err, "orphan check not started: storage error; the next sweep lists the same window again");
                None
            }
        };
        let mut start = None;
        loop {
            let page = self.store.open_batches(start).await?;
            for batch_id in &page.batch_ids {
                summary.open_batches += 1;
                let named = new
                    .as_mut()
                    .and_then(|new| new.by_batch.remove(batch_id))
                    .unwrap_or_default();
                if let Err(err) = self.sweep_batch(batch_id, named, &mut summary).await {
                    summary.errors += 1;
                    if let Some(new) = new.as_mut() {
                        new.listed_all = false;
                    }
                    warn!(batch_id, error = %err, "batch not swept: storage error; the next sweep tries again");
                }
            }
            match page.next {
                Some(next) => start = Some(next),
                None => break,
            }
        }
        if let Some(new) = new
            && let Err(err) = self.finish_orphan_check(new, &mut summary).await
        {
            summary.errors += 1;
            warn!(error = %err, "orphan check not finished: storage error; the next sweep lists the same window again");
        }
        let stuck: Vec<String> = summary
            .stuck
            .iter()
            .map(|((status, band), n)| format!("{status}/{}={n}", band.as_str()))
            .collect();
        info!(
            open_batches = summary.open_batches, items_read = summary.items_read,
            items_settled = summary.items_settled, batches_enqueued = summary.batches_enqueued,
            stuck = %stuck.join(","), transfers_not_found = summary.transfers_not_found,
            orphan_transfers = summary.orphan_transfers, errors = summary.errors,
            "reconciler sweep summary"
        );
        Ok(summary)
    }

    /// The orphan check's first half: every PSP's transfers created since the last check (less
    /// the threshold, so a transfer whose attempt was still recording it is looked at again),
    /// grouped by the batch and item they name.
    async fn list_new_transfers(
        &self,
        summary: &mut SweepSummary,
    ) -> Result<NewTransfers, StoreError> {
        let now = self.clock.now_ms();
        let overlap = self.config.stuck_after.as_millis() as u64;
        let since = match self.store.orphans_checked_until().await? {
            Some(until) => until.saturating_sub(overlap),
            None => now.saturating_sub(FIRST_ORPHAN_WINDOW.as_millis() as u64),
        };
        let mut new = NewTransfers {
            until: now,
            listed_all: true,
            by_batch: BTreeMap::new(),
        };
        for provider in self.adapters.providers() {
            let Ok(adapter) = self.adapters.adapter_for(&provider) else {
                continue;
            };
            match adapter.transfers_since(since).await {
                Ok(listed) => {
                    for transfer in listed {
                        if let Some(item) = transfer.item {
                            new.by_batch
                                .entry(item.batch_id)
                                .or_default()
                                .entry(item.item_id)
                                .or_default()
                                .push((transfer.id, provider.clone()));
                        }
                    }
                }
                Err(err) => {
                    new.listed_all = false;
                    summary.errors += 1;
                    warn!(provider, error = %err, "listing the PSP's transfers failed; the next sweep lists the same window again");
                }
            }
        }
        Ok(new)
    }

    /// The orphan check's second half: the batches the new transfers name that were not open
    /// (one Query per page of each), then the window moves on if every PSP listed it all and
    /// every named batch was read.
    async fn finish_orphan_check(
        &self,
        new: NewTransfers,
        summary: &mut SweepSummary,
    ) -> Result<(), StoreError> {
        for (batch_id, named) in new.by_batch {
            let mut cursor = None;
            loop {
                let page = self
                    .store
                    .query_items_page(&batch_id, cursor, None, None)
                    .await?;
                for item in page.items.into_iter().flatten() {
                    if let Some(transfers) = named.get(&item.item_id) {
                        report_orphans(&item, transfers, summary);
                    }
                }
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        if new.listed_all {
            self.store.set_orphans_checked_until(new.until).await?;
        }
        Ok(())
    }

    async fn sweep_batch(
        &self,
        batch_id: &str,
        named: NamedTransfers,
        summary: &mut SweepSummary,
    ) -> Result<(), StoreError> {
        let Some(batch) = self.store.get_batch(batch_id).await? else {
            return Ok(());
        };
        let now = self.clock.now_ms();
        let stuck_after = self.config.stuck_after.as_millis() as u64;
        let mut resume = None;
        let mut waiting_pending = false;
        // Pending items carry no time of their own: the batch's start is the floor.
        let mut last_move = batch.started_ms.unwrap_or(0);
        let mut kyc = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .store
                .query_items_page(batch_id, cursor, None, None)
                .await?;
            for item in page.items.into_iter().flatten() {
                summary.items_read += 1;
                if let Some(transfers) = named.get(&item.item_id) {
                    report_orphans(&item, transfers, summary);
                }
                last_move = last_move.max(item.attempt.updated_ms.unwrap_or(0));
                match item.status {
                    ItemStatus::Processing => {
                        let age = now.saturating_sub(item.attempt.updated_ms.unwrap_or(0));
                        if age >= stuck_after {
                            self.settle_stuck(&batch.provider, &item, age, summary)
                                .await;
                        }
                    }
                    ItemStatus::Submitting
                        if item.attempt.lease_until_ms.is_none_or(|lease| lease < now) =>
                    {
                        resume.get_or_insert(Resume::InterruptedAttempt);
                        let age = now.saturating_sub(item.attempt.updated_ms.unwrap_or(0));
                        if age >= stuck_after {
                            *summary
                                .stuck
                                .entry((item.status, AgeBand::of(Duration::from_millis(age))))
                                .or_default() += 1;
                        }
                    }
                    ItemStatus::Pending => waiting_pending = true,
                    ItemStatus::PendingKyc => kyc.push(item.user_id.clone()),
                    _ => {}
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let idle = now.saturating_sub(last_move);
        if waiting_pending && idle >= stuck_after {
            resume.get_or_insert(Resume::LostJob);
            *summary
                .stuck
                .entry((
                    ItemStatus::Pending,
                    AgeBand::of(Duration::from_millis(idle)),
                ))
                .or_default() += 1;
        }
        if resume.is_none() && !kyc.is_empty() {
            let methods = self.store.get_payout_methods(&kyc).await?;
            let payable = kyc.iter().any(|user| {
                PayoutMethod::payable_account(methods.get(user), &batch.provider).is_ok()
            });
            if payable {
                resume = Some(Resume::RecipientVerified);
            }
        }
        if let Some(why) = resume {
            self.enqueue(batch_id, why, now, summary).await;
        }
        Ok(())
    }

    /// Looks the transfer of an item left `processing` up and applies the PSP's answer through
    /// settlement. Counts it as stuck when it stays unsettled.
    async fn settle_stuck(
        &self,
        provider: &str,
        item: &PayoutItem,
        age: u64,
        summary: &mut SweepSummary,
    ) {
        let band = AgeBand::of(Duration::from_millis(age));
        let mut still_stuck = || *summary.stuck.entry((item.status, band)).or_default() += 1;
        let (Some(transfer_id), Ok(adapter)) = (
            item.provider_payout_id.as_deref(),
            self.adapters.adapter_for(provider),
        ) else {
            error!(batch_id = %item.batch_id, item_id = %item.item_id, provider, "item processing without a transfer id or a known provider; needs a manual reconciliation");
            still_stuck();
            return;
        };
        let state = match adapter.transfer_state(transfer_id).await {
            Ok(state) => state,
            Err(err) => {
                warn!(batch_id = %item.batch_id, item_id = %item.item_id, provider_payout_id = transfer_id, error = %err, "transfer lookup failed; the next sweep tries again");
                summary.errors += 1;
                still_stuck();
                return;
            }
        };
        let kinds = match state {
            TransferState::InFlight => {
                info!(batch_id = %item.batch_id, item_id = %item.item_id, provider_payout_id = transfer_id, "transfer still in flight at the PSP");
                still_stuck();
                return;
            }
            TransferState::NotFound => {
                error!(batch_id = %item.batch_id, item_id = %item.item_id, provider_payout_id = transfer_id, "the item records a transfer the PSP does not know; investigate");
                summary.transfers_not_found += 1;
                still_stuck();
                return;
            }
            TransferState::Paid => vec![("paid", PaymentEventKind::Paid)],
            TransferState::Failed { reason } => {
                vec![("failed", PaymentEventKind::Failed { reason })]
            }
            // Paid first (the item is `processing`), then the reversal recorded on it.
            TransferState::Reversed { reason } => vec![
                ("paid", PaymentEventKind::Paid),
                ("reversed", PaymentEventKind::Reversed { reason }),
            ],
        };
        let mut settled = false;
        for (name, kind) in kinds {
            let event = PaymentEvent {
                event_id: format!("reconciler:{transfer_id}:{name}"),
                event_type: RECONCILER_EVENT_TYPE.to_owned(),
                kind: Some(kind),
                provider_payout_id: Some(transfer_id.to_owned()),
                reference: Some(ItemReference {
                    batch_id: item.batch_id.clone(),
                    item_id: item.item_id.clone(),
                }),
            };
            match apply_payment_event(self.store.as_ref(), self.clock.as_ref(), provider, &event)
                .await
            {
                Ok(SettlementOutcome::Applied { .. }) => settled = true,
                Ok(outcome) => {
                    info!(batch_id = %item.batch_id, item_id = %item.item_id, event_id = %event.event_id, ?outcome, "sweep event not applied");
                }
                Err(err) => {
                    warn!(batch_id = %item.batch_id, item_id = %item.item_id, error = %err, "settling a stuck item failed; the next sweep tries again");
                    summary.errors += 1;
                }
            }
        }
        if settled {
            info!(batch_id = %item.batch_id, item_id = %item.item_id, provider_payout_id = transfer_id, "stuck item settled by the sweep from the PSP's answer");
            summary.items_settled += 1;
        } else {
            still_stuck();
        }
    }

    async fn enqueue(&self, batch_id: &str, why: Resume, now: u64, summary: &mut SweepSummary) {
        // A continuation from the start: it leaves `failed` items to an operator's retry.
        let job = PayoutJob::continuation(
            &PayoutJob::for_batch(batch_id, Some(format!("reconciler-{now}"))),
            None,
        );
        match self.queue.enqueue(&job).await {
            Ok(()) => {
                info!(batch_id, reason = ?why, "batch re-enqueued by the reconciler");
                summary.batches_enqueued += 1;
            }
            Err(err) => {
                warn!(batch_id, reason = ?why, error = %err, "re-enqueueing the batch failed; the next sweep tries again");
                summary.errors += 1;
            }
        }
    }
}
