//! The Adyen adapter end to end: the real executor and the real webhook function, the real HTTP
//! adapter, the fake Adyen (`integration_tests::fakes::adyen`) and a real DynamoDB API. What
//! was paid is what the fake counts per counterparty; what Adyen says later arrives as signed
//! `balancePlatform.transfer.*` webhooks from the fake.

use http::{Method, StatusCode};
use integration_tests::fakes::adyen::{
    FAKE_BALANCE_ACCOUNT, FAKE_HMAC_KEY, FAKE_KEY_RETENTION, FakeAdyen, Fault, SignedWebhook,
};
use integration_tests::{TestEnv, items, test_config, verified_users};
use payouts_config::{AdyenSettings, Secret};
use payouts_core::domain::ItemStatus;
use payouts_core::executor::Executor;
use payouts_core::ports::payment::{IdempotencyKey, PaymentAdapter, PaymentError, TransferRequest};
use payouts_core::registry::PaymentAdapterRegistry;
use payouts_psp::adyen::AdyenAdapter;
use payouts_psp::adyen::transformers::idempotency_header;
use payouts_psp::adyen::webhook::ACKNOWLEDGEMENT_BODY;
use psp_webhook::{WebhookApp, WebhookResponse, handle_webhook};
use std::sync::Arc;
use std::time::Duration;

struct Setup {
    env: TestEnv,
    fake: FakeAdyen,
    adapter: Arc<AdyenAdapter>,
    executor: Executor,
    webhooks: WebhookApp,
}

async fn setup(batch_id: &str, batch: &[(String, String, String)]) -> Setup {
    let env = TestEnv::start().await;
    env.seed_batch(batch_id, "adyen", "EUR", batch).await;
    env.seed_users(&verified_users(batch)).await;
    let fake = FakeAdyen::start().await;
    let adapter = Arc::new(AdyenAdapter::new(fake.config()).expect("adapter"));
    let executor = env.executor_with(adapter.clone(), test_config());
    // The webhook function's adapter, as deployed: the HMAC key and the balance account, no
    // API key.
    let mut verify_only = AdyenSettings::new("", FAKE_BALANCE_ACCOUNT);
    verify_only.api_base = fake.base_url();
    verify_only.hmac_keys = vec![Secret::from(FAKE_HMAC_KEY)];
    let webhooks = WebhookApp::new(
        env.repository(),
        PaymentAdapterRegistry::new()
            .register(Arc::new(AdyenAdapter::new(verify_only).expect("adapter"))),
        Arc::new(env.clock.clone()),
    );
    Setup {
        env,
        fake,
        adapter,
        executor,
        webhooks,
    }
}

impl Setup {
    async fn post(&self, webhook: &SignedWebhook) -> WebhookResponse {
        handle_webhook(
            &self.webhooks,
            &Method::POST,
            "/webhooks/adyen",
            &webhook.headers(),
            webhook.body.as_bytes(),
            payouts_core::clock::now_ms() / 1000,
        )
        .await
    }

    /// The transfer the fake made for `item_id` of `batch_id` (exactly one).
    fn transfer_of(
        &self,
        batch_id: &str,
        item_id: &str,
    ) -> integration_tests::fakes::adyen::FakeTransfer {
        let made = self
            .fake
            .transfers_with_reference(&format!("payout:{batch_id}:{item_id}"));
        assert_eq!(made.len(), 1, "{made:?}");
        made.into_iter().next().unwrap()
    }
}

fn result(response: &WebhookResponse) -> &str {
    response
        .body
        .get("result")
        .and_then(|v| v.as_str())
        .unwrap_or("")
}

fn destination(user: &str) -> String {
    format!("acct_{user}")
}

