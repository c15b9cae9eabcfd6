//! Settlement: what a verified PSP event does to an item and its batch
//! (`docs/design.md#webhooks-and-settlement`). The webhook function calls
//! [`apply_payment_event`] once per event; everything here is safe to repeat and to reorder.

use crate::clock::Clock;
use crate::domain::PayoutItem;
use crate::ports::repository::{BatchCompletion, EventApplied, PayoutRepository, StoreError};
use crate::ports::webhook::{PaymentEvent, PaymentEventKind};
use tracing::{info, warn};

/// What an event did, for the HTTP answer and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettlementOutcome {
    /// The item moved (or its reversal was recorded).
    Applied {
        batch_id: String,
        item_id: String,
        /// Set when this event left no item of the batch in flight.
        batch_completion: Option<BatchCompletion>,
    },
    /// The event id was seen before; nothing written.
    Duplicate,
    /// Acknowledged without moving any item; the reason says why.
    Ignored { reason: String },
    /// The item does not record this event's transfer yet: the event is held and applied when
    /// the item records it ([`apply_held_events`]).
    Held { batch_id: String, item_id: String },
}

/// The suffix of the event id under which a held event is applied: the original id is already
/// recorded as seen (held), and a second release of the same event is a duplicate.
const RELEASED: &str = ":released";

/// Applies a verified event from `provider`. Errors are transient storage errors: the PSP
/// should redeliver (HTTP 5xx), and the redelivery is safe.
///
/// Whoever sees the item record a transfer that has held events applies them: this event when
/// it records the transfer (or meets it recorded) and the item lists it as held, and the holder
/// itself when the item came to record the transfer while the event was being held. Together
/// with the executor's release after recording a transfer it did not make, no held event is
/// left behind by a race or by a delivery that died halfway.
pub async fn apply_payment_event(
    store: &dyn PayoutRepository,
    clock: &dyn Clock,
    provider: &str,
    event: &PaymentEvent,
) -> Result<SettlementOutcome, StoreError> {
    let (outcome, item) = settle_event(store, clock, provider, event).await?;
    let (Some(item), Some(transfer_id)) = (item, event.provider_payout_id.as_deref()) else {
        return Ok(outcome);
    };
    let records_transfer = item.provider_payout_id.as_deref() == Some(transfer_id);
    match &outcome {
        SettlementOutcome::Held { batch_id, item_id } => {
            // The item may have come to record the transfer while this event was being held.
            let now = store.get_item(batch_id, item_id).await?;
            if now.is_some_and(|now| now.provider_payout_id.as_deref() == Some(transfer_id)) {
                info!(
                    batch_id,
                    item_id,
                    provider_payout_id = transfer_id,
                    "the item recorded the transfer while its event was being held: released at once"
                );
                let applied =
                    apply_held_events(store, clock, provider, batch_id, item_id, transfer_id)
                        .await?;
                if applied > 0 {
                    return Ok(SettlementOutcome::Applied {
                        batch_id: batch_id.clone(),
                        item_id: item_id.clone(),
                        batch_completion: None,
                    });
                }
            }
        }
        SettlementOutcome::Applied { .. } | SettlementOutcome::Duplicate
            if item.held_transfer_ids.iter().any(|t| t == transfer_id)
                && (records_transfer || sets_transfer(event)) =>
        {
            apply_held_events(
                store,
                clock,
                provider,
                &item.batch_id,
                &item.item_id,
                transfer_id,
            )
            .await?;
        }
        _ => {}
    }
    Ok(outcome)
}

/// Whether applying `event` records its transfer on the item (a reversal never does).
fn sets_transfer(event: &PaymentEvent) -> bool {
    matches!(
        event.kind,
        Some(PaymentEventKind::Paid | PaymentEventKind::Failed { .. })
    )
}

