//! The payouts-table commands: `status` (a batch's live counts), `items` (its items, optionally
//! of one status, with their reasons) and `item` (one item, every field, and its timeline).
//! All reads are strongly consistent; none writes.

use crate::progress::Progress;
use crate::{OpsError, rfc3339, status_str};
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::AttributeValue;
use payouts_core::clock::ms_from_rfc3339;
use payouts_core::domain::{ItemStatus, PayoutItem};
use payouts_core::ports::repository::PayoutRepository;
use payouts_store_dynamodb::schema::{attr, keys};
use payouts_store_dynamodb::{DynamoDbRepository, Record, decode_item, s};
use serde::Serialize;
use std::fmt;

// ------------------------------------------------------------------------------------ status

/// A batch's status: its record and its live per-status counts (one small read of its counter
/// shards, whatever the batch's size; `docs/design.md#batch-counts-and-lifecycle`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchStatus {
    /// The batch asked about.
    pub batch_id: String,
    /// The PSP adapter that pays the batch.
    pub provider: String,
    /// The ISO 4217 code every item is paid in.
    pub currency: String,
    /// The batch record's status as stored (`pending`, `executing`, `completed`, …).
    pub status: String,
    /// When its first run started (RFC 3339), once one has.
    pub started_at: Option<String>,
    /// Every item record, unreadable ones included.
    pub total: u64,
    /// Items per status, every status of [`ItemStatus::ALL`] in that order (zeros included).
    #[serde(serialize_with = "counts_map")]
    pub counts: Vec<(ItemStatus, u64)>,
    /// Whether the counts come from the batch's counter shards (`false`: no run has started,
    /// so they were counted from the items).
    pub live_counts: bool,
    /// Records that could not be decoded, with why (only known when the items were read).
    pub unreadable: Vec<String>,
    /// How many Query pages of items were read (0 once a run has started the batch).
    #[serde(skip)]
    pub pages: usize,
}

impl BatchStatus {
    /// The count of one status.
    pub fn count(&self, status: ItemStatus) -> u64 {
        self.counts
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n)
    }
}

