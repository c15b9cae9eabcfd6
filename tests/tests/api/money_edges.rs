//! The edges a payouts team meets in its first week: amounts the PSP reads differently,
//! identifiers that collide, records that cannot be used, items stranded by an old key. Each
//! test is a regression test for one defect of the money-edges issue.

use integration_tests::RecordedQueue;
use integration_tests::fakes::stripe::FakeStripe;
use integration_tests::{TestEnv, items, number, test_config, verified_users};
use payout_execute::{App, Disposition, handle_message};
use payouts_core::domain::ItemStatus;
use payouts_core::job::PayoutJob;
use payouts_core::ports::payment::{
    PaymentAdapter, PaymentError, TransferReceipt, TransferRequest,
};
use payouts_core::ports::webhook::{ItemReference, PaymentEvent, PaymentEventKind};
use payouts_core::settlement::{SettlementOutcome, apply_payment_event};
use payouts_psp::sandbox::{SandboxFault, SandboxPsp};
use payouts_psp::stripe::StripeAdapter;
use payouts_store_dynamodb::s;
use payouts_store_dynamodb::schema::{attr, keys};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

fn item(id: &str, user: &str, amount: &str) -> (String, String, String) {
    (id.to_owned(), user.to_owned(), amount.to_owned())
}

fn job_message(batch_id: &str) -> aws_lambda_events::event::sqs::SqsMessage {
    let mut message = aws_lambda_events::event::sqs::SqsMessage::default();
    message.message_id = Some(format!("m-{batch_id}"));
    message.body = Some(format!(
        r#"{{"type":"payout.execute","payload":{{"batchId":"{batch_id}"}}}}"#
    ));
    message
}

/// Stripe's own minor units (its currency documentation, "Zero-decimal currencies" and
/// "Special cases"), checked at the fake Stripe: what reaches Stripe is the amount Stripe reads.
/// Amounts Stripe cannot take exactly fail with a reason and never reach it.
#[tokio::test]
async fn amounts_reach_stripe_in_stripes_own_minor_units_or_fail_with_a_reason() {
    let env = TestEnv::start().await;
    let fake = FakeStripe::start().await;
    let adapter = Arc::new(StripeAdapter::new(fake.config()).expect("adapter"));
    let executor = env.executor_with(adapter, test_config());
    // (currency, amount, what Stripe must receive; None = refused before any call)
    let cases: &[(&str, &str, Option<i64>)] = &[
        ("USD", "12.34", Some(1_234)),
        ("JPY", "1500", Some(1_500)),
        ("MGA", "1500", Some(1_500)),
        ("MGA", "1500.5", None),
        ("ISK", "1500", Some(150_000)),
        ("ISK", "1500.5", None),
        ("UGX", "5000", Some(500_000)),
        ("UGX", "5000.25", None),
        ("HUF", "250", Some(25_000)),
        ("HUF", "250.50", None),
        ("TWD", "100", Some(10_000)),
        ("TWD", "100.5", None),
        ("BHD", "1.230", Some(1_230)),
        ("BHD", "1.234", None),
        ("KWD", "0.5", Some(500)),
        ("JOD", "2.001", None),
    ];
    for (n, (currency, amount, expected)) in cases.iter().enumerate() {
        let batch_id = format!("b-cur-{n}");
        let user = format!("user-cur-{n}");
        let batch = vec![item("item-1", &user, amount)];
        env.seed_batch(&batch_id, "stripe", currency, &batch).await;
        env.seed_users(&verified_users(&batch)).await;
        executor
            .execute_payout_batch(&batch_id, None)
            .await
            .unwrap_or_else(|e| panic!("{currency} {amount}: {e}"));
        let stored = env.item(&batch_id, "item-1").await;
        let sent = fake.creations_for(&format!("acct_{user}"));
        match expected {
            Some(minor) => {
                assert_eq!(
                    stored.status,
                    ItemStatus::Processing,
                    "{currency} {amount}: {stored:?}"
                );
                let made = fake
                    .transfers()
                    .into_iter()
                    .find(|t| t.destination == format!("acct_{user}"))
                    .unwrap_or_else(|| panic!("{currency} {amount}: no transfer"));
                assert_eq!(made.amount, *minor, "{currency} {amount}");
                assert_eq!(made.currency, currency.to_ascii_lowercase());
            }
            None => {
                assert!(sent.is_empty(), "{currency} {amount} reached Stripe");
                assert_eq!(stored.status, ItemStatus::Failed, "{currency} {amount}");
                let reason = stored.failure_reason.unwrap_or_default();
                assert!(
                    reason.contains(&format!("not payable in {currency}")),
                    "{currency} {amount}: {reason}"
                );
            }
        }
    }
}

