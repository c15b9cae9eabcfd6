//! Live batch counts and the batch lifecycle (`docs/design.md#batch-counts-and-lifecycle`):
//! the counter shards move in the same transaction as every status change, so they equal the
//! items at every moment; the batch record goes `pending` → `executing` → `completed…` and is
//! re-opened by a run that retries settled items; an event costs the same few requests for
//! the first and the last item of a large batch.

use futures_util::StreamExt;
use integration_tests::{TestEnv, items, number, test_config, verified_users};
use payouts_core::domain::{ItemStatus, PayoutItem};
use payouts_core::ports::repository::BatchCounts;
use payouts_core::ports::webhook::{ItemReference, PaymentEvent, PaymentEventKind};
use payouts_core::settlement::{SettlementOutcome, apply_payment_event};
use payouts_local::seed;
use payouts_psp::sandbox::{SandboxFault, SandboxPsp, SandboxTransfer};
use payouts_store_dynamodb::schema::{attr, keys};
use payouts_store_dynamodb::{PayoutRepository, s};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

fn sandbox(latency_ms: u64) -> Arc<SandboxPsp> {
    Arc::new(SandboxPsp::new(Duration::from_millis(latency_ms)))
}

fn event(id: &str, kind: PaymentEventKind, transfer: &SandboxTransfer) -> PaymentEvent {
    PaymentEvent {
        event_id: id.to_owned(),
        event_type: match kind {
            PaymentEventKind::Paid => "transfer.created",
            _ => "transfer.failed",
        }
        .to_owned(),
        kind: Some(kind),
        provider_payout_id: Some(transfer.id.clone()),
        reference: Some(ItemReference {
            batch_id: transfer.batch_id.clone(),
            item_id: transfer.item_id.clone(),
        }),
    }
}

fn paid(id: &str, transfer: &SandboxTransfer) -> PaymentEvent {
    event(id, PaymentEventKind::Paid, transfer)
}

fn failed(id: &str, transfer: &SandboxTransfer) -> PaymentEvent {
    event(
        id,
        PaymentEventKind::Failed {
            reason: "account_closed: closed".into(),
        },
        transfer,
    )
}

async fn settle(env: &TestEnv, event: &PaymentEvent) -> SettlementOutcome {
    apply_payment_event(env.repository().as_ref(), &env.clock, "sandbox", event)
        .await
        .expect("settle")
}

async fn counts(env: &TestEnv, batch_id: &str) -> BatchCounts {
    env.store
        .batch_counts(batch_id)
        .await
        .expect("read counts")
        .expect("batch exists")
}

/// The counts the items themselves add up to, read item by item.
async fn counted(env: &TestEnv, batch_id: &str) -> BTreeMap<ItemStatus, u64> {
    let mut counts = BTreeMap::new();
    for item in env.items(batch_id).await {
        *counts.entry(item.status).or_default() += 1;
    }
    counts
}

async fn assert_exact(env: &TestEnv, batch_id: &str, when: &str) {
    let live = counts(env, batch_id).await;
    assert_eq!(
        live.counts,
        counted(env, batch_id).await,
        "{when}: {live:?}"
    );
}

