//! The payout domain (`docs/design.md#data-contracts`): batches, items, their statuses, and the
//! recipients' payout methods. Plain data; storage and PSP concerns live elsewhere.

use std::fmt;
use std::str::FromStr;

/// Where an item stands. The single status enum of the project: every status string read
/// from or written to DynamoDB goes through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ItemStatus {
    /// As written upstream: nothing has been tried yet.
    Pending,
    /// The recipient has no verified payout method; `failureReason` says what is missing.
    PendingKyc,
    /// The executor's in-flight status: an attempt holds a lease and may be calling the PSP.
    Submitting,
    /// The PSP accepted the transfer; its final word arrives by webhook.
    Processing,
    /// Final: the money reached the recipient.
    Paid,
    /// The PSP rejected the transfer; `failureReason` carries its reason. Retried by a later run.
    Failed,
}

impl ItemStatus {
    /// Every status, for listings and counts.
    pub const ALL: [ItemStatus; 6] = [
        ItemStatus::Pending,
        ItemStatus::PendingKyc,
        ItemStatus::Submitting,
        ItemStatus::Processing,
        ItemStatus::Paid,
        ItemStatus::Failed,
    ];

    /// Statuses from which the executor may (re)start an item (`docs/design.md#item-statuses-and-transitions`).
    pub const CLAIMABLE: [ItemStatus; 3] = [
        ItemStatus::Pending,
        ItemStatus::PendingKyc,
        ItemStatus::Failed,
    ];

    /// The attribute value stored in DynamoDB.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemStatus::Pending => "pending",
            ItemStatus::PendingKyc => "pending_kyc",
            ItemStatus::Submitting => "submitting",
            ItemStatus::Processing => "processing",
            ItemStatus::Paid => "paid",
            ItemStatus::Failed => "failed",
        }
    }

    /// Whether the executor may start an attempt from this status (ignoring leases).
    pub fn is_claimable(self) -> bool {
        Self::CLAIMABLE.contains(&self)
    }
}

impl fmt::Display for ItemStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A status string that is not one of the design's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown item status {0:?}: expected one of pending, pending_kyc, submitting, processing, paid, failed"
)]
pub struct UnknownStatus(pub String);

impl FromStr for ItemStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ItemStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// Where a batch stands, as the service writes it (upstream writes `pending`):
/// `pending` → `executing` (first run) → `completed`/`completed_with_failures` (no item in
/// flight), and back to `executing` when a later run retries `failed`/`pending_kyc` items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BatchStatus {
    /// As written upstream: no run has started.
    Pending,
    /// A run has started and items are in flight (`pending`, `submitting`, `processing`), or a
    /// later run is retrying `failed`/`pending_kyc` items.
    Executing,
    /// Every item is `paid`.
    Completed,
    /// No item is in flight, and at least one ended other than `paid` (`failed`, `pending_kyc`).
    CompletedWithFailures,
}

impl BatchStatus {
    /// The attribute value stored in DynamoDB.
    pub fn as_str(self) -> &'static str {
        match self {
            BatchStatus::Pending => "pending",
            BatchStatus::Executing => "executing",
            BatchStatus::Completed => "completed",
            BatchStatus::CompletedWithFailures => "completed_with_failures",
        }
    }

    /// Every status, for parsing.
    pub const ALL: [BatchStatus; 4] = [
        BatchStatus::Pending,
        BatchStatus::Executing,
        BatchStatus::Completed,
        BatchStatus::CompletedWithFailures,
    ];

    /// The status stored as `value`, if it is one of these.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// Whether the batch is done (`completed` or `completed_with_failures`).
    pub fn is_completed(self) -> bool {
        matches!(
            self,
            BatchStatus::Completed | BatchStatus::CompletedWithFailures
        )
    }

    /// The final status of a batch none of whose items is in flight.
    pub fn settled(all_paid: bool) -> Self {
        if all_paid {
            BatchStatus::Completed
        } else {
            BatchStatus::CompletedWithFailures
        }
    }
}

impl fmt::Display for BatchStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A payout batch record: which PSP pays it and in which currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutBatch {
    pub batch_id: String,
    /// The PSP adapter's name (`stripe`, `sandbox`, …), as the factory knows it.
    pub provider: String,
    /// ISO 4217 code; every item of the batch is in this currency.
    pub currency: String,
    /// As stored: upstream's `pending`, or a [`BatchStatus`] the service wrote.
    pub status: String,
    /// When its first run started (`startedAt`, epoch ms), once it has.
    pub started_ms: Option<u64>,
}

/// The executor's bookkeeping on an item, absent on items as upstream writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AttemptState {
    /// Fencing token: bumped by every claim, checked by every write of that attempt.
    pub attempt: u64,
    /// When the current claim's lease ends, in milliseconds since the Unix epoch.
    pub lease_until_ms: Option<u64>,
    /// Generation of the PSP idempotency key; changes only when the old key is known unusable.
    pub key_generation: u32,
    /// When the current key generation was first sent to the PSP (epoch ms): PSPs forget keys
    /// (Stripe after 24 h), and an old key's outcome must be reconciled before it is resent.
    pub key_first_used_ms: Option<u64>,
    /// Set (epoch ms) when the PSP stored an unknown outcome under the current key (a 5xx, an
    /// idempotency error): the item is looked up by reference before anything is paid again.
    pub reconcile_since_ms: Option<u64>,
    /// The last transition (`updatedAt`), in epoch ms, when it reads as RFC 3339.
    pub updated_ms: Option<u64>,
}

