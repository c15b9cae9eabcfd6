//! The executor's reads and writes: the batch, pages of items, recipients' settings in bulk,
//! and one conditional write per item transition (`docs/design.md#the-item-protocol-claim-pay-record`).

use crate::DynamoDbRepository;
use crate::codec::{
    Record, decode_batch, decode_item, decode_method, get_s, n, s, status, status_of, unavailable,
    unbuildable,
};
use crate::counts::{CONFLICT_ATTEMPTS, cancellation, conflict_pause, conflicted, uncounted};
use crate::expression::Expression;
use crate::schema::{HistoryMove, history_entry};
use crate::schema::{attr, keys};
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{
    KeysAndAttributes, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use payouts_core::clock::rfc3339_from_ms;
use payouts_core::domain::{ItemStatus, PayoutBatch, PayoutItem, PayoutMethod};
use payouts_core::ports::repository::{
    Claim, ClaimOutcome, CurrentKey, ItemPage, PageCursor, StoreError, TransitionOutcome,
};
use std::collections::HashMap;
use std::time::Duration;

/// BatchGetItem takes at most this many keys per request.
const BATCH_GET_LIMIT: usize = 100;
/// Rounds of UnprocessedKeys retries before giving up on a BatchGetItem.
const BATCH_GET_ROUNDS: u32 = 8;

impl DynamoDbRepository {
    pub(crate) async fn read_batch(
        &self,
        batch_id: &str,
    ) -> Result<Option<PayoutBatch>, StoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(self.payouts_table())
            .key(attr::PK, s(keys::batch_pk(batch_id)))
            .key(attr::SK, s(keys::BATCH_SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", e))?;
        out.item
            .map(|record| decode_batch(batch_id, &record))
            .transpose()
    }

    pub(crate) async fn read_item(
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
            .map_err(|e| unavailable("GetItem", e))?;
        out.item
            .map(|record| decode_item(batch_id, &record))
            .transpose()
    }

    pub(crate) async fn read_items_page(
        &self,
        batch_id: &str,
        start: Option<PageCursor>,
        through: Option<&str>,
        limit: Option<i32>,
    ) -> Result<ItemPage, StoreError> {
        let key = Expression::new().require_equal(attr::PK, s(keys::batch_pk(batch_id)));
        let key = match through {
            // `ITEM#` sorts below every item's key, so the range holds items only.
            Some(last) => key.require_between(attr::SK, keys::ITEMS_START, &keys::item_sk(last)),
            None => key.require_prefix(attr::SK, keys::ITEM_SK_PREFIX),
        }
        .build();
        let start_key = start.map(|cursor| {
            HashMap::from([
                (attr::PK.to_owned(), s(keys::batch_pk(batch_id))),
                (attr::SK.to_owned(), s(keys::item_sk(&cursor.after_item_id))),
            ])
        });
        let out = self
            .client()
            .query()
            .table_name(self.payouts_table())
            .set_key_condition_expression(key.condition)
            .set_expression_attribute_names(key.names)
            .set_expression_attribute_values(key.values)
            .consistent_read(true)
            .set_exclusive_start_key(start_key)
            .set_limit(limit)
            .send()
            .await
            .map_err(|e| unavailable("Query", e))?;
        let items = out
            .items
            .unwrap_or_default()
            .iter()
            .map(|record| decode_item(batch_id, record))
            .collect();
        let next = out
            .last_evaluated_key
            .as_ref()
            .and_then(|last| get_s(last, attr::SK))
            .and_then(keys::item_id_of)
            .map(|item_id| PageCursor {
                after_item_id: item_id.to_owned(),
            });
        Ok(ItemPage { items, next })
    }

    /// Pages through the batch's item keys only (a projection: the pages cost the same reads
    /// but send back a fraction of the bytes) and keeps every `every`-th id.
    pub(crate) async fn read_item_id_sample(
        &self,
        batch_id: &str,
        every: u64,
    ) -> Result<Vec<String>, StoreError> {
        let every = every.max(1);
        let key = Expression::new()
            .require_equal(attr::PK, s(keys::batch_pk(batch_id)))
            .require_prefix(attr::SK, keys::ITEM_SK_PREFIX)
            .project(attr::SK)
            .build();
        let mut sample = Vec::new();
        let mut seen = 0_u64;
        let mut start_key = None;
        loop {
            let out = self
                .client()
                .query()
                .table_name(self.payouts_table())
                .set_key_condition_expression(key.condition.clone())
                .set_projection_expression(key.projection.clone())
                .set_expression_attribute_names(key.names.clone())
                .set_expression_attribute_values(key.values.clone())
                .consistent_read(true)
                .set_exclusive_start_key(start_key.take())
                .send()
                .await
                .map_err(|e| unavailable("Query", e))?;
            for record in out.items.unwrap_or_default() {
                seen += 1;
                if seen.is_multiple_of(every)
                    && let Some(item_id) = get_s(&record, attr::SK).and_then(keys::item_id_of)
                {
                    sample.push(item_id.to_owned());
                }
            }
            match out.last_evaluated_key {
                Some(last) => start_key = Some(last),
                None => return Ok(sample),
            }
        }
    }

    pub(crate) async fn read_payout_methods(
        &self,
        user_ids: &[String],
    ) -> Result<HashMap<String, PayoutMethod>, StoreError> {
        let mut methods = HashMap::with_capacity(user_ids.len());
        for chunk in user_ids.chunks(BATCH_GET_LIMIT) {
            self.read_methods_chunk(chunk, &mut methods).await?;
        }
        Ok(methods)
    }

    /// One BatchGetItem of up to 100 users, retrying unprocessed keys with backoff.
    async fn read_methods_chunk(
        &self,
        user_ids: &[String],
        methods: &mut HashMap<String, PayoutMethod>,
    ) -> Result<(), StoreError> {
        let table = self.settings_table();
        if table.is_empty() {
            return Err(StoreError::Unavailable {
                operation: "BatchGetItem",
                message: "this function has no user-settings table configured".into(),
            });
        }
        let projection = Expression::new()
            .project(attr::USER_ID)
            .project(attr::PAYOUT_METHOD)
            .build();
        let keys = user_ids
            .iter()
            .map(|id| HashMap::from([(attr::USER_ID.to_owned(), s(id))]))
            .collect::<Vec<_>>();
        let mut request = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .set_projection_expression(projection.projection)
                .set_expression_attribute_names(projection.names)
                .build()
                .map_err(|e| unbuildable("BatchGetItem", e))?,
        );
        let mut round = 0;
        while let Some(keys_and_attributes) = request.take() {
            if round > 0 {
                // Unprocessed keys mean throttling: back off before asking again.
                tokio::time::sleep(Duration::from_millis(25 << round.min(6))).await;
            }
            round += 1;
            let out = self
                .client()
                .batch_get_item()
                .request_items(table, keys_and_attributes)
                .send()
                .await
                .map_err(|e| unavailable("BatchGetItem", e))?;
            for record in out
                .responses
                .unwrap_or_default()
                .remove(table)
                .unwrap_or_default()
            {
                if let (Some(user_id), Some(method)) =
                    (get_s(&record, attr::USER_ID), decode_method(&record))
                {
                    methods.insert(user_id.to_owned(), method);
                }
            }
            request = out
                .unprocessed_keys
                .and_then(|mut unprocessed| unprocessed.remove(table))
                .filter(|k| !k.keys().is_empty());
            if request.is_some() && round >= BATCH_GET_ROUNDS {
                return Err(StoreError::Unavailable {
                    operation: "BatchGetItem",
                    message: format!("keys still unprocessed after {round} rounds (throttled)"),
                });
            }
        }
        Ok(())
    }

    pub(crate) async fn write_pending_kyc(
        &self,
        item: &PayoutItem,
        reason: &str,
        now_ms: u64,
    ) -> Result<TransitionOutcome, StoreError> {
        let seen = item.attempt;
        let mut expression = Expression::new()
            .set(attr::STATUS, status(ItemStatus::PendingKyc))
            .set(attr::FAILURE_REASON, s(reason))
            .set(attr::UPDATED_AT, s(rfc3339_from_ms(now_ms)));
        expression = if item.status == ItemStatus::Failed && seen.reconcile_since_ms.is_none() {
            // The PSP stored its rejection under the current key: the next attempt must not
            // replay it, so the item leaves `failed` on the next generation (written once:
            // fenced on the generation it leaves).
            retire_transfer(
                unchanged_since_read(expression, item),
                item.provider_payout_id.as_deref(),
            )
            .require_absent(attr::RECONCILE_SINCE)
            .set(attr::KEY_GENERATION, n(seen.key_generation + 1))
            .remove(attr::KEY_FIRST_USED_AT)
        } else {
            // The status as read (one of pending, pending_kyc, failed): the counts move from it.
            expression.require_equal(attr::STATUS, status(item.status))
        };
        self.transition(
            &item.batch_id,
            &item.item_id,
            expression,
            item.status,
            ItemStatus::PendingKyc,
            Note {
                at_ms: now_ms,
                attempt: seen.attempt,
                detail: reason,
            },
        )
        .await
    }

    pub(crate) async fn write_refused(
        &self,
        item: &PayoutItem,
        reason: &str,
        now_ms: u64,
    ) -> Result<TransitionOutcome, StoreError> {
        let expression = Expression::new()
            .require_in(
                attr::STATUS,
                vec![
                    status(ItemStatus::Pending),
                    status(ItemStatus::PendingKyc),
                    status(ItemStatus::Failed),
                ],
            )
            .set(attr::STATUS, status(ItemStatus::Failed))
            .set(attr::FAILURE_REASON, s(reason))
            .set(attr::UPDATED_AT, s(rfc3339_from_ms(now_ms)));
        let expression = unchanged_since_read(expression, item);
        self.transition(
            &item.batch_id,
            &item.item_id,
            expression,
            item.status,
            ItemStatus::Failed,
            Note {
                at_ms: now_ms,
                attempt: item.attempt.attempt,
                detail: reason,
            },
        )
        .await
    }

    pub(crate) async fn write_claim(
        &self,
        item: &PayoutItem,
        provider: &str,
        now_ms: u64,
        lease: Duration,
    ) -> Result<ClaimOutcome, StoreError> {
        let seen = item.attempt;
        let next_generation =
            item.status == ItemStatus::Failed && seen.reconcile_since_ms.is_none();
        let claim = Claim {
            batch_id: item.batch_id.clone(),
            item_id: item.item_id.clone(),
            attempt: seen.attempt + 1,
            key_generation: seen.key_generation + u32::from(next_generation),
            lease_until_ms: now_ms + lease.as_millis() as u64,
            seen_payout_id: item.provider_payout_id.clone(),
        };
        let mut expression = Expression::new().require_equal(attr::STATUS, status(item.status));
        expression = if seen.attempt == 0 {
            expression.require_absent_or_equal(attr::ATTEMPT, n(0))
        } else {
            expression.require_equal(attr::ATTEMPT, n(seen.attempt))
        };
        if item.status == ItemStatus::Submitting {
            expression = expression.require_absent_or_below(attr::LEASE_UNTIL, n(now_ms));
        }
        expression = expression
            .set(attr::STATUS, status(ItemStatus::Submitting))
            .set(attr::ATTEMPT, n(claim.attempt))
            .set(attr::LEASE_UNTIL, n(claim.lease_until_ms))
            .set(attr::KEY_GENERATION, n(claim.key_generation))
            .set(attr::UPDATED_AT, s(rfc3339_from_ms(now_ms)))
            .set(attr::ITEM_PROVIDER, s(provider))
            .remove(attr::FAILURE_REASON);
        if next_generation {
            expression = retire_transfer(expression, item.provider_payout_id.as_deref())
                .require_absent(attr::RECONCILE_SINCE)
                .set(attr::KEY_FIRST_USED_AT, n(now_ms));
        } else if item.status != ItemStatus::Submitting {
            // A `submitting` item's key was used by an earlier attempt: its first use stays.
            expression = expression.set_if_absent(attr::KEY_FIRST_USED_AT, n(now_ms));
        }
        let result = self
            .transition(
                &item.batch_id,
                &item.item_id,
                expression,
                item.status,
                ItemStatus::Submitting,
                Note {
                    at_ms: now_ms,
                    attempt: claim.attempt,
                    detail: &format!("claimed, key generation {}", claim.key_generation),
                },
            )
            .await;
        Ok(match result? {
            TransitionOutcome::Applied => ClaimOutcome::Claimed(claim),
            TransitionOutcome::Superseded { current, .. } => ClaimOutcome::Lost { current },
        })
    }

    pub(crate) async fn write_accepted(
        &self,
        claim: &Claim,
        provider_payout_id: &str,
        now_ms: u64,
    ) -> Result<TransitionOutcome, StoreError> {
        let expression = fenced(claim, now_ms)
            .set(attr::STATUS, status(ItemStatus::Processing))
            .set(attr::PROVIDER_PAYOUT_ID, s(provider_payout_id))
            .remove(attr::LEASE_UNTIL)
            .remove(attr::FAILURE_REASON)
            .remove(attr::RECONCILE_SINCE);
        self.transition(
            &claim.batch_id,
            &claim.item_id,
            expression,
            ItemStatus::Submitting,
            ItemStatus::Processing,
            Note {
                at_ms: now_ms,
                attempt: claim.attempt,
                detail: provider_payout_id,
            },
        )
        .await
    }

    pub(crate) async fn write_rejected(
        &self,
        claim: &Claim,
        reason: &str,
        key: CurrentKey,
        now_ms: u64,
    ) -> Result<TransitionOutcome, StoreError> {
        let expression = fenced(claim, now_ms)
            .set(attr::STATUS, status(ItemStatus::Failed))
            .set(attr::FAILURE_REASON, s(reason))
            .remove(attr::LEASE_UNTIL);
        let expression = mark_key(expression, key, now_ms);
        self.transition(
            &claim.batch_id,
            &claim.item_id,
            expression,
            ItemStatus::Submitting,
            ItemStatus::Failed,
            Note {
                at_ms: now_ms,
                attempt: claim.attempt,
                detail: reason,
            },
        )
        .await
    }

    pub(crate) async fn write_next_key_generation(
        &self,
        claim: &mut Claim,
        now_ms: u64,
    ) -> Result<TransitionOutcome, StoreError> {
        let next = claim.key_generation + 1;
        let expression = Expression::new()
            .require_equal(attr::STATUS, status(ItemStatus::Submitting))
            .require_equal(attr::ATTEMPT, n(claim.attempt))
            .require_equal(attr::KEY_GENERATION, n(claim.key_generation))
            .set(attr::KEY_GENERATION, n(next))
            .set(attr::KEY_FIRST_USED_AT, n(now_ms))
            .set(attr::UPDATED_AT, s(rfc3339_from_ms(now_ms)))
            .remove(attr::RECONCILE_SINCE);
        let expression = retire_transfer(expression, claim.seen_payout_id.as_deref());
        let outcome = conditional(
            self.update(&claim.batch_id, &claim.item_id, expression)
                .send()
                .await,
        )?;
        if outcome == TransitionOutcome::Applied {
            claim.key_generation = next;
            claim.seen_payout_id = None;
        }
        Ok(outcome)
    }

    pub(crate) async fn write_release(
        &self,
        claim: &Claim,
        key: CurrentKey,
        now_ms: u64,
    ) -> Result<TransitionOutcome, StoreError> {
        let expression = fenced(claim, now_ms).remove(attr::LEASE_UNTIL);
        let expression = match key {
            CurrentKey::Settled => expression,
            CurrentKey::NeedsLookup => expression.set(attr::RECONCILE_SINCE, n(now_ms)),
        };
        conditional(
            self.update(&claim.batch_id, &claim.item_id, expression)
                .send()
                .await,
        )
    }

    pub(crate) async fn write_duplicate_transfer(
        &self,
        claim: &Claim,
        provider_payout_id: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let expression = Expression::new()
            .require_present(attr::PK)
            .append_to_list(attr::DUPLICATE_PAYOUT_IDS, s(provider_payout_id))
            .set(attr::UPDATED_AT, s(rfc3339_from_ms(now_ms)));
        self.update(&claim.batch_id, &claim.item_id, expression)
            .send()
            .await
            .map_err(|e| unavailable("UpdateItem", e))?;
        Ok(())
    }

    /// One item transition from `from` to `to` under `expression`, with its timeline entry
    /// (`note`) in the same write: a plain conditional UpdateItem when the status stays,
    /// otherwise one TransactWriteItems of that update and the count move on the item's counter
    /// shard, so the counts never drift from the items.
    async fn transition(
        &self,
        batch_id: &str,
        item_id: &str,
        expression: Expression,
        from: ItemStatus,
        to: ItemStatus,
        note: Note<'_>,
    ) -> Result<TransitionOutcome, StoreError> {
        let expression = expression.append_to_list(
            attr::HISTORY,
            history_entry(
                note.at_ms,
                HistoryMove::Status { from, to },
                note.attempt,
                note.detail,
            ),
        );
        if from == to {
            return conditional(self.update(batch_id, item_id, expression).send().await);
        }
        let parts = expression.build();
        let update = Update::builder()
            .table_name(self.payouts_table())
            .key(attr::PK, s(keys::batch_pk(batch_id)))
            .key(attr::SK, s(keys::item_sk(item_id)))
            .set_update_expression(parts.update)
            .set_condition_expression(parts.condition)
            .set_expression_attribute_names(parts.names)
            .set_expression_attribute_values(parts.values)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| unbuildable("TransactWriteItems", e))?;
        let counter = self.counter_update(batch_id, item_id, from, to)?;
        let mut round = 0;
        loop {
            let result = self
                .client()
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().update(update.clone()).build())
                .transact_items(TransactWriteItem::builder().update(counter.clone()).build())
                .send()
                .await;
            let reasons = match result {
                Ok(_) => return Ok(TransitionOutcome::Applied),
                Err(err) => cancellation(err)?,
            };
            if reasons.first().and_then(|r| r.code()) == Some("ConditionalCheckFailed") {
                let old = reasons[0].item();
                return Ok(TransitionOutcome::Superseded {
                    current: old.and_then(|old: &Record| status_of(old)),
                    current_payout_id: old
                        .and_then(|old| get_s(old, attr::PROVIDER_PAYOUT_ID))
                        .map(str::to_owned),
                });
            }
            round += 1;
            if uncounted(&reasons, 1) && round < CONFLICT_ATTEMPTS {
                // A batch in flight from before it was counted: count it, then move.
                self.count_batch(batch_id).await?;
                continue;
            }
            if !conflicted(&reasons) || round >= CONFLICT_ATTEMPTS {
                let codes: Vec<_> = reasons.iter().map(|r| r.code().unwrap_or("?")).collect();
                return Err(StoreError::Unavailable {
                    operation: "TransactWriteItems",
                    message: format!("transaction cancelled ({}); retry", codes.join(", ")),
                });
            }
            conflict_pause(round).await;
        }
    }

    /// An UpdateItem of one item under `expression`, returning the old item on a failed check.
    fn update(
        &self,
        batch_id: &str,
        item_id: &str,
        expression: Expression,
    ) -> UpdateItemFluentBuilder {
        let parts = expression.build();
        self.client()
            .update_item()
            .table_name(self.payouts_table())
            .key(attr::PK, s(keys::batch_pk(batch_id)))
            .key(attr::SK, s(keys::item_sk(item_id)))
            .set_update_expression(parts.update)
            .set_condition_expression(parts.condition)
            .set_expression_attribute_names(parts.names)
            .set_expression_attribute_values(parts.values)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
    }
}

