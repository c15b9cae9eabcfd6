//! `POST /webhooks/{provider}`: verifies a PSP's signed notification with that provider's
//! adapter and settles each of its events (`docs/design.md#webhooks-and-settlement`). Answers
//! 2xx for applied, duplicate and ignored events (with the acknowledgement the PSP expects);
//! 400 with a short reason for anything that must not be retried (nothing is written); 5xx only
//! for transient storage errors, so the PSP redelivers and the redelivery is safe.

use http::{HeaderMap, Method, StatusCode};
use payouts_core::clock::Clock;
use payouts_core::ports::repository::PayoutRepository;
use payouts_core::ports::webhook::{Acknowledgement, PaymentEvent, WebhookError, WebhookRequest};
use payouts_core::registry::PaymentAdapterRegistry;
use payouts_core::settlement::{SettlementOutcome, apply_payment_event};
use serde_json::json;
use std::sync::Arc;
use tracing::{error, info, warn};

/// Bodies above this are refused unread (Stripe's events are a few KiB).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Everything the handler needs, built once per Lambda instance (by `main.rs`).
pub struct WebhookApp {
    pub store: Arc<dyn PayoutRepository>,
    pub adapters: PaymentAdapterRegistry,
    pub clock: Arc<dyn Clock>,
}

/// The HTTP answer: a status, the JSON summary of what happened, and how the PSP wants it
/// acknowledged (the summary itself, or a fixed body of its own).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookResponse {
    pub status: StatusCode,
    pub body: serde_json::Value,
    pub acknowledgement: Acknowledgement,
}

impl WebhookResponse {
    fn new(status: StatusCode, body: serde_json::Value) -> Self {
        WebhookResponse {
            status,
            body,
            acknowledgement: Acknowledgement::Summary,
        }
    }

    /// The content type and bytes to send.
    pub fn rendered(&self) -> (&'static str, String) {
        match &self.acknowledgement {
            Acknowledgement::Fixed { content_type, body } if self.status.is_success() => {
                (content_type, body.clone())
            }
            _ => ("application/json", self.body.to_string()),
        }
    }

    fn refused(status: StatusCode, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        warn!(status = status.as_u16(), %reason, "webhook refused; nothing written");
        WebhookResponse::new(status, json!({ "error": reason }))
    }
}

/// Handles one request. `path` is the request path (`/webhooks/stripe`), `body` the raw bytes
/// exactly as received (signatures cover them), `now_secs` the Unix time.
pub async fn handle_webhook(
    app: &WebhookApp,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
    now_secs: u64,
) -> WebhookResponse {
    let Some(provider) = path
        .trim_end_matches('/')
        .strip_prefix("/webhooks/")
        .filter(|p| !p.contains('/'))
    else {
        return WebhookResponse::refused(
            StatusCode::NOT_FOUND,
            "no such route; POST /webhooks/{provider}",
        );
    };
    if method != Method::POST {
        return WebhookResponse::refused(StatusCode::METHOD_NOT_ALLOWED, "use POST");
    }
    if body.len() > MAX_BODY_BYTES {
        return WebhookResponse::refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body over {MAX_BODY_BYTES} bytes"),
        );
    }
    let adapter = match app.adapters.adapter_for(provider) {
        Ok(adapter) => adapter,
        Err(_) => {
            return WebhookResponse::refused(
                StatusCode::BAD_REQUEST,
                format!("unknown provider {provider:?}"),
            );
        }
    };
    let request = WebhookRequest {
        body,
        headers,
        now_secs,
    };
    let verified = match adapter.verify_webhook(request).await {
        Ok(verified) => verified,
        Err(err @ WebhookError::NotConfigured { .. }) => {
            error!(provider, error = %err, "webhook secret missing: every event is being refused");
            return WebhookResponse::refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                "webhook verification is not configured",
            );
        }
        Err(err) => return WebhookResponse::refused(StatusCode::BAD_REQUEST, err.to_string()),
    };
    let mut results = Vec::with_capacity(verified.events.len());
    for event in &verified.events {
        info!(provider, event_id = %event.event_id, event_type = %event.event_type, "webhook verified");
        match settle(app, provider, event).await {
            Some(result) => results.push(result),
            None => {
                return WebhookResponse::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({ "error": "temporarily unavailable, retry" }),
                );
            }
        }
    }
    let body = match <[serde_json::Value; 1]>::try_from(results) {
        Ok([single]) => single,
        Err(results) => json!({ "result": "several", "events": results }),
    };
    WebhookResponse {
        status: StatusCode::OK,
        body,
        acknowledgement: verified.acknowledgement,
    }
}

/// Settles one verified event; its summary, or `None` on a storage error (the PSP redelivers).
async fn settle(
    app: &WebhookApp,
    provider: &str,
    event: &PaymentEvent,
) -> Option<serde_json::Value> {
    match apply_payment_event(app.store.as_ref(), app.clock.as_ref(), provider, event).await {
        Ok(SettlementOutcome::Applied {
            batch_id,
            item_id,
            batch_completion,
        }) => Some(json!({
            "result": "applied", "eventId": event.event_id, "batchId": batch_id, "itemId": item_id,
            "batchStatus": batch_completion.map(|c| c.status.as_str()),
        })),
        Ok(SettlementOutcome::Duplicate) => {
            Some(json!({ "result": "duplicate", "eventId": event.event_id }))
        }
        Ok(SettlementOutcome::Ignored { reason }) => {
            Some(json!({ "result": "ignored", "eventId": event.event_id, "reason": reason }))
        }
        Ok(SettlementOutcome::Held { batch_id, item_id }) => Some(json!({
            "result": "held", "eventId": event.event_id, "batchId": batch_id, "itemId": item_id,
            "reason": "the item does not record this transfer yet; applied when it does",
        })),
        Err(err) => {
            error!(provider, event_id = %event.event_id, error = %err, "storage error; the PSP will redeliver");
            None
        }
    }
}
