//! Fan-out of a large batch over several invocations, and retry timing: segments cover every
//! item once, a segment's continuation stays in its segment, racing segments and redeliveries
//! pay nothing twice, and a job to retry comes back after its backoff or the PSP's
//! `Retry-After`, not after the queue's visibility timeout.

use aws_lambda_events::event::sqs::SqsMessage;
use integration_tests::fakes::stripe::{FakeStripe, Fault};
use integration_tests::{RecordedQueue, TestEnv, items, test_config, verified_users};
use payout_execute::{App, Disposition, RetryBackoff, handle_message};
use payouts_core::domain::ItemStatus;
use payouts_core::executor::{ExecutorConfig, FanOut};
use payouts_core::job::{ItemRange, PayoutJob};
use payouts_core::ports::queue::JobQueue;
use payouts_psp::sandbox::{SandboxFault, SandboxPsp};
use payouts_psp::stripe::StripeAdapter;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

fn message(id: &str, job: &PayoutJob, receive_count: u32) -> SqsMessage {
    let mut message = SqsMessage::default();
    message.message_id = Some(id.to_owned());
    message.receipt_handle = Some(format!("rh-{id}-{receive_count}"));
    message.body = Some(serde_json::to_string(job).unwrap());
    message
        .attributes
        .insert("ApproximateReceiveCount".into(), receive_count.to_string());
    message
}

fn fanned_out_app(
    env: &TestEnv,
    psp: &Arc<SandboxPsp>,
    config: ExecutorConfig,
    queue: &Arc<RecordedQueue>,
    fan_out: FanOut,
) -> App {
    App::new(
        env.executor(psp, config),
        Some(queue.clone() as Arc<dyn JobQueue>),
    )
    .with_fan_out(fan_out)
}

const FOUR_SEGMENTS: FanOut = FanOut {
    max_segments: 4,
    min_segment_items: 50,
};

