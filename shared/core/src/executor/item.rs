//! One item's attempt: claim → (reconcile) → pay → record, each step a small function. Every
//! write after the claim is fenced on the claim, so a superseded attempt changes nothing.

use super::summary::{ItemOutcome, Movement};
use super::{Executor, FailedItems, ItemPath, ItemWork, PlatformHalt, ResumePoint};
use crate::domain::{ItemStatus, PayoutBatch, PayoutItem, PayoutMethod};
use crate::money::{Currency, PayoutAmount};
use crate::ports::payment::{
    IdempotencyKey, PaymentAdapter, PaymentError, TransferReceipt, TransferRequest,
};
use crate::ports::repository::{Claim, ClaimOutcome, CurrentKey, StoreError, TransitionOutcome};
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{Instrument, error, info, info_span, warn};

/// What a reconciliation left to do.
enum Reconciled {
    /// The transfer is certainly absent and the claim now holds a fresh key generation: pay.
    Absent,
    /// Nothing more to do in this attempt.
    Done(ItemOutcome),
}

/// What the page reader makes of one read item.
pub(super) enum Sorted {
    /// May be paid: the amount in the PSP's minor units.
    Pay(PayoutItem, i64),
    /// Can never be paid as it stands; the reason goes on the item.
    Refuse(PayoutItem, String),
    /// Needs no work in this run.
    Done(ItemOutcome),
}