/// Serialises `(status, count)` pairs as one JSON object, in the statuses' order.
fn counts_map<S: serde::Serializer>(
    counts: &[(ItemStatus, u64)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = serializer.serialize_map(Some(counts.len()))?;
    for (status, n) in counts {
        map.serialize_entry(status.as_str(), n)?;
    }
    map.end()
}

/// Reads the batch record and its live counts: one GetItem and one Query of its counter shards.
/// A batch no run has started has no counts yet: its items are then counted from a paginated
/// Query (`page_size` caps a page, `None` lets DynamoDB fill 1 MB pages), reporting each page
/// to `progress`.
pub async fn batch_status(
    store: &dyn PayoutRepository,
    batch_id: &str,
    page_size: Option<i32>,
    progress: &mut dyn Progress,
) -> Result<BatchStatus, OpsError> {
    let batch = store
        .get_batch(batch_id)
        .await?
        .ok_or_else(|| OpsError::BatchNotFound(batch_id.to_owned()))?;
    let live = store
        .batch_counts(batch_id)
        .await?
        .ok_or_else(|| OpsError::BatchNotFound(batch_id.to_owned()))?;
    let live_counts = live.total.is_some();
    let mut counts: Vec<(ItemStatus, u64)> = ItemStatus::ALL
        .iter()
        .map(|status| (*status, live.count(*status)))
        .collect();
    let mut unreadable = Vec::new();
    let mut pages = 0;
    if !live_counts {
        let mut read = 0;
        let mut start = None;
        loop {
            let page = store
                .query_items_page(batch_id, start, None, page_size)
                .await;
            let page = match page {
                Ok(page) => page,
                Err(err) => {
                    progress.finish();
                    return Err(err.into());
                }
            };
            pages += 1;
            for item in page.items {
                read += 1;
                match item {
                    Ok(item) => {
                        if let Some((_, n)) = counts.iter_mut().find(|(s, _)| *s == item.status) {
                            *n += 1;
                        }
                    }
                    Err(err) => unreadable.push(err.to_string()),
                }
            }
            progress.update("items counted", read, None);
            match page.next {
                Some(next) => start = Some(next),
                None => break,
            }
        }
        progress.finish();
    }
    let counted = counts.iter().map(|(_, n)| n).sum::<u64>();
    Ok(BatchStatus {
        batch_id: batch.batch_id,
        provider: batch.provider,
        currency: batch.currency,
        status: batch.status,
        started_at: rfc3339(batch.started_ms),
        // Live counts include unreadable records (counted as what they were when counted).
        total: if live_counts {
            counted
        } else {
            counted + unreadable.len() as u64
        },
        counts,
        live_counts,
        unreadable,
        pages,
    })
}

impl BatchStatus {
    /// The header and the counts; with `hints`, how to list the items that need attention.
    fn write_counts(&self, f: &mut fmt::Formatter<'_>, hints: bool) -> fmt::Result {
        writeln!(
            f,
            "batch {} provider={} currency={} status={} items={}",
            self.batch_id, self.provider, self.currency, self.status, self.total
        )?;
        if let Some(started) = &self.started_at {
            writeln!(f, "  started {started}")?;
        } else {
            writeln!(f, "  not started: counted from the items")?;
        }
        for (status, n) in &self.counts {
            writeln!(f, "  {:<12} {n:>8}", status.as_str())?;
        }
        for status in [ItemStatus::Failed, ItemStatus::PendingKyc] {
            if hints && self.count(status) > 0 {
                writeln!(
                    f,
                    "{status} items, with their reasons: payouts-ops items {} --status {status}",
                    self.batch_id
                )?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for BatchStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_counts(f, true)?;
        write_unreadable(f, &self.unreadable)
    }
}

fn write_unreadable(f: &mut fmt::Formatter<'_>, unreadable: &[String]) -> fmt::Result {
    if !unreadable.is_empty() {
        writeln!(f, "unreadable records ({}):", unreadable.len())?;
        for problem in unreadable {
            writeln!(f, "  {problem}")?;
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------- items

/// One item of a listing: who, how much, where it stands and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemLine {
    /// The id in the sort key (`ITEM#<itemId>`).
    pub item_id: String,
    /// The recipient (key of the user-settings table).
    pub user_id: String,
    /// `netAmount` as stored (major units).
    pub net_amount: String,
    /// Where the item stands (`docs/design.md#item-statuses-and-transitions`).
    #[serde(serialize_with = "status_str")]
    pub status: ItemStatus,
    /// Claims so far (the fencing token; 0 before the first).
    pub attempt: u64,
    /// Why the item is `failed` or `pending_kyc`.
    pub failure_reason: Option<String>,
    /// The PSP's transfer id under the current key generation.
    pub provider_payout_id: Option<String>,
}

impl From<PayoutItem> for ItemLine {
    fn from(item: PayoutItem) -> Self {
        ItemLine {
            item_id: item.item_id,
            user_id: item.user_id,
            net_amount: item.net_amount,
            status: item.status,
            attempt: item.attempt.attempt,
            failure_reason: item.failure_reason,
            provider_payout_id: item.provider_payout_id,
        }
    }
}

/// A batch's items, in item order, optionally only those of one status.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemList {
    /// The batch listed.
    pub batch_id: String,
    /// The status asked for (`--status`), `null` for every item.
    #[serde(serialize_with = "optional_status")]
    pub status: Option<ItemStatus>,
    /// Item records read (the whole batch: the filter applies to what was read).
    pub read: u64,
    /// The items kept, in item order.
    pub items: Vec<ItemLine>,
    /// Records that could not be decoded, with why (whatever the filter: their status is unknown).
    pub unreadable: Vec<String>,
    /// How many Query pages were read.
    #[serde(skip)]
    pub pages: usize,
}

fn optional_status<S: serde::Serializer>(
    status: &Option<ItemStatus>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match status {
        Some(status) => serializer.serialize_str(status.as_str()),
        None => serializer.serialize_none(),
    }
}

/// Reads every item of the batch (strongly consistent, paginated Query; `page_size` caps a
/// page, `None` lets DynamoDB fill 1 MB pages) and keeps those of status `only` (all when
/// `None`), reporting each page to `progress` against the batch's live total.
pub async fn list_items(
    store: &dyn PayoutRepository,
    batch_id: &str,
    only: Option<ItemStatus>,
    page_size: Option<i32>,
    progress: &mut dyn Progress,
) -> Result<ItemList, OpsError> {
    if store.get_batch(batch_id).await?.is_none() {
        return Err(OpsError::BatchNotFound(batch_id.to_owned()));
    }
    // The live total (one small read) only makes the progress line say "of N".
    let total = store
        .batch_counts(batch_id)
        .await?
        .and_then(|counts| counts.total);
    let mut list = ItemList {
        batch_id: batch_id.to_owned(),
        status: only,
        read: 0,
        items: Vec::new(),
        unreadable: Vec::new(),
        pages: 0,
    };
    let mut start = None;
    loop {
        let page = match store
            .query_items_page(batch_id, start, None, page_size)
            .await
        {
            Ok(page) => page,
            Err(err) => {
                progress.finish();
                return Err(err.into());
            }
        };
        list.pages += 1;
        for item in page.items {
            list.read += 1;
            match item {
                Ok(item) if only.is_none_or(|status| item.status == status) => {
                    list.items.push(ItemLine::from(item));
                }
                Ok(_) => {}
                Err(err) => list.unreadable.push(err.to_string()),
            }
        }
        progress.update("items read", list.read, total);
        match page.next {
            Some(next) => start = Some(next),
            None => break,
        }
    }
    progress.finish();
    Ok(list)
}

impl fmt::Display for ItemList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = self.status.map_or(String::new(), |s| format!("{s} "));
        if self.items.is_empty() {
            writeln!(
                f,
                "batch {}: no {what}items ({} read)",
                self.batch_id, self.read
            )?;
        } else {
            writeln!(
                f,
                "batch {}: {} {what}item(s) of {} read",
                self.batch_id,
                self.items.len(),
                self.read
            )?;
            let rows: Vec<[String; 7]> = self
                .items
                .iter()
                .map(|i| {
                    [
                        i.item_id.clone(),
                        i.user_id.clone(),
                        i.net_amount.clone(),
                        i.status.as_str().to_owned(),
                        i.attempt.to_string(),
                        i.provider_payout_id.clone().unwrap_or_else(|| "-".into()),
                        i.failure_reason.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            let header = [
                "ITEM", "USER", "AMOUNT", "STATUS", "ATTEMPT", "TRANSFER", "REASON",
            ]
            .map(str::to_owned);
            write_table(f, &header, &rows)?;
        }
        write_unreadable(f, &self.unreadable)
    }
}

/// Writes rows in columns as wide as their widest cell (the last column unpadded); numbers
/// (amount, attempt) are right-aligned.
fn write_table(
    f: &mut fmt::Formatter<'_>,
    header: &[String; 7],
    rows: &[[String; 7]],
) -> fmt::Result {
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(header).chain(rows) {
        let mut line = String::from(" ");
        for (i, cell) in row.iter().enumerate() {
            let width = widths[i];
            let cell = match i {
                6 => cell.clone(),
                2 | 4 => format!("{cell:>width$}"),
                _ => format!("{cell:<width$}"),
            };
            line.push(' ');
            line.push_str(&cell);
            line.push(' ');
        }
        writeln!(f, "{}", line.trim_end())?;
    }
    Ok(())
}

/// `status --items`: the batch's status, then every item. Kept for the scripts written before
/// `items` existed (`scripts/run-local.sh` prints a batch this way); the JSON is the status's
/// document with an `items` array (the same lines as `items`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusWithItems {
    /// The counts, as `status` prints them.
    #[serde(flatten)]
    pub status: BatchStatus,
    /// Every item, as `items` lists them.
    #[serde(rename = "items", serialize_with = "list_lines")]
    pub list: ItemList,
}

fn list_lines<S: serde::Serializer>(list: &ItemList, serializer: S) -> Result<S::Ok, S::Error> {
    list.items.serialize(serializer)
}

/// [`batch_status`], then [`list_items`] (every item): the records that could not be decoded
/// are those the item listing found.
pub async fn status_with_items(
    store: &dyn PayoutRepository,
    batch_id: &str,
    page_size: Option<i32>,
    progress: &mut dyn Progress,
) -> Result<StatusWithItems, OpsError> {
    let mut status = batch_status(store, batch_id, page_size, progress).await?;
    let list = list_items(store, batch_id, None, page_size, progress).await?;
    status.unreadable.clone_from(&list.unreadable);
    Ok(StatusWithItems { status, list })
}

impl fmt::Display for StatusWithItems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The items follow the counts, with the unreadable records: no hints, nothing twice.
        self.status.write_counts(f, false)?;
        write!(f, "{}", self.list)
    }
}

// -------------------------------------------------------------------------------------- item

/// One entry of an item's timeline, as its `history` attribute records it
/// (`docs/design.md#data-contracts`): a status change (`from`, `to`), or an event
/// that changes no status (`event`: `reversal`). Every field is optional because the record is
/// read defensively: a missing or mistyped field is shown as absent, never an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEntry {
    /// When (RFC 3339).
    pub at: Option<String>,
    /// The status it left.
    pub from: Option<String>,
    /// The status it reached.
    pub to: Option<String>,
    /// The event recorded instead of a status change (`reversal`).
    pub event: Option<String>,
    /// The attempt (fencing token) that wrote it; settlement writes 0.
    pub attempt: Option<u64>,
    /// The transfer id, or the reason (cut to 200 characters by the writer).
    pub detail: Option<String>,
}

/// One item, every field of the domain's [`PayoutItem`] (times as RFC 3339), its double
/// payments, and its timeline when the record has one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemDetail {
    /// The batch the item belongs to.
    pub batch_id: String,
    /// The id in the sort key.
    pub item_id: String,
    /// The recipient.
    pub user_id: String,
    /// `netAmount` as stored (major units).
    pub net_amount: String,
    /// Where the item stands.
    #[serde(serialize_with = "status_str")]
    pub status: ItemStatus,
    /// Why the item is `failed` or `pending_kyc`.
    pub failure_reason: Option<String>,
    /// The PSP's transfer id under the current key generation.
    pub provider_payout_id: Option<String>,
    /// Claims so far: the fencing token every write of an attempt is guarded by.
    pub attempt: u64,
    /// The idempotency key's generation (`docs/design.md#idempotency-keys`).
    pub key_generation: u32,
    /// When the current claim's lease ends.
    pub lease_until: Option<String>,
    /// When the current key generation was first sent to the PSP.
    pub key_first_used_at: Option<String>,
    /// Since when the current key's outcome is unknown (a lookup comes before any new payment).
    pub reconcile_since: Option<String>,
    /// The last write to the item.
    pub updated_at: Option<String>,
    /// Transfers with webhook events held until the item records them.
    pub held_transfer_ids: Vec<String>,
    /// Transfers of earlier key generations and double payments.
    pub other_known_transfer_ids: Vec<String>,
    /// Transfers the PSP made while the item already recorded another: double payments to
    /// recover (`duplicatePayoutIds`).
    pub duplicate_payout_ids: Vec<String>,
    /// The `history` attribute, oldest first as stored; `null` when the record has none.
    pub timeline: Option<Vec<TimelineEntry>>,
    /// Parts of `history` that could not be read (wrong types), with where.
    pub timeline_problems: Vec<String>,
}

