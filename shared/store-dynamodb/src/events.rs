//! Settlement's reads and writes: finding the item an event is about, applying the event to it
//! together with the event's once-only record (one transaction), and marking a batch complete
//! when none of its items is left in flight (`docs/design.md#webhooks-and-settlement`).

use crate::DynamoDbRepository;
use crate::codec::{Record, get_n, get_s, n, s, status, status_of, unavailable, unbuildable};
use crate::counts::{CONFLICT_ATTEMPTS, cancellation, conflict_pause, conflicted, uncounted};
use crate::expression::Expression;
use crate::schema::{EVENT_RETENTION_SECS, PROVIDER_PAYOUT_ID_INDEX, attr, keys};
use crate::schema::{HistoryMove, history_entry};
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};
use payouts_core::clock::rfc3339_from_ms;
use payouts_core::domain::{ItemStatus, PayoutItem};
use payouts_core::ports::repository::{EventApplied, EventTarget, StoreError};
use payouts_core::ports::webhook::{ItemReference, PaymentEvent, PaymentEventKind};
use std::collections::HashMap;

/// The outcome written on the record of an event that moved its item.
const APPLIED: &str = "applied";

impl DynamoDbRepository {
    pub(crate) async fn find_by_provider_payout_id(
        &self,
        provider_payout_id: &str,
    ) -> Result<Option<PayoutItem>, StoreError> {
        let key = Expression::new()
            .require_equal(attr::PROVIDER_PAYOUT_ID, s(provider_payout_id))
            .build();
        let out = self
            .client()
            .query()
            .table_name(self.payouts_table())
            .index_name(PROVIDER_PAYOUT_ID_INDEX)
            .set_key_condition_expression(key.condition)
            .set_expression_attribute_names(key.names)
            .set_expression_attribute_values(key.values)
            .limit(1)
            .send()
            .await
            .map_err(|e| unavailable("Query", e))?;
        let Some(found) = out.items.unwrap_or_default().into_iter().next() else {
            return Ok(None);
        };
        let batch_id = get_s(&found, attr::PK).and_then(keys::batch_id_of);
        let item_id = get_s(&found, attr::SK).and_then(keys::item_id_of);
        match (batch_id, item_id) {
            (Some(batch_id), Some(item_id)) => self.read_item(batch_id, item_id).await,
            _ => Ok(None),
        }
    }