/// The settle delay of `FakeAdyen::config`, plus margin.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn happy_path_pays_and_booked_marks_paid() {
    let batch = items(2, "12.34");
    let t = setup("b-adyen-happy", &batch).await;

    let summary = t
        .executor
        .execute_payout_batch("b-adyen-happy", None)
        .await
        .unwrap();

    assert_eq!((summary.total, summary.submitted), (2, 2), "{summary:?}");
    for item in t.env.items("b-adyen-happy").await {
        assert_eq!(item.status, ItemStatus::Processing, "{item:?}");
        let made = t.transfer_of("b-adyen-happy", &item.item_id);
        assert_eq!(item.provider_payout_id.as_deref(), Some(made.id.as_str()));
        assert_eq!((made.amount, made.currency.as_str()), (1234, "EUR"));
        assert_eq!(made.counterparty, destination(&item.user_id));
        assert_eq!(made.balance_account, FAKE_BALANCE_ACCOUNT);
        let creations = t.fake.creations_for(&made.counterparty);
        assert_eq!(creations.len(), 1);
        let request = &creations[0];
        assert!(request.authorized, "X-API-Key");
        assert_eq!(request.content_type.as_deref(), Some("application/json"));
        assert_eq!(request.body["category"], "internal");
        let key = IdempotencyKey::for_item("b-adyen-happy", &item.item_id, 0);
        assert_eq!(
            request.idempotency_key.as_deref(),
            Some(idempotency_header(&key).as_str())
        );
        assert_eq!(request.idempotency_key.as_ref().unwrap().len(), 64);
    }

    // Adyen authorises, then books: only `booked` moves the item.
    let first = t.transfer_of("b-adyen-happy", "item-00001");
    let authorised = t.post(&t.fake.advance(&first.id, "authorised", None)).await;
    assert_eq!(
        (authorised.status, result(&authorised)),
        (StatusCode::OK, "ignored"),
        "{authorised:?}"
    );
    assert_eq!(authorised.rendered().1, ACKNOWLEDGEMENT_BODY);
    let booked = t.post(&t.fake.advance(&first.id, "booked", None)).await;
    assert_eq!(result(&booked), "applied", "{booked:?}");
    assert_eq!(
        t.env.item("b-adyen-happy", "item-00001").await.status,
        ItemStatus::Paid
    );
    let second = t.transfer_of("b-adyen-happy", "item-00002");
    t.post(&t.fake.advance(&second.id, "authorised", None))
        .await;
    let last = t.post(&t.fake.advance(&second.id, "booked", None)).await;
    assert_eq!(last.body["batchStatus"], "completed", "{last:?}");
    assert_eq!(
        last.rendered(),
        ("application/json", ACKNOWLEDGEMENT_BODY.to_owned())
    );
}

#[tokio::test]
async fn a_refused_transfer_fails_the_item_with_adyens_reason() {
    let batch = items(1, "50.00");
    let t = setup("b-adyen-refused", &batch).await;
    t.executor
        .execute_payout_batch("b-adyen-refused", None)
        .await
        .unwrap();
    let made = t.transfer_of("b-adyen-refused", "item-00001");

    let refused = t
        .post(
            &t.fake
                .advance(&made.id, "refused", Some("notEnoughBalance")),
        )
        .await;

    assert_eq!(result(&refused), "applied", "{refused:?}");
    let item = t.env.item("b-adyen-refused", "item-00001").await;
    assert_eq!(item.status, ItemStatus::Failed);
    assert_eq!(
        item.failure_reason.as_deref(),
        Some("refused: notEnoughBalance")
    );
}

#[tokio::test]
async fn a_validation_error_fails_the_item_without_a_transfer() {
    let batch = items(2, "3.00");
    let t = setup("b-adyen-422", &batch).await;
    let dest = destination("user-00001");
    t.fake.reject_counterparty(
        &dest,
        422,
        "30_112",
        "Counterparty balance account is inactive",
    );

    let summary = t
        .executor
        .execute_payout_batch("b-adyen-422", None)
        .await
        .unwrap();

    assert_eq!((summary.submitted, summary.failed), (1, 1), "{summary:?}");
    let item = t.env.item("b-adyen-422", "item-00001").await;
    assert_eq!(item.status, ItemStatus::Failed);
    let reason = item.failure_reason.unwrap();
    assert!(
        reason.starts_with("30_112: Counterparty balance account is inactive"),
        "{reason}"
    );
    assert_eq!(item.attempt.reconcile_since_ms, None);
    assert_eq!(t.fake.transfers_to(&dest), 0);
}

