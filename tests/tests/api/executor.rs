//! The executor's protocol against a real DynamoDB API (dynoxide in-process, or the endpoint in
//! `AWS_ENDPOINT_URL_DYNAMODB`): conditional writes, pagination and bulk reads for real.

use integration_tests::{TestEnv, items, test_config, verified_users};
use payouts_core::domain::ItemStatus;
use payouts_core::executor::ExecutorConfig;
use payouts_core::ports::webhook::{ItemReference, PaymentEvent, PaymentEventKind};
use payouts_core::settlement::apply_payment_event;
use payouts_psp::sandbox::{SandboxFault, SandboxPsp};
use std::sync::Arc;
use std::time::Duration;

fn sandbox(latency_ms: u64) -> Arc<SandboxPsp> {
    Arc::new(SandboxPsp::new(Duration::from_millis(latency_ms)))
}

#[tokio::test]
async fn happy_path_pays_each_item_once_with_two_writes_per_item() {
    let env = TestEnv::start().await;
    let batch = items(5, "12.34");
    env.seed_batch("b-happy", "sandbox", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    let psp = sandbox(0);

    let summary = env
        .executor(&psp, test_config())
        .execute_payout_batch("b-happy", None)
        .await
        .unwrap();

    assert_eq!((summary.total, summary.submitted), (5, 5));
    assert!(!summary.needs_another_run(), "{summary:?}");
    let requests = env.requests.by_operation();
    assert_eq!(
        requests.get("TransactWriteItems"),
        Some(&11),
        "claim + record per item, each with its count move, and the batch's count (base and \
         counter shards, once per batch): {requests:?}"
    );
    assert_eq!(
        requests.get("UpdateItem"),
        Some(&1),
        "the batch's start (executing): {requests:?}"
    );
    assert_eq!(
        env.requests.total(),
        18,
        "plus one GetItem, one BatchGetItem, and four Query (the counts at the start; the items \
         by status, once per batch; the items; the completion check, which reads the counts): \
         {requests:?}"
    );
    let transfers = psp.transfers();
    assert_eq!(transfers.len(), 5);
    for item in env.items("b-happy").await {
        assert_eq!(item.status, ItemStatus::Processing, "{item:?}");
        let transfer = transfers
            .iter()
            .find(|t| t.item_id == item.item_id)
            .expect("a transfer per item");
        assert_eq!(
            item.provider_payout_id.as_deref(),
            Some(transfer.id.as_str())
        );
        assert_eq!(transfer.amount_minor, 1234);
        assert_eq!(transfer.currency, "USD");
        assert_eq!(transfer.destination, format!("acct_{}", item.user_id));
        assert_eq!(
            transfer.idempotency_key,
            format!("payout:b-happy:{}:g0", item.item_id)
        );
        assert_eq!(
            item.attempt.lease_until_ms, None,
            "lease cleared once recorded"
        );
    }
}

#[tokio::test]
async fn unverified_recipients_wait_for_kyc_and_the_batch_goes_on() {
    let env = TestEnv::start().await;
    let batch = items(4, "5.00");
    env.seed_batch("b-kyc", "sandbox", "EUR", &batch).await;
    env.seed_users(&[
        ("user-00001".into(), "acct_1".into(), true),
        ("user-00002".into(), "acct_2".into(), false),
        // user-00003 has no settings at all
        ("user-00004".into(), "acct_4".into(), true),
    ])
    .await;
    let psp = sandbox(0);

    let summary = env
        .executor(&psp, test_config())
        .execute_payout_batch("b-kyc", None)
        .await
        .unwrap();

    assert_eq!(
        (summary.submitted, summary.pending_kyc),
        (2, 2),
        "{summary:?}"
    );
    let item = |id: &'static str| env.item("b-kyc", id);
    assert_eq!(item("item-00001").await.status, ItemStatus::Processing);
    assert_eq!(item("item-00004").await.status, ItemStatus::Processing);
    let unverified = item("item-00002").await;
    assert_eq!(unverified.status, ItemStatus::PendingKyc);
    assert_eq!(
        unverified.failure_reason.as_deref(),
        Some("recipient's payout method is not verified")
    );
    let missing = item("item-00003").await;
    assert_eq!(missing.status, ItemStatus::PendingKyc);
    assert_eq!(
        missing.failure_reason.as_deref(),
        Some("recipient has no payout method on file")
    );
    assert_eq!(psp.transfers().len(), 2);

    // Verified later: the next run pays them, and only them.
    env.seed_users(&[
        ("user-00002".into(), "acct_2".into(), true),
        ("user-00003".into(), "acct_3".into(), true),
    ])
    .await;
    let summary = env
        .executor(&psp, test_config())
        .execute_payout_batch("b-kyc", None)
        .await
        .unwrap();
    assert_eq!(
        (summary.submitted, summary.skipped, summary.pending_kyc),
        (2, 2, 0),
        "{summary:?}"
    );
    for item in env.items("b-kyc").await {
        assert_eq!(item.status, ItemStatus::Processing);
        assert_eq!(item.failure_reason, None, "reason cleared when paid");
        assert_eq!(psp.transfers_for_item("b-kyc", &item.item_id), 1);
    }
}

#[tokio::test]
async fn running_the_job_again_submits_nothing() {
    let env = TestEnv::start().await;
    let batch = items(20, "1.00");
    env.seed_batch("b-twice", "sandbox", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    let psp = sandbox(0);
    let executor = env.executor(&psp, test_config());

    executor
        .execute_payout_batch("b-twice", None)
        .await
        .unwrap();
    let calls = psp.calls();
    env.requests.reset();
    let again = executor
        .execute_payout_batch("b-twice", None)
        .await
        .unwrap();

    assert_eq!((again.submitted, again.skipped), (0, 20), "{again:?}");
    assert_eq!(psp.calls(), calls, "no PSP call on the second run");
    assert_eq!(psp.transfers().len(), 20);
    assert_eq!(
        env.requests.get("UpdateItem") + env.requests.get("TransactWriteItems"),
        0,
        "no write on the second run"
    );
}

#[tokio::test]
async fn crash_after_the_psp_accepted_is_recovered_without_paying_twice() {
    let env = TestEnv::start().await;
    let batch = items(3, "10.00");
    env.seed_batch("b-crash", "sandbox", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    let psp = sandbox(0);
    // The PSP makes the transfer for item 2, then the process dies before the record is written.
    psp.inject("acct_user-00002", SandboxFault::HangAfterAccept, 1);
    let lease = Duration::from_secs(2);
    let cfg = ExecutorConfig {
        lease,
        psp_timeout: Duration::from_millis(1_500),
        ..test_config()
    };

    let crashed = tokio::time::timeout(
        Duration::from_millis(500),
        env.executor(&psp, cfg.clone())
            .execute_payout_batch("b-crash", None),
    )
    .await;
    assert!(crashed.is_err(), "the run was cut off mid-flight");
    let stuck = env.item("b-crash", "item-00002").await;
    assert_eq!(
        stuck.status,
        ItemStatus::Submitting,
        "claimed, never recorded"
    );
    assert_eq!(
        psp.transfers_for_item("b-crash", "item-00002"),
        1,
        "but the PSP paid"
    );

    // Redelivered while the dead attempt's lease still runs: the item is left alone.
    let early = env
        .executor(&psp, cfg.clone())
        .execute_payout_batch("b-crash", None)
        .await
        .unwrap();
    assert_eq!(early.in_flight, 1, "{early:?}");
    assert!(early.needs_another_run());
    assert_eq!(
        env.item("b-crash", "item-00002").await.status,
        ItemStatus::Submitting
    );

    // After the lease: re-driven with the same key; the PSP replays the original transfer.
    tokio::time::sleep(lease).await;
    let recovered = env
        .executor(&psp, cfg)
        .execute_payout_batch("b-crash", None)
        .await
        .unwrap();
    assert_eq!(recovered.submitted, 1, "{recovered:?}");
    assert!(!recovered.needs_another_run());
    let item = env.item("b-crash", "item-00002").await;
    assert_eq!(item.status, ItemStatus::Processing);
    assert_eq!(item.attempt.attempt, 2, "one claim per attempt");
    for (item_id, _, _) in &batch {
        assert_eq!(psp.transfers_for_item("b-crash", item_id), 1, "{item_id}");
    }
    let paid = psp
        .transfers()
        .into_iter()
        .find(|t| t.item_id == "item-00002")
        .unwrap();
    assert_eq!(item.provider_payout_id, Some(paid.id));
}

#[tokio::test]
async fn unknown_outcomes_and_transient_errors_are_retried_with_the_same_key() {
    let env = TestEnv::start().await;
    let batch = items(3, "10.00");
    env.seed_batch("b-retry", "sandbox", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    let psp = sandbox(0);
    psp.inject("acct_user-00001", SandboxFault::TimeoutAfterAccept, 1);
    psp.inject("acct_user-00002", SandboxFault::TransientBeforeAccept, 1);
    let executor = env.executor(&psp, test_config());

    let first = executor
        .execute_payout_batch("b-retry", None)
        .await
        .unwrap();
    assert_eq!((first.submitted, first.retryable), (1, 2), "{first:?}");
    for id in ["item-00001", "item-00002"] {
        let item = env.item("b-retry", id).await;
        assert_eq!(item.status, ItemStatus::Submitting);
        assert_eq!(
            item.attempt.lease_until_ms, None,
            "lease released for an immediate retry"
        );
    }

    let second = executor
        .execute_payout_batch("b-retry", None)
        .await
        .unwrap();
    assert_eq!(
        (second.submitted, second.skipped, second.retryable),
        (2, 1, 0),
        "{second:?}"
    );
    for (item_id, _, _) in &batch {
        assert_eq!(
            env.item("b-retry", item_id).await.status,
            ItemStatus::Processing
        );
        assert_eq!(psp.transfers_for_item("b-retry", item_id), 1, "{item_id}");
    }
}

#[tokio::test]
async fn permanent_rejections_fail_the_item_and_the_next_run_uses_a_new_key() {
    let env = TestEnv::start().await;
    let batch = items(2, "3.00");
    env.seed_batch("b-reject", "sandbox", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    let psp = sandbox(0);
    psp.inject(
        "acct_user-00001",
        SandboxFault::Reject {
            code: "account_closed".into(),
            message: "the destination account is closed".into(),
        },
        1,
    );
    let executor = env.executor(&psp, test_config());

    let first = executor
        .execute_payout_batch("b-reject", None)
        .await
        .unwrap();
    assert_eq!((first.submitted, first.failed), (1, 1), "{first:?}");
    let failed = env.item("b-reject", "item-00001").await;
    assert_eq!(failed.status, ItemStatus::Failed);
    assert_eq!(
        failed.failure_reason.as_deref(),
        Some("account_closed: the destination account is closed")
    );
    assert_eq!(psp.transfers_for_item("b-reject", "item-00001"), 0);

    // The account is fixed; the old key would replay the stored rejection, so a new generation.
    let second = executor
        .execute_payout_batch("b-reject", None)
        .await
        .unwrap();
    assert_eq!(second.submitted, 1, "{second:?}");
    let paid = env.item("b-reject", "item-00001").await;
    assert_eq!(paid.status, ItemStatus::Processing);
    assert_eq!(paid.attempt.key_generation, 1);
    let transfer = psp
        .transfers()
        .into_iter()
        .find(|t| t.item_id == "item-00001")
        .unwrap();
    assert_eq!(transfer.idempotency_key, "payout:b-reject:item-00001:g1");
}

#[tokio::test]
async fn two_concurrent_runs_of_a_300_item_batch_pay_each_item_once() {
    let env = TestEnv::start().await;
    let batch = items(300, "2.50");
    env.seed_batch("b-race", "sandbox", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    let psp = sandbox(2);
    let cfg = ExecutorConfig {
        concurrency: 16,
        page_size: Some(50),
        ..test_config()
    };
    let (a, b) = (env.executor(&psp, cfg.clone()), env.executor(&psp, cfg));

    let (ra, rb) = tokio::join!(
        a.execute_payout_batch("b-race", None),
        b.execute_payout_batch("b-race", None)
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());

    assert_eq!(
        ra.submitted + rb.submitted,
        300,
        "each item submitted by exactly one run: {ra:?} {rb:?}"
    );
    assert!(
        ra.submitted > 0 && rb.submitted > 0,
        "both runs did work, so they really raced: {ra:?} {rb:?}"
    );
    assert_eq!(psp.transfers().len(), 300);
    for item in env.items("b-race").await {
        assert_eq!(item.status, ItemStatus::Processing, "{item:?}");
        assert_eq!(
            psp.transfers_for_item("b-race", &item.item_id),
            1,
            "{}",
            item.item_id
        );
    }
}

#[tokio::test]
async fn a_2500_item_batch_is_read_in_pages_with_bulk_settings_reads() {
    let env = TestEnv::start().await;
    let mut batch = items(2_500, "0.99");
    // Some recipients have several items in the batch.
    for (i, item) in batch.iter_mut().enumerate().skip(2_000) {
        item.1 = format!("user-{:05}", i - 1_999);
    }
    env.seed_batch("b-large", "sandbox", "USD", &batch).await;
    let mut users = verified_users(&batch[..2_000]);
    users[7].2 = false;
    env.seed_users(&users).await;
    let psp = sandbox(0);
    let cfg = ExecutorConfig {
        concurrency: 32,
        page_size: Some(400),
        ..test_config()
    };

    let summary = env
        .executor(&psp, cfg)
        .execute_payout_batch("b-large", None)
        .await
        .unwrap();

    // user-00008 is unverified and owns item-00008 and item-02008.
    assert_eq!(
        (summary.total, summary.submitted, summary.pending_kyc),
        (2_500, 2_498, 2),
        "{summary:?}"
    );
    assert!(summary.read_all_pages);
    assert_eq!(psp.transfers().len(), 2_498);
    let requests = env.requests.by_operation();
    assert_eq!(
        requests.get("Query"),
        Some(&10),
        "2,500 items in pages of 400, the counts at the start, the item total, and one \
         completion check: {requests:?}"
    );
    // Each page's distinct recipients in BatchGetItem calls of up to 100 keys, never one GetItem each.
    assert_eq!(requests.get("BatchGetItem"), Some(&25), "{requests:?}");
    assert_eq!(
        requests.get("GetItem"),
        Some(&1),
        "only the batch record: {requests:?}"
    );
    let statuses = env.items("b-large").await;
    assert_eq!(
        statuses
            .iter()
            .filter(|i| i.status == ItemStatus::Processing)
            .count(),
        2_498
    );
}

#[tokio::test]
async fn a_batch_that_ends_without_any_transfer_is_completed_by_the_run() {
    let env = TestEnv::start().await;
    let batch = items(3, "1.00");
    env.seed_batch("b-nothing-to-pay", "sandbox", "USD", &batch)
        .await;
    env.seed_users(&[("user-00001".into(), "acct_sandbox_reject_1".into(), true)])
        .await;
    let psp = sandbox(0);

    let summary = env
        .executor(&psp, test_config())
        .execute_payout_batch("b-nothing-to-pay", None)
        .await
        .unwrap();

    assert_eq!((summary.failed, summary.pending_kyc), (1, 2), "{summary:?}");
    let record = env.raw_batch("b-nothing-to-pay").await;
    assert_eq!(record["status"].as_s().unwrap(), "completed_with_failures");
    let counts = record["itemCounts"].as_m().unwrap();
    assert_eq!(counts["failed"].as_n().unwrap(), "1");
    assert_eq!(counts["pending_kyc"].as_n().unwrap(), "2");
}

#[tokio::test]
async fn an_interrupted_item_whose_recipient_lost_verification_is_retried_not_parked() {
    let env = TestEnv::start().await;
    let batch = items(1, "10.00");
    env.seed_batch("b-revoked", "sandbox", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    let psp = sandbox(0);
    psp.inject("acct_user-00001", SandboxFault::TimeoutAfterAccept, 1);
    let executor = env.executor(&psp, test_config());
    let first = executor
        .execute_payout_batch("b-revoked", None)
        .await
        .unwrap();
    assert_eq!(first.retryable, 1, "{first:?}");
    // Verification is revoked while the item's outcome is still unknown.
    env.seed_users(&[("user-00001".into(), "acct_user-00001".into(), false)])
        .await;

    let second = executor
        .execute_payout_batch("b-revoked", None)
        .await
        .unwrap();

    assert_eq!((second.retryable, second.pending_kyc), (1, 0), "{second:?}");
    assert!(
        second.needs_another_run(),
        "the job is retried, towards the DLQ"
    );
    assert_eq!(
        env.item("b-revoked", "item-00001").await.status,
        ItemStatus::Submitting
    );
    assert_eq!(psp.transfers_for_item("b-revoked", "item-00001"), 1);
}

/// The item's timeline, as `payouts-ops item` shows it: (from, to, attempt, detail) per entry.
async fn timeline(
    env: &TestEnv,
    batch_id: &str,
    item_id: &str,
) -> Vec<(String, String, u64, String)> {
    use payouts_store_dynamodb::s;
    use payouts_store_dynamodb::schema::{attr, keys};
    let record = env
        .client()
        .get_item()
        .table_name(env.store.payouts_table())
        .key(attr::PK, s(keys::batch_pk(batch_id)))
        .key(attr::SK, s(keys::item_sk(item_id)))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let field =
        |entry: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
         name: &str| {
            entry
                .get(name)
                .and_then(|v| v.as_s().or_else(|_| v.as_n()).ok())
                .cloned()
                .unwrap_or_default()
        };
    record
        .get(attr::HISTORY)
        .map(|h| h.as_l().unwrap().clone())
        .unwrap_or_default()
        .iter()
        .map(|entry| {
            let entry = entry.as_m().unwrap();
            assert!(field(entry, "at").ends_with('Z'), "{entry:?}");
            let from = if entry.contains_key("event") {
                field(entry, "event")
            } else {
                field(entry, "from")
            };
            (
                from,
                field(entry, "to"),
                field(entry, "attempt").parse().unwrap(),
                field(entry, "detail"),
            )
        })
        .collect()
}

#[tokio::test]
async fn every_status_write_appends_to_the_items_timeline_in_the_same_request() {
    let env = TestEnv::start().await;
    let mut batch = items(3, "7.00");
    batch.push(("item-kyc".into(), "user-kyc".into(), "7.00".into()));
    env.seed_batch("b-timeline", "sandbox", "USD", &batch).await;
    env.seed_users(&verified_users(&batch[..3])).await;
    let psp = sandbox(0);
    psp.inject(
        "acct_user-00002",
        SandboxFault::Reject {
            code: "account_closed".into(),
            message: "the destination account is closed".into(),
        },
        1,
    );
    env.executor(&psp, test_config())
        .execute_payout_batch("b-timeline", None)
        .await
        .unwrap();
    let writes = env.requests.by_operation();
    assert_eq!(
        (writes.get("TransactWriteItems"), writes.get("UpdateItem")),
        (Some(&8), Some(&1)),
        "the timeline rides on the status writes: 7 moves (3 claims, 2 records, 1 rejection, 1 \
         pending_kyc) and the batch's count in transactions, the batch record's update, nothing \
         more: {writes:?}"
    );

    let transfer = psp.transfers()[0].id.clone();
    let paid = timeline(&env, "b-timeline", "item-00001").await;
    assert_eq!(
        paid,
        vec![
            (
                "pending".into(),
                "submitting".into(),
                1,
                "claimed, key generation 0".into()
            ),
            ("submitting".into(), "processing".into(), 1, transfer),
        ]
    );
    // Settlement appends too: the paid event, then a reversal (which moves no status).
    for (id, kind) in [
        ("evt_paid", PaymentEventKind::Paid),
        (
            "evt_reversed",
            PaymentEventKind::Reversed {
                reason: "returned by the bank".into(),
            },
        ),
    ] {
        let event = PaymentEvent {
            event_id: id.into(),
            event_type: "test".into(),
            kind: Some(kind),
            provider_payout_id: Some(paid[1].3.clone()),
            reference: Some(ItemReference {
                batch_id: "b-timeline".into(),
                item_id: "item-00001".into(),
            }),
        };
        apply_payment_event(&env.store, &env.clock, "sandbox", &event)
            .await
            .unwrap();
    }
    let settled = timeline(&env, "b-timeline", "item-00001").await;
    assert_eq!(settled.len(), 4, "{settled:?}");
    assert_eq!(
        settled[2],
        ("processing".into(), "paid".into(), 0, paid[1].3.clone())
    );
    assert_eq!(
        settled[3],
        (
            "reversal".into(),
            String::new(),
            0,
            "returned by the bank".into()
        )
    );
    let failed = timeline(&env, "b-timeline", "item-00002").await;
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert_eq!(
        (failed[1].0.as_str(), failed[1].1.as_str()),
        ("submitting", "failed")
    );
    assert!(failed[1].3.contains("account_closed"), "{failed:?}");
    let kyc = timeline(&env, "b-timeline", "item-kyc").await;
    assert_eq!(kyc.len(), 1, "{kyc:?}");
    assert_eq!(
        (kyc[0].0.as_str(), kyc[0].1.as_str()),
        ("pending", "pending_kyc")
    );
}
