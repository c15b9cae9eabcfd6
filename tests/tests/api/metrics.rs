//! The metrics the functions emit in a run: every line valid Embedded Metric Format (the rules
//! of CloudWatch's EMF specification: namespace, dimension sets naming string members, metric
//! definitions naming numeric members, units from CloudWatch's list, at most 100 values), every
//! metric one the function declares (so the template's alarms and dashboard can rely on the
//! names), and the values those of the run.

use aws_lambda_events::event::sqs::SqsMessage;
use http::{HeaderMap, HeaderValue, Method};
use integration_tests::fakes::stripe::{FakeStripe, Fault};
use integration_tests::{
    RecordedMetrics, RecordedQueue, TestEnv, items, test_config, verified_users,
};
use payout_execute::{App, Disposition, handle_message};
use payouts_core::job::PayoutJob;
use payouts_core::ports::queue::JobQueue;
use payouts_core::registry::PaymentAdapterRegistry;
use payouts_psp::sandbox::SandboxPsp;
use payouts_psp::stripe::StripeAdapter;
use psp_webhook::{WebhookApp, handle_webhook};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// CloudWatch's units (`MetricDatum.Unit`).
const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// Checks `line` against the EMF specification; returns the metric names it defines.
fn valid_emf(line: &Value) -> Vec<String> {
    let root = line.as_object().expect("an EMF line is a JSON object");
    let aws = root["_aws"].as_object().expect("_aws metadata");
    assert!(aws["Timestamp"].is_u64(), "Timestamp in epoch ms: {line}");
    let directives = aws["CloudWatchMetrics"]
        .as_array()
        .expect("CloudWatchMetrics");
    assert!(!directives.is_empty(), "{line}");
    let mut names = Vec::new();
    for directive in directives {
        let namespace = directive["Namespace"].as_str().expect("Namespace");
        assert_eq!(namespace, "Payouts");
        for set in directive["Dimensions"].as_array().expect("Dimensions") {
            let set = set.as_array().expect("a dimension set is an array");
            assert!(set.len() <= 30, "{line}");
            for key in set {
                let key = key.as_str().expect("dimension keys are strings");
                assert!(
                    root[key].is_string(),
                    "dimension {key} is a string member: {line}"
                );
            }
        }
        let metrics = directive["Metrics"].as_array().expect("Metrics");
        assert!(!metrics.is_empty() && metrics.len() <= 100, "{line}");
        for metric in metrics {
            let name = metric["Name"].as_str().expect("Name");
            assert!(!name.is_empty() && name.len() <= 255);
            if let Some(unit) = metric.get("Unit") {
                assert!(UNITS.contains(&unit.as_str().unwrap()), "{unit}");
            }
            match &root[name] {
                Value::Number(_) => {}
                Value::Array(values) => {
                    assert!(!values.is_empty() && values.len() <= 100, "{name}: {line}");
                    assert!(values.iter().all(Value::is_number), "{line}");
                }
                other => panic!("{name} is {other}, not a number or numbers: {line}"),
            }
            names.push(name.to_owned());
        }
    }
    names
}

fn message(id: &str, body: &str) -> SqsMessage {
    let mut message = SqsMessage::default();
    message.message_id = Some(id.to_owned());
    message.body = Some(body.to_owned());
    message
}

