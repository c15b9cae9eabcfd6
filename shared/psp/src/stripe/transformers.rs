//! Stripe's wire types: the form of `POST /v1/transfers`, the `transfer` and list objects this
//! adapter reads, Stripe's `error` object, and its conversion into the core's [`PaymentError`]
//! (Stripe API v1 semantics: the first result of a request that began executing is stored under
//! its idempotency key, 400s and 500s included, and replayed for at least 24 h; the rate limiter
//! and most parameter validation run before that layer):
//!
//! | Stripe's answer | [`PaymentError`] | why |
//! |---|---|---|
//! | no rate slot before the request's `send_by` | `NotSent` | nothing left the process |
//! | network error, timeout | `OutcomeUnknown` | a retry with the same key replays the original result |
//! | 409 (`idempotency_key_in_use`) | `Transient` | the same key is still executing; try later |
//! | 429 | `Transient` + `Retry-After` | not stored; the whole adapter also pauses |
//! | 401, 403 | `PlatformRefused` | our key is wrong or restricted: never the item's fault |
//! | platform codes (`balance_insufficient`, `transfers_not_allowed`, …), any status | `PlatformRefused` | the platform cannot pay anyone now: the batch pauses, no item fails |
//! | 5xx | `NeedsReconciliation` | stored under the key and replayed: look the transfer up instead |
//! | `idempotency_error` (any status) | `KeyConflict`, logged at ERROR | the key was used with other parameters |
//! | 400, 402, other 4xx | `Rejected` with Stripe's `error.code` and `message` | permanent for this item |
//!
//! A lookup by id (`GET /v1/transfers/{id}`, [`Transfer::state`]) reads a transfer as paid
//! unless Stripe shows it reversed in full (`reversed`, or `amount_reversed` reaching `amount`:
//! Stripe keeps `reversed` false after a partial reversal, and a partial reversal leaves the
//! recipient paid). Only a 404 with `error.code` `resource_missing` says the transfer does not
//! exist ([`is_missing_transfer`]); any other failure is an error, never "absent".

use http::StatusCode;
use payouts_core::ports::payment::{
    METADATA_BATCH_ID, METADATA_ITEM_ID, PaymentError, TransferRequest, TransferState,
    key_component,
};
use payouts_core::ports::webhook::ItemReference;
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;

/// Stripe's `error.type` for a key first used with other parameters.
pub const IDEMPOTENCY_ERROR: &str = "idempotency_error";

/// Stripe's `error.code` for an object that does not exist: with a 404, the one answer that
/// lets a lookup by id say "no such transfer".
pub const RESOURCE_MISSING: &str = "resource_missing";

/// Stripe error codes that refuse the platform account, not the transfer's recipient: no
/// recipient can be paid until the platform is fixed (Stripe's error-code reference).
const PLATFORM_CODES: &[&str] = &[
    "balance_insufficient",
    "insufficient_funds",
    "transfers_not_allowed",
    "platform_account_required",
    "platform_api_key_expired",
    "api_key_expired",
    "secret_key_required",
];

/// Page size of `GET /v1/transfers` (Stripe's maximum).
pub const LIST_PAGE_LIMIT: &str = "100";

/// The `transfer_group` of an item's transfers, the same for every key generation: what
/// reconciliation lists by.
pub fn transfer_group(batch_id: &str, item_id: &str) -> String {
    format!(
        "payout:{}:{}",
        key_component(batch_id),
        key_component(item_id)
    )
}

/// The form body of `POST /v1/transfers` for `request` (field names as in Stripe's API).
pub fn transfer_form(request: &TransferRequest) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("amount", &request.amount_minor.to_string())
        .append_pair("currency", &request.currency.to_ascii_lowercase())
        .append_pair("destination", &request.destination)
        .append_pair(
            "transfer_group",
            &transfer_group(&request.batch_id, &request.item_id),
        )
        .append_pair(&format!("metadata[{METADATA_BATCH_ID}]"), &request.batch_id)
        .append_pair(&format!("metadata[{METADATA_ITEM_ID}]"), &request.item_id)
        .finish()
}

/// What one listing of `GET /v1/transfers` selects.
#[derive(Debug, Clone, Copy)]
pub(super) enum ListFilter<'a> {
    /// One item's transfer group (the lookup by reference).
    Group(&'a str),
    /// Every transfer created at or after this Unix second (`created[gte]`).
    CreatedSince(u64),
}