fn batch_status(record: &HashMap<String, aws_sdk_dynamodb::types::AttributeValue>) -> String {
    record[attr::STATUS].as_s().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_stay_exact_under_racing_runs_webhooks_duplicates_and_crashes() {
    let env = TestEnv::start().await;
    let batch = items(40, "3.00");
    env.seed_batch("b-race", "sandbox", "USD", &batch).await;
    // Every fifth recipient is unverified: pending_kyc.
    let users: Vec<_> = verified_users(&batch)
        .into_iter()
        .enumerate()
        .map(|(i, (user, account, _))| (user, account, i % 5 != 4))
        .collect();
    env.seed_users(&users).await;
    let psp = sandbox(2);
    psp.inject("acct_user-00003", SandboxFault::TransientBeforeAccept, 1);
    psp.inject("acct_user-00007", SandboxFault::TimeoutAfterAccept, 1);

    // A run that crashes mid-way (its future is dropped between writes), racing two others.
    let crashing = env.executor(&psp, test_config());
    let crash = tokio::time::timeout(
        Duration::from_millis(15),
        crashing.execute_payout_batch("b-race", None),
    );
    let (a, b) = (
        env.executor(&psp, test_config()),
        env.executor(&psp, test_config()),
    );
    let (_, ra, rb) = tokio::join!(
        crash,
        a.execute_payout_batch("b-race", None),
        b.execute_payout_batch("b-race", None)
    );
    ra.unwrap();
    rb.unwrap();
    assert_exact(&env, "b-race", "after racing runs and a crash").await;

    // Leases of the crashed run run out; a later run drives its items again.
    env.clock.advance(Duration::from_secs(60));
    env.executor(&psp, test_config())
        .execute_payout_batch("b-race", None)
        .await
        .unwrap();
    assert_exact(&env, "b-race", "after the re-run").await;

    // Every transfer's event, delivered twice at once, racing with a run, with another
    // delivery dropped half-way (a crash between the transaction and the completion check).
    let transfers = psp.transfers();
    let events: Vec<PaymentEvent> = transfers
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if i % 7 == 3 {
                failed(&format!("evt_{i}"), t)
            } else {
                paid(&format!("evt_{i}"), t)
            }
        })
        .collect();
    let deliveries = events.iter().chain(events.iter()).map(|e| settle(&env, e));
    let racing_run = env.executor(&psp, test_config());
    let (_, run) = tokio::join!(
        futures_util::stream::iter(deliveries)
            .buffer_unordered(16)
            .collect::<Vec<_>>(),
        racing_run.execute_payout_batch("b-race", None)
    );
    run.unwrap();
    let dropped = tokio::time::timeout(
        Duration::from_micros(300),
        settle(&env, &paid("evt_dropped", &transfers[0])),
    )
    .await;
    drop(dropped);
    assert_exact(&env, "b-race", "after duplicate and racing deliveries").await;

    let live = counts(&env, "b-race").await;
    assert_eq!(live.total, Some(40));
    assert_eq!(live.count(ItemStatus::PendingKyc), 8, "{live:?}");
    assert_eq!(live.counts.values().sum::<u64>(), 40);
}

