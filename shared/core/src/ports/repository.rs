//! The store port: every read and conditional write the executor and settlement make. The
//! DynamoDB implementation (`payouts-store-dynamodb`) makes each transition one conditional
//! write, which is what makes the protocol safe (`docs/design.md#the-item-protocol-claim-pay-record`).

use crate::domain::{BatchStatus, ItemStatus, PayoutBatch, PayoutItem, PayoutMethod};
use crate::ports::webhook::{ItemReference, PaymentEvent, PaymentEventKind};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// A store call failed, or a record cannot be read as `docs/design.md#data-contracts` defines it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The call failed after the client's own retries (throttling, network, service errors).
    /// Retryable: the job should be retried later.
    #[error("DynamoDB {operation} failed: {message}")]
    Unavailable {
        operation: &'static str,
        message: String,
    },
    /// A record is missing attributes or has the wrong types. Not retryable until fixed.
    #[error("record {key} is malformed: {problem}")]
    Malformed {
        key: String,
        problem: String,
        /// The record says `submitting`: an interrupted attempt may have paid it, so it is
        /// never dropped, only retried until fixed.
        in_flight: bool,
    },
}

/// An attempt's hold on an item: what every later write of that attempt is fenced by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub batch_id: String,
    pub item_id: String,
    pub attempt: u64,
    pub key_generation: u32,
    pub lease_until_ms: u64,
    /// The transfer recorded on the item when it was claimed, if any: moved to the item's
    /// history when the claim moves to a new key generation.
    pub seen_payout_id: Option<String>,
}

/// What a claim attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    Claimed(Claim),
    /// The item changed since it was read (another worker, a webhook): leave it alone.
    Lost {
        current: Option<ItemStatus>,
    },
}

/// What a fenced transition found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransitionOutcome {
    Applied,
    /// The guard failed: the item is no longer where this writer expected (a newer attempt or
    /// a webhook moved it). Nothing was written.
    Superseded {
        current: Option<ItemStatus>,
        /// The transfer the item records now.
        current_payout_id: Option<String>,
    },
}

/// What the current idempotency key can still tell, as an attempt ends without a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurrentKey {
    /// The key's outcome is known, or the PSP will replay it: the next attempt acts on it
    /// (resends it after a retryable error; moves to the next generation after a rejection).
    Settled,
    /// The PSP stored an unknown outcome under the key (a 5xx, a key conflict): the item is
    /// marked `reconcileSince` and the next attempt looks the transfer up by reference first.
    NeedsLookup,
}

/// Where the next page of a batch's items starts: after this item, in sort-key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCursor {
    pub after_item_id: String,
}

/// One page of open batches' ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchIdPage {
    pub batch_ids: Vec<String>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<String>,
}

/// One page of a batch's items, in sort-key order.
#[derive(Debug)]
pub struct ItemPage {
    /// Each record decoded, or why it could not be.
    pub items: Vec<Result<PayoutItem, StoreError>>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<PageCursor>,
}

/// The item an event is about: its key, and its status when settlement read it. An event that
/// names its item (the reference the executor sent as metadata) is applied without reading
/// the item first: the write guesses `processing` and learns the real status from a failed
/// guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTarget {
    pub item: ItemReference,
    pub status: Option<ItemStatus>,
}

/// What applying an event to an item did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventApplied {
    /// The item moved from `from` (or, for a reversal, `from` is `None` and the reversal was
    /// recorded); the event is recorded.
    Applied { from: Option<ItemStatus> },
    /// As `Applied`, and the item lists this event's transfer among those with held events:
    /// settlement applies them next.
    AppliedWithHeldEvents { from: Option<ItemStatus> },
    /// This event id was already recorded: nothing written.
    Duplicate,
    /// The item is not in a state this event may change (e.g. `failed` after `paid`, or another
    /// transfer's event); nothing moved, the event is recorded so a redelivery is a no-op.
    NotApplicable {
        current: Option<ItemStatus>,
        current_payout_id: Option<String>,
    },
    /// The item does not record this event's transfer yet, but may later (reconciliation can
    /// find it): the event is recorded as seen and held for that transfer, to be applied when
    /// the item records it ([`PayoutRepository::held_events`]).
    Held { current: Option<ItemStatus> },
    /// There is no item under this key: nothing written.
    NoItem,
}