    /// Transitions: `submitting`/`processing` → `paid`/`failed`; a reversal is recorded on a
    /// `paid` (or still in-flight) item without moving it. An item that already has another
    /// transfer's id is never moved by this transfer's event.
    pub(crate) async fn write_item_event(
        &self,
        provider: &str,
        event: &PaymentEvent,
        kind: &PaymentEventKind,
        target: &EventTarget,
        now_ms: u64,
    ) -> Result<EventApplied, StoreError> {
        let item = &target.item;
        let record = self.event_put(provider, event, Some(item), APPLIED, now_ms)?;
        // The status the item is expected to move from: the counts move from it, so the
        // guard is on that status exactly. Unread, it is guessed `processing` (the executor
        // records the transfer before the PSP's events come, as a rule); an item found in
        // another movable status is tried again from that status.
        let mut expected = target.status.unwrap_or(ItemStatus::Processing);
        // Whether the item lists this event's transfer among those with held events: the
        // guard first requires it does not, so the common case needs no read; when it does,
        // the event applies all the same and settlement releases the held events next.
        let mut held = Held::NotListed;
        let mut round = 0;
        loop {
            let (update, moves) = self.event_update(
                provider,
                event,
                kind,
                item,
                Guard { expected, held },
                now_ms,
            )?;
            let mut request = self
                .client()
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(record.clone()).build())
                .transact_items(TransactWriteItem::builder().update(update).build());
            // An item read in a status this event does not move fails the guard anyway: the
            // transaction then carries no count move.
            if let Some(to) = moves.filter(|_| movable(kind, expected)) {
                let counter = self.counter_update(&item.batch_id, &item.item_id, expected, to)?;
                request =
                    request.transact_items(TransactWriteItem::builder().update(counter).build());
            }
            let reasons = match request.send().await {
                Ok(_) => {
                    let from = moves.map(|_| expected);
                    return Ok(match held {
                        Held::NotListed => EventApplied::Applied { from },
                        Held::Listed => EventApplied::AppliedWithHeldEvents { from },
                    });
                }
                Err(err) => cancellation(err)?,
            };
            round += 1;
            let failed =
                |i: usize| reasons.get(i).and_then(|r| r.code()) == Some("ConditionalCheckFailed");
            if failed(1) && !failed(0) && round < CONFLICT_ATTEMPTS {
                let Some(old) = reasons[1].item() else {
                    return Ok(EventApplied::NoItem);
                };
                let mut again = false;
                if held == Held::NotListed && lists_held(old, event) {
                    held = Held::Listed;
                    again = true;
                }
                if let Some(now) = status_of(old).filter(|now| movable(kind, *now)) {
                    again |= now != expected;
                    expected = now;
                }
                if again {
                    continue;
                }
            }
            if conflicted(&reasons) && round < CONFLICT_ATTEMPTS {
                conflict_pause(round).await;
                continue;
            }
            if !failed(0) && !failed(1) && uncounted(&reasons, 2) && round < CONFLICT_ATTEMPTS {
                // A batch in flight from before it was counted: count it, then move.
                self.count_batch(&item.batch_id).await?;
                continue;
            }
            return self
                .cancelled_event(provider, event, item, &reasons, now_ms)
                .await;
        }
    }

    /// The item's side of an event: the move its kind calls for, guarded by the statuses it
    /// may move from and by the transfer being the item's own.
    /// Returns the update and the status the item moves to (`None` for a reversal, which
    /// moves no status): the guard holds the status to `expected`, which must be movable.
    fn event_update(
        &self,
        provider: &str,
        event: &PaymentEvent,
        kind: &PaymentEventKind,
        item: &ItemReference,
        Guard { expected, held }: Guard,
        now_ms: u64,
    ) -> Result<(Update, Option<ItemStatus>), StoreError> {
        let now = s(rfc3339_from_ms(now_ms));
        let in_flight = [
            status(ItemStatus::Submitting),
            status(ItemStatus::Processing),
        ];
        let mut expression = Expression::new()
            .set(attr::UPDATED_AT, now.clone())
            // Items claimed before providers were recorded carry none.
            .require_absent_or_equal(attr::ITEM_PROVIDER, s(provider));
        let moves = match kind {
            PaymentEventKind::Paid => Some(ItemStatus::Paid),
            PaymentEventKind::Failed { .. } => Some(ItemStatus::Failed),
            PaymentEventKind::Reversed { .. } => None,
        };
        if moves.is_some() {
            expression = expression.require_equal(attr::STATUS, status(expected));
        }
        expression = match kind {
            PaymentEventKind::Paid => expression
                .require_in(attr::STATUS, in_flight.to_vec())
                .set(attr::STATUS, status(ItemStatus::Paid))
                .set(attr::PAID_AT, now)
                .remove(attr::LEASE_UNTIL),
            // A failure never moves an item an attempt holds: the event may be about an earlier
            // key's transfer while this attempt is paying under a new key (failing the item would
            // let a next attempt pay a third time). The PSP redelivers it once the attempt ends.
            PaymentEventKind::Failed { reason } => expression
                .require_equal_or_unleased(
                    attr::STATUS,
                    status(ItemStatus::Processing),
                    status(ItemStatus::Submitting),
                    attr::LEASE_UNTIL,
                    n(now_ms),
                )
                .set(attr::STATUS, status(ItemStatus::Failed))
                .set(attr::FAILURE_REASON, s(reason))
                .remove(attr::LEASE_UNTIL),
            PaymentEventKind::Reversed { reason } => expression
                .require_in(
                    attr::STATUS,
                    [in_flight.to_vec(), vec![status(ItemStatus::Paid)]].concat(),
                )
                .set(attr::REVERSED_AT, now)
                .set(attr::REVERSAL_REASON, s(reason))
                .set(attr::REVERSAL_EVENT_ID, s(&event.event_id)),
        };
        let (movement, detail) = match kind {
            PaymentEventKind::Paid => (
                HistoryMove::Status {
                    from: expected,
                    to: ItemStatus::Paid,
                },
                event
                    .provider_payout_id
                    .as_deref()
                    .unwrap_or(&event.event_id)
                    .to_owned(),
            ),
            PaymentEventKind::Failed { reason } => (
                HistoryMove::Status {
                    from: expected,
                    to: ItemStatus::Failed,
                },
                reason.clone(),
            ),
            PaymentEventKind::Reversed { reason } => (HistoryMove::Reversal, reason.clone()),
        };
        // The attempt is not read here (the write guesses the item's state): 0 in the entry.
        expression =
            expression.append_to_list(attr::HISTORY, history_entry(now_ms, movement, 0, &detail));
        if let Some(ppid) = &event.provider_payout_id {
            // The transfer is the item's own: recorded already, or (paid, reversed) not yet
            // recorded at all. A failure settles only the transfer the item records: one about
            // a transfer it does not record may be an earlier key's, while this key's transfer
            // is made and unrecorded; failing the item would pay it again under the next key.
            // It is held instead, and applies if the item comes to record that transfer.
            expression = match kind {
                PaymentEventKind::Failed { .. } => {
                    expression.require_equal(attr::PROVIDER_PAYOUT_ID, s(ppid))
                }
                _ => expression.require_absent_or_equal(attr::PROVIDER_PAYOUT_ID, s(ppid)),
            }
            .require_not_listed(attr::PREVIOUS_PAYOUT_IDS, s(ppid));
            if !matches!(kind, PaymentEventKind::Reversed { .. }) {
                expression = expression.set(attr::PROVIDER_PAYOUT_ID, s(ppid));
            }
            if held == Held::NotListed {
                expression = expression.require_not_listed(attr::HELD_TRANSFER_IDS, s(ppid));
            }
        }
        let parts = expression.build();
        let update = Update::builder()
            .table_name(self.payouts_table())
            .key(attr::PK, s(keys::batch_pk(&item.batch_id)))
            .key(attr::SK, s(keys::item_sk(&item.item_id)))
            .set_update_expression(parts.update)
            .set_condition_expression(parts.condition)
            .set_expression_attribute_names(parts.names)
            .set_expression_attribute_values(parts.values)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| unbuildable("TransactWriteItems", e))?;
        Ok((update, moves))
    }

    /// Reads a cancelled event transaction: the event seen before, the item not movable (the
    /// event is then recorded as not applicable), or a transient cancellation.
    async fn cancelled_event(
        &self,
        provider: &str,
        event: &PaymentEvent,
        item: &ItemReference,
        reasons: &[CancellationReason],
        now_ms: u64,
    ) -> Result<EventApplied, StoreError> {
        let failed =
            |i: usize| reasons.get(i).and_then(|r| r.code()) == Some("ConditionalCheckFailed");
        if failed(0) {
            return Ok(EventApplied::Duplicate);
        }
        if !failed(1) {
            let codes: Vec<_> = reasons.iter().map(|r| r.code().unwrap_or("?")).collect();
            return Err(StoreError::Unavailable {
                operation: "TransactWriteItems",
                message: format!("transaction cancelled ({}); retry", codes.join(", ")),
            });
        }
        let old = reasons[1].item();
        let current = old.and_then(|old: &Record| status_of(old));
        let held_by_attempt = matches!(event.kind, Some(PaymentEventKind::Failed { .. }))
            && current == Some(ItemStatus::Submitting)
            && old
                .and_then(|old| get_n::<u64>(old, attr::LEASE_UNTIL))
                .is_some_and(|lease| lease >= now_ms);
        if held_by_attempt {
            // Nothing was written (the transaction was cancelled): the PSP redelivers later.
            return Err(StoreError::Unavailable {
                operation: "TransactWriteItems",
                message: "a failure event for an item an attempt holds right now; redeliver after the attempt".into(),
            });
        }
        if old.is_some_and(|old| may_record_later(old, provider, event)) {
            return self
                .hold_event(provider, event, item, current, now_ms)
                .await;
        }
        let outcome = format!(
            "not applicable: item is {}",
            current.map(ItemStatus::as_str).unwrap_or("unknown")
        );
        if !self
            .put_event_once(provider, event, Some(item), &outcome, now_ms)
            .await?
        {
            return Ok(EventApplied::Duplicate);
        }
        Ok(EventApplied::NotApplicable {
            current,
            current_payout_id: old
                .and_then(|old| get_s(old, attr::PROVIDER_PAYOUT_ID))
                .map(str::to_owned),
        })
    }

    /// Keeps `event` under its transfer until the item records that transfer, in one
    /// transaction: the event recorded as seen, the held record, and the transfer added to the
    /// item's `heldTransferIds`. All or nothing, so a delivery that dies halfway leaves nothing
    /// that would make the redelivery a duplicate of an event never kept.
    async fn hold_event(
        &self,
        provider: &str,
        event: &PaymentEvent,
        item: &ItemReference,
        current: Option<ItemStatus>,
        now_ms: u64,
    ) -> Result<EventApplied, StoreError> {
        let seen = self.event_put(
            provider,
            event,
            Some(item),
            "held: the item does not record this transfer yet",
            now_ms,
        )?;
        let (Some(held), Some(transfer_id)) = (
            held_record(provider, event, item, now_ms),
            event.provider_payout_id.as_deref(),
        ) else {
            return Err(StoreError::Unavailable {
                operation: "TransactWriteItems",
                message: "an event without a transfer or a kind cannot be held".into(),
            });
        };
        let held = Put::builder()
            .table_name(self.payouts_table())
            .set_item(Some(held))
            .build()
            .map_err(|e| unbuildable("TransactWriteItems", e))?;
        let mark = Expression::new()
            .require_present(attr::PK)
            .add_to_set(attr::HELD_TRANSFER_IDS, transfer_id)
            .build();
        let mark = Update::builder()
            .table_name(self.payouts_table())
            .key(attr::PK, s(keys::batch_pk(&item.batch_id)))
            .key(attr::SK, s(keys::item_sk(&item.item_id)))
            .set_update_expression(mark.update)
            .set_condition_expression(mark.condition)
            .set_expression_attribute_names(mark.names)
            .set_expression_attribute_values(mark.values)
            .build()
            .map_err(|e| unbuildable("TransactWriteItems", e))?;
        let result = self
            .client()
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(seen).build())
            .transact_items(TransactWriteItem::builder().put(held).build())
            .transact_items(TransactWriteItem::builder().update(mark).build())
            .send()
            .await;
        let reasons = match result {
            Ok(_) => return Ok(EventApplied::Held { current }),
            Err(err) => cancellation(err)?,
        };
        if reasons.first().and_then(|r| r.code()) == Some("ConditionalCheckFailed") {
            return Ok(EventApplied::Duplicate);
        }
        let codes: Vec<_> = reasons.iter().map(|r| r.code().unwrap_or("?")).collect();
        Err(StoreError::Unavailable {
            operation: "TransactWriteItems",
            message: format!(
                "holding the event was cancelled ({}); retry",
                codes.join(", ")
            ),
        })
    }

    /// Takes `transfer_id` out of the item's `heldTransferIds` once its held events are applied.
    pub(crate) async fn unmark_held_transfer(
        &self,
        batch_id: &str,
        item_id: &str,
        transfer_id: &str,
    ) -> Result<(), StoreError> {
        let expression = Expression::new()
            .require_present(attr::PK)
            .delete_from_set(attr::HELD_TRANSFER_IDS, transfer_id);
        let parts = expression.build();
        let result = self
            .client()
            .update_item()
            .table_name(self.payouts_table())
            .key(attr::PK, s(keys::batch_pk(batch_id)))
            .key(attr::SK, s(keys::item_sk(item_id)))
            .set_update_expression(parts.update)
            .set_condition_expression(parts.condition)
            .set_expression_attribute_names(parts.names)
            .set_expression_attribute_values(parts.values)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // The item is gone: nothing left to unmark.
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(err) => Err(unavailable("UpdateItem", err)),
        }
    }

    pub(crate) async fn read_held_events(
        &self,
        provider: &str,
        transfer_id: &str,
    ) -> Result<Vec<PaymentEvent>, StoreError> {
        let key = Expression::new()
            .require_equal(attr::PK, s(keys::held_pk(provider, transfer_id)))
            .build();
        let out = self
            .client()
            .query()
            .table_name(self.payouts_table())
            .set_key_condition_expression(key.condition)
            .set_expression_attribute_names(key.names)
            .set_expression_attribute_values(key.values)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("Query", e))?;
        Ok(out
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(decode_held_event)
            .collect())
    }

    pub(crate) async fn delete_held_event(
        &self,
        provider: &str,
        transfer_id: &str,
        event_id: &str,
    ) -> Result<(), StoreError> {
        self.client()
            .delete_item()
            .table_name(self.payouts_table())
            .key(attr::PK, s(keys::held_pk(provider, transfer_id)))
            .key(attr::SK, s(keys::held_sk(event_id)))
            .send()
            .await
            .map_err(|e| unavailable("DeleteItem", e))?;
        Ok(())
    }

    pub(crate) async fn put_event_once(
        &self,
        provider: &str,
        event: &PaymentEvent,
        item: Option<&ItemReference>,
        outcome: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let once = Expression::new().require_absent(attr::PK).build();
        let result = self
            .client()
            .put_item()
            .table_name(self.payouts_table())
            .set_item(Some(event_record(provider, event, item, outcome, now_ms)))
            .set_condition_expression(once.condition)
            .set_expression_attribute_names(once.names)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(err) => Err(unavailable("PutItem", err)),
        }
    }

    fn event_put(
        &self,
        provider: &str,
        event: &PaymentEvent,
        item: Option<&ItemReference>,
        outcome: &str,
        now_ms: u64,
    ) -> Result<Put, StoreError> {
        let once = Expression::new().require_absent(attr::PK).build();
        Put::builder()
            .table_name(self.payouts_table())
            .set_item(Some(event_record(provider, event, item, outcome, now_ms)))
            .set_condition_expression(once.condition)
            .set_expression_attribute_names(once.names)
            .build()
            .map_err(|e| unbuildable("TransactWriteItems", e))
    }
}