#[tokio::test]
async fn a_return_after_booking_is_recorded_as_a_reversal() {
    let batch = items(1, "8.00");
    let t = setup("b-adyen-returned", &batch).await;
    t.executor
        .execute_payout_batch("b-adyen-returned", None)
        .await
        .unwrap();
    let made = t.transfer_of("b-adyen-returned", "item-00001");
    assert_eq!(
        result(&t.post(&t.fake.advance(&made.id, "booked", None)).await),
        "applied"
    );

    let returned = t
        .post(
            &t.fake
                .advance(&made.id, "returned", Some("counterpartyAccountClosed")),
        )
        .await;

    assert_eq!(result(&returned), "applied", "{returned:?}");
    let item = t.env.item("b-adyen-returned", "item-00001").await;
    assert_eq!(
        item.status,
        ItemStatus::Paid,
        "a reversal never moves the status"
    );
    let raw = t
        .env
        .raw_item("b-adyen-returned", "item-00001")
        .await
        .unwrap();
    assert_eq!(
        raw["reversalReason"].as_s().unwrap(),
        "returned: counterpartyAccountClosed"
    );
    assert_eq!(
        raw["reversalEventId"].as_s().unwrap(),
        &format!("{}:3", made.id)
    );
    assert!(raw.contains_key("reversedAt"));
}

