//! The schema of the payouts and user-settings tables (`docs/design.md#data-contracts`): every
//! attribute name, key format and index the store reads or writes, in one place.

/// Attribute names, as stored (camelCase, as upstream writes them).
pub mod attr {
    pub const PK: &str = "pk";
    pub const SK: &str = "sk";
    pub const BATCH_ID: &str = "batchId";
    pub const PROVIDER: &str = "provider";
    pub const CURRENCY: &str = "currency";
    pub const STATUS: &str = "status";
    pub const CREATED_AT: &str = "createdAt";
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
    /// Added by the executor and settlement: RFC 3339 time of the last transition.
    pub const UPDATED_AT: &str = "updatedAt";
    /// Added by the executor: epoch milliseconds at which the current key generation was first
    /// sent to the PSP (written by the claim that first uses it, and by a generation move).
    pub const KEY_FIRST_USED_AT: &str = "keyFirstUsedAt";
    /// Added by the executor: epoch milliseconds at which the PSP stored an unknown outcome
    /// under the current key; present until reconciliation resolves it.
    pub const RECONCILE_SINCE: &str = "reconcileSince";
    /// Added by settlement: RFC 3339 time the item was paid.
    pub const PAID_AT: &str = "paidAt";
    /// Added by settlement when a paid transfer is taken back.
    pub const REVERSED_AT: &str = "reversedAt";
    pub const REVERSAL_REASON: &str = "reversalReason";
    pub const REVERSAL_EVENT_ID: &str = "reversalEventId";
    /// Added by the executor: transfers the PSP made for the item after another transfer was
    /// already recorded on it (a double payment to investigate and recover).
    pub const DUPLICATE_PAYOUT_IDS: &str = "duplicatePayoutIds";
    /// The item's timeline: a list of maps appended by every status write, in the same request
    /// ([`super::history_entry`]).
    pub const HISTORY: &str = "history";
    /// Added by the executor: transfers of earlier key generations, which no event may settle
    /// the item by any more.
    pub const PREVIOUS_PAYOUT_IDS: &str = "previousPayoutIds";
    /// Added by settlement: the transfers (string set) that have events held until the item
    /// records them; whoever sees the item record one of them applies its held events, and the
    /// transfer leaves the set once they are applied.
    pub const HELD_TRANSFER_IDS: &str = "heldTransferIds";
    /// Added by the executor: the provider the item's transfers are made through; events from
    /// any other provider never settle it.
    pub const ITEM_PROVIDER: &str = "provider";
    /// Added to the batch when it completes: per-status counts and when.
    pub const ITEM_COUNTS: &str = "itemCounts";
    pub const COMPLETED_AT: &str = "completedAt";
    /// Added to the batch by its first run: how many item records it has, counted once (with
    /// `baseCounts`); present once the batch's counts are live.
    pub const ITEM_TOTAL: &str = "itemTotal";
    /// Added to the batch by its first run: its items per status when counted (status → N),
    /// the base the counter shards' moves add to.
    pub const BASE_COUNTS: &str = "baseCounts";
    /// On a counter shard: written with the batch's base counts. Every count move requires it,
    /// so no move is counted before the batch is.
    pub const COUNTED: &str = "counted";
    /// On a batch record while the batch has work the reconciler may have to resume: set (to
    /// the batch id) when it is counted or (re)starts executing, kept on completion while items
    /// are `pending_kyc`, removed otherwise. The key of the sparse `openBatches` index.
    pub const OPEN_BATCH: &str = "openBatch";
    /// On the reconciler's record: the epoch ms its orphan check has listed transfers up to.
    pub const ORPHANS_CHECKED_UNTIL: &str = "orphansCheckedUntil";
    /// Added to the batch by its first run: when it started executing.
    pub const STARTED_AT: &str = "startedAt";
    /// Webhook event records.
    pub const EVENT_ID: &str = "eventId";
    pub const EVENT_TYPE: &str = "eventType";
    pub const OUTCOME: &str = "outcome";
    pub const RECEIVED_AT: &str = "receivedAt";
    pub const TRANSFER_ID: &str = "transferId";
    /// Held events: what the event means (`paid`, `failed`, `reversed`) and its reason.
    pub const EVENT_KIND: &str = "eventKind";
    pub const EVENT_REASON: &str = "eventReason";
    /// Epoch seconds at which DynamoDB's TTL deletes the record.
    pub const EXPIRES_AT: &str = "expiresAt";
}

