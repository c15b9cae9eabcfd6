//! The adapter conformance suite: what every PSP adapter must do, run against each adapter
//! over its own PSP side (the sandbox's ledger; the Stripe adapter over HTTP against the fake
//! Stripe; the Adyen adapter against the fake Adyen). A new PSP adds one [`Subject`] and one
//! line per case below.

use async_trait::async_trait;
use http::HeaderMap;
use integration_tests::fakes::adyen::{FAKE_HMAC_KEY, FakeAdyen, SignedWebhook};
use integration_tests::fakes::stripe::FakeStripe;
use payouts_core::ports::payment::{IdempotencyKey, PaymentAdapter, PaymentError, TransferRequest};
use payouts_core::ports::webhook::{
    ItemReference, PaymentEventKind, VerifiedWebhook, WebhookError, WebhookRequest,
};
use payouts_psp::adyen::AdyenAdapter;
use payouts_psp::adyen::webhook::transfer_event_json as adyen_event_json;
use payouts_psp::sandbox::SandboxPsp;
use payouts_psp::stripe::StripeAdapter;
use payouts_psp::stripe::webhook::{signature_header, transfer_event_json};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const WEBHOOK_SECRET: &str = "whsec_conformance";
const DESTINATION: &str = "acct_conformance_1";

/// One adapter with its PSP side: what the suite needs beyond the adapter itself.
#[async_trait]
trait Subject: Send + Sync {
    fn adapter(&self) -> Arc<dyn PaymentAdapter>;
    /// Transfers the PSP holds for the item, whatever key they were made under.
    fn transfers_for_item(&self, batch_id: &str, item_id: &str) -> usize;
    /// A `transfer.created`-style notification for `transfer_id`, signed as the PSP signs.
    fn signed_transfer_event(
        &self,
        event_id: &str,
        transfer_id: &str,
        reference: &ItemReference,
        now_secs: u64,
    ) -> (Vec<u8>, HeaderMap);
    /// Whether the PSP says when an answer is a replay (Adyen's answers do not).
    fn signals_replay(&self) -> bool {
        true
    }
    /// The event id the adapter gives the notification `signed_transfer_event` signs with
    /// `event_id` (a PSP without event ids derives one, as Adyen's adapter does).
    fn expected_event_id(&self, event_id: &str, _transfer_id: &str) -> String {
        event_id.to_owned()
    }
    /// How far from its signing time a notification is refused as stale.
    fn stale_after_secs(&self) -> u64 {
        3_600
    }
}

struct Sandbox(Arc<SandboxPsp>);

#[async_trait]
impl Subject for Sandbox {
    fn adapter(&self) -> Arc<dyn PaymentAdapter> {
        self.0.clone()
    }

    fn transfers_for_item(&self, batch_id: &str, item_id: &str) -> usize {
        self.0.transfers_for_item(batch_id, item_id)
    }

    fn signed_transfer_event(
        &self,
        event_id: &str,
        transfer_id: &str,
        reference: &ItemReference,
        now_secs: u64,
    ) -> (Vec<u8>, HeaderMap) {
        stripe_scheme_event(event_id, transfer_id, reference, now_secs)
    }
}

struct Stripe {
    fake: FakeStripe,
    adapter: Arc<StripeAdapter>,
}

#[async_trait]
impl Subject for Stripe {
    fn adapter(&self) -> Arc<dyn PaymentAdapter> {
        self.adapter.clone()
    }

    fn transfers_for_item(&self, batch_id: &str, item_id: &str) -> usize {
        self.fake
            .transfers()
            .iter()
            .filter(|t| {
                t.metadata.get("batch_id").map(String::as_str) == Some(batch_id)
                    && t.metadata.get("item_id").map(String::as_str) == Some(item_id)
            })
            .count()
    }

    fn signed_transfer_event(
        &self,
        event_id: &str,
        transfer_id: &str,
        reference: &ItemReference,
        now_secs: u64,
    ) -> (Vec<u8>, HeaderMap) {
        stripe_scheme_event(event_id, transfer_id, reference, now_secs)
    }
}

