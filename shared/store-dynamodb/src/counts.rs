//! Live per-status counts of a batch's items and the batch's lifecycle
//! (`docs/design.md#batch-counts-and-lifecycle`).
//!
//! Upstream writes the items and no counter. The batch's first run counts the item records once
//! by status (`itemTotal` and `baseCounts` on the batch record, from a paginated Query projecting
//! `status`, written with `if_not_exists`: racing first runs count the same records), so a batch
//! whose items already moved (one in flight when counting was deployed) starts from what its
//! items say. From then on, every write that changes an item's status is one TransactWriteItems
//! of the item's conditional update and an `ADD` on one of the batch's [`COUNTER_SHARDS`]
//! counter records (`COUNTS#nn`, chosen by a stable hash of the item id): `-1` on the status
//! left, `+1` on the status entered. A status's count is its base count plus the sum of its
//! attribute over the shards. The counts can never drift from the items: both change in the
//! same transaction or neither does.

use crate::DynamoDbRepository;
use crate::codec::{Record, get_s, n, s, status_of, unavailable, unbuildable};
use crate::expression::Expression;
use crate::schema::{COUNTER_SHARDS, OPEN_BATCHES_INDEX, attr, keys};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, CancellationReason, Put, TransactWriteItem, Update};
use payouts_core::clock::rfc3339_from_ms;
use payouts_core::domain::{BatchStatus, ItemStatus};
use payouts_core::ports::repository::{BatchCompletion, BatchCounts, StoreError};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Attempts of a transaction that DynamoDB cancels for a conflict with another transaction on
/// the same counter shard (TransactionConflict), with a short jittered pause between them.
pub(crate) const CONFLICT_ATTEMPTS: u32 = 8;

/// The batch record and its counter shards as read in one Query.
pub(crate) struct CountsRead {
    pub counts: BatchCounts,
    /// The `itemCounts` last written on the batch record.
    pub recorded: Option<BTreeMap<ItemStatus, u64>>,
}

/// How a cancelled transaction reads: which of its parts failed its condition, or whether
/// another transaction conflicted.
pub(crate) fn conflicted(reasons: &[CancellationReason]) -> bool {
    reasons
        .iter()
        .any(|r| r.code() == Some("TransactionConflict"))
}

/// Transactions retried after a TransactionConflict since the process started (for the
/// benchmark and for logs).
static CONFLICT_RETRIES: AtomicU64 = AtomicU64::new(0);

/// How many transactions this process retried after a TransactionConflict.
pub fn conflict_retries() -> u64 {
    CONFLICT_RETRIES.load(Ordering::Relaxed)
}

/// A short pause before retrying a transaction that conflicted, growing with `round`.
pub(crate) async fn conflict_pause(round: u32) {
    CONFLICT_RETRIES.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let base = 5u64 << round.min(5);
    tokio::time::sleep(Duration::from_millis(base + u64::from(nanos) % base)).await;
}

/// Whether the transaction was cancelled because the batch is not counted yet: the count move
/// at `counter` found no counter shard (see [`DynamoDbRepository::count_batch`]).
pub(crate) fn uncounted(reasons: &[CancellationReason], counter: usize) -> bool {
    reasons.get(counter).and_then(|r| r.code()) == Some("ConditionalCheckFailed")
}

/// The cancellation reasons of a TransactWriteItems, or the error as `StoreError`.
pub(crate) fn cancellation<R: std::fmt::Debug>(
    err: aws_sdk_dynamodb::error::SdkError<TransactWriteItemsError, R>,
) -> Result<Vec<CancellationReason>, StoreError> {
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
            Ok(cancelled.cancellation_reasons().to_vec())
        }
        _ => Err(unavailable("TransactWriteItems", err)),
    }
}

impl DynamoDbRepository {
    /// The counter side of an item's move from `from` to `to`: `ADD from -1, to +1` on the
    /// item's shard (created by the first move counted in it).
    pub(crate) fn counter_update(
        &self,
        batch_id: &str,
        item_id: &str,
        from: ItemStatus,
        to: ItemStatus,
    ) -> Result<Update, StoreError> {
        let parts = Expression::new()
            .add(from.as_str(), n(-1))
            .add(to.as_str(), n(1))
            // No move is counted before the batch's base: the shard exists only once it does.
            .require_present(attr::COUNTED)
            .build();
        Update::builder()
            .table_name(self.payouts_table())
            .key(attr::PK, s(keys::batch_pk(batch_id)))
            .key(attr::SK, s(keys::counts_sk(keys::counts_shard(item_id))))
            .set_update_expression(parts.update)
            .set_condition_expression(parts.condition)
            .set_expression_attribute_names(parts.names)
            .set_expression_attribute_values(parts.values)
            .build()
            .map_err(|e| unbuildable("TransactWriteItems", e))
    }

