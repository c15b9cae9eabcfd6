//! Settlement's reads and writes: finding the item an event is about, applying the event to it
//! together with the event's once-only record (one transaction), and marking a batch complete
//! when none of its items is left in flight (`docs/design.md#webhooks-and-settlement`).

use crate::DynamoDbRepository;
use crate::codec::{Record, get_n, get_s, n, s, status, status_of, unavailable, unbuildable};
use crate::expression::Expression;
use crate::schema::{EVENT_RETENTION_SECS, PROVIDER_PAYOUT_ID_INDEX, attr, keys};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};
use payouts_core::clock::rfc3339_from_ms;
use payouts_core::domain::{BatchStatus, ItemStatus, PayoutItem};
use payouts_core::ports::repository::{BatchCompletion, EventApplied, StoreError};
use payouts_core::ports::webhook::{ItemReference, PaymentEvent, PaymentEventKind};
use std::collections::{BTreeMap, HashMap};

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
        item: &PayoutItem,
        now_ms: u64,
    ) -> Result<EventApplied, StoreError> {
        let update = self.event_update(provider, event, kind, item, now_ms)?;
        let record = self.event_put(provider, event, Some(item), APPLIED, now_ms)?;
        let result = self
            .client()
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(record).build())
            .transact_items(TransactWriteItem::builder().update(update).build())
            .send()
            .await;
        let reasons = match result {
            Ok(_) => return Ok(EventApplied::Applied),
            Err(err) => match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
                    cancelled.cancellation_reasons().to_vec()
                }
                _ => return Err(unavailable("TransactWriteItems", err)),
            },
        };
        self.cancelled_event(provider, event, item, &reasons, now_ms)
            .await
    }

    /// The item's side of an event: the move its kind calls for, guarded by the statuses it
    /// may move from and by the transfer being the item's own.
    fn event_update(
        &self,
        provider: &str,
        event: &PaymentEvent,
        kind: &PaymentEventKind,
        item: &PayoutItem,
        now_ms: u64,
    ) -> Result<Update, StoreError> {
        let now = s(rfc3339_from_ms(now_ms));
        let in_flight = [
            status(ItemStatus::Submitting),
            status(ItemStatus::Processing),
        ];
        let mut expression = Expression::new()
            .set(attr::UPDATED_AT, now.clone())
            // Items claimed before providers were recorded carry none.
            .require_absent_or_equal(attr::ITEM_PROVIDER, s(provider));
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
        if let Some(ppid) = &event.provider_payout_id {
            // The transfer is the item's own: recorded already, or not yet recorded at all.
            expression = expression
                .require_absent_or_equal(attr::PROVIDER_PAYOUT_ID, s(ppid))
                .require_not_listed(attr::PREVIOUS_PAYOUT_IDS, s(ppid));
            if !matches!(kind, PaymentEventKind::Reversed { .. }) {
                expression = expression.set(attr::PROVIDER_PAYOUT_ID, s(ppid));
            }
        }
        let parts = expression.build();
        Update::builder()
            .table_name(self.payouts_table())
            .key(attr::PK, s(keys::batch_pk(&item.batch_id)))
            .key(attr::SK, s(keys::item_sk(&item.item_id)))
            .set_update_expression(parts.update)
            .set_condition_expression(parts.condition)
            .set_expression_attribute_names(parts.names)
            .set_expression_attribute_values(parts.values)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| unbuildable("TransactWriteItems", e))
    }

    /// Reads a cancelled event transaction: the event seen before, the item not movable (the
    /// event is then recorded as not applicable), or a transient cancellation.
    async fn cancelled_event(
        &self,
        provider: &str,
        event: &PaymentEvent,
        item: &PayoutItem,
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
        Ok(EventApplied::NotApplicable { current })
    }

    /// Keeps `event` under its transfer until the item records that transfer, in one
    /// transaction: the event recorded as seen, the held record, and the transfer added to the
    /// item's `heldTransferIds`. All or nothing, so a delivery that dies halfway leaves nothing
    /// that would make the redelivery a duplicate of an event never kept.
    async fn hold_event(
        &self,
        provider: &str,
        event: &PaymentEvent,
        item: &PayoutItem,
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
        match result {
            Ok(_) => Ok(EventApplied::Held { current }),
            Err(err) => match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancelled))
                    if cancelled
                        .cancellation_reasons()
                        .first()
                        .and_then(|r| r.code())
                        == Some("ConditionalCheckFailed") =>
                {
                    Ok(EventApplied::Duplicate)
                }
                _ => Err(unavailable("TransactWriteItems", err)),
            },
        }
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
        item: Option<&PayoutItem>,
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
        item: Option<&PayoutItem>,
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

    pub(crate) async fn write_batch_completion(
        &self,
        batch_id: &str,
        now_ms: u64,
    ) -> Result<Option<BatchCompletion>, StoreError> {
        let Some(counts) = self.settled_item_counts(batch_id).await? else {
            return Ok(None);
        };
        let batch_status = BatchStatus::settled(counts.keys().all(|s| *s == ItemStatus::Paid));
        let counts_value = AttributeValue::M(
            counts
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), n(v)))
                .collect(),
        );
        let parts = Expression::new()
            .require_present(attr::PK)
            .set(attr::STATUS, s(batch_status.as_str()))
            .set(attr::ITEM_COUNTS, counts_value)
            .set(attr::COMPLETED_AT, s(rfc3339_from_ms(now_ms)))
            .build();
        self.client()
            .update_item()
            .table_name(self.payouts_table())
            .key(attr::PK, s(keys::batch_pk(batch_id)))
            .key(attr::SK, s(keys::BATCH_SK))
            .set_update_expression(parts.update)
            .set_condition_expression(parts.condition)
            .set_expression_attribute_names(parts.names)
            .set_expression_attribute_values(parts.values)
            .send()
            .await
            .map_err(|e| unavailable("UpdateItem", e))?;
        Ok(Some(BatchCompletion {
            status: batch_status,
            counts,
        }))
    }

    /// Per-status counts of the batch's items, or `None` at the first page that still holds
    /// an item in flight (`pending`, `submitting`, `processing`).
    async fn settled_item_counts(
        &self,
        batch_id: &str,
    ) -> Result<Option<BTreeMap<ItemStatus, u64>>, StoreError> {
        let mut counts: BTreeMap<ItemStatus, u64> = BTreeMap::new();
        let mut start = None;
        loop {
            let query = Expression::new()
                .require_equal(attr::PK, s(keys::batch_pk(batch_id)))
                .require_prefix(attr::SK, keys::ITEM_SK_PREFIX)
                .project(attr::STATUS)
                .build();
            let out = self
                .client()
                .query()
                .table_name(self.payouts_table())
                .set_key_condition_expression(query.condition)
                .set_projection_expression(query.projection)
                .set_expression_attribute_names(query.names)
                .set_expression_attribute_values(query.values)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| unavailable("Query", e))?;
            for record in out.items.unwrap_or_default() {
                let item_status = status_of(&record).unwrap_or(ItemStatus::Pending);
                if matches!(
                    item_status,
                    ItemStatus::Pending | ItemStatus::Submitting | ItemStatus::Processing
                ) {
                    return Ok(None);
                }
                *counts.entry(item_status).or_default() += 1;
            }
            match out.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(next) => start = Some(next),
                None => return Ok(Some(counts)),
            }
        }
    }
}

/// Whether the item (as the failed condition returned it) could still come to record this
/// event's transfer: it waits for an attempt (`pending`, `pending_kyc`, `failed`), records no
/// transfer or another one not yet retired, never retired this one, and is this provider's.
fn may_record_later(old: &Record, provider: &str, event: &PaymentEvent) -> bool {
    let Some(transfer_id) = &event.provider_payout_id else {
        return false;
    };
    let waiting = matches!(
        status_of(old),
        Some(ItemStatus::Pending | ItemStatus::PendingKyc | ItemStatus::Failed)
    );
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
    item: &PayoutItem,
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
    item: Option<&PayoutItem>,
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
