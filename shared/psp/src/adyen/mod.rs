//! Adyen for Platforms over HTTP (`provider = "adyen"`): each payout is an `internal` transfer
//! on the Balance Platform (Transfers API v4, `POST /btl/v4/transfers`) from the platform's
//! balance account to the recipient's, under an `Idempotency-Key` derived from the item's
//! stable key; Adyen's answers classified by what the executor must do next
//! ([`transformers`]); lookups by reference and by transfer id for reconciliation; Adyen's
//! HMAC-signed transfer webhooks ([`webhook`]); amounts in Adyen's own minor units
//! ([`currency`]).

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
use payouts_config::{AdyenSettings, ConfigError, Secret};
use payouts_core::money::{MoneyError, PayoutAmount};
use payouts_core::ports::payment::{
    ListedTransfer, PaymentAdapter, PaymentError, TransferReceipt, TransferRequest, TransferState,
};
use payouts_core::ports::webhook::{
    VerifiedWebhook, WebhookError, WebhookRequest, WebhookVerifier,
};
use std::fmt;
use std::time::Duration;
use tracing::{error, warn};
use transformers::{
    AdyenErrorAnswer, TRANSFERS_PATH, Transfer, TransferInfo, TransferList, idempotency_header,
    is_missing_transfer, list_query, parse_reference, transfer_reference,
};

pub use transformers::classify_error;

/// The provider name batches use to pay through Adyen.
pub const ADYEN_PROVIDER: &str = "adyen";

/// How long Adyen keeps an idempotency key. Adyen's current API-idempotency page says "a
/// minimum period of 31 days"; its earlier (legacy) page said 7 days. The shorter is taken.
pub const KEY_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// A key is sent again only this long after its first use (a day's margin under
/// [`KEY_RETENTION`]); past it, the item is reconciled by lookup first.
pub const KEY_REUSE_WINDOW: Duration = Duration::from_secs(6 * 24 * 3600);

/// How far back a lookup searches: Adyen allows at most 6 months between `createdSince` and
/// `createdUntil`. An item whose first attempt is older than this is not reconciled here.
pub const LOOKUP_WINDOW: Duration = Duration::from_secs(180 * 24 * 3600);

/// Slack after "now" in a lookup's `createdUntil`, for clock skew between us and Adyen.
const LOOKUP_CLOCK_SLACK: Duration = Duration::from_secs(3600);
/// One item's reference holds one transfer; more pages than this is a fault.
const MAX_LIST_PAGES: usize = 10;
/// The most pages (of 100 transfers) one [`PaymentAdapter::transfers_since`] reads; a longer
/// list is an error, never cut short.
pub const MAX_SINCE_PAGES: usize = 100;

/// One call to Adyen's API.
struct AdyenCall<'a> {
    method: Method,
    path_and_query: &'a str,
    body: Option<Vec<u8>>,
    idempotency_key: Option<&'a str>,
}

/// Pays through Adyen for Platforms. Build once per process and share: the connection pool and
/// the request pacer are per adapter.
pub struct AdyenAdapter {
    /// `X-API-Key`, fixed or read at run time; `None` in a verify-only adapter (no
    /// `ADYEN_API_KEY`): it refuses to call.
    api_key: Option<SecretValues>,
    /// The platform's balance account transfers are made from.
    balance_account_id: Option<String>,
    hmac_keys: SecretValues,
    settle_delay: Duration,
    http: PspHttpClient,
}

impl fmt::Debug for AdyenAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdyenAdapter")
            .field("balance_account_id", &self.balance_account_id)
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

impl AdyenAdapter {
    /// An adapter for `settings`; fails on a base URL that is not `https://` (or loopback
    /// `http://`), a key that cannot be sent in a header, or a system without root certificates.
    pub fn new(settings: AdyenSettings) -> Result<Self, ConfigError> {
        Self::with_secrets(settings, None)
    }

    /// An adapter for `settings` whose `…_SECRET_ID` secrets are read from `source` at run time.
    pub fn with_secrets(
        settings: AdyenSettings,
        source: Option<&SecretSource>,
    ) -> Result<Self, ConfigError> {
        if let Some(key) = &settings.api_key {
            api_key_header(key)?;
        }
        let api_key = optional_secret(
            settings.api_key.as_ref(),
            settings.api_key_id.as_ref(),
            source,
            "ADYEN_API_KEY",
        )?;
        let hmac_keys = secret_values(
            settings.hmac_keys,
            settings.hmac_key_id.as_ref(),
            source,
            "ADYEN_HMAC_KEY",
        )?;
        let http = PspHttpClient::new(HttpClientSettings {
            base_url: settings.api_base,
            base_url_setting: "ADYEN_API_BASE",
            request_timeout: settings.request_timeout,
            pace: settings.budget.pace_interval(),
        })?;
        Ok(AdyenAdapter {
            api_key,
            balance_account_id: settings.balance_account_id,
            hmac_keys,
            settle_delay: settings.settle_delay,
            http,
        })
    }