#[tokio::test]
async fn a_large_batch_is_split_into_segments_that_cover_every_item_once() {
    let env = TestEnv::start().await;
    let batch = items(403, "1.00");
    env.seed_batch("b-fan", "sandbox", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    let psp = Arc::new(SandboxPsp::new(Duration::ZERO));
    let queue = Arc::new(RecordedQueue::default());
    let app = fanned_out_app(&env, &psp, test_config(), &queue, FOUR_SEGMENTS);

    let plan = PayoutJob::for_batch("b-fan", Some("j-fan".into()));
    let disposition = handle_message(&app, message("m-plan", &plan, 1), None).await;
    assert_eq!(disposition, Disposition::FannedOut(4));
    assert_eq!(psp.calls(), 0, "the plan pays nothing itself");
    let segments = queue.take();
    let ranges: Vec<ItemRange> = segments
        .iter()
        .map(|job| job.payload.segment.clone().expect("a segment job"))
        .collect();
    for (item_id, _, _) in &batch {
        let holders = ranges.iter().filter(|r| r.contains(item_id)).count();
        assert_eq!(holders, 1, "{item_id} is in {holders} segments: {ranges:?}");
    }
    let sizes: Vec<usize> = ranges
        .iter()
        .map(|r| batch.iter().filter(|(id, _, _)| r.contains(id)).count())
        .collect();
    assert_eq!(sizes, vec![101, 101, 101, 100], "about equal segments");
    assert!(
        segments
            .iter()
            .all(|j| j.job_id.as_deref() == Some("j-fan"))
    );

    // Each segment's job pays its items and only those.
    for (n, job) in segments.iter().enumerate() {
        let before = psp.calls();
        let done = handle_message(&app, message(&format!("m-{n}"), job, 1), None).await;
        assert!(matches!(done, Disposition::Done(_)), "{done:?}");
        assert_eq!(psp.calls() - before, sizes[n] as u64, "segment {n}");
    }
    for (item_id, _, _) in &batch {
        assert_eq!(psp.transfers_for_item("b-fan", item_id), 1, "{item_id}");
        assert_eq!(
            env.item("b-fan", item_id).await.status,
            ItemStatus::Processing
        );
    }
    let counts = env
        .repository()
        .batch_counts("b-fan")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(counts.count(ItemStatus::Processing), 403, "{counts:?}");
}

#[tokio::test]
async fn a_small_batch_or_a_single_instance_runs_whole() {
    let env = TestEnv::start().await;
    let batch = items(60, "1.00");
    env.seed_batch("b-small", "sandbox", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    let psp = Arc::new(SandboxPsp::new(Duration::ZERO));
    let queue = Arc::new(RecordedQueue::default());
    let app = fanned_out_app(&env, &psp, test_config(), &queue, FOUR_SEGMENTS);
    let plan = PayoutJob::for_batch("b-small", None);
    let done = handle_message(&app, message("m", &plan, 1), None).await;
    assert!(matches!(done, Disposition::Done(_)), "{done:?}");
    assert!(queue.jobs().is_empty(), "60 items < 2 × 50: no segments");
    assert_eq!(psp.transfers().len(), 60);
}

#[tokio::test]
async fn a_segments_continuation_resumes_at_its_cursor_and_stays_in_its_segment() {
    let env = TestEnv::start().await;
    let batch = items(120, "1.00");
    env.seed_batch("b-seg-cont", "sandbox", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    let psp = Arc::new(SandboxPsp::new(Duration::from_millis(50)));
    let queue = Arc::new(RecordedQueue::default());
    // One call at a time, 50 ms each; a 200 ms PSP timeout reserves 1.2 s before the deadline.
    let slow = ExecutorConfig {
        concurrency: 1,
        psp_timeout: Duration::from_millis(200),
        ..test_config()
    };
    let fan_out = FanOut {
        max_segments: 3,
        min_segment_items: 40,
    };
    let app = fanned_out_app(&env, &psp, slow, &queue, fan_out);
    let plan = PayoutJob::for_batch("b-seg-cont", None);
    assert_eq!(
        handle_message(&app, message("m-plan", &plan, 1), None).await,
        Disposition::FannedOut(3)
    );
    let segments = queue.take();
    let middle = segments[1].clone();
    let range = middle.payload.segment.clone().unwrap();

    let deadline = Instant::now() + Duration::from_millis(1_700);
    let first = handle_message(&app, message("m-mid", &middle, 1), Some(deadline)).await;
    let Disposition::Continued(summary) = first else {
        panic!("{first:?}")
    };
    assert!(
        summary.submitted > 0 && summary.submitted < 40,
        "{summary:?}"
    );
    let continuation = queue.take().pop().expect("a continuation");
    assert_eq!(continuation.payload.segment, Some(range.clone()));
    let cursor = continuation.payload.resume_after.clone().unwrap();
    assert!(range.contains(&cursor), "{cursor} is inside {range:?}");

    let rest = handle_message(&app, message("m-mid-2", &continuation, 1), None).await;
    let Disposition::Done(Some(rest)) = rest else {
        panic!("{rest:?}")
    };
    assert_eq!(rest.submitted + summary.submitted, 40, "{rest:?}");
    for (item_id, _, _) in &batch {
        let expected = if range.contains(item_id) {
            ItemStatus::Processing
        } else {
            ItemStatus::Pending
        };
        assert_eq!(
            env.item("b-seg-cont", item_id).await.status,
            expected,
            "{item_id}: only the middle segment was run"
        );
    }
}

#[tokio::test]
async fn racing_segments_and_redelivered_plans_never_pay_twice() {
    let env = TestEnv::start().await;
    let batch = items(300, "1.00");
    env.seed_batch("b-race", "sandbox", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    let psp = Arc::new(SandboxPsp::new(Duration::from_millis(2)));
    let queue = Arc::new(RecordedQueue::default());
    let app = fanned_out_app(&env, &psp, test_config(), &queue, FOUR_SEGMENTS);
    let plan = PayoutJob::for_batch("b-race", None);
    // The plan is delivered twice (at-least-once), and then every segment job twice at once,
    // alongside a whole-batch continuation the reconciler might send.
    for n in 0..2 {
        let planned = handle_message(&app, message(&format!("p{n}"), &plan, 1), None).await;
        assert_eq!(planned, Disposition::FannedOut(4));
    }
    let mut jobs = queue.take();
    assert_eq!(jobs.len(), 8);
    jobs.push(PayoutJob::continuation(&plan, Some(String::new())));
    let runs = jobs.iter().enumerate().map(|(n, job)| {
        let app = &app;
        async move { handle_message(app, message(&format!("s{n}"), job, 1), None).await }
    });
    let dispositions = futures_util::future::join_all(runs).await;
    // Racing runs may find items held by each other (retried later), never paid twice.
    for disposition in &dispositions {
        assert!(
            matches!(disposition, Disposition::Done(_) | Disposition::Retry(_)),
            "{disposition:?}"
        );
    }
    for (item_id, _, _) in &batch {
        assert_eq!(psp.transfers_for_item("b-race", item_id), 1, "{item_id}");
    }
    assert_eq!(psp.transfers().len(), 300);
}

#[tokio::test]
async fn a_rate_limited_job_is_retried_after_retry_after_not_the_visibility_timeout() {
    let env = TestEnv::start().await;
    let batch = items(3, "1.00");
    env.seed_batch("b-429", "stripe", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    let fake = FakeStripe::start().await;
    fake.inject(
        "acct_user-00002",
        Fault::RateLimited {
            retry_after_secs: 40,
        },
        1,
    );
    let adapter = Arc::new(StripeAdapter::new(fake.config()).expect("adapter"));
    let queue = Arc::new(RecordedQueue::default());
    let app = App::new(
        env.executor_with(adapter, test_config()),
        Some(queue.clone() as Arc<dyn JobQueue>),
    );
    let job = PayoutJob::for_batch("b-429", None);

    let first = handle_message(&app, message("m", &job, 1), None).await;
    assert!(matches!(first, Disposition::Retry(_)), "{first:?}");
    assert_eq!(
        queue.delays(),
        vec![("rh-m-1".to_owned(), Duration::from_secs(40))],
        "Stripe's Retry-After, longer than the first backoff step, decides"
    );
    assert_eq!(fake.transfers_to("acct_user-00002"), 0, "nothing made");
    assert_eq!(fake.transfers().len(), 2, "the other items were paid");
}

#[tokio::test]
async fn a_job_to_retry_backs_off_exponentially_with_jitter() {
    let env = TestEnv::start().await;
    let batch = items(2, "1.00");
    env.seed_batch("b-backoff", "sandbox", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    let psp = Arc::new(SandboxPsp::new(Duration::ZERO));
    psp.inject("acct_user-00001", SandboxFault::TransientBeforeAccept, 10);
    let queue = Arc::new(RecordedQueue::default());
    let app = App::new(
        env.executor(&psp, test_config()),
        Some(queue.clone() as Arc<dyn JobQueue>),
    );
    let job = PayoutJob::for_batch("b-backoff", None);
    let backoff = RetryBackoff::default();
    for receive_count in 1..=8 {
        let retried = handle_message(&app, message("m", &job, receive_count), None).await;
        assert!(matches!(retried, Disposition::Retry(_)), "{retried:?}");
        let (_, delay) = queue.delays().pop().unwrap();
        let step = (backoff.first * 2u32.pow(receive_count - 1)).min(backoff.cap);
        assert!(
            delay >= step / 2 && delay <= step,
            "receive {receive_count}: {delay:?} not within [{:?}, {step:?}]",
            step / 2
        );
        assert!(
            delay < Duration::from_secs(1800),
            "never the visibility timeout"
        );
    }
    let spread: std::collections::BTreeSet<Duration> = (0..20)
        .map(|n| backoff.delay(3, &format!("m-{n}"), None))
        .collect();
    assert!(
        spread.len() > 10,
        "jitter spreads jobs that failed together: {spread:?}"
    );
}