#[tokio::test]
async fn the_executor_emits_valid_emf_for_items_jobs_poison_and_psp_health() {
    let env = TestEnv::start().await;
    let mut batch = items(4, "2.00");
    batch.push(("item-kyc".into(), "user-kyc".into(), "2.00".into()));
    env.seed_batch("b-emf", "stripe", "USD", &batch).await;
    env.seed_users(&verified_users(&batch[..4])).await;
    let fake = FakeStripe::start().await;
    fake.inject(
        "acct_user-00003",
        Fault::RateLimited {
            retry_after_secs: 1,
        },
        1,
    );
    let adapter = Arc::new(StripeAdapter::new(fake.config()).expect("adapter"));
    let metrics = Arc::new(RecordedMetrics::default());
    let app = App::new(
        env.executor_with(adapter, test_config()),
        Some(Arc::new(RecordedQueue::default()) as Arc<dyn JobQueue>),
    )
    .with_metrics(metrics.clone());

    let job = serde_json::to_string(&PayoutJob::for_batch("b-emf", None)).unwrap();
    let first = handle_message(&app, message("m1", &job), None).await;
    assert!(matches!(first, Disposition::Retry(_)), "{first:?}");
    let again = handle_message(&app, message("m1", &job), None).await;
    assert!(matches!(again, Disposition::Done(_)), "{again:?}");
    let poison = handle_message(&app, message("m2", r#"{"type":"payout.refund"}"#), None).await;
    assert!(matches!(poison, Disposition::Poison { .. }), "{poison:?}");

    let declared: BTreeSet<&str> = payout_execute::emitted_metrics().into_iter().collect();
    for line in metrics.lines() {
        for name in valid_emf(&line) {
            assert!(declared.contains(name.as_str()), "{name} is not declared");
        }
        assert_eq!(line["Function"], "payout-execute");
    }
    let total = |name: &str, dims: &[(&str, &str)]| metrics.total(name, dims);
    assert_eq!(total("ItemsSubmitted", &[("Provider", "stripe")]), 4.0);
    assert_eq!(
        total("ItemsPendingKyc", &[]),
        2.0,
        "each run counts the items it leaves pending_kyc"
    );
    assert_eq!(total("ItemsRetryable", &[]), 1.0);
    assert_eq!(total("JobsRetried", &[]), 1.0);
    assert_eq!(total("PoisonMessages", &[("Reason", "unknown_type")]), 1.0);
    assert_eq!(total("PspRateLimited", &[("Provider", "stripe")]), 1.0);
    assert_eq!(total("PspCalls", &[]), 5.0, "4 transfers and one 429");
    let latencies: usize = metrics
        .lines()
        .iter()
        .filter_map(|l| l["PspLatency"].as_array().map(Vec::len))
        .sum();
    assert_eq!(latencies, 5, "one latency sample per answered call");
}

#[tokio::test]
async fn the_webhook_emits_valid_emf_for_settled_and_rejected_events() {
    let env = TestEnv::start().await;
    let batch = items(2, "3.00");
    env.seed_batch("b-hook-emf", "sandbox", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    let psp =
        Arc::new(SandboxPsp::new(Duration::ZERO).with_webhook_secrets(vec!["whsec_emf".into()]));
    env.executor(&psp, test_config())
        .execute_payout_batch("b-hook-emf", None)
        .await
        .unwrap();
    let metrics = Arc::new(RecordedMetrics::default());
    let app = WebhookApp::new(
        env.repository(),
        PaymentAdapterRegistry::new().register(psp.clone()),
        Arc::new(env.clock.clone()),
    )
    .with_metrics(metrics.clone());
    let now_secs = payouts_core::clock::now_ms() / 1000;
    for transfer in psp.transfers() {
        let (body, signature) = psp.signed_transfer_event(
            &format!("evt_{}", transfer.id),
            "transfer.created",
            &transfer,
            None,
            now_secs,
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            "stripe-signature",
            HeaderValue::from_str(&signature).unwrap(),
        );
        for _ in 0..2 {
            let answer = handle_webhook(
                &app,
                &Method::POST,
                "/webhooks/sandbox",
                &headers,
                body.as_bytes(),
                now_secs,
            )
            .await;
            assert!(answer.status.is_success(), "{answer:?}");
        }
    }
    let mut forged = HeaderMap::new();
    forged.insert("stripe-signature", HeaderValue::from_static("t=1,v1=00"));
    let refused = handle_webhook(
        &app,
        &Method::POST,
        "/webhooks/sandbox",
        &forged,
        b"{}",
        now_secs,
    )
    .await;
    assert_eq!(refused.status, 400);

    let declared: BTreeSet<&str> = psp_webhook::WEBHOOK_METRICS.iter().copied().collect();
    for line in metrics.lines() {
        for name in valid_emf(&line) {
            assert!(declared.contains(name.as_str()), "{name} is not declared");
        }
    }
    assert_eq!(metrics.total("ItemsPaid", &[("Provider", "sandbox")]), 2.0);
    assert_eq!(metrics.total("EventsDuplicate", &[]), 2.0);
    assert_eq!(metrics.total("EventsVerified", &[]), 4.0);
    assert!(
        metrics.total("WebhookRejected", &[("Reason", "bad_signature")]) == 1.0
            || metrics.total("WebhookRejected", &[("Reason", "stale_timestamp")]) == 1.0
            || metrics.total("WebhookRejected", &[("Reason", "malformed")]) == 1.0,
        "{:?}",
        metrics.lines()
    );
}