#[tokio::test]
async fn the_batch_goes_pending_executing_completed_and_is_reopened_by_a_retry() {
    let env = TestEnv::start().await;
    let batch = items(3, "5.00");
    env.seed_batch("b-life", "sandbox", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    assert_eq!(batch_status(&env.raw_batch("b-life").await), "pending");
    let psp = sandbox(0);

    env.executor(&psp, test_config())
        .execute_payout_batch("b-life", None)
        .await
        .unwrap();
    let record = env.raw_batch("b-life").await;
    assert_eq!(batch_status(&record), "executing");
    assert_eq!(record[attr::ITEM_TOTAL].as_n().unwrap(), "3");
    let live = counts(&env, "b-life").await;
    assert_eq!(live.count(ItemStatus::Processing), 3, "{live:?}");

    let transfers = psp.transfers();
    assert!(matches!(
        settle(&env, &paid("e1", &transfers[0])).await,
        SettlementOutcome::Applied {
            batch_completion: None,
            ..
        }
    ));
    settle(&env, &paid("e2", &transfers[1])).await;
    assert_eq!(batch_status(&env.raw_batch("b-life").await), "executing");
    settle(&env, &failed("e3", &transfers[2])).await;
    let record = env.raw_batch("b-life").await;
    assert_eq!(batch_status(&record), "completed_with_failures");
    let completed_at = record[attr::COMPLETED_AT].as_s().unwrap().clone();
    assert_eq!(
        record[attr::ITEM_COUNTS].as_m().unwrap()["failed"]
            .as_n()
            .unwrap(),
        "1"
    );

    // A later run retries the failed item: the batch is executing again, its completion kept.
    env.clock.advance(Duration::from_secs(5));
    env.executor(&psp, test_config())
        .execute_payout_batch("b-life", None)
        .await
        .unwrap();
    let record = env.raw_batch("b-life").await;
    assert_eq!(batch_status(&record), "executing");
    assert_eq!(record[attr::COMPLETED_AT].as_s().unwrap(), &completed_at);
    let retried = psp
        .transfers()
        .into_iter()
        .find(|t| t.item_id == transfers[2].item_id && t.id != transfers[2].id)
        .expect("the failed item is paid again under a new key");
    let done = settle(&env, &paid("e4", &retried)).await;
    let SettlementOutcome::Applied {
        batch_completion: Some(completion),
        ..
    } = done
    else {
        panic!("the last event completes the batch: {done:?}");
    };
    assert_eq!(completion.status.as_str(), "completed");
    let record = env.raw_batch("b-life").await;
    assert_eq!(batch_status(&record), "completed");
    assert_eq!(
        record[attr::ITEM_COUNTS].as_m().unwrap()["paid"]
            .as_n()
            .unwrap(),
        "3"
    );

    // A run with nothing to retry leaves a completed batch alone.
    env.executor(&psp, test_config())
        .execute_payout_batch("b-life", None)
        .await
        .unwrap();
    assert_eq!(batch_status(&env.raw_batch("b-life").await), "completed");
}

/// Writes `count` items of about 1 KB each (a large record, so the batch spans many pages).
async fn seed_large(env: &TestEnv, batch_id: &str, count: usize) {
    let filler = "x".repeat(1000);
    env.seed_batch(batch_id, "sandbox", "USD", &[]).await;
    let writes: Vec<_> = (1..=count)
        .map(|i| {
            let record = HashMap::from([
                (attr::PK.to_owned(), s(keys::batch_pk(batch_id))),
                (
                    attr::SK.to_owned(),
                    s(keys::item_sk(&format!("item-{i:05}"))),
                ),
                (attr::USER_ID.to_owned(), s(format!("user-{i:05}"))),
                (attr::NET_AMOUNT.to_owned(), number("1.00")),
                (attr::STATUS.to_owned(), s("pending")),
                ("note".to_owned(), s(&filler)),
            ]);
            aws_sdk_dynamodb::types::WriteRequest::builder()
                .put_request(
                    aws_sdk_dynamodb::types::PutRequest::builder()
                        .set_item(Some(record))
                        .build()
                        .unwrap(),
                )
                .build()
        })
        .collect();
    for chunk in writes.chunks(25) {
        seed::write_chunk(env.client(), env.store.payouts_table(), chunk.to_vec())
            .await
            .expect("seed");
    }
}

/// Moves `item` to `processing` with transfer `tr_<itemId>` through the store's own
/// transitions (claim, record), as a run would.
async fn in_processing(env: &TestEnv, item: PayoutItem) -> SandboxTransfer {
    let store = env.repository();
    let now = payouts_core::clock::now_ms();
    let claim = match store
        .claim(&item, "sandbox", now, Duration::from_secs(30))
        .await
        .unwrap()
    {
        payouts_core::ports::repository::ClaimOutcome::Claimed(claim) => claim,
        lost => panic!("{lost:?}"),
    };
    let transfer_id = format!("tr_{}", item.item_id);
    store
        .record_accepted(&claim, &transfer_id, now)
        .await
        .unwrap();
    SandboxTransfer {
        id: transfer_id,
        idempotency_key: String::new(),
        batch_id: item.batch_id,
        item_id: item.item_id,
        destination: String::new(),
        amount_minor: 100,
        currency: "USD".into(),
    }
}

#[tokio::test]
async fn an_event_costs_the_same_few_requests_for_the_first_and_the_last_item_of_a_large_batch() {
    let env = TestEnv::start().await;
    seed_large(&env, "b-big", 3_000).await;
    let store = env.repository();
    store
        .start_batch_run("b-big", true, payouts_core::clock::now_ms())
        .await
        .unwrap();
    // Three items in flight, at the start and the end of the batch; every other item ends
    // refused (settled without a transfer). The batch spans several 1 MB pages.
    let all = env.items("b-big").await;
    let n = all.len();
    futures_util::stream::iter(all[1..n - 2].iter().cloned())
        .map(|item| {
            let store = store.clone();
            async move {
                store
                    .mark_refused(&item, "amount not payable", payouts_core::clock::now_ms())
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let first = in_processing(&env, all[0].clone()).await;
    let next_to_last = in_processing(&env, all[n - 2].clone()).await;
    let last = in_processing(&env, all[n - 1].clone()).await;
    assert_exact(&env, "b-big", "after the setup").await;

    for (event, position) in [
        (paid("evt_last", &last), "last"),
        (paid("evt_first", &first), "first"),
    ] {
        env.requests.reset();
        let outcome = settle(&env, &event).await;
        assert!(
            matches!(
                outcome,
                SettlementOutcome::Applied {
                    batch_completion: None,
                    ..
                }
            ),
            "{outcome:?}"
        );
        let requests = env.requests.by_operation();
        assert_eq!(
            (requests.get("TransactWriteItems"), requests.get("Query")),
            (Some(&1), Some(&1)),
            "the {position} item's event: its transaction (event record, item, counter shard) \
             and the completion check, no read of the item: {requests:?}"
        );
        assert_eq!(env.requests.total(), 2, "{requests:?}");
        assert!(
            env.requests.bytes_received() <= 8 * 1024,
            "the {position} item's event read {} bytes",
            env.requests.bytes_received()
        );
    }

    env.requests.reset();
    let outcome = settle(&env, &paid("evt_completing", &next_to_last)).await;
    assert!(
        matches!(
            outcome,
            SettlementOutcome::Applied {
                batch_completion: Some(_),
                ..
            }
        ),
        "{outcome:?}"
    );
    let requests = env.requests.by_operation();
    assert_eq!(
        env.requests.total(),
        3,
        "the event that completes the batch: its transaction, the completion check and the \
         batch record's write: {requests:?}"
    );
    assert_eq!(env.requests.get("UpdateItem"), 1, "{requests:?}");
    assert!(env.requests.bytes_received() <= 8 * 1024);
    assert_exact(&env, "b-big", "after the events").await;
}

/// A batch in flight when counting was deployed: the service moved its items before it kept
/// counts (no base, no shards). A webhook that settles one of its items before the batch's next
/// run must not count its move on top of what that run's count then sees: the counts start
/// exact, and stay exact.
#[tokio::test]
async fn a_batch_in_flight_when_counting_was_deployed_is_counted_exactly() {
    let env = TestEnv::start().await;
    let batch = integration_tests::items(3, "2.00");
    env.seed_batch("b-upgrade", "sandbox", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    // As the service left it before it counted: every item `processing` with its transfer.
    let mut transfers = Vec::new();
    for (item_id, _, _) in &batch {
        let transfer_id = format!("tr_{item_id}");
        env.set_item_attributes(
            "b-upgrade",
            item_id,
            &[
                (attr::STATUS, Some(s("processing"))),
                (attr::ATTEMPT, Some(number(1))),
                (attr::ITEM_PROVIDER, Some(s("sandbox"))),
                (attr::PROVIDER_PAYOUT_ID, Some(s(&transfer_id))),
            ],
        )
        .await;
        transfers.push(SandboxTransfer {
            id: transfer_id,
            idempotency_key: String::new(),
            batch_id: "b-upgrade".into(),
            item_id: item_id.clone(),
            destination: String::new(),
            amount_minor: 200,
            currency: "USD".into(),
        });
    }
    let outcome = settle(&env, &paid("evt_before_counting", &transfers[0])).await;
    assert!(
        matches!(outcome, SettlementOutcome::Applied { .. }),
        "{outcome:?}"
    );
    assert_exact(
        &env,
        "b-upgrade",
        "after an event before the first counted run",
    )
    .await;
    // The job's redelivery runs the batch: nothing to pay, the counts as they were.
    env.executor(&sandbox(0), test_config())
        .execute_payout_batch("b-upgrade", None)
        .await
        .unwrap();
    assert_exact(&env, "b-upgrade", "after the run").await;
    for (i, transfer) in transfers.iter().enumerate().skip(1) {
        settle(&env, &paid(&format!("evt_after_{i}"), transfer)).await;
    }
    assert_exact(&env, "b-upgrade", "after the last events").await;
    let batch = env.raw_batch("b-upgrade").await;
    assert_eq!(batch_status(&batch), "completed", "{batch:?}");
}
