//! The HTTP client every HTTP PSP adapter uses: hyper 1 + rustls (aws-lc-rs, the stack the AWS
//! SDK already builds), `https://` only (plain `http://` only on loopback, for a local fake),
//! a request pacer shared by all calls of one adapter, and a bound on each exchange. An adapter
//! adds only its PSP's headers, bodies and classification.

use crate::rate_limit::RateLimiter;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use payouts_config::ConfigError;
use payouts_core::ports::payment::{PaymentError, PspCallStats};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest a PSP's `Retry-After` pauses a whole adapter.
const MAX_RETRY_AFTER_PAUSE: Duration = Duration::from_secs(30);
const USER_AGENT: &str = concat!("payouts/", env!("CARGO_PKG_VERSION"));
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How to build a [`PspHttpClient`].
#[derive(Debug, Clone)]
pub struct HttpClientSettings {
    /// The PSP's API base URL (`https://api.stripe.com`).
    pub base_url: String,
    /// The environment variable `base_url` came from, for errors.
    pub base_url_setting: &'static str,
    /// Bound on one exchange: connect, send, and the whole answer.
    pub request_timeout: Duration,
    /// The least time between two request starts of this client (one pacer per adapter): the
    /// process's share of the account's budget.
    pub pace: Duration,
}

/// Why no complete answer arrived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Nothing left the process (no rate slot before the deadline, or the request could not
    /// be built): a known outcome.
    #[error("not sent: {0}")]
    NotSent(String),
    /// The request may have reached the PSP: connection dropped, timeout, answer cut off.
    #[error("{0}")]
    NoAnswer(String),
}

impl SendError {
    /// This failure of a read (a lookup or a listing, which changes nothing at the PSP) as a
    /// `PaymentError` with `context` in the reason: not sent stays [`PaymentError::NotSent`];
    /// no answer is [`PaymentError::Transient`] (the read is simply asked again).
    pub fn for_read(self, context: &str) -> PaymentError {
        match self {
            SendError::NotSent(reason) => PaymentError::NotSent {
                reason: format!("{context}: {reason}"),
            },
            SendError::NoAnswer(reason) => PaymentError::Transient {
                reason: format!("{context}: {reason}"),
                retry_after: None,
            },
        }
    }
}