    /// The batch record and its counter shards: one strongly consistent Query of the sort keys
    /// below `ITEM#` (the batch record and at most [`COUNTER_SHARDS`] small records).
    pub(crate) async fn read_counts(
        &self,
        batch_id: &str,
    ) -> Result<Option<CountsRead>, StoreError> {
        let key = Expression::new()
            .require_equal(attr::PK, s(keys::batch_pk(batch_id)))
            .require_below(attr::SK, s(keys::ITEMS_START))
            .build();
        let out = self
            .client()
            .query()
            .table_name(self.payouts_table())
            .set_key_condition_expression(key.condition)
            .set_expression_attribute_names(key.names)
            .set_expression_attribute_values(key.values)
            .consistent_read(true)
            .limit(COUNTER_SHARDS as i32 + 1)
            .send()
            .await
            .map_err(|e| unavailable("Query", e))?;
        let records = out.items.unwrap_or_default();
        let Some(batch) = records
            .iter()
            .find(|r| get_s(r, attr::SK) == Some(keys::BATCH_SK))
        else {
            return Ok(None);
        };
        let total = number(batch.get(attr::ITEM_TOTAL)).and_then(|t| u64::try_from(t).ok());
        let base = status_map(batch.get(attr::BASE_COUNTS)).unwrap_or_default();
        let mut net: BTreeMap<ItemStatus, i64> = BTreeMap::new();
        for shard in records
            .iter()
            .filter(|r| get_s(r, attr::SK).is_some_and(|sk| sk.starts_with(keys::COUNTS_SK_PREFIX)))
        {
            for status in ItemStatus::ALL {
                *net.entry(status).or_default() += number(shard.get(status.as_str())).unwrap_or(0);
            }
        }
        let mut counts = BTreeMap::new();
        if total.is_some() {
            for status in ItemStatus::ALL {
                let mut count = net.get(&status).copied().unwrap_or(0);
                count += base.get(&status).copied().unwrap_or(0) as i64;
                if count < 0 {
                    return Err(StoreError::Malformed {
                        key: keys::batch_pk(batch_id),
                        problem: format!("counter shards add up to {count} {status} items"),
                        in_flight: false,
                    });
                }
                if count > 0 {
                    counts.insert(status, count as u64);
                }
            }
        }
        let recorded = status_map(batch.get(attr::ITEM_COUNTS));
        Ok(Some(CountsRead {
            counts: BatchCounts {
                status: get_s(batch, attr::STATUS).unwrap_or_default().to_owned(),
                total,
                counts,
            },
            recorded,
        }))
    }

