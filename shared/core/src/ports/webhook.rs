//! The webhook port: a PSP's signed notification, verified by that PSP's adapter and turned
//! into normalized [`PaymentEvent`]s that settlement applies (`docs/design.md#webhooks-and-settlement`).

/// The item an event is about, as the executor sent it to the PSP in the transfer's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemReference {
    pub batch_id: String,
    pub item_id: String,
}

/// What an event means for an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentEventKind {
    /// The money reached the recipient (what that means per PSP is in the README's event table).
    Paid,
    /// The transfer failed; the reason is the PSP's.
    Failed { reason: String },
    /// A paid transfer was taken back; recorded on the item, never re-paid automatically.
    Reversed { reason: String },
}

/// A verified webhook event, normalized across PSPs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentEvent {
    /// The PSP's event id: each is applied at most once.
    pub event_id: String,
    /// The PSP's event type, as sent (`transfer.created`, …).
    pub event_type: String,
    /// What it means for an item; `None` for events that move no item (acknowledged, ignored).
    pub kind: Option<PaymentEventKind>,
    /// The PSP's transfer id, the fallback way to find the item.
    pub provider_payout_id: Option<String>,
    /// The item, from the metadata the executor sent with the transfer.
    pub reference: Option<ItemReference>,
}

/// One webhook request exactly as received: signatures cover the raw bytes.
#[derive(Debug, Clone, Copy)]
pub struct WebhookRequest<'a> {
    pub body: &'a [u8],
    pub headers: &'a http::HeaderMap,
    /// Unix time (seconds) to check the signature's freshness against.
    pub now_secs: u64,
}

/// How the webhook function answers a PSP once every event is settled: PSPs differ (Stripe
/// reads only the status; others expect a fixed body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acknowledgement {
    /// The function's own JSON summary of what each event did.
    Summary,
    /// Exactly this body, with this content type.
    Fixed {
        content_type: &'static str,
        body: String,
    },
}

/// A verified request: its events (a PSP may batch several in one notification) and the
/// answer the PSP expects once they are settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedWebhook {
    pub events: Vec<PaymentEvent>,
    pub acknowledgement: Acknowledgement,
}

impl VerifiedWebhook {
    /// One event, acknowledged with the function's JSON summary.
    pub fn single(event: PaymentEvent) -> Self {
        VerifiedWebhook {
            events: vec![event],
            acknowledgement: Acknowledgement::Summary,
        }
    }
}

/// Why a webhook request is refused (HTTP 400, or 500 when not configured); nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("missing signature header")]
    MissingSignature,
    #[error("signature does not match")]
    BadSignature,
    #[error(
        "signature timestamp is {age_secs} s from now, outside the {tolerance_secs} s tolerance"
    )]
    StaleTimestamp { age_secs: u64, tolerance_secs: u64 },
    #[error("malformed event: {0}")]
    Malformed(String),
    /// The deployment has no secret for this provider: every event is refused until it is set.
    #[error("webhook secret for {provider} is not configured")]
    NotConfigured { provider: String },
    /// The secret could not be read just now (Secrets Manager unreachable): the PSP should
    /// redeliver, nothing was decided about the event.
    #[error("webhook secret unavailable: {0}")]
    SecretUnavailable(String),
}

impl WebhookError {
    /// A short, stable name of the reason (a metric dimension, a log field).
    pub fn code(&self) -> &'static str {
        match self {
            WebhookError::MissingSignature => "missing_signature",
            WebhookError::BadSignature => "bad_signature",
            WebhookError::StaleTimestamp { .. } => "stale_timestamp",
            WebhookError::Malformed(_) => "malformed",
            WebhookError::NotConfigured { .. } => "not_configured",
            WebhookError::SecretUnavailable(_) => "secret_unavailable",
        }
    }
}

/// Verifies a PSP's webhook requests with its scheme and secrets, and normalizes their events.
/// Async, since some PSPs verify through an API call.
#[async_trait::async_trait]
pub trait WebhookVerifier: Send + Sync {
    async fn verify_webhook(
        &self,
        request: WebhookRequest<'_>,
    ) -> Result<VerifiedWebhook, WebhookError>;
}