impl Executor {
    /// One item in its own span; a store error is counted as retryable, never lost.
    pub(super) async fn run_item(
        &self,
        batch: &PayoutBatch,
        adapter: &dyn PaymentAdapter,
        work: ItemWork,
        deadline: Option<Instant>,
        halt: &PlatformHalt,
        resume: &ResumePoint,
    ) -> ItemOutcome {
        let item = work.item();
        let span = info_span!("item", batch_id = %item.batch_id, item_id = %item.item_id);
        let run = async {
            match work {
                ItemWork::Pay {
                    item,
                    amount_minor,
                    method,
                    position,
                } => {
                    let payable = PayableItem {
                        item,
                        amount_minor,
                        method,
                    };
                    let outcome = self.pay_item(batch, adapter, payable, deadline, halt).await;
                    if matches!(outcome, Ok(ItemOutcome::Deferred)) {
                        resume.offer_position(&position);
                    }
                    outcome
                }
                ItemWork::Refuse { item, reason } => self.refuse_item(&item, &reason).await,
            }
        };
        match run.instrument(span).await {
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
        PayableItem {
            item,
            amount_minor,
            method,
        }: PayableItem,
        deadline: Option<Instant>,
        halt: &PlatformHalt,
    ) -> Result<ItemOutcome, StoreError> {
        let destination = match self
            .payable_destination(&item, method.as_ref(), batch)
            .await?
        {
            Ok(account) => account,
            Err(outcome) => return Ok(outcome),
        };
        let reconcile = reconciliation_due(&item, adapter.key_reuse_window(), self.now_ms());
        let path = match reconcile {
            Some(_) => ItemPath::ReconcileThenPay,
            None => ItemPath::Pay,
        };
        if deadline.is_some_and(|d| Instant::now() + self.config.start_reserve(path) >= d) {
            return Ok(ItemOutcome::Deferred);
        }
        if halt.is_raised() {
            return Ok(ItemOutcome::Halted);
        }
        if let Some(why) = reconcile
            && !self.settled_for_lookup(&item, adapter, why)
        {
            return Ok(ItemOutcome::Retryable);
        }
        let mut claim = match self
            .store
            .claim(&item, &batch.provider, self.now_ms(), self.config.lease)
            .await?
        {
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
        let mut request = transfer_request(batch, &item, &claim, destination, amount_minor);
        request.send_by = Some(self.latest_send(&claim, deadline));
        if let Some(why) = reconcile {
            match self
                .reconcile(adapter, &item, &mut claim, &mut request, why)
                .await?
            {
                Reconciled::Absent => {}
                Reconciled::Done(outcome) => return Ok(outcome),
            }
        }
        let answer = self
            .within_psp_timeout(request.send_by, adapter.submit_transfer(&request))
            .await
            .unwrap_or_else(|reason| Err(PaymentError::OutcomeUnknown { reason }));
        if let Err(PaymentError::PlatformRefused { reason }) = &answer {
            halt.raise();
            error!(attempt = claim.attempt, %reason, "the PSP refused the platform, not the item: no more items start in this run; the item is released and looked up by reference before it is paid again, the job retried until the platform is fixed");
            self.store
                .release(&claim, CurrentKey::NeedsLookup, self.now_ms())
                .await?;
            return Ok(ItemOutcome::Halted);
        }
        let outcome = self.record(adapter, &claim, answer).await?;
        Ok(match outcome {
            // Failing again is not progress.
            ItemOutcome::Failed(_) if item.status == ItemStatus::Failed => {
                ItemOutcome::Failed(Movement::Unchanged)
            }
            other => other,
        })
    }

    /// The recipient's account for this batch, or the outcome for an item that cannot be paid
    /// to anyone now (held for KYC, or retried when an earlier attempt may have paid it).
    async fn payable_destination(
        &self,
        item: &PayoutItem,
        method: Option<&PayoutMethod>,
        batch: &PayoutBatch,
    ) -> Result<Result<String, ItemOutcome>, StoreError> {
        match PayoutMethod::payable_account(method, &batch.provider) {
            Ok(account) => Ok(Ok(account.to_owned())),
            // An earlier attempt may have paid this item; it must not be parked in `pending_kyc`
            // (which would later be paid under the same key to whatever account is then on
            // file) nor re-driven to an account that is no longer payable. Retried, so it ends
            // in the DLQ (alarmed) if nobody fixes the recipient.
            Err(reason) if item.status == ItemStatus::Submitting => {
                warn!(%reason, attempt = item.attempt.attempt, "item left submitting by an earlier attempt, but its recipient can no longer be paid; needs the recipient fixed or a manual reconciliation");
                Ok(Err(ItemOutcome::Retryable))
            }
            Err(reason) => Ok(Err(self.hold_for_kyc(item, &reason).await?)),
        }
    }

    /// Whether the PSP has had its settle delay since the last call under the current key, so a
    /// lookup by reference shows everything that call could have made.
    fn settled_for_lookup(
        &self,
        item: &PayoutItem,
        adapter: &dyn PaymentAdapter,
        why: &'static str,
    ) -> bool {
        let settle = adapter.reconciliation_settle_delay().as_millis() as u64;
        let last_call = item
            .attempt
            .reconcile_since_ms
            .max(item.attempt.updated_ms)
            .unwrap_or(0);
        let settled = self.now_ms() >= last_call.saturating_add(settle);
        if !settled {
            info!(
                reason = why,
                settle_ms = settle,
                "outcome unknown under the current key; left to settle before the lookup by reference"
            );
        }
        settled
    }

    /// The latest instant a PSP request of this claim may start: its exchange (one PSP timeout)
    /// and the record write must fit both in the lease and before the run's deadline.
    fn latest_send(&self, claim: &Claim, deadline: Option<Instant>) -> Instant {
        let now = Instant::now();
        let lease_left = Duration::from_millis(claim.lease_until_ms.saturating_sub(self.now_ms()));
        let reserve = self.config.start_reserve(ItemPath::Pay);
        let by_lease = (now + lease_left).checked_sub(reserve).unwrap_or(now);
        match deadline {
            Some(deadline) => by_lease.min(deadline.checked_sub(reserve).unwrap_or(now)),
            None => by_lease,
        }
    }

    /// Runs one PSP call: the exchange is bounded by the PSP timeout, on top of whatever the
    /// adapter may wait for a rate slot before `send_by` (waiting is not PSP time). `Err` says
    /// no answer came in time.
    async fn within_psp_timeout<T>(
        &self,
        send_by: Option<Instant>,
        call: impl Future<Output = T>,
    ) -> Result<T, String> {
        let may_wait = send_by.map_or(Duration::ZERO, |by| {
            by.saturating_duration_since(Instant::now())
        });
        let bound = may_wait + self.config.psp_timeout;
        tokio::time::timeout(bound, call)
            .await
            .map_err(|_| format!("no answer within {bound:?}"))
    }

    /// Reconciliation (`docs/design.md#reconciliation`): the current key cannot tell what an
    /// earlier call did, so the transfer is looked up by reference. Found → recorded as the
    /// item's transfer, never paid again. Certainly absent → the item moves to the next key
    /// generation (one write fenced on this attempt and on the generation being left) and
    /// `request` carries the new key. A failed lookup releases the item; the next attempt looks
    /// again.
    async fn reconcile(
        &self,
        adapter: &dyn PaymentAdapter,
        item: &PayoutItem,
        claim: &mut Claim,
        request: &mut TransferRequest,
        why: &'static str,
    ) -> Result<Reconciled, StoreError> {
        let found = self
            .within_psp_timeout(request.send_by, adapter.find_transfer(request))
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
                Ok(Reconciled::Done(
                    self.record(adapter, claim, Ok(receipt)).await?,
                ))
            }
            Err(PaymentError::NotSent { reason }) => {
                info!(attempt = claim.attempt, %reason, "no rate slot in time for the lookup: nothing sent; lease released, left for the continuation");
                self.store
                    .release(claim, CurrentKey::Settled, self.now_ms())
                    .await?;
                Ok(Reconciled::Done(ItemOutcome::Deferred))
            }
            Err(err) => {
                warn!(attempt = claim.attempt, reason = why, error = %err, "reconciliation lookup failed; lease released, the item will be looked up again");
                self.store
                    .release(claim, CurrentKey::Settled, self.now_ms())
                    .await?;
                Ok(Reconciled::Done(ItemOutcome::Retryable))
            }
            Ok(None) if !lookup_sees_key(item, adapter.lookup_horizon(), self.now_ms()) => {
                error!(
                    attempt = claim.attempt, key_first_used_ms = ?item.attempt.key_first_used_ms,
                    "the PSP's lookup cannot see as far back as this key's first use: \"absent\" proves nothing, so no new key is used; needs a manual reconciliation"
                );
                self.store
                    .release(claim, CurrentKey::Settled, self.now_ms())
                    .await?;
                Ok(Reconciled::Done(ItemOutcome::Retryable))
            }
            Ok(None) => self.move_to_next_key(claim, request, why).await,
        }
    }

