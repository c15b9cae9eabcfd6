//! Adyen's wire types for the Transfers API v4 (checked against Adyen's OpenAPI description
//! `TransferService-v4`): the `TransferInfo` body of `POST /btl/v4/transfers` for an internal
//! transfer, the `Transfer`/`TransferData` objects and the `FindTransfersResponse` page this
//! adapter reads, Adyen's RFC 7807 error body, and its conversion into the core's
//! [`PaymentError`]:
//!
//! | Adyen's answer | [`PaymentError`] | why |
//! |---|---|---|
//! | network error, timeout | `OutcomeUnknown` | the same `Idempotency-Key` returns the first answer |
//! | 2xx `Transfer` for other parameters | `KeyConflict`, logged at ERROR | the key's first request differed (see below) |
//! | 2xx `Transfer` with status `refused` | `Rejected` with Adyen's `reason` | Adyen refused it (limits, rules); nothing moved |
//! | 2xx without a readable `Transfer` | `NeedsReconciliation` | may exist; look it up |
//! | 409 (errorCode 704: same key still in flight) | `Transient` | nothing done by this request; try later |
//! | 429 | `Transient` + `Retry-After` | the whole adapter also pauses |
//! | 401, 403 | `PlatformRefused` | our credential or its roles: configuration, never the item |
//! | 4xx that names the idempotency key | `KeyConflict` | never a new key before a lookup |
//! | 400, 422 | `Rejected` with `errorCode` and `detail` | validation: nothing was made |
//! | 5xx, any other status | `NeedsReconciliation` | may have acted: look up by reference before any new key |
//!
//! A lookup by id (`GET /btl/v4/transfers/{id}`, [`Transfer::state`]) reads Adyen's `status`:
//! `booked` is paid; `refused`, `failed`, `error`, `cancelled` and `rejected` failed; `returned`
//! was taken back; every other status (`received`, `authorised`, `pending`, …) is not final
//! yet. Only a 404 with Adyen's error body says the transfer does not exist
//! ([`is_missing_transfer`]); any other failure is an error, never "absent".
//!
//! **Same key, other body.** Adyen documents that a repeated key returns the first answer; it
//! does not document an error for a changed body. Both readings are safe here: an error that
//! names the idempotency key is a `KeyConflict`, and so is a success whose transfer does not
//! match the request (amount, currency, counterparty, reference), which is what a replay of
//! the first answer to a changed request looks like.

use http::StatusCode;
use payouts_core::ports::payment::{
    IdempotencyKey, PaymentError, TransferRequest, TransferState, key_component,
};
use payouts_core::ports::webhook::ItemReference;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The Transfers API v4 path of transfers on the Balance Platform API host.
pub const TRANSFERS_PATH: &str = "/btl/v4/transfers";

/// Final statuses in which Adyen moved no money: the transfer failed. `refused`: by Adyen
/// (limits, rules); `failed`: by the counterparty's bank; the others end a transfer that never
/// booked.
pub const FAILED_STATUSES: &[&str] = &["refused", "failed", "error", "cancelled", "rejected"];

/// `reference` is at most 80 characters (`TransferInfo.reference`).
pub const MAX_REFERENCE_LEN: usize = 80;
/// `Idempotency-Key` is at most 64 characters.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 64;
/// `description` is best kept within 140 characters (banks may truncate it).
const MAX_DESCRIPTION_LEN: usize = 140;
/// The prefix of every reference this service sends.
const REFERENCE_PREFIX: &str = "payout:";
/// Page size of the lookup (Adyen's maximum).
pub const LIST_PAGE_LIMIT: u32 = 100;

/// The `reference` of an item's transfers, the same for every key generation: what webhooks
/// and reconciliation find the item by. `None` when the ids are too long for Adyen's 80
/// characters (the item is then refused before anything is sent).
pub fn transfer_reference(batch_id: &str, item_id: &str) -> Option<String> {
    let reference = format!(
        "{REFERENCE_PREFIX}{}:{}",
        key_component(batch_id),
        key_component(item_id)
    );
    (reference.chars().count() <= MAX_REFERENCE_LEN).then_some(reference)
}

/// The item a reference names, if it is one of ours (`payout:<batch>:<item>`, ids escaped as
/// [`key_component`] escapes them).
pub fn parse_reference(reference: &str) -> Option<ItemReference> {
    let rest = reference.strip_prefix(REFERENCE_PREFIX)?;
    let (batch, item) = rest.split_once(':')?;
    if batch.is_empty() || item.is_empty() || item.contains(':') {
        return None;
    }
    let unescape = |id: &str| id.replace("%3A", ":").replace("%25", "%");
    Some(ItemReference {
        batch_id: unescape(batch),
        item_id: unescape(item),
    })
}

