//! Adyen's Balance Platform transfer webhooks (`BalancePlatformTransferNotification-v4`):
//! the `HmacSignature` scheme and the mapping of `balancePlatform.transfer.created`/`.updated`
//! onto the core's [`PaymentEvent`]s.
//!
//! **Signature.** `HmacSignature` is base64(HMAC-SHA256(key = the hex-decoded HMAC key,
//! message = the raw body)), as Adyen's libraries compute it (the Python library's
//! `Adyen.util.is_valid_hmac_payload`, which a test runs against these bodies). It is compared
//! in constant time against every configured key (rotation).
//!
//! **Freshness.** The scheme signs no timestamp of its own; the signed body carries
//! `timestamp` (when Adyen queued the event), and Adyen retries an unaccepted webhook for up to
//! 30 days, oldest first. A tolerance shorter than that would refuse Adyen's own retries and
//! block the endpoint's queue, so a signed `timestamp` is refused only past
//! [`SIGNATURE_TOLERANCE_SECS`] (31 days). A replayed genuine event is harmless: settlement
//! applies each event id once and never moves `paid` back.
//!
//! **Events.** An internal transfer is one transfer id seen from both balance accounts; only the
//! outgoing side booked on our balance account is ours. Its lifecycle is `received` →
//! `authorised` → `booked`; `refused` (Adyen refused it: limits, rules) or `failed` instead of
//! booking; `returned` after booking.
//!
//! | status (outgoing, ours) | kind |
//! |---|---|
//! | `booked` | `Paid`: the funds left our balance account for the recipient's |
//! | `refused`, `failed` | `Failed` with `<status>: <reason>` |
//! | `returned` | `Reversed` (recorded, never re-paid automatically) |
//! | anything else, the incoming side, other accounts or categories | none: acknowledged, ignored |
//!
//! **Order and duplicates.** `data.sequenceNumber` counts the webhooks of one transfer, so the
//! event id is `<transferId>:<sequenceNumber>`: a redelivery has the same id, and settlement
//! applies each id at most once. Webhooks may arrive out of order; that is safe because
//! settlement's guards never move `paid` to `failed`, a reversal is only recorded, and the
//! intermediate statuses move nothing.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use payouts_config::Secret;
use payouts_core::ports::webhook::{
    Acknowledgement, PaymentEvent, PaymentEventKind, VerifiedWebhook, WebhookError,
};
use serde::Deserialize;
use sha2::Sha256;

use super::transformers::{Transfer, parse_reference};

/// The header Adyen puts the signature in (header names are case-insensitive).
pub const SIGNATURE_HEADER: &str = "hmacsignature";

/// How old (or how far ahead) a signed `timestamp` may be: a day over Adyen's 30 days of
/// retries.
pub const SIGNATURE_TOLERANCE_SECS: u64 = 31 * 24 * 3600;

/// What the webhook answers once every event is settled. Adyen accepts any 2xx for Balance
/// Platform webhooks; its OpenAPI description gives the answer's shape as
/// `BalancePlatformNotificationResponse {notificationResponse}`, and the classic `[accepted]`
/// is harmless to every Adyen webhook type, so this body satisfies any reading.
pub const ACKNOWLEDGEMENT_BODY: &str = r#"{"notificationResponse":"[accepted]"}"#;

/// The event types this adapter maps.
const TRANSFER_EVENT_TYPES: &[&str] = &[
    "balancePlatform.transfer.created",
    "balancePlatform.transfer.updated",
];

type HmacSha256 = Hmac<Sha256>;

/// The `HmacSignature` of `body` under the hex `hmac_key`; `None` when the key is not hex.
pub fn sign(hmac_key: &str, body: &[u8]) -> Option<String> {
    let key = hex::decode(hmac_key.trim()).ok()?;
    let mut mac = HmacSha256::new_from_slice(&key).expect("HMAC accepts any key length");
    mac.update(body);
    Some(BASE64.encode(mac.finalize().into_bytes()))
}