/// A batch's live per-status item counts, exact at every moment: every status change is
/// counted in the same transaction as the change (`docs/design.md#batch-counts-and-lifecycle`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchCounts {
    /// The batch record's status (`pending`, `executing`, `completed`, …), as stored.
    pub status: String,
    /// How many item records the batch has; `None` until its first run counted them.
    pub total: Option<u64>,
    /// Items per status (only statuses with items); empty until the first run.
    pub counts: BTreeMap<ItemStatus, u64>,
}

impl BatchCounts {
    pub fn count(&self, status: ItemStatus) -> u64 {
        self.counts.get(&status).copied().unwrap_or(0)
    }

    /// Items still in flight: `pending`, `submitting`, `processing`.
    pub fn in_flight(&self) -> u64 {
        self.count(ItemStatus::Pending)
            + self.count(ItemStatus::Submitting)
            + self.count(ItemStatus::Processing)
    }
}

/// Per-status item counts, and the batch status they add up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchCompletion {
    pub status: BatchStatus,
    pub counts: BTreeMap<ItemStatus, u64>,
}

/// The payouts and user-settings tables, as the core uses them.
#[async_trait::async_trait]
pub trait PayoutRepository: Send + Sync {
    /// The batch record, read strongly consistently; `None` when there is no such batch.
    async fn get_batch(&self, batch_id: &str) -> Result<Option<PayoutBatch>, StoreError>;

    /// One item, read strongly consistently; `None` when it does not exist.
    async fn get_item(
        &self,
        batch_id: &str,
        item_id: &str,
    ) -> Result<Option<PayoutItem>, StoreError>;

    /// One page of the batch's items (strongly consistent), starting after `start` and ending
    /// at `through` (inclusive; `None`: the last item). `limit` caps the page size; `None` lets
    /// the store fill its largest pages.
    async fn query_items_page(
        &self,
        batch_id: &str,
        start: Option<PageCursor>,
        through: Option<&str>,
        limit: Option<i32>,
    ) -> Result<ItemPage, StoreError>;

    /// The ids of the batch's `every`-th, `2 × every`-th, … items in item order (reading keys
    /// only): where a fan-out splits a batch into segments of `every` items.
    async fn sample_item_ids(&self, batch_id: &str, every: u64) -> Result<Vec<String>, StoreError>;

    /// The payout methods of `user_ids` in bulk. Users with no settings record, or no
    /// `payoutMethod`, are absent from the map.
    async fn get_payout_methods(
        &self,
        user_ids: &[String],
    ) -> Result<HashMap<String, PayoutMethod>, StoreError>;

    /// `pending`/`pending_kyc`/`failed` → `failed` with `reason`, as the item was read: an item
    /// that can never be paid as it stands (unusable ids or amount). Nothing is sent to a PSP.
    async fn mark_refused(
        &self,
        item: &PayoutItem,
        reason: &str,
        now_ms: u64,
    ) -> Result<TransitionOutcome, StoreError>;

    /// `pending`/`pending_kyc`/`failed` → `pending_kyc` with `reason`. An item leaving `failed`
    /// (its rejection stored under the current key) moves to the next key generation, as a
    /// claim from `failed` would, unless its outcome awaits reconciliation.
    async fn mark_pending_kyc(
        &self,
        item: &PayoutItem,
        reason: &str,
        now_ms: u64,
    ) -> Result<TransitionOutcome, StoreError>;

    /// Takes `item` for a new attempt, as it was read: a compare-and-swap on status and attempt
    /// (and, for an item left `submitting`, an expired lease). A `failed` item moves to the next
    /// key generation, unless its outcome awaits reconciliation (`reconcileSince`). The claim
    /// that first uses a key generation records when (`keyFirstUsedAt`).
    async fn claim(
        &self,
        item: &PayoutItem,
        provider: &str,
        now_ms: u64,
        lease: Duration,
    ) -> Result<ClaimOutcome, StoreError>;

    /// Keeps on the item a transfer the PSP made after another transfer was recorded on it (a
    /// double payment), whatever the item's status.
    async fn record_duplicate_transfer(
        &self,
        claim: &Claim,
        provider_payout_id: &str,
        now_ms: u64,
    ) -> Result<(), StoreError>;

    /// `submitting` → `processing` with the PSP's id, if the claim is still the item's.
    async fn record_accepted(
        &self,
        claim: &Claim,
        provider_payout_id: &str,
        now_ms: u64,
    ) -> Result<TransitionOutcome, StoreError>;

    /// `submitting` → `failed` with the PSP's reason, if the claim is still the item's; `key`
    /// says whether the next attempt must reconcile before using a new key.
    async fn record_rejected(
        &self,
        claim: &Claim,
        reason: &str,
        key: CurrentKey,
        now_ms: u64,
    ) -> Result<TransitionOutcome, StoreError>;