    /// The API base URL requests go to.
    pub fn api_base(&self) -> &str {
        self.http.base_url()
    }

    /// The credential and the source balance account, or — in a verify-only adapter (webhook
    /// function), which must never reach the API — an error that leaves the item retryable,
    /// since the fix is configuration, not the payout.
    /// A key that cannot be read just now leaves the item retryable too.
    async fn credentials(&self) -> Result<(HeaderValue, &str), PaymentError> {
        match (&self.api_key, self.balance_account_id.as_deref()) {
            (Some(key), Some(account)) => {
                Ok((key.newest_as_header(api_key_header).await?, account))
            }
            (None, _) => {
                error!("ADYEN_API_KEY is not set in this function: Adyen calls are refused");
                Err(PaymentError::PlatformRefused {
                    reason: "ADYEN_API_KEY is not configured".into(),
                })
            }
            (Some(_), None) => Err(PaymentError::PlatformRefused {
                reason: "ADYEN_BALANCE_ACCOUNT_ID is not configured".into(),
            }),
        }
    }

    /// One exchange with Adyen's API, started no later than `send_by`. `Err` says whether the
    /// request was sent at all.
    async fn send(
        &self,
        api_key: HeaderValue,
        call: AdyenCall<'_>,
        send_by: Option<tokio::time::Instant>,
    ) -> Result<HttpAnswer, SendError> {
        let call = PspCall {
            method: call.method,
            path_and_query: call.path_and_query,
            headers: vec![("x-api-key", api_key)],
            idempotency_key: call.idempotency_key,
            body: call
                .body
                .map(|body| ("application/json", Bytes::from(body))),
        };
        self.http.call(call, send_by).await
    }

    /// Classifies a non-2xx answer, and slows the whole adapter down on a 429.
    fn error_from(&self, answer: &HttpAnswer) -> PaymentError {
        // A refused key makes the next call read a stored key again (it may have been rotated).
        if answer.status == http::StatusCode::UNAUTHORIZED
            && let Some(key) = &self.api_key
        {
            key.forget();
        }
        let err = PaymentError::from(AdyenErrorAnswer {
            status: answer.status,
            retry_after: retry_after(&answer.headers),
            body: &answer.body,
        });
        self.http.honour_retry_after(&err);
        err
    }

    /// The outgoing transfers from `balance_account` created in `since_ms..=until_ms` (at most
    /// [`LOOKUP_WINDOW`] apart), carrying `reference` if one is given, every page (following
    /// the `next` cursor). Any failure is a lookup failure ([`lookup_failure`], with
    /// `context`), never a partial list; so is a list longer than `max_pages` pages.
    #[allow(clippy::too_many_arguments)]
    async fn list_transfers(
        &self,
        api_key: HeaderValue,
        balance_account: &str,
        reference: Option<&str>,
        (since_ms, until_ms): (u64, u64),
        send_by: Option<tokio::time::Instant>,
        max_pages: usize,
        context: &str,
    ) -> Result<Vec<Transfer>, PaymentError> {
        let (since, until) = (
            payouts_core::clock::rfc3339_from_ms(since_ms),
            payouts_core::clock::rfc3339_from_ms(until_ms),
        );
        let unreadable = |reason: String| PaymentError::Transient {
            reason: format!("{context}: {reason}"),
            retry_after: None,
        };
        let mut found = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..max_pages {
            let path = format!(
                "{TRANSFERS_PATH}?{}",
                list_query(
                    balance_account,
                    reference,
                    &since,
                    &until,
                    cursor.as_deref()
                )
            );
            let call = AdyenCall {
                method: Method::GET,
                path_and_query: &path,
                body: None,
                idempotency_key: None,
            };
            let answer = self
                .send(api_key.clone(), call, send_by)
                .await
                .map_err(|err| err.for_read(context))?;
            if !answer.status.is_success() {
                return Err(lookup_failure(context, self.error_from(&answer)));
            }
            let page: TransferList = serde_json::from_slice(&answer.body)
                .map_err(|e| unreadable(format!("unreadable page: {e}")))?;
            cursor = page.next_cursor().map_err(unreadable)?;
            found.extend(page.data.into_iter().filter(|t| {
                reference.is_none_or(|r| t.reference.as_deref() == Some(r))
                    && t.is_outgoing()
                    && t.balance_account_id()
                        .is_none_or(|id| id == balance_account)
            }));
            if cursor.is_none() {
                return Ok(found);
            }
        }
        Err(unreadable(format!(
            "more than {max_pages} pages; nothing is reported from a partial list"
        )))
    }
}