/// One event's effect, and the item it was about (as read before applying it).
async fn settle_event(
    store: &dyn PayoutRepository,
    clock: &dyn Clock,
    provider: &str,
    event: &PaymentEvent,
) -> Result<(SettlementOutcome, Option<PayoutItem>), StoreError> {
    let Some(kind) = &event.kind else {
        let reason = format!("event type {} moves no item", event.event_type);
        info!(event_id = %event.event_id, event_type = %event.event_type, "webhook event ignored: {reason}");
        return Ok((SettlementOutcome::Ignored { reason }, None));
    };
    let Some(item) = find_item(store, event).await? else {
        let reason = "no payout item for this transfer".to_owned();
        let first = store
            .record_event_once(provider, event, None, &reason, clock.now_ms())
            .await?;
        warn!(
            event_id = %event.event_id, event_type = %event.event_type,
            provider_payout_id = ?event.provider_payout_id, "webhook event ignored: {reason}"
        );
        let outcome = if first {
            SettlementOutcome::Ignored { reason }
        } else {
            SettlementOutcome::Duplicate
        };
        return Ok((outcome, None));
    };
    let applied = store
        .apply_item_event(provider, event, kind, &item, clock.now_ms())
        .await?;
    let (batch_id, item_id) = (item.batch_id.clone(), item.item_id.clone());
    let outcome = match applied {
        EventApplied::Applied => {
            info!(
                batch_id, item_id, event_id = %event.event_id, event_type = %event.event_type,
                from = %item.status, to = %target(kind, &item), reason = ?reason_of(kind), "item transition"
            );
            let batch_completion = complete_batch(store, clock, &batch_id).await?;
            SettlementOutcome::Applied {
                batch_id,
                item_id,
                batch_completion,
            }
        }
        EventApplied::Duplicate => {
            info!(batch_id, item_id, event_id = %event.event_id, "duplicate webhook event: already applied");
            // The first delivery may have failed between applying and completing the batch.
            complete_batch(store, clock, &batch_id).await?;
            SettlementOutcome::Duplicate
        }
        EventApplied::NotApplicable { current } => {
            let reason = format!(
                "item is {} (transfer {}), which a {} event does not change",
                current.map(|s| s.as_str()).unwrap_or("unknown"),
                item.provider_payout_id.as_deref().unwrap_or("not recorded"),
                event.event_type
            );
            warn!(batch_id, item_id, event_id = %event.event_id, "webhook event not applied: {reason}");
            SettlementOutcome::Ignored { reason }
        }
        EventApplied::Held { current } => {
            info!(
                batch_id, item_id, event_id = %event.event_id, current = ?current.map(|s| s.as_str()),
                provider_payout_id = ?event.provider_payout_id,
                "webhook event held: the item does not record this transfer yet; applied when it does"
            );
            SettlementOutcome::Held { batch_id, item_id }
        }
    };
    Ok((outcome, Some(item)))
}

/// Applies the events held for `transfer_id` (the item now records it), each once, forgets
/// them, and takes the transfer off the item's held list. Returns how many moved the item.
/// Called by the executor when it records a transfer it did not make in this attempt (found by
/// reconciliation, or replayed by the PSP), and by settlement (see [`apply_payment_event`]).
pub async fn apply_held_events(
    store: &dyn PayoutRepository,
    clock: &dyn Clock,
    provider: &str,
    batch_id: &str,
    item_id: &str,
    transfer_id: &str,
) -> Result<u64, StoreError> {
    let mut applied = 0;
    for held in store.held_events(provider, transfer_id).await? {
        let released = PaymentEvent {
            event_id: format!("{}{RELEASED}", held.event_id),
            ..held.clone()
        };
        let (outcome, _) = settle_event(store, clock, provider, &released).await?;
        info!(event_id = %held.event_id, provider_payout_id = transfer_id, outcome = ?outcome, "held webhook event released");
        if matches!(outcome, SettlementOutcome::Applied { .. }) {
            applied += 1;
        }
        store
            .forget_held_event(provider, transfer_id, &held.event_id)
            .await?;
    }
    store
        .forget_held_transfer(batch_id, item_id, transfer_id)
        .await?;
    Ok(applied)
}

/// The item by the reference the executor sent as metadata, else by the PSP's transfer id.
async fn find_item(
    store: &dyn PayoutRepository,
    event: &PaymentEvent,
) -> Result<Option<PayoutItem>, StoreError> {
    let by_reference = match &event.reference {
        Some(reference) => {
            store
                .get_item(&reference.batch_id, &reference.item_id)
                .await?
        }
        None => None,
    };
    if by_reference.is_some() {
        return Ok(by_reference);
    }
    match &event.provider_payout_id {
        Some(ppid) => store.find_item_by_provider_payout_id(ppid).await,
        None => Ok(None),
    }
}

async fn complete_batch(
    store: &dyn PayoutRepository,
    clock: &dyn Clock,
    batch_id: &str,
) -> Result<Option<BatchCompletion>, StoreError> {
    let completion = store
        .refresh_batch_completion(batch_id, clock.now_ms())
        .await?;
    if let Some(done) = &completion {
        let counts: Vec<String> = done
            .counts
            .iter()
            .map(|(s, n)| format!("{s}={n}"))
            .collect();
        info!(batch_id, status = %done.status, counts = %counts.join(","), "batch completed");
    }
    Ok(completion)
}

fn target(kind: &PaymentEventKind, item: &PayoutItem) -> String {
    match kind {
        PaymentEventKind::Paid => "paid".to_owned(),
        PaymentEventKind::Failed { .. } => "failed".to_owned(),
        PaymentEventKind::Reversed { .. } => format!("{} (reversal recorded)", item.status),
    }
}

fn reason_of(kind: &PaymentEventKind) -> Option<&str> {
    match kind {
        PaymentEventKind::Paid => None,
        PaymentEventKind::Failed { reason } | PaymentEventKind::Reversed { reason } => Some(reason),
    }
}
