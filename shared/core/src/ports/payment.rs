//! The PSP port: what the executor asks of a payment service provider, how every answer is
//! classified (by what the executor must do next, never by a PSP's error text), and the stable
//! idempotency key that makes a retried submission safe (`docs/design.md#idempotency-keys`).

#[cfg(doc)]
use crate::money::iso_minor_units;
use crate::money::{MoneyError, PayoutAmount};
use crate::ports::webhook::WebhookVerifier;
use std::fmt;
use std::time::Duration;

/// One transfer as the PSP lists it, for the reconciler's orphan check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTransfer {
    pub id: String,
    /// The item its metadata (Stripe) or reference (Adyen) names; `None` for a transfer that is
    /// not one of ours.
    pub item: Option<crate::ports::webhook::ItemReference>,
}

/// A transfer's state at the PSP, as the reconciler reads it (`docs/design.md#reconciler`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferState {
    /// Made and not final yet (Adyen `received`, `authorised`): wait.
    InFlight,
    /// The money reached the recipient's account (Stripe: the transfer exists, not reversed;
    /// Adyen `booked`).
    Paid,
    /// The PSP refused or failed it (Adyen `refused`, `failed`); the reason as the PSP gives it.
    Failed { reason: String },
    /// Paid, then taken back (Stripe: reversed in full; Adyen `returned`).
    Reversed { reason: String },
    /// The PSP answered completely and has no transfer with this id.
    NotFound,
}

/// The PSP idempotency key of one item's transfer: derived from batch, item and key generation,
/// never random and never per attempt, so a retry after a crash gets the original transfer back.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The key for `item_id` of `batch_id` at `generation` (the generation moves only when the
    /// PSP is known to have made no transfer under the previous key). Ids are escaped
    /// ([`key_component`]), so batch `a:b` item `c` and batch `a` item `b:c` never share a key.
    pub fn for_item(batch_id: &str, item_id: &str, generation: u32) -> Self {
        IdempotencyKey(format!(
            "payout:{}:{}:g{generation}",
            key_component(batch_id),
            key_component(item_id)
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_with_separators_never_share_a_key() {
        let one = IdempotencyKey::for_item("a:b", "c", 0);
        let two = IdempotencyKey::for_item("a", "b:c", 0);
        assert_ne!(one, two);
        assert_eq!(one.as_str(), "payout:a%3Ab:c:g0");
        assert_eq!(two.as_str(), "payout:a:b%3Ac:g0");
        assert_ne!(
            IdempotencyKey::for_item("a%3Ab", "c", 0),
            one,
            "an id that looks escaped is escaped again"
        );
        assert_eq!(
            IdempotencyKey::for_item("b-2026-11-0001", "item-1", 3).as_str(),
            "payout:b-2026-11-0001:item-1:g3",
            "plain ids keep the keys already in use"
        );
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An id as one component of a `:`-separated key or reference: `%` and `:` are percent-escaped,
/// so components can never run into each other. Ids without them (all ids in practice) are
/// unchanged, so keys already in use stay the same.
pub fn key_component(id: &str) -> std::borrow::Cow<'_, str> {
    if id.contains([':', '%']) {
        id.replace('%', "%25").replace(':', "%3A").into()
    } else {
        id.into()
    }
}

/// Metadata keys every adapter sends with a transfer, so webhooks and lookups find the item.
pub const METADATA_BATCH_ID: &str = "batch_id";
/// See [`METADATA_BATCH_ID`].
pub const METADATA_ITEM_ID: &str = "item_id";

/// One transfer the executor asks a PSP to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRequest {
    pub idempotency_key: IdempotencyKey,
    pub batch_id: String,
    pub item_id: String,
    /// The recipient's account at the PSP (`providerAccountId`).
    pub destination: String,
    /// Integer minor units of `currency` as this PSP reads them ([`PaymentAdapter::minor_units`]).
    pub amount_minor: i64,
    /// The upper-case ISO 4217 code.
    pub currency: String,
    /// The latest instant a request for this transfer may start: the adapter waits for a rate
    /// slot until then, and past it answers [`PaymentError::NotSent`] without sending. `None`:
    /// no limit. Waiting is not PSP time: only the exchange itself is bounded by the timeout.
    pub send_by: Option<tokio::time::Instant>,
}

/// The PSP accepted the transfer (now, or earlier under the same key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferReceipt {
    /// The PSP's id for the transfer, recorded as the item's `providerPayoutId`.
    pub provider_payout_id: String,
    /// True when the PSP answered from its idempotency store rather than making a new transfer.
    pub replayed: bool,
}

/// How a submission failed, classified by what the executor must do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// The PSP refused for good (bad account, insufficient balance…): the item becomes `failed`
    /// with this reason, and a later run retries under the next key generation.
    #[error("rejected by the PSP ({code}): {message}")]
    Rejected { code: String, message: String },
    /// The PSP has this key from a request with other parameters (amount, currency or
    /// destination changed since the first attempt). Nothing was done now, but a transfer may
    /// exist under the key: the item is `failed` and reconciled by lookup before any new key.
    #[error("the PSP holds this key for other parameters ({code}): {message}")]
    KeyConflict { code: String, message: String },
    /// The PSP refused our platform, not the item (credentials revoked, wrong key): nothing was
    /// done; the item is retried once the configuration is fixed, and never marked `failed`.
    #[error("the PSP refused this platform's request: {reason}")]
    PlatformRefused { reason: String },
    /// Nothing was sent: no rate slot was free before the request's `send_by`. A known
    /// outcome; the item is left for the continuation with its key unchanged.
    #[error("not sent: {reason}")]
    NotSent { reason: String },
    /// Nothing was done and trying again later may work (rate limit, PSP unavailable).
    #[error("PSP temporarily unavailable: {reason}")]
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The PSP may or may not have made the transfer (timeout, dropped connection). Retry with
    /// the same key; the item keeps its key until reconciliation says otherwise.
    #[error("outcome unknown: {reason}")]
    OutcomeUnknown { reason: String },
    /// The PSP may or may not have made the transfer, and the same key can no longer tell: it
    /// stored an error under the key (Stripe replays a stored 5xx for 24 h). Do not send the key
    /// again; look the transfer up by reference ([`PaymentAdapter::find_transfer`]) once the PSP
    /// has settled, and move to the next key generation only if it is certainly absent.
    #[error("outcome unknown, reconciliation needed: {reason}")]
    NeedsReconciliation { reason: String },
}

