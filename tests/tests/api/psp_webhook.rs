//! The webhook function against a real DynamoDB API: verification, deduplication, ordering,
//! and batch completion. Signatures use the Stripe scheme (the sandbox PSP signs like Stripe).

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use integration_tests::{TestEnv, items, verified_users};
use payouts_core::domain::ItemStatus;
use payouts_core::executor::ExecutorConfig;
use payouts_core::ports::repository::ClaimOutcome;
use payouts_core::ports::repository::TransitionOutcome;
use payouts_core::ports::webhook::ItemReference;
use payouts_core::registry::PaymentAdapterRegistry;
use payouts_psp::sandbox::{SandboxPsp, SandboxTransfer};
use payouts_psp::stripe::webhook::{signature_header, transfer_event_json};
use payouts_store_dynamodb::PayoutRepository;
use psp_webhook::{WebhookApp, WebhookResponse, handle_webhook};
use std::sync::Arc;
use std::time::Duration;

const SECRET: &str = "whsec_sandbox_current";
const OLD_SECRET: &str = "whsec_sandbox_previous";

fn now_secs() -> u64 {
    payouts_core::clock::now_ms() / 1000
}

struct Harness {
    env: TestEnv,
    psp: Arc<SandboxPsp>,
    app: WebhookApp,
}

impl Harness {
    async fn start() -> Harness {
        let env = TestEnv::start().await;
        let psp = Arc::new(
            SandboxPsp::new(Duration::ZERO)
                .with_webhook_secrets(vec![SECRET.into(), OLD_SECRET.into()]),
        );
        let app = WebhookApp::new(
            env.repository(),
            PaymentAdapterRegistry::new().register(psp.clone()),
            Arc::new(env.clock.clone()),
        );
        Harness { env, psp, app }
    }

    /// Seeds a batch of `count` verified items and pays it: every item ends `processing`.
    async fn paid_batch(&self, batch_id: &str, count: usize) -> Vec<SandboxTransfer> {
        let batch = items(count, "4.20");
        self.env
            .seed_batch(batch_id, "sandbox", "USD", &batch)
            .await;
        self.env.seed_users(&verified_users(&batch)).await;
        let cfg = ExecutorConfig {
            concurrency: 4,
            ..ExecutorConfig::default()
        };
        let summary = self
            .env
            .executor(&self.psp, cfg)
            .execute_payout_batch(batch_id, None)
            .await
            .unwrap();
        assert_eq!(summary.submitted, count as u64);
        self.psp
            .transfers()
            .into_iter()
            .filter(|t| t.batch_id == batch_id)
            .collect()
    }

    async fn post(&self, path: &str, body: &str, signature: Option<&str>) -> WebhookResponse {
        let mut headers = HeaderMap::new();
        if let Some(signature) = signature {
            headers.insert(
                "stripe-signature",
                HeaderValue::from_str(signature).unwrap(),
            );
        }
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        handle_webhook(
            &self.app,
            &Method::POST,
            path,
            &headers,
            body.as_bytes(),
            now_secs(),
        )
        .await
    }

    /// Sends the sandbox's signed event for `transfer`.
    async fn send(
        &self,
        event_id: &str,
        event_type: &str,
        transfer: &SandboxTransfer,
        failure: Option<&str>,
    ) -> WebhookResponse {
        let (body, signature) =
            self.psp
                .signed_transfer_event(event_id, event_type, transfer, failure, now_secs());
        self.post("/webhooks/sandbox", &body, Some(&signature))
            .await
    }

    async fn event_records(&self) -> usize {
        self.env
            .scan_payouts()
            .await
            .iter()
            .filter(|r| {
                r.get("pk")
                    .and_then(|v| v.as_s().ok())
                    .is_some_and(|pk| pk.starts_with("EVENT#"))
            })
            .count()
    }
}

fn result(response: &WebhookResponse) -> &str {
    response
        .body
        .get("result")
        .and_then(|v| v.as_str())
        .unwrap_or("")
}