/// The query of one page of `GET /v1/transfers` selecting `filter`, after `starting_after`.
pub(super) fn list_query(filter: ListFilter<'_>, starting_after: Option<&str>) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    match filter {
        ListFilter::Group(group) => query.append_pair("transfer_group", group),
        ListFilter::CreatedSince(secs) => query.append_pair("created[gte]", &secs.to_string()),
    };
    query.append_pair("limit", LIST_PAGE_LIMIT);
    if let Some(after) = starting_after {
        query.append_pair("starting_after", after);
    }
    query.finish()
}

/// The fields of Stripe's `transfer` object this adapter reads.
#[derive(Debug, Deserialize)]
pub(super) struct Transfer {
    pub id: String,
    #[serde(default)]
    pub amount: Option<i64>,
    #[serde(default)]
    pub currency: Option<String>,
    /// An account id, or the account object when expanded.
    #[serde(default)]
    pub destination: Option<serde_json::Value>,
    #[serde(default)]
    pub transfer_group: Option<String>,
    #[serde(default)]
    pub metadata: HashMap<String, String>,
    /// How much of `amount` was taken back from the recipient, in the same minor units.
    #[serde(default)]
    pub amount_reversed: Option<i64>,
    /// Whether the transfer was reversed in full (Stripe leaves it `false` after a partial
    /// reversal).
    #[serde(default)]
    pub reversed: Option<bool>,
}

impl Transfer {
    /// Whether this transfer was made for the item (by its metadata and transfer group).
    pub fn belongs_to(&self, batch_id: &str, item_id: &str) -> bool {
        self.metadata.get(METADATA_BATCH_ID).map(String::as_str) == Some(batch_id)
            && self.metadata.get(METADATA_ITEM_ID).map(String::as_str) == Some(item_id)
            && self
                .transfer_group
                .as_deref()
                .is_none_or(|group| group == transfer_group(batch_id, item_id))
    }

    /// The item its metadata names ([`METADATA_BATCH_ID`] and [`METADATA_ITEM_ID`], as
    /// [`transfer_form`] sends them); `None` unless both are there.
    pub fn item_reference(&self) -> Option<ItemReference> {
        Some(ItemReference {
            batch_id: self.metadata.get(METADATA_BATCH_ID)?.clone(),
            item_id: self.metadata.get(METADATA_ITEM_ID)?.clone(),
        })
    }

    /// What this transfer, as `GET /v1/transfers/{id}` answered it, says of the payment:
    /// `Reversed` once taken back in full, otherwise `Paid` (a Stripe transfer moves the money
    /// when it is made; a partial reversal leaves the recipient paid). `Err` when a field the
    /// answer needs is missing: the pinned API version always sends them, so their absence is
    /// doubt, and a doubtful lookup must not report a state.
    pub fn state(&self) -> Result<TransferState, String> {
        let (Some(amount), Some(amount_reversed), Some(reversed)) =
            (self.amount, self.amount_reversed, self.reversed)
        else {
            return Err(format!(
                "transfer {} was answered without amount, amount_reversed or reversed",
                self.id
            ));
        };
        if reversed || (amount_reversed > 0 && amount_reversed >= amount) {
            Ok(TransferState::Reversed {
                reason: format!("reversed: {amount_reversed} of {amount}"),
            })
        } else {
            Ok(TransferState::Paid)
        }
    }

    pub fn destination_id(&self) -> Option<&str> {
        match self.destination.as_ref()? {
            serde_json::Value::String(id) => Some(id),
            object => object.get("id")?.as_str(),
        }
    }
}

/// A page of `GET /v1/transfers`.
#[derive(Debug, Deserialize)]
pub(super) struct TransferList {
    pub data: Vec<Transfer>,
    pub has_more: bool,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ApiError,
}

/// Stripe's `error` object (`APIErrors` in its OpenAPI description).
#[derive(Debug, Deserialize, Default)]
struct ApiError {
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<String>,
    message: Option<String>,
}

/// Whether a non-2xx answer to `GET /v1/transfers/{id}` says that no such transfer exists: a
/// 404 whose `error.code` is `resource_missing`. A 404 without it (an unrecognized URL, a proxy
/// in front of the API) says nothing about the transfer.
pub fn is_missing_transfer(status: StatusCode, body: &[u8]) -> bool {
    status == StatusCode::NOT_FOUND
        && serde_json::from_slice::<ErrorBody>(body)
            .is_ok_and(|b| b.error.code.as_deref() == Some(RESOURCE_MISSING))
}

/// A non-2xx answer from Stripe, as read: what [`PaymentError::from`] classifies.
#[derive(Debug, Clone)]
pub struct StripeErrorAnswer<'a> {
    pub status: StatusCode,
    pub retry_after: Option<Duration>,
    pub body: &'a [u8],
}