/// The creation window of a listing that ends now: until "now" plus [`LOOKUP_CLOCK_SLACK`]
/// (clock skew between us and Adyen), and from `since_ms`, clamped to Adyen's window
/// ([`LOOKUP_WINDOW`]).
fn window_since(since_ms: u64) -> (u64, u64) {
    let until_ms = payouts_core::clock::now_ms() + LOOKUP_CLOCK_SLACK.as_millis() as u64;
    let earliest = until_ms.saturating_sub(LOOKUP_WINDOW.as_millis() as u64);
    (since_ms.max(earliest), until_ms)
}

#[async_trait::async_trait]
impl WebhookVerifier for AdyenAdapter {
    async fn verify_webhook(
        &self,
        request: WebhookRequest<'_>,
    ) -> Result<VerifiedWebhook, WebhookError> {
        verify_with_rotation(&self.hmac_keys, |keys| {
            webhook::verify_and_parse(
                ADYEN_PROVIDER,
                keys,
                self.balance_account_id.as_deref(),
                request.headers,
                request.body,
                request.now_secs,
            )
        })
        .await
    }
}

#[async_trait::async_trait]
impl PaymentAdapter for AdyenAdapter {
    fn provider(&self) -> &str {
        ADYEN_PROVIDER
    }

    async fn submit_transfer(
        &self,
        request: &TransferRequest,
    ) -> Result<TransferReceipt, PaymentError> {
        let (api_key, source) = self.credentials().await?;
        let Some(reference) = transfer_reference(&request.batch_id, &request.item_id) else {
            // Nothing is sent: a shortened reference could no longer be found by webhooks and
            // lookups, which is what keeps a retry from paying twice.
            return Err(PaymentError::Rejected {
                code: "reference_too_long".into(),
                message: format!(
                    "payout:<batchId>:<itemId> is over Adyen's {} characters for a transfer reference; shorten the batch or item id",
                    transformers::MAX_REFERENCE_LEN
                ),
            });
        };
        let body = serde_json::to_vec(&TransferInfo::internal(request, source, reference.clone()))
            .map_err(|e| PaymentError::Transient {
                reason: format!("adyen: could not encode the transfer: {e}"),
                retry_after: None,
            })?;
        let key = idempotency_header(&request.idempotency_key);
        let call = AdyenCall {
            method: Method::POST,
            path_and_query: TRANSFERS_PATH,
            body: Some(body),
            idempotency_key: Some(&key),
        };
        let answer = self
            .send(api_key, call, request.send_by)
            .await
            .map_err(|err| match err {
                SendError::NotSent(reason) => PaymentError::NotSent {
                    reason: format!("adyen: {reason}"),
                },
                SendError::NoAnswer(reason) => PaymentError::OutcomeUnknown {
                    reason: format!("adyen: {reason}"),
                },
            })?;
        if answer.status.is_success() {
            let transfer = serde_json::from_slice::<Transfer>(&answer.body)
                .ok()
                .and_then(|t| Some((t.id.clone().filter(|id| !id.is_empty())?, t)));
            let Some((id, transfer)) = transfer else {
                return Err(PaymentError::NeedsReconciliation {
                    reason: format!(
                        "adyen answered {} with a body that is not a transfer",
                        answer.status
                    ),
                });
            };
            let differences = transfer.differences(request, &reference);
            if !differences.is_empty() {
                let message = format!(
                    "Adyen answered this idempotency key with transfer {id}, made for other parameters: {}",
                    differences.join(", ")
                );
                error!(
                    batch_id = %request.batch_id, item_id = %request.item_id,
                    idempotency_key = %request.idempotency_key, adyen_idempotency_key = %key,
                    transfer_id = %id, %message,
                    "IDEMPOTENCY ERROR: Adyen replayed a transfer made under this key for other parameters (amount, currency or destination changed since the first attempt?). Nothing was paid now; the item is failed and will be reconciled by lookup before any new key is used"
                );
                return Err(PaymentError::KeyConflict {
                    code: "idempotency_key_reused".into(),
                    message,
                });
            }
            if transfer.is_refused() {
                return Err(PaymentError::Rejected {
                    code: transfer.reason.clone().unwrap_or_else(|| "refused".into()),
                    message: format!("Adyen refused transfer {id}"),
                });
            }
            return Ok(TransferReceipt {
                provider_payout_id: id,
                // Adyen sends no replay signal: a replayed answer looks like the first one.
                replayed: false,
            });
        }
        let err = self.error_from(&answer);
        match &err {
            PaymentError::KeyConflict { message, .. } => error!(
                batch_id = %request.batch_id, item_id = %request.item_id,
                idempotency_key = %request.idempotency_key, adyen_message = %message,
                "IDEMPOTENCY ERROR: Adyen refused this key as used for another request. Nothing was paid now; the item is failed and will be reconciled by lookup before any new key is used"
            ),
            PaymentError::NeedsReconciliation { reason } => warn!(
                batch_id = %request.batch_id, item_id = %request.item_id,
                idempotency_key = %request.idempotency_key, reason = %reason,
                "Adyen answered 5xx (or an unknown status) under this key; the item is reconciled by lookup instead of resent"
            ),
            _ => {}
        }
        Err(err)
    }