/// A valid DynamoDB number with more significant digits than `Decimal` holds is refused, not
/// rounded into a payable amount.
#[tokio::test]
async fn an_amount_beyond_28_significant_digits_is_refused_not_rounded() {
    let env = TestEnv::start().await;
    let batch = vec![
        item("item-long", "user-1", "12.339999999999999999999999999999"),
        item("item-ok", "user-2", "12.34"),
    ];
    env.seed_batch("b-digits", "sandbox", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    let psp = Arc::new(SandboxPsp::new(Duration::ZERO));
    let summary = env
        .executor(&psp, test_config())
        .execute_payout_batch("b-digits", None)
        .await
        .unwrap();
    assert_eq!(summary.submitted, 1, "{summary:?}");
    assert_eq!(psp.transfers_for_item("b-digits", "item-long"), 0);
    let refused = env.item("b-digits", "item-long").await;
    assert_eq!(refused.status, ItemStatus::Failed);
    assert!(
        refused
            .failure_reason
            .as_deref()
            .is_some_and(|r| r.contains("12.339999999999999999999999999999")),
        "{refused:?}"
    );
}

/// `usd` is how Stripe writes currencies: accepted and normalised. Codes that are not money
/// (`XTS` is ISO's test code, `XXX` "no currency") and unknown codes are refused for the whole
/// batch, with the code in the reason, before anything is written or paid.
#[tokio::test]
async fn currency_codes_are_normalised_and_non_currencies_refused_up_front() {
    let env = TestEnv::start().await;
    let psp = Arc::new(SandboxPsp::new(Duration::ZERO));
    let app = App::new(env.executor(&psp, test_config()), None);
    let batch = vec![item("item-1", "user-1", "5.00")];
    env.seed_users(&verified_users(&batch)).await;
    env.seed_batch("b-lower", "sandbox", "usd", &batch).await;
    let lower = handle_message(&app, job_message("b-lower"), None).await;
    assert!(matches!(lower, Disposition::Done(_)), "{lower:?}");
    assert_eq!(psp.transfers()[0].currency, "USD");
    assert_eq!(psp.transfers()[0].amount_minor, 500);
    for code in ["XTS", "XXX", "ABC", "US"] {
        let batch_id = format!("b-code-{code}");
        env.seed_batch(&batch_id, "sandbox", code, &batch).await;
        match handle_message(&app, job_message(&batch_id), None).await {
            Disposition::Poison { reason, .. } => {
                assert!(reason.contains(code), "{code}: {reason}")
            }
            other => panic!("{code}: {other:?}"),
        }
        assert_eq!(
            env.item(&batch_id, "item-1").await.status,
            ItemStatus::Pending
        );
    }
    assert_eq!(psp.transfers().len(), 1);
}

/// Batch `a:b` item `c` and batch `a` item `b:c` are two payouts: two keys, two transfers.
#[tokio::test]
async fn ids_containing_the_key_separator_never_share_a_key() {
    let env = TestEnv::start().await;
    let psp = Arc::new(SandboxPsp::new(Duration::ZERO));
    let executor = env.executor(&psp, test_config());
    let first = vec![item("c", "user-1", "1.00")];
    let second = vec![item("b:c", "user-2", "2.00")];
    env.seed_batch("a:b", "sandbox", "USD", &first).await;
    env.seed_batch("a", "sandbox", "USD", &second).await;
    env.seed_users(&verified_users(&[first[0].clone(), second[0].clone()]))
        .await;
    executor.execute_payout_batch("a:b", None).await.unwrap();
    executor.execute_payout_batch("a", None).await.unwrap();
    let transfers = psp.transfers();
    assert_eq!(transfers.len(), 2, "{transfers:?}");
    assert_ne!(transfers[0].idempotency_key, transfers[1].idempotency_key);
    for (batch_id, item_id) in [("a:b", "c"), ("a", "b:c")] {
        assert_eq!(
            env.item(batch_id, item_id).await.status,
            ItemStatus::Processing
        );
    }
}

/// One item with an empty or oversized `userId` is invalid on its own (failed, with a reason);
/// the rest of its page is paid.
#[tokio::test]
async fn an_unusable_user_id_fails_its_item_not_the_page() {
    let env = TestEnv::start().await;
    let mut batch = items(3, "1.00");
    batch.push(item("item-empty-user", "", "1.00"));
    batch.push(item("item-huge-user", &"u".repeat(3_000), "1.00"));
    env.seed_batch("b-users", "sandbox", "USD", &batch).await;
    env.seed_users(&verified_users(&batch[..3])).await;
    let psp = Arc::new(SandboxPsp::new(Duration::ZERO));
    let summary = env
        .executor(&psp, test_config())
        .execute_payout_batch("b-users", None)
        .await
        .unwrap();
    assert_eq!(summary.submitted, 3, "{summary:?}");
    assert!(!summary.needs_another_run(), "{summary:?}");
    for id in ["item-empty-user", "item-huge-user"] {
        let bad = env.item("b-users", id).await;
        assert_eq!(bad.status, ItemStatus::Failed, "{id}");
        assert!(
            bad.failure_reason
                .as_deref()
                .is_some_and(|r| r.contains("userId")),
            "{bad:?}"
        );
    }
}

/// A record without `status`, or whose `itemId` is not its sort key, is reported as invalid,
/// never claimed through another key and never skipped in silence.
#[tokio::test]
async fn records_are_decoded_strictly_and_keys_come_from_the_sort_key() {
    let env = TestEnv::start().await;
    let batch = items(1, "1.00");
    env.seed_batch("b-strict", "sandbox", "USD", &batch).await;
    let mut users = verified_users(&batch);
    users.push(("user-x".into(), "acct_user-x".into(), true));
    env.seed_users(&users).await;
    for (sk, item_id, status) in [
        ("ITEM#item-no-status", "item-no-status", None),
        ("ITEM#item-y", "item-x", Some("pending")),
    ] {
        let mut record = HashMap::from([
            (attr::PK.to_owned(), s(keys::batch_pk("b-strict"))),
            (attr::SK.to_owned(), s(sk)),
            (attr::ITEM_ID.to_owned(), s(item_id)),
            (attr::USER_ID.to_owned(), s("user-x")),
            (
                attr::NET_AMOUNT.to_owned(),
                aws_sdk_dynamodb::types::AttributeValue::N("1".into()),
            ),
        ]);
        if let Some(status) = status {
            record.insert(attr::STATUS.to_owned(), s(status));
        }
        env.client()
            .put_item()
            .table_name(env.store.payouts_table())
            .set_item(Some(record))
            .send()
            .await
            .unwrap();
    }
    let before = env.scan_payouts().await;
    let psp = Arc::new(SandboxPsp::new(Duration::ZERO));
    let summary = env
        .executor(&psp, test_config())
        .execute_payout_batch("b-strict", None)
        .await
        .unwrap();
    assert_eq!((summary.submitted, summary.invalid), (1, 2), "{summary:?}");
    assert!(env.raw_item("b-strict", "item-x").await.is_none());
    // No record appeared, other than the batch's counter shard (the one item paid).
    let records = |all: Vec<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>| {
        all.into_iter()
            .filter(|r| {
                !r[attr::SK]
                    .as_s()
                    .unwrap()
                    .starts_with(keys::COUNTS_SK_PREFIX)
            })
            .count()
    };
    assert_eq!(records(env.scan_payouts().await), records(before));
    assert_eq!(psp.transfers().len(), 1);
}

/// failed → pending_kyc → verified: the next attempt uses the next key generation, so the
/// PSP's stored rejection is not replayed forever.
#[tokio::test]
async fn an_item_that_failed_then_waited_for_kyc_is_paid_under_a_new_key() {
    let env = TestEnv::start().await;
    let batch = items(1, "3.00");
    env.seed_batch("b-kyc-again", "sandbox", "USD", &batch)
        .await;
    env.seed_users(&verified_users(&batch)).await;
    let psp = Arc::new(SandboxPsp::new(Duration::ZERO));
    psp.inject(
        "acct_user-00001",
        SandboxFault::Reject {
            code: "account_closed".into(),
            message: "closed".into(),
        },
        1,
    );
    let executor = env.executor(&psp, test_config());
    executor
        .execute_payout_batch("b-kyc-again", None)
        .await
        .unwrap();
    assert_eq!(
        env.item("b-kyc-again", "item-00001").await.status,
        ItemStatus::Failed
    );
    env.seed_users(&[("user-00001".into(), "acct_user-00001".into(), false)])
        .await;
    executor
        .execute_payout_batch("b-kyc-again", None)
        .await
        .unwrap();
    assert_eq!(
        env.item("b-kyc-again", "item-00001").await.status,
        ItemStatus::PendingKyc
    );
    env.seed_users(&verified_users(&batch)).await;
    executor
        .execute_payout_batch("b-kyc-again", None)
        .await
        .unwrap();
    let paid = env.item("b-kyc-again", "item-00001").await;
    assert_eq!(paid.status, ItemStatus::Processing, "{paid:?}");
    assert_eq!(psp.transfers_for_item("b-kyc-again", "item-00001"), 1);
}

/// An item left `submitting` by an interrupted attempt may already be paid: if its record has
/// since become unusable (amount edited to 0), it stays retryable and loud, never dropped.
#[tokio::test]
async fn an_interrupted_item_whose_amount_became_unusable_stays_retryable() {
    let env = TestEnv::start().await;
    let batch = items(1, "3.00");
    env.seed_batch("b-edited", "sandbox", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    env.set_item_attributes(
        "b-edited",
        "item-00001",
        &[
            (attr::STATUS, Some(s("submitting"))),
            (attr::ATTEMPT, Some(number(1))),
            (attr::KEY_GENERATION, Some(number(0))),
            (attr::NET_AMOUNT, Some(number(0))),
        ],
    )
    .await;
    let psp = Arc::new(SandboxPsp::new(Duration::ZERO));
    let app = App::new(env.executor(&psp, test_config()), None);
    let disposition = handle_message(&app, job_message("b-edited"), None).await;
    assert!(
        matches!(disposition, Disposition::Retry(_)),
        "{disposition:?}"
    );
    assert_eq!(
        env.item("b-edited", "item-00001").await.status,
        ItemStatus::Submitting
    );
    assert_eq!(psp.calls(), 0);
}

/// A sandbox whose PSP side runs `hook` with the transfer id after making the transfer and
/// before answering: a webhook racing the executor's record, on cue.
struct HookedSandbox {
    inner: Arc<SandboxPsp>,
    hook: std::sync::Mutex<Option<Hook>>,
}

type Hook = Box<dyn FnOnce(String) -> futures_util::future::BoxFuture<'static, ()> + Send>;

#[async_trait::async_trait]
impl payouts_core::ports::webhook::WebhookVerifier for HookedSandbox {
    async fn verify_webhook(
        &self,
        request: payouts_core::ports::webhook::WebhookRequest<'_>,
    ) -> Result<
        payouts_core::ports::webhook::VerifiedWebhook,
        payouts_core::ports::webhook::WebhookError,
    > {
        self.inner.verify_webhook(request).await
    }
}

#[async_trait::async_trait]
impl PaymentAdapter for HookedSandbox {
    fn provider(&self) -> &str {
        self.inner.provider()
    }

    fn minor_units(
        &self,
        amount: &payouts_core::money::PayoutAmount,
    ) -> Result<i64, payouts_core::money::MoneyError> {
        self.inner.minor_units(amount)
    }

    async fn submit_transfer(
        &self,
        request: &TransferRequest,
    ) -> Result<TransferReceipt, PaymentError> {
        let answer = self.inner.submit_transfer(request).await;
        let hook = self.hook.lock().unwrap().take();
        if let (Ok(receipt), Some(hook)) = (&answer, hook) {
            hook(receipt.provider_payout_id.clone()).await;
        }
        answer
    }

    async fn find_transfer(
        &self,
        request: &TransferRequest,
    ) -> Result<Option<TransferReceipt>, PaymentError> {
        self.inner.find_transfer(request).await
    }
}

fn transfer_event(
    event_id: &str,
    transfer_id: &str,
    batch_id: &str,
    item_id: &str,
    kind: PaymentEventKind,
) -> PaymentEvent {
    PaymentEvent {
        event_id: event_id.into(),
        event_type: match kind {
            PaymentEventKind::Paid => "transfer.created".into(),
            PaymentEventKind::Failed { .. } => "transfer.failed".into(),
            PaymentEventKind::Reversed { .. } => "transfer.reversed".into(),
        },
        kind: Some(kind),
        provider_payout_id: Some(transfer_id.into()),
        reference: Some(ItemReference {
            batch_id: batch_id.into(),
            item_id: item_id.into(),
        }),
    }
}

/// When recording finds the item already paid through another transfer, the second transfer
/// is a double payment: kept on the item (`duplicatePayoutIds`), never lost in a WARN line.
#[tokio::test]
async fn a_double_payment_detected_while_recording_is_kept_on_the_item() {
    let env = TestEnv::start().await;
    let batch = items(1, "2.00");
    env.seed_batch("b-double", "sandbox", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    let store = env.repository();
    let clock = env.clock.clone();
    let adapter = Arc::new(HookedSandbox {
        inner: Arc::new(SandboxPsp::new(Duration::ZERO)),
        hook: std::sync::Mutex::new(Some(Box::new(move |_made: String| {
            Box::pin(async move {
                let other = transfer_event(
                    "evt_other",
                    "tr_elsewhere",
                    "b-double",
                    "item-00001",
                    PaymentEventKind::Paid,
                );
                apply_payment_event(store.as_ref(), &clock, "sandbox", &other)
                    .await
                    .unwrap();
            })
        }))),
    });
    let summary = env
        .executor_with(adapter.clone(), test_config())
        .execute_payout_batch("b-double", None)
        .await
        .unwrap();
    let made = adapter.inner.transfers()[0].id.clone();
    let stored = env.item("b-double", "item-00001").await;
    assert_eq!(stored.status, ItemStatus::Paid);
    assert_eq!(stored.provider_payout_id.as_deref(), Some("tr_elsewhere"));
    let raw = env.raw_item("b-double", "item-00001").await.unwrap();
    let duplicates = raw
        .get(attr::DUPLICATE_PAYOUT_IDS)
        .and_then(|v| v.as_l().ok())
        .map(|l| {
            l.iter()
                .filter_map(|v| v.as_s().ok().cloned())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    assert_eq!(duplicates, vec![made], "{raw:?}");
    assert_eq!(summary.double_payments, 1, "{summary:?}");
}

/// A new key generation leaves the old transfer behind: the new transfer's early event applies,
/// and a late event of the old (failed) transfer never marks the item paid.
#[tokio::test]
async fn events_match_only_the_items_current_transfer() {
    let env = TestEnv::start().await;
    let batch = items(1, "2.00");
    env.seed_batch("b-stale", "sandbox", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    let sandbox = Arc::new(SandboxPsp::new(Duration::ZERO));
    let adapter = Arc::new(HookedSandbox {
        inner: sandbox.clone(),
        hook: std::sync::Mutex::new(None),
    });
    let executor = env.executor_with(adapter.clone(), test_config());
    executor
        .execute_payout_batch("b-stale", None)
        .await
        .unwrap();
    let first = env.item("b-stale", "item-00001").await;
    let t1 = first.provider_payout_id.clone().unwrap();
    let store = env.repository();
    let clock = env.clock.clone();
    let failed = transfer_event(
        "evt_t1_failed",
        &t1,
        "b-stale",
        "item-00001",
        PaymentEventKind::Failed {
            reason: "bank refused".into(),
        },
    );
    apply_payment_event(store.as_ref(), &clock, "sandbox", &failed)
        .await
        .unwrap();
    assert_eq!(
        env.item("b-stale", "item-00001").await.status,
        ItemStatus::Failed
    );
    let (hook_store, hook_clock, stale) = (store.clone(), clock.clone(), t1.clone());
    *adapter.hook.lock().unwrap() = Some(Box::new(move |t2: String| {
        Box::pin(async move {
            let late_t1 = transfer_event(
                "evt_t1_late_created",
                &stale,
                "b-stale",
                "item-00001",
                PaymentEventKind::Paid,
            );
            let outcome =
                apply_payment_event(hook_store.as_ref(), &hook_clock, "sandbox", &late_t1)
                    .await
                    .unwrap();
            assert!(
                matches!(outcome, SettlementOutcome::Ignored { .. }),
                "{outcome:?}"
            );
            let early_t2 = transfer_event(
                "evt_t2_created",
                &t2,
                "b-stale",
                "item-00001",
                PaymentEventKind::Paid,
            );
            let outcome =
                apply_payment_event(hook_store.as_ref(), &hook_clock, "sandbox", &early_t2)
                    .await
                    .unwrap();
            assert!(
                matches!(outcome, SettlementOutcome::Applied { .. }),
                "{outcome:?}"
            );
        })
    }));
    executor
        .execute_payout_batch("b-stale", None)
        .await
        .unwrap();
    let settled = env.item("b-stale", "item-00001").await;
    let t2 = sandbox.transfers()[1].id.clone();
    assert_eq!(settled.status, ItemStatus::Paid, "{settled:?}");
    assert_eq!(settled.provider_payout_id.as_deref(), Some(t2.as_str()));
}

/// A refusal of the platform, not the item (no funds, transfers not allowed, a restricted key)
/// fails no item: the run stops, the job is retried, and once fixed each item is paid once,
/// under a new key where the old one stored the refusal.
#[tokio::test]
async fn a_platform_refusal_pauses_the_batch_instead_of_failing_every_item() {
    let env = TestEnv::start().await;
    let batch = items(3, "5.00");
    env.seed_batch("b-no-funds", "stripe", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    let fake = FakeStripe::start().await;
    for (_, user, _) in &batch {
        fake.reject_destination(
            &format!("acct_{user}"),
            400,
            "balance_insufficient",
            "You have insufficient funds in your Stripe account.",
        );
    }
    let adapter = Arc::new(StripeAdapter::new(fake.config()).expect("adapter"));
    let app = App::new(
        env.executor_with(
            adapter,
            payouts_core::executor::ExecutorConfig {
                concurrency: 1,
                ..test_config()
            },
        ),
        None,
    );
    let paused = handle_message(&app, job_message("b-no-funds"), None).await;
    assert!(matches!(paused, Disposition::Retry(_)), "{paused:?}");
    assert_eq!(fake.requests().iter().filter(|r| r.is_create()).count(), 1);
    for item in env.items("b-no-funds").await {
        assert_ne!(item.status, ItemStatus::Failed, "{item:?}");
    }
    for (_, user, _) in &batch {
        fake.accept_destination(&format!("acct_{user}"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // the fake's settle delay
    let resumed = handle_message(&app, job_message("b-no-funds"), None).await;
    assert!(matches!(resumed, Disposition::Done(_)), "{resumed:?}");
    for item in env.items("b-no-funds").await {
        assert_eq!(item.status, ItemStatus::Processing, "{item:?}");
    }
    assert_eq!(fake.transfers().len(), 3, "each item paid once");
}

/// An event settles only items of its own provider: a sandbox-signed event cannot settle a
/// Stripe item, whatever it claims.
#[tokio::test]
async fn an_event_settles_only_items_of_its_own_provider() {
    let env = TestEnv::start().await;
    let batch = items(1, "2.00");
    env.seed_batch("b-scope", "stripe", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    let fake = FakeStripe::start().await;
    let stripe = Arc::new(StripeAdapter::new(fake.config()).expect("adapter"));
    env.executor_with(stripe.clone(), test_config())
        .execute_payout_batch("b-scope", None)
        .await
        .unwrap();
    let transfer = env
        .item("b-scope", "item-00001")
        .await
        .provider_payout_id
        .unwrap();
    let forged = transfer_event(
        "evt_forged",
        &transfer,
        "b-scope",
        "item-00001",
        PaymentEventKind::Paid,
    );
    let outcome = apply_payment_event(env.repository().as_ref(), &env.clock, "sandbox", &forged)
        .await
        .unwrap();
    assert!(
        matches!(outcome, SettlementOutcome::Ignored { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        env.item("b-scope", "item-00001").await.status,
        ItemStatus::Processing
    );
    let genuine = transfer_event(
        "evt_genuine",
        &transfer,
        "b-scope",
        "item-00001",
        PaymentEventKind::Paid,
    );
    apply_payment_event(env.repository().as_ref(), &env.clock, "stripe", &genuine)
        .await
        .unwrap();
    assert_eq!(
        env.item("b-scope", "item-00001").await.status,
        ItemStatus::Paid
    );
}

/// A batch whose first items always fail, run in short invocations: continuations carry the
/// cursor and leave failed items, so every item is reached, each failing item is tried once
/// per job, and the chain ends.
#[tokio::test]
async fn continuations_resume_where_the_run_stopped_and_never_loop_on_failed_items() {
    let env = TestEnv::start().await;
    let batch = items(30, "1.00");
    env.seed_batch("b-loop", "sandbox", "USD", &batch).await;
    let users: Vec<(String, String, bool)> = batch
        .iter()
        .enumerate()
        .map(|(n, (_, user, _))| {
            let account = if n < 20 {
                format!("acct_sandbox_reject_{n}")
            } else {
                format!("acct_{user}")
            };
            (user.clone(), account, true)
        })
        .collect();
    env.seed_users(&users).await;
    let psp = Arc::new(SandboxPsp::new(Duration::from_millis(20)));
    let queue = Arc::new(RecordedQueue::default());
    let config = payouts_core::executor::ExecutorConfig {
        concurrency: 1,
        psp_timeout: Duration::from_millis(100),
        ..test_config()
    };
    let app = App::new(env.executor(&psp, config), Some(queue.clone()));
    let mut body =
        serde_json::to_string(&PayoutJob::for_batch("b-loop", Some("j-1".into()))).unwrap();
    let mut runs = 0;
    loop {
        runs += 1;
        assert!(runs <= 20, "the job chain did not end: {runs} runs");
        let mut message = job_message("b-loop");
        message.body = Some(body.clone());
        let deadline = tokio::time::Instant::now() + Duration::from_millis(1_100 + 400);
        match handle_message(&app, message, Some(deadline)).await {
            Disposition::Continued(_) => {
                let next = queue.take().pop().expect("continuation job");
                body = serde_json::to_string(&next).unwrap();
            }
            Disposition::Done(_) => break,
            other => panic!("run {runs}: {other:?}"),
        }
    }
    assert!(runs > 1, "the test needs the batch to outlast one run");
    for item in env.items("b-loop").await {
        let n: usize = item.item_id.trim_start_matches("item-").parse().unwrap();
        let expected = if n <= 20 {
            ItemStatus::Failed
        } else {
            ItemStatus::Processing
        };
        assert_eq!(item.status, expected, "{item:?}");
    }
    let refused_calls = psp.calls() - psp.transfers().len() as u64;
    assert!(
        refused_calls <= 20 + 2,
        "{refused_calls} refused calls for 20 failing items in one job"
    );
}

/// A one-item batch whose first attempt made a transfer (through the sandbox) and lost the
/// answer, and whose later attempt under the same key was refused as changed: the item is
/// `failed`, awaiting reconciliation, and records no transfer. Returns the PSP and the transfer.
async fn failed_item_awaiting_lookup(env: &TestEnv, batch_id: &str) -> (Arc<SandboxPsp>, String) {
    let batch = items(1, "6.00");
    env.seed_batch(batch_id, "sandbox", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    let psp = Arc::new(SandboxPsp::new(Duration::ZERO));
    let made = psp
        .submit_transfer(&TransferRequest {
            idempotency_key: payouts_core::ports::payment::IdempotencyKey::for_item(
                batch_id,
                "item-00001",
                0,
            ),
            batch_id: batch_id.into(),
            item_id: "item-00001".into(),
            destination: "acct_user-00001".into(),
            amount_minor: 600,
            currency: "USD".into(),
            send_by: None,
        })
        .await
        .unwrap();
    env.set_item_attributes(
        batch_id,
        "item-00001",
        &[
            (attr::STATUS, Some(s("failed"))),
            (attr::ATTEMPT, Some(number(2))),
            (attr::KEY_GENERATION, Some(number(0))),
            (attr::RECONCILE_SINCE, Some(number(1000))),
            (attr::FAILURE_REASON, Some(s("idempotency_error: changed"))),
        ],
    )
    .await;
    (psp, made.provider_payout_id)
}

/// An event for a transfer the item does not record yet (here: the item is `failed` awaiting
/// reconciliation) is held, not discarded: once reconciliation records that transfer, the held
/// event settles the item.
#[tokio::test]
async fn an_event_that_came_before_its_transfer_was_recorded_settles_the_item_later() {
    let env = TestEnv::start().await;
    let (psp, made) = failed_item_awaiting_lookup(&env, "b-held").await;
    let event = transfer_event(
        "evt_before_record",
        &made,
        "b-held",
        "item-00001",
        PaymentEventKind::Paid,
    );
    let first = apply_payment_event(env.repository().as_ref(), &env.clock, "sandbox", &event)
        .await
        .unwrap();
    assert!(matches!(first, SettlementOutcome::Held { .. }), "{first:?}");
    assert_eq!(
        env.item("b-held", "item-00001").await.status,
        ItemStatus::Failed
    );
    env.executor(&psp, test_config())
        .execute_payout_batch("b-held", None)
        .await
        .unwrap();
    let settled = env.item("b-held", "item-00001").await;
    assert_eq!(settled.status, ItemStatus::Paid, "{settled:?}");
    assert_eq!(settled.provider_payout_id.as_deref(), Some(made.as_str()));
    assert_eq!(psp.transfers().len(), 1, "never paid twice");
}

/// A webhook delivery that dies between any two of its writes while holding an event loses
/// nothing: the PSP's redelivery is held again (never taken for a duplicate of an event that was
/// not kept), and reconciliation applies it. Found by the fault simulation (Adyen, seed
/// 0x10458): a crash cut a delivery short after the event was recorded as seen and before it was
/// kept, and the `returned` event's redelivery was then a duplicate.
#[tokio::test]
async fn a_held_event_survives_a_delivery_that_dies_between_its_writes() {
    for die_at in 1..=4 {
        let env = TestEnv::start().await;
        let batch_id = format!("b-held-crash-{die_at}");
        let (psp, made) = failed_item_awaiting_lookup(&env, &batch_id).await;
        let event = transfer_event(
            "evt_crash",
            &made,
            &batch_id,
            "item-00001",
            PaymentEventKind::Paid,
        );
        let store = env.repository();
        env.requests.die_before_write(Some(die_at));
        let first = apply_payment_event(store.as_ref(), &env.clock, "sandbox", &event).await;
        env.requests.die_before_write(None);
        let again = apply_payment_event(store.as_ref(), &env.clock, "sandbox", &event)
            .await
            .unwrap();
        env.executor(&psp, test_config())
            .execute_payout_batch(&batch_id, None)
            .await
            .unwrap();
        let item = env.item(&batch_id, "item-00001").await;
        assert_eq!(
            item.status,
            ItemStatus::Paid,
            "died before write {die_at} (first delivery {first:?}, redelivery {again:?}): {item:?}"
        );
    }
}

/// An event held while the executor is recording the same transfer (the executor's look for
/// held events comes before the hold is written) is not stranded: whoever comes second applies
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_held_while_its_transfer_is_being_recorded_is_applied() {
    let env = TestEnv::start().await;
    let (psp, made) = failed_item_awaiting_lookup(&env, "b-held-race").await;
    let event = transfer_event(
        "evt_race",
        &made,
        "b-held-race",
        "item-00001",
        PaymentEventKind::Paid,
    );
    let paused = env.requests.pause_at("HELD#");
    let (store, clock) = (env.repository(), env.clock.clone());
    let webhook = tokio::spawn(async move {
        apply_payment_event(store.as_ref(), &clock, "sandbox", &event).await
    });
    paused.reached().await;
    // Reconciliation records the transfer while the event's hold is on its way.
    env.executor(&psp, test_config())
        .execute_payout_batch("b-held-race", None)
        .await
        .unwrap();
    paused.release();
    let outcome = webhook.await.unwrap().unwrap();
    let item = env.item("b-held-race", "item-00001").await;
    assert_eq!(item.status, ItemStatus::Paid, "{outcome:?}: {item:?}");
    assert_eq!(psp.transfers().len(), 1, "never paid twice");
}

/// Events held for a transfer are applied even when the executor's record of that transfer is
/// superseded: reconciliation found the transfer, and before it recorded it another event of
/// the same transfer settled the item directly. Here the held event is a reversal, which must
/// end on the item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_held_for_a_transfer_apply_when_another_event_recorded_it_first() {
    let env = TestEnv::start().await;
    let (psp, made) = failed_item_awaiting_lookup(&env, "b-held-first").await;
    let reversal = transfer_event(
        "evt_reversed",
        &made,
        "b-held-first",
        "item-00001",
        PaymentEventKind::Reversed {
            reason: "returned: approved".into(),
        },
    );
    let store = env.repository();
    let held = apply_payment_event(store.as_ref(), &env.clock, "sandbox", &reversal)
        .await
        .unwrap();
    assert!(matches!(held, SettlementOutcome::Held { .. }), "{held:?}");
    // The executor's record of the found transfer waits while the transfer's `paid` event
    // settles the `submitting` item directly.
    let paused = env.requests.pause_at(r#""processing""#);
    let executor = env.executor(&psp, test_config());
    let run =
        tokio::spawn(async move { executor.execute_payout_batch("b-held-first", None).await });
    paused.reached().await;
    let paid = transfer_event(
        "evt_paid",
        &made,
        "b-held-first",
        "item-00001",
        PaymentEventKind::Paid,
    );
    let applied = apply_payment_event(store.as_ref(), &env.clock, "sandbox", &paid)
        .await
        .unwrap();
    assert!(
        matches!(applied, SettlementOutcome::Applied { .. }),
        "{applied:?}"
    );
    paused.release();
    run.await.unwrap().unwrap();
    let item = env.item("b-held-first", "item-00001").await;
    assert_eq!(item.status, ItemStatus::Paid, "{item:?}");
    let raw = env.raw_item("b-held-first", "item-00001").await.unwrap();
    assert!(
        raw.contains_key(attr::REVERSAL_EVENT_ID),
        "the held reversal must end on the item: {raw:?}"
    );
    assert_eq!(psp.transfers().len(), 1, "never paid twice");
}

/// A batch that became unpayable as a whole (its provider or currency edited) while one of its
/// items was interrupted mid-payment is not dropped as poison: that item may already be paid, so
/// the job stays retryable (towards the DLQ, alarmed) until someone fixes the batch. A record of
/// an interrupted item that no longer decodes is kept retryable the same way.
#[tokio::test]
async fn a_batch_turned_unpayable_with_an_item_in_flight_is_retried_not_dropped() {
    let env = TestEnv::start().await;
    let batch = items(2, "3.00");
    env.seed_batch("b-poison-late", "sandbox", "USD", &batch)
        .await;
    env.seed_users(&verified_users(&batch)).await;
    let psp = Arc::new(SandboxPsp::new(Duration::ZERO));
    let app = App::new(env.executor(&psp, test_config()), None);
    // item-00001 was claimed by an attempt that died: submitting, lease run out.
    env.set_item_attributes(
        "b-poison-late",
        "item-00001",
        &[
            (attr::STATUS, Some(s("submitting"))),
            (attr::ATTEMPT, Some(number(1))),
        ],
    )
    .await;
    for (field, value) in [(attr::PROVIDER, "paypal"), (attr::CURRENCY, "XXX")] {
        env.set_batch_attributes("b-poison-late", &[(field, Some(s(value)))])
            .await;
        let disposition = handle_message(&app, job_message("b-poison-late"), None).await;
        assert!(
            matches!(&disposition, Disposition::Retry(reason) if reason.contains("in flight")),
            "{field}={value}: {disposition:?}"
        );
        let restore = if field == attr::PROVIDER {
            "sandbox"
        } else {
            "USD"
        };
        env.set_batch_attributes("b-poison-late", &[(field, Some(s(restore)))])
            .await;
    }
    // The interrupted item's record no longer decodes (its userId was removed).
    env.set_item_attributes("b-poison-late", "item-00001", &[(attr::USER_ID, None)])
        .await;
    let disposition = handle_message(&app, job_message("b-poison-late"), None).await;
    assert!(
        matches!(disposition, Disposition::Retry(_)),
        "an undecodable interrupted item must keep the job: {disposition:?}"
    );
}

/// A failure event for an earlier key's transfer, arriving while an attempt holds the item and is
/// paying under a new key, must not fail the item: a next attempt would pay a third time. The
/// event is refused for now (nothing written, the PSP redelivers) and the attempt records its
/// transfer. Found by the fault simulation (Adyen, seeds 0x10614 and 0x11140).
#[tokio::test]
async fn a_failure_event_never_moves_an_item_an_attempt_holds() {
    let env = TestEnv::start().await;
    let batch = items(1, "2.00");
    env.seed_batch("b-held-attempt", "sandbox", "USD", &batch)
        .await;
    env.seed_users(&verified_users(&batch)).await;
    let store = env.repository();
    let clock = env.clock.clone();
    let adapter = Arc::new(HookedSandbox {
        inner: Arc::new(SandboxPsp::new(Duration::ZERO)),
        hook: std::sync::Mutex::new(Some(Box::new(move |_made: String| {
            Box::pin(async move {
                let old = transfer_event(
                    "evt_old_refused",
                    "tr_earlier_key",
                    "b-held-attempt",
                    "item-00001",
                    PaymentEventKind::Failed {
                        reason: "refused".into(),
                    },
                );
                let outcome = apply_payment_event(store.as_ref(), &clock, "sandbox", &old).await;
                assert!(
                    outcome.is_err(),
                    "applied while an attempt holds the item: {outcome:?}"
                );
            })
        }))),
    });
    let summary = env
        .executor_with(adapter.clone(), test_config())
        .execute_payout_batch("b-held-attempt", None)
        .await
        .unwrap();
    assert_eq!(summary.submitted, 1, "{summary:?}");
    let item = env.item("b-held-attempt", "item-00001").await;
    assert_eq!(item.status, ItemStatus::Processing, "{item:?}");
    assert_eq!(
        item.provider_payout_id.as_deref(),
        Some(adapter.inner.transfers()[0].id.as_str())
    );
}

/// The fault simulation's seed 0x30103 (Adyen): a refusal of an earlier key's transfer arrived
/// while the item, now under a newer key, waited with that key's transfer made but not yet
/// recorded (the answer was lost). The refusal failed the item; the next run paid it under yet
/// another key: paid twice. A failure must settle only the transfer the item records; one for a
/// transfer it does not record is held, and applies if the item comes to record it.
#[tokio::test]
async fn a_refusal_of_a_transfer_the_item_does_not_record_never_fails_it() {
    let env = TestEnv::start().await;
    let batch = items(1, "2.00");
    env.seed_batch("b-old-refusal", "sandbox", "USD", &batch)
        .await;
    env.seed_users(&verified_users(&batch)).await;
    let psp = Arc::new(SandboxPsp::new(Duration::ZERO));
    // The transfer is made, and the answer lost: the item waits `submitting`, unleased.
    psp.inject("acct_user-00001", SandboxFault::TimeoutAfterAccept, 1);
    let executor = env.executor(&psp, test_config());
    let first = executor
        .execute_payout_batch("b-old-refusal", None)
        .await
        .unwrap();
    assert_eq!(first.retryable, 1, "{first:?}");
    let item = env.item("b-old-refusal", "item-00001").await;
    assert_eq!(item.status, ItemStatus::Submitting, "{item:?}");
    let made = psp.transfers()[0].id.clone();

    let refusal = transfer_event(
        "evt_earlier_key_refused",
        "tr_earlier_key",
        "b-old-refusal",
        "item-00001",
        PaymentEventKind::Failed {
            reason: "refused: notEnoughBalance".into(),
        },
    );
    let outcome = apply_payment_event(&env.store, &env.clock, "sandbox", &refusal)
        .await
        .unwrap();
    assert!(
        matches!(outcome, SettlementOutcome::Held { .. }),
        "a refusal of a transfer the item does not record: {outcome:?}"
    );
    assert_eq!(
        env.item("b-old-refusal", "item-00001").await.status,
        ItemStatus::Submitting
    );

    // The next run re-drives the same key: the PSP replays the transfer it made, once.
    env.clock.advance(Duration::from_secs(3_600));
    executor
        .execute_payout_batch("b-old-refusal", None)
        .await
        .unwrap();
    assert_eq!(psp.transfers_for_item("b-old-refusal", "item-00001"), 1);
    let item = env.item("b-old-refusal", "item-00001").await;
    assert_eq!(item.status, ItemStatus::Processing, "{item:?}");
    assert_eq!(item.provider_payout_id.as_deref(), Some(made.as_str()));
}

/// The other side of the same rule: a refusal of the transfer the item is about to record is
/// held, and fails the item as soon as the run records that transfer.
#[tokio::test]
async fn a_refusal_that_arrives_before_its_transfer_is_recorded_fails_the_item_when_it_is() {
    let env = TestEnv::start().await;
    let batch = items(1, "2.00");
    env.seed_batch("b-early-refusal", "sandbox", "USD", &batch)
        .await;
    env.seed_users(&verified_users(&batch)).await;
    let psp = Arc::new(SandboxPsp::new(Duration::ZERO));
    psp.inject("acct_user-00001", SandboxFault::TimeoutAfterAccept, 1);
    let executor = env.executor(&psp, test_config());
    executor
        .execute_payout_batch("b-early-refusal", None)
        .await
        .unwrap();
    let made = psp.transfers()[0].id.clone();
    let refusal = transfer_event(
        "evt_refused",
        &made,
        "b-early-refusal",
        "item-00001",
        PaymentEventKind::Failed {
            reason: "refused: accountClosed".into(),
        },
    );
    let outcome = apply_payment_event(&env.store, &env.clock, "sandbox", &refusal)
        .await
        .unwrap();
    assert!(
        matches!(outcome, SettlementOutcome::Held { .. }),
        "{outcome:?}"
    );
    env.clock.advance(Duration::from_secs(3_600));
    executor
        .execute_payout_batch("b-early-refusal", None)
        .await
        .unwrap();
    let item = env.item("b-early-refusal", "item-00001").await;
    assert_eq!(item.status, ItemStatus::Failed, "{item:?}");
    assert_eq!(
        item.failure_reason.as_deref(),
        Some("refused: accountClosed")
    );
    assert_eq!(psp.transfers_for_item("b-early-refusal", "item-00001"), 1);
}
