//! The jobs queue on SQS (moto's SQS API): a fan-out's segment jobs go out in batches of ten,
//! and a job to retry becomes visible again after the backoff set on it, not after the queue's
//! visibility timeout.

use crate::ops_cli::{Moto, create_queue};
use payouts_core::job::{ItemRange, PayoutJob};
use payouts_core::ports::queue::JobQueue;
use payouts_queue_sqs::SqsJobQueue;
use std::time::Duration;

#[tokio::test]
async fn segment_jobs_are_sent_in_batches_and_a_retry_comes_back_after_its_backoff() {
    let moto = Moto::start().await;
    let sqs = moto.sqs().await;
    let url = create_queue(&sqs, "payout-jobs").await;
    sqs.set_queue_attributes()
        .queue_url(&url)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "1800",
        )
        .send()
        .await
        .unwrap();
    let queue = SqsJobQueue::new(sqs.clone(), url.clone());

    let plan = PayoutJob::for_batch("b-sqs", Some("j-1".into()));
    let boundaries: Vec<String> = (1..23).map(|i| format!("item-{i:03}")).collect();
    let jobs: Vec<PayoutJob> = ItemRange::split_at(&boundaries)
        .into_iter()
        .map(|segment| PayoutJob::segment(&plan, segment))
        .collect();
    assert_eq!(jobs.len(), 23, "three SendMessageBatch requests: 10, 10, 3");
    queue.enqueue_all(&jobs).await.expect("sent");

    let mut received = Vec::new();
    while received.len() < 23 {
        let out = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        let messages = out.messages.unwrap_or_default();
        assert!(
            !messages.is_empty(),
            "only {} of 23 arrived",
            received.len()
        );
        received.extend(messages);
    }
    let mut sent: Vec<PayoutJob> = received
        .iter()
        .map(|m| PayoutJob::parse(m.body.as_deref()).expect("a job"))
        .collect();
    let order = |job: &PayoutJob| serde_json::to_string(job).unwrap();
    sent.sort_by_key(order);
    let mut expected = jobs.clone();
    expected.sort_by_key(order);
    assert_eq!(sent, expected);

    // All 23 are in flight for 1,800 s; one is given a 2 s backoff and comes back on its own.
    let retried = &received[5];
    queue
        .redeliver_after(
            retried.receipt_handle.as_deref().unwrap(),
            Duration::from_secs(2),
        )
        .await
        .expect("visibility changed");
    let again = sqs
        .receive_message()
        .queue_url(&url)
        .wait_time_seconds(5)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].message_id, retried.message_id);
}
