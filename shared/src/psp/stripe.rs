//! Stripe Connect transfers over HTTP (`provider = "stripe"`): a thin client on hyper 1 + rustls
//! (the HTTP stack the AWS SDK already builds), with the stable idempotency key on every
//! transfer, Stripe's answers classified by what the executor must do next, a client-side
//! request pacer, and lookups by reference for reconciliation.
//!
//! Classification (Stripe API v1 semantics: the first result of a request that began executing
//! is stored under its idempotency key, 400s and 500s included, and replayed for at least 24 h;
//! the rate limiter and most parameter validation run before that layer):
//!
//! | Stripe's answer | [`PaymentError`] | why |
//! |---|---|---|
//! | network error, timeout | `OutcomeUnknown` | a retry with the same key replays the original result |
//! | 409 (`idempotency_key_in_use`) | `Transient` | the same key is still executing; try later |
//! | 429 | `Transient` + `Retry-After` | not stored; the whole adapter also pauses |
//! | 401 | `Transient` | our key is wrong: a configuration problem, never the item's fault |
//! | 5xx | `NeedsReconciliation` | stored under the key and replayed: look the transfer up instead |
//! | `idempotency_error` (any status) | `Rejected` (`idempotency_error`), logged at ERROR | the key was used with other parameters |
//! | 400, 402, 403, other 4xx | `Rejected` with Stripe's `error.code` and `message` | permanent |

use super::rate_limit::RateLimiter;
use super::webhook::{self, PaymentEvent, WebhookError};
use super::{
    IDEMPOTENCY_ERROR_CODE, PaymentAdapter, PaymentError, TransferReceipt, TransferRequest,
};
use crate::executor::{ConfigError, env_seconds, env_value};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, warn};

/// The provider name batches use to pay through Stripe.
pub const STRIPE_PROVIDER: &str = "stripe";

/// The API version every request pins (`Stripe-Version`), so an account-level upgrade never
/// changes what this code reads. Transfers' shape is checked against Stripe's OpenAPI
/// description of this version.
pub const STRIPE_API_VERSION: &str = "2025-09-30.clover";

pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";

/// Default request starts per second: under test mode's ~25/s per endpoint (live allows ~100/s).
pub const DEFAULT_MAX_REQUESTS_PER_SECOND: u32 = 20;

/// Default bound on one HTTP exchange (connect, send, whole answer); under the executor's
/// default PSP timeout, so the adapter's own classification is what the executor sees.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Default wait after the last call under a key before a lookup by reference is trusted.
pub const DEFAULT_SETTLE_DELAY: Duration = Duration::from_secs(10);

/// Stripe keeps idempotency keys at least this long.
pub const KEY_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// A key is sent again only this long after its first use; past it (an hour's margin under
/// [`KEY_RETENTION`]) the item is reconciled by lookup first.
pub const KEY_REUSE_WINDOW: Duration = Duration::from_secs(23 * 3600);

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest a `Retry-After` pauses the whole adapter.
const MAX_RETRY_AFTER_PAUSE: Duration = Duration::from_secs(30);
const LIST_PAGE_LIMIT: &str = "100";
/// One item's transfer group holds one transfer; more pages than this is a fault.
const MAX_LIST_PAGES: usize = 10;
const USER_AGENT: &str = concat!("payouts/", env!("CARGO_PKG_VERSION"));

/// The `transfer_group` of an item's transfers, the same for every key generation: what
/// reconciliation lists by.
pub fn transfer_group(batch_id: &str, item_id: &str) -> String {
    format!("payout:{batch_id}:{item_id}")
}

/// The Stripe adapter's settings. `Debug` never shows the secrets.
#[derive(Clone)]
pub struct StripeConfig {
    /// `STRIPE_API_BASE`; `http://` only on loopback (a local fake Stripe).
    pub api_base: String,
    /// `STRIPE_SECRET_KEY`.
    pub secret_key: String,
    /// `STRIPE_WEBHOOK_SECRET`, comma-separated during a rotation.
    pub webhook_secrets: Vec<String>,
    /// `STRIPE_MAX_REQUESTS_PER_SECOND`: request starts per second, for this process.
    pub max_requests_per_second: u32,
    /// `STRIPE_TIMEOUT_SECONDS`: bound on one HTTP exchange.
    pub request_timeout: Duration,
    /// `STRIPE_RECONCILE_SETTLE_SECONDS`: see [`PaymentAdapter::reconciliation_settle_delay`].
    pub settle_delay: Duration,
}