/// Reads one item with one strongly consistent GetItem of its raw record (pk `BATCH#<batch>`,
/// sk `ITEM#<item>`), decodes it as the executor does, and reads its `history` attribute
/// defensively (items no run has touched since the timeline was introduced have none). An absent item is told apart from an absent batch (one more GetItem).
pub async fn show_item(
    store: &DynamoDbRepository,
    batch_id: &str,
    item_id: &str,
) -> Result<ItemDetail, OpsError> {
    let out = store
        .client()
        .get_item()
        .table_name(store.payouts_table())
        .key(attr::PK, s(keys::batch_pk(batch_id)))
        .key(attr::SK, s(keys::item_sk(item_id)))
        .consistent_read(true)
        .send()
        .await
        .map_err(|err| {
            OpsError::Runtime(format!(
                "DynamoDB GetItem of item {item_id:?} failed: {} (check the AWS credentials, region and PAYOUTS_TABLE, then run the command again)",
                DisplayErrorContext(&err)
            ))
        })?;
    let Some(record) = out.item else {
        return Err(match store.get_batch(batch_id).await? {
            None => OpsError::BatchNotFound(batch_id.to_owned()),
            Some(_) => OpsError::ItemNotFound {
                batch_id: batch_id.to_owned(),
                item_id: item_id.to_owned(),
            },
        });
    };
    let item = decode_item(batch_id, &record)?;
    let (timeline, timeline_problems) = read_timeline(&record);
    let a = item.attempt;
    Ok(ItemDetail {
        batch_id: item.batch_id,
        item_id: item.item_id,
        user_id: item.user_id,
        net_amount: item.net_amount,
        status: item.status,
        failure_reason: item.failure_reason,
        provider_payout_id: item.provider_payout_id,
        attempt: a.attempt,
        key_generation: a.key_generation,
        lease_until: rfc3339(a.lease_until_ms),
        key_first_used_at: rfc3339(a.key_first_used_ms),
        reconcile_since: rfc3339(a.reconcile_since_ms),
        updated_at: rfc3339(a.updated_ms),
        held_transfer_ids: item.held_transfer_ids,
        other_known_transfer_ids: item.other_known_transfer_ids,
        duplicate_payout_ids: match record.get(attr::DUPLICATE_PAYOUT_IDS) {
            Some(AttributeValue::L(ids)) => ids
                .iter()
                .filter_map(|id| id.as_s().ok().cloned())
                .collect(),
            _ => Vec::new(),
        },
        timeline,
        timeline_problems,
    })
}