/// What an event's item update requires beyond its transition's guard.
#[derive(Debug, Clone, Copy)]
struct Guard {
    /// The status the item moves from (the count moves from it).
    expected: ItemStatus,
    held: Held,
}

/// Whether the item lists the event's transfer among those with held events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    NotListed,
    Listed,
}

/// Whether `old` (the item as a failed guard returned it) lists the event's transfer in
/// `heldTransferIds`.
fn lists_held(old: &Record, event: &PaymentEvent) -> bool {
    match (old.get(attr::HELD_TRANSFER_IDS), &event.provider_payout_id) {
        (Some(AttributeValue::Ss(ids)), Some(transfer)) => ids.contains(transfer),
        _ => false,
    }
}

/// Whether an item in `current` is one `kind` moves (paid/failed from submitting or processing).
fn movable(kind: &PaymentEventKind, current: ItemStatus) -> bool {
    !matches!(kind, PaymentEventKind::Reversed { .. })
        && matches!(current, ItemStatus::Submitting | ItemStatus::Processing)
}

/// Whether the item (as the failed condition returned it) could still come to record this
/// event's transfer: it waits for an attempt (`pending`, `pending_kyc`, `failed`; for a failure
/// also an unleased `submitting`), records no transfer or another one not yet retired, never
/// retired this one, and is this provider's.
fn may_record_later(old: &Record, provider: &str, event: &PaymentEvent) -> bool {
    let Some(transfer_id) = &event.provider_payout_id else {
        return false;
    };
    // An attempt in flight (`submitting`) may still record the transfer a failure is about;
    // paid and reversal events apply to it at once.
    let failure = matches!(event.kind, Some(PaymentEventKind::Failed { .. }));
    let waiting = matches!(
        status_of(old),
        Some(ItemStatus::Pending | ItemStatus::PendingKyc | ItemStatus::Failed)
    ) || (failure && status_of(old) == Some(ItemStatus::Submitting));
    let retired = match old.get(attr::PREVIOUS_PAYOUT_IDS) {
        Some(AttributeValue::L(ids)) => ids.iter().any(|id| id.as_s().ok() == Some(transfer_id)),
        _ => false,
    };
    let own_provider = get_s(old, attr::ITEM_PROVIDER).is_none_or(|p| p == provider);
    waiting
        && !retired
        && own_provider
        && get_s(old, attr::PROVIDER_PAYOUT_ID) != Some(transfer_id.as_str())
}