/// The `Idempotency-Key` header for the item's stable key: Adyen takes at most 64 characters,
/// and ours can be longer, so it is the hex SHA-256 of the key (64 characters). It is a pure
/// function of the key: every attempt under one key sends the same header, and two keys never
/// share one.
pub fn idempotency_header(key: &IdempotencyKey) -> String {
    hex::encode(Sha256::digest(key.as_str().as_bytes()))
}

/// Adyen's `Amount`: minor units as Adyen's currency table reads them, and the ISO code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amount {
    pub value: i64,
    pub currency: String,
}

/// `CounterpartyInfoV3` with the one field an internal transfer uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CounterpartyInfo {
    pub balance_account_id: String,
}

/// The body of `POST /btl/v4/transfers` (`TransferInfo`) for a payout inside the platform: an
/// `internal` transfer from the platform's balance account to the recipient's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferInfo {
    pub amount: Amount,
    pub balance_account_id: String,
    pub category: &'static str,
    pub counterparty: CounterpartyInfo,
    pub reference: String,
    pub description: String,
}

impl TransferInfo {
    /// The transfer for `request` from `source_balance_account`, under `reference`.
    pub fn internal(
        request: &TransferRequest,
        source_balance_account: &str,
        reference: String,
    ) -> Self {
        TransferInfo {
            amount: Amount {
                value: request.amount_minor,
                currency: request.currency.to_ascii_uppercase(),
            },
            balance_account_id: source_balance_account.to_owned(),
            category: "internal",
            counterparty: CounterpartyInfo {
                balance_account_id: request.destination.clone(),
            },
            description: description(&reference),
            reference,
        }
    }
}

/// `Payout <reference>` in the characters Adyen lists for descriptions (others become `-`),
/// within 140 characters, so a description can never be why a transfer is refused.
fn description(reference: &str) -> String {
    format!("Payout {reference}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "/-?:().,'+ ".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(MAX_DESCRIPTION_LEN)
        .collect()
}

/// `ResourceReference`: the balance account a transfer is booked on.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ResourceReference {
    #[serde(default)]
    pub id: Option<String>,
}

/// The counterparty of a transfer as Adyen shows it (`CounterpartyV3`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counterparty {
    #[serde(default)]
    pub balance_account_id: Option<String>,
}

/// The fields of Adyen's `Transfer` (answer to a create) and `TransferData` (list entries,
/// webhook `data`) this adapter reads; every one optional, so an answer is never refused for a
/// field Adyen left out.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transfer {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub reference: Option<String>,
    #[serde(default)]
    pub direction: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub amount: Option<Amount>,
    #[serde(default)]
    pub balance_account: Option<ResourceReference>,
    #[serde(default)]
    pub counterparty: Option<Counterparty>,
    #[serde(default)]
    pub sequence_number: Option<u64>,
    #[serde(default)]
    pub created_at: Option<String>,
}

impl Transfer {
    /// The counterparty balance account (the recipient of an outgoing internal transfer).
    pub fn counterparty_account(&self) -> Option<&str> {
        self.counterparty.as_ref()?.balance_account_id.as_deref()
    }

    /// The balance account this side of the transfer is booked on.
    pub fn balance_account_id(&self) -> Option<&str> {
        self.balance_account.as_ref()?.id.as_deref()
    }

    /// Whether this is the outgoing side (an internal transfer appears on both accounts).
    pub fn is_outgoing(&self) -> bool {
        self.direction.as_deref() != Some("incoming")
    }

    /// Whether Adyen refused it: final, and nothing moved.
    pub fn is_refused(&self) -> bool {
        self.status.as_deref() == Some("refused")
    }