/// Verifies an `HmacSignature` header over the raw `body`: it must match one of `keys`,
/// compared in constant time.
pub fn verify_signature(
    header: Option<&str>,
    body: &[u8],
    keys: &[Secret],
) -> Result<(), WebhookError> {
    let header = header
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or(WebhookError::MissingSignature)?;
    let signature = BASE64
        .decode(header)
        .map_err(|_| WebhookError::BadSignature)?;
    let matched = keys
        .iter()
        .filter_map(|key| hex::decode(key.expose().trim()).ok())
        .filter(|key| !key.is_empty())
        .any(|key| {
            let mut mac = HmacSha256::new_from_slice(&key).expect("HMAC accepts any key length");
            mac.update(body);
            mac.verify_slice(&signature).is_ok()
        });
    if matched {
        Ok(())
    } else {
        Err(WebhookError::BadSignature)
    }
}

/// Adyen's webhook envelope (`TransferNotificationRequest`).
#[derive(Debug, Deserialize)]
struct Notification {
    #[serde(default)]
    data: Option<Transfer>,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default, rename = "type")]
    event_type: Option<String>,
}

/// Verifies a request (signature over the raw bytes first, then freshness) and maps its event.
/// `our_balance_account` narrows events to that account's side when it is known.
pub fn verify_and_parse(
    provider: &str,
    keys: &[Secret],
    our_balance_account: Option<&str>,
    headers: &http::HeaderMap,
    body: &[u8],
    now_secs: u64,
) -> Result<VerifiedWebhook, WebhookError> {
    if keys.is_empty() {
        return Err(WebhookError::NotConfigured {
            provider: provider.to_owned(),
        });
    }
    let header = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    verify_signature(header, body, keys)?;
    let event = parse_event(body, our_balance_account, now_secs)?;
    Ok(VerifiedWebhook {
        events: vec![event],
        acknowledgement: Acknowledgement::Fixed {
            content_type: "application/json",
            body: ACKNOWLEDGEMENT_BODY.to_owned(),
        },
    })
}

/// Maps a verified body onto one [`PaymentEvent`] (see the module's table). A signed timestamp
/// outside the tolerance is refused; a body that is not JSON is malformed.
pub fn parse_event(
    body: &[u8],
    our_balance_account: Option<&str>,
    now_secs: u64,
) -> Result<PaymentEvent, WebhookError> {
    let notification: Notification =
        serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    if let Some(sent_secs) = notification.timestamp.as_deref().and_then(unix_secs) {
        let age_secs = now_secs.abs_diff(sent_secs);
        if age_secs > SIGNATURE_TOLERANCE_SECS {
            return Err(WebhookError::StaleTimestamp {
                age_secs,
                tolerance_secs: SIGNATURE_TOLERANCE_SECS,
            });
        }
    }
    let event_type = notification
        .event_type
        .unwrap_or_else(|| "balancePlatform.transfer".to_owned());
    let data = notification.data.unwrap_or_default();
    let transfer_id = data.id.clone().filter(|id| !id.is_empty());
    let event_id = match (&transfer_id, data.sequence_number, &data.status) {
        (Some(id), Some(sequence), _) => format!("{id}:{sequence}"),
        // No sequence number: one event per status still dedupes redeliveries.
        (Some(id), None, Some(status)) => format!("{id}:{status}"),
        (Some(id), None, None) => format!("{id}:{event_type}"),
        (None, ..) => format!(
            "{event_type}:{}",
            notification.timestamp.as_deref().unwrap_or("unidentified")
        ),
    };
    let ours = transfer_id.is_some()
        && TRANSFER_EVENT_TYPES.contains(&event_type.as_str())
        && data.direction.as_deref() == Some("outgoing")
        && data.category.as_deref().is_none_or(|c| c == "internal")
        && our_balance_account.is_none_or(|ours| data.balance_account_id() == Some(ours));
    let kind = if ours { kind_of(&data) } else { None };
    Ok(PaymentEvent {
        event_id,
        event_type,
        kind,
        provider_payout_id: transfer_id,
        reference: data.reference.as_deref().and_then(parse_reference),
    })
}