fn stripe_scheme_event(
    event_id: &str,
    transfer_id: &str,
    reference: &ItemReference,
    now_secs: u64,
) -> (Vec<u8>, HeaderMap) {
    let body = transfer_event_json(event_id, "transfer.created", transfer_id, reference, None);
    let mut headers = HeaderMap::new();
    headers.insert(
        "Stripe-Signature",
        signature_header(WEBHOOK_SECRET, now_secs, body.as_bytes())
            .parse()
            .unwrap(),
    );
    (body.into_bytes(), headers)
}

struct Adyen {
    fake: FakeAdyen,
    adapter: Arc<AdyenAdapter>,
}

/// The sequence number the conformance notification carries (`booked` is the third event).
const ADYEN_BOOKED_SEQUENCE: u64 = 3;

#[async_trait]
impl Subject for Adyen {
    fn adapter(&self) -> Arc<dyn PaymentAdapter> {
        self.adapter.clone()
    }

    fn transfers_for_item(&self, batch_id: &str, item_id: &str) -> usize {
        self.fake
            .transfers_with_reference(&format!("payout:{batch_id}:{item_id}"))
            .len()
    }

    fn signed_transfer_event(
        &self,
        _event_id: &str,
        transfer_id: &str,
        reference: &ItemReference,
        now_secs: u64,
    ) -> (Vec<u8>, HeaderMap) {
        let body = adyen_event_json(
            "balancePlatform.transfer.updated",
            transfer_id,
            ADYEN_BOOKED_SEQUENCE,
            "booked",
            None,
            &format!("payout:{}:{}", reference.batch_id, reference.item_id),
            integration_tests::fakes::adyen::FAKE_BALANCE_ACCOUNT,
            DESTINATION,
            (500, "EUR"),
            &payouts_core::clock::rfc3339_from_ms(now_secs * 1000),
        );
        let signed = SignedWebhook::new(body, FAKE_HMAC_KEY);
        (signed.body.clone().into_bytes(), signed.headers())
    }

    fn signals_replay(&self) -> bool {
        false
    }

    fn expected_event_id(&self, _event_id: &str, transfer_id: &str) -> String {
        format!("{transfer_id}:{ADYEN_BOOKED_SEQUENCE}")
    }

    fn stale_after_secs(&self) -> u64 {
        payouts_psp::adyen::webhook::SIGNATURE_TOLERANCE_SECS + 3_600
    }
}

async fn adyen() -> Box<dyn Subject> {
    let fake = FakeAdyen::start().await;
    let adapter = Arc::new(AdyenAdapter::new(fake.config()).expect("adapter"));
    Box::new(Adyen { fake, adapter })
}

fn sandbox() -> Box<dyn Subject> {
    Box::new(Sandbox(Arc::new(
        SandboxPsp::new(Duration::ZERO).with_webhook_secrets(vec![WEBHOOK_SECRET.into()]),
    )))
}

async fn stripe() -> Box<dyn Subject> {
    let fake = FakeStripe::start().await;
    let mut settings = fake.config();
    settings.webhook_secrets = vec![WEBHOOK_SECRET.into()];
    let adapter = Arc::new(StripeAdapter::new(settings).expect("adapter"));
    Box::new(Stripe { fake, adapter })
}

fn request(item_id: &str, generation: u32, amount_minor: i64) -> TransferRequest {
    TransferRequest {
        idempotency_key: IdempotencyKey::for_item("b-conf", item_id, generation),
        batch_id: "b-conf".into(),
        item_id: item_id.into(),
        destination: DESTINATION.into(),
        amount_minor,
        currency: "USD".into(),
        send_by: None,
    }
}