impl fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeConfig")
            .field("api_base", &self.api_base)
            .field("secret_key", &"<redacted>")
            .field(
                "webhook_secrets",
                &format_args!("<{} redacted>", self.webhook_secrets.len()),
            )
            .field("max_requests_per_second", &self.max_requests_per_second)
            .field("request_timeout", &self.request_timeout)
            .field("settle_delay", &self.settle_delay)
            .finish()
    }
}

impl StripeConfig {
    /// The defaults, with `secret_key`.
    pub fn new(secret_key: impl Into<String>) -> Self {
        StripeConfig {
            api_base: DEFAULT_API_BASE.to_owned(),
            secret_key: secret_key.into(),
            webhook_secrets: Vec::new(),
            max_requests_per_second: DEFAULT_MAX_REQUESTS_PER_SECOND,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            settle_delay: DEFAULT_SETTLE_DELAY,
        }
    }

    /// The settings from the environment; `None` when neither `STRIPE_SECRET_KEY` nor
    /// `STRIPE_WEBHOOK_SECRET` is set. The webhook function gets only the webhook secret (least
    /// privilege): its adapter verifies events and refuses to pay.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        let secret_key = env_value("STRIPE_SECRET_KEY");
        if secret_key.is_none() && env_value("STRIPE_WEBHOOK_SECRET").is_none() {
            return Ok(None);
        }
        let mut config = StripeConfig::new(secret_key.unwrap_or_default().trim());
        if let Some(base) = env_value("STRIPE_API_BASE") {
            config.api_base = base.trim().to_owned();
        }
        config.webhook_secrets = webhook::secrets_from(env_value("STRIPE_WEBHOOK_SECRET"));
        if let Some(value) = env_value("STRIPE_MAX_REQUESTS_PER_SECOND") {
            config.max_requests_per_second = value
                .trim()
                .parse()
                .ok()
                .filter(|n| (1..=1_000).contains(n))
                .ok_or(ConfigError::Invalid {
                    name: "STRIPE_MAX_REQUESTS_PER_SECOND",
                    value,
                    expected: "an integer from 1 to 1000",
                })?;
        }
        config.request_timeout =
            env_seconds("STRIPE_TIMEOUT_SECONDS")?.unwrap_or(config.request_timeout);
        config.settle_delay =
            env_seconds("STRIPE_RECONCILE_SETTLE_SECONDS")?.unwrap_or(config.settle_delay);
        Ok(Some(config))
    }
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Pays through Stripe Connect. Build once per process and share: the connection pool and the
/// request pacer are per adapter.
pub struct StripeAdapter {
    api_base: String,
    /// `None` in a verify-only adapter (no `STRIPE_SECRET_KEY`): it refuses to call the API.
    authorization: Option<HeaderValue>,
    webhook_secrets: Vec<String>,
    request_timeout: Duration,
    settle_delay: Duration,
    limiter: RateLimiter,
    client: HttpClient,
}

impl fmt::Debug for StripeAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeAdapter")
            .field("api_base", &self.api_base)
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

