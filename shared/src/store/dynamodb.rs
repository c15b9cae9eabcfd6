//! The DynamoDB store: the key format of DESIGN.md, decoding of records, paginated reads, bulk
//! settings reads, and one conditional write per item transition.

use super::{StoreError, ms_from_rfc3339, rfc3339_from_ms};
use crate::domain::{AttemptState, ItemStatus, PayoutBatch, PayoutItem, PayoutMethod};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, ReturnValuesOnConditionCheckFailure,
};
use std::collections::HashMap;
use std::time::Duration;

/// A DynamoDB record as the SDK returns it.
pub type Record = HashMap<String, AttributeValue>;

/// Attribute names of the payouts and user-settings tables, in one place.
pub mod attr {
    pub const PK: &str = "pk";
    pub const SK: &str = "sk";
    pub const BATCH_ID: &str = "batchId";
    pub const PROVIDER: &str = "provider";
    pub const CURRENCY: &str = "currency";
    pub const STATUS: &str = "status";
    pub const ITEM_ID: &str = "itemId";
    pub const USER_ID: &str = "userId";
    pub const NET_AMOUNT: &str = "netAmount";
    pub const FAILURE_REASON: &str = "failureReason";
    pub const PROVIDER_PAYOUT_ID: &str = "providerPayoutId";
    pub const PAYOUT_METHOD: &str = "payoutMethod";
    pub const PROVIDER_ACCOUNT_ID: &str = "providerAccountId";
    pub const IS_VERIFIED: &str = "isVerified";
    pub const METHOD_TYPE: &str = "type";
    /// Added by the executor: the fencing token of the current attempt.
    pub const ATTEMPT: &str = "attempt";
    /// Added by the executor: epoch milliseconds at which the current claim expires.
    pub const LEASE_UNTIL: &str = "leaseUntil";
    /// Added by the executor: generation of the PSP idempotency key.
    pub const KEY_GENERATION: &str = "keyGeneration";
    /// Added by the executor: RFC 3339 time of the last transition.
    pub const UPDATED_AT: &str = "updatedAt";
    /// Added by the executor: epoch milliseconds at which the current key generation was first
    /// sent to the PSP (written by the claim that first uses it, and by a generation move).
    pub const KEY_FIRST_USED_AT: &str = "keyFirstUsedAt";
    /// Added by the executor: epoch milliseconds at which the PSP stored an unknown outcome
    /// under the current key; present until reconciliation resolves it.
    pub const RECONCILE_SINCE: &str = "reconcileSince";
}

/// The key format of DESIGN.md: one place builds every key.
pub mod keys {
    pub const BATCH_SK: &str = "BATCH";
    pub const ITEM_SK_PREFIX: &str = "ITEM#";

    pub fn batch_pk(batch_id: &str) -> String {
        format!("BATCH#{batch_id}")
    }

    pub fn item_sk(item_id: &str) -> String {
        format!("{ITEM_SK_PREFIX}{item_id}")
    }
}

/// BatchGetItem takes at most this many keys per request.
const BATCH_GET_LIMIT: usize = 100;
/// Rounds of UnprocessedKeys retries before giving up on a BatchGetItem.
const BATCH_GET_ROUNDS: u32 = 8;

/// An attempt's hold on an item: what every later write of that attempt is fenced by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub batch_id: String,
    pub item_id: String,
    pub attempt: u64,
    pub key_generation: u32,
    pub lease_until_ms: u64,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionOutcome {
    Applied,
    /// The guard failed: the item is no longer where this writer expected (a newer attempt or
    /// a webhook moved it). Nothing was written.
    Superseded {
        current: Option<ItemStatus>,
    },
}

/// One page of a batch's items, in sort-key order.
pub struct ItemPage {
    /// Each record decoded, or why it could not be.
    pub items: Vec<Result<PayoutItem, StoreError>>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Record>,
}

/// The payouts and user-settings tables. Cheap to clone; build it once per process.
#[derive(Clone, Debug)]
pub struct PayoutStore {
    client: Client,
    payouts_table: String,
    settings_table: String,
}

impl PayoutStore {
    pub fn new(
        client: Client,
        payouts_table: impl Into<String>,
        settings_table: impl Into<String>,
    ) -> Self {
        PayoutStore {
            client,
            payouts_table: payouts_table.into(),
            settings_table: settings_table.into(),
        }
    }

    /// The SDK client, for callers that need table-level calls (setup, tests).
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn payouts_table(&self) -> &str {
        &self.payouts_table
    }

    pub fn settings_table(&self) -> &str {
        &self.settings_table
    }