    async fn find_transfer(
        &self,
        request: &TransferRequest,
    ) -> Result<Option<TransferReceipt>, PaymentError> {
        let (api_key, source) = self.credentials().await?;
        let Some(reference) = transfer_reference(&request.batch_id, &request.item_id) else {
            // Such an item was never sent (see `submit_transfer`).
            return Ok(None);
        };
        let found = self
            .list_transfers(
                api_key,
                source,
                Some(&reference),
                window_since(0),
                request.send_by,
                MAX_LIST_PAGES,
                &format!("adyen lookup of {reference}"),
            )
            .await?;
        Ok(pick_found(request, &reference, found))
    }

    fn minor_units(&self, amount: &PayoutAmount) -> Result<i64, MoneyError> {
        currency::minor_units(amount)
    }

    /// `GET /btl/v4/transfers/{id}` with `X-API-Key`, through the same paced path as the
    /// lookups by reference; the status is read as [`Transfer::state`] reads it. `NotFound`
    /// only on a 404 with Adyen's error body; every other failure is an error (a read changed
    /// nothing, so it is `Transient` unless the platform is refused).
    async fn transfer_state(&self, transfer_id: &str) -> Result<TransferState, PaymentError> {
        let id = transfer_id_segment(ADYEN_PROVIDER, transfer_id)?;
        let (api_key, _) = self.credentials().await?;
        let context = format!("adyen lookup of transfer {id}");
        let path = format!("{TRANSFERS_PATH}/{id}");
        let call = AdyenCall {
            method: Method::GET,
            path_and_query: &path,
            body: None,
            idempotency_key: None,
        };
        let answer = self
            .send(api_key, call, None)
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
        if transfer.id.as_deref() != Some(id) {
            return Err(unreadable(format!("answered transfer {:?}", transfer.id)));
        }
        transfer.state().map_err(unreadable)
    }

    /// `GET /btl/v4/transfers` for the platform's balance account, created from `since_ms`
    /// until now (plus an hour's slack for clock skew), every page (at most
    /// [`MAX_SINCE_PAGES`]), keeping only the outgoing side from that account, as the lookup by
    /// reference does. The item is the one the transfer's `reference` names
    /// ([`transformers::parse_reference`]); any other reference is `None`.
    ///
    /// Adyen lists at most 6 months per query ([`LOOKUP_WINDOW`]): a `since_ms` older than that
    /// is clamped to the window's start, so transfers older than about 6 months are not listed.
    /// The reconciler passes its last sweep time, which is far more recent. Any failure is an
    /// error ([`lookup_failure`]), never a partial list.
    async fn transfers_since(&self, since_ms: u64) -> Result<Vec<ListedTransfer>, PaymentError> {
        let (api_key, source) = self.credentials().await?;
        let window = window_since(since_ms);
        if window.0 >= window.1 {
            // A window that starts after now (and the clock slack): nothing can be in it.
            return Ok(Vec::new());
        }
        if window.0 > since_ms {
            warn!(
                since_ms,
                clamped_to_ms = window.0,
                "Adyen lists at most 6 months at a time: transfers older than that are not listed"
            );
        }
        let listed = self
            .list_transfers(
                api_key,
                source,
                None,
                window,
                None,
                MAX_SINCE_PAGES,
                &format!("adyen listing of transfers since {since_ms}"),
            )
            .await?;
        let mut out = Vec::with_capacity(listed.len());
        // A transfer Adyen refused or failed moved no money: it can be nobody's orphan (an item
        // refused at submission never records the transfer id of the refusal).
        let moved_no_money = |t: &Transfer| {
            t.status
                .as_deref()
                .is_some_and(|s| transformers::FAILED_STATUSES.contains(&s))
        };
        for transfer in listed.into_iter().filter(|t| !moved_no_money(t)) {
            let Some(id) = transfer.id.filter(|id| !id.is_empty()) else {
                return Err(PaymentError::Transient {
                    reason: "adyen listing answered a transfer without an id".into(),
                    retry_after: None,
                });
            };
            out.push(ListedTransfer {
                id,
                item: transfer.reference.as_deref().and_then(parse_reference),
            });
        }
        Ok(out)
    }

