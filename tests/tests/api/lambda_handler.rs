//! The SQS handler: what happens to each message (done, retried, continued, dropped as poison),
//! and bad input changing nothing.

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use integration_tests::RecordedQueue;
use integration_tests::{TestEnv, items, test_config, verified_users};
use payout_execute::{App, Disposition, handle_message, handle_sqs_event};
use payouts_core::domain::ItemStatus;
use payouts_core::executor::ExecutorConfig;
use payouts_core::ports::queue::JobQueue;
use payouts_psp::sandbox::{SandboxFault, SandboxPsp};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

fn message(id: &str, body: Option<&str>) -> SqsMessage {
    let mut message = SqsMessage::default();
    message.message_id = Some(id.to_owned());
    message.body = body.map(str::to_owned);
    message
}

fn job(batch_id: &str) -> String {
    format!(
        r#"{{"type":"payout.execute","payload":{{"batchId":"{batch_id}"}},"jobId":"j-{batch_id}"}}"#
    )
}

fn app(
    env: &TestEnv,
    psp: &Arc<SandboxPsp>,
    config: ExecutorConfig,
    queue: Option<Arc<RecordedQueue>>,
) -> App {
    App::new(
        env.executor(psp, config),
        queue.map(|q| q as Arc<dyn JobQueue>),
    )
}