impl PaymentError {
    /// Whether the item should be retried by a later run (as opposed to marked `failed`).
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            PaymentError::Rejected { .. } | PaymentError::KeyConflict { .. }
        )
    }

    /// Whether the current key can no longer say what happened, so the transfer must be looked
    /// up by reference before anything is paid again.
    pub fn requires_reconciliation(&self) -> bool {
        matches!(
            self,
            PaymentError::NeedsReconciliation { .. } | PaymentError::KeyConflict { .. }
        )
    }
}

/// A payment service provider, seen from the executor. Implementations must bound the time of
/// one call, and must pass `idempotency_key` to the PSP so a repeated call is a replay. Every
/// adapter also verifies its PSP's webhooks ([`WebhookVerifier`]).
#[async_trait::async_trait]
pub trait PaymentAdapter: WebhookVerifier {
    /// The `provider` value of the batches this adapter pays (`stripe`, `sandbox`, …).
    fn provider(&self) -> &str;

    /// Submits one transfer under its idempotency key. The transfer must carry
    /// `request.batch_id`/`item_id` as metadata ([`METADATA_BATCH_ID`], [`METADATA_ITEM_ID`])
    /// so webhooks and reconciliation can find the item.
    async fn submit_transfer(
        &self,
        request: &TransferRequest,
    ) -> Result<TransferReceipt, PaymentError>;

    /// `amount` in the integer minor units this PSP reads for its currency, exactly, or why the
    /// PSP cannot be paid that amount (the item then fails with the reason, and no call is
    /// made). PSPs' tables differ from ISO 4217's, so every adapter, and every wrapper around
    /// one, states its own (a PSP that follows ISO returns [`iso_minor_units`]); there is no
    /// default to fall back on silently.
    fn minor_units(&self, amount: &PayoutAmount) -> Result<i64, MoneyError>;