    /// What this transfer, as `GET /btl/v4/transfers/{id}` answered it, says of the payment.
    /// `booked` is paid; a failed status ([`FAILED_STATUSES`]) and `returned` carry Adyen's
    /// `reason`; any other status is not final yet, so the reconciler waits rather than guess
    /// (statuses Adyen adds later land there too). `Err` without a status: Adyen always sends
    /// one, so its absence is doubt.
    pub fn state(&self) -> Result<TransferState, String> {
        let Some(status) = self.status.as_deref().filter(|s| !s.is_empty()) else {
            return Err(format!(
                "transfer {} was answered without a status",
                self.id.as_deref().unwrap_or("?")
            ));
        };
        let reason = self.reason.as_deref().unwrap_or("no reason given");
        Ok(match status {
            "booked" => TransferState::Paid,
            "returned" => TransferState::Reversed {
                reason: format!("returned: {reason}"),
            },
            failed if FAILED_STATUSES.contains(&failed) => TransferState::Failed {
                reason: format!("{failed}: {reason}"),
            },
            _ => TransferState::InFlight,
        })
    }

    /// What differs between this transfer and `request` (empty when it is the same transfer).
    pub fn differences(&self, request: &TransferRequest, reference: &str) -> Vec<String> {
        let mut differences = Vec::new();
        match &self.amount {
            Some(amount) if amount.value != request.amount_minor => differences.push(format!(
                "amount {} instead of {}",
                amount.value, request.amount_minor
            )),
            Some(amount) if !amount.currency.eq_ignore_ascii_case(&request.currency) => differences
                .push(format!(
                    "currency {} instead of {}",
                    amount.currency, request.currency
                )),
            _ => {}
        }
        if let Some(account) = self.counterparty_account()
            && account != request.destination
        {
            differences.push(format!(
                "counterparty {account} instead of {}",
                request.destination
            ));
        }
        if let Some(theirs) = &self.reference
            && theirs != reference
        {
            differences.push(format!("reference {theirs} instead of {reference}"));
        }
        differences
    }
}

/// `_links.next` of a page.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Links {
    #[serde(default)]
    pub next: Option<Link>,
}

/// One link (`href`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Link {
    #[serde(default)]
    pub href: Option<String>,
}

/// A page of `GET /btl/v4/transfers` (`FindTransfersResponse`).
#[derive(Debug, Clone, Deserialize)]
pub struct TransferList {
    #[serde(default)]
    pub data: Vec<Transfer>,
    #[serde(default, rename = "_links")]
    pub links: Option<Links>,
}

impl TransferList {
    /// The `cursor` of the next page: `Ok(None)` on the last page, `Err` when a next page is
    /// announced without a cursor this adapter can follow (the lookup is then not complete).
    pub fn next_cursor(&self) -> Result<Option<String>, String> {
        let Some(next) = self.links.as_ref().and_then(|l| l.next.as_ref()) else {
            return Ok(None);
        };
        let href = next.href.as_deref().unwrap_or_default();
        let query = href.split_once('?').map(|(_, q)| q).unwrap_or_default();
        form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == "cursor")
            .map(|(_, cursor)| Some(cursor.into_owned()))
            .filter(|cursor| cursor.as_deref().is_some_and(|c| !c.is_empty()))
            .ok_or_else(|| format!("a next page without a cursor ({href:?})"))
    }
}

/// The query of one page of `GET /btl/v4/transfers`: the platform's balance account, our
/// reference (`None`: every transfer), a creation window (Adyen: at most 6 months), oldest
/// first.
pub fn list_query(
    balance_account_id: &str,
    reference: Option<&str>,
    created_since: &str,
    created_until: &str,
    cursor: Option<&str>,
) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("balanceAccountId", balance_account_id);
    if let Some(reference) = reference {
        query.append_pair("reference", reference);
    }
    query
        .append_pair("createdSince", created_since)
        .append_pair("createdUntil", created_until)
        .append_pair("sortOrder", "asc")
        .append_pair("limit", &LIST_PAGE_LIMIT.to_string());
    if let Some(cursor) = cursor {
        query.append_pair("cursor", cursor);
    }
    query.finish()
}

/// One entry of `invalidFields`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InvalidField {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// Adyen's error body: RFC 7807 (`type`, `title`, `status`, `detail`, `errorCode`,
/// `invalidFields`, `requestId`), or the older `ServiceError` (`errorCode`, `errorType`,
/// `message`) some 401s use. Every field optional: a body that is neither still classifies.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdyenErrorBody {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
    #[serde(default)]
    pub error_code: Option<String>,
    #[serde(default)]
    pub error_type: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub invalid_fields: Vec<InvalidField>,
    #[serde(default)]
    pub request_id: Option<String>,
}

impl AdyenErrorBody {
    /// The body, or an empty one if it is not JSON.
    pub fn parse(body: &[u8]) -> Self {
        serde_json::from_slice(body).unwrap_or_default()
    }

