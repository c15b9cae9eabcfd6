//! `POST /webhooks/{provider}`: verifies a PSP's signed event with that provider's adapter and
//! settles it. Answers 2xx for applied, duplicate and ignored events; 400 with a short reason
//! for anything that must not be retried (nothing is written); 5xx only for transient storage
//! errors, so the PSP redelivers.

use http::{HeaderMap, Method, StatusCode};
use payouts_shared::executor::{ConfigError, adapters_from_env, env_required};
use payouts_shared::psp::PaymentAdapterFactory;
use payouts_shared::psp::webhook::WebhookError;
use payouts_shared::settlement::{SettlementOutcome, apply_payment_event};
use payouts_shared::store::PayoutStore;
use serde_json::json;
use tracing::{error, info, warn};

/// Bodies above this are refused unread (Stripe's events are a few KiB).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Everything the handler needs, built once per Lambda instance.
pub struct WebhookApp {
    pub store: PayoutStore,
    pub adapters: PaymentAdapterFactory,
}

impl WebhookApp {
    /// Builds the DynamoDB client and the adapters (with their webhook secrets) from the environment.
    pub async fn from_env() -> Result<Self, ConfigError> {
        let aws = aws_config::load_from_env().await;
        let client = aws_sdk_dynamodb::Client::new(&aws);
        // The webhook never reads user settings; the store only needs the payouts table.
        let store = PayoutStore::new(client, env_required("PAYOUTS_TABLE")?, "");
        Ok(WebhookApp {
            store,
            adapters: adapters_from_env()?,
        })
    }
}

/// The HTTP answer: a status and a small JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookResponse {
    pub status: StatusCode,
    pub body: serde_json::Value,
}

impl WebhookResponse {
    fn new(status: StatusCode, body: serde_json::Value) -> Self {
        WebhookResponse { status, body }
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
    let event = match adapter.verify_webhook(body, headers, now_secs) {
        Ok(event) => event,
        Err(err @ WebhookError::NotConfigured { .. }) => {
            error!(provider, error = %err, "webhook secret missing: every event is being refused");
            return WebhookResponse::refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                "webhook verification is not configured",
            );
        }
        Err(err) => return WebhookResponse::refused(StatusCode::BAD_REQUEST, err.to_string()),
    };
    info!(provider, event_id = %event.event_id, event_type = %event.event_type, "webhook verified");
    match apply_payment_event(&app.store, provider, &event).await {
        Ok(SettlementOutcome::Applied {
            batch_id,
            item_id,
            batch_completion,
        }) => WebhookResponse::new(
            StatusCode::OK,
            json!({
                "result": "applied", "eventId": event.event_id, "batchId": batch_id, "itemId": item_id,
                "batchStatus": batch_completion.map(|c| c.status),
            }),
        ),
        Ok(SettlementOutcome::Duplicate) => WebhookResponse::new(
            StatusCode::OK,
            json!({ "result": "duplicate", "eventId": event.event_id }),
        ),
        Ok(SettlementOutcome::Ignored { reason }) => WebhookResponse::new(
            StatusCode::OK,
            json!({ "result": "ignored", "eventId": event.event_id, "reason": reason }),
        ),
        Err(err) => {
            error!(provider, event_id = %event.event_id, error = %err, "storage error; the PSP will redeliver");
            WebhookResponse::new(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "error": "temporarily unavailable, retry" }),
            )
        }
    }
}
