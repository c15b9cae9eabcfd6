//! The reconciler's sweep (`docs/design.md#reconciler`) against the local DynamoDB and the
//! sandbox PSP: items left `processing` without a settling event are settled from the PSP's
//! answer, a lost job and a recipient verified late get their batch re-enqueued, and the sweep
//! reads only open batches.

use integration_tests::{RecordedQueue, TestEnv, items, test_config, verified_users};
use payouts_core::clock::Clock;
use payouts_core::domain::ItemStatus;
use payouts_core::job::PayoutJob;
use payouts_core::ports::payment::PaymentAdapter;
use payouts_core::ports::webhook::{ItemReference, PaymentEvent, PaymentEventKind};
use payouts_core::reconciler::{Reconciler, ReconcilerConfig};
use payouts_core::registry::PaymentAdapterRegistry;
use payouts_core::settlement::{SettlementOutcome, apply_payment_event};
use payouts_psp::sandbox::SandboxPsp;
use payouts_store_dynamodb::PayoutRepository;
use std::sync::Arc;
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);

fn reconciler(env: &TestEnv, psp: &Arc<SandboxPsp>, queue: &Arc<RecordedQueue>) -> Reconciler {
    Reconciler::new(
        env.repository(),
        PaymentAdapterRegistry::new().register(psp.clone()),
        queue.clone(),
        Arc::new(env.clock.clone()),
        ReconcilerConfig { stuck_after: HOUR },
    )
}