#[tokio::test]
async fn out_of_order_and_duplicate_events_settle_once_and_never_unpay() {
    let batch = items(1, "9.99");
    let t = setup("b-adyen-order", &batch).await;
    t.executor
        .execute_payout_batch("b-adyen-order", None)
        .await
        .unwrap();
    let made = t.transfer_of("b-adyen-order", "item-00001");
    let created = "balancePlatform.transfer.created";
    let updated = "balancePlatform.transfer.updated";

    // `booked` (3) arrives before `received` (1) and `authorised` (2).
    let booked = t.fake.event(&made, updated, 3, "booked", "approved");
    assert_eq!(result(&t.post(&booked).await), "applied");
    let late_authorised = t.fake.event(&made, updated, 2, "authorised", "approved");
    assert_eq!(result(&t.post(&late_authorised).await), "ignored");
    let late_received = t.fake.event(&made, created, 1, "received", "pending");
    assert_eq!(result(&t.post(&late_received).await), "ignored");
    let paid = t.env.raw_item("b-adyen-order", "item-00001").await;

    // The same `booked` again: a duplicate, nothing rewritten.
    let again = t.post(&booked).await;
    assert_eq!(
        (again.status, result(&again)),
        (StatusCode::OK, "duplicate")
    );
    // A `failed` delivered after `booked` never moves a paid item back.
    let failed = t
        .fake
        .event(&made, updated, 4, "failed", "refusedByCounterpartyBank");
    let response = t.post(&failed).await;
    assert_eq!(result(&response), "ignored", "{response:?}");
    assert_eq!(t.env.raw_item("b-adyen-order", "item-00001").await, paid);
    assert_eq!(
        t.env.item("b-adyen-order", "item-00001").await.status,
        ItemStatus::Paid
    );

    // A bad signature is refused and writes nothing.
    let mut forged = t.fake.event(&made, updated, 5, "returned", "approved");
    forged.signature = SignedWebhook::new(forged.body.clone(), "00112233").signature;
    assert_eq!(t.post(&forged).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(t.env.raw_item("b-adyen-order", "item-00001").await, paid);
}

#[tokio::test]
async fn a_key_still_in_flight_is_retried_and_pays_once() {
    let batch = items(1, "15.00");
    let t = setup("b-adyen-409", &batch).await;
    let dest = destination("user-00001");
    t.fake
        .inject(&dest, Fault::Slow(Duration::from_millis(1_500)), 1);
    // Another worker is still sending this item's first key (say, after its lease ran out).
    let other = {
        let adapter = t.adapter.clone();
        let request = TransferRequest {
            idempotency_key: IdempotencyKey::for_item("b-adyen-409", "item-00001", 0),
            batch_id: "b-adyen-409".into(),
            item_id: "item-00001".into(),
            destination: dest.clone(),
            amount_minor: 1500,
            currency: "EUR".into(),
            send_by: None,
        };
        tokio::spawn(async move { adapter.submit_transfer(&request).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let first = t
        .executor
        .execute_payout_batch("b-adyen-409", None)
        .await
        .unwrap();

    assert_eq!(first.retryable, 1, "{first:?}");
    assert_eq!(t.fake.conflicts(), 1, "Adyen answered 409 (704)");
    let item = t.env.item("b-adyen-409", "item-00001").await;
    assert_eq!(item.status, ItemStatus::Submitting);
    assert_eq!(item.attempt.lease_until_ms, None, "released for a retry");
    assert_eq!(item.attempt.reconcile_since_ms, None, "the key still tells");
    let theirs = other.await.unwrap().expect("the first request completes");

    let second = t
        .executor
        .execute_payout_batch("b-adyen-409", None)
        .await
        .unwrap();
    assert_eq!(second.submitted, 1, "{second:?}");
    let item = t.env.item("b-adyen-409", "item-00001").await;
    assert_eq!(item.status, ItemStatus::Processing);
    assert_eq!(item.provider_payout_id, Some(theirs.provider_payout_id));
    assert_eq!(t.fake.transfers_to(&dest), 1, "one transfer");
    assert_eq!(t.fake.replays(), 1, "the retry got the first answer back");
}

#[tokio::test]
async fn a_500_after_the_transfer_was_made_is_reconciled_by_reference_without_paying_again() {
    let batch = items(2, "7.50");
    let t = setup("b-adyen-500-made", &batch).await;
    let dest = destination("user-00002");
    t.fake.inject(&dest, Fault::ServerErrorAfterCreate, 1);

    let first = t
        .executor
        .execute_payout_batch("b-adyen-500-made", None)
        .await
        .unwrap();
    assert_eq!((first.submitted, first.retryable), (1, 1), "{first:?}");
    let item = t.env.item("b-adyen-500-made", "item-00002").await;
    assert_eq!(item.status, ItemStatus::Submitting);
    assert!(item.attempt.reconcile_since_ms.is_some(), "{item:?}");
    assert_eq!(t.fake.transfers_to(&dest), 1);

    settle().await;
    let later = t
        .executor
        .execute_payout_batch("b-adyen-500-made", None)
        .await
        .unwrap();
    assert_eq!(later.submitted, 1, "{later:?}");
    let item = t.env.item("b-adyen-500-made", "item-00002").await;
    assert_eq!(item.status, ItemStatus::Processing);
    assert_eq!(item.attempt.key_generation, 0, "no new key was needed");
    let made = t.transfer_of("b-adyen-500-made", "item-00002");
    assert_eq!(item.provider_payout_id, Some(made.id));
    assert_eq!(t.fake.transfers_to(&dest), 1, "found, not paid again");
    assert_eq!(
        t.fake.creations_for(&dest).len(),
        1,
        "the key was not resent"
    );
    let lookups: Vec<_> = t
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert_eq!(lookups.len(), 1);
    assert_eq!(
        lookups[0].param("reference"),
        Some("payout:b-adyen-500-made:item-00002")
    );
    assert_eq!(
        lookups[0].param("balanceAccountId"),
        Some(FAKE_BALANCE_ACCOUNT)
    );
    assert!(
        lookups[0].param("createdSince").is_some() && lookups[0].param("createdUntil").is_some()
    );
}

#[tokio::test]
async fn a_500_with_no_transfer_is_paid_once_under_the_next_key_generation() {
    for (batch_id, fault) in [
        ("b-adyen-500-stored", Fault::ServerErrorBeforeCreate),
        ("b-adyen-500-unstored", Fault::ServerErrorUnstored),
    ] {
        let batch = items(1, "20.00");
        let t = setup(batch_id, &batch).await;
        let dest = destination("user-00001");
        t.fake.inject(&dest, fault.clone(), 1);

        let first = t
            .executor
            .execute_payout_batch(batch_id, None)
            .await
            .unwrap();
        assert_eq!(first.retryable, 1, "{fault:?}: {first:?}");
        assert_eq!(t.fake.transfers_to(&dest), 0);

        settle().await;
        let second = t
            .executor
            .execute_payout_batch(batch_id, None)
            .await
            .unwrap();
        assert_eq!(second.submitted, 1, "{fault:?}: {second:?}");
        let item = t.env.item(batch_id, "item-00001").await;
        assert_eq!(item.status, ItemStatus::Processing);
        assert_eq!(item.attempt.key_generation, 1, "{fault:?}");
        let made = t.fake.transfers();
        assert_eq!(made.len(), 1, "{fault:?}: paid once");
        let next_key = IdempotencyKey::for_item(batch_id, "item-00001", 1);
        assert_eq!(
            made[0].idempotency_key.as_deref(),
            Some(idempotency_header(&next_key).as_str())
        );
        assert_eq!(item.provider_payout_id, Some(made[0].id.clone()));
    }
}

#[tokio::test]
async fn a_dropped_answer_is_resent_under_the_same_key_and_an_old_key_is_reconciled() {
    let batch = items(2, "42.00");
    let t = setup("b-adyen-drop", &batch).await;
    let dest = destination("user-00001");
    t.fake.inject(&dest, Fault::DropResponseAfterCreate, 1);
    let first = t
        .executor
        .execute_payout_batch("b-adyen-drop", None)
        .await
        .unwrap();
    assert_eq!((first.submitted, first.retryable), (1, 1), "{first:?}");
    assert_eq!(
        t.fake.transfers_to(&dest),
        1,
        "Adyen made it, the caller never heard"
    );
    assert_eq!(
        t.env
            .item("b-adyen-drop", "item-00001")
            .await
            .attempt
            .reconcile_since_ms,
        None
    );

    // Eight days pass: Adyen (as the fake reads it) forgot the key, and the item's key is
    // past the adapter's reuse window, so it is looked up instead of resent.
    let key = idempotency_header(&IdempotencyKey::for_item("b-adyen-drop", "item-00001", 0));
    assert!(t.fake.has_key(&key));
    t.fake
        .advance_clock(FAKE_KEY_RETENTION + Duration::from_secs(24 * 3600));
    assert!(!t.fake.has_key(&key));
    t.env.clock.advance(Duration::from_secs(8 * 24 * 3600));

    let later = t
        .executor
        .execute_payout_batch("b-adyen-drop", None)
        .await
        .unwrap();
    assert_eq!(later.submitted, 1, "{later:?}");
    let item = t.env.item("b-adyen-drop", "item-00001").await;
    assert_eq!(item.status, ItemStatus::Processing);
    let made = t.transfer_of("b-adyen-drop", "item-00001");
    assert_eq!(item.provider_payout_id, Some(made.id));
    assert_eq!(
        t.fake.creations_for(&dest).len(),
        1,
        "the old key was not resent"
    );
}

#[tokio::test]
async fn rate_limits_pause_the_adapter_and_a_wrong_key_is_the_platforms_fault() {
    let fake = FakeAdyen::start().await;
    let adapter = AdyenAdapter::new(fake.config()).unwrap();
    let request = TransferRequest {
        idempotency_key: IdempotencyKey::for_item("b-direct", "i-1", 0),
        batch_id: "b-direct".into(),
        item_id: "i-1".into(),
        destination: "BA_OTHER".into(),
        amount_minor: 100,
        currency: "EUR".into(),
        send_by: None,
    };
    fake.inject(
        "BA_OTHER",
        Fault::RateLimited {
            retry_after_secs: 1,
        },
        1,
    );
    let refused = adapter.submit_transfer(&request).await.unwrap_err();
    assert!(
        matches!(&refused, PaymentError::Transient { retry_after: Some(wait), .. } if *wait == Duration::from_secs(1)),
        "{refused:?}"
    );
    let started = std::time::Instant::now();
    adapter.submit_transfer(&request).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited for Retry-After"
    );

    let wrong = AdyenAdapter::new(AdyenSettings {
        api_key: Some("AQE_wrong".into()),
        ..fake.config()
    })
    .unwrap();
    let other = TransferRequest {
        item_id: "i-2".into(),
        ..request.clone()
    };
    let refused = wrong.submit_transfer(&other).await.unwrap_err();
    assert!(
        matches!(refused, PaymentError::PlatformRefused { .. }),
        "{refused:?}"
    );
    assert!(!refused.to_string().contains("AQE_wrong"));
    assert!(
        wrong.find_transfer(&other).await.is_err(),
        "a refused lookup is never 'absent'"
    );
}

#[tokio::test]
async fn lookups_follow_every_page() {
    let fake = FakeAdyen::start().await;
    let adapter = AdyenAdapter::new(fake.config()).unwrap();
    // 150 transfers under one reference (other keys), so the lookup needs two pages of 100.
    let request = |generation: u32| TransferRequest {
        idempotency_key: IdempotencyKey::for_item("b-pages", "i-1", generation),
        batch_id: "b-pages".into(),
        item_id: "i-1".into(),
        destination: "BA_PAGES".into(),
        amount_minor: 100,
        currency: "EUR".into(),
        send_by: None,
    };
    let first = adapter.submit_transfer(&request(0)).await.unwrap();
    for generation in 1..150 {
        adapter.submit_transfer(&request(generation)).await.unwrap();
    }
    let found = adapter.find_transfer(&request(200)).await.unwrap().unwrap();
    assert_eq!(
        found.provider_payout_id, first.provider_payout_id,
        "the oldest"
    );
    let pages: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert_eq!(pages.len(), 2);
    assert_eq!(pages[1].param("cursor"), Some("S2B-100"));
}

/// The official `Adyen` Python package (not this project's code) signs and verifies Balance
/// Platform webhook bodies with its `HmacSignature` scheme.
mod official_adyen_library {
    use super::*;
    use std::process::Command;

    fn python() -> String {
        std::env::var("PAYOUTS_TEST_PYTHON")
            .unwrap_or_else(|_| format!("{}/../.tools/venv/bin/python", env!("CARGO_MANIFEST_DIR")))
    }

    fn run_python(script: &str, args: &[&str]) -> String {
        let out = Command::new(python())
            .arg("-c")
            .arg(script)
            .args(args)
            .output()
            .expect("run the tools venv's python: scripts/test.sh installs it (Adyen from PyPI)");
        assert!(
            out.status.success(),
            "python failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    const VERIFY: &str = "import sys, Adyen.util as u\nprint(u.is_valid_hmac_payload(sys.argv[3], sys.argv[2], sys.argv[1].encode('utf-8')))";
    const SIGN: &str = "import sys, Adyen.util as u\nprint(u.generate_payload_sig(sys.argv[1].encode('utf-8'), sys.argv[2]).decode())";

    #[tokio::test]
    async fn a_body_signed_by_adyen_python_is_applied() {
        let batch = items(1, "4.20");
        let t = setup("b-adyen-official", &batch).await;
        t.executor
            .execute_payout_batch("b-adyen-official", None)
            .await
            .unwrap();
        let made = t.transfer_of("b-adyen-official", "item-00001");
        let ours = t.fake.event(
            &made,
            "balancePlatform.transfer.updated",
            3,
            "booked",
            "approved",
        );

        let signature = run_python(SIGN, &[&ours.body, FAKE_HMAC_KEY]);
        assert_eq!(signature, ours.signature, "the same signature as ours");
        let theirs = SignedWebhook {
            body: ours.body.clone(),
            signature,
        };
        let response = t.post(&theirs).await;
        assert_eq!(result(&response), "applied", "{response:?}");

        let forged = SignedWebhook {
            body: ours.body.clone(),
            signature: run_python(SIGN, &[&ours.body, "0011223344556677"]),
        };
        assert_eq!(t.post(&forged).await.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn adyen_python_accepts_our_signatures() {
        let body = payouts_psp::adyen::webhook::transfer_event_json(
            "balancePlatform.transfer.updated",
            "T_OURS",
            3,
            "booked",
            None,
            "payout:b:i",
            FAKE_BALANCE_ACCOUNT,
            "BA_RECIPIENT",
            (1000, "EUR"),
            "2026-11-25T09:00:00+01:00",
        );
        let ours = SignedWebhook::new(body.clone(), FAKE_HMAC_KEY);
        assert_eq!(
            run_python(VERIFY, &[&body, FAKE_HMAC_KEY, &ours.signature]),
            "True"
        );
        assert_eq!(
            run_python(
                VERIFY,
                &[
                    &body.replace("booked", "refused"),
                    FAKE_HMAC_KEY,
                    &ours.signature
                ]
            ),
            "False"
        );
    }
}