/// One call to a PSP's API: what differs between PSPs is their headers and body encoding. The
/// client adds `User-Agent` and `Accept: application/json`.
pub struct PspCall<'a> {
    pub method: Method,
    pub path_and_query: &'a str,
    /// The PSP's own headers: credentials, API version.
    pub headers: Vec<(&'static str, HeaderValue)>,
    /// Sent as `Idempotency-Key` (both PSPs so far use that header).
    pub idempotency_key: Option<&'a str>,
    /// The body and its content type.
    pub body: Option<(&'static str, Bytes)>,
}

/// A complete HTTP answer.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A paced, time-bounded HTTP/1.1 client for one PSP's API. Build once per adapter: the
/// connection pool and the pacer are per client.
pub struct PspHttpClient {
    base_url: String,
    request_timeout: Duration,
    limiter: RateLimiter,
    stats: std::sync::Mutex<PspCallStats>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl fmt::Debug for PspHttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PspHttpClient")
            .field("base_url", &self.base_url)
            .field("request_timeout", &self.request_timeout)
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl PspHttpClient {
    /// A client for `settings`; fails on a base URL that is not `https://` (or loopback
    /// `http://`), or a system without root certificates.
    pub fn new(settings: HttpClientSettings) -> Result<Self, ConfigError> {
        let base_url = settings.base_url.trim().trim_end_matches('/').to_owned();
        let invalid_base = |expected: &'static str| ConfigError::Invalid {
            name: settings.base_url_setting,
            value: base_url.clone(),
            expected,
        };
        let uri: http::Uri = base_url
            .parse()
            .map_err(|_| invalid_base("an absolute https:// URL"))?;
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
        let connector = connector(https).map_err(invalid_base)?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
        Ok(PspHttpClient {
            base_url,
            request_timeout: settings.request_timeout,
            limiter: RateLimiter::every(settings.pace),
            stats: std::sync::Mutex::default(),
            client,
        })
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The URL of `path_and_query` on this PSP.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base_url)
    }

    /// One paced, time-bounded exchange: waits for a rate slot no later than `send_by`, then
    /// bounds the exchange alone (connect, send, answer) by the request timeout.
    pub async fn send(
        &self,
        request: Request<Full<Bytes>>,
        send_by: Option<Instant>,
    ) -> Result<HttpAnswer, SendError> {
        self.limiter
            .acquire_by(send_by)
            .await
            .map_err(|no_slot| SendError::NotSent(no_slot.to_string()))?;
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
            Ok(HttpAnswer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        let started = Instant::now();
        let answer = tokio::time::timeout(self.request_timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {:?}", self.request_timeout)))
            .map_err(SendError::NoAnswer);
        self.count(&answer, started.elapsed());
        answer
    }

    fn count(&self, answer: &Result<HttpAnswer, SendError>, took: Duration) {
        let mut stats = self.stats.lock().expect("call stats poisoned");
        match answer {
            Ok(answer) => {
                stats.answered += 1;
                if answer.status == StatusCode::TOO_MANY_REQUESTS {
                    stats.rate_limited += 1;
                } else if answer.status.is_server_error() {
                    stats.server_errors += 1;
                }
                if stats.latencies_ms.len() < PspCallStats::MAX_SAMPLES {
                    stats.latencies_ms.push(took.as_secs_f64() * 1000.0);
                }
            }
            Err(_) => stats.no_answer += 1,
        }
    }

    /// The calls since the last take ([`PaymentAdapter::take_call_stats`]).
    pub fn take_stats(&self) -> PspCallStats {
        std::mem::take(&mut *self.stats.lock().expect("call stats poisoned"))
    }

    /// One call, built from its parts and sent as [`Self::send`] does.
    pub async fn call(
        &self,
        call: PspCall<'_>,
        send_by: Option<Instant>,
    ) -> Result<HttpAnswer, SendError> {
        let mut builder = Request::builder()
            .method(call.method)
            .uri(self.url(call.path_and_query))
            .header(header::USER_AGENT, USER_AGENT)
            .header(header::ACCEPT, "application/json");
        for (name, value) in call.headers {
            builder = builder.header(name, value);
        }
        if let Some(key) = call.idempotency_key {
            builder = builder.header("idempotency-key", key);
        }
        let body = match call.body {
            Some((content_type, body)) => {
                builder = builder.header(header::CONTENT_TYPE, content_type);
                Full::new(body)
            }
            None => Full::new(Bytes::new()),
        };
        let request = builder
            .body(body)
            .map_err(|e| SendError::NotSent(format!("could not build the request: {e}")))?;
        self.send(request, send_by).await
    }

    /// No request starts before `until` (the PSP said "retry after"): one rate-limit answer
    /// slows the whole adapter instead of turning into a storm of retries.
    pub fn pause_until(&self, until: Instant) {
        self.limiter.pause_until(until);
    }

    /// Pauses the whole client for the `Retry-After` a transient error carries (capped).
    pub fn honour_retry_after(&self, err: &PaymentError) {
        if let PaymentError::Transient {
            retry_after: Some(wait),
            ..
        } = err
        {
            self.pause_until(Instant::now() + (*wait).min(MAX_RETRY_AFTER_PAUSE));
        }
    }
}

/// `Retry-After` in seconds, as PSPs send it.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The longest transfer id a lookup by id sends: PSPs' ids are a few dozen characters, and a
/// bound keeps a corrupt stored id from growing a URL without limit.
pub const MAX_TRANSFER_ID_LEN: usize = 255;

/// `transfer_id` as one URL path segment, or why it cannot be one. Only ASCII letters, digits
/// and `_` pass (every Stripe and Adyen transfer id is made of them): with nothing to escape,
/// an id can never add a path segment (`/`, `..`), a query (`?`) or a fragment (`#`), so a
/// lookup always asks for the transfer it names. Refused ids are [`PaymentError::Rejected`]
/// (code `invalid_transfer_id`): nothing was sent, and asking again cannot help.
pub fn transfer_id_segment<'a>(psp: &str, transfer_id: &'a str) -> Result<&'a str, PaymentError> {
    let valid = !transfer_id.is_empty()
        && transfer_id.len() <= MAX_TRANSFER_ID_LEN
        && transfer_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if valid {
        Ok(transfer_id)
    } else {
        Err(PaymentError::Rejected {
            code: "invalid_transfer_id".into(),
            message: format!(
                "{psp}: transfer id {transfer_id:?} is not 1 to {MAX_TRANSFER_ID_LEN} ASCII letters, digits or '_'; not looked up"
            ),
        })
    }
}