/// Runs the jobs the sweep enqueued, as the executor's SQS handler would.
async fn run_jobs(env: &TestEnv, psp: &Arc<SandboxPsp>, jobs: Vec<PayoutJob>) {
    let executor = env.executor(psp, test_config());
    for job in jobs {
        let after = job
            .payload
            .resume_after
            .expect("the sweep enqueues continuations, which leave failed items");
        executor
            .continue_payout_batch(&job.payload.batch_id, &after, None)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_transfer_whose_webhook_never_arrives_is_paid_by_the_sweep_past_the_threshold() {
    let env = TestEnv::start().await;
    let batch = items(2, "5.00");
    env.seed_batch("b-lost-hook", "sandbox", "USD", &batch)
        .await;
    env.seed_users(&verified_users(&batch)).await;
    let psp = Arc::new(SandboxPsp::new(Duration::ZERO));
    let queue = Arc::new(RecordedQueue::default());
    env.executor(&psp, test_config())
        .execute_payout_batch("b-lost-hook", None)
        .await
        .unwrap();
    let sweep = reconciler(&env, &psp, &queue);

    // Before the threshold: the items are in flight as they should be.
    let early = sweep.sweep().await.unwrap();
    assert_eq!(
        (early.open_batches, early.items_settled, early.stuck_total()),
        (1, 0, 0),
        "{early:?}"
    );

    env.clock.advance(HOUR + Duration::from_secs(1));
    let late = sweep.sweep().await.unwrap();
    assert_eq!(late.items_settled, 2, "{late:?}");
    assert_eq!(late.stuck_total(), 0, "{late:?}");
    assert!(queue.take().is_empty(), "nothing to resume");
    for item in env.items("b-lost-hook").await {
        assert_eq!(item.status, ItemStatus::Paid, "{item:?}");
    }
    let record = env.raw_batch("b-lost-hook").await;
    assert_eq!(record["status"].as_s().unwrap(), "completed");
    assert_eq!(psp.transfers().len(), 2, "the sweep never pays");

    // The real webhook, late: nothing changes.
    let transfer = &psp.transfers()[0];
    let real = PaymentEvent {
        event_id: "evt_late".into(),
        event_type: "transfer.created".into(),
        kind: Some(PaymentEventKind::Paid),
        provider_payout_id: Some(transfer.id.clone()),
        reference: Some(ItemReference {
            batch_id: transfer.batch_id.clone(),
            item_id: transfer.item_id.clone(),
        }),
    };
    let before = env.raw_item(&transfer.batch_id, &transfer.item_id).await;
    let outcome = apply_payment_event(env.repository().as_ref(), &env.clock, "sandbox", &real)
        .await
        .unwrap();
    assert!(
        matches!(outcome, SettlementOutcome::Ignored { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        env.raw_item(&transfer.batch_id, &transfer.item_id).await,
        before
    );
    let counts = env
        .store
        .batch_counts("b-lost-hook")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(counts.count(ItemStatus::Paid), 2, "{counts:?}");

    // A completed batch leaves the index: the next sweep reads no batch. The orphan check
    // reads its window (GetItem), the one batch the sandbox lists transfers for (Query; the
    // sandbox keeps no creation time, so it lists every transfer), and moves the window on.
    env.requests.reset();
    let idle = sweep.sweep().await.unwrap();
    assert_eq!(
        (idle.open_batches, idle.orphan_transfers),
        (0, 0),
        "{idle:?}"
    );
    let requests = env.requests.by_operation();
    assert_eq!(requests.get("Scan"), Some(&1), "{requests:?}");
    assert_eq!(env.requests.total(), 4, "{requests:?}");
}

#[tokio::test]
async fn a_recipient_verified_after_their_item_went_pending_kyc_is_paid_with_no_manual_step() {
    let env = TestEnv::start().await;
    let batch = items(2, "5.00");
    env.seed_batch("b-kyc", "sandbox", "USD", &batch).await;
    let mut users = verified_users(&batch);
    users[1].2 = false;
    env.seed_users(&users).await;
    let psp = Arc::new(SandboxPsp::new(Duration::ZERO));
    let queue = Arc::new(RecordedQueue::default());
    env.executor(&psp, test_config())
        .execute_payout_batch("b-kyc", None)
        .await
        .unwrap();
    assert_eq!(
        env.item("b-kyc", "item-00002").await.status,
        ItemStatus::PendingKyc
    );
    let sweep = reconciler(&env, &psp, &queue);
    let waiting = sweep.sweep().await.unwrap();
    assert_eq!(
        (waiting.open_batches, waiting.batches_enqueued),
        (1, 0),
        "still unverified: {waiting:?}"
    );

    users[1].2 = true;
    env.seed_users(&users[1..]).await;
    let resumed = sweep.sweep().await.unwrap();
    assert_eq!(resumed.batches_enqueued, 1, "{resumed:?}");
    run_jobs(&env, &psp, queue.take()).await;
    let item = env.item("b-kyc", "item-00002").await;
    assert_eq!(item.status, ItemStatus::Processing, "{item:?}");
    assert_eq!(psp.transfers().len(), 2);
}

#[tokio::test]
async fn a_batch_whose_job_was_lost_is_finished_after_the_next_sweep() {
    let env = TestEnv::start().await;
    let batch = items(3, "5.00");
    env.seed_batch("b-lost-job", "sandbox", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    let psp = Arc::new(SandboxPsp::new(Duration::ZERO));
    let queue = Arc::new(RecordedQueue::default());
    // The job's run started the batch and died before it claimed anything; the job is gone.
    env.store
        .start_batch_run("b-lost-job", true, payouts_core::clock::now_ms())
        .await
        .unwrap();
    let sweep = reconciler(&env, &psp, &queue);
    let early = sweep.sweep().await.unwrap();
    assert_eq!(
        early.batches_enqueued, 0,
        "a run may still be starting: {early:?}"
    );

    env.clock.advance(HOUR + Duration::from_secs(1));
    let late = sweep.sweep().await.unwrap();
    assert_eq!(late.batches_enqueued, 1, "{late:?}");
    run_jobs(&env, &psp, queue.take()).await;
    for item in env.items("b-lost-job").await {
        assert_eq!(item.status, ItemStatus::Processing, "{item:?}");
    }
    assert_eq!(psp.transfers().len(), 3);
}

#[tokio::test]
async fn an_item_left_submitting_by_a_dead_attempt_gets_its_batch_resumed_once_per_sweep() {
    let env = TestEnv::start().await;
    let batch = items(2, "5.00");
    env.seed_batch("b-dead", "sandbox", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    let psp = Arc::new(SandboxPsp::new(Duration::ZERO));
    let queue = Arc::new(RecordedQueue::default());
    let store = env.repository();
    store
        .start_batch_run("b-dead", true, payouts_core::clock::now_ms())
        .await
        .unwrap();
    // Both items claimed by an attempt that died; their leases run out.
    for item in env.items("b-dead").await {
        store
            .claim(
                &item,
                "sandbox",
                env.clock.now_ms(),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
    }
    let sweep = reconciler(&env, &psp, &queue);
    let held = sweep.sweep().await.unwrap();
    assert_eq!(held.batches_enqueued, 0, "leases still live: {held:?}");
    env.clock.advance(Duration::from_secs(31));
    let resumed = sweep.sweep().await.unwrap();
    assert_eq!(
        resumed.batches_enqueued, 1,
        "one job per batch: {resumed:?}"
    );
    run_jobs(&env, &psp, queue.take()).await;
    for item in env.items("b-dead").await {
        assert_eq!(item.status, ItemStatus::Processing, "{item:?}");
    }
    assert_eq!(psp.transfers().len(), 2);
}

/// A sweep's cost is its open work: one Scan page of the open-batch index, then per open batch
/// its record and its item pages; nothing for completed batches. With nothing stuck: 1 + 2 per
/// single-page batch.
#[tokio::test]
async fn a_sweep_reads_the_open_batches_only() {
    let env = TestEnv::start().await;
    let psp = Arc::new(SandboxPsp::new(Duration::ZERO));
    let queue = Arc::new(RecordedQueue::default());
    for batch_id in ["b-open-1", "b-open-2", "b-open-3", "b-done"] {
        let batch = items(10, "1.00");
        env.seed_batch(batch_id, "sandbox", "USD", &batch).await;
        env.seed_users(&verified_users(&batch)).await;
        env.executor(&psp, test_config())
            .execute_payout_batch(batch_id, None)
            .await
            .unwrap();
    }
    // b-done's items are all paid: it completes and leaves the index.
    for transfer in psp.transfers().iter().filter(|t| t.batch_id == "b-done") {
        let event = PaymentEvent {
            event_id: format!("evt_{}", transfer.id),
            event_type: "transfer.created".into(),
            kind: Some(PaymentEventKind::Paid),
            provider_payout_id: Some(transfer.id.clone()),
            reference: Some(ItemReference {
                batch_id: transfer.batch_id.clone(),
                item_id: transfer.item_id.clone(),
            }),
        };
        apply_payment_event(env.repository().as_ref(), &env.clock, "sandbox", &event)
            .await
            .unwrap();
    }
    env.requests.reset();
    let summary = reconciler(&env, &psp, &queue).sweep().await.unwrap();
    assert_eq!(
        (summary.open_batches, summary.items_read),
        (3, 30),
        "{summary:?}"
    );
    // 1 Scan + 2 per open batch; the orphan check: its window (GetItem and UpdateItem) and one
    // Query per batch the PSP listed transfers for that is not open (b-done; the open batches'
    // transfers are checked as their items are read for the sweep).
    assert_eq!(
        env.requests.total(),
        1 + 2 * 3 + 2 + 1,
        "{:?}",
        env.requests.by_operation()
    );
}

/// A transfer the PSP made for one of our items that the item does not record is reported as
/// an orphan (a possible double payment); transfers the items record, and double payments the
/// executor already recorded on the item, are not.
#[tokio::test]
async fn a_transfer_no_item_records_is_reported_as_an_orphan() {
    let env = TestEnv::start().await;
    let batch = items(2, "5.00");
    env.seed_batch("b-orphan", "sandbox", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    let psp = Arc::new(SandboxPsp::new(Duration::ZERO));
    let queue = Arc::new(RecordedQueue::default());
    env.executor(&psp, test_config())
        .execute_payout_batch("b-orphan", None)
        .await
        .unwrap();
    let sweep = reconciler(&env, &psp, &queue);
    let clean = sweep.sweep().await.unwrap();
    assert_eq!(clean.orphan_transfers, 0, "{clean:?}");

    // A second transfer for item-00001, made under another key (as a lost record, or a second
    // payment from elsewhere, would leave it).
    let orphan = psp
        .submit_transfer(&payouts_core::ports::payment::TransferRequest {
            idempotency_key: payouts_core::ports::payment::IdempotencyKey::for_item(
                "b-orphan",
                "item-00001",
                7,
            ),
            batch_id: "b-orphan".into(),
            item_id: "item-00001".into(),
            destination: "acct_user-00001".into(),
            amount_minor: 500,
            currency: "USD".into(),
            send_by: None,
        })
        .await
        .unwrap();
    let found = sweep.sweep().await.unwrap();
    assert_eq!(found.orphan_transfers, 1, "{found:?}");
    let item = env.item("b-orphan", "item-00001").await;
    assert_ne!(
        item.provider_payout_id,
        Some(orphan.provider_payout_id.clone())
    );

    // Once the item records it as a double payment, it is known: no longer an orphan.
    env.set_item_attributes(
        "b-orphan",
        "item-00001",
        &[(
            payouts_store_dynamodb::schema::attr::DUPLICATE_PAYOUT_IDS,
            Some(aws_sdk_dynamodb::types::AttributeValue::L(vec![
                payouts_store_dynamodb::s(&orphan.provider_payout_id),
            ])),
        )],
    )
    .await;
    let known = sweep.sweep().await.unwrap();
    assert_eq!(known.orphan_transfers, 0, "{known:?}");
}

/// The function's handler prints the sweep's summary as one CloudWatch Embedded Metric Format
/// line: the namespace, the one dimension, and a number for every metric it declares.
#[tokio::test]
async fn the_sweep_emits_its_summary_as_embedded_metrics() {
    let env = TestEnv::start().await;
    let batch = items(2, "5.00");
    env.seed_batch("b-emf", "sandbox", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    let psp = Arc::new(SandboxPsp::new(Duration::ZERO));
    let queue = Arc::new(RecordedQueue::default());
    env.store
        .start_batch_run("b-emf", true, payouts_core::clock::now_ms())
        .await
        .unwrap();
    env.clock.advance(HOUR + Duration::from_secs(1));
    let sweep = reconciler(&env, &psp, &queue);
    let now = env.clock.now_ms();
    let summary = payout_reconcile::handle_schedule(&sweep, now)
        .await
        .unwrap();
    let line = payout_reconcile::metrics_line(&summary, now);
    let directive = &line["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(line["_aws"]["Timestamp"], now);
    assert_eq!(directive["Namespace"], "Payouts");
    assert_eq!(directive["Dimensions"], serde_json::json!([["Function"]]));
    assert_eq!(line["Function"], "payout-reconcile");
    let declared: Vec<&str> = directive["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["Unit"], "Count");
            m["Name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(declared, payout_reconcile::SWEEP_METRICS);
    for name in declared {
        assert!(line[name].is_u64(), "{name}: {line}");
    }
    assert_eq!(line["BatchesReenqueued"], 1, "{line}");
    assert_eq!(line["OrphanTransfers"], 0, "{line}");
    // And by status and age band: the batch's pending items, idle for an hour.
    let by_band = payout_reconcile::stuck_lines(&summary, now);
    assert_eq!(by_band.len(), 1, "{by_band:?}");
    let band = &by_band[0];
    assert_eq!(
        band["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        serde_json::json!([["Function", "Status", "AgeBand"]])
    );
    assert_eq!(
        (
            band["Status"].as_str(),
            band["AgeBand"].as_str(),
            band["StuckItems"].as_u64()
        ),
        (Some("pending"), Some("under_6h"), Some(1)),
        "{band}"
    );
    assert_eq!(
        line["StuckItems"], 1,
        "the batch's pending items, once: {line}"
    );
}

/// The webhook endpoint refuses every event (the PSP signs with a secret the deployment does not
/// have): nothing settles through webhooks, and the sweep past the threshold still pays every
/// item, its metric showing them.
#[tokio::test]
async fn with_every_webhook_refused_for_a_wrong_secret_the_sweep_still_pays_the_items() {
    use http::{HeaderMap, HeaderValue, Method};
    use payouts_psp::stripe::webhook::{signature_header, transfer_event_json};
    let env = TestEnv::start().await;
    let batch = items(3, "5.00");
    env.seed_batch("b-wrong-secret", "sandbox", "USD", &batch)
        .await;
    env.seed_users(&verified_users(&batch)).await;
    let psp = Arc::new(
        SandboxPsp::new(Duration::ZERO).with_webhook_secrets(vec!["whsec_deployed".into()]),
    );
    let queue = Arc::new(RecordedQueue::default());
    env.executor(&psp, test_config())
        .execute_payout_batch("b-wrong-secret", None)
        .await
        .unwrap();
    let app = psp_webhook::WebhookApp::new(
        env.repository(),
        PaymentAdapterRegistry::new().register(psp.clone()),
        Arc::new(env.clock.clone()),
    );
    for transfer in psp.transfers() {
        let body = transfer_event_json(
            &format!("evt_{}", transfer.id),
            "transfer.created",
            &transfer.id,
            &ItemReference {
                batch_id: transfer.batch_id.clone(),
                item_id: transfer.item_id.clone(),
            },
            None,
        );
        let now = payouts_core::clock::now_ms() / 1000;
        let mut headers = HeaderMap::new();
        headers.insert(
            "stripe-signature",
            HeaderValue::from_str(&signature_header(
                "whsec_rotated_at_the_psp",
                now,
                body.as_bytes(),
            ))
            .unwrap(),
        );
        let answer = psp_webhook::handle_webhook(
            &app,
            &Method::POST,
            "/webhooks/sandbox",
            &headers,
            body.as_bytes(),
            now,
        )
        .await;
        assert_eq!(answer.status.as_u16(), 400, "{}", answer.body);
    }
    for item in env.items("b-wrong-secret").await {
        assert_eq!(item.status, ItemStatus::Processing, "{item:?}");
    }
    env.clock.advance(HOUR + Duration::from_secs(1));
    let sweep = reconciler(&env, &psp, &queue);
    let summary = payout_reconcile::handle_schedule(&sweep, env.clock.now_ms())
        .await
        .unwrap();
    let line = payout_reconcile::metrics_line(&summary, env.clock.now_ms());
    assert_eq!(line["ItemsSettledBySweep"], 3, "{line}");
    assert_eq!(line["StuckItems"], 0, "{line}");
    for item in env.items("b-wrong-secret").await {
        assert_eq!(item.status, ItemStatus::Paid, "{item:?}");
    }
}

/// The sweep racing the webhooks of the same items, and a run of the same batch: each item is
/// paid once, ends `paid` once, and the counts stay exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_racing_webhooks_and_a_run_never_pays_and_never_regresses_paid() {
    let env = TestEnv::start().await;
    let batch = items(20, "5.00");
    env.seed_batch("b-race", "sandbox", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    let psp = Arc::new(SandboxPsp::new(Duration::ZERO));
    let queue = Arc::new(RecordedQueue::default());
    env.executor(&psp, test_config())
        .execute_payout_batch("b-race", None)
        .await
        .unwrap();
    env.clock.advance(HOUR + Duration::from_secs(1));
    let sweep = reconciler(&env, &psp, &queue);
    let store = env.repository();
    let webhooks = async {
        for transfer in psp.transfers() {
            let event = PaymentEvent {
                event_id: format!("evt_{}", transfer.id),
                event_type: "transfer.created".into(),
                kind: Some(PaymentEventKind::Paid),
                provider_payout_id: Some(transfer.id.clone()),
                reference: Some(ItemReference {
                    batch_id: transfer.batch_id.clone(),
                    item_id: transfer.item_id.clone(),
                }),
            };
            apply_payment_event(store.as_ref(), &env.clock, "sandbox", &event)
                .await
                .unwrap();
        }
    };
    let executor = env.executor(&psp, test_config());
    let run = executor.execute_payout_batch("b-race", None);
    let (swept, _, ran) = tokio::join!(sweep.sweep(), webhooks, run);
    let swept = swept.unwrap();
    assert_eq!(ran.unwrap().submitted, 0, "nothing left to pay");
    assert_eq!(psp.transfers().len(), 20, "the sweep never pays");
    for item in env.items("b-race").await {
        assert_eq!(item.status, ItemStatus::Paid, "{item:?}");
    }
    let counts = env.store.batch_counts("b-race").await.unwrap().unwrap();
    assert_eq!(
        counts.count(ItemStatus::Paid),
        20,
        "{counts:?} after {swept:?}"
    );
    assert_eq!(counts.in_flight(), 0, "{counts:?}");
}