    /// Looks up the transfer made for `request`'s item under any key generation, by the
    /// reference the adapter sent with it (batch and item ids), for reconciliation.
    /// `Ok(None)` only when the PSP answered completely and no such transfer exists; any doubt
    /// is an error, so a failed lookup never leads to a second payment. The receipt has
    /// `replayed: true`. The default knows no lookup: reconciliation then waits for a human.
    async fn find_transfer(
        &self,
        request: &TransferRequest,
    ) -> Result<Option<TransferReceipt>, PaymentError> {
        Err(PaymentError::Transient {
            reason: format!(
                "provider {} cannot look transfers up by reference; reconcile item {} of batch {} by hand",
                self.provider(),
                request.item_id,
                request.batch_id
            ),
            retry_after: None,
        })
    }

    /// How long after its first use an idempotency key can still be trusted to replay; past
    /// it, an item whose earlier outcome is unknown is reconciled before its key is sent again.
    /// `None`: the PSP keeps keys forever.
    fn key_reuse_window(&self) -> Option<Duration> {
        None
    }

    /// What the PSP says of `transfer_id` now, looked up by its id (Stripe
    /// `GET /v1/transfers/{id}`, Adyen `GET /btl/v4/transfers/{id}`). The reconciler asks it of
    /// items left `processing` without a settling event, and applies the answer through the
    /// same settlement as a webhook. Any doubt is an error. The default knows no such lookup.
    async fn transfer_state(&self, transfer_id: &str) -> Result<TransferState, PaymentError> {
        Err(PaymentError::Transient {
            reason: format!(
                "provider {} cannot look transfer {transfer_id} up by id",
                self.provider()
            ),
            retry_after: None,
        })
    }

    /// The transfers made from the platform since `since_ms` (epoch ms, inclusive) that moved
    /// or may still move money (one the PSP refused is left out), every page, each with the
    /// item reference its metadata names, if any. The reconciler compares them
    /// with the items to find orphans: a transfer no item records is a possible double payment
    /// or a lost record. Any doubt (a page missing) is an error. The default lists nothing it
    /// can vouch for, so it is an error.
    async fn transfers_since(&self, since_ms: u64) -> Result<Vec<ListedTransfer>, PaymentError> {
        Err(PaymentError::Transient {
            reason: format!(
                "provider {} cannot list its transfers since {since_ms}",
                self.provider()
            ),
            retry_after: None,
        })
    }

    /// How far back a lookup by reference can see: a PSP whose search window is bounded (Adyen:
    /// six months per query) cannot say "absent" for a key first used before it. `None`: the
    /// lookup sees every transfer ever made.
    fn lookup_horizon(&self) -> Option<Duration> {
        None
    }

    /// How long after the last call under a key to wait before a lookup by reference is
    /// trusted to show every transfer that call could have made.
    fn reconciliation_settle_delay(&self) -> Duration {
        Duration::ZERO
    }

    /// The PSP calls made since the last time this was asked, and how they went: the PSP-health
    /// metrics (latency, 429s, 5xx). Adapters that make no HTTP calls have none.
    fn take_call_stats(&self) -> PspCallStats {
        PspCallStats::default()
    }
}

/// How an adapter's PSP calls went over a span of time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PspCallStats {
    /// Exchanges that got an answer.
    pub answered: u64,
    /// Answers `429 Too Many Requests`: the account's rate limit was exceeded.
    pub rate_limited: u64,
    /// Answers 5xx.
    pub server_errors: u64,
    /// Exchanges that got no complete answer (timeout, connection dropped).
    pub no_answer: u64,
    /// Milliseconds from sending to the whole answer, of the first [`PspCallStats::MAX_SAMPLES`]
    /// answered exchanges.
    pub latencies_ms: Vec<f64>,
}

impl PspCallStats {
    /// Latency samples kept between two takes (memory stays bounded in a long run).
    pub const MAX_SAMPLES: usize = 10_000;
}