/// What a transition's timeline entry says besides the move: when, the attempt, and the
/// transfer id or reason.
struct Note<'a> {
    at_ms: u64,
    attempt: u64,
    detail: &'a str,
}

/// Guards `expression` on the item being as it was read: same status, attempt and key generation.
fn unchanged_since_read(expression: Expression, item: &PayoutItem) -> Expression {
    let seen = item.attempt;
    let expression = expression.require_equal(attr::STATUS, status(item.status));
    if seen.attempt == 0 && seen.key_generation == 0 {
        expression
            .require_absent_or_equal(attr::ATTEMPT, n(0))
            .require_absent_or_equal(attr::KEY_GENERATION, n(0))
    } else {
        expression
            .require_equal(attr::ATTEMPT, n(seen.attempt))
            .require_equal(attr::KEY_GENERATION, n(seen.key_generation))
    }
}

/// An update guarded by "still `submitting` under this attempt", stamped `updatedAt`.
fn fenced(claim: &Claim, now_ms: u64) -> Expression {
    Expression::new()
        .require_equal(attr::STATUS, status(ItemStatus::Submitting))
        .require_equal(attr::ATTEMPT, n(claim.attempt))
        .set(attr::UPDATED_AT, s(rfc3339_from_ms(now_ms)))
}

