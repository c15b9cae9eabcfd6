//! Stripe Connect transfers over HTTP (`provider = "stripe"`): the stable idempotency key on
//! every transfer, Stripe's answers classified by what the executor must do next
//! ([`transformers`]), a request pacer shared by every call, lookups by reference and by
//! transfer id for reconciliation, and Stripe's webhook scheme ([`webhook`]).

pub mod currency;
pub mod transformers;
pub mod webhook;

use crate::http::{
    HttpAnswer, HttpClientSettings, PspCall, PspHttpClient, SendError, lookup_failure, retry_after,
    transfer_id_segment,
};
use crate::secrets::{
    SecretSource, SecretValues, optional_secret, secret_values, verify_with_rotation,
};
use bytes::Bytes;
use http::{HeaderValue, Method};
use payouts_config::{ConfigError, Secret, StripeSettings};
use payouts_core::money::{MoneyError, PayoutAmount};
use payouts_core::ports::payment::{
    ListedTransfer, PaymentAdapter, PaymentError, TransferReceipt, TransferRequest, TransferState,
};
#[cfg(doc)]
use payouts_core::ports::payment::{METADATA_BATCH_ID, METADATA_ITEM_ID};
use payouts_core::ports::webhook::{
    VerifiedWebhook, WebhookError, WebhookRequest, WebhookVerifier,
};
use std::fmt;
use std::time::Duration;
use tracing::{error, warn};
use transformers::{
    ListFilter, StripeErrorAnswer, Transfer, TransferList, is_missing_transfer, list_query,
    transfer_group,
};

pub use transformers::{classify_error, transfer_form};

/// The provider name batches use to pay through Stripe.
pub const STRIPE_PROVIDER: &str = "stripe";

/// The API version every request pins (`Stripe-Version`), so an account-level upgrade never
/// changes what this code reads. Transfers' shape is checked against Stripe's OpenAPI
/// description of this version.
pub const STRIPE_API_VERSION: &str = "2025-09-30.clover";

/// Stripe keeps idempotency keys at least this long.
pub const KEY_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// A key is sent again only this long after its first use; past it (an hour's margin under
/// [`KEY_RETENTION`]) the item is reconciled by lookup first.
pub const KEY_REUSE_WINDOW: Duration = Duration::from_secs(23 * 3600);

/// Stripe's longest idempotency key.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// One item's transfer group holds one transfer; more pages than this is a fault.
const MAX_LIST_PAGES: usize = 10;
/// The most pages (of 100 transfers) one [`PaymentAdapter::transfers_since`] reads; a longer
/// list is an error, never cut short.
pub const MAX_SINCE_PAGES: usize = 100;

/// One call to Stripe's API.
struct StripeCall<'a> {
    method: Method,
    path_and_query: &'a str,
    form: Option<String>,
    idempotency_key: Option<&'a str>,
}

/// Pays through Stripe Connect. Build once per process and share: the connection pool and the
/// request pacer are per adapter.
pub struct StripeAdapter {
    /// The secret key, fixed or read at run time; `None` in a verify-only adapter (no
    /// `STRIPE_SECRET_KEY`): it refuses to call the API.
    secret_key: Option<SecretValues>,
    webhook_secrets: SecretValues,
    settle_delay: Duration,
    http: PspHttpClient,
}

impl fmt::Debug for StripeAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeAdapter")
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

impl StripeAdapter {
    /// An adapter for `settings`; fails on a base URL that is not `https://` (or loopback
    /// `http://`), a key that cannot be sent in a header, or a system without root certificates.
    pub fn new(settings: StripeSettings) -> Result<Self, ConfigError> {
        Self::with_secrets(settings, None)
    }

    /// An adapter for `settings` whose `…_SECRET_ID` secrets are read from `source` at run time.
    pub fn with_secrets(
        settings: StripeSettings,
        source: Option<&SecretSource>,
    ) -> Result<Self, ConfigError> {
        if let Some(key) = &settings.secret_key {
            bearer(key)?;
        }
        let secret_key = optional_secret(
            settings.secret_key.as_ref(),
            settings.secret_key_id.as_ref(),
            source,
            "STRIPE_SECRET_KEY",
        )?;
        let webhook_secrets = secret_values(
            settings.webhook_secrets,
            settings.webhook_secret_id.as_ref(),
            source,
            "STRIPE_WEBHOOK_SECRET",
        )?;
        let http = PspHttpClient::new(HttpClientSettings {
            base_url: settings.api_base,
            base_url_setting: "STRIPE_API_BASE",
            request_timeout: settings.request_timeout,
            pace: settings.budget.pace_interval(),
        })?;
        Ok(StripeAdapter {
            secret_key,
            webhook_secrets,
            settle_delay: settings.settle_delay,
            http,
        })
    }