/// A failed lookup by id as the caller should read it. A read changes nothing at the PSP, so
/// the adapter's classification of a submission's failure does not carry over: a 4xx is not
/// the item "rejected for good" and a 5xx needs no reconciliation of its own. A refused
/// platform stays [`PaymentError::PlatformRefused`] (the configuration needs fixing) and an
/// unsent request stays [`PaymentError::NotSent`]; anything else is
/// [`PaymentError::Transient`], keeping the PSP's `Retry-After`, with `context` in the reason.
pub fn lookup_failure(context: &str, err: PaymentError) -> PaymentError {
    match err {
        PaymentError::PlatformRefused { .. } | PaymentError::NotSent { .. } => err,
        PaymentError::Transient {
            reason,
            retry_after,
        } => PaymentError::Transient {
            reason: format!("{context}: {reason}"),
            retry_after,
        },
        other => PaymentError::Transient {
            reason: format!("{context}: {other}"),
            retry_after: None,
        },
    }
}

/// The TLS connector: native roots for `https`, none for a loopback fake over plain HTTP.
fn connector(https: bool) -> Result<HttpsConnector<HttpConnector>, &'static str> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    http.set_nodelay(true);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = hyper_rustls::HttpsConnectorBuilder::new();
    let tls = if https {
        tls.with_provider_and_native_roots(provider)
            .map_err(
                |_| "reachable over TLS: no trusted root certificates were found on this system",
            )?
            .https_only()
    } else {
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|_| "usable with the TLS provider")?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        tls.with_tls_config(config).https_or_http()
    };
    Ok(tls.enable_http1().wrap_connector(http))
}

/// An error with its causes, for logs (hyper's top-level messages say little).
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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(base_url: &str) -> HttpClientSettings {
        HttpClientSettings {
            base_url: base_url.into(),
            base_url_setting: "PSP_API_BASE",
            request_timeout: Duration::from_secs(1),
            pace: Duration::from_millis(100),
        }
    }

    #[test]
    fn plain_http_only_on_loopback() {
        assert!(matches!(
            PspHttpClient::new(settings("http://psp.example.com")),
            Err(ConfigError::Invalid {
                name: "PSP_API_BASE",
                ..
            })
        ));
        assert!(PspHttpClient::new(settings("not a url")).is_err());
        let local = PspHttpClient::new(settings("http://127.0.0.1:12111/")).unwrap();
        assert_eq!(local.base_url(), "http://127.0.0.1:12111");
        assert_eq!(local.url("/v1/x"), "http://127.0.0.1:12111/v1/x");
    }

    #[test]
    fn transfer_ids_are_path_safe_or_refused() {
        for id in ["tr_1Mi6wL2eZvKYlo2C", "1W1UG35U8A9J5ZLG", "x"] {
            assert_eq!(transfer_id_segment("psp", id), Ok(id));
        }
        let long = "a".repeat(MAX_TRANSFER_ID_LEN + 1);
        for id in [
            "",
            "tr_1/../../v1/payouts",
            "tr_1?expand[]=destination",
            "tr_1#x",
            "tr%2F1",
            "tr 1",
            "tr-1",
            "tr_\u{e9}",
            long.as_str(),
        ] {
            let refused = transfer_id_segment("psp", id).unwrap_err();
            assert!(
                matches!(&refused, PaymentError::Rejected { code, .. } if code == "invalid_transfer_id"),
                "{id:?}: {refused:?}"
            );
        }
    }

    #[test]
    fn a_failed_lookup_is_never_a_verdict_on_the_item() {
        let rejected = PaymentError::Rejected {
            code: "resource_missing".into(),
            message: "no".into(),
        };
        assert!(matches!(
            lookup_failure("psp lookup", rejected),
            PaymentError::Transient { reason, retry_after: None } if reason.starts_with("psp lookup: ")
        ));
        assert!(matches!(
            lookup_failure(
                "psp lookup",
                PaymentError::NeedsReconciliation {
                    reason: "500".into()
                }
            ),
            PaymentError::Transient { .. }
        ));
        let paced = PaymentError::Transient {
            reason: "429".into(),
            retry_after: Some(Duration::from_secs(2)),
        };
        assert!(matches!(
            lookup_failure("psp lookup", paced),
            PaymentError::Transient {
                retry_after: Some(wait),
                ..
            } if wait == Duration::from_secs(2)
        ));
        let refused = PaymentError::PlatformRefused {
            reason: "key".into(),
        };
        assert_eq!(lookup_failure("psp lookup", refused.clone()), refused);
    }

    #[tokio::test]
    async fn no_answer_is_an_error_not_a_hang() {
        let client = PspHttpClient::new(settings("http://127.0.0.1:1")).unwrap();
        let request = Request::get(client.url("/"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert!(matches!(
            client.send(request, None).await,
            Err(SendError::NoAnswer(_))
        ));
    }
}