/// The key format: one place builds and parses every key.
pub mod keys {
    pub const BATCH_PK_PREFIX: &str = "BATCH#";
    pub const BATCH_SK: &str = "BATCH";
    pub const ITEM_SK_PREFIX: &str = "ITEM#";
    pub const EVENT_SK: &str = "EVENT";
    pub const COUNTS_SK_PREFIX: &str = "COUNTS#";
    /// Every sort key of a batch's partition that sorts below this is the batch record or one
    /// of its counter shards (`BATCH` < `COUNTS#…` < `ITEM#…`): one Query reads them all.
    pub const ITEMS_START: &str = "ITEM#";

    /// The sort key of counter shard `shard` of a batch.
    pub fn counts_sk(shard: u32) -> String {
        format!("{COUNTS_SK_PREFIX}{shard:02}")
    }

    /// The counter shard an item's status changes are counted in: a stable hash (FNV-1a) of
    /// the item id, modulo [`super::COUNTER_SHARDS`].
    pub fn counts_shard(item_id: &str) -> u32 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in item_id.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        (hash % u64::from(super::COUNTER_SHARDS)) as u32
    }

    /// The reconciler's own record: where its orphan check last listed the PSPs' transfers.
    pub const RECONCILER_PK: &str = "RECONCILER";
    pub const RECONCILER_SK: &str = "STATE";

    pub fn batch_pk(batch_id: &str) -> String {
        format!("{BATCH_PK_PREFIX}{batch_id}")
    }

    pub fn item_sk(item_id: &str) -> String {
        format!("{ITEM_SK_PREFIX}{item_id}")
    }

    /// The partition of the events held for one transfer until its item records it.
    pub fn held_pk(provider: &str, transfer_id: &str) -> String {
        format!("HELD#{provider}#{transfer_id}")
    }

    /// The sort key of one held event.
    pub fn held_sk(event_id: &str) -> String {
        format!("EVENT#{event_id}")
    }

    /// The key of an event's once-only record: one per provider and event id.
    pub fn event_pk(provider: &str, event_id: &str) -> String {
        format!("EVENT#{provider}#{event_id}")
    }

    /// The batch id of a batch or item partition key.
    pub fn batch_id_of(pk: &str) -> Option<&str> {
        pk.strip_prefix(BATCH_PK_PREFIX)
    }

    /// The item id of an item sort key.
    pub fn item_id_of(sk: &str) -> Option<&str> {
        sk.strip_prefix(ITEM_SK_PREFIX)
    }
}

/// The sparse index of open batches: only batch records carrying `openBatch` are in it, so a
/// Scan of it costs the open batches, not the table (see `infra/tables.json`).
pub const OPEN_BATCHES_INDEX: &str = "openBatches";

/// The index on `providerPayoutId` (see `infra/tables.json`).
pub const PROVIDER_PAYOUT_ID_INDEX: &str = "byProviderPayoutId";

/// How long an event id is remembered for deduplication (PSPs retry for up to 3 days).
pub const EVENT_RETENTION_SECS: u64 = 30 * 24 * 3600;

/// How many counter shards a batch has (`COUNTS#00` … `COUNTS#15`): status changes of
/// different items rarely touch the same record, so concurrent events do not conflict.
pub const COUNTER_SHARDS: u32 = 16;

/// The longest `detail` a timeline entry keeps (a PSP's message can be long; the item record
/// stays well under 1 KB per write unit).
pub const HISTORY_DETAIL_MAX: usize = 200;

/// What a timeline entry records: a status change, or an event that changes no status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryMove {
    Status {
        from: payouts_core::domain::ItemStatus,
        to: payouts_core::domain::ItemStatus,
    },
    /// A reversal: recorded on the item whatever its status.
    Reversal,
}

/// One timeline entry: when (RFC 3339), the status left and entered (`event: "reversal"`
/// instead for a reversal), the attempt (0 where the write does not know it), and the transfer
/// id or the reason.
pub fn history_entry(
    at_ms: u64,
    movement: HistoryMove,
    attempt: u64,
    detail: &str,
) -> aws_sdk_dynamodb::types::AttributeValue {
    use aws_sdk_dynamodb::types::AttributeValue;
    let detail: String = detail.chars().take(HISTORY_DETAIL_MAX).collect();
    let mut entry: std::collections::HashMap<String, AttributeValue> = [
        (
            "at".to_owned(),
            AttributeValue::S(payouts_core::clock::rfc3339_from_ms(at_ms)),
        ),
        ("attempt".to_owned(), AttributeValue::N(attempt.to_string())),
        ("detail".to_owned(), AttributeValue::S(detail)),
    ]
    .into();
    match movement {
        HistoryMove::Status { from, to } => {
            entry.insert("from".into(), AttributeValue::S(from.as_str().to_owned()));
            entry.insert("to".into(), AttributeValue::S(to.as_str().to_owned()));
        }
        HistoryMove::Reversal => {
            entry.insert("event".into(), AttributeValue::S("reversal".to_owned()));
        }
    }
    AttributeValue::M(entry)
}
