//! Stripe's webhooks: its signing scheme (`Stripe-Signature: t=…,v1=…`, which the sandbox PSP
//! uses too so local runs exercise the whole path) and the mapping of its events onto the
//! core's [`PaymentEvent`]s.

use hmac::{Hmac, Mac};
use payouts_config::Secret;
use payouts_core::ports::payment::{METADATA_BATCH_ID, METADATA_ITEM_ID};
use payouts_core::ports::webhook::{
    ItemReference, PaymentEvent, PaymentEventKind, VerifiedWebhook, WebhookError, WebhookRequest,
};
use serde::Deserialize;
use sha2::Sha256;

/// Seconds a signed timestamp stays acceptable (Stripe's default tolerance).
pub const SIGNATURE_TOLERANCE_SECS: u64 = 300;

/// The header carrying Stripe-scheme signatures.
pub const SIGNATURE_HEADER: &str = "stripe-signature";

type HmacSha256 = Hmac<Sha256>;

/// The `v1` signature of `body` at `timestamp` under `secret`: HMAC-SHA256 of `t.body`, hex.
pub fn sign(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A full `Stripe-Signature` header value for `body` signed now-ish at `timestamp`.
pub fn signature_header(secret: &str, timestamp: u64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", sign(secret, timestamp, body))
}

/// Verifies a `Stripe-Signature` header over the raw `body`: any `v1` entry may match any of
/// `secrets` (rotation), compared in constant time, and `t` must be within the tolerance of `now`.
pub fn verify_signature(
    header: Option<&str>,
    body: &[u8],
    secrets: &[Secret],
    now_secs: u64,
) -> Result<(), WebhookError> {
    let header = header
        .filter(|h| !h.trim().is_empty())
        .ok_or(WebhookError::MissingSignature)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<u64>().ok(),
            Some(("v1", v)) => signatures.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(WebhookError::BadSignature)?;
    if signatures.is_empty() {
        return Err(WebhookError::BadSignature);
    }
    let matched = secrets
        .iter()
        .filter(|s| !s.expose().is_empty())
        .any(|secret| {
            signatures.iter().any(|signature| {
                let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes())
                    .expect("HMAC accepts any key length");
                mac.update(timestamp.to_string().as_bytes());
                mac.update(b".");
                mac.update(body);
                mac.verify_slice(signature).is_ok()
            })
        });
    if !matched {
        return Err(WebhookError::BadSignature);
    }
    let age_secs = now_secs.abs_diff(timestamp);
    if age_secs > SIGNATURE_TOLERANCE_SECS {
        return Err(WebhookError::StaleTimestamp {
            age_secs,
            tolerance_secs: SIGNATURE_TOLERANCE_SECS,
        });
    }
    Ok(())
}

/// Verifies and normalizes a request signed with Stripe's scheme (`Stripe-Signature` header),
/// as both the Stripe adapter and the sandbox PSP do, each with its own secrets.
pub fn verify_stripe_scheme(
    provider: &str,
    secrets: &[Secret],
    request: WebhookRequest<'_>,
) -> Result<VerifiedWebhook, WebhookError> {
    if secrets.is_empty() {
        return Err(WebhookError::NotConfigured {
            provider: provider.to_owned(),
        });
    }
    let header = request
        .headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok());
    verify_signature(header, request.body, secrets, request.now_secs)?;
    parse_stripe_event(request.body).map(VerifiedWebhook::single)
}

#[derive(Deserialize)]
struct StripeEvent {
    id: String,
    /// Set on events of a connected account (Connect): never about the platform's transfers.
    #[serde(default)]
    account: Option<String>,
    #[serde(rename = "type")]
    event_type: String,
    data: StripeEventData,
}