    /// The API base URL requests go to.
    pub fn api_base(&self) -> &str {
        self.http.base_url()
    }

    /// The `Authorization` header, or — in a verify-only adapter (webhook function), which must
    /// never reach the API — an error that leaves the item retryable, since the fix is
    /// configuration, not the payout.
    /// A key that cannot be read just now leaves the item retryable too.
    async fn authorization(&self) -> Result<HeaderValue, PaymentError> {
        let Some(key) = &self.secret_key else {
            error!("STRIPE_SECRET_KEY is not set in this function: Stripe calls are refused");
            return Err(PaymentError::PlatformRefused {
                reason: "STRIPE_SECRET_KEY is not configured".into(),
            });
        };
        key.newest_as_header(bearer).await
    }

    /// One exchange with Stripe's API, started no later than `send_by`. `Err` says whether the
    /// request was sent at all.
    async fn send(
        &self,
        authorization: HeaderValue,
        call: StripeCall<'_>,
        send_by: Option<tokio::time::Instant>,
    ) -> Result<HttpAnswer, SendError> {
        let call = PspCall {
            method: call.method,
            path_and_query: call.path_and_query,
            headers: vec![
                ("authorization", authorization),
                (
                    "stripe-version",
                    HeaderValue::from_static(STRIPE_API_VERSION),
                ),
            ],
            idempotency_key: call.idempotency_key,
            body: call
                .form
                .map(|form| ("application/x-www-form-urlencoded", Bytes::from(form))),
        };
        self.http.call(call, send_by).await
    }

    /// Classifies a non-2xx answer, and slows the whole adapter down on a 429. A 401 makes the
    /// next call read a stored key again (it may have been rotated).
    fn error_from(&self, answer: &HttpAnswer) -> PaymentError {
        if answer.status == http::StatusCode::UNAUTHORIZED
            && let Some(key) = &self.secret_key
        {
            key.forget();
        }
        let err = PaymentError::from(StripeErrorAnswer {
            status: answer.status,
            retry_after: retry_after(&answer.headers),
            body: &answer.body,
        });
        self.http.honour_retry_after(&err);
        err
    }

    /// Every transfer `GET /v1/transfers` lists for `filter`, page by page (following
    /// `has_more` with `starting_after`), newest first as Stripe lists them. Any failure is a
    /// lookup failure ([`lookup_failure`], with `context`), never a partial list; so is a list
    /// longer than `max_pages` pages.
    async fn list_transfers(
        &self,
        authorization: HeaderValue,
        filter: ListFilter<'_>,
        send_by: Option<tokio::time::Instant>,
        max_pages: usize,
        context: &str,
    ) -> Result<Vec<Transfer>, PaymentError> {
        let unreadable = |reason: String| PaymentError::Transient {
            reason: format!("{context}: {reason}"),
            retry_after: None,
        };
        let mut found = Vec::new();
        let mut starting_after: Option<String> = None;
        for _ in 0..max_pages {
            let path = format!(
                "/v1/transfers?{}",
                list_query(filter, starting_after.as_deref())
            );
            let call = StripeCall {
                method: Method::GET,
                path_and_query: &path,
                form: None,
                idempotency_key: None,
            };
            let answer = self
                .send(authorization.clone(), call, send_by)
                .await
                .map_err(|err| err.for_read(context))?;
            if !answer.status.is_success() {
                return Err(lookup_failure(context, self.error_from(&answer)));
            }
            let list: TransferList = serde_json::from_slice(&answer.body)
                .map_err(|e| unreadable(format!("answered an unreadable list: {e}")))?;
            starting_after = list.data.last().map(|t| t.id.clone());
            let has_more = list.has_more;
            found.extend(list.data);
            if !has_more {
                return Ok(found);
            }
            if starting_after.is_none() {
                return Err(unreadable(
                    "announced more transfers on an empty page".into(),
                ));
            }
        }
        Err(unreadable(format!(
            "more than {max_pages} pages of {} transfers; nothing is reported from a partial list",
            transformers::LIST_PAGE_LIMIT
        )))
    }
}