/// The record's `history` list (`None` when absent), and what in it could not be read.
fn read_timeline(record: &Record) -> (Option<Vec<TimelineEntry>>, Vec<String>) {
    let mut problems = Vec::new();
    let entries = match record.get(attr::HISTORY) {
        None | Some(AttributeValue::Null(_)) => return (None, problems),
        Some(AttributeValue::L(entries)) => entries,
        Some(other) => {
            problems.push(format!(
                "`{}` is not a list: {}",
                attr::HISTORY,
                type_name(other)
            ));
            return (Some(Vec::new()), problems);
        }
    };
    let mut timeline = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let AttributeValue::M(map) = entry else {
            problems.push(format!("entry {i} is not a map: {}", type_name(entry)));
            continue;
        };
        let mut text = |name: &str| match map.get(name) {
            None | Some(AttributeValue::Null(_)) => None,
            Some(AttributeValue::S(value)) => Some(value.clone()),
            Some(AttributeValue::N(value)) => Some(value.clone()),
            Some(other) => {
                problems.push(format!(
                    "entry {i}: `{name}` is not a string: {}",
                    type_name(other)
                ));
                None
            }
        };
        let at = text("at");
        let from = text("from");
        let to = text("to");
        let event = text("event");
        let detail = text("detail");
        let attempt = text("attempt").and_then(|raw| match raw.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                problems.push(format!("entry {i}: `attempt` {raw:?} is not a count"));
                None
            }
        });
        if let Some(at) = &at
            && ms_from_rfc3339(at).is_none()
        {
            problems.push(format!(
                "entry {i}: `at` {at:?} is not an RFC 3339 UTC time"
            ));
        }
        timeline.push(TimelineEntry {
            at,
            from,
            to,
            event,
            attempt,
            detail,
        });
    }
    (Some(timeline), problems)
}

