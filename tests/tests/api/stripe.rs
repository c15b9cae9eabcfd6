//! The Stripe adapter end to end: the real executor, the real HTTP adapter, the fake Stripe
//! (`integration_tests::fakes::stripe`) and a real DynamoDB API. What was paid is what the fake
//! counts per destination.

use integration_tests::fakes::stripe::{FAKE_KEY_RETENTION, FakeStripe, Fault};
use integration_tests::{TestEnv, items, number, test_config, verified_users};
use payouts_config::StripeSettings;
use payouts_core::domain::ItemStatus;
use payouts_core::executor::{Executor, ExecutorConfig};
use payouts_core::ports::payment::{IdempotencyKey, PaymentAdapter, PaymentError, TransferRequest};
use payouts_psp::stripe::{STRIPE_API_VERSION, StripeAdapter};
use payouts_store_dynamodb::s;
use payouts_store_dynamodb::schema::{attr, keys};
use std::sync::Arc;
use std::time::Duration;

struct Setup {
    env: TestEnv,
    fake: FakeStripe,
    adapter: Arc<StripeAdapter>,
    executor: Executor,
}

async fn setup_with(
    batch_id: &str,
    currency: &str,
    batch: &[(String, String, String)],
    adjust: impl FnOnce(&mut StripeSettings),
    executor_config: ExecutorConfig,
) -> Setup {
    let env = TestEnv::start().await;
    env.seed_batch(batch_id, "stripe", currency, batch).await;
    env.seed_users(&verified_users(batch)).await;
    let fake = FakeStripe::start().await;
    let mut stripe = fake.config();
    adjust(&mut stripe);
    let adapter = Arc::new(StripeAdapter::new(stripe).expect("adapter"));
    let executor = env.executor_with(adapter.clone(), executor_config);
    Setup {
        env,
        fake,
        adapter,
        executor,
    }
}

async fn setup(batch_id: &str, batch: &[(String, String, String)]) -> Setup {
    setup_with(batch_id, "USD", batch, |_| {}, test_config()).await
}

/// The settle delay of `FakeStripe::config`, plus margin.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

fn destination(user: &str) -> String {
    format!("acct_{user}")
}

