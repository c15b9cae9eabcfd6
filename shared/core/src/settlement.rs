//! Settlement: what a verified PSP event does to an item and its batch
//! (`docs/design.md#webhooks-and-settlement`). The webhook function calls
//! [`apply_payment_event`] once per event; everything here is safe to repeat and to reorder.

use crate::clock::Clock;
use crate::domain::ItemStatus;
use crate::ports::repository::{
    BatchCompletion, EventApplied, EventTarget, PayoutRepository, StoreError,
};
use crate::ports::webhook::{ItemReference, PaymentEvent, PaymentEventKind};
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
    let settled = settle_event(store, clock, provider, event).await?;
    let (Some(transfer_id), Some(item)) = (event.provider_payout_id.as_deref(), &settled.item)
    else {
        return Ok(settled.outcome);
    };
    let (batch_id, item_id) = (item.batch_id.as_str(), item.item_id.as_str());
    let release = match (&settled.outcome, settled.held) {
        // The item may have come to record the transfer while this event was being held.
        (SettlementOutcome::Held { .. }, _) => {
            let recorded = store
                .get_item(batch_id, item_id)
                .await?
                .is_some_and(|now| now.provider_payout_id.as_deref() == Some(transfer_id));
            if recorded {
                info!(
                    batch_id,
                    item_id,
                    provider_payout_id = transfer_id,
                    "the item recorded the transfer while its event was being held: released at once"
                );
            }
            recorded
        }
        (_, HeldEvents::Listed) => true,
        // A redelivery: the first delivery may have died before it released what is held.
        (SettlementOutcome::Duplicate, HeldEvents::Unknown) => {
            store.get_item(batch_id, item_id).await?.is_some_and(|now| {
                now.provider_payout_id.as_deref() == Some(transfer_id)
                    && now.held_transfer_ids.iter().any(|t| t == transfer_id)
            })
        }
        _ => false,
    };
    if !release {
        return Ok(settled.outcome);
    }
    let applied = apply_held_events(store, clock, provider, batch_id, item_id, transfer_id).await?;
    Ok(match settled.outcome {
        SettlementOutcome::Held { .. } if applied > 0 => SettlementOutcome::Applied {
            batch_id: batch_id.to_owned(),
            item_id: item_id.to_owned(),
            batch_completion: None,
        },
        outcome => outcome,
    })
}

/// What settlement knows of the transfer's held events after applying one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeldEvents {
    /// The item records the transfer and lists it as held: release them.
    Listed,
    /// Nothing says there are any.
    None,
    /// Not known (a duplicate touches no item).
    Unknown,
}

/// One event's effect, the item it was about, and what is known of its transfer's held events.
struct Settled {
    outcome: SettlementOutcome,
    item: Option<ItemReference>,
    held: HeldEvents,
}