impl From<StripeErrorAnswer<'_>> for PaymentError {
    /// Classifies a non-2xx answer (see the module's table).
    fn from(answer: StripeErrorAnswer<'_>) -> Self {
        let StripeErrorAnswer {
            status,
            retry_after,
            body,
        } = answer;
        let api = serde_json::from_slice::<ErrorBody>(body)
            .map(|b| b.error)
            .unwrap_or_default();
        let message = api
            .message
            .clone()
            .unwrap_or_else(|| format!("HTTP {status} without an error message"));
        if api.kind.as_deref() == Some(IDEMPOTENCY_ERROR) {
            return PaymentError::KeyConflict {
                code: IDEMPOTENCY_ERROR.to_owned(),
                message,
            };
        }
        let code = api
            .code
            .clone()
            .or(api.kind.clone())
            .unwrap_or_else(|| format!("http_{}", status.as_u16()));
        if status != StatusCode::UNAUTHORIZED && PLATFORM_CODES.contains(&code.as_str()) {
            return PaymentError::PlatformRefused {
                reason: format!("stripe {status} {code}: {message}"),
            };
        }
        match status.as_u16() {
            409 => PaymentError::Transient {
                reason: format!("stripe 409 {code}: {message}"),
                retry_after,
            },
            429 => PaymentError::Transient {
                reason: format!("stripe rate limit (429): {message}"),
                retry_after,
            },
            // Stripe's 401 message quotes part of the key: never pass it on.
            401 => PaymentError::PlatformRefused {
                reason: "stripe refused the API key (401): check STRIPE_SECRET_KEY".to_owned(),
            },
            403 => PaymentError::PlatformRefused {
                reason: format!(
                    "stripe refused this key the call (403 {code}): check the restricted key's permissions"
                ),
            },
            500..=599 => PaymentError::NeedsReconciliation {
                reason: format!("stripe answered {status}: {message}"),
            },
            400..=499 => PaymentError::Rejected { code, message },
            _ => PaymentError::OutcomeUnknown {
                reason: format!("stripe answered {status}: {message}"),
            },
        }
    }
}

