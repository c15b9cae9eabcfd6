//! `POST /webhooks/{provider}`: verifies a PSP's signed notification with that provider's
//! adapter and settles each of its events (`docs/design.md#webhooks-and-settlement`). Answers
//! 2xx for applied, duplicate and ignored events (with the acknowledgement the PSP expects);
//! 400 with a short reason for anything that must not be retried (nothing is written); 5xx only
//! for transient storage errors, so the PSP redelivers and the redelivery is safe.

use http::{HeaderMap, Method, StatusCode};
use payouts_core::clock::Clock;
use payouts_core::metrics::{MetricsLine, MetricsSink, StdoutMetrics};
use payouts_core::ports::repository::PayoutRepository;
use payouts_core::ports::webhook::{
    Acknowledgement, PaymentEvent, PaymentEventKind, WebhookError, WebhookRequest,
};
use payouts_core::registry::PaymentAdapterRegistry;
use payouts_core::settlement::{SettlementOutcome, apply_payment_event};
use serde_json::json;
use std::sync::Arc;
use tracing::{error, info, warn};

/// Bodies above this are refused unread (Stripe's events are a few KiB).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The function's name in its metrics (dimension `Function`).
pub const FUNCTION: &str = "psp-webhook";

/// Every metric this function emits (namespace `Payouts`): what the template's alarms and
/// dashboard may use, checked by the template test.
pub const WEBHOOK_METRICS: &[&str] = &[
    "WebhookRejected",
    "EventsVerified",
    "EventsApplied",
    "EventsDuplicate",
    "EventsIgnored",
    "EventsHeld",
    "ItemsPaid",
    "ItemsFailedAtPsp",
    "ItemsReversed",
    "WebhookStorageErrors",
];

/// Everything the handler needs, built once per Lambda instance (by `main.rs`).
pub struct WebhookApp {
    pub store: Arc<dyn PayoutRepository>,
    pub adapters: PaymentAdapterRegistry,
    pub clock: Arc<dyn Clock>,
    /// Where each request's metrics go (stdout, as EMF, in Lambda).
    pub metrics: Arc<dyn MetricsSink>,
}

impl WebhookApp {
    /// An app whose metrics go to stdout.
    pub fn new(
        store: Arc<dyn PayoutRepository>,
        adapters: PaymentAdapterRegistry,
        clock: Arc<dyn Clock>,
    ) -> Self {
        WebhookApp {
            store,
            adapters,
            clock,
            metrics: Arc::new(StdoutMetrics),
        }
    }

    /// Sends the metrics to `sink` instead of stdout.
    pub fn with_metrics(mut self, sink: Arc<dyn MetricsSink>) -> Self {
        self.metrics = sink;
        self
    }
}

/// What one request came to, counted for its metrics line.
#[derive(Debug, Default)]
struct Tally {
    provider: Option<String>,
    rejected: Option<&'static str>,
    verified: u64,
    applied: u64,
    duplicate: u64,
    ignored: u64,
    held: u64,
    paid: u64,
    failed: u64,
    reversed: u64,
    storage_errors: u64,
}

impl Tally {
    fn rejected(code: &'static str) -> Self {
        Tally {
            rejected: Some(code),
            ..Tally::default()
        }
    }

    fn line(&self, now_ms: u64) -> MetricsLine {
        let mut line = MetricsLine::new(FUNCTION, now_ms);
        if let Some(provider) = &self.provider {
            line = line.by("Provider", provider);
        }
        if let Some(reason) = self.rejected {
            return line.by("Reason", reason).count("WebhookRejected", 1);
        }
        line.count("EventsVerified", self.verified)
            .count("EventsApplied", self.applied)
            .count("EventsDuplicate", self.duplicate)
            .count("EventsIgnored", self.ignored)
            .count("EventsHeld", self.held)
            .count("ItemsPaid", self.paid)
            .count("ItemsFailedAtPsp", self.failed)
            .count("ItemsReversed", self.reversed)
            .count("WebhookStorageErrors", self.storage_errors)
    }
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

    /// 503: nothing was decided about the request; the PSP redelivers it.
    fn unavailable() -> Self {
        WebhookResponse::new(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "error": "temporarily unavailable, retry" }),
        )
    }

    fn refused(status: StatusCode, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        warn!(status = status.as_u16(), %reason, "webhook refused; nothing written");
        WebhookResponse::new(status, json!({ "error": reason }))
    }
}

