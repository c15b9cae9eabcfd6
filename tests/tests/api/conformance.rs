//! The adapter conformance suite: what every PSP adapter must do, run against each adapter
//! over its own PSP side (the sandbox's ledger; the Stripe adapter over HTTP against the fake
//! Stripe; the Adyen adapter against the fake Adyen). A new PSP adds one [`Subject`] and one
//! line per case below.

use async_trait::async_trait;
use http::HeaderMap;
use integration_tests::fakes::adyen::{FAKE_HMAC_KEY, FakeAdyen, SignedWebhook};
use integration_tests::fakes::stripe::FakeStripe;
use payouts_core::ports::payment::{
    IdempotencyKey, PaymentAdapter, PaymentError, TransferRequest, TransferState,
};
use payouts_core::ports::webhook::{
    ItemReference, PaymentEventKind, VerifiedWebhook, WebhookError, WebhookRequest,
};
use payouts_psp::adyen::AdyenAdapter;
use payouts_psp::adyen::webhook::transfer_event_json as adyen_event_json;
use payouts_psp::sandbox::SandboxPsp;
use payouts_psp::stripe::StripeAdapter;
use payouts_psp::stripe::webhook::{signature_header, transfer_event_json};
use std::collections::HashMap;
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
    /// What a lookup by id says of a transfer just made: paid where a transfer moves the money
    /// when it is made; Adyen's starts `received`.
    fn state_when_made(&self) -> TransferState {
        TransferState::Paid
    }
    /// Moves `transfer_id` on to paid at the PSP where that is a later step (Adyen: `booked`).
    fn book(&self, _transfer_id: &str) {}
    /// Takes `transfer_id` back in full at the PSP (Stripe: reversed; Adyen: `returned`) and
    /// returns the reason the lookup should give; `None` where the PSP side cannot.
    fn take_back(&self, _transfer_id: &str) -> Option<String> {
        None
    }
    /// Has the PSP refuse `transfer_id` after it was made (Adyen: `refused`) and returns the
    /// reason the lookup should give; `None` where a made transfer cannot fail.
    fn refuse(&self, _transfer_id: &str) -> Option<String> {
        None
    }
    /// Makes the PSP's next lookup by id answer a 5xx; `false` where there is no HTTP side.
    fn fail_next_lookup(&self) -> bool {
        false
    }
    /// Requests the PSP side has received so far; `None` where there is no HTTP side.
    fn requests_received(&self) -> Option<usize> {
        None
    }
    /// Lets time pass at the PSP and returns a `since_ms` after every transfer made so far and
    /// not after any made from now on; `None` where the PSP side keeps no time (the sandbox).
    async fn time_passes(&self) -> Option<u64> {
        None
    }
    /// Makes a transfer at the PSP outside our executor (an orphan when it names one of our
    /// items), naming `item` the way the adapter would, or nothing of ours; returns its id.
    /// `None` where the PSP side cannot.
    fn make_outside_transfer(&self, _item: Option<&ItemReference>) -> Option<String> {
        None
    }
    /// Makes the PSP's list pages hold at most `size` transfers; `false` where it cannot.
    fn set_max_page_size(&self, _size: usize) -> bool {
        false
    }
    /// Makes the PSP's `nth` list request from now answer a 5xx; `false` where it cannot.
    fn fail_list_request(&self, _nth: usize) -> bool {
        false
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

    fn take_back(&self, transfer_id: &str) -> Option<String> {
        let transfer = self
            .fake
            .transfers()
            .into_iter()
            .find(|t| t.id == transfer_id)
            .expect("known transfer");
        self.fake.reverse(transfer_id, transfer.amount);
        Some(format!("reversed: {0} of {0}", transfer.amount))
    }

    fn fail_next_lookup(&self) -> bool {
        self.fake.fail_retrievals(1);
        true
    }

    fn requests_received(&self) -> Option<usize> {
        Some(self.fake.requests().len())
    }

    async fn time_passes(&self) -> Option<u64> {
        // `created` is in whole seconds: the next second starts after everything made so far.
        let since_secs = self.fake.now_secs() + 1;
        self.fake.advance_clock(Duration::from_secs(1));
        Some(since_secs * 1000)
    }

    fn make_outside_transfer(&self, item: Option<&ItemReference>) -> Option<String> {
        Some(self.fake.make_transfer(
            DESTINATION,
            900,
            "USD",
            item.map(|r| (r.batch_id.as_str(), r.item_id.as_str())),
        ))
    }

    fn set_max_page_size(&self, size: usize) -> bool {
        self.fake.set_max_page_size(size);
        true
    }

    fn fail_list_request(&self, nth: usize) -> bool {
        self.fake.fail_list_request(nth);
        true
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

    fn state_when_made(&self) -> TransferState {
        TransferState::InFlight
    }

    fn book(&self, transfer_id: &str) {
        self.fake.advance(transfer_id, "booked", None);
    }

    fn take_back(&self, transfer_id: &str) -> Option<String> {
        self.fake
            .advance(transfer_id, "returned", Some("counterpartyAccountClosed"));
        Some("returned: counterpartyAccountClosed".into())
    }

    fn refuse(&self, transfer_id: &str) -> Option<String> {
        self.fake
            .advance(transfer_id, "refused", Some("notEnoughBalance"));
        Some("refused: notEnoughBalance".into())
    }

    fn fail_next_lookup(&self) -> bool {
        self.fake.fail_retrievals(1);
        true
    }

    fn requests_received(&self) -> Option<usize> {
        Some(self.fake.requests().len())
    }

    async fn time_passes(&self) -> Option<u64> {
        // The fake stamps transfers on the machine's clock, as the adapter's windows read it.
        let since_ms = payouts_core::clock::now_ms() + 1;
        while payouts_core::clock::now_ms() <= since_ms {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Some(since_ms)
    }

    fn make_outside_transfer(&self, item: Option<&ItemReference>) -> Option<String> {
        let reference = item.map_or_else(
            || "manual adjustment 42".to_owned(),
            |r| format!("payout:{}:{}", r.batch_id, r.item_id),
        );
        Some(self.fake.make_transfer(DESTINATION, 900, "USD", &reference))
    }

    fn set_max_page_size(&self, size: usize) -> bool {
        self.fake.set_max_page_size(size);
        true
    }

    fn fail_list_request(&self, nth: usize) -> bool {
        self.fake.fail_list_request(nth);
        true
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

/// A lookup by id reads the state the PSP shows for a transfer: as made, paid, taken back or
/// failed; "not found" only for an id the PSP answered it does not have, never for a failed
/// lookup; and an id that could change the request's path or query is refused unsent.
async fn looks_transfers_up_by_id(subject: &dyn Subject) {
    let adapter = subject.adapter();
    let made = adapter
        .submit_transfer(&request("i-state", 0, 500))
        .await
        .expect("submit")
        .provider_payout_id;
    assert_eq!(
        adapter.transfer_state(&made).await,
        Ok(subject.state_when_made())
    );
    subject.book(&made);
    assert_eq!(adapter.transfer_state(&made).await, Ok(TransferState::Paid));
    assert_eq!(
        adapter.transfer_state("tr_conformance_unknown").await,
        Ok(TransferState::NotFound)
    );

    if let Some(reason) = subject.take_back(&made) {
        assert_eq!(
            adapter.transfer_state(&made).await,
            Ok(TransferState::Reversed { reason })
        );
    }
    let refused = adapter
        .submit_transfer(&request("i-state-refused", 0, 500))
        .await
        .expect("submit")
        .provider_payout_id;
    if let Some(reason) = subject.refuse(&refused) {
        assert_eq!(
            adapter.transfer_state(&refused).await,
            Ok(TransferState::Failed { reason })
        );
    }

    if subject.fail_next_lookup() {
        let failed = adapter.transfer_state(&made).await;
        assert!(
            matches!(&failed, Err(err) if err.is_retryable()),
            "a 5xx is a retryable error, never a state: {failed:?}"
        );
        assert!(
            adapter.transfer_state(&made).await.is_ok(),
            "the next lookup is answered again"
        );
    }

    let sent_before = subject.requests_received();
    for unsafe_id in [
        format!("{made}/reversals"),
        format!("{made}?expand[]=destination"),
        "../../v1/balance".to_owned(),
        format!("{made}#"),
        String::new(),
    ] {
        let refused = adapter.transfer_state(&unsafe_id).await;
        assert!(
            matches!(&refused, Err(PaymentError::Rejected { code, .. }) if code == "invalid_transfer_id"),
            "{unsafe_id:?}: {refused:?}"
        );
    }
    assert_eq!(
        subject.requests_received(),
        sent_before,
        "a refused id sends nothing"
    );
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

fn item(item_id: &str) -> ItemReference {
    ItemReference {
        batch_id: "b-conf".into(),
        item_id: item_id.into(),
    }
}

/// The transfers made since a time, every page, each with the item it names: those made
/// before are left out (where the PSP keeps time), ours and orphans (made outside the executor
/// but naming one of our items) name their item, others name none; a failed page is an error,
/// never a shorter list.
async fn lists_transfers_since(subject: &dyn Subject) {
    let adapter = subject.adapter();
    let earlier = adapter
        .submit_transfer(&request("i-list-earlier", 0, 500))
        .await
        .expect("submit")
        .provider_payout_id;
    let earlier_orphan = subject.make_outside_transfer(Some(&item("i-list-earlier")));
    let since = subject.time_passes().await;

    let mut ours = Vec::new();
    for n in 0..5 {
        let item_id = format!("i-list-{n}");
        let made = adapter
            .submit_transfer(&request(&item_id, 0, 500))
            .await
            .expect("submit");
        ours.push((made.provider_payout_id, item(&item_id)));
    }
    // An orphan: names item i-list-0, which records another transfer.
    let orphan = subject.make_outside_transfer(Some(&item("i-list-0")));
    let foreign = subject.make_outside_transfer(None);

    let paged = subject.set_max_page_size(2);
    let sent_before = subject.requests_received();
    let listed = adapter
        .transfers_since(since.unwrap_or(0))
        .await
        .expect("listed");
    let by_id: HashMap<&str, Option<&ItemReference>> = listed
        .iter()
        .map(|t| (t.id.as_str(), t.item.as_ref()))
        .collect();
    assert_eq!(by_id.len(), listed.len(), "each transfer once: {listed:?}");
    for (id, reference) in &ours {
        assert_eq!(by_id.get(id.as_str()), Some(&Some(reference)), "{listed:?}");
    }
    if let Some(orphan) = &orphan {
        assert_eq!(
            by_id.get(orphan.as_str()),
            Some(&Some(&item("i-list-0"))),
            "{listed:?}"
        );
    }
    if let Some(foreign) = &foreign {
        assert_eq!(by_id.get(foreign.as_str()), Some(&None), "{listed:?}");
    }
    if since.is_some() {
        assert!(!by_id.contains_key(earlier.as_str()), "{listed:?}");
        if let Some(earlier_orphan) = &earlier_orphan {
            assert!(!by_id.contains_key(earlier_orphan.as_str()), "{listed:?}");
        }
        let expected = ours.len() + usize::from(orphan.is_some()) + usize::from(foreign.is_some());
        assert_eq!(listed.len(), expected, "only those since: {listed:?}");
    } else {
        assert_eq!(
            by_id.get(earlier.as_str()),
            Some(&Some(&item("i-list-earlier"))),
            "a PSP side without time lists all it made"
        );
    }
    if paged {
        let pages = subject.requests_received().unwrap() - sent_before.unwrap();
        assert_eq!(pages, listed.len().div_ceil(2), "every page of 2 was read");
    }

    // A transfer the PSP refused moved no money: it is not listed (it is nobody's orphan).
    let mut expected_now = listed.len();
    if subject.refuse(&ours[1].0).is_some() {
        expected_now -= 1;
        let relisted = adapter
            .transfers_since(since.unwrap_or(0))
            .await
            .expect("listed");
        assert!(
            !relisted.iter().any(|t| t.id == ours[1].0),
            "a refused transfer is not listed: {relisted:?}"
        );
        assert_eq!(relisted.len(), expected_now, "{relisted:?}");
    }

    if subject.fail_list_request(2) {
        let failed = adapter.transfers_since(since.unwrap_or(0)).await;
        assert!(
            matches!(&failed, Err(err) if err.is_retryable()),
            "a 5xx on a page is a retryable error, never a partial list: {failed:?}"
        );
        assert_eq!(
            adapter
                .transfers_since(since.unwrap_or(0))
                .await
                .as_ref()
                .map(Vec::len),
            Ok(expected_now),
            "the next listing is answered again"
        );
    }
}

#[tokio::test]
async fn sandbox_conforms() {
    let subject = sandbox();
    replays_a_key(subject.as_ref()).await;
    refuses_changed_parameters_under_a_key(subject.as_ref()).await;
    looks_transfers_up_by_reference(subject.as_ref()).await;
    looks_transfers_up_by_id(subject.as_ref()).await;
    verifies_webhooks(subject.as_ref()).await;
    lists_transfers_since(subject.as_ref()).await;
}

#[tokio::test]
async fn stripe_conforms() {
    let subject = stripe().await;
    replays_a_key(subject.as_ref()).await;
    refuses_changed_parameters_under_a_key(subject.as_ref()).await;
    looks_transfers_up_by_reference(subject.as_ref()).await;
    looks_transfers_up_by_id(subject.as_ref()).await;
    verifies_webhooks(subject.as_ref()).await;
    lists_transfers_since(subject.as_ref()).await;
}

#[tokio::test]
async fn adyen_conforms() {
    let subject = adyen().await;
    replays_a_key(subject.as_ref()).await;
    refuses_changed_parameters_under_a_key(subject.as_ref()).await;
    looks_transfers_up_by_reference(subject.as_ref()).await;
    looks_transfers_up_by_id(subject.as_ref()).await;
    verifies_webhooks(subject.as_ref()).await;
    lists_transfers_since(subject.as_ref()).await;
}