    /// What Adyen said, for a reason: `detail` (or `message`, or `title`), the invalid fields,
    /// and the request id support asks for.
    pub fn explanation(&self, status: StatusCode) -> String {
        let mut text = self
            .detail
            .clone()
            .or_else(|| self.message.clone())
            .or_else(|| self.title.clone())
            .unwrap_or_else(|| format!("HTTP {status} without an error message"));
        let fields: Vec<String> = self
            .invalid_fields
            .iter()
            .map(|f| {
                format!(
                    "{}: {}",
                    f.name.as_deref().unwrap_or("?"),
                    f.message.as_deref().unwrap_or("invalid")
                )
            })
            .collect();
        if !fields.is_empty() {
            text.push_str(&format!(" ({})", fields.join("; ")));
        }
        if let Some(request_id) = &self.request_id {
            text.push_str(&format!(" [requestId {request_id}]"));
        }
        text
    }

    /// Whether the error is about the idempotency key itself.
    fn names_the_idempotency_key(&self) -> bool {
        [&self.error_code, &self.title, &self.detail, &self.message]
            .into_iter()
            .flatten()
            .any(|text| text.to_ascii_lowercase().contains("idempoten"))
    }
}

/// Whether a non-2xx answer to `GET /btl/v4/transfers/{id}` says that no such transfer
/// exists: a 404 carrying Adyen's own error body (an `errorCode`, or an RFC 7807 `type`). A 404
/// without one (a proxy, a wrong base URL) says nothing about the transfer.
pub fn is_missing_transfer(status: StatusCode, body: &[u8]) -> bool {
    status == StatusCode::NOT_FOUND
        && serde_json::from_slice::<AdyenErrorBody>(body)
            .is_ok_and(|e| e.error_code.is_some() || e.kind.is_some())
}

/// A non-2xx answer from Adyen, as read: what [`PaymentError::from`] classifies.
#[derive(Debug, Clone)]
pub struct AdyenErrorAnswer<'a> {
    pub status: StatusCode,
    pub retry_after: Option<Duration>,
    pub body: &'a [u8],
}

impl From<AdyenErrorAnswer<'_>> for PaymentError {
    /// Classifies a non-2xx answer (see the module's table).
    fn from(answer: AdyenErrorAnswer<'_>) -> Self {
        let AdyenErrorAnswer {
            status,
            retry_after,
            body,
        } = answer;
        let error = AdyenErrorBody::parse(body);
        let code = error
            .error_code
            .clone()
            .unwrap_or_else(|| format!("http_{}", status.as_u16()));
        let message = error.explanation(status);
        match status.as_u16() {
            409 => PaymentError::Transient {
                reason: format!(
                    "adyen 409 {code}: the same idempotency key is still in flight: {message}"
                ),
                retry_after,
            },
            429 => PaymentError::Transient {
                reason: format!("adyen rate limit (429 {code}): {message}"),
                retry_after,
            },
            // Adyen's text is not passed on: nothing about the credential reaches a reason.
            401 | 403 => PaymentError::PlatformRefused {
                reason: format!(
                    "adyen refused this platform's credential ({} {code}): check ADYEN_API_KEY and its TransferService roles",
                    status.as_u16()
                ),
            },
            400..=499 if error.names_the_idempotency_key() => {
                PaymentError::KeyConflict { code, message }
            }
            400 | 422 => PaymentError::Rejected { code, message },
            _ => PaymentError::NeedsReconciliation {
                reason: format!("adyen answered {status} ({code}): {message}"),
            },
        }
    }
}