/// Classifies a non-2xx answer from Stripe (see the module's table).
pub fn classify_error(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> PaymentError {
    PaymentError::from(StripeErrorAnswer {
        status,
        retry_after,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use payouts_core::ports::payment::IdempotencyKey;

    fn error_body(kind: &str, code: Option<&str>, message: &str) -> Vec<u8> {
        serde_json::json!({"error": {"type": kind, "code": code, "message": message}})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn classifies_stripe_answers() {
        let status = |code| StatusCode::from_u16(code).unwrap();
        assert_eq!(
            classify_error(
                status(400),
                None,
                &error_body("invalid_request_error", Some("account_invalid"), "closed")
            ),
            PaymentError::Rejected {
                code: "account_invalid".into(),
                message: "closed".into()
            }
        );
        assert_eq!(
            classify_error(
                status(402),
                None,
                &error_body("invalid_request_error", None, "no funds")
            ),
            PaymentError::Rejected {
                code: "invalid_request_error".into(),
                message: "no funds".into()
            }
        );
        assert!(matches!(
            classify_error(status(403), None, b"not json"),
            PaymentError::PlatformRefused { .. }
        ));
        for code in ["balance_insufficient", "transfers_not_allowed"] {
            assert!(
                matches!(
                    classify_error(
                        status(400),
                        None,
                        &error_body("invalid_request_error", Some(code), "no")
                    ),
                    PaymentError::PlatformRefused { .. }
                ),
                "{code}"
            );
        }
        let idem = classify_error(
            status(400),
            None,
            &error_body("idempotency_error", None, "other parameters"),
        );
        assert!(idem.requires_reconciliation());
        assert!(!idem.is_retryable());
        assert!(
            matches!(&idem, PaymentError::KeyConflict { code, .. } if code == IDEMPOTENCY_ERROR)
        );
        assert_eq!(
            classify_error(
                status(429),
                Some(Duration::from_secs(2)),
                &error_body("invalid_request_error", Some("rate_limit"), "slow down")
            ),
            PaymentError::Transient {
                reason: "stripe rate limit (429): slow down".into(),
                retry_after: Some(Duration::from_secs(2))
            }
        );
        assert!(matches!(
            classify_error(
                status(409),
                None,
                &error_body("invalid_request_error", Some("idempotency_key_in_use"), "in use")
            ),
            PaymentError::Transient { reason, .. } if reason.contains("idempotency_key_in_use")
        ));
        let unauthorized = classify_error(
            status(401),
            None,
            &error_body(
                "invalid_request_error",
                None,
                "Invalid API Key provided: sk_test_****abcd",
            ),
        );
        assert!(matches!(unauthorized, PaymentError::PlatformRefused { .. }));
        assert!(unauthorized.is_retryable());
        assert!(
            !unauthorized.to_string().contains("sk_test"),
            "{unauthorized}"
        );
        for code in [500, 502, 503] {
            let err = classify_error(status(code), None, &error_body("api_error", None, "oops"));
            assert!(
                matches!(err, PaymentError::NeedsReconciliation { .. }),
                "{code}"
            );
        }
    }

    fn transfer(body: serde_json::Value) -> Transfer {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn a_transfer_is_paid_until_reversed_in_full() {
        let state = |amount_reversed: i64, reversed: bool| {
            transfer(serde_json::json!({
                "id": "tr_1", "object": "transfer", "amount": 500,
                "amount_reversed": amount_reversed, "reversed": reversed,
            }))
            .state()
        };
        assert_eq!(state(0, false), Ok(TransferState::Paid));
        assert_eq!(
            state(200, false),
            Ok(TransferState::Paid),
            "a partial reversal leaves the recipient paid"
        );
        assert_eq!(
            state(500, true),
            Ok(TransferState::Reversed {
                reason: "reversed: 500 of 500".into()
            })
        );
        assert_eq!(
            state(500, false),
            Ok(TransferState::Reversed {
                reason: "reversed: 500 of 500".into()
            }),
            "the amounts alone say it"
        );
        assert!(matches!(state(0, true), Ok(TransferState::Reversed { .. })));
        let partial_answer = transfer(serde_json::json!({"id": "tr_1", "amount": 500}));
        assert!(partial_answer.state().is_err());
    }

    #[test]
    fn only_resource_missing_says_a_transfer_does_not_exist() {
        let missing = error_body(
            "invalid_request_error",
            Some(RESOURCE_MISSING),
            "No such transfer: 'tr_1'",
        );
        assert!(is_missing_transfer(StatusCode::NOT_FOUND, &missing));
        let unrecognized = error_body(
            "invalid_request_error",
            None,
            "Unrecognized request URL (GET: /v1/transfer/tr_1).",
        );
        assert!(!is_missing_transfer(StatusCode::NOT_FOUND, &unrecognized));
        assert!(!is_missing_transfer(
            StatusCode::NOT_FOUND,
            b"<html>404</html>"
        ));
        assert!(!is_missing_transfer(StatusCode::BAD_REQUEST, &missing));
        assert!(!is_missing_transfer(
            StatusCode::INTERNAL_SERVER_ERROR,
            &missing
        ));
    }

    #[test]
    fn lists_by_group_or_creation_time_and_reads_the_item_from_metadata() {
        assert_eq!(
            list_query(ListFilter::CreatedSince(1_700_000_000), Some("tr_9")),
            "created%5Bgte%5D=1700000000&limit=100&starting_after=tr_9"
        );
        assert_eq!(
            list_query(ListFilter::Group("payout:b:i"), None),
            "transfer_group=payout%3Ab%3Ai&limit=100"
        );
        let ours = transfer(serde_json::json!({
            "id": "tr_1", "metadata": {"batch_id": "b:1", "item_id": "i"}
        }));
        assert_eq!(
            ours.item_reference(),
            Some(ItemReference {
                batch_id: "b:1".into(),
                item_id: "i".into()
            })
        );
        let half = transfer(serde_json::json!({"id": "tr_2", "metadata": {"batch_id": "b"}}));
        assert_eq!(half.item_reference(), None);
        assert_eq!(
            transfer(serde_json::json!({"id": "tr_3"})).item_reference(),
            None
        );
    }

    #[test]
    fn transfer_form_carries_the_reference() {
        let request = TransferRequest {
            idempotency_key: IdempotencyKey::for_item("b 1", "i&1", 0),
            batch_id: "b 1".into(),
            item_id: "i&1".into(),
            destination: "acct_123".into(),
            amount_minor: 1234,
            currency: "USD".into(),
            send_by: None,
        };
        assert_eq!(
            transfer_form(&request),
            "amount=1234&currency=usd&destination=acct_123&transfer_group=payout%3Ab+1%3Ai%261\
             &metadata%5Bbatch_id%5D=b+1&metadata%5Bitem_id%5D=i%261"
        );
    }
}