    /// The transfer is certainly absent: the claim moves to the next key generation, if its
    /// lease still has room for the payment.
    async fn move_to_next_key(
        &self,
        claim: &mut Claim,
        request: &mut TransferRequest,
        why: &'static str,
    ) -> Result<Reconciled, StoreError> {
        let lease_left = claim.lease_until_ms.saturating_sub(self.now_ms());
        if lease_left <= (self.config.psp_timeout + Duration::from_secs(1)).as_millis() as u64 {
            info!(
                attempt = claim.attempt,
                "transfer certainly absent, but the lease has no room for the payment; left to the next attempt"
            );
            self.store
                .release(claim, CurrentKey::Settled, self.now_ms())
                .await?;
            return Ok(Reconciled::Done(ItemOutcome::Retryable));
        }
        let left = claim.key_generation;
        match self
            .store
            .advance_key_generation(claim, self.now_ms())
            .await?
        {
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
            TransitionOutcome::Superseded { current, .. } => {
                warn!(attempt = claim.attempt, current = ?current.map(ItemStatus::as_str), "item moved on during reconciliation; not paid");
                Ok(Reconciled::Done(ItemOutcome::Skipped))
            }
        }
    }

    /// Records the PSP's answer under the claim's fence.
    async fn record(
        &self,
        adapter: &dyn PaymentAdapter,
        claim: &Claim,
        answer: Result<TransferReceipt, PaymentError>,
    ) -> Result<ItemOutcome, StoreError> {
        let now = self.now_ms();
        match answer {
            Ok(receipt) => {
                self.record_accepted(adapter.provider(), claim, &receipt, now)
                    .await
            }
            Err(PaymentError::Rejected { code, message }) => {
                let reason = format!("{code}: {message}");
                self.record_rejected(claim, &reason, CurrentKey::Settled, now)
                    .await
            }
            Err(PaymentError::KeyConflict { code, message }) => {
                let reason = format!("{code}: {message}");
                error!(attempt = claim.attempt, reason = %reason, "the PSP refused the key as used with other parameters: the item is failed and will be reconciled by lookup before any new key is used; the job is retried for that lookup");
                // The key may hold a transfer: not a final failure. The job is retried so the
                // next run looks the transfer up (and records it, or pays under a new key).
                Ok(
                    match self
                        .record_rejected(claim, &reason, CurrentKey::NeedsLookup, now)
                        .await?
                    {
                        ItemOutcome::Failed(_) => ItemOutcome::Retryable,
                        other => other,
                    },
                )
            }
            Err(PaymentError::NotSent { reason }) => {
                info!(attempt = claim.attempt, %reason, "no rate slot in time: nothing sent; lease released with the key unchanged, left for the continuation");
                self.store.release(claim, CurrentKey::Settled, now).await?;
                Ok(ItemOutcome::Deferred)
            }
            Err(unknown @ PaymentError::NeedsReconciliation { .. }) => {
                warn!(attempt = claim.attempt, error = %unknown, "the PSP stored an unknown outcome under this key; lease released, the next attempt reconciles by lookup instead of resending the key");
                self.store
                    .release(claim, CurrentKey::NeedsLookup, now)
                    .await?;
                Ok(ItemOutcome::Retryable)
            }
            Err(retryable) => {
                warn!(attempt = claim.attempt, error = %retryable, "PSP call did not complete; lease released, the item will be retried with the same key");
                self.store.release(claim, CurrentKey::Settled, now).await?;
                Ok(match retryable {
                    PaymentError::Transient {
                        retry_after: Some(wait),
                        ..
                    } => ItemOutcome::RetryAfter(wait),
                    _ => ItemOutcome::Retryable,
                })
            }
        }
    }