#[async_trait::async_trait]
impl WebhookVerifier for StripeAdapter {
    async fn verify_webhook(
        &self,
        request: WebhookRequest<'_>,
    ) -> Result<VerifiedWebhook, WebhookError> {
        verify_with_rotation(&self.webhook_secrets, |secrets| {
            webhook::verify_stripe_scheme(STRIPE_PROVIDER, secrets, request)
        })
        .await
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
        let authorization = self.authorization().await?;
        let key = request.idempotency_key.as_str();
        if key.len() > MAX_IDEMPOTENCY_KEY_LEN {
            // Nothing is sent: Stripe would refuse the key, and shortening it would lose the
            // one-to-one link between keys and items.
            return Err(PaymentError::Rejected {
                code: "idempotency_key_too_long".into(),
                message: format!(
                    "the item's idempotency key is {} characters, over Stripe's {MAX_IDEMPOTENCY_KEY_LEN}; shorten the batch or item id",
                    key.len()
                ),
            });
        }
        let call = StripeCall {
            method: Method::POST,
            path_and_query: "/v1/transfers",
            form: Some(transfer_form(request)),
            idempotency_key: Some(key),
        };
        let answer = self
            .send(authorization, call, request.send_by)
            .await
            .map_err(|err| match err {
                SendError::NotSent(reason) => PaymentError::NotSent {
                    reason: format!("stripe: {reason}"),
                },
                SendError::NoAnswer(reason) => PaymentError::OutcomeUnknown {
                    reason: format!("stripe: {reason}"),
                },
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
            PaymentError::KeyConflict { message, .. } => error!(
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
        let authorization = self.authorization().await?;
        let group = transfer_group(&request.batch_id, &request.item_id);
        let found = self
            .list_transfers(
                authorization,
                ListFilter::Group(&group),
                request.send_by,
                MAX_LIST_PAGES,
                &format!("stripe lookup of transfer group {group}"),
            )
            .await?
            .into_iter()
            .filter(|t| t.belongs_to(&request.batch_id, &request.item_id))
            .collect();
        Ok(pick_found(request, found))
    }

    fn minor_units(&self, amount: &PayoutAmount) -> Result<i64, MoneyError> {
        currency::minor_units(amount)
    }

    /// `GET /v1/transfers/{id}` through the same paced, authenticated path as the lookups by
    /// reference. `NotFound` only on Stripe's 404 `resource_missing`; every other failure is an
    /// error (a read changed nothing, so it is `Transient` unless the platform is refused).
    async fn transfer_state(&self, transfer_id: &str) -> Result<TransferState, PaymentError> {
        let id = transfer_id_segment(STRIPE_PROVIDER, transfer_id)?;
        let authorization = self.authorization().await?;
        let context = format!("stripe lookup of transfer {id}");
        let path = format!("/v1/transfers/{id}");
        let call = StripeCall {
            method: Method::GET,
            path_and_query: &path,
            form: None,
            idempotency_key: None,
        };
        let answer = self
            .send(authorization, call, None)
            .await
            .map_err(|err| err.for_read(&context))?;
        if !answer.status.is_success() {
            if is_missing_transfer(answer.status, &answer.body) {
                return Ok(TransferState::NotFound);
            }
            return Err(lookup_failure(&context, self.error_from(&answer)));
        }
        let unreadable = |reason: String| PaymentError::Transient {
            reason: format!("{context}: {reason}"),
            retry_after: None,
        };
        let transfer: Transfer = serde_json::from_slice(&answer.body)
            .map_err(|e| unreadable(format!("answered a body that is not a transfer: {e}")))?;
        if transfer.id != id {
            return Err(unreadable(format!("answered transfer {:?}", transfer.id)));
        }
        transfer.state().map_err(unreadable)
    }

    /// `GET /v1/transfers?created[gte]=<since, in seconds>`, every page (at most
    /// [`MAX_SINCE_PAGES`]), through the same paced, authenticated path as the lookups; the
    /// item is the one the transfer's metadata names ([`METADATA_BATCH_ID`] and
    /// [`METADATA_ITEM_ID`], both needed). Stripe's `created` is in whole seconds, so `since_ms`
    /// is rounded down: a transfer up to a second older may be listed, never one missed. Any
    /// failure is an error ([`lookup_failure`]), never a partial list.
    async fn transfers_since(&self, since_ms: u64) -> Result<Vec<ListedTransfer>, PaymentError> {
        let authorization = self.authorization().await?;
        let since_secs = since_ms / 1000;
        let listed = self
            .list_transfers(
                authorization,
                ListFilter::CreatedSince(since_secs),
                None,
                MAX_SINCE_PAGES,
                &format!("stripe listing of transfers since {since_secs}"),
            )
            .await?;
        Ok(listed
            .into_iter()
            .map(|t| ListedTransfer {
                item: t.item_reference(),
                id: t.id,
            })
            .collect())
    }

    fn key_reuse_window(&self) -> Option<Duration> {
        Some(KEY_REUSE_WINDOW)
    }

    fn reconciliation_settle_delay(&self) -> Duration {
        self.settle_delay
    }

    fn take_call_stats(&self) -> payouts_core::ports::payment::PspCallStats {
        self.http.take_stats()
    }
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

/// The `Authorization` header for `key`, marked sensitive (never logged).
fn bearer(key: &Secret) -> Result<HeaderValue, ConfigError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| {
        ConfigError::Invalid {
            name: "STRIPE_SECRET_KEY",
            value: "<redacted>".to_owned(),
            expected: "printable ASCII (an sk_… or rk_… key)",
        }
    })?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use payouts_core::ports::payment::IdempotencyKey;
    use payouts_core::ports::webhook::ItemReference;

    fn verify_only(secret: &str) -> StripeAdapter {
        let mut settings = StripeSettings::new("");
        settings.api_base = "http://127.0.0.1:1".into();
        settings.webhook_secrets = vec![Secret::from(secret)];
        StripeAdapter::new(settings).unwrap()
    }

    #[test]
    fn settings_debug_hides_secrets_and_base_is_checked() {
        let mut settings = StripeSettings::new("sk_test_secret_value");
        settings.webhook_secrets = vec!["whsec_secret_value".into()];
        let shown = format!("{settings:?}");
        assert!(!shown.contains("secret_value"), "{shown}");
        settings.api_base = "http://stripe.example.com".into();
        assert!(matches!(
            StripeAdapter::new(settings.clone()),
            Err(ConfigError::Invalid {
                name: "STRIPE_API_BASE",
                ..
            })
        ));
        settings.api_base = "http://127.0.0.1:12111/".into();
        let adapter = StripeAdapter::new(settings).unwrap();
        assert_eq!(adapter.api_base(), "http://127.0.0.1:12111");
        assert!(!format!("{adapter:?}").contains("secret_value"));
    }

    #[tokio::test]
    async fn a_verify_only_adapter_verifies_webhooks_and_refuses_to_pay() {
        let adapter = verify_only("whsec_only");
        let body = br#"{"id":"evt_1","type":"payout.paid","data":{"object":{"object":"payout"}}}"#;
        let mut headers = HeaderMap::new();
        let signature = webhook::signature_header("whsec_only", 1_000, body);
        headers.insert("Stripe-Signature", signature.parse().unwrap());
        let verified = adapter
            .verify_webhook(WebhookRequest {
                body,
                headers: &headers,
                now_secs: 1_000,
            })
            .await;
        assert!(verified.is_ok());
        let transfer = TransferRequest {
            idempotency_key: IdempotencyKey::for_item("b", "i", 0),
            batch_id: "b".into(),
            item_id: "i".into(),
            destination: "acct_1".into(),
            amount_minor: 100,
            currency: "USD".into(),
            send_by: None,
        };
        let refused = adapter.submit_transfer(&transfer).await.unwrap_err();
        assert!(
            matches!(refused, PaymentError::PlatformRefused { ref reason } if reason.contains("STRIPE_SECRET_KEY")),
            "{refused:?}"
        );
        assert!(refused.is_retryable());
        assert!(adapter.find_transfer(&transfer).await.is_err());
        assert!(matches!(
            adapter.transfer_state("tr_1").await,
            Err(PaymentError::PlatformRefused { .. })
        ));
    }

    #[tokio::test]
    async fn a_lookup_by_id_never_says_absent_without_an_answer() {
        let mut settings = StripeSettings::new("sk_test_x");
        // Nothing listens there: no answer at all.
        settings.api_base = "http://127.0.0.1:1".into();
        let adapter = StripeAdapter::new(settings).unwrap();
        assert!(matches!(
            adapter.transfer_state("tr_1").await,
            Err(PaymentError::Transient { .. })
        ));
        assert!(matches!(
            adapter.transfer_state("tr_1/reversals").await,
            Err(PaymentError::Rejected { code, .. }) if code == "invalid_transfer_id"
        ));
    }

    #[tokio::test]
    async fn verifies_webhooks_with_rotated_secrets() {
        let mut settings = StripeSettings::new("sk_test_x");
        settings.api_base = "http://127.0.0.1:1".into();
        settings.webhook_secrets = vec!["whsec_new".into(), "whsec_old".into()];
        let adapter = StripeAdapter::new(settings).unwrap();
        let body = webhook::transfer_event_json(
            "evt_1",
            "transfer.created",
            "tr_1",
            &ItemReference {
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
        let verify = |body: &'static [u8], headers: HeaderMap| {
            let adapter = &adapter;
            async move {
                adapter
                    .verify_webhook(WebhookRequest {
                        body,
                        headers: &headers,
                        now_secs: 1_010,
                    })
                    .await
            }
        };
        let body: &'static [u8] = Box::leak(body.into_bytes().into_boxed_slice());
        let verified = verify(body, headers.clone()).await.unwrap();
        assert_eq!(
            verified.events[0].provider_payout_id.as_deref(),
            Some("tr_1")
        );
        assert_eq!(
            verify(b"{}", headers).await,
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify(body, HeaderMap::new()).await,
            Err(WebhookError::MissingSignature)
        );
    }
}