/// A new key generation leaves the recorded transfer behind: it moves to the item's history,
/// where no event can settle the item by it any more.
fn retire_transfer(expression: Expression, recorded: Option<&str>) -> Expression {
    match recorded {
        Some(transfer) => expression
            .append_to_list(attr::PREVIOUS_PAYOUT_IDS, s(transfer))
            .remove(attr::PROVIDER_PAYOUT_ID),
        None => expression,
    }
}

/// Records what the current key can still tell: a key needing a lookup is marked
/// `reconcileSince`; a settled one clears any earlier mark.
fn mark_key(expression: Expression, key: CurrentKey, now_ms: u64) -> Expression {
    match key {
        CurrentKey::Settled => expression.remove(attr::RECONCILE_SINCE),
        CurrentKey::NeedsLookup => expression.set(attr::RECONCILE_SINCE, n(now_ms)),
    }
}

/// Turns an UpdateItem result into applied / superseded (with the status found), or an error.
fn conditional<O, R: std::fmt::Debug>(
    result: Result<O, SdkError<UpdateItemError, R>>,
) -> Result<TransitionOutcome, StoreError> {
    match result {
        Ok(_) => Ok(TransitionOutcome::Applied),
        Err(err) => match err.as_service_error() {
            Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                let old = failed.item();
                Ok(TransitionOutcome::Superseded {
                    current: old.and_then(|old: &Record| status_of(old)),
                    current_payout_id: old
                        .and_then(|old| get_s(old, attr::PROVIDER_PAYOUT_ID))
                        .map(str::to_owned),
                })
            }
            _ => Err(unavailable("UpdateItem", err)),
        },
    }
}