#[tokio::test]
async fn paid_and_failed_events_finalize_processing_items() {
    let h = Harness::start().await;
    let transfers = h.paid_batch("b-final", 2).await;

    let paid = h
        .send("evt_paid_1", "transfer.created", &transfers[0], None)
        .await;
    assert_eq!(
        (paid.status, result(&paid)),
        (StatusCode::OK, "applied"),
        "{paid:?}"
    );
    let failed = h
        .send(
            "evt_failed_2",
            "transfer.failed",
            &transfers[1],
            Some("bank account closed"),
        )
        .await;
    assert_eq!(
        (failed.status, result(&failed)),
        (StatusCode::OK, "applied"),
        "{failed:?}"
    );

    let item = h.env.item("b-final", &transfers[0].item_id).await;
    assert_eq!(item.status, ItemStatus::Paid);
    assert_eq!(
        item.provider_payout_id.as_deref(),
        Some(transfers[0].id.as_str())
    );
    let item = h.env.item("b-final", &transfers[1].item_id).await;
    assert_eq!(item.status, ItemStatus::Failed);
    assert_eq!(item.failure_reason.as_deref(), Some("bank account closed"));
    assert_eq!(h.event_records().await, 2);
}

#[tokio::test]
async fn the_same_event_twice_is_applied_once() {
    let h = Harness::start().await;
    let transfers = h.paid_batch("b-dup", 1).await;
    let first = h
        .send("evt_once", "transfer.created", &transfers[0], None)
        .await;
    let item_after_first = h.env.raw_item("b-dup", &transfers[0].item_id).await;

    let again = h
        .send("evt_once", "transfer.created", &transfers[0], None)
        .await;

    assert_eq!(result(&first), "applied");
    assert_eq!(
        (again.status, result(&again)),
        (StatusCode::OK, "duplicate"),
        "{again:?}"
    );
    assert_eq!(
        h.env.raw_item("b-dup", &transfers[0].item_id).await,
        item_after_first,
        "nothing rewritten"
    );
    assert_eq!(h.event_records().await, 1);
}

#[tokio::test]
async fn paid_before_the_executor_records_wins_over_the_late_record() {
    let h = Harness::start().await;
    let batch = items(1, "9.99");
    h.env.seed_batch("b-early", "sandbox", "USD", &batch).await;
    let item = h.env.item("b-early", "item-00001").await;
    // The executor claimed the item and the PSP paid, but its record has not landed yet.
    let ClaimOutcome::Claimed(claim) = h
        .env
        .store
        .claim(
            &item,
            "sandbox",
            payouts_core::clock::now_ms(),
            Duration::from_secs(60),
        )
        .await
        .unwrap()
    else {
        panic!("claim")
    };
    let transfer = SandboxTransfer {
        id: "tr_early".into(),
        idempotency_key: "payout:b-early:item-00001:g0".into(),
        batch_id: "b-early".into(),
        item_id: "item-00001".into(),
        destination: "acct_user-00001".into(),
        amount_minor: 999,
        currency: "USD".into(),
    };

    let response = h
        .send("evt_early", "transfer.created", &transfer, None)
        .await;
    assert_eq!(result(&response), "applied", "{response:?}");
    let late = h
        .env
        .store
        .record_accepted(&claim, "tr_early", payouts_core::clock::now_ms())
        .await
        .unwrap();

    assert!(
        matches!(
            late,
            TransitionOutcome::Superseded {
                current: Some(ItemStatus::Paid),
                ..
            }
        ),
        "{late:?}"
    );
    let item = h.env.item("b-early", "item-00001").await;
    assert_eq!(item.status, ItemStatus::Paid);
    assert_eq!(item.provider_payout_id.as_deref(), Some("tr_early"));
    assert_eq!(item.attempt.lease_until_ms, None);
}