/// One payout item as read from the payouts table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutItem {
    pub batch_id: String,
    pub item_id: String,
    pub user_id: String,
    /// The `netAmount` attribute exactly as stored (a DynamoDB number, major units); validated
    /// by [`crate::money::PayoutAmount::parse`] before anything is paid.
    pub net_amount: String,
    pub status: ItemStatus,
    pub failure_reason: Option<String>,
    pub provider_payout_id: Option<String>,
    pub attempt: AttemptState,
    /// Transfers with webhook events held until the item records them
    /// (`docs/design.md#webhooks-and-settlement`).
    pub held_transfer_ids: Vec<String>,
    /// Transfers the item knows besides its current one: those of earlier key generations
    /// (`previousPayoutIds`) and double payments already found (`duplicatePayoutIds`).
    pub other_known_transfer_ids: Vec<String>,
}

impl PayoutItem {
    /// Whether the item records `transfer_id` in any way (current, earlier or duplicate).
    pub fn knows_transfer(&self, transfer_id: &str) -> bool {
        self.provider_payout_id.as_deref() == Some(transfer_id)
            || self
                .other_known_transfer_ids
                .iter()
                .any(|t| t == transfer_id)
    }
}

/// The longest item id: with the batch id, it fits every PSP's idempotency key.
pub const MAX_ITEM_ID_LEN: usize = 128;
/// DynamoDB's limit on a partition key value (the user-settings table is keyed by `userId`).
pub const MAX_USER_ID_BYTES: usize = 2048;

impl PayoutItem {
    /// Why this item's ids cannot be used to pay it (keys, headers and the settings lookup are
    /// built from them), or `None` when they can.
    pub fn unusable_ids(&self) -> Option<String> {
        let visible = |id: &str| id.bytes().all(|b| b.is_ascii_graphic());
        if self.item_id.is_empty()
            || self.item_id.len() > MAX_ITEM_ID_LEN
            || !visible(&self.item_id)
        {
            return Some(format!(
                "itemId {:?} is not usable: 1 to {MAX_ITEM_ID_LEN} visible ASCII characters expected",
                self.item_id
            ));
        }
        if self.user_id.trim().is_empty() {
            return Some("userId is empty: the recipient cannot be looked up".to_owned());
        }
        if self.user_id.len() > MAX_USER_ID_BYTES {
            return Some(format!(
                "userId is {} bytes, over the {MAX_USER_ID_BYTES}-byte key limit of the user-settings table",
                self.user_id.len()
            ));
        }
        None
    }

    /// Whether another attempt holds this item right now (its lease has not run out).
    pub fn is_leased_at(&self, now_ms: u64) -> bool {
        self.status == ItemStatus::Submitting
            && self
                .attempt
                .lease_until_ms
                .is_some_and(|until| until > now_ms)
    }
}

/// A recipient's payout method from the user-settings table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PayoutMethod {
    /// The PSP's account for the recipient (a Stripe connected account `acct_…`).
    pub provider_account_id: Option<String>,
    pub is_verified: bool,
    /// The PSP this method belongs to, when the settings say.
    pub provider: Option<String>,
    /// The method's kind (`bank_account`, `card`, …), informational.
    pub method_type: Option<String>,
}

impl PayoutMethod {
    /// The account to pay for a batch on `provider`, or why the recipient cannot be paid yet.
    /// `method` is `None` when the user has no settings or no `payoutMethod` at all.
    pub fn payable_account<'m>(
        method: Option<&'m PayoutMethod>,
        provider: &str,
    ) -> Result<&'m str, String> {
        let Some(method) = method else {
            return Err("recipient has no payout method on file".to_owned());
        };
        if !method.is_verified {
            return Err("recipient's payout method is not verified".to_owned());
        }
        let account = match method.provider_account_id.as_deref() {
            Some(account) if !account.trim().is_empty() => account,
            _ => return Err("recipient's payout method has no providerAccountId".to_owned()),
        };
        match method.provider.as_deref() {
            Some(own) if own != provider => Err(format!(
                "recipient's payout method is with provider {own:?}, but the batch pays through {provider:?}"
            )),
            _ => Ok(account),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_strings_round_trip() {
        for status in ItemStatus::ALL {
            assert_eq!(status.as_str().parse::<ItemStatus>(), Ok(status));
        }
        assert!("PAID".parse::<ItemStatus>().is_err());
    }

    #[test]
    fn payable_account_explains_every_refusal() {
        let verified = PayoutMethod {
            provider_account_id: Some("acct_1".into()),
            is_verified: true,
            provider: Some("stripe".into()),
            method_type: None,
        };
        assert_eq!(
            PayoutMethod::payable_account(Some(&verified), "stripe"),
            Ok("acct_1")
        );
        assert!(
            PayoutMethod::payable_account(Some(&verified), "sandbox")
                .unwrap_err()
                .contains("provider")
        );
        assert!(
            PayoutMethod::payable_account(None, "stripe")
                .unwrap_err()
                .contains("no payout method")
        );
        let unverified = PayoutMethod {
            is_verified: false,
            ..verified.clone()
        };
        assert!(
            PayoutMethod::payable_account(Some(&unverified), "stripe")
                .unwrap_err()
                .contains("not verified")
        );
        let blank = PayoutMethod {
            provider_account_id: Some(" ".into()),
            ..verified
        };
        assert!(
            PayoutMethod::payable_account(Some(&blank), "stripe")
                .unwrap_err()
                .contains("providerAccountId")
        );
    }
}
