//! The operator CLI's DynamoDB side (`payouts-ops status` / `enqueue`'s batch check) against a
//! real DynamoDB API (dynoxide in-process, or the endpoint in `AWS_ENDPOINT_URL_DYNAMODB`).

use integration_tests::{TestEnv, items, test_config};
use payouts_core::domain::ItemStatus;
use payouts_core::ports::webhook::{ItemReference, PaymentEvent, PaymentEventKind};
use payouts_core::settlement::apply_payment_event;
use payouts_ops::{EXIT_BATCH_NOT_FOUND, EXIT_USAGE, OpsError, batch_status, enqueue};
use payouts_psp::sandbox::SandboxPsp;
use payouts_store_dynamodb::s;
use payouts_store_dynamodb::schema::{attr, keys};
use std::sync::Arc;
use std::time::Duration;

/// An SQS client whose endpoint refuses connections: any call through it fails.
async fn unreachable_sqs() -> aws_sdk_sqs::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url("http://127.0.0.1:9")
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await;
    aws_sdk_sqs::Client::new(&config)
}

/// 23 items paid by the executor: 17 processing, 3 pending_kyc (unverified), 2 failed (the
/// sandbox rejects the account), 1 with no settings (pending_kyc too); then one paid by its
/// event.
#[tokio::test]
async fn status_counts_every_status_across_pages_and_explains_failed_and_kyc_items() {
    let env = TestEnv::start().await;
    let batch = items(23, "10.00");
    env.seed_batch("b-ops", "sandbox", "USD", &batch).await;
    let users: Vec<(String, String, bool)> = batch
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 22) // user-00023 has no settings at all
        .map(|(i, (_, user, _))| match i {
            0..=2 => (user.clone(), format!("acct_{user}"), false),
            3 | 4 => (user.clone(), format!("acct_sandbox_reject_{user}"), true),
            _ => (user.clone(), format!("acct_{user}"), true),
        })
        .collect();
    env.seed_users(&users).await;
    let psp = Arc::new(SandboxPsp::new(Duration::ZERO));
    env.executor(&psp, test_config())
        .execute_payout_batch("b-ops", None)
        .await
        .unwrap();
    let paid = env.item("b-ops", "item-00010").await;
    let event = PaymentEvent {
        event_id: "evt_ops_paid".into(),
        event_type: "transfer.created".into(),
        kind: Some(PaymentEventKind::Paid),
        provider_payout_id: paid.provider_payout_id.clone(),
        reference: Some(ItemReference {
            batch_id: "b-ops".into(),
            item_id: "item-00010".into(),
        }),
    };
    apply_payment_event(env.repository().as_ref(), &env.clock, "sandbox", &event)
        .await
        .unwrap();
    env.requests.reset();

    let summary = batch_status(&env.store, "b-ops", Some(5), false)
        .await
        .unwrap();
    assert_eq!(
        (
            env.requests.get("GetItem"),
            env.requests.get("Query"),
            env.requests.total()
        ),
        (1, 1, 2),
        "the batch record and one read of its counts, whatever its size"
    );
    assert_eq!(summary.pages, 0);
    assert!(summary.attention.is_empty());
    assert!(summary.to_string().contains("with --items"), "{summary}");
    env.requests.reset();

    let status = batch_status(&env.store, "b-ops", Some(5), true)
        .await
        .unwrap();

    assert_eq!(status.total(), 23);
    assert_eq!(status.count(ItemStatus::Processing), 16);
    assert_eq!(status.count(ItemStatus::Paid), 1);
    assert_eq!(status.count(ItemStatus::PendingKyc), 4);
    assert_eq!(status.count(ItemStatus::Failed), 2);
    assert_eq!(status.count(ItemStatus::Pending), 0);
    assert_eq!(status.count(ItemStatus::Submitting), 0);
    assert_eq!(
        status.counts.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        ItemStatus::ALL.to_vec(),
        "every status listed, zeros included"
    );
    assert!(
        status.pages >= 5,
        "23 items in pages of 5: {}",
        status.pages
    );
    assert_eq!(
        env.requests.get("Query") as usize,
        status.pages + 1,
        "the counts, and one Query per page"
    );
    for (status_name, n) in &status.counts {
        assert_eq!(summary.count(*status_name), *n, "{status_name}");
    }
    assert_eq!(env.requests.get("GetItem"), 1, "the batch record");
    let attention: Vec<(&str, ItemStatus, &str)> = status
        .attention
        .iter()
        .map(|i| {
            (
                i.item_id.as_str(),
                i.status,
                i.detail.as_deref().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(attention.len(), 6, "{attention:?}");
    for (item, status, reason) in &attention {
        match *item {
            "item-00001" | "item-00002" | "item-00003" => {
                assert_eq!(*status, ItemStatus::PendingKyc);
                assert!(reason.contains("not verified"), "{reason}");
            }
            "item-00004" | "item-00005" => {
                assert_eq!(*status, ItemStatus::Failed);
                assert!(reason.starts_with("account_invalid"), "{reason}");
            }
            "item-00023" => {
                assert_eq!(*status, ItemStatus::PendingKyc);
                assert!(reason.contains("no payout method"), "{reason}");
            }
            other => panic!("{other} does not need attention"),
        }
    }
    assert!(summary.items.is_none(), "items listed only on request");

    let shown = status.to_string();
    assert!(
        shown.starts_with("batch b-ops provider=sandbox currency=USD"),
        "{shown}"
    );
    assert!(shown.contains("not verified"), "{shown}");

    let listed = batch_status(&env.store, "b-ops", None, true).await.unwrap();
    let all = listed.items.as_ref().expect("every item listed");
    assert_eq!(all.len(), 23);
    let paid = all.iter().find(|i| i.item_id == "item-00010").unwrap();
    assert_eq!(paid.status, ItemStatus::Paid);
    let processing = all.iter().find(|i| i.item_id == "item-00006").unwrap();
    assert!(
        processing
            .detail
            .as_deref()
            .is_some_and(|id| id.starts_with("tr_sandbox_")),
        "{processing:?}"
    );
    assert!(listed.to_string().contains("item-00006"));
}

#[tokio::test]
async fn status_reports_unreadable_records_instead_of_failing() {
    let env = TestEnv::start().await;
    env.seed_batch("b-bad", "sandbox", "USD", &items(2, "1"))
        .await;
    env.client()
        .put_item()
        .table_name(env.store.payouts_table())
        .item(attr::PK, s(keys::batch_pk("b-bad")))
        .item(attr::SK, s(keys::item_sk("item-broken")))
        .item(attr::STATUS, s("pending"))
        .send()
        .await
        .unwrap();

    let status = batch_status(&env.store, "b-bad", None, false)
        .await
        .unwrap();

    assert_eq!(status.count(ItemStatus::Pending), 2);
    assert_eq!(status.unreadable.len(), 1, "{:?}", status.unreadable);
    assert!(status.unreadable[0].contains("userId"));
    assert_eq!(status.total(), 3);
    assert!(status.to_string().contains("unreadable records (1)"));
}

#[tokio::test]
async fn unknown_batches_exit_with_batch_not_found_and_nothing_is_enqueued() {
    let env = TestEnv::start().await;
    env.seed_batch("b-known", "sandbox", "USD", &items(1, "1"))
        .await;

    let err = batch_status(&env.store, "b-missing", None, false)
        .await
        .unwrap_err();
    assert!(matches!(err, OpsError::BatchNotFound(ref b) if b == "b-missing"));
    assert_eq!(err.exit_code(), EXIT_BATCH_NOT_FOUND);
    assert!(err.to_string().contains("does not exist"), "{err}");

    // The batch check comes before any SQS call: this client could not send anything.
    let sqs = unreachable_sqs().await;
    let err = enqueue(&env.store, &sqs, "http://queue", "b-missing", None)
        .await
        .unwrap_err();
    assert!(matches!(err, OpsError::BatchNotFound(_)), "{err}");
    assert_eq!(err.exit_code(), EXIT_BATCH_NOT_FOUND);

    let err = enqueue(&env.store, &sqs, "http://queue", "bad id", None)
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), EXIT_USAGE, "{err}");

    // A known batch gets as far as SQS (which is unreachable here): a runtime error, exit 1.
    let err = enqueue(&env.store, &sqs, "http://queue", "b-known", None)
        .await
        .unwrap_err();
    assert!(matches!(err, OpsError::Runtime(_)), "{err}");
    assert_eq!(err.exit_code(), 1);
}