/// Handles one request. `path` is the request path (`/webhooks/stripe`), `body` the raw bytes
/// exactly as received (signatures cover them), `now_secs` the Unix time. Emits one metrics
/// line for the request.
pub async fn handle_webhook(
    app: &WebhookApp,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
    now_secs: u64,
) -> WebhookResponse {
    let (response, tally) = answer(app, method, path, headers, body, now_secs).await;
    app.metrics.emit(&tally.line(now_secs * 1000));
    response
}

async fn answer(
    app: &WebhookApp,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
    now_secs: u64,
) -> (WebhookResponse, Tally) {
    let Some(provider) = path
        .trim_end_matches('/')
        .strip_prefix("/webhooks/")
        .filter(|p| !p.contains('/'))
    else {
        let refused = WebhookResponse::refused(
            StatusCode::NOT_FOUND,
            "no such route; POST /webhooks/{provider}",
        );
        return (refused, Tally::rejected("no_route"));
    };
    if method != Method::POST {
        let refused = WebhookResponse::refused(StatusCode::METHOD_NOT_ALLOWED, "use POST");
        return (refused, Tally::rejected("method"));
    }
    if body.len() > MAX_BODY_BYTES {
        let refused = WebhookResponse::refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body over {MAX_BODY_BYTES} bytes"),
        );
        return (refused, Tally::rejected("too_large"));
    }
    let adapter = match app.adapters.adapter_for(provider) {
        Ok(adapter) => adapter,
        Err(_) => {
            let refused = WebhookResponse::refused(
                StatusCode::BAD_REQUEST,
                format!("unknown provider {provider:?}"),
            );
            return (refused, Tally::rejected("unknown_provider"));
        }
    };
    let mut tally = Tally {
        provider: Some(provider.to_owned()),
        ..Tally::default()
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
            tally.rejected = Some(err.code());
            let refused = WebhookResponse::refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                "webhook verification is not configured",
            );
            return (refused, tally);
        }
        Err(err @ WebhookError::SecretUnavailable(_)) => {
            error!(provider, error = %err, "webhook secret could not be read: the PSP will redeliver");
            tally.rejected = Some(err.code());
            let unavailable = WebhookResponse::unavailable();
            return (unavailable, tally);
        }
        Err(err) => {
            tally.rejected = Some(err.code());
            return (
                WebhookResponse::refused(StatusCode::BAD_REQUEST, err.to_string()),
                tally,
            );
        }
    };
    let mut results = Vec::with_capacity(verified.events.len());
    for event in &verified.events {
        info!(provider, event_id = %event.event_id, event_type = %event.event_type, "webhook verified");
        tally.verified += 1;
        match settle(app, provider, event, &mut tally).await {
            Some(result) => results.push(result),
            None => {
                tally.storage_errors += 1;
                let unavailable = WebhookResponse::unavailable();
                return (unavailable, tally);
            }
        }
    }
    let body = match <[serde_json::Value; 1]>::try_from(results) {
        Ok([single]) => single,
        Err(results) => json!({ "result": "several", "events": results }),
    };
    let response = WebhookResponse {
        status: StatusCode::OK,
        body,
        acknowledgement: verified.acknowledgement,
    };
    (response, tally)
}

/// Settles one verified event; its summary, or `None` on a storage error (the PSP redelivers).
async fn settle(
    app: &WebhookApp,
    provider: &str,
    event: &PaymentEvent,
    tally: &mut Tally,
) -> Option<serde_json::Value> {
    let outcome =
        apply_payment_event(app.store.as_ref(), app.clock.as_ref(), provider, event).await;
    match &outcome {
        Ok(SettlementOutcome::Applied { .. }) => {
            tally.applied += 1;
            match &event.kind {
                Some(PaymentEventKind::Paid) => tally.paid += 1,
                Some(PaymentEventKind::Failed { .. }) => tally.failed += 1,
                Some(PaymentEventKind::Reversed { .. }) => tally.reversed += 1,
                None => {}
            }
        }
        Ok(SettlementOutcome::Duplicate) => tally.duplicate += 1,
        Ok(SettlementOutcome::Ignored { .. }) => tally.ignored += 1,
        Ok(SettlementOutcome::Held { .. }) => tally.held += 1,
        Err(_) => {}
    }
    match outcome {
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