#[tokio::test]
async fn happy_path_pays_through_the_http_adapter() {
    let batch = items(3, "12.34");
    let t = setup("b-stripe-happy", &batch).await;

    let summary = t
        .executor
        .execute_payout_batch("b-stripe-happy", None)
        .await
        .unwrap();

    assert_eq!((summary.total, summary.submitted), (3, 3), "{summary:?}");
    assert!(!summary.needs_another_run());
    assert_eq!(
        t.env.requests.get("TransactWriteItems"),
        7,
        "claim + record per item, and the batch's count (once per batch)"
    );
    let transfers = t.fake.transfers();
    assert_eq!(transfers.len(), 3);
    for item in t.env.items("b-stripe-happy").await {
        assert_eq!(item.status, ItemStatus::Processing, "{item:?}");
        let dest = destination(&item.user_id);
        assert_eq!(t.fake.transfers_to(&dest), 1);
        let transfer = transfers.iter().find(|t| t.destination == dest).unwrap();
        assert_eq!(
            item.provider_payout_id.as_deref(),
            Some(transfer.id.as_str())
        );
        assert_eq!((transfer.amount, transfer.currency.as_str()), (1234, "usd"));
        assert_eq!(
            transfer.transfer_group.as_deref(),
            Some(format!("payout:b-stripe-happy:{}", item.item_id).as_str())
        );
        assert_eq!(transfer.metadata["batch_id"], "b-stripe-happy");
        assert_eq!(transfer.metadata["item_id"], item.item_id);
        let creations = t.fake.creations_for(&dest);
        assert_eq!(creations.len(), 1);
        let request = &creations[0];
        assert!(request.authorized, "Bearer secret key");
        assert_eq!(request.stripe_version.as_deref(), Some(STRIPE_API_VERSION));
        assert_eq!(
            request.content_type.as_deref(),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(
            request.idempotency_key.as_deref(),
            Some(format!("payout:b-stripe-happy:{}:g0", item.item_id).as_str())
        );
        assert!(item.attempt.key_first_used_ms.is_some(), "{item:?}");
        assert_eq!(item.attempt.reconcile_since_ms, None);
    }

    // The job again: nothing is sent to Stripe.
    let before = t.fake.requests().len();
    let again = t
        .executor
        .execute_payout_batch("b-stripe-happy", None)
        .await
        .unwrap();
    assert_eq!(again.skipped, 3, "{again:?}");
    assert_eq!(t.fake.requests().len(), before);
}

#[tokio::test]
async fn a_dropped_response_is_retried_with_the_same_key_and_pays_once() {
    let batch = items(2, "10.00");
    let t = setup("b-stripe-drop", &batch).await;
    let dest = destination("user-00001");
    t.fake.inject(&dest, Fault::DropResponseAfterCreate, 1);

    let first = t
        .executor
        .execute_payout_batch("b-stripe-drop", None)
        .await
        .unwrap();
    assert_eq!((first.submitted, first.retryable), (1, 1), "{first:?}");
    let item = t.env.item("b-stripe-drop", "item-00001").await;
    assert_eq!(item.status, ItemStatus::Submitting);
    assert_eq!(
        item.attempt.reconcile_since_ms, None,
        "a dropped answer is not stored as an error"
    );
    assert_eq!(
        t.fake.transfers_to(&dest),
        1,
        "Stripe made it, the caller never heard"
    );

    let second = t
        .executor
        .execute_payout_batch("b-stripe-drop", None)
        .await
        .unwrap();
    assert_eq!((second.submitted, second.skipped), (1, 1), "{second:?}");
    let item = t.env.item("b-stripe-drop", "item-00001").await;
    assert_eq!(item.status, ItemStatus::Processing);
    assert_eq!(t.fake.transfers_to(&dest), 1, "the same key replayed it");
    assert_eq!(
        item.provider_payout_id,
        Some(
            t.fake
                .transfers()
                .into_iter()
                .find(|t| t.destination == dest)
                .unwrap()
                .id
        )
    );
    let creations = t.fake.creations_for(&dest);
    assert_eq!(creations.len(), 2);
    assert_eq!(creations[0].idempotency_key, creations[1].idempotency_key);
    assert_eq!(t.fake.replays(), 1);
}

#[tokio::test]
async fn a_stored_500_after_the_transfer_was_made_is_reconciled_without_paying_again() {
    let batch = items(2, "7.50");
    let t = setup("b-stripe-500-made", &batch).await;
    let dest = destination("user-00002");
    t.fake.inject(&dest, Fault::ServerErrorStoredAfterCreate, 1);

    let first = t
        .executor
        .execute_payout_batch("b-stripe-500-made", None)
        .await
        .unwrap();
    assert_eq!((first.submitted, first.retryable), (1, 1), "{first:?}");
    let item = t.env.item("b-stripe-500-made", "item-00002").await;
    assert_eq!(item.status, ItemStatus::Submitting);
    assert!(
        item.attempt.reconcile_since_ms.is_some(),
        "marked for reconciliation: {item:?}"
    );
    assert_eq!(t.fake.transfers_to(&dest), 1);

    // Redelivered at once: the item is left to settle, nothing is sent.
    let requests = t.fake.requests().len();
    let early = t
        .executor
        .execute_payout_batch("b-stripe-500-made", None)
        .await
        .unwrap();
    assert_eq!(early.retryable, 1, "{early:?}");
    assert_eq!(t.fake.requests().len(), requests);

    settle().await;
    let later = t
        .executor
        .execute_payout_batch("b-stripe-500-made", None)
        .await
        .unwrap();
    assert_eq!(later.submitted, 1, "{later:?}");
    let item = t.env.item("b-stripe-500-made", "item-00002").await;
    assert_eq!(item.status, ItemStatus::Processing);
    assert_eq!(item.attempt.reconcile_since_ms, None, "resolved");
    assert_eq!(item.attempt.key_generation, 0, "no new key was needed");
    let made = t
        .fake
        .transfers()
        .into_iter()
        .find(|t| t.destination == dest)
        .unwrap();
    assert_eq!(item.provider_payout_id, Some(made.id));
    assert_eq!(t.fake.transfers_to(&dest), 1, "found, not paid again");
    assert_eq!(
        t.fake.creations_for(&dest).len(),
        1,
        "the key that stores a 500 was not sent again"
    );
    let lookups: Vec<_> = t
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert_eq!(lookups.len(), 1);
    assert_eq!(
        lookups[0].param("transfer_group"),
        Some("payout:b-stripe-500-made:item-00002")
    );
}

#[tokio::test]
async fn a_stored_500_with_no_transfer_is_paid_once_under_the_next_key_generation() {
    let batch = items(1, "20.00");
    let t = setup("b-stripe-500-none", &batch).await;
    let dest = destination("user-00001");
    t.fake
        .inject(&dest, Fault::ServerErrorStoredBeforeCreate, 1);

    let first = t
        .executor
        .execute_payout_batch("b-stripe-500-none", None)
        .await
        .unwrap();
    assert_eq!(first.retryable, 1, "{first:?}");
    assert_eq!(t.fake.transfers_to(&dest), 0);
    // The old key would answer the same 500 forever: that is why it is not sent again.
    let old_key = TransferRequest {
        idempotency_key: IdempotencyKey::for_item("b-stripe-500-none", "item-00001", 0),
        batch_id: "b-stripe-500-none".into(),
        item_id: "item-00001".into(),
        destination: dest.clone(),
        amount_minor: 2000,
        currency: "USD".into(),
        send_by: None,
    };
    assert!(matches!(
        t.adapter.submit_transfer(&old_key).await,
        Err(PaymentError::NeedsReconciliation { .. })
    ));

    settle().await;
    let second = t
        .executor
        .execute_payout_batch("b-stripe-500-none", None)
        .await
        .unwrap();
    assert_eq!(second.submitted, 1, "{second:?}");
    let item = t.env.item("b-stripe-500-none", "item-00001").await;
    assert_eq!(item.status, ItemStatus::Processing);
    assert_eq!(item.attempt.key_generation, 1);
    assert_eq!(item.attempt.reconcile_since_ms, None);
    let transfers = t.fake.transfers();
    assert_eq!(transfers.len(), 1, "paid once");
    assert_eq!(
        transfers[0].idempotency_key.as_deref(),
        Some("payout:b-stripe-500-none:item-00001:g1")
    );
    assert_eq!(item.provider_payout_id, Some(transfers[0].id.clone()));
}

#[tokio::test]
async fn rate_limited_then_paid() {
    let batch = items(2, "5.00");
    let t = setup("b-stripe-429", &batch).await;
    let dest = destination("user-00001");
    t.fake.inject(
        &dest,
        Fault::RateLimited {
            retry_after_secs: 1,
        },
        1,
    );

    let first = t
        .executor
        .execute_payout_batch("b-stripe-429", None)
        .await
        .unwrap();
    assert_eq!((first.submitted, first.retryable), (1, 1), "{first:?}");
    let item = t.env.item("b-stripe-429", "item-00001").await;
    assert_eq!(item.status, ItemStatus::Submitting);
    assert_eq!(item.attempt.lease_until_ms, None, "released for the retry");
    assert_eq!(item.attempt.reconcile_since_ms, None, "a 429 is not stored");
    assert_eq!(t.fake.transfers_to(&dest), 0);

    let second = t
        .executor
        .execute_payout_batch("b-stripe-429", None)
        .await
        .unwrap();
    assert_eq!(second.submitted, 1, "{second:?}");
    assert_eq!(
        t.env.item("b-stripe-429", "item-00001").await.status,
        ItemStatus::Processing
    );
    assert_eq!(t.fake.transfers_to(&dest), 1);

    // What the adapter reports, and that it honours Retry-After for every later call.
    t.fake.inject(
        "acct_other",
        Fault::RateLimited {
            retry_after_secs: 1,
        },
        1,
    );
    let request = TransferRequest {
        idempotency_key: IdempotencyKey::for_item("b-direct", "i-1", 0),
        batch_id: "b-direct".into(),
        item_id: "i-1".into(),
        destination: "acct_other".into(),
        amount_minor: 100,
        currency: "EUR".into(),
        send_by: None,
    };
    let refused = t.adapter.submit_transfer(&request).await.unwrap_err();
    assert!(
        matches!(&refused, PaymentError::Transient { retry_after: Some(wait), .. } if *wait == Duration::from_secs(1)),
        "{refused:?}"
    );
    let started = std::time::Instant::now();
    t.adapter.submit_transfer(&request).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "the next call waited for Retry-After: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_limiter_holds_the_configured_rate_under_concurrency() {
    const RATE: u32 = 20;
    let batch = items(50, "1.00");
    let cfg = ExecutorConfig {
        concurrency: 32,
        ..test_config()
    };
    let t = setup_with(
        "b-stripe-rate",
        "USD",
        &batch,
        |c| c.budget = payouts_config::RequestBudget::alone(RATE),
        cfg,
    )
    .await;

    let started = std::time::Instant::now();
    let summary = t
        .executor
        .execute_payout_batch("b-stripe-rate", None)
        .await
        .unwrap();
    let elapsed = started.elapsed();

    assert_eq!(summary.submitted, 50, "{summary:?}");
    let mut arrivals: Vec<_> = t.fake.requests().into_iter().map(|r| r.at).collect();
    arrivals.sort();
    assert_eq!(arrivals.len(), 50);
    // Starts are 50 ms apart: 50 requests take at least 49 intervals.
    assert!(elapsed >= Duration::from_millis(2_400), "{elapsed:?}");
    let busiest = arrivals
        .iter()
        .enumerate()
        .map(|(i, start)| {
            arrivals[i..]
                .iter()
                .take_while(|at| at.duration_since(*start) < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap();
    // Starts leave the client 50 ms apart; arrivals carry network and scheduling jitter (new
    // connections are slower than pooled ones, and the suite runs tests in parallel on two
    // cores), so a one-second window may catch a few more. What matters holds: never near
    // Stripe's test-mode limit of 25/s, and the mean rate is the configured one.
    assert!(
        busiest < 25,
        "{busiest} requests within one second at {RATE}/s"
    );
    // Exact, whatever the jitter: request k cannot arrive before its start slot, k intervals
    // after the run began, so the k-th arrival is never earlier than that either.
    let interval = Duration::from_secs(1) / RATE;
    for (k, at) in arrivals.iter().enumerate() {
        assert!(
            *at >= started + interval * k as u32,
            "request {k} arrived {:?} after the start, before its slot",
            at.duration_since(started)
        );
    }
    for (_, user, _) in &batch {
        assert_eq!(t.fake.transfers_to(&destination(user)), 1);
    }
}

#[tokio::test]
async fn a_permanent_account_error_fails_the_item_with_stripes_message() {
    let batch = items(2, "3.00");
    let t = setup("b-stripe-reject", &batch).await;
    let dest = destination("user-00001");
    t.fake.reject_destination(
        &dest,
        400,
        "account_invalid",
        "The destination account cannot receive transfers: its transfers capability is inactive.",
    );

    let summary = t
        .executor
        .execute_payout_batch("b-stripe-reject", None)
        .await
        .unwrap();

    assert_eq!((summary.submitted, summary.failed), (1, 1), "{summary:?}");
    assert!(
        !summary.needs_another_run(),
        "a rejection is not retried by SQS"
    );
    let item = t.env.item("b-stripe-reject", "item-00001").await;
    assert_eq!(item.status, ItemStatus::Failed);
    assert_eq!(
        item.failure_reason.as_deref(),
        Some(
            "account_invalid: The destination account cannot receive transfers: its transfers capability is inactive."
        )
    );
    assert_eq!(item.attempt.reconcile_since_ms, None);
    assert_eq!(t.fake.transfers_to(&dest), 0);
    assert_eq!(t.fake.transfers_to(&destination("user-00002")), 1);
}

#[tokio::test]
async fn the_same_key_with_a_changed_amount_surfaces_the_idempotency_error_and_never_pays_twice() {
    let batch = items(1, "10.00");
    let t = setup("b-stripe-idem", &batch).await;
    let dest = destination("user-00001");
    t.fake.inject(&dest, Fault::DropResponseAfterCreate, 1);
    let first = t
        .executor
        .execute_payout_batch("b-stripe-idem", None)
        .await
        .unwrap();
    assert_eq!(first.retryable, 1, "{first:?}");
    assert_eq!(t.fake.transfers_to(&dest), 1);

    // Upstream rewrites the amount while the item is in flight.
    t.env
        .client()
        .update_item()
        .table_name(t.env.store.payouts_table())
        .key(attr::PK, s(keys::batch_pk("b-stripe-idem")))
        .key(attr::SK, s(keys::item_sk("item-00001")))
        .update_expression("SET #a = :a")
        .expression_attribute_names("#a", attr::NET_AMOUNT)
        .expression_attribute_values(":a", number("12.00"))
        .send()
        .await
        .unwrap();
    let second = t
        .executor
        .execute_payout_batch("b-stripe-idem", None)
        .await
        .unwrap();
    // Failed in the table, but retried by the job: the key may hold a transfer to look up.
    assert_eq!((second.failed, second.retryable), (0, 1), "{second:?}");
    assert!(second.needs_another_run());
    let item = t.env.item("b-stripe-idem", "item-00001").await;
    assert_eq!(item.status, ItemStatus::Failed);
    let reason = item.failure_reason.clone().unwrap();
    assert!(
        reason.starts_with("idempotency_error: Keys for idempotent requests"),
        "{reason}"
    );
    assert!(
        item.attempt.reconcile_since_ms.is_some(),
        "the key's first outcome is unknown: reconcile, do not just take a new key"
    );
    assert_eq!(t.fake.transfers_to(&dest), 1);

    // The next run looks the transfer up instead of paying 12.00 under a new key.
    settle().await;
    let third = t
        .executor
        .execute_payout_batch("b-stripe-idem", None)
        .await
        .unwrap();
    assert_eq!(third.submitted, 1, "{third:?}");
    let item = t.env.item("b-stripe-idem", "item-00001").await;
    assert_eq!(item.status, ItemStatus::Processing);
    let made = &t.fake.transfers()[0];
    assert_eq!(item.provider_payout_id.as_deref(), Some(made.id.as_str()));
    assert_eq!(made.amount, 1000, "the transfer Stripe really made");
    assert_eq!(t.fake.transfers_to(&dest), 1, "never paid twice");
}

#[tokio::test]
async fn a_redelivery_25_hours_after_a_dropped_response_reconciles_instead_of_resending() {
    let batch = items(1, "42.00");
    let t = setup("b-stripe-25h", &batch).await;
    let dest = destination("user-00001");
    t.fake.inject(&dest, Fault::DropResponseAfterCreate, 1);
    let first = t
        .executor
        .execute_payout_batch("b-stripe-25h", None)
        .await
        .unwrap();
    assert_eq!(first.retryable, 1, "{first:?}");
    assert_eq!(t.fake.transfers_to(&dest), 1);

    // 25 hours pass: Stripe forgets the key, and the item's key is 25 hours old.
    let key = "payout:b-stripe-25h:item-00001:g0";
    assert!(t.fake.has_key(key));
    t.fake.advance_clock(Duration::from_secs(25 * 3600));
    assert!(
        !t.fake.has_key(key),
        "the fake forgot the key: resending it would pay again"
    );
    t.env.clock.advance(Duration::from_secs(25 * 3600));

    let later = t
        .executor
        .execute_payout_batch("b-stripe-25h", None)
        .await
        .unwrap();
    assert_eq!(later.submitted, 1, "{later:?}");
    let item = t.env.item("b-stripe-25h", "item-00001").await;
    assert_eq!(item.status, ItemStatus::Processing);
    let made = &t.fake.transfers()[0];
    assert_eq!(item.provider_payout_id.as_deref(), Some(made.id.as_str()));
    assert_eq!(t.fake.transfers_to(&dest), 1, "no second transfer");
    assert_eq!(
        t.fake.creations_for(&dest).len(),
        1,
        "the expired key was not resent"
    );
}

#[tokio::test]
async fn an_expired_key_whose_transfer_never_happened_is_paid_under_the_next_generation() {
    let batch = items(1, "8.00");
    let t = setup("b-stripe-25h-none", &batch).await;
    let dest = destination("user-00001");
    // The first attempt never got through (every answer a 429), and the redelivery is 25 h later.
    t.fake.inject(
        &dest,
        Fault::RateLimited {
            retry_after_secs: 0,
        },
        1,
    );
    t.executor
        .execute_payout_batch("b-stripe-25h-none", None)
        .await
        .unwrap();
    t.fake.advance_clock(Duration::from_secs(25 * 3600));
    t.env.clock.advance(Duration::from_secs(25 * 3600));

    let later = t
        .executor
        .execute_payout_batch("b-stripe-25h-none", None)
        .await
        .unwrap();
    assert_eq!(later.submitted, 1, "{later:?}");
    let item = t.env.item("b-stripe-25h-none", "item-00001").await;
    assert_eq!(item.status, ItemStatus::Processing);
    assert_eq!(item.attempt.key_generation, 1);
    let transfers = t.fake.transfers();
    assert_eq!(transfers.len(), 1);
    assert_eq!(
        transfers[0].idempotency_key.as_deref(),
        Some("payout:b-stripe-25h-none:item-00001:g1")
    );
}

#[tokio::test]
async fn minor_units_for_usd_jpy_and_a_three_decimal_currency() {
    // Stripe takes three-decimal currencies with a last digit of 0 (money_edges has the rest).
    for (batch_id, currency, amount, minor) in [
        ("b-stripe-usd", "USD", "12.34", 1234),
        ("b-stripe-jpy", "JPY", "1500", 1500),
        ("b-stripe-bhd", "BHD", "1.23", 1230),
    ] {
        let batch = items(1, amount);
        let t = setup_with(batch_id, currency, &batch, |_| {}, test_config()).await;
        let summary = t
            .executor
            .execute_payout_batch(batch_id, None)
            .await
            .unwrap();
        assert_eq!(summary.submitted, 1, "{currency}: {summary:?}");
        let transfers = t.fake.transfers();
        assert_eq!(transfers.len(), 1);
        assert_eq!(transfers[0].amount, minor, "{currency}");
        assert_eq!(transfers[0].currency, currency.to_ascii_lowercase());
        let sent = &t.fake.creations_for(&destination("user-00001"))[0];
        assert_eq!(sent.param("amount"), Some(minor.to_string().as_str()));
    }
}

#[tokio::test]
async fn fake_stripe_keeps_keys_24_hours_and_refuses_changed_parameters() {
    let fake = FakeStripe::start().await;
    let adapter = StripeAdapter::new(fake.config()).unwrap();
    let request = TransferRequest {
        idempotency_key: IdempotencyKey::for_item("b1", "i1", 0),
        batch_id: "b1".into(),
        item_id: "i1".into(),
        destination: "acct_1".into(),
        amount_minor: 500,
        currency: "USD".into(),
        send_by: None,
    };
    let first = adapter.submit_transfer(&request).await.unwrap();
    let again = adapter.submit_transfer(&request).await.unwrap();
    assert!(!first.replayed && again.replayed);
    assert_eq!(first.provider_payout_id, again.provider_payout_id);
    let changed = TransferRequest {
        amount_minor: 501,
        ..request.clone()
    };
    assert!(matches!(
        adapter.submit_transfer(&changed).await,
        Err(PaymentError::KeyConflict { code, .. }) if code == "idempotency_error"
    ));
    let found = adapter.find_transfer(&request).await.unwrap().unwrap();
    assert_eq!(found.provider_payout_id, first.provider_payout_id);
    let other_item = TransferRequest {
        item_id: "i2".into(),
        ..request.clone()
    };
    assert_eq!(adapter.find_transfer(&other_item).await, Ok(None));

    fake.advance_clock(FAKE_KEY_RETENTION);
    let after_expiry = adapter.submit_transfer(&request).await.unwrap();
    assert_ne!(
        after_expiry.provider_payout_id, first.provider_payout_id,
        "an expired key makes a new transfer, as at Stripe"
    );
    assert_eq!(fake.transfers_to("acct_1"), 2);

    let bad_key = StripeAdapter::new(StripeSettings {
        secret_key: Some("sk_test_wrong".into()),
        ..fake.config()
    })
    .unwrap();
    assert!(matches!(
        bad_key.submit_transfer(&other_item).await,
        Err(PaymentError::PlatformRefused { .. })
    ));
}