/// A complete HTTP answer.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl StripeAdapter {
    /// An adapter for `config`; fails on a base URL that is not `https://` (or loopback
    /// `http://`), a key that cannot be sent in a header, or a system without root certificates.
    pub fn new(config: StripeConfig) -> Result<Self, ConfigError> {
        let api_base = config.api_base.trim_end_matches('/').to_owned();
        let invalid_base = |expected: &'static str| ConfigError::Invalid {
            name: "STRIPE_API_BASE",
            value: api_base.clone(),
            expected,
        };
        let uri: http::Uri = api_base
            .parse()
            .map_err(|_| invalid_base("an absolute URL such as https://api.stripe.com"))?;
        let loopback = matches!(
            uri.host(),
            Some("127.0.0.1" | "localhost" | "[::1]" | "::1")
        );
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") if loopback => false,
            _ => {
                return Err(invalid_base(
                    "an https:// URL (http:// only on 127.0.0.1/localhost, for a local fake)",
                ));
            }
        };
        let secret_key = config.secret_key.trim();
        let authorization = if secret_key.is_empty() {
            None
        } else {
            let mut value =
                HeaderValue::from_str(&format!("Bearer {secret_key}")).map_err(|_| {
                    ConfigError::Invalid {
                        name: "STRIPE_SECRET_KEY",
                        value: "<redacted>".to_owned(),
                        expected: "printable ASCII (an sk_… or rk_… key)",
                    }
                })?;
            value.set_sensitive(true);
            Some(value)
        };

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = hyper_rustls::HttpsConnectorBuilder::new();
        let tls = if https {
            tls.with_provider_and_native_roots(provider)
                .map_err(|_| {
                    invalid_base("reachable over TLS: no trusted root certificates were found on this system")
                })?
                .https_only()
        } else {
            // A loopback fake over plain HTTP: TLS is never used, so no roots are needed.
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|_| invalid_base("usable with the TLS provider"))?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            tls.with_tls_config(config).https_or_http()
        };
        let connector = tls.enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(StripeAdapter {
            api_base,
            authorization,
            webhook_secrets: config.webhook_secrets,
            request_timeout: config.request_timeout,
            settle_delay: config.settle_delay,
            limiter: RateLimiter::per_second(config.max_requests_per_second),
            client,
        })
    }

    /// The adapter from the environment; `None` when no Stripe setting is set.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        StripeConfig::from_env()?.map(Self::new).transpose()
    }

    /// A verify-only adapter (webhook function) must never reach the API: nothing is sent and
    /// the item stays retryable, since the fix is configuration, not the payout.
    fn require_secret_key(&self) -> Result<(), PaymentError> {
        match self.authorization {
            Some(_) => Ok(()),
            None => {
                tracing::error!(
                    "STRIPE_SECRET_KEY is not set in this function: Stripe calls are refused"
                );
                Err(PaymentError::Transient {
                    reason: "STRIPE_SECRET_KEY is not configured".into(),
                    retry_after: None,
                })
            }
        }
    }

    /// One paced, time-bounded HTTP exchange. `Err` means no complete answer arrived (the
    /// request may or may not have reached Stripe).
    async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        form: Option<String>,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, String> {
        let authorization = self
            .authorization
            .clone()
            .ok_or_else(|| "STRIPE_SECRET_KEY is not configured".to_owned())?;
        self.limiter.acquire().await;
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path_and_query}", self.api_base))
            .header(header::AUTHORIZATION, authorization)
            .header("stripe-version", STRIPE_API_VERSION)
            .header(header::USER_AGENT, USER_AGENT)
            .header(header::ACCEPT, "application/json");
        if let Some(key) = idempotency_key {
            builder = builder.header("idempotency-key", key);
        }
        let body = match form {
            Some(form) => {
                builder = builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Full::new(Bytes::from(form))
            }
            None => Full::new(Bytes::new()),
        };
        let request = builder
            .body(body)
            .map_err(|e| format!("could not build the request: {e}"))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| error_chain(&e))?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| format!("answer cut off: {}", error_chain(&e)))?
                .to_bytes();
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.request_timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {:?}", self.request_timeout)))
    }

    /// Classifies a non-2xx answer, and slows the whole adapter down on a 429.
    fn error_from(&self, answer: &Answer) -> PaymentError {
        let err = classify_error(answer.status, retry_after(&answer.headers), &answer.body);
        if let PaymentError::Transient {
            retry_after: Some(wait),
            ..
        } = &err
        {
            self.limiter
                .pause_until(tokio::time::Instant::now() + (*wait).min(MAX_RETRY_AFTER_PAUSE));
        }
        err
    }
}

#[async_trait::async_trait]
impl PaymentAdapter for StripeAdapter {
    fn provider(&self) -> &str {
        STRIPE_PROVIDER
    }