fn type_name(value: &AttributeValue) -> &'static str {
    match value {
        AttributeValue::B(_) => "binary",
        AttributeValue::Bool(_) => "boolean",
        AttributeValue::Bs(_) => "binary set",
        AttributeValue::L(_) => "list",
        AttributeValue::M(_) => "map",
        AttributeValue::N(_) => "number",
        AttributeValue::Ns(_) => "number set",
        AttributeValue::Null(_) => "null",
        AttributeValue::S(_) => "string",
        AttributeValue::Ss(_) => "string set",
        _ => "an unknown type",
    }
}

impl fmt::Display for ItemDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn opt(value: &Option<String>) -> &str {
            value.as_deref().unwrap_or("-")
        }
        fn list(values: &[String]) -> String {
            if values.is_empty() {
                "-".into()
            } else {
                values.join(", ")
            }
        }
        writeln!(f, "item {} of batch {}", self.item_id, self.batch_id)?;
        let fields: [(&str, String); 14] = [
            ("status", self.status.as_str().to_owned()),
            ("user", self.user_id.clone()),
            ("net amount", self.net_amount.clone()),
            ("failure reason", opt(&self.failure_reason).to_owned()),
            ("transfer id", opt(&self.provider_payout_id).to_owned()),
            ("attempt", self.attempt.to_string()),
            ("key generation", self.key_generation.to_string()),
            ("lease until", opt(&self.lease_until).to_owned()),
            ("key first used", opt(&self.key_first_used_at).to_owned()),
            ("reconcile since", opt(&self.reconcile_since).to_owned()),
            ("updated", opt(&self.updated_at).to_owned()),
            ("held transfers", list(&self.held_transfer_ids)),
            ("other transfers", list(&self.other_known_transfer_ids)),
            ("double payments", list(&self.duplicate_payout_ids)),
        ];
        for (name, value) in &fields {
            writeln!(f, "  {name:<16} {value}")?;
        }
        if !self.duplicate_payout_ids.is_empty() {
            writeln!(
                f,
                "  DOUBLE PAYMENT: the PSP paid this item more than once; recover the transfers above"
            )?;
        }
        match &self.timeline {
            None => writeln!(f, "no timeline recorded")?,
            Some(timeline) if timeline.is_empty() => writeln!(f, "timeline: empty")?,
            Some(timeline) => {
                writeln!(f, "timeline:")?;
                for step in timeline {
                    let what = match (&step.event, &step.from, &step.to) {
                        (Some(event), None, None) => event.clone(),
                        _ => format!("{} -> {}", opt(&step.from), opt(&step.to)),
                    };
                    let mut line = format!("  {:<24}  {what}", opt(&step.at));
                    if let Some(attempt) = step.attempt {
                        line.push_str(&format!("  attempt {attempt}"));
                    }
                    if let Some(detail) = &step.detail {
                        line.push_str(&format!("  {detail}"));
                    }
                    writeln!(f, "{line}")?;
                }
            }
        }
        for problem in &self.timeline_problems {
            writeln!(f, "  (timeline: {problem})")?;
        }
        Ok(())
    }
}