    fn key_reuse_window(&self) -> Option<Duration> {
        Some(KEY_REUSE_WINDOW)
    }

    fn lookup_horizon(&self) -> Option<Duration> {
        Some(LOOKUP_WINDOW)
    }

    fn reconciliation_settle_delay(&self) -> Duration {
        self.settle_delay
    }

    fn take_call_stats(&self) -> payouts_core::ports::payment::PspCallStats {
        self.http.take_stats()
    }
}

/// The transfer among those found for one item (listed oldest first). A transfer Adyen refused
/// moved nothing and is not the item's payment; more than one other means the item was paid
/// twice, which is logged at ERROR (the oldest is recorded).
fn pick_found(
    request: &TransferRequest,
    reference: &str,
    found: Vec<Transfer>,
) -> Option<TransferReceipt> {
    let live: Vec<Transfer> = found.into_iter().filter(|t| !t.is_refused()).collect();
    if live.len() > 1 {
        error!(
            batch_id = %request.batch_id, item_id = %request.item_id,
            transfers = ?live.iter().map(|t| t.id.as_deref().unwrap_or("?")).collect::<Vec<_>>(),
            "Adyen holds several transfers for one item: it was paid more than once; investigate"
        );
    }
    let transfer = live.into_iter().find(|t| t.id.is_some())?;
    let id = transfer.id.clone()?;
    let differences = transfer.differences(request, reference);
    if !differences.is_empty() {
        warn!(
            batch_id = %request.batch_id, item_id = %request.item_id, transfer_id = %id,
            differences = ?differences,
            "the item's transfer at Adyen differs from the item as it reads now; recorded as made, not paid again"
        );
    }
    Some(TransferReceipt {
        provider_payout_id: id,
        replayed: true,
    })
}