    async fn submit_transfer(
        &self,
        request: &TransferRequest,
    ) -> Result<TransferReceipt, PaymentError> {
        self.require_secret_key()?;
        let key = request.idempotency_key.as_str();
        let answer = self
            .send(
                Method::POST,
                "/v1/transfers",
                Some(transfer_form(request)),
                Some(key),
            )
            .await
            .map_err(|reason| PaymentError::OutcomeUnknown {
                reason: format!("stripe: {reason}"),
            })?;
        let replayed = answer
            .headers
            .get("idempotent-replayed")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
        if answer.status.is_success() {
            return match serde_json::from_slice::<Transfer>(&answer.body) {
                Ok(transfer) if !transfer.id.is_empty() => Ok(TransferReceipt {
                    provider_payout_id: transfer.id,
                    replayed,
                }),
                _ => Err(PaymentError::NeedsReconciliation {
                    reason: format!(
                        "stripe answered {} with a body that is not a transfer",
                        answer.status
                    ),
                }),
            };
        }
        let err = self.error_from(&answer);
        match &err {
            PaymentError::Rejected { code, message } if code == IDEMPOTENCY_ERROR_CODE => error!(
                batch_id = %request.batch_id, item_id = %request.item_id, idempotency_key = key,
                stripe_message = %message,
                "IDEMPOTENCY ERROR: Stripe has this key from a request with other parameters (amount, currency or destination changed since the first attempt?). Nothing was paid now; the item is failed and will be reconciled by lookup before any new key is used"
            ),
            PaymentError::NeedsReconciliation { reason } => warn!(
                batch_id = %request.batch_id, item_id = %request.item_id, idempotency_key = key,
                replayed, reason = %reason,
                "Stripe answered 5xx under this key; it will replay it, so the item is reconciled by lookup instead of resent"
            ),
            _ => {}
        }
        Err(err)
    }

    async fn find_transfer(
        &self,
        request: &TransferRequest,
    ) -> Result<Option<TransferReceipt>, PaymentError> {
        self.require_secret_key()?;
        let group = transfer_group(&request.batch_id, &request.item_id);
        let mut found = Vec::new();
        let mut starting_after: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let path = format!(
                "/v1/transfers?{}",
                list_query(&group, starting_after.as_deref())
            );
            let answer = self
                .send(Method::GET, &path, None, None)
                .await
                .map_err(|reason| PaymentError::Transient {
                    reason: format!("stripe lookup: {reason}"),
                    retry_after: None,
                })?;
            if !answer.status.is_success() {
                let err = self.error_from(&answer);
                let retry_after = match &err {
                    PaymentError::Transient { retry_after, .. } => *retry_after,
                    _ => None,
                };
                return Err(PaymentError::Transient {
                    reason: format!("stripe lookup failed: {err}"),
                    retry_after,
                });
            }
            let list: TransferList =
                serde_json::from_slice(&answer.body).map_err(|e| PaymentError::Transient {
                    reason: format!("stripe lookup answered an unreadable list: {e}"),
                    retry_after: None,
                })?;
            starting_after = list.data.last().map(|t| t.id.clone());
            found.extend(
                list.data
                    .into_iter()
                    .filter(|t| t.belongs_to(&request.batch_id, &request.item_id)),
            );
            if !list.has_more {
                return Ok(pick_found(request, found));
            }
            if starting_after.is_none() {
                break;
            }
        }
        Err(PaymentError::Transient {
            reason: format!("stripe lookup of transfer group {group} did not end"),
            retry_after: None,
        })
    }

    fn key_reuse_window(&self) -> Option<Duration> {
        Some(KEY_REUSE_WINDOW)
    }

    fn reconciliation_settle_delay(&self) -> Duration {
        self.settle_delay
    }

    fn verify_webhook(
        &self,
        body: &[u8],
        headers: &http::HeaderMap,
        now_secs: u64,
    ) -> Result<PaymentEvent, WebhookError> {
        webhook::verify_stripe_scheme(
            STRIPE_PROVIDER,
            &self.webhook_secrets,
            body,
            headers,
            now_secs,
        )
    }
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
        .append_pair(
            &format!("metadata[{}]", webhook::METADATA_BATCH_ID),
            &request.batch_id,
        )
        .append_pair(
            &format!("metadata[{}]", webhook::METADATA_ITEM_ID),
            &request.item_id,
        )
        .finish()
}