#[tokio::test]
async fn failed_after_paid_never_moves_the_item_back_but_a_reversal_is_recorded() {
    let h = Harness::start().await;
    let transfers = h.paid_batch("b-order", 1).await;
    h.send("evt_a", "transfer.created", &transfers[0], None)
        .await;

    let late_failure = h
        .send("evt_b", "transfer.failed", &transfers[0], Some("too late"))
        .await;
    assert_eq!(
        (late_failure.status, result(&late_failure)),
        (StatusCode::OK, "ignored"),
        "{late_failure:?}"
    );
    assert_eq!(
        h.env.item("b-order", &transfers[0].item_id).await.status,
        ItemStatus::Paid
    );
    let redelivered = h
        .send("evt_b", "transfer.failed", &transfers[0], Some("too late"))
        .await;
    assert_eq!(result(&redelivered), "duplicate");

    let reversal = h
        .send("evt_c", "transfer.reversed", &transfers[0], None)
        .await;
    assert_eq!(result(&reversal), "applied", "{reversal:?}");
    let record = h
        .env
        .raw_item("b-order", &transfers[0].item_id)
        .await
        .unwrap();
    assert_eq!(
        record.get("status").unwrap().as_s().unwrap(),
        "paid",
        "a reversal is recorded, not re-paid"
    );
    assert_eq!(
        record.get("reversalEventId").unwrap().as_s().unwrap(),
        "evt_c"
    );
    assert!(record.contains_key("reversedAt"));
}

#[tokio::test]
async fn unknown_event_types_are_acknowledged_and_change_nothing() {
    let h = Harness::start().await;
    let transfers = h.paid_batch("b-unknown-type", 1).await;
    let before = h.env.scan_payouts().await;

    let response = h
        .send("evt_x", "transfer.updated", &transfers[0], None)
        .await;
    let body = r#"{"id":"evt_y","object":"event","type":"payout.paid","account":"acct_1","data":{"object":{"id":"po_1","object":"payout"}}}"#;
    let payout = h
        .post(
            "/webhooks/sandbox",
            body,
            Some(&signature_header(SECRET, now_secs(), body.as_bytes())),
        )
        .await;

    assert_eq!(
        (response.status, result(&response)),
        (StatusCode::OK, "ignored")
    );
    assert_eq!(
        (payout.status, result(&payout)),
        (StatusCode::OK, "ignored")
    );
    assert_eq!(h.env.scan_payouts().await, before);
}