/// The held record of `event` (`HELD#<provider>#<transferId>`, `EVENT#<eventId>`), or `None`
/// for an event without a transfer or a kind.
fn held_record(
    provider: &str,
    event: &PaymentEvent,
    item: &ItemReference,
    now_ms: u64,
) -> Option<Record> {
    let (Some(transfer_id), Some(kind)) = (&event.provider_payout_id, &event.kind) else {
        return None;
    };
    let (kind_name, reason) = match kind {
        PaymentEventKind::Paid => ("paid", None),
        PaymentEventKind::Failed { reason } => ("failed", Some(reason)),
        PaymentEventKind::Reversed { reason } => ("reversed", Some(reason)),
    };
    let mut record = HashMap::from([
        (attr::PK.to_owned(), s(keys::held_pk(provider, transfer_id))),
        (attr::SK.to_owned(), s(keys::held_sk(&event.event_id))),
        (attr::EVENT_ID.to_owned(), s(&event.event_id)),
        (attr::EVENT_TYPE.to_owned(), s(&event.event_type)),
        (attr::EVENT_KIND.to_owned(), s(kind_name)),
        (attr::BATCH_ID.to_owned(), s(&item.batch_id)),
        (attr::ITEM_ID.to_owned(), s(&item.item_id)),
        (attr::TRANSFER_ID.to_owned(), s(transfer_id)),
        (attr::RECEIVED_AT.to_owned(), s(rfc3339_from_ms(now_ms))),
        (
            attr::EXPIRES_AT.to_owned(),
            n(now_ms / 1000 + EVENT_RETENTION_SECS),
        ),
    ]);
    if let Some(reason) = reason {
        record.insert(attr::EVENT_REASON.to_owned(), s(reason));
    }
    Some(record)
}