#[derive(Deserialize)]
struct StripeEventData {
    object: StripeObject,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct StripeObject {
    id: Option<String>,
    object: Option<String>,
    reversed: Option<bool>,
    amount_reversed: Option<i64>,
    failure_code: Option<String>,
    failure_message: Option<String>,
    metadata: std::collections::HashMap<String, serde_json::Value>,
}

/// Normalizes a Stripe-shaped event (Stripe's own, and the sandbox's). The mapping, and why,
/// is the README's webhook table:
/// - `transfer.created` → paid: a Connect transfer moves the funds into the recipient's Stripe
///   balance when it is created; there is no later per-transfer confirmation.
/// - `transfer.reversed`, and `transfer.updated` with `reversed: true` → reversed.
/// - `transfer.paid` / `transfer.failed` (API versions before 2017, still sent to old
///   endpoints, and by the sandbox) → paid / failed with `failure_message`.
/// - anything else (including the account-level `payout.paid`/`payout.failed`, which cannot be
///   tied to one item) → acknowledged, no item moves.
pub fn parse_stripe_event(body: &[u8]) -> Result<PaymentEvent, WebhookError> {
    let event: StripeEvent =
        serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    if event.id.is_empty() {
        return Err(WebhookError::Malformed("event id is empty".into()));
    }
    let object = event.data.object;
    // A connected account's own events (`account` set) never settle the platform's transfers.
    let is_transfer = object.object.as_deref() == Some("transfer") && event.account.is_none();
    let kind = match event.event_type.as_str() {
        "transfer.created" | "transfer.paid" if is_transfer => Some(PaymentEventKind::Paid),
        "transfer.failed" if is_transfer => Some(PaymentEventKind::Failed {
            reason: match (&object.failure_code, &object.failure_message) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (None, Some(message)) => message.clone(),
                (Some(code), None) => code.clone(),
                (None, None) => "transfer failed (no reason given by the PSP)".to_owned(),
            },
        }),
        "transfer.reversed" if is_transfer => Some(reversal(&object)),
        "transfer.updated" if is_transfer && object.reversed == Some(true) => {
            Some(reversal(&object))
        }
        _ => None,
    };
    let text = |key: &str| {
        object
            .metadata
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let reference = match (text(METADATA_BATCH_ID), text(METADATA_ITEM_ID)) {
        (Some(batch_id), Some(item_id)) => Some(ItemReference { batch_id, item_id }),
        _ => None,
    };
    Ok(PaymentEvent {
        event_id: event.id,
        event_type: event.event_type,
        provider_payout_id: if is_transfer { object.id.clone() } else { None },
        kind,
        reference,
    })
}

/// A Stripe-shaped transfer event, as Stripe (and the sandbox) send them: for the sandbox's
/// webhooks, local runs and tests. `failure_message` is set on `transfer.failed` events.
pub fn transfer_event_json(
    event_id: &str,
    event_type: &str,
    transfer_id: &str,
    reference: &ItemReference,
    failure_message: Option<&str>,
) -> String {
    serde_json::json!({
        "id": event_id,
        "object": "event",
        "type": event_type,
        "data": {"object": {
            "id": transfer_id,
            "object": "transfer",
            "reversed": event_type == "transfer.reversed",
            "failure_message": failure_message,
            "metadata": {METADATA_BATCH_ID: reference.batch_id, METADATA_ITEM_ID: reference.item_id},
        }},
    })
    .to_string()
}

fn reversal(object: &StripeObject) -> PaymentEventKind {
    PaymentEventKind::Reversed {
        reason: match object.amount_reversed {
            Some(amount) => format!("transfer reversed ({amount} minor units)"),
            None => "transfer reversed".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";

    #[test]
    fn verifies_its_own_signatures_and_rotated_secrets() {
        let body = br#"{"id":"evt_1"}"#;
        let header = signature_header(SECRET, 1_000, body);
        let secrets = vec![Secret::from(SECRET)];
        assert_eq!(
            verify_signature(Some(&header), body, &secrets, 1_100),
            Ok(())
        );
        let rotated = vec![Secret::from("whsec_new"), Secret::from(SECRET)];
        assert_eq!(
            verify_signature(Some(&header), body, &rotated, 1_100),
            Ok(())
        );
        let two_v1 = format!(
            "t=1000,v1={},v1={}",
            sign("whsec_other", 1_000, body),
            sign(SECRET, 1_000, body)
        );
        assert_eq!(
            verify_signature(Some(&two_v1), body, &secrets, 1_000),
            Ok(())
        );
    }

    #[test]
    fn refuses_bad_missing_and_stale_signatures() {
        let body = br#"{"id":"evt_1"}"#;
        let secrets = vec![Secret::from(SECRET)];
        let header = signature_header(SECRET, 1_000, body);
        assert_eq!(
            verify_signature(None, body, &secrets, 1_000),
            Err(WebhookError::MissingSignature)
        );
        assert_eq!(
            verify_signature(Some(&header), b"{}", &secrets, 1_000),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_signature(Some(&header), body, &[Secret::from("whsec_wrong")], 1_000),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_signature(Some(&header), body, &secrets, 1_301),
            Err(WebhookError::StaleTimestamp {
                age_secs: 301,
                tolerance_secs: 300
            })
        );
        assert_eq!(
            verify_signature(Some("t=1000"), body, &secrets, 1_000),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_signature(Some(&header), body, &[], 1_000),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn maps_stripe_transfer_events() {
        let event = |kind: &str, extra: &str| {
            format!(
                r#"{{"id":"evt_9","object":"event","type":"{kind}","data":{{"object":{{"id":"tr_1","object":"transfer"{extra},"metadata":{{"batch_id":"b1","item_id":"i1"}}}}}}}}"#
            )
        };
        let created = parse_stripe_event(event("transfer.created", "").as_bytes()).unwrap();
        assert_eq!(created.kind, Some(PaymentEventKind::Paid));
        assert_eq!(created.provider_payout_id.as_deref(), Some("tr_1"));
        assert_eq!(
            created.reference,
            Some(ItemReference {
                batch_id: "b1".into(),
                item_id: "i1".into()
            })
        );
        let failed = parse_stripe_event(
            event("transfer.failed", r#","failure_message":"account closed""#).as_bytes(),
        )
        .unwrap();
        assert_eq!(
            failed.kind,
            Some(PaymentEventKind::Failed {
                reason: "account closed".into()
            })
        );
        let reversed =
            parse_stripe_event(event("transfer.reversed", r#","amount_reversed":500"#).as_bytes())
                .unwrap();
        assert!(matches!(
            reversed.kind,
            Some(PaymentEventKind::Reversed { .. })
        ));
        let updated =
            parse_stripe_event(event("transfer.updated", r#","reversed":false"#).as_bytes())
                .unwrap();
        assert_eq!(updated.kind, None);
        let connected = parse_stripe_event(
            event("transfer.created", "")
                .replacen(
                    r#""object":"event","#,
                    r#""object":"event","account":"acct_9","#,
                    1,
                )
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            (connected.kind, connected.provider_payout_id),
            (None, None),
            "a connected account's event settles nothing"
        );
        let payout = br#"{"id":"evt_2","type":"payout.paid","account":"acct_1","data":{"object":{"id":"po_1","object":"payout"}}}"#;
        let payout = parse_stripe_event(payout).unwrap();
        assert_eq!((payout.kind, payout.provider_payout_id), (None, None));
        assert!(matches!(
            parse_stripe_event(b"not json"),
            Err(WebhookError::Malformed(_))
        ));
        assert!(matches!(
            parse_stripe_event(br#"{"id":"evt_3"}"#),
            Err(WebhookError::Malformed(_))
        ));
    }
}