#[tokio::test]
async fn bad_requests_are_refused_with_400_and_write_nothing() {
    let h = Harness::start().await;
    let transfers = h.paid_batch("b-bad", 1).await;
    let before = h.env.scan_payouts().await;
    let (body, good) = h.psp.signed_transfer_event(
        "evt_bad",
        "transfer.created",
        &transfers[0],
        None,
        now_secs(),
    );
    let stale = signature_header(SECRET, now_secs() - 301, body.as_bytes());
    let forged = signature_header("whsec_attacker", now_secs(), body.as_bytes());
    let tampered = body.replace("transfer.created", "transfer.failed");
    let not_json = "{\"id\": ";

    let cases = [
        (
            h.post("/webhooks/sandbox", &body, None).await,
            "missing signature",
        ),
        (
            h.post("/webhooks/sandbox", &body, Some(&forged)).await,
            "signature does not match",
        ),
        (
            h.post("/webhooks/sandbox", &tampered, Some(&good)).await,
            "signature does not match",
        ),
        (
            h.post("/webhooks/sandbox", &body, Some(&stale)).await,
            "outside the 300 s tolerance",
        ),
        (
            h.post("/webhooks/sandbox", &body, Some("t=abc,v1=zz"))
                .await,
            "signature does not match",
        ),
        (
            h.post(
                "/webhooks/sandbox",
                not_json,
                Some(&signature_header(SECRET, now_secs(), not_json.as_bytes())),
            )
            .await,
            "malformed event",
        ),
        (
            h.post("/webhooks/paypal", &body, Some(&good)).await,
            "unknown provider",
        ),
    ];
    for (response, expected) in cases {
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{response:?}");
        let reason = response.body["error"].as_str().unwrap();
        assert!(
            reason.contains(expected),
            "{reason:?} should say {expected:?}"
        );
    }
    let huge = "x".repeat(psp_webhook::MAX_BODY_BYTES + 1);
    assert_eq!(
        h.post("/webhooks/sandbox", &huge, Some(&good)).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let mut headers = HeaderMap::new();
    headers.insert("stripe-signature", HeaderValue::from_str(&good).unwrap());
    let get = handle_webhook(
        &h.app,
        &Method::GET,
        "/webhooks/sandbox",
        &headers,
        body.as_bytes(),
        now_secs(),
    )
    .await;
    assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(h.env.scan_payouts().await, before, "nothing written");
}

#[tokio::test]
async fn events_signed_with_the_previous_secret_verify_during_rotation() {
    let h = Harness::start().await;
    let transfers = h.paid_batch("b-rotate", 1).await;
    let reference = ItemReference {
        batch_id: "b-rotate".into(),
        item_id: transfers[0].item_id.clone(),
    };
    let body = transfer_event_json(
        "evt_rot",
        "transfer.created",
        &transfers[0].id,
        &reference,
        None,
    );
    let old_signature = signature_header(OLD_SECRET, now_secs(), body.as_bytes());

    let response = h
        .post("/webhooks/sandbox", &body, Some(&old_signature))
        .await;

    assert_eq!(result(&response), "applied", "{response:?}");
    assert_eq!(
        h.env.item("b-rotate", &transfers[0].item_id).await.status,
        ItemStatus::Paid
    );
}

#[tokio::test]
async fn events_for_unknown_items_are_acknowledged_and_remembered() {
    let h = Harness::start().await;
    let reference = ItemReference {
        batch_id: "b-nowhere".into(),
        item_id: "item-x".into(),
    };
    let body = transfer_event_json(
        "evt_stranger",
        "transfer.created",
        "tr_not_ours",
        &reference,
        None,
    );
    let signature = signature_header(SECRET, now_secs(), body.as_bytes());

    let first = h.post("/webhooks/sandbox", &body, Some(&signature)).await;
    let again = h.post("/webhooks/sandbox", &body, Some(&signature)).await;

    assert_eq!(
        (first.status, result(&first)),
        (StatusCode::OK, "ignored"),
        "{first:?}"
    );
    assert_eq!(result(&again), "duplicate");
    assert_eq!(h.event_records().await, 1);
}

#[tokio::test]
async fn an_event_without_metadata_finds_its_item_by_transfer_id() {
    let h = Harness::start().await;
    let transfers = h.paid_batch("b-index", 2).await;
    let body = format!(
        r#"{{"id":"evt_idx","object":"event","type":"transfer.created","data":{{"object":{{"id":"{}","object":"transfer","metadata":{{}}}}}}}}"#,
        transfers[1].id
    );

    let response = h
        .post(
            "/webhooks/sandbox",
            &body,
            Some(&signature_header(SECRET, now_secs(), body.as_bytes())),
        )
        .await;

    assert_eq!(result(&response), "applied", "{response:?}");
    assert_eq!(response.body["itemId"], transfers[1].item_id.as_str());
    assert_eq!(
        h.env.item("b-index", &transfers[1].item_id).await.status,
        ItemStatus::Paid
    );
    assert_eq!(
        h.env.item("b-index", &transfers[0].item_id).await.status,
        ItemStatus::Processing
    );
}

#[tokio::test]
async fn the_batch_says_when_no_item_is_left_in_flight() {
    let h = Harness::start().await;
    let transfers = h.paid_batch("b-done", 3).await;

    let first = h
        .send("evt_1", "transfer.created", &transfers[0], None)
        .await;
    assert_eq!(
        first.body["batchStatus"],
        serde_json::Value::Null,
        "two items still in flight"
    );
    h.send(
        "evt_2",
        "transfer.failed",
        &transfers[1],
        Some("account closed"),
    )
    .await;
    assert_eq!(
        h.env
            .raw_batch("b-done")
            .await
            .get("status")
            .unwrap()
            .as_s()
            .unwrap(),
        "executing"
    );

    let last = h
        .send("evt_3", "transfer.created", &transfers[2], None)
        .await;

    assert_eq!(
        last.body["batchStatus"], "completed_with_failures",
        "{last:?}"
    );
    let batch = h.env.raw_batch("b-done").await;
    assert_eq!(
        batch.get("status").unwrap().as_s().unwrap(),
        "completed_with_failures"
    );
    let counts = batch.get("itemCounts").unwrap().as_m().unwrap();
    assert_eq!(counts.get("paid").unwrap().as_n().unwrap(), "2");
    assert_eq!(counts.get("failed").unwrap().as_n().unwrap(), "1");
    assert_eq!(counts.len(), 2);

    let h2 = Harness::start().await;
    let transfers = h2.paid_batch("b-all-paid", 2).await;
    h2.send("evt_p1", "transfer.created", &transfers[0], None)
        .await;
    let done = h2
        .send("evt_p2", "transfer.created", &transfers[1], None)
        .await;
    assert_eq!(done.body["batchStatus"], "completed", "{done:?}");
}

/// The official `stripe` Python package (not this project's code) signs and verifies.
mod official_stripe_library {
    use super::*;
    use std::process::Command;

    fn python() -> String {
        std::env::var("PAYOUTS_TEST_PYTHON")
            .unwrap_or_else(|_| format!("{}/../.tools/venv/bin/python", env!("CARGO_MANIFEST_DIR")))
    }

    fn run_python(script: &str, args: &[&str]) -> String {
        let out = Command::new(python())
            .arg("-c")
            .arg(script)
            .args(args)
            .output()
            .expect("run the tools venv's python: scripts/test.sh installs it (stripe from PyPI)");
        assert!(
            out.status.success(),
            "python failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    #[tokio::test]
    async fn a_header_signed_by_stripe_python_is_accepted() {
        let h = Harness::start().await;
        let transfers = h.paid_batch("b-official", 1).await;
        let reference = ItemReference {
            batch_id: "b-official".into(),
            item_id: transfers[0].item_id.clone(),
        };
        let body = transfer_event_json(
            "evt_official",
            "transfer.created",
            &transfers[0].id,
            &reference,
            None,
        );
        let header = run_python(
            "import sys, stripe; print(stripe.WebhookSignature.generate_signature_header(sys.argv[1], sys.argv[2]))",
            &[&body, SECRET],
        );
        assert!(
            header.starts_with("t=") && header.contains(",v1="),
            "{header}"
        );

        let response = h.post("/webhooks/sandbox", &body, Some(&header)).await;

        assert_eq!(result(&response), "applied", "{response:?}");
        let forged = run_python(
            "import sys, stripe; print(stripe.WebhookSignature.generate_signature_header(sys.argv[1], sys.argv[2]))",
            &[&body, "whsec_not_ours"],
        );
        let refused = h.post("/webhooks/sandbox", &body, Some(&forged)).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn stripe_python_accepts_our_signatures() {
        let body = r#"{"id":"evt_ours","object":"event","type":"transfer.created"}"#;
        let header = signature_header(SECRET, now_secs(), body.as_bytes());
        let verdict = run_python(
            "import sys, stripe\ntry:\n    stripe.WebhookSignature.verify_header(sys.argv[1], sys.argv[2], sys.argv[3], 300)\n    print('valid')\nexcept stripe.SignatureVerificationError as e:\n    print('invalid', e)",
            &[body, &header, SECRET],
        );
        assert_eq!(verdict, "valid");
        let tampered = run_python(
            "import sys, stripe\ntry:\n    stripe.WebhookSignature.verify_header(sys.argv[1], sys.argv[2], sys.argv[3], 300)\n    print('valid')\nexcept stripe.SignatureVerificationError as e:\n    print('invalid')",
            &[&body.replace("evt_ours", "evt_theirs"), &header, SECRET],
        );
        assert_eq!(tampered, "invalid");
    }
}