/// The query of `GET /v1/transfers` for one transfer group's page.
fn list_query(group: &str, starting_after: Option<&str>) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("transfer_group", group)
        .append_pair("limit", LIST_PAGE_LIMIT);
    if let Some(after) = starting_after {
        query.append_pair("starting_after", after);
    }
    query.finish()
}

/// Classifies a non-2xx answer from Stripe (see the module's table).
pub fn classify_error(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> PaymentError {
    let api = serde_json::from_slice::<ErrorBody>(body)
        .map(|b| b.error)
        .unwrap_or_default();
    let message = api
        .message
        .clone()
        .unwrap_or_else(|| format!("HTTP {status} without an error message"));
    if api.kind.as_deref() == Some(IDEMPOTENCY_ERROR_CODE) {
        return PaymentError::Rejected {
            code: IDEMPOTENCY_ERROR_CODE.to_owned(),
            message,
        };
    }
    let code = api
        .code
        .clone()
        .or(api.kind.clone())
        .unwrap_or_else(|| format!("http_{}", status.as_u16()));
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
        401 => PaymentError::Transient {
            reason: "stripe refused the API key (401): check STRIPE_SECRET_KEY".to_owned(),
            retry_after: None,
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

/// `Retry-After` in seconds, as Stripe sends it.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The transfer among those found for one item; more than one means the item was paid twice,
/// which is logged at ERROR (the oldest is recorded).
fn pick_found(request: &TransferRequest, mut found: Vec<Transfer>) -> Option<TransferReceipt> {
    if found.len() > 1 {
        error!(
            batch_id = %request.batch_id, item_id = %request.item_id,
            transfers = ?found.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
            "Stripe holds several transfers for one item: it was paid more than once; investigate"
        );
    }
    // Stripe lists newest first: the oldest is the one the first attempt made.
    let transfer = found.pop()?;
    let same = transfer.amount == Some(request.amount_minor)
        && transfer
            .currency
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case(&request.currency))
        && transfer.destination_id() == Some(request.destination.as_str());
    if !same {
        warn!(
            batch_id = %request.batch_id, item_id = %request.item_id, transfer_id = %transfer.id,
            amount = ?transfer.amount, currency = ?transfer.currency, destination = ?transfer.destination_id(),
            expected_amount = request.amount_minor, expected_currency = %request.currency,
            "the item's transfer at Stripe differs from the item as it reads now; recorded as made, not paid again"
        );
    }
    Some(TransferReceipt {
        provider_payout_id: transfer.id,
        replayed: true,
    })
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The fields of Stripe's `transfer` object this adapter reads.
#[derive(Debug, Deserialize)]
struct Transfer {
    id: String,
    #[serde(default)]
    amount: Option<i64>,
    #[serde(default)]
    currency: Option<String>,
    /// An account id, or the account object when expanded.
    #[serde(default)]
    destination: Option<serde_json::Value>,
    #[serde(default)]
    transfer_group: Option<String>,
    #[serde(default)]
    metadata: HashMap<String, String>,
}

impl Transfer {
    fn belongs_to(&self, batch_id: &str, item_id: &str) -> bool {
        self.metadata
            .get(webhook::METADATA_BATCH_ID)
            .map(String::as_str)
            == Some(batch_id)
            && self
                .metadata
                .get(webhook::METADATA_ITEM_ID)
                .map(String::as_str)
                == Some(item_id)
            && self
                .transfer_group
                .as_deref()
                .is_none_or(|group| group == transfer_group(batch_id, item_id))
    }

    fn destination_id(&self) -> Option<&str> {
        match self.destination.as_ref()? {
            serde_json::Value::String(id) => Some(id),
            object => object.get("id")?.as_str(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct TransferList {
    data: Vec<Transfer>,
    has_more: bool,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::psp::IdempotencyKey;

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
            PaymentError::Rejected { code, .. } if code == "http_403"
        ));
        let idem = classify_error(
            status(400),
            None,
            &error_body("idempotency_error", None, "other parameters"),
        );
        assert!(idem.requires_reconciliation());
        assert!(
            matches!(&idem, PaymentError::Rejected { code, .. } if code == IDEMPOTENCY_ERROR_CODE)
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

    #[test]
    fn transfer_form_carries_the_reference() {
        let request = TransferRequest {
            idempotency_key: IdempotencyKey::for_item("b 1", "i&1", 0),
            batch_id: "b 1".into(),
            item_id: "i&1".into(),
            destination: "acct_123".into(),
            amount_minor: 1234,
            currency: "USD".into(),
        };
        assert_eq!(
            transfer_form(&request),
            "amount=1234&currency=usd&destination=acct_123&transfer_group=payout%3Ab+1%3Ai%261\
             &metadata%5Bbatch_id%5D=b+1&metadata%5Bitem_id%5D=i%261"
        );
    }

    #[test]
    fn config_debug_hides_secrets_and_base_is_checked() {
        let mut config = StripeConfig::new("sk_test_secret_value");
        config.webhook_secrets = vec!["whsec_secret_value".into()];
        let shown = format!("{config:?}");
        assert!(!shown.contains("secret_value"), "{shown}");
        config.api_base = "http://stripe.example.com".into();
        assert!(matches!(
            StripeAdapter::new(config.clone()),
            Err(ConfigError::Invalid {
                name: "STRIPE_API_BASE",
                ..
            })
        ));
        config.api_base = "http://127.0.0.1:12111/".into();
        let adapter = StripeAdapter::new(config).unwrap();
        assert_eq!(adapter.api_base, "http://127.0.0.1:12111");
        assert!(!format!("{adapter:?}").contains("secret_value"));
    }

    #[tokio::test]
    async fn a_verify_only_adapter_verifies_webhooks_and_refuses_to_pay() {
        let mut config = StripeConfig::new("");
        config.api_base = "http://127.0.0.1:1".into();
        config.webhook_secrets = vec!["whsec_only".into()];
        let adapter = StripeAdapter::new(config).unwrap();
        let body = br#"{"id":"evt_1","type":"payout.paid","data":{"object":{"object":"payout"}}}"#;
        let mut headers = HeaderMap::new();
        let signature = webhook::signature_header("whsec_only", 1_000, body);
        headers.insert("Stripe-Signature", signature.parse().unwrap());
        assert!(adapter.verify_webhook(body, &headers, 1_000).is_ok());
        let request = TransferRequest {
            idempotency_key: crate::psp::IdempotencyKey::for_item("b", "i", 0),
            batch_id: "b".into(),
            item_id: "i".into(),
            destination: "acct_1".into(),
            amount_minor: 100,
            currency: "USD".into(),
        };
        let refused = adapter.submit_transfer(&request).await.unwrap_err();
        assert!(
            matches!(refused, PaymentError::Transient { ref reason, .. } if reason.contains("STRIPE_SECRET_KEY")),
            "{refused:?}"
        );
        assert!(adapter.find_transfer(&request).await.is_err());
    }

    #[test]
    fn verifies_webhooks_with_rotated_secrets() {
        let mut config = StripeConfig::new("sk_test_x");
        config.api_base = "http://127.0.0.1:1".into();
        config.webhook_secrets = vec!["whsec_new".into(), "whsec_old".into()];
        let adapter = StripeAdapter::new(config).unwrap();
        let body = webhook::transfer_event_json(
            "evt_1",
            "transfer.created",
            "tr_1",
            &webhook::ItemReference {
                batch_id: "b1".into(),
                item_id: "i1".into(),
            },
            None,
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            "Stripe-Signature",
            webhook::signature_header("whsec_old", 1_000, body.as_bytes())
                .parse()
                .unwrap(),
        );
        let event = adapter
            .verify_webhook(body.as_bytes(), &headers, 1_010)
            .unwrap();
        assert_eq!(event.provider_payout_id.as_deref(), Some("tr_1"));
        assert_eq!(
            adapter.verify_webhook(b"{}", &headers, 1_010),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            adapter.verify_webhook(body.as_bytes(), &HeaderMap::new(), 1_010),
            Err(WebhookError::MissingSignature)
        );
    }
}
