//! Storage side of PSP webhooks: finding the item an event is about, applying the event to it
//! together with the event's once-only record (one transaction), and marking a batch complete
//! when none of its items is left in flight.

use super::dynamodb::{Record, attr, decode_item, get_s, keys, n, s, status};
use super::{PayoutStore, StoreError, rfc3339_from_ms};
use crate::domain::{ItemStatus, PayoutItem};
use crate::psp::webhook::{PaymentEvent, PaymentEventKind};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use std::collections::{BTreeMap, HashMap};

/// The index on `providerPayoutId` (see `infra/tables.json`).
pub const PROVIDER_PAYOUT_ID_INDEX: &str = "byProviderPayoutId";
/// How long an event id is remembered for deduplication (PSPs retry for up to 3 days).
pub const EVENT_RETENTION_SECS: u64 = 30 * 24 * 3600;
/// Attribute holding the epoch-seconds expiry that DynamoDB's TTL deletes records by.
pub const EXPIRES_AT: &str = "expiresAt";

/// The key of an event's once-only record: one per provider and event id.
pub fn event_pk(provider: &str, event_id: &str) -> String {
    format!("EVENT#{provider}#{event_id}")
}

/// What applying an event to an item did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventApplied {
    /// The item moved (or, for a reversal, the reversal was recorded); the event is recorded.
    Applied,
    /// This event id was already recorded: nothing written.
    Duplicate,
    /// The item is not in a state this event may change (e.g. `failed` after `paid`, or another
    /// transfer's event); nothing moved, the event is recorded so a redelivery is a no-op.
    NotApplicable { current: Option<ItemStatus> },
}

/// Per-status item counts, and the batch status they add up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchCompletion {
    pub status: &'static str,
    pub counts: BTreeMap<ItemStatus, u64>,
}