    async fn record_accepted(
        &self,
        provider: &str,
        claim: &Claim,
        receipt: &TransferReceipt,
        now: u64,
    ) -> Result<ItemOutcome, StoreError> {
        match self
            .store
            .record_accepted(claim, &receipt.provider_payout_id, now)
            .await?
        {
            TransitionOutcome::Applied => {
                info!(
                    from = %ItemStatus::Submitting, to = %ItemStatus::Processing, attempt = claim.attempt,
                    provider_payout_id = %receipt.provider_payout_id, replayed = receipt.replayed, "item transition"
                );
                if receipt.replayed {
                    self.release_held_events(provider, claim, &receipt.provider_payout_id)
                        .await;
                }
            }
            TransitionOutcome::Superseded {
                current,
                current_payout_id: Some(recorded),
            } if recorded != receipt.provider_payout_id => {
                error!(
                    attempt = claim.attempt, provider_payout_id = %receipt.provider_payout_id,
                    recorded_payout_id = %recorded, current = ?current.map(ItemStatus::as_str),
                    "DOUBLE PAYMENT: the PSP made this transfer, but the item already records another; kept on the item as duplicatePayoutIds for recovery"
                );
                self.store
                    .record_duplicate_transfer(claim, &receipt.provider_payout_id, now)
                    .await?;
                return Ok(ItemOutcome::DoublePayment);
            }
            TransitionOutcome::Superseded { current, .. } => warn!(
                attempt = claim.attempt, provider_payout_id = %receipt.provider_payout_id,
                current = ?current.map(ItemStatus::as_str),
                "PSP accepted, but the item moved on meanwhile (webhook or newer attempt); not overwritten"
            ),
        }
        Ok(ItemOutcome::Submitted)
    }

    /// A transfer this attempt did not make (replayed, or found by reconciliation) may have had
    /// events before the item recorded it: they were held, and apply now.
    async fn release_held_events(&self, provider: &str, claim: &Claim, transfer_id: &str) {
        if let Err(err) = crate::settlement::apply_held_events(
            self.store.as_ref(),
            self.clock.as_ref(),
            provider,
            &claim.batch_id,
            &claim.item_id,
            transfer_id,
        )
        .await
        {
            error!(provider_payout_id = transfer_id, error = %err, "held webhook events for this transfer could not be applied; the item stays processing until reconciled");
        }
    }

    async fn record_rejected(
        &self,
        claim: &Claim,
        reason: &str,
        key: CurrentKey,
        now: u64,
    ) -> Result<ItemOutcome, StoreError> {
        match self.store.record_rejected(claim, reason, key, now).await? {
            TransitionOutcome::Applied => {
                info!(from = %ItemStatus::Submitting, to = %ItemStatus::Failed, attempt = claim.attempt, reason = %reason, reconcile = (key == CurrentKey::NeedsLookup), "item transition");
                Ok(ItemOutcome::Failed(Movement::Moved))
            }
            TransitionOutcome::Superseded { current, .. } => {
                warn!(attempt = claim.attempt, reason = %reason, current = ?current.map(ItemStatus::as_str), "PSP rejected, but the item moved on meanwhile; not overwritten");
                Ok(ItemOutcome::Skipped)
            }
        }
    }