// ------------------------------------------------------------------------------- SQS (moto)

/// A moto server (PyPI `moto[server]`, installed into `.tools/venv` by `scripts/test.sh`) on a
/// free loopback port; killed when dropped. Without moto the SQS tests fail and say how to get
/// it: a test that passes without running would prove nothing.
pub(crate) struct Moto {
    child: std::process::Child,
    pub(crate) endpoint: String,
}

impl Moto {
    pub(crate) async fn start() -> Moto {
        let binary = std::env::var("MOTO_SERVER").unwrap_or_else(|_| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../.tools/venv/bin/moto_server"
            )
            .to_owned()
        });
        assert!(
            std::path::Path::new(&binary).exists(),
            "no moto server at {binary}: run the suite with scripts/test.sh (it installs moto), or set MOTO_SERVER"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start moto_server");
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return moto;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("moto_server did not listen on {port} within 30 s");
    }

    pub(crate) async fn sqs(&self) -> aws_sdk_sqs::Client {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .load()
            .await;
        aws_sdk_sqs::Client::new(&config)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap()
}

/// Every message left in the queue (received, then deleted), as (body, attribute `origin`).
async fn drain(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Vec<(String, Option<String>)> {
    let mut bodies = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            bodies.sort();
            return bodies;
        }
        for m in messages {
            let origin = m
                .message_attributes
                .as_ref()
                .and_then(|a| a.get("origin"))
                .and_then(|v| v.string_value.clone());
            bodies.push((m.body.unwrap_or_default(), origin));
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(m.receipt_handle.unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn enqueue_sends_a_job_the_executor_accepts() {
    let moto = Moto::start().await;
    let env = TestEnv::start().await;
    env.seed_batch("b-enqueue", "sandbox", "USD", &items(1, "1"))
        .await;
    let sqs = moto.sqs().await;
    let jobs = create_queue(&sqs, "payout-jobs").await;

    let message_id = enqueue(
        &env.store,
        &sqs,
        &jobs,
        "b-enqueue",
        Some("ops-test".into()),
    )
    .await
    .unwrap();
    assert!(!message_id.is_empty());
    let missing = enqueue(&env.store, &sqs, &jobs, "b-nope", None).await;
    assert!(matches!(missing, Err(OpsError::BatchNotFound(_))));

    let sent = drain(&sqs, &jobs).await;
    assert_eq!(sent.len(), 1, "only the known batch's job: {sent:?}");
    let job = payouts_core::job::PayoutJob::parse(Some(&sent[0].0)).expect("a valid job");
    assert_eq!(job.payload.batch_id, "b-enqueue");
    assert_eq!(job.job_id.as_deref(), Some("ops-test"));
}

#[tokio::test]
async fn redrive_moves_each_dlq_message_to_the_jobs_queue_once() {
    let moto = Moto::start().await;
    let sqs = moto.sqs().await;
    let jobs = create_queue(&sqs, "payout-jobs").await;
    let dlq = create_queue(&sqs, "payout-jobs-dlq").await;
    let bodies: Vec<String> = (0..13)
        .map(|i| {
            serde_json::to_string(&payouts_core::job::PayoutJob::for_batch(
                &format!("b-{i:02}"),
                None,
            ))
            .unwrap()
        })
        .collect();
    for (i, body) in bodies.iter().enumerate() {
        let mut send = sqs.send_message().queue_url(&dlq).message_body(body);
        if i == 0 {
            send = send.message_attributes(
                "origin",
                aws_sdk_sqs::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("upstream")
                    .build()
                    .unwrap(),
            );
        }
        send.send().await.unwrap();
    }

    let report = payouts_ops::redrive(&sqs, &dlq, &jobs, Some(4))
        .await
        .unwrap();
    assert_eq!(report.moved, 4, "--max 4");
    let report = payouts_ops::redrive(&sqs, &dlq, &jobs, None).await.unwrap();
    assert_eq!(report.moved, 9, "the rest");

    assert_eq!(drain(&sqs, &dlq).await, vec![], "the DLQ is empty");
    let moved = drain(&sqs, &jobs).await;
    let mut expected: Vec<(String, Option<String>)> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| (b.clone(), (i == 0).then(|| "upstream".to_owned())))
        .collect();
    expected.sort();
    assert_eq!(moved, expected, "each message once, attributes kept");

    // A jobs queue that refuses the message: nothing is deleted from the DLQ.
    sqs.send_message()
        .queue_url(&dlq)
        .message_body(&bodies[0])
        .send()
        .await
        .unwrap();
    let missing_queue = format!("{}/123456789012/no-such-queue", moto.endpoint);
    let err = payouts_ops::redrive(&sqs, &dlq, &missing_queue, None)
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 1, "{err}");
    assert!(err.to_string().contains("moved 0"), "{err}");
    let left = sqs
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default();
    let count = |name: aws_sdk_sqs::types::QueueAttributeName| -> u64 {
        left.get(&name).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    assert_eq!(
        count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            + count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        1,
        "the message stays in the DLQ: {left:?}"
    );
}