    /// The batch's item records per status: a paginated Query projecting `status` (DynamoDB
    /// reads the items in full, once per batch). A record with an unknown status is counted as
    /// `pending`, as the executor reads it.
    async fn count_items(&self, batch_id: &str) -> Result<BTreeMap<ItemStatus, u64>, StoreError> {
        let mut counts = BTreeMap::new();
        let mut start: Option<Record> = None;
        loop {
            let key = Expression::new()
                .require_equal(attr::PK, s(keys::batch_pk(batch_id)))
                .require_prefix(attr::SK, keys::ITEM_SK_PREFIX)
                .project(attr::STATUS)
                .build();
            let out = self
                .client()
                .query()
                .table_name(self.payouts_table())
                .set_key_condition_expression(key.condition)
                .set_projection_expression(key.projection)
                .set_expression_attribute_names(key.names)
                .set_expression_attribute_values(key.values)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| unavailable("Query", e))?;
            for record in out.items.unwrap_or_default() {
                *counts
                    .entry(status_of(&record).unwrap_or(ItemStatus::Pending))
                    .or_default() += 1;
            }
            match out.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(next) => start = Some(next),
                None => return Ok(counts),
            }
        }
    }

    /// Counts the batch once: its items by status, then one TransactWriteItems that records
    /// `itemTotal` and `baseCounts` on the batch record (only if no other writer counted it
    /// first) and creates its [`COUNTER_SHARDS`] counter shards (`counted`, no moves yet). Until
    /// the shards exist every count move is refused (its condition needs `counted`), so no move
    /// happens between the count and the base: whoever moves an item of an uncounted batch (a
    /// run, or a webhook for a batch already in flight when counting was deployed) counts it
    /// first. Returns the base written, or `None` when another writer counted the batch first.
    pub(crate) async fn count_batch(
        &self,
        batch_id: &str,
    ) -> Result<Option<BTreeMap<ItemStatus, u64>>, StoreError> {
        let base = self.count_items(batch_id).await?;
        let parts = Expression::new()
            .require_present(attr::PK)
            .require_absent(attr::ITEM_TOTAL)
            .set(attr::ITEM_TOTAL, n(base.values().sum::<u64>()))
            .set(attr::BASE_COUNTS, status_map_value(&base))
            .set(attr::OPEN_BATCH, s(batch_id))
            .build();
        let batch = Update::builder()
            .table_name(self.payouts_table())
            .key(attr::PK, s(keys::batch_pk(batch_id)))
            .key(attr::SK, s(keys::BATCH_SK))
            .set_update_expression(parts.update)
            .set_condition_expression(parts.condition)
            .set_expression_attribute_names(parts.names)
            .set_expression_attribute_values(parts.values)
            .build()
            .map_err(|e| unbuildable("TransactWriteItems", e))?;
        let mut request = self
            .client()
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(batch).build());
        for shard in 0..COUNTER_SHARDS {
            let absent = Expression::new().require_absent(attr::PK).build();
            let put = Put::builder()
                .table_name(self.payouts_table())
                .item(attr::PK, s(keys::batch_pk(batch_id)))
                .item(attr::SK, s(keys::counts_sk(shard)))
                .item(attr::COUNTED, AttributeValue::Bool(true))
                .set_condition_expression(absent.condition)
                .set_expression_attribute_names(absent.names)
                .build()
                .map_err(|e| unbuildable("TransactWriteItems", e))?;
            request = request.transact_items(TransactWriteItem::builder().put(put).build());
        }
        match request.send().await {
            Ok(_) => Ok(Some(base)),
            Err(err) => {
                let reasons = cancellation(err)?;
                if conflicted(&reasons)
                    || reasons
                        .iter()
                        .any(|r| r.code() == Some("ConditionalCheckFailed"))
                {
                    // Another writer counted the batch at the same time (or it is gone).
                    Ok(None)
                } else {
                    let codes: Vec<_> = reasons.iter().map(|r| r.code().unwrap_or("?")).collect();
                    Err(StoreError::Unavailable {
                        operation: "TransactWriteItems",
                        message: format!(
                            "counting the batch was cancelled ({}); retry",
                            codes.join(", ")
                        ),
                    })
                }
            }
        }
    }

    pub(crate) async fn write_batch_start(
        &self,
        batch_id: &str,
        retry_settled: bool,
        now_ms: u64,
    ) -> Result<BatchCounts, StoreError> {
        let Some(read) = self.read_counts(batch_id).await? else {
            return Err(StoreError::Malformed {
                key: keys::batch_pk(batch_id),
                problem: "no batch record".into(),
                in_flight: false,
            });
        };
        let mut counts = read.counts;
        if counts.total.is_none() {
            counts = match self.count_batch(batch_id).await? {
                Some(base) => BatchCounts {
                    total: Some(base.values().sum()),
                    counts: base.into_iter().filter(|(_, c)| *c > 0).collect(),
                    ..counts
                },
                None => self.counts_now(batch_id).await?,
            };
        }
        let stored = BatchStatus::parse(&counts.status);
        let reopen = match stored {
            Some(BatchStatus::Executing) => false,
            Some(status) if status.is_completed() => {
                retry_settled
                    && counts.count(ItemStatus::Failed) + counts.count(ItemStatus::PendingKyc) > 0
            }
            // `pending` as upstream wrote it (or any other value upstream may write).
            _ => true,
        };
        if !reopen {
            return Ok(counts);
        }
        let parts = Expression::new()
            .require_present(attr::PK)
            .require_equal(attr::STATUS, s(&counts.status))
            .set(attr::STATUS, s(BatchStatus::Executing.as_str()))
            .set_if_absent(attr::STARTED_AT, s(rfc3339_from_ms(now_ms)))
            .set(attr::OPEN_BATCH, s(batch_id))
            .build();
        if self.update_batch_record(batch_id, parts).await? {
            counts.status = BatchStatus::Executing.as_str().to_owned();
            Ok(counts)
        } else {
            // Another run moved the batch first.
            self.counts_now(batch_id).await
        }
    }

    /// One page of the open batches' ids (a Scan of the sparse `openBatches` index: its cost is
    /// the open batches, whatever the table holds), and where the next page starts.
    pub(crate) async fn scan_open_batches(
        &self,
        start: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), StoreError> {
        let start_key = start.map(|batch_id| {
            HashMap::from([
                (attr::PK.to_owned(), s(keys::batch_pk(&batch_id))),
                (attr::SK.to_owned(), s(keys::BATCH_SK)),
                (attr::OPEN_BATCH.to_owned(), s(&batch_id)),
            ])
        });
        let out = self
            .client()
            .scan()
            .table_name(self.payouts_table())
            .index_name(OPEN_BATCHES_INDEX)
            .set_exclusive_start_key(start_key)
            .send()
            .await
            .map_err(|e| unavailable("Scan", e))?;
        let ids = out
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|r| get_s(r, attr::OPEN_BATCH).map(str::to_owned))
            .collect();
        let next = out
            .last_evaluated_key
            .filter(|k| !k.is_empty())
            .and_then(|k| get_s(&k, attr::OPEN_BATCH).map(str::to_owned));
        Ok((ids, next))
    }

    /// The batch's counts read again (after another writer moved it).
    async fn counts_now(&self, batch_id: &str) -> Result<BatchCounts, StoreError> {
        self.read_counts(batch_id)
            .await?
            .map(|read| read.counts)
            .ok_or_else(|| StoreError::Malformed {
                key: keys::batch_pk(batch_id),
                problem: "no batch record".into(),
                in_flight: false,
            })
    }

    pub(crate) async fn write_batch_completion(
        &self,
        batch_id: &str,
        now_ms: u64,
    ) -> Result<Option<BatchCompletion>, StoreError> {
        let Some(read) = self.read_counts(batch_id).await? else {
            return Ok(None);
        };
        let counts = read.counts;
        if counts.total.is_none() {
            // No run has started: nothing is counted yet.
            return Ok(None);
        }
        let stored = BatchStatus::parse(&counts.status);
        let mut expression = Expression::new().require_equal(attr::STATUS, s(&counts.status));
        let completion = if counts.in_flight() > 0 {
            if !stored.is_some_and(BatchStatus::is_completed) {
                return Ok(None);
            }
            // Completed, yet items are in flight again (a run retried some): re-open.
            expression = expression
                .set(attr::STATUS, s(BatchStatus::Executing.as_str()))
                .set(attr::OPEN_BATCH, s(batch_id));
            None
        } else {
            let status = BatchStatus::settled(counts.counts.keys().all(|s| *s == ItemStatus::Paid));
            let completion = BatchCompletion {
                status,
                counts: counts.counts.clone(),
            };
            if stored == Some(status) && read.recorded.as_ref() == Some(&counts.counts) {
                return Ok(Some(completion));
            }
            let counts_value = status_map_value(&counts.counts);
            expression = expression
                .set(attr::STATUS, s(status.as_str()))
                .set(attr::ITEM_COUNTS, counts_value)
                .set(attr::COMPLETED_AT, s(rfc3339_from_ms(now_ms)));
            // A batch with recipients still to verify stays open: the reconciler resumes it
            // once they are verified.
            expression = if counts.count(ItemStatus::PendingKyc) > 0 {
                expression.set(attr::OPEN_BATCH, s(batch_id))
            } else {
                expression.remove(attr::OPEN_BATCH)
            };
            Some(completion)
        };
        // A failed guard: another writer moved the batch since it was read; its write stands.
        if self
            .update_batch_record(batch_id, expression.build())
            .await?
        {
            Ok(completion)
        } else {
            Ok(None)
        }
    }

    /// A conditional UpdateItem of the batch record: `false` when its guard failed.
    async fn update_batch_record(
        &self,
        batch_id: &str,
        parts: crate::expression::ExpressionParts,
    ) -> Result<bool, StoreError> {
        let result = self
            .client()
            .update_item()
            .table_name(self.payouts_table())
            .key(attr::PK, s(keys::batch_pk(batch_id)))
            .key(attr::SK, s(keys::BATCH_SK))
            .set_update_expression(parts.update)
            .set_condition_expression(parts.condition)
            .set_expression_attribute_names(parts.names)
            .set_expression_attribute_values(parts.values)
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
            Err(err) => Err(unavailable("UpdateItem", err)),
        }
    }
}

/// A stored map of status → count (`itemCounts`, `baseCounts`).
fn status_map(value: Option<&AttributeValue>) -> Option<BTreeMap<ItemStatus, u64>> {
    let Some(AttributeValue::M(map)) = value else {
        return None;
    };
    Some(
        map.iter()
            .filter_map(|(k, v)| {
                Some((
                    k.parse().ok()?,
                    number(Some(v)).and_then(|c| u64::try_from(c).ok())?,
                ))
            })
            .collect(),
    )
}

fn status_map_value(counts: &BTreeMap<ItemStatus, u64>) -> AttributeValue {
    AttributeValue::M(
        counts
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), n(v)))
            .collect(),
    )
}

fn number(value: Option<&AttributeValue>) -> Option<i64> {
    match value {
        Some(AttributeValue::N(raw)) => raw.parse().ok(),
        _ => None,
    }
}