/// The `X-API-Key` header for `key`, marked sensitive (never logged).
fn api_key_header(key: &Secret) -> Result<HeaderValue, ConfigError> {
    let mut value = HeaderValue::from_str(key.expose()).map_err(|_| ConfigError::Invalid {
        name: "ADYEN_API_KEY",
        value: "<redacted>".to_owned(),
        expected: "printable ASCII (an Adyen API key)",
    })?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use payouts_core::ports::payment::IdempotencyKey;

    const HMAC_KEY: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";

    fn verify_only() -> AdyenAdapter {
        let mut settings = AdyenSettings::new("", "");
        settings.api_base = "http://127.0.0.1:1".into();
        settings.hmac_keys = vec![Secret::from(HMAC_KEY)];
        AdyenAdapter::new(settings).unwrap()
    }

    fn transfer(batch_id: &str, item_id: &str) -> TransferRequest {
        TransferRequest {
            idempotency_key: IdempotencyKey::for_item(batch_id, item_id, 0),
            batch_id: batch_id.into(),
            item_id: item_id.into(),
            destination: "BA_RECIPIENT".into(),
            amount_minor: 100,
            currency: "EUR".into(),
            send_by: None,
        }
    }

    #[test]
    fn debug_hides_the_key_and_the_base_is_checked() {
        let mut settings = AdyenSettings::new("AQE_secret_api_key_value", "BA_PLATFORM");
        settings.hmac_keys = vec![Secret::from(HMAC_KEY)];
        assert!(!format!("{settings:?}").contains("secret_api_key"));
        assert!(!format!("{settings:?}").contains(HMAC_KEY));
        settings.api_base = "http://balanceplatform.example.com".into();
        assert!(matches!(
            AdyenAdapter::new(settings.clone()),
            Err(ConfigError::Invalid {
                name: "ADYEN_API_BASE",
                ..
            })
        ));
        settings.api_base = "http://127.0.0.1:8089/".into();
        let adapter = AdyenAdapter::new(settings).unwrap();
        assert_eq!(adapter.api_base(), "http://127.0.0.1:8089");
        assert!(!format!("{adapter:?}").contains("secret_api_key"));
        let default = AdyenAdapter::new(AdyenSettings::new("k", "BA")).unwrap();
        assert_eq!(
            default.api_base(),
            "https://balanceplatform-api-test.adyen.com"
        );
    }

    #[tokio::test]
    async fn a_verify_only_adapter_verifies_webhooks_and_refuses_to_pay() {
        let adapter = verify_only();
        let body = webhook::transfer_event_json(
            "balancePlatform.transfer.updated",
            "T1",
            3,
            "booked",
            None,
            "payout:b:i",
            "BA_PLATFORM",
            "BA_RECIPIENT",
            (100, "EUR"),
            &payouts_core::clock::rfc3339_from_ms(1_000_000),
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            "HmacSignature",
            webhook::sign(HMAC_KEY, body.as_bytes())
                .unwrap()
                .parse()
                .unwrap(),
        );
        let verified = adapter
            .verify_webhook(WebhookRequest {
                body: body.as_bytes(),
                headers: &headers,
                now_secs: 1_000,
            })
            .await
            .unwrap();
        assert_eq!(verified.events[0].event_id, "T1:3");
        assert!(matches!(
            verified.acknowledgement,
            payouts_core::ports::webhook::Acknowledgement::Fixed { .. }
        ));
        let refused = adapter
            .submit_transfer(&transfer("b", "i"))
            .await
            .unwrap_err();
        assert!(
            matches!(refused, PaymentError::PlatformRefused { ref reason } if reason.contains("ADYEN_API_KEY")),
            "{refused:?}"
        );
        assert!(refused.is_retryable());
        assert!(adapter.find_transfer(&transfer("b", "i")).await.is_err());
        assert!(matches!(
            adapter.transfer_state("T1").await,
            Err(PaymentError::PlatformRefused { .. })
        ));
    }

    #[tokio::test]
    async fn a_lookup_by_id_never_says_absent_without_an_answer() {
        let mut settings = AdyenSettings::new("k", "BA");
        // Nothing listens there: no answer at all.
        settings.api_base = "http://127.0.0.1:1".into();
        let adapter = AdyenAdapter::new(settings).unwrap();
        assert!(matches!(
            adapter.transfer_state("T1").await,
            Err(PaymentError::Transient { .. })
        ));
        assert!(matches!(
            adapter.transfer_state("T1?balanceAccountId=BA").await,
            Err(PaymentError::Rejected { code, .. }) if code == "invalid_transfer_id"
        ));
    }

    #[tokio::test]
    async fn no_hmac_key_is_not_configured() {
        let mut settings = AdyenSettings::new("k", "BA");
        settings.api_base = "http://127.0.0.1:1".into();
        let adapter = AdyenAdapter::new(settings).unwrap();
        let verified = adapter
            .verify_webhook(WebhookRequest {
                body: b"{}",
                headers: &HeaderMap::new(),
                now_secs: 1_000,
            })
            .await;
        assert_eq!(
            verified,
            Err(WebhookError::NotConfigured {
                provider: "adyen".into()
            })
        );
    }

    #[tokio::test]
    async fn an_overlong_reference_is_refused_before_anything_is_sent() {
        let mut settings = AdyenSettings::new("k", "BA");
        settings.api_base = "http://127.0.0.1:1".into();
        let adapter = AdyenAdapter::new(settings).unwrap();
        let long = transfer(&"b".repeat(70), "item-1");
        assert!(matches!(
            adapter.submit_transfer(&long).await,
            Err(PaymentError::Rejected { code, .. }) if code == "reference_too_long"
        ));
        assert_eq!(adapter.find_transfer(&long).await, Ok(None));
        // A network failure on a create is an unknown outcome (the same key will tell).
        assert!(matches!(
            adapter.submit_transfer(&transfer("b", "i")).await,
            Err(PaymentError::OutcomeUnknown { .. })
        ));
    }
}