/// Classifies a non-2xx answer from Adyen (see the module's table).
pub fn classify_error(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> PaymentError {
    PaymentError::from(AdyenErrorAnswer {
        status,
        retry_after,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_body(status: u16, code: &str, title: &str, detail: &str) -> Vec<u8> {
        serde_json::json!({
            "type": "https://docs.adyen.com/errors/validation",
            "title": title, "status": status, "detail": detail, "errorCode": code,
            "requestId": "req_1",
        })
        .to_string()
        .into_bytes()
    }

    fn request(item_id: &str, amount_minor: i64) -> TransferRequest {
        TransferRequest {
            idempotency_key: IdempotencyKey::for_item("b-1", item_id, 0),
            batch_id: "b-1".into(),
            item_id: item_id.into(),
            destination: "BA_RECIPIENT".into(),
            amount_minor,
            currency: "EUR".into(),
            send_by: None,
        }
    }

    #[test]
    fn classifies_adyen_answers() {
        let status = |code| StatusCode::from_u16(code).unwrap();
        let rejected = classify_error(
            status(422),
            None,
            &error_body(422, "30_112", "Invalid transfer", "Not enough balance"),
        );
        assert_eq!(
            rejected,
            PaymentError::Rejected {
                code: "30_112".into(),
                message: "Not enough balance [requestId req_1]".into()
            }
        );
        let invalid_fields = serde_json::json!({
            "status": 400, "errorCode": "00_400", "title": "Bad request",
            "detail": "Request validation failed",
            "invalidFields": [{"name": "counterparty.balanceAccountId", "value": "x", "message": "Not found"}],
        })
        .to_string();
        assert!(matches!(
            classify_error(status(400), None, invalid_fields.as_bytes()),
            PaymentError::Rejected { code, message }
                if code == "00_400" && message.contains("counterparty.balanceAccountId: Not found")
        ));
        let in_flight = classify_error(
            status(409),
            None,
            &error_body(
                409,
                "704",
                "Conflict",
                "request already processed or in progress",
            ),
        );
        assert!(
            matches!(&in_flight, PaymentError::Transient { reason, .. } if reason.contains("704"))
        );
        assert!(in_flight.is_retryable() && !in_flight.requires_reconciliation());
        assert_eq!(
            classify_error(status(429), Some(Duration::from_secs(3)), b""),
            PaymentError::Transient {
                reason: "adyen rate limit (429 http_429): HTTP 429 Too Many Requests without an error message".into(),
                retry_after: Some(Duration::from_secs(3))
            }
        );
        for code in [401, 403] {
            let refused = classify_error(
                status(code),
                None,
                br#"{"status":401,"errorCode":"000","message":"HTTP Status Response - Unauthorized","errorType":"security"}"#,
            );
            assert!(
                matches!(refused, PaymentError::PlatformRefused { .. }),
                "{code}"
            );
            assert!(refused.is_retryable());
        }
        let conflict = classify_error(
            status(422),
            None,
            &error_body(
                422,
                "14_0",
                "Idempotency key reused",
                "different request body",
            ),
        );
        assert!(
            matches!(conflict, PaymentError::KeyConflict { .. }),
            "{conflict:?}"
        );
        for code in [500, 502, 503, 404, 302] {
            assert!(
                matches!(
                    classify_error(status(code), None, b"<html>oops</html>"),
                    PaymentError::NeedsReconciliation { .. }
                ),
                "{code}"
            );
        }
    }

    #[test]
    fn references_round_trip_and_fit_adyens_limits() {
        let reference = transfer_reference("b-2026-11-0001", "item-00001").unwrap();
        assert_eq!(reference, "payout:b-2026-11-0001:item-00001");
        assert_eq!(
            parse_reference(&reference),
            Some(ItemReference {
                batch_id: "b-2026-11-0001".into(),
                item_id: "item-00001".into()
            })
        );
        let escaped = transfer_reference("b:1%", "i:2").unwrap();
        assert_eq!(escaped, "payout:b%3A1%25:i%3A2");
        assert_eq!(
            parse_reference(&escaped),
            Some(ItemReference {
                batch_id: "b:1%".into(),
                item_id: "i:2".into()
            })
        );
        assert_eq!(transfer_reference(&"b".repeat(60), &"i".repeat(20)), None);
        assert_eq!(parse_reference("Your reference of the transfer"), None);
        assert_eq!(parse_reference("payout:only-one"), None);
        assert_eq!(parse_reference("payout:a:b:c"), None);
    }

    #[test]
    fn the_idempotency_header_is_stable_and_fits() {
        let key = IdempotencyKey::for_item(&"b".repeat(200), "item-1", 0);
        let header = idempotency_header(&key);
        assert_eq!(header.len(), MAX_IDEMPOTENCY_KEY_LEN);
        assert_eq!(header, idempotency_header(&key.clone()));
        assert_ne!(
            header,
            idempotency_header(&IdempotencyKey::for_item(&"b".repeat(200), "item-1", 1))
        );
    }

    #[test]
    fn the_transfer_body_is_an_internal_transfer_with_the_reference() {
        let request = request("i&1", 1234);
        let reference = transfer_reference("b-1", "i&1").unwrap();
        let body = serde_json::to_value(TransferInfo::internal(&request, "BA_PLATFORM", reference))
            .unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "amount": {"value": 1234, "currency": "EUR"},
                "balanceAccountId": "BA_PLATFORM",
                "category": "internal",
                "counterparty": {"balanceAccountId": "BA_RECIPIENT"},
                "reference": "payout:b-1:i&1",
                "description": "Payout payout:b-1:i-1",
            })
        );
    }

    #[test]
    fn a_replayed_transfer_for_other_parameters_shows_its_differences() {
        let transfer: Transfer = serde_json::from_str(
            r#"{"id":"T1","status":"received","reference":"payout:b-1:i1",
                "amount":{"value":500,"currency":"EUR"},
                "counterparty":{"balanceAccountId":"BA_RECIPIENT"}}"#,
        )
        .unwrap();
        assert!(
            transfer
                .differences(&request("i1", 500), "payout:b-1:i1")
                .is_empty()
        );
        assert_eq!(
            transfer.differences(&request("i1", 501), "payout:b-1:i1"),
            vec!["amount 500 instead of 501".to_owned()]
        );
    }

    #[test]
    fn a_transfer_status_is_read_as_a_state() {
        let state = |status: Option<&str>, reason: Option<&str>| {
            Transfer {
                id: Some("T1".into()),
                status: status.map(str::to_owned),
                reason: reason.map(str::to_owned),
                ..Transfer::default()
            }
            .state()
        };
        assert_eq!(
            state(Some("booked"), Some("approved")),
            Ok(TransferState::Paid)
        );
        for status in [
            "received",
            "authorised",
            "pending",
            "pendingApproval",
            "someNewStatus",
        ] {
            assert_eq!(
                state(Some(status), Some("pending")),
                Ok(TransferState::InFlight),
                "{status}"
            );
        }
        for status in FAILED_STATUSES.iter().copied() {
            assert_eq!(
                state(Some(status), Some("notEnoughBalance")),
                Ok(TransferState::Failed {
                    reason: format!("{status}: notEnoughBalance")
                })
            );
        }
        assert_eq!(
            state(Some("returned"), Some("counterpartyAccountClosed")),
            Ok(TransferState::Reversed {
                reason: "returned: counterpartyAccountClosed".into()
            })
        );
        assert_eq!(
            state(Some("refused"), None),
            Ok(TransferState::Failed {
                reason: "refused: no reason given".into()
            })
        );
        assert!(state(None, None).is_err());
        assert!(state(Some(""), None).is_err());
    }

    #[test]
    fn only_adyens_own_404_says_a_transfer_does_not_exist() {
        let missing = error_body(404, "00_404", "Not found", "Transfer T1 not found");
        assert!(is_missing_transfer(StatusCode::NOT_FOUND, &missing));
        assert!(!is_missing_transfer(
            StatusCode::NOT_FOUND,
            b"<html>404</html>"
        ));
        assert!(!is_missing_transfer(StatusCode::NOT_FOUND, b""));
        assert!(!is_missing_transfer(StatusCode::NOT_FOUND, b"{}"));
        assert!(!is_missing_transfer(
            StatusCode::UNPROCESSABLE_ENTITY,
            &missing
        ));
    }

    #[test]
    fn pages_follow_the_next_cursor() {
        let page: TransferList = serde_json::from_str(
            r#"{"data":[],"_links":{"next":{"href":"https://x/btl/v4/transfers?balanceAccountId=BA&cursor=S2B-abc%3D&limit=2"}}}"#,
        )
        .unwrap();
        assert_eq!(page.next_cursor(), Ok(Some("S2B-abc=".into())));
        let last: TransferList = serde_json::from_str(r#"{"data":[]}"#).unwrap();
        assert_eq!(last.next_cursor(), Ok(None));
        let broken: TransferList =
            serde_json::from_str(r#"{"data":[],"_links":{"next":{"href":"https://x/y"}}}"#)
                .unwrap();
        assert!(broken.next_cursor().is_err());
    }

    #[test]
    fn a_listing_without_a_reference_lists_every_transfer_of_the_account() {
        let since = "2025-01-01T00:00:00Z";
        let until = "2025-02-01T00:00:00Z";
        assert_eq!(
            list_query("BA", None, since, until, Some("S2B-1")),
            "balanceAccountId=BA&createdSince=2025-01-01T00%3A00%3A00Z\
             &createdUntil=2025-02-01T00%3A00%3A00Z&sortOrder=asc&limit=100&cursor=S2B-1"
        );
        assert!(
            list_query("BA", Some("payout:b:i"), since, until, None)
                .contains("&reference=payout%3Ab%3Ai&")
        );
    }
}