async fn verify(
    adapter: &dyn PaymentAdapter,
    body: &[u8],
    headers: &HeaderMap,
    now_secs: u64,
) -> Result<VerifiedWebhook, WebhookError> {
    adapter
        .verify_webhook(WebhookRequest {
            body,
            headers,
            now_secs,
        })
        .await
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The same key with the same parameters replays the first transfer; nothing new is made.
async fn replays_a_key(subject: &dyn Subject) {
    let adapter = subject.adapter();
    let first = adapter.submit_transfer(&request("i-replay", 0, 500)).await;
    let again = adapter.submit_transfer(&request("i-replay", 0, 500)).await;
    let (first, again) = (first.expect("first"), again.expect("replay"));
    assert_eq!(first.provider_payout_id, again.provider_payout_id);
    if subject.signals_replay() {
        assert!(!first.replayed && again.replayed, "{first:?} {again:?}");
    }
    assert_eq!(subject.transfers_for_item("b-conf", "i-replay"), 1);
}

/// The same key with other parameters is a key conflict (never a new transfer, never a plain
/// rejection that would move the item to a new key without a lookup).
async fn refuses_changed_parameters_under_a_key(subject: &dyn Subject) {
    let adapter = subject.adapter();
    adapter
        .submit_transfer(&request("i-changed", 0, 500))
        .await
        .expect("first");
    let changed = adapter
        .submit_transfer(&request("i-changed", 0, 501))
        .await
        .unwrap_err();
    assert!(
        matches!(changed, PaymentError::KeyConflict { .. }),
        "{changed:?}"
    );
    assert!(changed.requires_reconciliation() && !changed.is_retryable());
    assert_eq!(subject.transfers_for_item("b-conf", "i-changed"), 1);
}

/// A lookup by reference says "certainly absent" before any transfer, and finds the transfer
/// whatever key generation asks.
async fn looks_transfers_up_by_reference(subject: &dyn Subject) {
    let adapter = subject.adapter();
    assert_eq!(
        adapter.find_transfer(&request("i-lookup", 0, 700)).await,
        Ok(None)
    );
    let made = adapter
        .submit_transfer(&request("i-lookup", 0, 700))
        .await
        .expect("submit");
    let found = adapter
        .find_transfer(&request("i-lookup", 3, 700))
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(found.provider_payout_id, made.provider_payout_id);
    assert!(found.replayed);
}

/// A signed notification verifies to its event (transfer id and item reference); a tampered
/// body, a missing signature and a stale one are refused.
async fn verifies_webhooks(subject: &dyn Subject) {
    let adapter = subject.adapter();
    let reference = ItemReference {
        batch_id: "b-conf".into(),
        item_id: "i-hook".into(),
    };
    let now = now_secs();
    let (body, headers) = subject.signed_transfer_event("evt_conf_1", "tr_conf_1", &reference, now);
    let verified = verify(adapter.as_ref(), &body, &headers, now)
        .await
        .expect("verifies");
    assert_eq!(verified.events.len(), 1);
    let event = &verified.events[0];
    assert_eq!(
        event.event_id,
        subject.expected_event_id("evt_conf_1", "tr_conf_1")
    );
    assert_eq!(event.provider_payout_id.as_deref(), Some("tr_conf_1"));
    assert_eq!(event.reference.as_ref(), Some(&reference));
    assert_eq!(event.kind, Some(PaymentEventKind::Paid));
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    assert_eq!(
        verify(adapter.as_ref(), &tampered, &headers, now).await,
        Err(WebhookError::BadSignature)
    );
    assert_eq!(
        verify(adapter.as_ref(), &body, &HeaderMap::new(), now).await,
        Err(WebhookError::MissingSignature)
    );
    assert!(matches!(
        verify(
            adapter.as_ref(),
            &body,
            &headers,
            now + subject.stale_after_secs()
        )
        .await,
        Err(WebhookError::StaleTimestamp { .. })
    ));
}

#[tokio::test]
async fn sandbox_conforms() {
    let subject = sandbox();
    replays_a_key(subject.as_ref()).await;
    refuses_changed_parameters_under_a_key(subject.as_ref()).await;
    looks_transfers_up_by_reference(subject.as_ref()).await;
    verifies_webhooks(subject.as_ref()).await;
}

#[tokio::test]
async fn stripe_conforms() {
    let subject = stripe().await;
    replays_a_key(subject.as_ref()).await;
    refuses_changed_parameters_under_a_key(subject.as_ref()).await;
    looks_transfers_up_by_reference(subject.as_ref()).await;
    verifies_webhooks(subject.as_ref()).await;
}

#[tokio::test]
async fn adyen_conforms() {
    let subject = adyen().await;
    replays_a_key(subject.as_ref()).await;
    refuses_changed_parameters_under_a_key(subject.as_ref()).await;
    looks_transfers_up_by_reference(subject.as_ref()).await;
    verifies_webhooks(subject.as_ref()).await;
}