    /// An item that can never be paid as it stands becomes `failed` with the reason, so it is
    /// not silently left `pending` and its batch can complete; upstream fixes it and re-runs.
    async fn refuse_item(
        &self,
        item: &PayoutItem,
        reason: &str,
    ) -> Result<ItemOutcome, StoreError> {
        error!(status = %item.status, %reason, "item cannot be paid as it stands; failed with the reason, nothing sent to the PSP");
        let movement = match item.status {
            ItemStatus::Failed => Movement::Unchanged,
            _ => Movement::Moved,
        };
        if item.status == ItemStatus::Failed && item.failure_reason.as_deref() == Some(reason) {
            return Ok(ItemOutcome::Failed(movement));
        }
        match self.store.mark_refused(item, reason, self.now_ms()).await? {
            TransitionOutcome::Applied => {
                info!(from = %item.status, to = %ItemStatus::Failed, reason, "item transition");
                Ok(ItemOutcome::Failed(movement))
            }
            TransitionOutcome::Superseded { current, .. } => {
                info!(seen = %item.status, current = ?current.map(ItemStatus::as_str), "item changed since it was read; left to its new owner");
                Ok(ItemOutcome::Skipped)
            }
        }
    }

    async fn hold_for_kyc(
        &self,
        item: &PayoutItem,
        reason: &str,
    ) -> Result<ItemOutcome, StoreError> {
        let movement = match item.status {
            ItemStatus::PendingKyc => Movement::Unchanged,
            _ => Movement::Moved,
        };
        if item.status == ItemStatus::PendingKyc && item.failure_reason.as_deref() == Some(reason) {
            return Ok(ItemOutcome::PendingKyc(movement));
        }
        match self
            .store
            .mark_pending_kyc(item, reason, self.now_ms())
            .await?
        {
            TransitionOutcome::Applied => {
                info!(from = %item.status, to = %ItemStatus::PendingKyc, reason, "item transition");
                Ok(ItemOutcome::PendingKyc(movement))
            }
            TransitionOutcome::Superseded { current, .. } => {
                info!(seen = %item.status, current = ?current.map(ItemStatus::as_str), "item changed since it was read; left to its new owner");
                Ok(ItemOutcome::Skipped)
            }
        }
    }
}

/// An item the reader found payable, with what the worker needs to pay it.
struct PayableItem {
    item: PayoutItem,
    amount_minor: i64,
    method: Option<PayoutMethod>,
}

/// The transfer a claimed item asks for, under the claim's key generation.
fn transfer_request(
    batch: &PayoutBatch,
    item: &PayoutItem,
    claim: &Claim,
    destination: String,
    amount_minor: i64,
) -> TransferRequest {
    TransferRequest {
        idempotency_key: IdempotencyKey::for_item(
            &batch.batch_id,
            &item.item_id,
            claim.key_generation,
        ),
        batch_id: batch.batch_id.clone(),
        item_id: item.item_id.clone(),
        destination,
        amount_minor,
        currency: batch.currency.trim().to_ascii_uppercase(),
        send_by: None,
    }
}

/// Whether a lookup bounded to `horizon` can see every transfer the item's current key may have
/// made (its first use is known and within the horizon, with a day's margin).
fn lookup_sees_key(item: &PayoutItem, horizon: Option<Duration>, now: u64) -> bool {
    let Some(horizon) = horizon else {
        return true;
    };
    let margin = 24 * 3_600_000;
    item.attempt
        .key_first_used_ms
        .is_some_and(|first| now.saturating_sub(first) + margin < horizon.as_millis() as u64)
}

/// Why an item's earlier outcome must be looked up by reference before its key is sent
/// (again), or `None` when the current key can still answer for it. `key_reuse_window` is the
/// adapter's (`None`: the PSP keeps keys forever).
pub(crate) fn reconciliation_due(
    item: &PayoutItem,
    key_reuse_window: Option<Duration>,
    now: u64,
) -> Option<&'static str> {
    if item.attempt.reconcile_since_ms.is_some() {
        return Some("the PSP stored an unknown outcome under the current key");
    }
    // Only a `submitting` item's current key may have been sent without a known outcome.
    if item.status != ItemStatus::Submitting {
        return None;
    }
    let window = key_reuse_window?.as_millis() as u64;
    match item.attempt.key_first_used_ms {
        None => Some("the current key's first use is not recorded; the PSP may have forgotten it"),
        Some(first) if now.saturating_sub(first) >= window => {
            Some("the current key is older than the PSP is trusted to keep it")
        }
        Some(_) => None,
    }
}