/// A held event as settlement applies it.
fn decode_held_event(record: &Record) -> Option<PaymentEvent> {
    let reason = || {
        get_s(record, attr::EVENT_REASON)
            .unwrap_or_default()
            .to_owned()
    };
    let kind = match get_s(record, attr::EVENT_KIND)? {
        "paid" => PaymentEventKind::Paid,
        "failed" => PaymentEventKind::Failed { reason: reason() },
        "reversed" => PaymentEventKind::Reversed { reason: reason() },
        _ => return None,
    };
    Some(PaymentEvent {
        event_id: get_s(record, attr::EVENT_ID)?.to_owned(),
        event_type: get_s(record, attr::EVENT_TYPE)?.to_owned(),
        kind: Some(kind),
        provider_payout_id: Some(get_s(record, attr::TRANSFER_ID)?.to_owned()),
        reference: Some(ItemReference {
            batch_id: get_s(record, attr::BATCH_ID)?.to_owned(),
            item_id: get_s(record, attr::ITEM_ID)?.to_owned(),
        }),
    })
}

/// The once-only record of an event, kept for [`EVENT_RETENTION_SECS`].
fn event_record(
    provider: &str,
    event: &PaymentEvent,
    item: Option<&ItemReference>,
    outcome: &str,
    now_ms: u64,
) -> Record {
    let mut record = HashMap::from([
        (
            attr::PK.to_owned(),
            s(keys::event_pk(provider, &event.event_id)),
        ),
        (attr::SK.to_owned(), s(keys::EVENT_SK)),
        (attr::PROVIDER.to_owned(), s(provider)),
        (attr::EVENT_ID.to_owned(), s(&event.event_id)),
        (attr::EVENT_TYPE.to_owned(), s(&event.event_type)),
        (attr::OUTCOME.to_owned(), s(outcome)),
        (attr::RECEIVED_AT.to_owned(), s(rfc3339_from_ms(now_ms))),
        (
            attr::EXPIRES_AT.to_owned(),
            n(now_ms / 1000 + EVENT_RETENTION_SECS),
        ),
    ]);
    if let Some(item) = item {
        record.insert(attr::BATCH_ID.to_owned(), s(&item.batch_id));
        record.insert(attr::ITEM_ID.to_owned(), s(&item.item_id));
    }
    if let Some(ppid) = &event.provider_payout_id {
        record.insert(attr::TRANSFER_ID.to_owned(), s(ppid));
    }
    record
}