    /// The batch record, read strongly consistently; `None` when there is no such batch.
    pub async fn get_batch(&self, batch_id: &str) -> Result<Option<PayoutBatch>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.payouts_table)
            .key(attr::PK, s(keys::batch_pk(batch_id)))
            .key(attr::SK, s(keys::BATCH_SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::dynamo("GetItem", e))?;
        out.item
            .map(|record| decode_batch(batch_id, &record))
            .transpose()
    }

    /// One page of the batch's items (strongly consistent), starting at `start`.
    /// `limit` caps the page size; `None` lets DynamoDB fill 1 MB pages.
    pub async fn query_items_page(
        &self,
        batch_id: &str,
        start: Option<Record>,
        limit: Option<i32>,
    ) -> Result<ItemPage, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.payouts_table)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :item)")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#sk", attr::SK)
            .expression_attribute_values(":pk", s(keys::batch_pk(batch_id)))
            .expression_attribute_values(":item", s(keys::ITEM_SK_PREFIX))
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .set_limit(limit)
            .send()
            .await
            .map_err(|e| StoreError::dynamo("Query", e))?;
        let items = out
            .items
            .unwrap_or_default()
            .iter()
            .map(|record| decode_item(batch_id, record))
            .collect();
        Ok(ItemPage {
            items,
            next: out.last_evaluated_key.filter(|k| !k.is_empty()),
        })
    }

    /// The payout methods of `user_ids` in bulk (BatchGetItem, strongly consistent). Users with
    /// no settings record, or no `payoutMethod`, are absent from the map.
    pub async fn get_payout_methods(
        &self,
        user_ids: &[String],
    ) -> Result<HashMap<String, PayoutMethod>, StoreError> {
        let mut methods = HashMap::with_capacity(user_ids.len());
        for chunk in user_ids.chunks(BATCH_GET_LIMIT) {
            let keys = chunk
                .iter()
                .map(|id| HashMap::from([(attr::USER_ID.to_owned(), s(id))]))
                .collect::<Vec<_>>();
            let mut request = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .projection_expression("#u, #m")
                    .expression_attribute_names("#u", attr::USER_ID)
                    .expression_attribute_names("#m", attr::PAYOUT_METHOD)
                    .build()
                    .map_err(|e| StoreError::Dynamo {
                        operation: "BatchGetItem",
                        message: e.to_string(),
                    })?,
            );
            let mut round = 0;
            while let Some(keys_and_attributes) = request.take() {
                if round > 0 {
                    // Unprocessed keys mean throttling: back off before asking again.
                    tokio::time::sleep(Duration::from_millis(25 << round.min(6))).await;
                }
                round += 1;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.settings_table, keys_and_attributes)
                    .send()
                    .await
                    .map_err(|e| StoreError::dynamo("BatchGetItem", e))?;
                for record in out
                    .responses
                    .unwrap_or_default()
                    .remove(&self.settings_table)
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
                    .and_then(|mut unprocessed| unprocessed.remove(&self.settings_table))
                    .filter(|k| !k.keys().is_empty());
                if request.is_some() && round >= BATCH_GET_ROUNDS {
                    return Err(StoreError::Dynamo {
                        operation: "BatchGetItem",
                        message: format!("keys still unprocessed after {round} rounds (throttled)"),
                    });
                }
            }
        }
        Ok(methods)
    }

    /// `pending`/`pending_kyc`/`failed` → `pending_kyc` with `reason`.
    pub async fn mark_pending_kyc(
        &self,
        item: &PayoutItem,
        reason: &str,
        now_ms: u64,
    ) -> Result<TransitionOutcome, StoreError> {
        let request = self
            .update_item(&item.batch_id, &item.item_id)
            .update_expression("SET #status = :kyc, #reason = :reason, #updated = :now")
            .condition_expression("#status IN (:pending, :kyc, :failed)")
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_names("#reason", attr::FAILURE_REASON)
            .expression_attribute_names("#updated", attr::UPDATED_AT)
            .expression_attribute_values(":kyc", status(ItemStatus::PendingKyc))
            .expression_attribute_values(":pending", status(ItemStatus::Pending))
            .expression_attribute_values(":failed", status(ItemStatus::Failed))
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":now", s(rfc3339_from_ms(now_ms)));
        conditional(request.send().await)
    }

    /// Takes `item` for a new attempt, as it was read: a compare-and-swap on status and attempt
    /// (and, for an item left `submitting`, an expired lease). A `failed` item moves to the next
    /// key generation, since the PSP stored its rejection under the old key, unless its outcome
    /// awaits reconciliation (`reconcileSince`): then the lookup decides. The claim that first
    /// uses a key generation records when (`keyFirstUsedAt`).
    pub async fn claim(
        &self,
        item: &PayoutItem,
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
        };
        let mut condition = String::from("#status = :seen_status AND ");
        condition.push_str(if seen.attempt == 0 {
            "(attribute_not_exists(#attempt) OR #attempt = :seen_attempt)"
        } else {
            "#attempt = :seen_attempt"
        });
        if item.status == ItemStatus::Submitting {
            condition.push_str(" AND (attribute_not_exists(#lease) OR #lease < :now_ms)");
        }
        let mut update = String::from(
            "SET #status = :submitting, #attempt = :attempt, #lease = :lease, #gen = :gen, #updated = :now",
        );
        if next_generation {
            condition.push_str(" AND attribute_not_exists(#rsince)");
            update.push_str(", #kfu = :now_ms");
        } else if item.status != ItemStatus::Submitting {
            // A `submitting` item's key was used by an earlier attempt: its first use stays.
            update.push_str(", #kfu = if_not_exists(#kfu, :now_ms)");
        }
        update.push_str(" REMOVE #reason");
        let result = self
            .update_item(&item.batch_id, &item.item_id)
            .update_expression(update)
            .condition_expression(condition)
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_names("#attempt", attr::ATTEMPT)
            .expression_attribute_names("#lease", attr::LEASE_UNTIL)
            .expression_attribute_names("#gen", attr::KEY_GENERATION)
            .expression_attribute_names("#updated", attr::UPDATED_AT)
            .expression_attribute_names("#reason", attr::FAILURE_REASON)
            .expression_attribute_values(":seen_status", status(item.status))
            .expression_attribute_values(":seen_attempt", n(seen.attempt))
            .expression_attribute_values(":submitting", status(ItemStatus::Submitting))
            .expression_attribute_values(":attempt", n(claim.attempt))
            .expression_attribute_values(":lease", n(claim.lease_until_ms))
            .expression_attribute_values(":gen", n(claim.key_generation))
            .expression_attribute_values(":now", s(rfc3339_from_ms(now_ms)))
            // Used by the lease condition (`submitting`) or by `keyFirstUsedAt` (otherwise).
            .expression_attribute_values(":now_ms", n(now_ms));
        let result = if item.status != ItemStatus::Submitting {
            result.expression_attribute_names("#kfu", attr::KEY_FIRST_USED_AT)
        } else {
            result
        };
        let result = if next_generation {
            result.expression_attribute_names("#rsince", attr::RECONCILE_SINCE)
        } else {
            result
        };
        Ok(match conditional(result.send().await)? {
            TransitionOutcome::Applied => ClaimOutcome::Claimed(claim),
            TransitionOutcome::Superseded { current } => ClaimOutcome::Lost { current },
        })
    }

    /// `submitting` → `processing` with the PSP's id, if the claim is still the item's.
    pub async fn record_accepted(
        &self,
        claim: &Claim,
        provider_payout_id: &str,
        now_ms: u64,
    ) -> Result<TransitionOutcome, StoreError> {
        let request = self
            .fenced_update(claim, now_ms)
            .update_expression(
                "SET #status = :to, #ppid = :ppid, #updated = :now REMOVE #lease, #reason, #rsince",
            )
            .expression_attribute_names("#ppid", attr::PROVIDER_PAYOUT_ID)
            .expression_attribute_names("#reason", attr::FAILURE_REASON)
            .expression_attribute_names("#rsince", attr::RECONCILE_SINCE)
            .expression_attribute_values(":to", status(ItemStatus::Processing))
            .expression_attribute_values(":ppid", s(provider_payout_id));
        conditional(request.send().await)
    }

    /// `submitting` → `failed` with the PSP's reason, if the claim is still the item's. With
    /// `reconcile_first`, the item is marked for reconciliation (`reconcileSince`): the refusal
    /// left the key's earlier outcome unknown (an idempotency error), so the next attempt looks
    /// the transfer up instead of moving to a new key.
    pub async fn record_rejected(
        &self,
        claim: &Claim,
        reason: &str,
        reconcile_first: bool,
        now_ms: u64,
    ) -> Result<TransitionOutcome, StoreError> {
        let request = self
            .fenced_update(claim, now_ms)
            .expression_attribute_names("#reason", attr::FAILURE_REASON)
            .expression_attribute_names("#rsince", attr::RECONCILE_SINCE)
            .expression_attribute_values(":to", status(ItemStatus::Failed))
            .expression_attribute_values(":reason", s(reason));
        let request = if reconcile_first {
            request
                .update_expression(
                    "SET #status = :to, #reason = :reason, #updated = :now, #rsince = :now_ms REMOVE #lease",
                )
                .expression_attribute_values(":now_ms", n(now_ms))
        } else {
            request.update_expression(
                "SET #status = :to, #reason = :reason, #updated = :now REMOVE #lease, #rsince",
            )
        };
        conditional(request.send().await)
    }

    /// Moves a claimed item to the next key generation once reconciliation has shown the
    /// current key made no transfer: fenced on the claim (still `submitting` under this
    /// attempt) and on the generation it expects to leave, so two workers can never both move
    /// to a new key. Written before the new key is used; clears `reconcileSince` and starts the
    /// new key's `keyFirstUsedAt`. On `Applied`, `claim.key_generation` is the new generation.
    pub async fn advance_key_generation(
        &self,
        claim: &mut Claim,
        now_ms: u64,
    ) -> Result<TransitionOutcome, StoreError> {
        let next = claim.key_generation + 1;
        let request = self
            .update_item(&claim.batch_id, &claim.item_id)
            .condition_expression("#status = :submitting AND #attempt = :mine AND #gen = :expected")
            .update_expression("SET #gen = :next, #kfu = :now_ms, #updated = :now REMOVE #rsince")
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_names("#attempt", attr::ATTEMPT)
            .expression_attribute_names("#gen", attr::KEY_GENERATION)
            .expression_attribute_names("#kfu", attr::KEY_FIRST_USED_AT)
            .expression_attribute_names("#updated", attr::UPDATED_AT)
            .expression_attribute_names("#rsince", attr::RECONCILE_SINCE)
            .expression_attribute_values(":submitting", status(ItemStatus::Submitting))
            .expression_attribute_values(":mine", n(claim.attempt))
            .expression_attribute_values(":expected", n(claim.key_generation))
            .expression_attribute_values(":next", n(next))
            .expression_attribute_values(":now_ms", n(now_ms))
            .expression_attribute_values(":now", s(rfc3339_from_ms(now_ms)));
        let outcome = conditional(request.send().await)?;
        if outcome == TransitionOutcome::Applied {
            claim.key_generation = next;
        }
        Ok(outcome)
    }

    /// Ends the claim's lease early (retryable error, unknown outcome): the item stays
    /// `submitting` with its key, so the next run re-drives it without waiting for the lease.
    /// With `reconcile_first`, the item is marked for reconciliation (`reconcileSince`): the PSP
    /// stored an unknown outcome (a 5xx) under the current key, so the next attempt looks the
    /// transfer up instead of resending the key.
    pub async fn release(
        &self,
        claim: &Claim,
        reconcile_first: bool,
        now_ms: u64,
    ) -> Result<TransitionOutcome, StoreError> {
        let request = self.fenced_update(claim, now_ms);
        let request = if reconcile_first {
            request
                .update_expression("SET #updated = :now, #rsince = :now_ms REMOVE #lease")
                .expression_attribute_names("#rsince", attr::RECONCILE_SINCE)
                .expression_attribute_values(":now_ms", n(now_ms))
        } else {
            request.update_expression("SET #updated = :now REMOVE #lease")
        };
        conditional(request.send().await)
    }

    fn update_item(
        &self,
        batch_id: &str,
        item_id: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.payouts_table)
            .key(attr::PK, s(keys::batch_pk(batch_id)))
            .key(attr::SK, s(keys::item_sk(item_id)))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
    }

    /// An update guarded by "still `submitting` under this attempt".
    fn fenced_update(
        &self,
        claim: &Claim,
        now_ms: u64,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.update_item(&claim.batch_id, &claim.item_id)
            .condition_expression("#status = :submitting AND #attempt = :mine")
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_names("#attempt", attr::ATTEMPT)
            .expression_attribute_names("#lease", attr::LEASE_UNTIL)
            .expression_attribute_names("#updated", attr::UPDATED_AT)
            .expression_attribute_values(":submitting", status(ItemStatus::Submitting))
            .expression_attribute_values(":mine", n(claim.attempt))
            .expression_attribute_values(":now", s(rfc3339_from_ms(now_ms)))
    }
}