/// Sorts a read item: needs no work, can never be paid as it stands (ids or amount unusable),
/// or may be paid (with its amount in the PSP's minor units).
pub(super) fn sort_read_item(
    batch: &PayoutBatch,
    currency: Currency,
    adapter: &dyn PaymentAdapter,
    decoded: Result<PayoutItem, StoreError>,
    now: u64,
    failed_items: FailedItems,
) -> Sorted {
    let item = match decoded {
        Ok(item) => item,
        Err(
            err @ StoreError::Malformed {
                in_flight: true, ..
            },
        ) => {
            error!(batch_id = %batch.batch_id, error = %err, "unreadable record of an item left submitting by an interrupted attempt; it may already be paid: retried, needs the record fixed or a manual reconciliation");
            return Sorted::Done(ItemOutcome::Retryable);
        }
        Err(err) => {
            error!(batch_id = %batch.batch_id, error = %err, "unreadable item record: reported, nothing written, never paid");
            return Sorted::Done(ItemOutcome::Invalid);
        }
    };
    match item.status {
        ItemStatus::Processing | ItemStatus::Paid => return Sorted::Done(ItemOutcome::Skipped),
        ItemStatus::Submitting if item.is_leased_at(now) => {
            return Sorted::Done(ItemOutcome::InFlight);
        }
        ItemStatus::Failed if failed_items == FailedItems::Leave => {
            return Sorted::Done(ItemOutcome::Failed(Movement::Unchanged));
        }
        _ => {}
    }
    let payable = item.unusable_ids().map_or(Ok(()), Err).and_then(|()| {
        PayoutAmount::parse(&item.net_amount, currency)
            .and_then(|amount| adapter.minor_units(&amount))
            .map_err(|e| e.to_string())
    });
    match payable {
        Ok(amount_minor) => Sorted::Pay(item, amount_minor),
        // An interrupted attempt may already have paid it: never dropped, never marked; retried
        // (towards the DLQ, alarmed) until the record is fixed or the item reconciled by hand.
        Err(reason) if item.status == ItemStatus::Submitting => {
            error!(batch_id = %batch.batch_id, item_id = %item.item_id, %reason, attempt = item.attempt.attempt, "item left submitting by an interrupted attempt has become unusable; it may already be paid: retried, needs the record fixed or a manual reconciliation");
            Sorted::Done(ItemOutcome::Retryable)
        }
        Err(reason) => Sorted::Refuse(item, reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AttemptState;

    const HOUR_MS: u64 = 3_600_000;

    fn item(status: ItemStatus, attempt: AttemptState) -> PayoutItem {
        PayoutItem {
            batch_id: "b1".into(),
            item_id: "i1".into(),
            user_id: "u1".into(),
            net_amount: "1.00".into(),
            status,
            failure_reason: None,
            provider_payout_id: None,
            attempt,
            held_transfer_ids: Vec::new(),
            other_known_transfer_ids: Vec::new(),
        }
    }

    #[test]
    fn reconciliation_is_due_for_stored_unknowns_and_keys_past_their_window() {
        let window = Some(Duration::from_millis(23 * HOUR_MS));
        let now = 100 * HOUR_MS;
        let fresh = AttemptState {
            key_first_used_ms: Some(now - HOUR_MS),
            ..AttemptState::default()
        };
        assert_eq!(
            reconciliation_due(&item(ItemStatus::Submitting, fresh), window, now),
            None
        );
        let old = AttemptState {
            key_first_used_ms: Some(now - 23 * HOUR_MS),
            ..fresh
        };
        assert!(reconciliation_due(&item(ItemStatus::Submitting, old), window, now).is_some());
        assert_eq!(
            reconciliation_due(&item(ItemStatus::Submitting, old), None, now),
            None,
            "a PSP that keeps keys forever never needs a lookup for age"
        );
        let unrecorded = AttemptState {
            key_first_used_ms: None,
            ..fresh
        };
        assert!(
            reconciliation_due(&item(ItemStatus::Submitting, unrecorded), window, now).is_some()
        );
        assert_eq!(
            reconciliation_due(&item(ItemStatus::Pending, unrecorded), window, now),
            None,
            "only a submitting item's key may have been sent without a known outcome"
        );
        let stored_unknown = AttemptState {
            reconcile_since_ms: Some(now),
            ..fresh
        };
        assert!(reconciliation_due(&item(ItemStatus::Failed, stored_unknown), None, now).is_some());
    }

    struct IsoAdapter;

    #[async_trait::async_trait]
    impl crate::ports::webhook::WebhookVerifier for IsoAdapter {
        async fn verify_webhook(
            &self,
            _: crate::ports::webhook::WebhookRequest<'_>,
        ) -> Result<crate::ports::webhook::VerifiedWebhook, crate::ports::webhook::WebhookError>
        {
            Err(crate::ports::webhook::WebhookError::BadSignature)
        }
    }

    #[async_trait::async_trait]
    impl PaymentAdapter for IsoAdapter {
        fn provider(&self) -> &str {
            "iso"
        }

        fn minor_units(&self, amount: &PayoutAmount) -> Result<i64, crate::money::MoneyError> {
            crate::money::iso_minor_units(amount)
        }

        async fn submit_transfer(
            &self,
            _: &TransferRequest,
        ) -> Result<TransferReceipt, PaymentError> {
            unreachable!("sorting never pays")
        }
    }

    #[test]
    fn only_unleased_claimable_items_with_usable_records_need_work() {
        let batch = PayoutBatch {
            batch_id: "b1".into(),
            provider: "iso".into(),
            currency: "usd".into(),
            status: "pending".into(),
            started_ms: None,
        };
        let usd = Currency::parse("usd").unwrap();
        let now = 1_000;
        let sort = |item: PayoutItem| match sort_read_item(
            &batch,
            usd,
            &IsoAdapter,
            Ok(item),
            now,
            FailedItems::Retry,
        ) {
            Sorted::Pay(_, minor) => Ok(minor),
            Sorted::Refuse(_, reason) => Err(Err(reason)),
            Sorted::Done(outcome) => Err(Ok(outcome)),
        };
        assert_eq!(
            sort(item(ItemStatus::Pending, AttemptState::default())),
            Ok(100)
        );
        assert_eq!(
            sort(item(ItemStatus::Paid, AttemptState::default())),
            Err(Ok(ItemOutcome::Skipped))
        );
        let leased = AttemptState {
            lease_until_ms: Some(now + 1),
            ..AttemptState::default()
        };
        assert_eq!(
            sort(item(ItemStatus::Submitting, leased)),
            Err(Ok(ItemOutcome::InFlight))
        );
        let expired = AttemptState {
            lease_until_ms: Some(now),
            ..AttemptState::default()
        };
        assert_eq!(sort(item(ItemStatus::Submitting, expired)), Ok(100));
        let mut unpayable = item(ItemStatus::Pending, AttemptState::default());
        unpayable.net_amount = "1.001".into();
        assert!(
            matches!(sort(unpayable.clone()), Err(Err(reason)) if reason.contains("not payable in USD"))
        );
        unpayable.status = ItemStatus::Submitting;
        assert_eq!(
            sort(unpayable),
            Err(Ok(ItemOutcome::Retryable)),
            "an interrupted item may be paid already: never refused"
        );
        let mut no_user = item(ItemStatus::Failed, AttemptState::default());
        no_user.user_id = String::new();
        assert!(matches!(sort(no_user), Err(Err(reason)) if reason.contains("userId")));
    }

    #[test]
    fn absent_means_absent_only_within_the_lookup_horizon() {
        let now = 3_000 * 24 * HOUR_MS;
        let used = |days_ago: u64| AttemptState {
            key_first_used_ms: Some(now - days_ago * 24 * HOUR_MS),
            ..AttemptState::default()
        };
        let horizon = Some(Duration::from_secs(180 * 24 * 3600));
        let at = |state| item(ItemStatus::Submitting, state);
        assert!(lookup_sees_key(&at(used(10)), horizon, now));
        assert!(
            !lookup_sees_key(&at(used(179)), horizon, now),
            "a day's margin"
        );
        assert!(!lookup_sees_key(&at(used(200)), horizon, now));
        assert!(!lookup_sees_key(&at(AttemptState::default()), horizon, now));
        assert!(lookup_sees_key(&at(used(2_000)), None, now));
    }

    #[test]
    fn the_start_reserve_covers_the_path_the_item_will_take() {
        let config = super::super::ExecutorConfig {
            psp_timeout: Duration::from_secs(5),
            ..Default::default()
        };
        assert_eq!(config.start_reserve(ItemPath::Pay), Duration::from_secs(6));
        assert_eq!(
            config.start_reserve(ItemPath::ReconcileThenPay),
            Duration::from_secs(11)
        );
    }
}