    /// Moves a claimed item to the next key generation once reconciliation has shown the
    /// current key made no transfer: fenced on the claim and on the generation it leaves, so
    /// two workers can never both move to a new key. On `Applied`, `claim.key_generation` is
    /// the new generation.
    async fn advance_key_generation(
        &self,
        claim: &mut Claim,
        now_ms: u64,
    ) -> Result<TransitionOutcome, StoreError>;

    /// Ends the claim's lease early (retryable error, unknown outcome): the item stays
    /// `submitting` with its key, so the next run re-drives it without waiting for the lease.
    async fn release(
        &self,
        claim: &Claim,
        key: CurrentKey,
        now_ms: u64,
    ) -> Result<TransitionOutcome, StoreError>;

    /// The item whose `providerPayoutId` is `provider_payout_id`.
    async fn find_item_by_provider_payout_id(
        &self,
        provider_payout_id: &str,
    ) -> Result<Option<PayoutItem>, StoreError>;

    /// Applies `kind` (the meaning of `event`) to the item and records the event id,
    /// atomically: either both are written or neither. Only an event from the item's own
    /// `provider` about its current transfer (never one of an earlier key generation) applies.
    async fn apply_item_event(
        &self,
        provider: &str,
        event: &PaymentEvent,
        kind: &PaymentEventKind,
        target: &EventTarget,
        now_ms: u64,
    ) -> Result<EventApplied, StoreError>;

    /// Events held for `transfer_id` of `provider` (see [`EventApplied::Held`]), oldest first.
    /// Holding is one atomic write: the event recorded as seen, its held record, and the
    /// transfer added to the item's [`crate::domain::PayoutItem::held_transfer_ids`].
    async fn held_events(
        &self,
        provider: &str,
        transfer_id: &str,
    ) -> Result<Vec<PaymentEvent>, StoreError>;

    /// Drops a held event once it has been applied.
    async fn forget_held_event(
        &self,
        provider: &str,
        transfer_id: &str,
        event_id: &str,
    ) -> Result<(), StoreError>;

    /// Takes `transfer_id` out of the item's held transfers once every event held for it has
    /// been applied and forgotten (an item already gone is not an error).
    async fn forget_held_transfer(
        &self,
        batch_id: &str,
        item_id: &str,
        transfer_id: &str,
    ) -> Result<(), StoreError>;

    /// Records an event that moves no item (unknown item, not applicable). Returns false when
    /// the event id was already recorded.
    async fn record_event_once(
        &self,
        provider: &str,
        event: &PaymentEvent,
        item: Option<&ItemReference>,
        outcome: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError>;

    /// Starts a run of the batch: records the batch's item total once (the baseline of its
    /// counts) and moves the batch to `executing`, from `pending` or, when `retry_settled`
    /// (the run retries `failed`/`pending_kyc` items) and the counts hold such items, from
    /// `completed`/`completed_with_failures`. Returns the counts as they stand.
    async fn start_batch_run(
        &self,
        batch_id: &str,
        retry_settled: bool,
        now_ms: u64,
    ) -> Result<BatchCounts, StoreError>;

    /// One page of the ids of the open batches (counted or executing, or completed with items
    /// still `pending_kyc`), from the sparse index: its cost is the open batches, not the
    /// table. `start` is the previous page's `next`.
    async fn open_batches(&self, start: Option<String>) -> Result<BatchIdPage, StoreError>;

    /// Up to when (epoch ms) the reconciler's orphan check has listed the PSPs' transfers;
    /// `None` before its first sweep.
    async fn orphans_checked_until(&self) -> Result<Option<u64>, StoreError>;

    /// Records that the orphan check has listed transfers up to `until_ms`.
    async fn set_orphans_checked_until(&self, until_ms: u64) -> Result<(), StoreError>;

    /// The batch's status and live per-status counts, in one small read (whatever the batch's
    /// size); `None` when there is no such batch.
    async fn batch_counts(&self, batch_id: &str) -> Result<Option<BatchCounts>, StoreError>;

    /// Reads the batch's counts (constant cost) and, when no item of the batch is left in
    /// flight, writes its final status and per-status counts and returns them; `None` otherwise
    /// (a completed batch found with items in flight again is moved back to `executing`).
    async fn refresh_batch_completion(
        &self,
        batch_id: &str,
        now_ms: u64,
    ) -> Result<Option<BatchCompletion>, StoreError>;
}