#[tokio::test]
async fn poison_messages_are_dropped_with_a_reason_and_change_nothing() {
    let env = TestEnv::start().await;
    let batch = items(2, "1.00");
    env.seed_batch("b-real", "sandbox", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    env.seed_batch("b-unknown-psp", "paypal", "USD", &items(1, "1.00"))
        .await;
    env.seed_batch("b-bad-currency", "sandbox", "dollars", &items(1, "1.00"))
        .await;
    let before = env.scan_payouts().await;
    let psp = Arc::new(SandboxPsp::new(Duration::ZERO));
    let app = app(&env, &psp, test_config(), None);

    let cases = [
        (None, "no body"),
        (Some("{not json"), "not a payout job"),
        (
            Some(r#"{"type":"payout.refund","payload":{"batchId":"b-real"}}"#),
            "unknown job type",
        ),
        (
            Some(r#"{"type":"payout.execute","payload":{}}"#),
            "not a payout job",
        ),
        (
            Some(r#"{"type":"payout.execute","payload":{"batchId":"b-missing"}}"#),
            "does not exist",
        ),
        (
            Some(r#"{"type":"payout.execute","payload":{"batchId":"b-unknown-psp"}}"#),
            "no payment adapter for provider \"paypal\"",
        ),
        (
            Some(r#"{"type":"payout.execute","payload":{"batchId":"b-bad-currency"}}"#),
            "currency \"dollars\" is not an ISO 4217 currency",
        ),
    ];
    for (body, expected) in cases {
        match handle_message(&app, message("m", body), None).await {
            Disposition::Poison { reason, .. } => assert!(
                reason.contains(expected),
                "{reason:?} should say {expected:?}"
            ),
            other => panic!("{body:?} should be poison, was {other:?}"),
        }
    }
    let event = {
        let mut event = SqsEvent::default();
        event.records = vec![
            message("m1", Some("{not json")),
            message("m2", Some(&job("b-missing"))),
        ];
        event
    };
    let response = handle_sqs_event(&app, event, None).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "poison is not retried: {response:?}"
    );
    assert_eq!(env.scan_payouts().await, before, "nothing written");
    assert_eq!(psp.calls(), 0, "no PSP call");
}

#[tokio::test]
async fn unpayable_amounts_fail_with_a_reason_and_never_reach_the_psp() {
    let env = TestEnv::start().await;
    let batch = vec![
        ("item-zero".to_owned(), "user-1".to_owned(), "0".to_owned()),
        (
            "item-negative".to_owned(),
            "user-2".to_owned(),
            "-5.00".to_owned(),
        ),
        (
            "item-fraction".to_owned(),
            "user-3".to_owned(),
            "12.345".to_owned(),
        ),
        (
            "item-good".to_owned(),
            "user-4".to_owned(),
            "12.34".to_owned(),
        ),
    ];
    env.seed_batch("b-amounts", "sandbox", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    let stored_before = env.items("b-amounts").await;
    let psp = Arc::new(SandboxPsp::new(Duration::ZERO));
    let app = app(&env, &psp, test_config(), None);

    let disposition = handle_message(&app, message("m", Some(&job("b-amounts"))), None).await;

    let Disposition::Done(Some(summary)) = disposition else {
        panic!("{disposition:?}")
    };
    assert_eq!((summary.failed, summary.submitted), (3, 1), "{summary:?}");
    for (item_id, _, _) in &batch[..3] {
        let refused = env.item("b-amounts", item_id).await;
        let before = stored_before
            .iter()
            .find(|i| &i.item_id == item_id)
            .unwrap();
        assert_eq!(refused.status, ItemStatus::Failed, "{item_id}");
        assert_eq!(
            refused.net_amount, before.net_amount,
            "the amount is left as upstream wrote it"
        );
        let reason = refused.failure_reason.unwrap_or_default();
        assert!(reason.contains("amount"), "{item_id}: {reason}");
    }
    assert_eq!(psp.calls(), 1, "only the good item reached the PSP");
    assert_eq!(psp.transfers()[0].item_id, "item-good");
    // Running again changes nothing: the reasons are already recorded.
    let again = handle_message(&app, message("m2", Some(&job("b-amounts"))), None).await;
    assert!(matches!(again, Disposition::Done(_)), "{again:?}");
    assert_eq!(psp.calls(), 1);
}

#[tokio::test]
async fn retryable_trouble_reports_the_message_for_redelivery() {
    let env = TestEnv::start().await;
    let batch = items(2, "1.00");
    env.seed_batch("b-flaky", "sandbox", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    let psp = Arc::new(SandboxPsp::new(Duration::ZERO));
    psp.inject("acct_user-00002", SandboxFault::TransientBeforeAccept, 1);
    let app = app(&env, &psp, test_config(), Some(Arc::default()));
    let event = |id: &str| {
        let mut event = SqsEvent::default();
        event.records = vec![message(id, Some(&job("b-flaky")))];
        event
    };

    let first = handle_sqs_event(&app, event("m-1"), None).await;
    assert_eq!(first.batch_item_failures.len(), 1);
    assert_eq!(first.batch_item_failures[0].item_identifier, "m-1");

    let redelivered = handle_sqs_event(&app, event("m-1"), None).await;
    assert!(
        redelivered.batch_item_failures.is_empty(),
        "{redelivered:?}"
    );
    for (item_id, _, _) in &batch {
        assert_eq!(
            env.item("b-flaky", item_id).await.status,
            ItemStatus::Processing
        );
        assert_eq!(psp.transfers_for_item("b-flaky", item_id), 1);
    }
}

#[tokio::test]
async fn a_batch_that_outlasts_the_invocation_is_continued_by_a_new_job() {
    let env = TestEnv::start().await;
    let batch = items(40, "1.00");
    env.seed_batch("b-long", "sandbox", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    let psp = Arc::new(SandboxPsp::new(Duration::from_millis(50)));
    let queue = Arc::new(RecordedQueue::default());
    // One PSP call at a time, 50 ms each; a 200 ms PSP timeout reserves 1.2 s before the deadline.
    let cfg = ExecutorConfig {
        concurrency: 1,
        psp_timeout: Duration::from_millis(200),
        ..test_config()
    };
    let app = app(&env, &psp, cfg, Some(queue.clone()));

    let deadline = Instant::now() + Duration::from_millis(1_700);
    let disposition =
        handle_message(&app, message("m", Some(&job("b-long"))), Some(deadline)).await;

    let Disposition::Continued(summary) = disposition else {
        panic!("{disposition:?}")
    };
    assert!(
        summary.submitted > 0 && summary.submitted < 40,
        "{summary:?}"
    );
    assert!(Instant::now() < deadline, "stopped before the deadline");
    let enqueued = queue.jobs();
    assert_eq!(enqueued.len(), 1);
    assert_eq!(enqueued[0].payload.batch_id, "b-long");
    assert_eq!(enqueued[0].job_id.as_deref(), Some("j-b-long"));

    // The continuation finishes the batch; nothing is paid twice.
    let fast = App::new(
        env.executor(
            &psp,
            ExecutorConfig {
                concurrency: 8,
                ..test_config()
            },
        ),
        None,
    );
    let body = serde_json::to_string(&enqueued[0]).unwrap();
    let rest = handle_message(&fast, message("m2", Some(&body)), None).await;
    let Disposition::Done(Some(rest)) = rest else {
        panic!("{rest:?}")
    };
    assert_eq!(rest.submitted + summary.submitted, 40, "{rest:?}");
    assert_eq!(psp.transfers().len(), 40);
}

#[tokio::test]
async fn without_a_continuation_queue_an_unfinished_batch_is_retried_by_sqs() {
    let env = TestEnv::start().await;
    let batch = items(5, "1.00");
    env.seed_batch("b-noqueue", "sandbox", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    let psp = Arc::new(SandboxPsp::new(Duration::ZERO));
    let cfg = ExecutorConfig {
        psp_timeout: Duration::from_millis(200),
        ..test_config()
    };
    let app = app(&env, &psp, cfg, None);

    // A deadline already inside the reserve: nothing may start.
    let deadline = Instant::now() + Duration::from_millis(500);
    let disposition =
        handle_message(&app, message("m", Some(&job("b-noqueue"))), Some(deadline)).await;
    assert!(
        matches!(disposition, Disposition::Retry(_)),
        "{disposition:?}"
    );
    assert_eq!(psp.calls(), 0);
}