/// Turns an UpdateItem result into applied / superseded (with the status found), or an error.
fn conditional<O>(
    result: Result<
        O,
        aws_sdk_dynamodb::error::SdkError<
            aws_sdk_dynamodb::operation::update_item::UpdateItemError,
            aws_sdk_dynamodb::config::http::HttpResponse,
        >,
    >,
) -> Result<TransitionOutcome, StoreError> {
    match result {
        Ok(_) => Ok(TransitionOutcome::Applied),
        Err(err) => match err.as_service_error() {
            Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(failed)) => {
                let current = failed
                    .item()
                    .and_then(|old| get_s(old, attr::STATUS))
                    .and_then(|status| status.parse().ok());
                Ok(TransitionOutcome::Superseded { current })
            }
            _ => Err(StoreError::dynamo("UpdateItem", err)),
        },
    }
}

fn decode_batch(batch_id: &str, record: &Record) -> Result<PayoutBatch, StoreError> {
    let malformed = |problem: &str| StoreError::Malformed {
        key: keys::batch_pk(batch_id),
        problem: problem.to_owned(),
    };
    Ok(PayoutBatch {
        batch_id: batch_id.to_owned(),
        provider: get_s(record, attr::PROVIDER)
            .ok_or_else(|| malformed("missing string attribute `provider`"))?
            .to_owned(),
        currency: get_s(record, attr::CURRENCY)
            .ok_or_else(|| malformed("missing string attribute `currency`"))?
            .to_owned(),
        status: get_s(record, attr::STATUS).unwrap_or_default().to_owned(),
    })
}