impl PayoutStore {
    /// One item, read strongly consistently; `None` when it does not exist.
    pub async fn get_item(
        &self,
        batch_id: &str,
        item_id: &str,
    ) -> Result<Option<PayoutItem>, StoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(self.payouts_table())
            .key(attr::PK, s(keys::batch_pk(batch_id)))
            .key(attr::SK, s(keys::item_sk(item_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::dynamo("GetItem", e))?;
        out.item
            .map(|record| decode_item(batch_id, &record))
            .transpose()
    }

    /// The item whose `providerPayoutId` is `provider_payout_id`, through the index (eventually
    /// consistent), then read strongly consistently.
    pub async fn find_item_by_provider_payout_id(
        &self,
        provider_payout_id: &str,
    ) -> Result<Option<PayoutItem>, StoreError> {
        let out = self
            .client()
            .query()
            .table_name(self.payouts_table())
            .index_name(PROVIDER_PAYOUT_ID_INDEX)
            .key_condition_expression("#ppid = :ppid")
            .expression_attribute_names("#ppid", attr::PROVIDER_PAYOUT_ID)
            .expression_attribute_values(":ppid", s(provider_payout_id))
            .limit(1)
            .send()
            .await
            .map_err(|e| StoreError::dynamo("Query", e))?;
        let Some(keys) = out.items.unwrap_or_default().into_iter().next() else {
            return Ok(None);
        };
        let batch_id = get_s(&keys, attr::PK).and_then(|pk| pk.strip_prefix("BATCH#"));
        let item_id = get_s(&keys, attr::SK).and_then(|sk| sk.strip_prefix(keys::ITEM_SK_PREFIX));
        match (batch_id, item_id) {
            (Some(batch_id), Some(item_id)) => self.get_item(batch_id, item_id).await,
            _ => Ok(None),
        }
    }

    /// Applies `event` to the item and records the event id, atomically: either both are
    /// written or neither. Transitions (DESIGN.md): `submitting`/`processing` → `paid`/`failed`;
    /// a reversal is recorded on a `paid` (or still in-flight) item without moving it. An item
    /// that already has another transfer's id is never moved by this transfer's event.
    pub async fn apply_item_event(
        &self,
        provider: &str,
        event: &PaymentEvent,
        kind: &PaymentEventKind,
        item: &PayoutItem,
        now_ms: u64,
    ) -> Result<EventApplied, StoreError> {
        let mut update = Update::builder()
            .table_name(self.payouts_table())
            .key(attr::PK, s(keys::batch_pk(&item.batch_id)))
            .key(attr::SK, s(keys::item_sk(&item.item_id)))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_names("#updated", attr::UPDATED_AT)
            .expression_attribute_values(":submitting", status(ItemStatus::Submitting))
            .expression_attribute_values(":processing", status(ItemStatus::Processing))
            .expression_attribute_values(":now", s(rfc3339_from_ms(now_ms)));
        let mut condition = match kind {
            PaymentEventKind::Paid => {
                update = update
                    .update_expression(
                        "SET #status = :to, #paid_at = :now, #updated = :now REMOVE #lease",
                    )
                    .expression_attribute_names("#paid_at", "paidAt")
                    .expression_attribute_names("#lease", attr::LEASE_UNTIL)
                    .expression_attribute_values(":to", status(ItemStatus::Paid));
                "#status IN (:submitting, :processing)".to_owned()
            }
            PaymentEventKind::Failed { reason } => {
                update = update
                    .update_expression(
                        "SET #status = :to, #reason = :reason, #updated = :now REMOVE #lease",
                    )
                    .expression_attribute_names("#reason", attr::FAILURE_REASON)
                    .expression_attribute_names("#lease", attr::LEASE_UNTIL)
                    .expression_attribute_values(":to", status(ItemStatus::Failed))
                    .expression_attribute_values(":reason", s(reason));
                "#status IN (:submitting, :processing)".to_owned()
            }
            PaymentEventKind::Reversed { reason } => {
                update = update
                    .update_expression("SET #rev_at = :now, #rev_reason = :reason, #rev_event = :event, #updated = :now")
                    .expression_attribute_names("#rev_at", "reversedAt")
                    .expression_attribute_names("#rev_reason", "reversalReason")
                    .expression_attribute_names("#rev_event", "reversalEventId")
                    .expression_attribute_values(":reason", s(reason))
                    .expression_attribute_values(":event", s(&event.event_id))
                    .expression_attribute_values(":paid", status(ItemStatus::Paid));
                "#status IN (:submitting, :processing, :paid)".to_owned()
            }
        };
        if let Some(ppid) = &event.provider_payout_id {
            // The transfer is the item's own: recorded already, or not yet recorded at all.
            condition.push_str(" AND (attribute_not_exists(#ppid) OR #ppid = :ppid)");
            update = update
                .expression_attribute_names("#ppid", attr::PROVIDER_PAYOUT_ID)
                .expression_attribute_values(":ppid", s(ppid));
            if !matches!(kind, PaymentEventKind::Reversed { .. }) {
                let expression = update.get_update_expression().clone().unwrap_or_default();
                update =
                    update.update_expression(expression.replacen("SET ", "SET #ppid = :ppid, ", 1));
            }
        }
        let update = update
            .condition_expression(condition)
            .build()
            .map_err(|e| StoreError::Dynamo {
                operation: "TransactWriteItems",
                message: e.to_string(),
            })?;
        let record = self.event_record(provider, event, item, "applied", now_ms)?;
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
                _ => return Err(StoreError::dynamo("TransactWriteItems", err)),
            },
        };
        let failed =
            |i: usize| reasons.get(i).and_then(|r| r.code()) == Some("ConditionalCheckFailed");
        if failed(0) {
            return Ok(EventApplied::Duplicate);
        }
        if !failed(1) {
            let codes: Vec<_> = reasons
                .iter()
                .map(|r| r.code().unwrap_or("?").to_owned())
                .collect();
            return Err(StoreError::Dynamo {
                operation: "TransactWriteItems",
                message: format!("transaction cancelled ({}); retry", codes.join(", ")),
            });
        }
        let current = reasons[1]
            .item()
            .and_then(|old| get_s(old, attr::STATUS))
            .and_then(|s| s.parse().ok());
        let outcome = format!(
            "not applicable: item is {}",
            current.map(ItemStatus::as_str).unwrap_or("unknown")
        );
        Ok(
            match self
                .record_event_once(provider, event, Some(item), &outcome, now_ms)
                .await?
            {
                true => EventApplied::NotApplicable { current },
                false => EventApplied::Duplicate,
            },
        )
    }

    /// Records an event that moves no item (unknown item, not applicable). Returns false when
    /// the event id was already recorded.
    pub async fn record_event_once(
        &self,
        provider: &str,
        event: &PaymentEvent,
        item: Option<&PayoutItem>,
        outcome: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let put = self.event_record_item(provider, event, item, outcome, now_ms);
        let result = self
            .client()
            .put_item()
            .table_name(self.payouts_table())
            .set_item(Some(put))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", attr::PK)
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
            Err(err) => Err(StoreError::dynamo("PutItem", err)),
        }
    }

    fn event_record(
        &self,
        provider: &str,
        event: &PaymentEvent,
        item: &PayoutItem,
        outcome: &str,
        now_ms: u64,
    ) -> Result<Put, StoreError> {
        Put::builder()
            .table_name(self.payouts_table())
            .set_item(Some(self.event_record_item(
                provider,
                event,
                Some(item),
                outcome,
                now_ms,
            )))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", attr::PK)
            .build()
            .map_err(|e| StoreError::Dynamo {
                operation: "TransactWriteItems",
                message: e.to_string(),
            })
    }

    fn event_record_item(
        &self,
        provider: &str,
        event: &PaymentEvent,
        item: Option<&PayoutItem>,
        outcome: &str,
        now_ms: u64,
    ) -> Record {
        let mut record = HashMap::from([
            (attr::PK.to_owned(), s(event_pk(provider, &event.event_id))),
            (attr::SK.to_owned(), s("EVENT")),
            (attr::PROVIDER.to_owned(), s(provider)),
            ("eventId".to_owned(), s(&event.event_id)),
            ("eventType".to_owned(), s(&event.event_type)),
            ("outcome".to_owned(), s(outcome)),
            ("receivedAt".to_owned(), s(rfc3339_from_ms(now_ms))),
            (
                EXPIRES_AT.to_owned(),
                n(now_ms / 1000 + EVENT_RETENTION_SECS),
            ),
        ]);
        if let Some(item) = item {
            record.insert(attr::BATCH_ID.to_owned(), s(&item.batch_id));
            record.insert(attr::ITEM_ID.to_owned(), s(&item.item_id));
        }
        if let Some(ppid) = &event.provider_payout_id {
            record.insert("transferId".to_owned(), s(ppid));
        }
        record
    }

    /// When no item of the batch is left in flight (`pending`, `submitting`, `processing`),
    /// writes the batch's final status (`completed` when every item is `paid`, else
    /// `completed_with_failures`) and per-status counts, and returns them. Returns `None`, having
    /// written nothing, while any item is still in flight; it stops reading at the first such page.
    pub async fn refresh_batch_completion(
        &self,
        batch_id: &str,
        now_ms: u64,
    ) -> Result<Option<BatchCompletion>, StoreError> {
        let mut counts: BTreeMap<ItemStatus, u64> = BTreeMap::new();
        let mut start = None;
        loop {
            let out = self
                .client()
                .query()
                .table_name(self.payouts_table())
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :item)")
                .projection_expression("#status")
                .expression_attribute_names("#pk", attr::PK)
                .expression_attribute_names("#sk", attr::SK)
                .expression_attribute_names("#status", attr::STATUS)
                .expression_attribute_values(":pk", s(keys::batch_pk(batch_id)))
                .expression_attribute_values(":item", s(keys::ITEM_SK_PREFIX))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| StoreError::dynamo("Query", e))?;
            for record in out.items.unwrap_or_default() {
                let item_status = get_s(&record, attr::STATUS)
                    .unwrap_or(ItemStatus::Pending.as_str())
                    .parse()
                    .unwrap_or(ItemStatus::Pending);
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
                None => break,
            }
        }
        let all_paid = counts.keys().all(|s| *s == ItemStatus::Paid);
        let batch_status = if all_paid {
            "completed"
        } else {
            "completed_with_failures"
        };
        let counts_value = AttributeValue::M(
            counts
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), n(v)))
                .collect(),
        );
        self.client()
            .update_item()
            .table_name(self.payouts_table())
            .key(attr::PK, s(keys::batch_pk(batch_id)))
            .key(attr::SK, s(keys::BATCH_SK))
            .update_expression("SET #status = :status, #counts = :counts, #completed = :now")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_names("#counts", "itemCounts")
            .expression_attribute_names("#completed", "completedAt")
            .expression_attribute_values(":status", s(batch_status))
            .expression_attribute_values(":counts", counts_value)
            .expression_attribute_values(":now", s(rfc3339_from_ms(now_ms)))
            .send()
            .await
            .map_err(|e| StoreError::dynamo("UpdateItem", e))?;
        Ok(Some(BatchCompletion {
            status: batch_status,
            counts,
        }))
    }
}