/// One event's effect. An event that names its item is applied without reading the item
/// first; otherwise (or when the named item does not exist) the item is found by the transfer
/// id through the index.
async fn settle_event(
    store: &dyn PayoutRepository,
    clock: &dyn Clock,
    provider: &str,
    event: &PaymentEvent,
) -> Result<Settled, StoreError> {
    let ignored = |reason: String| Settled {
        outcome: SettlementOutcome::Ignored { reason },
        item: None,
        held: HeldEvents::None,
    };
    let Some(kind) = &event.kind else {
        let reason = format!("event type {} moves no item", event.event_type);
        info!(event_id = %event.event_id, event_type = %event.event_type, "webhook event ignored: {reason}");
        return Ok(ignored(reason));
    };
    let now = clock.now_ms();
    let mut applied = None;
    if let Some(reference) = &event.reference {
        let target = EventTarget {
            item: reference.clone(),
            status: None,
        };
        match store
            .apply_item_event(provider, event, kind, &target, now)
            .await?
        {
            EventApplied::NoItem => {}
            outcome => applied = Some((outcome, reference.clone())),
        }
    }
    if applied.is_none()
        && let Some(ppid) = &event.provider_payout_id
        && let Some(item) = store.find_item_by_provider_payout_id(ppid).await?
    {
        let target = EventTarget {
            item: ItemReference {
                batch_id: item.batch_id.clone(),
                item_id: item.item_id.clone(),
            },
            status: Some(item.status),
        };
        let outcome = store
            .apply_item_event(provider, event, kind, &target, now)
            .await?;
        applied = Some((outcome, target.item));
    }
    let Some((applied, reference)) = applied.filter(|(a, _)| *a != EventApplied::NoItem) else {
        let reason = "no payout item for this transfer".to_owned();
        let first = store
            .record_event_once(provider, event, None, &reason, now)
            .await?;
        warn!(
            event_id = %event.event_id, event_type = %event.event_type,
            provider_payout_id = ?event.provider_payout_id, "webhook event ignored: {reason}"
        );
        return Ok(if first {
            ignored(reason)
        } else {
            Settled {
                outcome: SettlementOutcome::Duplicate,
                item: None,
                held: HeldEvents::None,
            }
        });
    };
    let (batch_id, item_id) = (reference.batch_id.clone(), reference.item_id.clone());
    let (outcome, held) = match applied {
        EventApplied::Applied { from } | EventApplied::AppliedWithHeldEvents { from } => {
            info!(
                batch_id, item_id, event_id = %event.event_id, event_type = %event.event_type,
                from = ?from.map(ItemStatus::as_str), to = %target(kind, from), reason = ?reason_of(kind),
                "item transition"
            );
            // Held events apply once the item records their transfer: a paid or failed event
            // records it; a reversal only meets it recorded.
            let held = match applied {
                EventApplied::AppliedWithHeldEvents { .. } if sets_transfer(event) => {
                    HeldEvents::Listed
                }
                _ => HeldEvents::None,
            };
            let batch_completion = complete_batch(store, clock, &batch_id).await?;
            let outcome = SettlementOutcome::Applied {
                batch_id,
                item_id,
                batch_completion,
            };
            (outcome, held)
        }
        EventApplied::Duplicate => {
            info!(batch_id, item_id, event_id = %event.event_id, "duplicate webhook event: already applied");
            // The first delivery may have failed between applying and completing the batch.
            complete_batch(store, clock, &batch_id).await?;
            (SettlementOutcome::Duplicate, HeldEvents::Unknown)
        }
        EventApplied::NotApplicable {
            current,
            current_payout_id,
        } => {
            let reason = format!(
                "item is {} (transfer {}), which a {} event does not change",
                current.map(|s| s.as_str()).unwrap_or("unknown"),
                current_payout_id.as_deref().unwrap_or("not recorded"),
                event.event_type
            );
            warn!(batch_id, item_id, event_id = %event.event_id, "webhook event not applied: {reason}");
            (SettlementOutcome::Ignored { reason }, HeldEvents::None)
        }
        EventApplied::Held { current } => {
            info!(
                batch_id, item_id, event_id = %event.event_id, current = ?current.map(|s| s.as_str()),
                provider_payout_id = ?event.provider_payout_id,
                "webhook event held: the item does not record this transfer yet; applied when it does"
            );
            (
                SettlementOutcome::Held { batch_id, item_id },
                HeldEvents::None,
            )
        }
        EventApplied::NoItem => unreachable!("filtered above"),
    };
    Ok(Settled {
        outcome,
        item: Some(reference),
        held,
    })
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
        let outcome = settle_event(store, clock, provider, &released)
            .await?
            .outcome;
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

fn target(kind: &PaymentEventKind, from: Option<ItemStatus>) -> String {
    match (kind, from) {
        (PaymentEventKind::Paid, _) => "paid".to_owned(),
        (PaymentEventKind::Failed { .. }, _) => "failed".to_owned(),
        (PaymentEventKind::Reversed { .. }, Some(from)) => format!("{from} (reversal recorded)"),
        (PaymentEventKind::Reversed { .. }, None) => "unchanged (reversal recorded)".to_owned(),
    }
}

fn reason_of(kind: &PaymentEventKind) -> Option<&str> {
    match kind {
        PaymentEventKind::Paid => None,
        PaymentEventKind::Failed { reason } | PaymentEventKind::Reversed { reason } => Some(reason),
    }
}

/// Whether applying `event` records its transfer on the item (a reversal never does).
fn sets_transfer(event: &PaymentEvent) -> bool {
    matches!(
        event.kind,
        Some(PaymentEventKind::Paid | PaymentEventKind::Failed { .. })
    )
}