/// Decodes an item record; reads items that carry only upstream's attributes.
pub fn decode_item(batch_id: &str, record: &Record) -> Result<PayoutItem, StoreError> {
    let sk = get_s(record, attr::SK).unwrap_or_default();
    let item_id = get_s(record, attr::ITEM_ID)
        .or_else(|| sk.strip_prefix(keys::ITEM_SK_PREFIX))
        .unwrap_or_default()
        .to_owned();
    let malformed = |problem: String| StoreError::Malformed {
        key: format!("{}/{sk}", keys::batch_pk(batch_id)),
        problem,
    };
    let user_id = get_s(record, attr::USER_ID)
        .ok_or_else(|| malformed("missing string attribute `userId`".into()))?
        .to_owned();
    let net_amount = match record.get(attr::NET_AMOUNT) {
        Some(AttributeValue::N(raw)) | Some(AttributeValue::S(raw)) => raw.clone(),
        _ => return Err(malformed("missing number attribute `netAmount`".into())),
    };
    let status = get_s(record, attr::STATUS)
        .unwrap_or(ItemStatus::Pending.as_str())
        .parse::<ItemStatus>()
        .map_err(|e| malformed(e.to_string()))?;
    Ok(PayoutItem {
        batch_id: batch_id.to_owned(),
        item_id,
        user_id,
        net_amount,
        status,
        failure_reason: get_s(record, attr::FAILURE_REASON).map(str::to_owned),
        provider_payout_id: get_s(record, attr::PROVIDER_PAYOUT_ID).map(str::to_owned),
        attempt: AttemptState {
            attempt: get_n(record, attr::ATTEMPT).unwrap_or(0),
            lease_until_ms: get_n(record, attr::LEASE_UNTIL),
            key_generation: get_n(record, attr::KEY_GENERATION).unwrap_or(0),
            key_first_used_ms: get_n(record, attr::KEY_FIRST_USED_AT),
            reconcile_since_ms: get_n(record, attr::RECONCILE_SINCE),
            updated_ms: get_s(record, attr::UPDATED_AT).and_then(ms_from_rfc3339),
        },
    })
}

fn decode_method(record: &Record) -> Option<PayoutMethod> {
    let AttributeValue::M(method) = record.get(attr::PAYOUT_METHOD)? else {
        return None;
    };
    Some(PayoutMethod {
        provider_account_id: get_s(method, attr::PROVIDER_ACCOUNT_ID).map(str::to_owned),
        is_verified: matches!(
            method.get(attr::IS_VERIFIED),
            Some(AttributeValue::Bool(true))
        ),
        provider: get_s(method, attr::PROVIDER).map(str::to_owned),
        method_type: get_s(method, attr::METHOD_TYPE).map(str::to_owned),
    })
}

pub(crate) fn get_s<'r>(record: &'r Record, name: &str) -> Option<&'r str> {
    match record.get(name) {
        Some(AttributeValue::S(value)) => Some(value),
        _ => None,
    }
}

fn get_n<T: std::str::FromStr>(record: &Record, name: &str) -> Option<T> {
    match record.get(name) {
        Some(AttributeValue::N(value)) => value.parse().ok(),
        _ => None,
    }
}

/// A string attribute value.
pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// A number attribute value.
pub fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn status(status: ItemStatus) -> AttributeValue {
    s(status.as_str())
}