/// What the outgoing side's status means for the item.
fn kind_of(transfer: &Transfer) -> Option<PaymentEventKind> {
    let status = transfer.status.as_deref()?;
    let reason = || match &transfer.reason {
        Some(reason) => format!("{status}: {reason}"),
        None => format!("{status} (no reason given by Adyen)"),
    };
    match status {
        "booked" => Some(PaymentEventKind::Paid),
        "refused" | "failed" => Some(PaymentEventKind::Failed { reason: reason() }),
        "returned" => Some(PaymentEventKind::Reversed { reason: reason() }),
        _ => None,
    }
}

/// Unix seconds of an ISO 8601 date-time as Adyen writes them (`2023-02-28T13:27:05+02:00`,
/// `…Z`, with or without a fraction); `None` for anything else.
fn unix_secs(text: &str) -> Option<u64> {
    let text = text.trim();
    let (local, offset_secs) = if let Some(local) = text.strip_suffix('Z') {
        (local, 0i64)
    } else {
        let split = text.len().checked_sub(6)?;
        let (local, offset) = text.split_at(split);
        let sign = match offset.as_bytes()[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let (hours, minutes) = offset[1..].split_once(':')?;
        let offset = hours.parse::<i64>().ok()? * 3600 + minutes.parse::<i64>().ok()? * 60;
        (local, sign * offset)
    };
    let utc_ms = payouts_core::clock::ms_from_rfc3339(&format!("{local}Z"))?;
    u64::try_from(i64::try_from(utc_ms / 1000).ok()? - offset_secs).ok()
}

/// A `balancePlatform.transfer.*` body as Adyen sends it for the outgoing side of an internal
/// transfer: for the fake Adyen, local runs and tests.
#[allow(clippy::too_many_arguments)]
pub fn transfer_event_json(
    event_type: &str,
    transfer_id: &str,
    sequence_number: u64,
    status: &str,
    reason: Option<&str>,
    reference: &str,
    source_balance_account: &str,
    counterparty_balance_account: &str,
    amount: (i64, &str),
    timestamp: &str,
) -> String {
    serde_json::json!({
        "data": {
            "id": transfer_id,
            "accountHolder": {"id": "AH_PLATFORM"},
            "amount": {"value": amount.0, "currency": amount.1},
            "balanceAccount": {"id": source_balance_account},
            "balancePlatform": "YOUR_BALANCE_PLATFORM",
            "category": "internal",
            "counterparty": {"balanceAccountId": counterparty_balance_account},
            "description": format!("Payout {reference}"),
            "direction": "outgoing",
            "reason": reason.unwrap_or("approved"),
            "reference": reference,
            "sequenceNumber": sequence_number,
            "status": status,
            "type": "internalTransfer",
        },
        "environment": "test",
        "timestamp": timestamp,
        "type": event_type,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use payouts_core::ports::webhook::ItemReference;

    const KEY: &str = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";
    const NOW: u64 = 1_677_583_625; // 2023-02-28T11:27:05Z

    fn event(status: &str, sequence: u64) -> String {
        transfer_event_json(
            "balancePlatform.transfer.updated",
            "T1",
            sequence,
            status,
            (status == "refused").then_some("notEnoughBalance"),
            "payout:b1:i1",
            "BA_PLATFORM",
            "BA_RECIPIENT",
            (1000, "EUR"),
            "2023-02-28T13:27:05+02:00",
        )
    }

    fn parse(body: &str) -> PaymentEvent {
        parse_event(body.as_bytes(), Some("BA_PLATFORM"), NOW).unwrap()
    }

    #[test]
    fn signs_and_verifies_over_the_raw_body_with_rotated_keys() {
        let body = event("booked", 3);
        let signature = sign(KEY, body.as_bytes()).unwrap();
        let keys = vec![Secret::from(KEY)];
        assert_eq!(
            verify_signature(Some(&signature), body.as_bytes(), &keys),
            Ok(())
        );
        let rotated = vec![
            Secret::from("0A0B0C0D"),
            Secret::from(KEY.to_lowercase().as_str()),
        ];
        assert_eq!(
            verify_signature(Some(&signature), body.as_bytes(), &rotated),
            Ok(())
        );
        assert_eq!(
            verify_signature(Some(&signature), format!("{body} ").as_bytes(), &keys),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_signature(Some(&signature), body.as_bytes(), &[Secret::from("0A0B")]),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_signature(None, body.as_bytes(), &keys),
            Err(WebhookError::MissingSignature)
        );
        assert_eq!(
            verify_signature(Some("not base64!"), body.as_bytes(), &keys),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(sign("not hex", b"{}"), None);
    }

    #[test]
    fn a_known_signature_matches() {
        // Computed independently, with Python's standard library:
        // base64.b64encode(hmac.new(bytes.fromhex("00010203"), b"{}", hashlib.sha256).digest())
        assert_eq!(
            sign("00010203", b"{}").as_deref(),
            Some("h+GOzGXT/nw5Rrqa7VWhuUVUWR2BY/t8SDSgHBE+1+M=")
        );
    }

    #[test]
    fn maps_the_outgoing_lifecycle() {
        let booked = parse(&event("booked", 3));
        assert_eq!(booked.kind, Some(PaymentEventKind::Paid));
        assert_eq!(booked.event_id, "T1:3");
        assert_eq!(booked.provider_payout_id.as_deref(), Some("T1"));
        assert_eq!(
            booked.reference,
            Some(ItemReference {
                batch_id: "b1".into(),
                item_id: "i1".into()
            })
        );
        for status in ["received", "authorised", "pendingApproval"] {
            assert_eq!(parse(&event(status, 1)).kind, None, "{status}");
        }
        assert_eq!(
            parse(&event("refused", 2)).kind,
            Some(PaymentEventKind::Failed {
                reason: "refused: notEnoughBalance".into()
            })
        );
        assert!(matches!(
            parse(&event("failed", 2)).kind,
            Some(PaymentEventKind::Failed { .. })
        ));
        assert_eq!(
            parse(&event("returned", 4)).kind,
            Some(PaymentEventKind::Reversed {
                reason: "returned: approved".into()
            })
        );
    }

    #[test]
    fn ignores_the_incoming_side_other_accounts_and_other_types() {
        let incoming = event("booked", 3).replace("\"outgoing\"", "\"incoming\"");
        assert_eq!(parse(&incoming).kind, None);
        let other_account = event("booked", 3).replace("BA_PLATFORM", "BA_SOMEONE_ELSE");
        assert_eq!(parse(&other_account).kind, None);
        assert_eq!(
            parse_event(other_account.as_bytes(), None, NOW)
                .unwrap()
                .kind,
            Some(PaymentEventKind::Paid),
            "without a configured account, the outgoing side is enough"
        );
        let bank = event("booked", 3).replace("\"internal\"", "\"bank\"");
        assert_eq!(parse(&bank).kind, None);
        let other_type = event("booked", 3).replace(
            "balancePlatform.transfer.updated",
            "balancePlatform.report.created",
        );
        assert_eq!(parse(&other_type).kind, None);
        let no_id = parse(
            r#"{"environment":"test","type":"balancePlatform.transfer.updated","data":{"status":"booked"}}"#,
        );
        assert_eq!((no_id.kind, no_id.provider_payout_id), (None, None));
        assert!(!no_id.event_id.is_empty());
        let foreign_reference =
            parse(&event("booked", 3).replace("payout:b1:i1", "Your reference"));
        assert_eq!(foreign_reference.reference, None);
        assert!(matches!(
            parse_event(b"not json", None, NOW),
            Err(WebhookError::Malformed(_))
        ));
    }

    #[test]
    fn timestamps_are_read_with_their_offset_and_old_ones_refused() {
        assert_eq!(unix_secs("2023-02-28T13:27:05+02:00"), Some(NOW));
        assert_eq!(unix_secs("2023-02-28T11:27:05Z"), Some(NOW));
        assert_eq!(unix_secs("2023-02-28T11:27:05.250Z"), Some(NOW));
        assert_eq!(unix_secs("2023-02-28T06:27:05-05:00"), Some(NOW));
        assert_eq!(unix_secs("yesterday"), None);
        let body = event("booked", 3);
        assert!(parse_event(body.as_bytes(), None, NOW + 30 * 24 * 3600).is_ok());
        assert!(matches!(
            parse_event(body.as_bytes(), None, NOW + 32 * 24 * 3600),
            Err(WebhookError::StaleTimestamp { .. })
        ));
    }
}
