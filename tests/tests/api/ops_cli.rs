//! The operator CLI (`payouts-ops`): its payouts-table commands (`status`, `items`, `item`, and
//! the batch check of `enqueue` / `retry`) against a real DynamoDB API (dynoxide in-process, or
//! the endpoint in `AWS_ENDPOINT_URL_DYNAMODB`), its queue commands (`enqueue`, `retry`,
//! `dlq peek`, `redrive`) against moto's SQS server, the emergency stop (`pause`, `resume`,
//! `pause --status`) against moto's Lambda API (and a small fake Lambda for the states moto
//! skips: `Disabling`, `Enabling`, a busy mapping), its JSON output, and its command line
//! (clap: `--help` everywhere, usage errors exit 2).

use aws_sdk_dynamodb::types::AttributeValue;
use integration_tests::{TestEnv, items, number, test_config};
use payouts_core::domain::ItemStatus;
use payouts_core::ports::webhook::{ItemReference, PaymentEvent, PaymentEventKind};
use payouts_core::settlement::apply_payment_event;
use payouts_ops::aws_sdk_lambda as lambda;
use payouts_ops::clap::Parser;
use payouts_ops::clap::error::ErrorKind;
use payouts_ops::cli::{Cli, Command, DlqCommand};
use payouts_ops::{
    Action, EXIT_BATCH_NOT_FOUND, EXIT_RUNTIME, EXIT_USAGE, Execution, Mapping, MappingError,
    NoProgress, OpsError, Output, Progress, RedriveMethod, RedriveOptions, Report, SwitchOptions,
    batch_status, enqueue, execution_status, list_items, names_function, pause, peek_dlq, redrive,
    render, resume, retry, select_mapping, show_item, status_with_items, unsupported_operation,
};
use payouts_psp::sandbox::SandboxPsp;
use payouts_store_dynamodb::s;
use payouts_store_dynamodb::schema::{attr, keys};
use std::collections::HashMap;
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

/// Records every progress report, to check that long reads report each page.
#[derive(Default)]
struct RecordedProgress {
    updates: Vec<(String, u64, Option<u64>)>,
    finished: usize,
}

impl Progress for RecordedProgress {
    fn update(&mut self, unit: &str, done: u64, total: Option<u64>) {
        self.updates.push((unit.to_owned(), done, total));
    }
    fn finish(&mut self) {
        self.finished += 1;
    }
}

fn json(report: &impl Report) -> serde_json::Value {
    let text = render(report, Output::Json);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not one JSON document ({e}): {text}"))
}

/// Batch `b-ops`, 23 items paid by the executor: 17 processing, 3 pending_kyc (unverified),
/// 2 failed (the sandbox rejects the account), 1 with no settings (pending_kyc too); then one
/// paid by its event.
async fn paid_batch() -> TestEnv {
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
    env
}

#[tokio::test]
async fn status_reads_live_counts_in_two_requests_and_items_pages_through_every_item() {
    let env = paid_batch().await;

    let status = batch_status(&env.store, "b-ops", Some(5), &mut NoProgress)
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
    assert_eq!(status.pages, 0);
    assert!(status.live_counts);
    assert_eq!(status.total, 23);
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
    let shown = status.to_string();
    assert!(
        shown.starts_with("batch b-ops provider=sandbox currency=USD status=executing items=23"),
        "{shown}"
    );
    assert!(
        shown.contains("payouts-ops items b-ops --status failed")
            && shown.contains("payouts-ops items b-ops --status pending_kyc"),
        "says how to list the items that need attention: {shown}"
    );
    env.requests.reset();

    let mut progress = RecordedProgress::default();
    let all = list_items(&env.store, "b-ops", None, Some(5), &mut progress)
        .await
        .unwrap();
    assert_eq!(all.items.len(), 23);
    assert_eq!(all.read, 23);
    assert!(all.pages >= 5, "23 items in pages of 5: {}", all.pages);
    assert_eq!(
        env.requests.get("Query") as usize,
        all.pages + 1,
        "the counts (for the progress total), and one Query per page"
    );
    assert_eq!(env.requests.get("GetItem"), 1, "the batch record");
    assert_eq!(progress.updates.len(), all.pages, "one report per page");
    assert_eq!(
        progress.updates.last(),
        Some(&("items read".to_owned(), 23, Some(23)))
    );
    assert_eq!(progress.finished, 1, "the progress line is cleared");
    for (status_name, n) in &status.counts {
        let listed = all
            .items
            .iter()
            .filter(|i| i.status == *status_name)
            .count();
        assert_eq!(
            listed as u64, *n,
            "{status_name}: the items agree with the counts"
        );
    }
    let paid = all
        .items
        .iter()
        .find(|i| i.item_id == "item-00010")
        .unwrap();
    assert_eq!(paid.status, ItemStatus::Paid);
    let processing = all
        .items
        .iter()
        .find(|i| i.item_id == "item-00006")
        .unwrap();
    assert!(
        processing
            .provider_payout_id
            .as_deref()
            .is_some_and(|id| id.starts_with("tr_sandbox_")),
        "{processing:?}"
    );
    assert_eq!(processing.attempt, 1);
    let shown = all.to_string();
    assert!(
        shown.starts_with("batch b-ops: 23 item(s) of 23 read"),
        "{shown}"
    );
    assert!(
        shown.contains("item-00006") && shown.contains("tr_sandbox_"),
        "{shown}"
    );

    // `status --items` (as scripts/run-local.sh prints a batch): the counts, then every item.
    let both = status_with_items(&env.store, "b-ops", None, &mut NoProgress)
        .await
        .unwrap();
    let shown = both.to_string();
    assert!(shown.starts_with("batch b-ops provider=sandbox"), "{shown}");
    assert!(
        shown.contains("batch b-ops: 23 item(s) of 23 read"),
        "{shown}"
    );
    assert!(
        !shown.contains("--status failed"),
        "no hint when the items follow: {shown}"
    );
    let as_json = json(&both);
    assert_eq!(as_json["batchId"], "b-ops");
    assert_eq!(as_json["counts"]["failed"], 2);
    assert_eq!(as_json["items"].as_array().unwrap().len(), 23);
    assert_eq!(as_json["items"][0]["itemId"], "item-00001");
}

#[tokio::test]
async fn items_with_a_status_lists_only_those_items_with_their_reasons() {
    let env = paid_batch().await;

    let failed = list_items(
        &env.store,
        "b-ops",
        Some(ItemStatus::Failed),
        None,
        &mut NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(failed.read, 23, "the whole batch is read");
    let lines: Vec<(&str, ItemStatus, &str, u64)> = failed
        .items
        .iter()
        .map(|i| {
            (
                i.item_id.as_str(),
                i.status,
                i.failure_reason.as_deref().unwrap_or(""),
                i.attempt,
            )
        })
        .collect();
    assert_eq!(
        lines.iter().map(|l| l.0).collect::<Vec<_>>(),
        ["item-00004", "item-00005"],
        "only the failed items, in item order: {lines:?}"
    );
    for (item, status, reason, attempt) in &lines {
        assert_eq!(*status, ItemStatus::Failed, "{item}");
        assert!(reason.starts_with("account_invalid"), "{item}: {reason}");
        assert_eq!(*attempt, 1, "{item}: one claim");
    }
    let shown = failed.to_string();
    assert!(
        shown.starts_with("batch b-ops: 2 failed item(s) of 23 read"),
        "{shown}"
    );
    let rows: Vec<&str> = shown.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "a header and two items: {shown}");
    assert!(
        rows[0].contains("ITEM") && rows[0].contains("REASON"),
        "{shown}"
    );
    for row in &rows[1..] {
        assert!(
            row.contains(" failed ") && row.contains("account_invalid"),
            "{row}"
        );
    }

    let kyc = list_items(
        &env.store,
        "b-ops",
        Some(ItemStatus::PendingKyc),
        None,
        &mut NoProgress,
    )
    .await
    .unwrap();
    let kyc: HashMap<&str, &str> = kyc
        .items
        .iter()
        .map(|i| {
            (
                i.item_id.as_str(),
                i.failure_reason.as_deref().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(kyc.len(), 4, "{kyc:?}");
    for item in ["item-00001", "item-00002", "item-00003"] {
        assert!(kyc[item].contains("not verified"), "{item}: {}", kyc[item]);
    }
    assert!(kyc["item-00023"].contains("no payout method"), "{kyc:?}");

    let none = list_items(
        &env.store,
        "b-ops",
        Some(ItemStatus::Submitting),
        None,
        &mut NoProgress,
    )
    .await
    .unwrap();
    assert!(none.items.is_empty());
    assert_eq!(
        none.to_string(),
        "batch b-ops: no submitting items (23 read)\n"
    );
}

#[tokio::test]
async fn json_output_is_one_document_with_camel_case_fields() {
    let env = paid_batch().await;

    let status = json(
        &batch_status(&env.store, "b-ops", None, &mut NoProgress)
            .await
            .unwrap(),
    );
    assert_eq!(status["batchId"], "b-ops");
    assert_eq!(status["provider"], "sandbox");
    assert_eq!(status["currency"], "USD");
    assert_eq!(status["status"], "executing");
    assert_eq!(status["total"], 23);
    assert_eq!(status["liveCounts"], true);
    assert!(
        status["startedAt"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{status}"
    );
    assert_eq!(
        status["counts"],
        serde_json::json!({"pending": 0, "pending_kyc": 4, "submitting": 0,
                           "processing": 16, "paid": 1, "failed": 2})
    );
    assert_eq!(status["unreadable"], serde_json::json!([]));

    let failed = json(
        &list_items(
            &env.store,
            "b-ops",
            Some(ItemStatus::Failed),
            None,
            &mut NoProgress,
        )
        .await
        .unwrap(),
    );
    assert_eq!(failed["batchId"], "b-ops");
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["read"], 23);
    let items = failed["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let first = items[0].as_object().unwrap();
    let mut fields: Vec<&str> = first.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "attempt",
            "failureReason",
            "itemId",
            "netAmount",
            "providerPayoutId",
            "status",
            "userId"
        ],
        "stable field names, absent values as null"
    );
    assert_eq!(first["itemId"], "item-00004");
    assert_eq!(first["status"], "failed");
    assert_eq!(first["attempt"], 1);
    assert!(
        first["failureReason"]
            .as_str()
            .unwrap()
            .starts_with("account_invalid")
    );
    assert_eq!(first["netAmount"], "10", "as DynamoDB returns the number");

    let all = json(
        &list_items(&env.store, "b-ops", None, None, &mut NoProgress)
            .await
            .unwrap(),
    );
    assert_eq!(all["status"], serde_json::Value::Null, "no filter");
    assert_eq!(all["items"].as_array().unwrap().len(), 23);

    let item = json(&show_item(&env.store, "b-ops", "item-00010").await.unwrap());
    assert_eq!(item["itemId"], "item-00010");
    assert_eq!(item["status"], "paid");
    assert!(
        item["providerPayoutId"]
            .as_str()
            .unwrap()
            .starts_with("tr_sandbox_")
    );
    assert_eq!(item["attempt"], 1);
    assert_eq!(item["keyGeneration"], 0);
    assert!(
        item["updatedAt"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{item}"
    );
    assert_eq!(item["leaseUntil"], serde_json::Value::Null, "released");
    // The timeline the run and the paid event wrote (the store appends it to every status write).
    let steps = item["timeline"].as_array().expect("a timeline");
    let moves: Vec<(&str, &str, u64)> = steps
        .iter()
        .map(|s| {
            (
                s["from"].as_str().unwrap_or("-"),
                s["to"].as_str().unwrap_or("-"),
                s["attempt"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    assert_eq!(
        moves,
        [
            ("pending", "submitting", 1),
            ("submitting", "processing", 1),
            ("processing", "paid", 0)
        ],
        "{item}"
    );
    assert_eq!(steps[0]["detail"], "claimed, key generation 0");
    assert_eq!(steps[1]["detail"], item["providerPayoutId"]);
    assert_eq!(steps[2]["event"], serde_json::Value::Null);
    assert!(
        steps
            .iter()
            .all(|s| s["at"].as_str().is_some_and(|t| t.ends_with('Z')))
    );
    assert_eq!(item["timelineProblems"], serde_json::json!([]));
    let shown = show_item(&env.store, "b-ops", "item-00010")
        .await
        .unwrap()
        .to_string();
    assert!(
        shown.contains("  pending -> submitting  attempt 1  claimed, key generation 0\n"),
        "{shown}"
    );
    assert!(
        shown.contains("  processing -> paid  attempt 0  tr_sandbox_"),
        "{shown}"
    );
    for field in [
        "batchId",
        "userId",
        "netAmount",
        "failureReason",
        "keyFirstUsedAt",
        "reconcileSince",
        "heldTransferIds",
        "otherKnownTransferIds",
        "duplicatePayoutIds",
        "timelineProblems",
    ] {
        assert!(item.get(field).is_some(), "{field} missing: {item}");
    }
}

#[tokio::test]
async fn item_shows_every_field_and_its_timeline_when_the_record_has_one() {
    let env = TestEnv::start().await;
    env.seed_batch("b-item", "sandbox", "USD", &items(3, "12.50"))
        .await;
    let step = |at: &str, from: &str, to: &str, attempt: u64, detail: Option<&str>| {
        let mut map = HashMap::from([
            ("at".to_owned(), s(at)),
            ("from".to_owned(), s(from)),
            ("to".to_owned(), s(to)),
            ("attempt".to_owned(), number(attempt)),
        ]);
        if let Some(detail) = detail {
            map.insert("detail".to_owned(), s(detail));
        }
        AttributeValue::M(map)
    };
    env.set_item_attributes(
        "b-item",
        "item-00001",
        &[
            (attr::STATUS, Some(s("failed"))),
            (attr::ATTEMPT, Some(number(2))),
            (attr::KEY_GENERATION, Some(number(1))),
            (
                attr::FAILURE_REASON,
                Some(s("account_invalid: No such destination")),
            ),
            (
                "history",
                Some(AttributeValue::L(vec![
                    step("2026-11-25T10:00:00.000Z", "pending", "submitting", 1, None),
                    step(
                        "2026-11-25T10:00:01.250Z",
                        "submitting",
                        "processing",
                        1,
                        Some("tr_1"),
                    ),
                    step(
                        "2026-11-25T10:05:00.000Z",
                        "processing",
                        "failed",
                        1,
                        Some("account_invalid: No such destination"),
                    ),
                    // A reversal: an event, no status change.
                    AttributeValue::M(HashMap::from([
                        ("at".to_owned(), s("2026-11-25T11:00:00.000Z")),
                        ("event".to_owned(), s("reversal")),
                        ("attempt".to_owned(), number(0)),
                        ("detail".to_owned(), s("returned by the bank")),
                    ])),
                ])),
            ),
        ],
    )
    .await;
    // A history entry the CLI cannot read: shown as a problem, never a failure.
    env.set_item_attributes(
        "b-item",
        "item-00002",
        &[(
            "history",
            Some(AttributeValue::L(vec![
                s("not a map"),
                AttributeValue::M(HashMap::from([
                    ("at".to_owned(), s("yesterday")),
                    ("to".to_owned(), s("pending_kyc")),
                    ("attempt".to_owned(), s("x")),
                ])),
            ])),
        )],
    )
    .await;
    env.requests.reset();

    let item = show_item(&env.store, "b-item", "item-00001").await.unwrap();
    assert_eq!(env.requests.total(), 1, "one GetItem");
    assert_eq!(item.status, ItemStatus::Failed);
    assert_eq!(item.attempt, 2);
    assert_eq!(item.key_generation, 1);
    assert_eq!(item.net_amount, "12.5", "as DynamoDB returns the number");
    assert_eq!(item.user_id, "user-00001");
    let timeline = item.timeline.as_ref().expect("a timeline");
    assert_eq!(timeline.len(), 4);
    assert_eq!(timeline[3].event.as_deref(), Some("reversal"));
    assert_eq!((&timeline[3].from, &timeline[3].to), (&None, &None));
    assert_eq!(timeline[1].at.as_deref(), Some("2026-11-25T10:00:01.250Z"));
    assert_eq!(timeline[1].from.as_deref(), Some("submitting"));
    assert_eq!(timeline[1].to.as_deref(), Some("processing"));
    assert_eq!(timeline[1].attempt, Some(1));
    assert_eq!(timeline[1].detail.as_deref(), Some("tr_1"));
    assert_eq!(timeline[0].detail, None);
    assert!(
        item.timeline_problems.is_empty(),
        "{:?}",
        item.timeline_problems
    );
    let shown = item.to_string();
    assert!(
        shown.starts_with("item item-00001 of batch b-item\n"),
        "{shown}"
    );
    for expected in [
        "status           failed",
        "failure reason   account_invalid: No such destination",
        "attempt          2",
        "key generation   1",
        "timeline:",
        "2026-11-25T10:00:01.250Z  submitting -> processing  attempt 1  tr_1",
        "2026-11-25T10:05:00.000Z  processing -> failed  attempt 1  account_invalid: No such destination",
        "2026-11-25T11:00:00.000Z  reversal  attempt 0  returned by the bank",
    ] {
        assert!(shown.contains(expected), "{expected:?} in:\n{shown}");
    }
    assert!(!shown.contains("no timeline recorded"), "{shown}");
    let as_json = json(&item);
    assert_eq!(as_json["timeline"][2]["to"], "failed");
    assert_eq!(as_json["timeline"][3]["event"], "reversal");
    assert_eq!(as_json["timeline"][3]["to"], serde_json::Value::Null);
    assert_eq!(as_json["timeline"][2]["attempt"], 1);
    assert_eq!(as_json["timeline"][0]["at"], "2026-11-25T10:00:00.000Z");

    let plain = show_item(&env.store, "b-item", "item-00003").await.unwrap();
    assert_eq!(plain.timeline, None);
    assert_eq!(plain.status, ItemStatus::Pending);
    let shown = plain.to_string();
    assert!(shown.contains("no timeline recorded"), "{shown}");
    assert!(shown.contains("transfer id      -"), "{shown}");

    let odd = show_item(&env.store, "b-item", "item-00002").await.unwrap();
    let timeline = odd.timeline.as_ref().unwrap();
    assert_eq!(timeline.len(), 1, "the map entry is kept: {timeline:?}");
    assert_eq!(timeline[0].to.as_deref(), Some("pending_kyc"));
    assert_eq!(timeline[0].attempt, None);
    assert_eq!(
        odd.timeline_problems.len(),
        3,
        "{:?}",
        odd.timeline_problems
    );
    assert!(odd.timeline_problems[0].contains("entry 0 is not a map"));
    assert!(
        odd.to_string()
            .contains("(timeline: entry 1: `at` \"yesterday\"")
    );

    let err = show_item(&env.store, "b-item", "item-99999")
        .await
        .unwrap_err();
    assert!(matches!(err, OpsError::ItemNotFound { .. }), "{err}");
    assert_eq!(err.exit_code(), EXIT_BATCH_NOT_FOUND);
    assert!(
        err.to_string().contains("payouts-ops items b-item"),
        "{err}"
    );
    let err = show_item(&env.store, "b-nope", "item-00001")
        .await
        .unwrap_err();
    assert!(matches!(err, OpsError::BatchNotFound(_)), "{err}");
}

#[tokio::test]
async fn status_and_items_report_unreadable_records_instead_of_failing() {
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

    let mut progress = RecordedProgress::default();
    let status = batch_status(&env.store, "b-bad", None, &mut progress)
        .await
        .unwrap();
    assert!(!status.live_counts, "not started: counted from the items");
    assert_eq!(status.count(ItemStatus::Pending), 2);
    assert_eq!(status.unreadable.len(), 1, "{:?}", status.unreadable);
    assert!(status.unreadable[0].contains("userId"));
    assert_eq!(status.total, 3);
    assert_eq!(
        progress.updates,
        vec![("items counted".to_owned(), 3, None)]
    );
    let shown = status.to_string();
    assert!(shown.contains("unreadable records (1)"), "{shown}");
    assert!(shown.contains("not started"), "{shown}");

    let listed = list_items(
        &env.store,
        "b-bad",
        Some(ItemStatus::Failed),
        None,
        &mut NoProgress,
    )
    .await
    .unwrap();
    assert!(listed.items.is_empty());
    assert_eq!(listed.unreadable.len(), 1, "whatever the filter");
    assert!(listed.to_string().contains("unreadable records (1)"));
}

#[tokio::test]
async fn unknown_batches_exit_with_batch_not_found_and_nothing_is_enqueued() {
    let env = TestEnv::start().await;
    env.seed_batch("b-known", "sandbox", "USD", &items(1, "1"))
        .await;

    let err = batch_status(&env.store, "b-missing", None, &mut NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, OpsError::BatchNotFound(ref b) if b == "b-missing"));
    assert_eq!(err.exit_code(), EXIT_BATCH_NOT_FOUND);
    assert!(err.to_string().contains("does not exist"), "{err}");
    let err = list_items(&env.store, "b-missing", None, None, &mut NoProgress)
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), EXIT_BATCH_NOT_FOUND, "{err}");

    // The batch check comes before any SQS call: this client could not send anything.
    let sqs = unreachable_sqs().await;
    let err = enqueue(&env.store, &sqs, "http://queue", "b-missing", None)
        .await
        .unwrap_err();
    assert!(matches!(err, OpsError::BatchNotFound(_)), "{err}");
    assert_eq!(err.exit_code(), EXIT_BATCH_NOT_FOUND);
    let err = retry(&env.store, &sqs, "http://queue", "b-missing", 0)
        .await
        .unwrap_err();
    assert!(matches!(err, OpsError::BatchNotFound(_)), "{err}");

    let err = enqueue(&env.store, &sqs, "http://queue", "bad id", None)
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), EXIT_USAGE, "{err}");
    let err = retry(&env.store, &sqs, "http://queue", "bad id", 0)
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), EXIT_USAGE, "{err}");

    // A known batch gets as far as SQS (which is unreachable here): a runtime error, exit 1.
    let err = enqueue(&env.store, &sqs, "http://queue", "b-known", None)
        .await
        .unwrap_err();
    assert!(matches!(err, OpsError::Runtime(_)), "{err}");
    assert_eq!(err.exit_code(), 1);
    assert!(
        err.to_string().contains("then run the command again"),
        "{err}"
    );
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

    /// The AWS settings of every client of this server: its endpoint, us-east-1, test keys.
    async fn config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .load()
            .await
    }

    pub(crate) async fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.config().await)
    }

    pub(crate) async fn lambda(&self) -> lambda::Client {
        lambda::Client::new(&self.config().await)
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

/// A job body for batch `batch_id`.
fn job_body(batch_id: &str) -> String {
    serde_json::to_string(&payouts_core::job::PayoutJob::for_batch(batch_id, None)).unwrap()
}

/// How many messages the queue holds, visible or not.
async fn queue_depth(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> u64 {
    use aws_sdk_sqs::types::QueueAttributeName as Name;
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(Name::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default();
    [
        Name::ApproximateNumberOfMessages,
        Name::ApproximateNumberOfMessagesNotVisible,
    ]
    .iter()
    .map(|name| {
        attributes
            .get(name)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    })
    .sum()
}

#[tokio::test]
async fn enqueue_and_retry_send_jobs_the_executor_accepts() {
    let moto = Moto::start().await;
    let env = paid_batch().await;
    env.seed_batch("b-new", "sandbox", "USD", &items(1, "1"))
        .await;
    let sqs = moto.sqs().await;
    let jobs = create_queue(&sqs, "payout-jobs").await;

    let sent = enqueue(&env.store, &sqs, &jobs, "b-ops", Some("ops-test".into()))
        .await
        .unwrap();
    assert!(!sent.message_id.is_empty());
    assert_eq!(sent.job_id.as_deref(), Some("ops-test"));
    assert!(
        sent.to_string()
            .starts_with("enqueued payout.execute for batch b-ops: message ")
    );
    let missing = enqueue(&env.store, &sqs, &jobs, "b-nope", None).await;
    assert!(matches!(missing, Err(OpsError::BatchNotFound(_))));

    // 2026-11-26T04:30:00.000Z
    let retried = retry(&env.store, &sqs, &jobs, "b-ops", 1_795_667_400_000)
        .await
        .unwrap();
    assert_eq!(
        retried.sent.job_id.as_deref(),
        Some("ops-retry-2026-11-26T04:30:00.000Z")
    );
    assert!(retried.counted);
    assert_eq!((retried.failed, retried.pending_kyc), (2, 4));
    assert_eq!(retried.batch_status, "executing");
    let shown = retried.to_string();
    assert!(
        shown.contains("retries 2 failed and 4 pending_kyc"),
        "{shown}"
    );
    assert!(
        shown.contains(&retried.sent.body),
        "prints what it sent: {shown}"
    );
    let as_json = json(&retried);
    assert_eq!(as_json["sent"]["batchId"], "b-ops");
    assert_eq!(
        as_json["sent"]["messageId"],
        retried.sent.message_id.as_str()
    );
    assert_eq!(as_json["failed"], 2);

    let fresh = retry(&env.store, &sqs, &jobs, "b-new", 1_795_667_400_000)
        .await
        .unwrap();
    assert!(!fresh.counted);
    assert!(fresh.to_string().contains("has not started"), "{fresh}");

    let sent = drain(&sqs, &jobs).await;
    assert_eq!(sent.len(), 3, "only the known batches' jobs: {sent:?}");
    let mut parsed: Vec<(String, Option<String>)> = sent
        .iter()
        .map(|(body, _)| {
            let job = payouts_core::job::PayoutJob::parse(Some(body)).expect("a valid job");
            assert!(job.payload.segment.is_none() && job.payload.resume_after.is_none());
            (job.payload.batch_id, job.job_id)
        })
        .collect();
    parsed.sort();
    assert_eq!(
        parsed,
        [
            (
                "b-new".to_owned(),
                Some("ops-retry-2026-11-26T04:30:00.000Z".to_owned())
            ),
            (
                "b-ops".to_owned(),
                Some("ops-retry-2026-11-26T04:30:00.000Z".to_owned())
            ),
            ("b-ops".to_owned(), Some("ops-test".to_owned())),
        ]
    );
}

#[tokio::test]
async fn dlq_peek_shows_messages_and_leaves_them_in_the_dlq() {
    let moto = Moto::start().await;
    let sqs = moto.sqs().await;
    let dlq = create_queue(&sqs, "payout-jobs-dlq").await;
    for i in 0..3 {
        sqs.send_message()
            .queue_url(&dlq)
            .message_body(job_body(&format!("b-dlq-{i}")))
            .send()
            .await
            .unwrap();
    }
    sqs.send_message()
        .queue_url(&dlq)
        .message_body("not a job")
        .send()
        .await
        .unwrap();

    let peek = peek_dlq(&sqs, &dlq, 10).await.unwrap();
    assert_eq!(peek.messages.len(), 4, "{peek:?}");
    assert_eq!(peek.approximate_messages, Some(4));
    assert!(peek.warnings.is_empty(), "{:?}", peek.warnings);
    let mut batches: Vec<Option<&str>> = peek
        .messages
        .iter()
        .map(|m| m.batch_id.as_deref())
        .collect();
    batches.sort();
    assert_eq!(
        batches,
        [None, Some("b-dlq-0"), Some("b-dlq-1"), Some("b-dlq-2")]
    );
    for m in &peek.messages {
        assert!(!m.message_id.is_empty());
        assert_eq!(m.receive_count, Some(1), "{m:?}");
        assert!(
            m.sent_at.as_deref().is_some_and(|t| t.ends_with('Z')),
            "{m:?}"
        );
    }
    let shown = peek.to_string();
    assert!(
        shown.starts_with("4 message(s) of about 4 in the DLQ (left there)"),
        "{shown}"
    );
    assert!(
        shown.contains("receives 1") && shown.contains("batch b-dlq-1"),
        "{shown}"
    );
    assert!(shown.contains("  not a job\n"), "{shown}");

    // Visible again at once: a second peek sees them all (and counts a second receive).
    let again = peek_dlq(&sqs, &dlq, 2).await.unwrap();
    assert_eq!(again.messages.len(), 2, "--max 2");
    assert!(
        again.messages.iter().all(|m| m.receive_count == Some(2)),
        "{again:?}"
    );
    let as_json = json(&again);
    let first = as_json["messages"][0].as_object().unwrap();
    let mut fields: Vec<&str> = first.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["batchId", "body", "messageId", "receiveCount", "sentAt"]
    );
    assert_eq!(as_json["approximateMessages"], 4);

    assert_eq!(queue_depth(&sqs, &dlq).await, 4, "nothing deleted");
    assert_eq!(
        drain(&sqs, &dlq).await.len(),
        4,
        "every message receivable now"
    );
}

#[tokio::test]
async fn redrive_moves_each_dlq_message_to_the_jobs_queue_once() {
    let moto = Moto::start().await;
    let sqs = moto.sqs().await;
    let jobs = create_queue(&sqs, "payout-jobs").await;
    let dlq = create_queue(&sqs, "payout-jobs-dlq").await;
    let bodies: Vec<String> = (0..13).map(|i| job_body(&format!("b-{i:02}"))).collect();
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

    let by_hand = |max| RedriveOptions {
        max: Some(max),
        ..RedriveOptions::default()
    };
    let mut progress = RecordedProgress::default();
    let report = redrive(&sqs, &dlq, &jobs, by_hand(4), &mut progress)
        .await
        .unwrap();
    assert_eq!(report.moved, 4, "--max 4");
    assert_eq!(report.method, RedriveMethod::ByHand);
    assert_eq!(progress.updates.len(), 4, "one report per message");
    assert_eq!(
        progress.updates.last(),
        Some(&("messages moved".to_owned(), 4, Some(4)))
    );
    assert_eq!(progress.finished, 1);

    // Without --max: SQS's message-move task. moto does not implement StartMessageMoveTask
    // (it answers HTTP 500 without an AWS error code), so the messages move by hand.
    let report = redrive(
        &sqs,
        &dlq,
        &jobs,
        RedriveOptions::default(),
        &mut NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(report.moved, 9, "the rest");
    assert_eq!(report.method, RedriveMethod::ByHand, "{report:?}");
    assert!(report.task.is_none());
    let because = report.by_hand_because.as_deref().unwrap_or_default();
    assert!(
        because.contains("does not support message-move tasks"),
        "{because}"
    );
    let shown = report.to_string();
    assert!(
        shown.starts_with("redrove 9 message(s) from the DLQ"),
        "{shown}"
    );
    let as_json = json(&report);
    assert_eq!(as_json["method"], "byHand");
    assert_eq!(as_json["moved"], 9);

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
    let err = redrive(&sqs, &dlq, &missing_queue, by_hand(5), &mut NoProgress)
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 1, "{err}");
    assert!(err.to_string().contains("moved 0"), "{err}");
    // Without --max the jobs queue's ARN is read first: it fails before anything moves.
    let err = redrive(
        &sqs,
        &dlq,
        &missing_queue,
        RedriveOptions::default(),
        &mut NoProgress,
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), 1, "{err}");
    assert!(err.to_string().contains("QueueArn"), "{err}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        queue_depth(&sqs, &dlq).await,
        1,
        "the message stays in the DLQ"
    );

    let err = redrive(&sqs, &dlq, &dlq, RedriveOptions::default(), &mut NoProgress)
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), EXIT_USAGE, "{err}");
}

/// What `redrive` takes for "this service has no move tasks", and what it does not.
#[test]
fn only_an_unsupported_operation_answer_makes_redrive_move_by_hand() {
    for code in [
        "UnknownOperationException",
        "InvalidAction",
        "UnsupportedOperation",
        "AWS.SimpleQueueService.UnsupportedOperation",
        "NotImplemented",
    ] {
        assert!(unsupported_operation(Some(code), Some(400)), "{code}");
    }
    assert!(unsupported_operation(None, Some(501)));
    assert!(unsupported_operation(None, Some(500)), "moto's answer");
    for (code, status) in [
        (Some("InternalError"), Some(500)),
        (Some("AccessDenied"), Some(403)),
        (Some("InvalidParameterValue"), Some(400)),
        (Some("ThrottlingException"), Some(400)),
        (None, Some(503)),
        (None, None),
    ] {
        assert!(!unsupported_operation(code, status), "{code:?} {status:?}");
    }
}

// ------------------------------------------------------------- Lambda: pause / resume (moto)

/// Creates the IAM role `name` in moto, whose CreateFunction wants a role that exists. The
/// tests have no IAM client: one unsigned Query-API request, which moto routes to IAM by the
/// credential scope in its Authorization header.
async fn create_role(moto: &Moto, name: &str) -> String {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("Action", "CreateRole")
        .append_pair("Version", "2010-05-08")
        .append_pair("RoleName", name)
        .append_pair(
            "AssumeRolePolicyDocument",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .finish();
    let request = http::Request::post(format!("{}/", moto.endpoint))
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/iam/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let text = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert!(
        status.is_success(),
        "CreateRole: {status} {}",
        String::from_utf8_lossy(&text)
    );
    format!("arn:aws:iam::123456789012:role/{name}")
}

/// Creates function `name` from the smallest zip there is (an empty archive: moto does not
/// run it, nothing here invokes it).
async fn create_function(lambda: &lambda::Client, role: &str, name: &str) -> String {
    let empty_zip = [b"PK\x05\x06".as_slice(), &[0; 18]].concat();
    lambda
        .create_function()
        .function_name(name)
        .runtime(lambda::types::Runtime::Providedal2023)
        .role(role)
        .handler("bootstrap")
        .code(
            lambda::types::FunctionCode::builder()
                .zip_file(lambda::primitives::Blob::new(empty_zip))
                .build(),
        )
        .send()
        .await
        .unwrap()
        .function_arn
        .unwrap()
}

/// An SQS event source mapping from `queue_arn` to `function`, as the template's `PayoutJobs`.
async fn create_mapping(
    lambda: &lambda::Client,
    queue_arn: &str,
    function: &str,
    enabled: bool,
) -> String {
    lambda
        .create_event_source_mapping()
        .event_source_arn(queue_arn)
        .function_name(function)
        .batch_size(1)
        .enabled(enabled)
        .send()
        .await
        .unwrap()
        .uuid
        .unwrap()
}

/// The mapping's `State` as Lambda reports it.
async fn state_of(lambda: &lambda::Client, uuid: &str) -> String {
    lambda
        .get_event_source_mapping()
        .uuid(uuid)
        .send()
        .await
        .unwrap()
        .state
        .unwrap()
}

/// Waits no longer than a test should.
fn quick() -> SwitchOptions {
    SwitchOptions {
        wait: true,
        poll_every: Duration::from_millis(10),
        timeout: Duration::from_secs(10),
    }
}

#[tokio::test]
async fn pause_and_resume_disable_and_enable_the_jobs_queue_mapping() {
    let moto = Moto::start().await;
    let (sqs, lambda) = (moto.sqs().await, moto.lambda().await);
    let jobs = create_queue(&sqs, "payout-jobs").await;
    let queue_arn = payouts_ops::jobs_queue_arn(&sqs, &jobs).await.unwrap();
    let role = create_role(&moto, "payout-execute").await;
    let function_arn = create_function(&lambda, &role, "payouts-test-payout-execute").await;
    let uuid = create_mapping(&lambda, &queue_arn, "payouts-test-payout-execute", true).await;
    // Another queue's mapping, which no command here may touch.
    let other_queue = create_queue(&sqs, "other-jobs").await;
    let other_arn = payouts_ops::jobs_queue_arn(&sqs, &other_queue)
        .await
        .unwrap();
    create_function(&lambda, &role, "other-consumer").await;
    let other = create_mapping(&lambda, &other_arn, "other-consumer", true).await;

    let status = execution_status(&sqs, &lambda, &jobs, None).await.unwrap();
    assert_eq!(status.action, Action::Status);
    assert_eq!(status.execution, Execution::Running);
    assert_eq!(status.queue_arn, queue_arn);
    assert_eq!(status.mapping.uuid, uuid);
    assert_eq!(status.mapping.function_arn, function_arn);
    assert_eq!(status.mapping.event_source_arn, queue_arn);
    assert!(!status.changed);
    let shown = status.to_string();
    assert!(
        shown.starts_with(&format!(
            "payout execution is running: event source mapping {uuid} of payouts-test-payout-execute is Enabled\n  reads {queue_arn}\n"
        )),
        "{shown}"
    );
    assert!(
        shown.contains("pause at once with: payouts-ops pause"),
        "{shown}"
    );

    let mut progress = RecordedProgress::default();
    let paused = pause(&sqs, &lambda, &jobs, None, quick(), &mut progress)
        .await
        .unwrap();
    assert_eq!(state_of(&lambda, &uuid).await, "Disabled");
    assert_eq!(paused.action, Action::Pause);
    assert_eq!(paused.execution, Execution::Paused);
    assert_eq!(paused.mapping.state, "Disabled");
    assert_eq!(paused.previous_state, "Enabled");
    assert!(paused.changed);
    assert!(
        progress.updates.is_empty(),
        "moto disables at once: nothing to wait for ({:?})",
        progress.updates
    );
    let shown = paused.to_string();
    assert!(
        shown.starts_with(&format!(
            "paused payout execution: event source mapping {uuid} of payouts-test-payout-execute is Disabled\n  reads {queue_arn}\n  was Enabled\n"
        )),
        "{shown}"
    );
    for said in [
        "jobs wait in the jobs queue",
        "runs already started finish",
        "webhooks keep settling items",
        "lasts until the next deploy",
        "sam deploy --parameter-overrides PayoutExecutionEnabled=false",
        "resume with: payouts-ops resume",
    ] {
        assert!(shown.contains(said), "{said:?} in:\n{shown}");
    }
    let as_json = json(&paused);
    let mut fields: Vec<&str> = as_json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "action",
            "changed",
            "execution",
            "mapping",
            "notes",
            "previousState",
            "queueArn"
        ]
    );
    assert_eq!(as_json["action"], "pause");
    assert_eq!(as_json["execution"], "paused");
    assert_eq!(as_json["previousState"], "Enabled");
    assert_eq!(as_json["changed"], true);
    assert_eq!(as_json["queueArn"], queue_arn.as_str());
    assert_eq!(as_json["mapping"]["uuid"], uuid.as_str());
    assert_eq!(as_json["mapping"]["state"], "Disabled");
    assert_eq!(as_json["mapping"]["functionArn"], function_arn.as_str());
    assert_eq!(as_json["mapping"]["eventSourceArn"], queue_arn.as_str());
    assert!(
        as_json["mapping"]["lastModified"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{as_json}"
    );
    assert!(
        as_json["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("PayoutExecutionEnabled=false")),
        "{as_json}"
    );
    assert_eq!(
        state_of(&lambda, &other).await,
        "Enabled",
        "another queue's mapping is left alone"
    );

    // Again: nothing to change.
    let again = pause(&sqs, &lambda, &jobs, None, quick(), &mut NoProgress)
        .await
        .unwrap();
    assert!(!again.changed);
    assert_eq!(again.execution, Execution::Paused);
    assert!(
        again
            .to_string()
            .starts_with("payout execution was already paused: "),
        "{again}"
    );
    let status = execution_status(&sqs, &lambda, &jobs, None).await.unwrap();
    assert_eq!(status.execution, Execution::Paused);
    let shown = status.to_string();
    assert!(shown.starts_with("payout execution is paused: "), "{shown}");
    assert!(
        shown.contains("webhooks keep settling items")
            && shown.contains("resume with: payouts-ops resume"),
        "{shown}"
    );
    assert_eq!(json(&status)["action"], "status");

    let resumed = resume(&sqs, &lambda, &jobs, None, quick(), &mut NoProgress)
        .await
        .unwrap();
    assert_eq!(state_of(&lambda, &uuid).await, "Enabled");
    assert_eq!(resumed.action, Action::Resume);
    assert_eq!(resumed.execution, Execution::Running);
    assert_eq!(resumed.previous_state, "Disabled");
    assert!(resumed.changed);
    let shown = resumed.to_string();
    assert!(shown.starts_with("resumed payout execution: "), "{shown}");
    assert!(
        shown.contains("sam deploy --parameter-overrides PayoutExecutionEnabled=true"),
        "{shown}"
    );
    let no_wait = SwitchOptions {
        wait: false,
        ..quick()
    };
    let again = resume(&sqs, &lambda, &jobs, None, no_wait, &mut NoProgress)
        .await
        .unwrap();
    assert!(!again.changed);
    assert!(
        again
            .to_string()
            .starts_with("payout execution was already running: "),
        "{again}"
    );
    assert_eq!(state_of(&lambda, &other).await, "Enabled");
}

#[tokio::test]
async fn pause_needs_exactly_one_mapping_on_the_jobs_queue_or_a_function_to_pick_one() {
    let moto = Moto::start().await;
    let (sqs, lambda) = (moto.sqs().await, moto.lambda().await);
    let jobs = create_queue(&sqs, "payout-jobs").await;
    let queue_arn = payouts_ops::jobs_queue_arn(&sqs, &jobs).await.unwrap();

    // No mapping reads the queue: a configuration error (exit 2) that says what to check.
    let err = execution_status(&sqs, &lambda, &jobs, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, OpsError::Mapping(MappingError::None { .. })),
        "{err:?}"
    );
    assert_eq!(err.exit_code(), EXIT_USAGE);
    assert_eq!(
        err.to_string(),
        format!("no event source mapping reads {queue_arn}: check --queue-url / --function")
    );
    let err = pause(&sqs, &lambda, &jobs, None, quick(), &mut NoProgress)
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), EXIT_USAGE, "{err}");

    // Two functions read it: the error lists both and asks for --function.
    let role = create_role(&moto, "payout-execute").await;
    let a_arn = create_function(&lambda, &role, "payouts-a-payout-execute").await;
    create_function(&lambda, &role, "payouts-b-payout-execute").await;
    let a = create_mapping(&lambda, &queue_arn, "payouts-a-payout-execute", true).await;
    let b = create_mapping(&lambda, &queue_arn, "payouts-b-payout-execute", true).await;
    for err in [
        execution_status(&sqs, &lambda, &jobs, None)
            .await
            .unwrap_err(),
        pause(&sqs, &lambda, &jobs, None, quick(), &mut NoProgress)
            .await
            .unwrap_err(),
        resume(&sqs, &lambda, &jobs, Some("  "), quick(), &mut NoProgress)
            .await
            .unwrap_err(),
    ] {
        assert!(
            matches!(err, OpsError::Mapping(MappingError::Several { ref mappings, .. }) if mappings.len() == 2),
            "{err:?}"
        );
        assert_eq!(err.exit_code(), EXIT_USAGE);
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("2 event source mappings read {queue_arn}: ")),
            "{message}"
        );
        for listed in [
            &a,
            &b,
            "payouts-a-payout-execute",
            "payouts-b-payout-execute",
        ] {
            assert!(message.contains(listed), "{listed} in {message}");
        }
        assert!(
            message.contains("pass --function NAME (or set PAYOUT_EXECUTE_FUNCTION)"),
            "{message}"
        );
    }
    assert_eq!(state_of(&lambda, &a).await, "Enabled", "nothing changed");
    assert_eq!(state_of(&lambda, &b).await, "Enabled", "nothing changed");

    // --function picks one, by name or ARN; the other is left alone.
    let paused = pause(
        &sqs,
        &lambda,
        &jobs,
        Some("payouts-b-payout-execute"),
        quick(),
        &mut NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(paused.mapping.uuid, b);
    assert_eq!(state_of(&lambda, &b).await, "Disabled");
    assert_eq!(state_of(&lambda, &a).await, "Enabled");
    let status = execution_status(&sqs, &lambda, &jobs, Some(&a_arn))
        .await
        .unwrap();
    assert_eq!(
        (status.mapping.uuid.as_str(), status.execution),
        (a.as_str(), Execution::Running)
    );

    // A function that does not read the queue: the error names who does.
    let err = pause(
        &sqs,
        &lambda,
        &jobs,
        Some("payouts-c-payout-execute"),
        quick(),
        &mut NoProgress,
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), EXIT_USAGE);
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "no event source mapping reads {queue_arn} for function \"payouts-c-payout-execute\": check --queue-url / --function (it is read by: "
        )),
        "{message}"
    );
    assert!(message.contains(&a) && message.contains(&b), "{message}");

    // A queue URL that names no queue: an AWS error (exit 1) that names the setting.
    let missing_queue = format!("{}/123456789012/no-such-queue", moto.endpoint);
    let err = pause(
        &sqs,
        &lambda,
        &missing_queue,
        None,
        quick(),
        &mut NoProgress,
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), EXIT_RUNTIME, "{err}");
    let message = err.to_string();
    assert!(
        message.contains("QueueArn") && message.contains("--queue-url / PAYOUT_JOBS_QUEUE_URL"),
        "{message}"
    );
}

/// A Lambda API that answers for one mapping as real Lambda does and moto does not: the state
/// goes through `Disabling` / `Enabling` for a few reads before it settles (or never, when
/// `stuck`), and an update can be refused with `ResourceInUseException`.
struct FakeLambda {
    endpoint: String,
    state: std::sync::Arc<std::sync::Mutex<FakeMapping>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct FakeMapping {
    queue_arn: String,
    state: String,
    /// Where the state goes after `reads_to_settle` GetEventSourceMapping calls.
    settles_to: Option<String>,
    reads_to_settle: usize,
    stuck: bool,
    in_use: bool,
    updates: usize,
}

impl FakeMapping {
    fn answer(&self) -> serde_json::Value {
        serde_json::json!({
            "UUID": "fake-uuid",
            "FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:payouts-test-payout-execute:live",
            "EventSourceArn": self.queue_arn,
            "State": self.state,
            "StateTransitionReason": "USER_INITIATED",
            "LastModified": 1_795_667_400.0,
        })
    }
}

impl FakeLambda {
    async fn start(queue_arn: &str, state: &str) -> FakeLambda {
        let shared = std::sync::Arc::new(std::sync::Mutex::new(FakeMapping {
            queue_arn: queue_arn.to_owned(),
            state: state.to_owned(),
            ..FakeMapping::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        FakeLambda::handle(state.clone(), request)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeLambda {
            endpoint,
            state: shared,
            task,
        }
    }

    async fn handle(
        state: std::sync::Arc<std::sync::Mutex<FakeMapping>>,
        request: http::Request<hyper::body::Incoming>,
    ) -> Result<http::Response<http_body_util::Full<bytes::Bytes>>, std::convert::Infallible> {
        let (parts, body) = request.into_parts();
        let body = http_body_util::BodyExt::collect(body)
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let mut mapping = state.lock().unwrap();
        let path = parts.uri.path().trim_end_matches('/');
        let (status, error, answer) = match (parts.method.as_str(), path) {
            ("GET", "/2015-03-31/event-source-mappings") => (
                200,
                None,
                serde_json::json!({ "EventSourceMappings": [mapping.answer()] }),
            ),
            ("PUT", "/2015-03-31/event-source-mappings/fake-uuid") if mapping.in_use => (
                409,
                Some("ResourceInUseException"),
                serde_json::json!({ "message": "The resource you requested is currently in use." }),
            ),
            ("PUT", "/2015-03-31/event-source-mappings/fake-uuid") => {
                let asked: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let enabled = asked["Enabled"].as_bool().unwrap();
                mapping.updates += 1;
                mapping.state = if enabled { "Enabling" } else { "Disabling" }.to_owned();
                mapping.settles_to = Some(if enabled { "Enabled" } else { "Disabled" }.to_owned());
                (202, None, mapping.answer())
            }
            ("GET", "/2015-03-31/event-source-mappings/fake-uuid") => {
                if mapping.reads_to_settle > 0 {
                    mapping.reads_to_settle -= 1;
                } else if !mapping.stuck
                    && let Some(settled) = mapping.settles_to.take()
                {
                    mapping.state = settled;
                }
                (200, None, mapping.answer())
            }
            _ => (
                404,
                Some("ResourceNotFoundException"),
                serde_json::json!({ "message": format!("no route {path}") }),
            ),
        };
        let mut response = http::Response::builder()
            .status(status)
            .header("content-type", "application/json");
        if let Some(error) = error {
            response = response.header("x-amzn-errortype", error);
        }
        Ok(response
            .body(http_body_util::Full::new(bytes::Bytes::from(
                answer.to_string(),
            )))
            .unwrap())
    }

    async fn client(&self) -> lambda::Client {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .load()
            .await;
        lambda::Client::new(&config)
    }

    fn set(&self, change: impl FnOnce(&mut FakeMapping)) {
        change(&mut self.state.lock().unwrap());
    }

    fn mapping(&self) -> (String, usize) {
        let mapping = self.state.lock().unwrap();
        (mapping.state.clone(), mapping.updates)
    }
}

impl Drop for FakeLambda {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn pause_and_resume_wait_for_the_state_asked_for_and_give_up_after_the_timeout() {
    let moto = Moto::start().await;
    let sqs = moto.sqs().await;
    let jobs = create_queue(&sqs, "payout-jobs").await;
    let queue_arn = payouts_ops::jobs_queue_arn(&sqs, &jobs).await.unwrap();
    let fake = FakeLambda::start(&queue_arn, "Enabled").await;
    let lambda = fake.client().await;

    // Disabling for three reads, then Disabled: waited for, with progress.
    fake.set(|m| m.reads_to_settle = 3);
    let mut progress = RecordedProgress::default();
    let paused = pause(&sqs, &lambda, &jobs, None, quick(), &mut progress)
        .await
        .unwrap();
    assert_eq!(paused.execution, Execution::Paused);
    assert_eq!(paused.mapping.state, "Disabled");
    assert_eq!(paused.previous_state, "Enabled");
    assert_eq!(
        paused.mapping.function_label(),
        "payouts-test-payout-execute:live"
    );
    assert_eq!(
        paused.mapping.last_modified.as_deref(),
        Some("2026-11-26T04:30:00.000Z")
    );
    assert_eq!(fake.mapping(), ("Disabled".to_owned(), 1));
    assert_eq!(progress.updates.len(), 4, "{:?}", progress.updates);
    assert!(
        progress.updates.iter().all(|(unit, _, total)| unit
            == "mapping Disabling, seconds waiting for Disabled"
            && total.is_none()),
        "{:?}",
        progress.updates
    );
    assert_eq!(progress.finished, 1, "the progress line is cleared");
    assert!(
        paused
            .to_string()
            .contains("of payouts-test-payout-execute:live is Disabled"),
        "{paused}"
    );

    // --no-wait: asked, reported as on its way.
    let no_wait = SwitchOptions {
        wait: false,
        ..quick()
    };
    fake.set(|m| m.reads_to_settle = 100);
    let resuming = resume(&sqs, &lambda, &jobs, None, no_wait, &mut NoProgress)
        .await
        .unwrap();
    assert_eq!(resuming.execution, Execution::Resuming);
    assert_eq!(resuming.mapping.state, "Enabling");
    assert!(resuming.changed);
    let shown = resuming.to_string();
    assert!(
        shown.starts_with(
            "asked Lambda to resume payout execution (not waited for): it is resuming: event source mapping fake-uuid of payouts-test-payout-execute:live is Enabling\n"
        ),
        "{shown}"
    );
    assert!(
        shown.contains("check it with: payouts-ops pause --status"),
        "{shown}"
    );
    assert_eq!(json(&resuming)["execution"], "resuming");

    // Already Enabling: not asked again, only waited for.
    fake.set(|m| m.reads_to_settle = 2);
    let resumed = resume(&sqs, &lambda, &jobs, None, quick(), &mut NoProgress)
        .await
        .unwrap();
    assert!(!resumed.changed);
    assert_eq!(resumed.execution, Execution::Running);
    assert_eq!(fake.mapping(), ("Enabled".to_owned(), 2), "one update each");

    // Stuck in Disabling: the command gives up (exit 1) and says where things stand.
    fake.set(|m| m.stuck = true);
    let mut progress = RecordedProgress::default();
    let short = SwitchOptions {
        timeout: Duration::from_millis(200),
        ..quick()
    };
    let err = pause(&sqs, &lambda, &jobs, None, short, &mut progress)
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), EXIT_RUNTIME, "{err}");
    let message = err.to_string();
    assert!(
        message.starts_with("the event source mapping fake-uuid is still Disabling after 0 s, not Disabled: Lambda was asked, and may still get there; check with `payouts-ops pause --status`"),
        "{message}"
    );
    assert!(!progress.updates.is_empty());
    assert_eq!(progress.finished, 1, "the progress line is cleared");

    // Lambda busy with the mapping: try again later (exit 1), nothing changed.
    fake.set(|m| {
        m.stuck = false;
        m.settles_to = None;
        m.state = "Updating".to_owned();
        m.in_use = true;
    });
    let err = resume(&sqs, &lambda, &jobs, None, quick(), &mut NoProgress)
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), EXIT_RUNTIME, "{err}");
    assert_eq!(
        err.to_string(),
        "Lambda is changing the event source mapping fake-uuid (state Updating), so it cannot be enabled now: wait a minute and run the command again"
    );
    let status = execution_status(&sqs, &lambda, &jobs, None).await.unwrap();
    assert_eq!(status.execution, Execution::Changing);
}

/// Which mapping `pause` / `resume` take from those that read the jobs queue, and what a
/// mapping's state means: without a Lambda API.
#[test]
fn mapping_selection_and_state_interpretation() {
    for (state, execution) in [
        ("Enabled", Execution::Running),
        ("Disabled", Execution::Paused),
        ("Disabling", Execution::Pausing),
        ("Enabling", Execution::Resuming),
        ("Creating", Execution::Changing),
        ("Updating", Execution::Changing),
        ("Deleting", Execution::Changing),
        ("unknown", Execution::Changing),
    ] {
        assert_eq!(Execution::from_state(state), execution, "{state}");
    }

    let live = "arn:aws:lambda:us-east-1:123456789012:function:payouts-dev-payout-execute:live";
    for function in [
        "payouts-dev-payout-execute",
        "payouts-dev-payout-execute:live",
        " payouts-dev-payout-execute ",
        live,
        "arn:aws:lambda:us-east-1:123456789012:function:payouts-dev-payout-execute",
        "123456789012:function:payouts-dev-payout-execute",
        "123456789012:function:payouts-dev-payout-execute:live",
    ] {
        assert!(names_function(function, live), "{function}");
    }
    for function in [
        "payouts-dev",
        "payout-execute",
        "live",
        "payouts-dev-payout-execute:1",
        "payouts-prod-payout-execute",
        "arn:aws:lambda:us-east-1:123456789012:function:payouts-dev-payout-execute:1",
        "arn:aws:lambda:eu-west-1:123456789012:function:payouts-dev-payout-execute",
        "999999999999:function:payouts-dev-payout-execute",
    ] {
        assert!(!names_function(function, live), "{function}");
    }
    let unqualified = "arn:aws:lambda:us-east-1:123456789012:function:payouts-dev-payout-execute";
    assert!(names_function("payouts-dev-payout-execute", unqualified));
    assert!(names_function(unqualified, unqualified));
    assert!(!names_function(
        "payouts-dev-payout-execute:live",
        unqualified
    ));

    let queue = "arn:aws:sqs:us-east-1:123456789012:payouts-dev-payout-jobs";
    let mapping = |uuid: &str, function: &str, source: &str| Mapping {
        uuid: uuid.to_owned(),
        function_arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{function}"),
        event_source_arn: source.to_owned(),
        state: "Enabled".to_owned(),
        state_transition_reason: None,
        last_modified: None,
    };
    let execute = mapping("m-1", "payouts-dev-payout-execute:live", queue);
    let shadow = mapping("m-2", "payouts-dev-shadow:live", queue);
    let elsewhere = mapping(
        "m-3",
        "payouts-dev-payout-execute:live",
        "arn:aws:sqs:us-east-1:123456789012:other",
    );

    assert_eq!(
        select_mapping(queue, vec![execute.clone(), elsewhere.clone()], None),
        Ok(execute.clone()),
        "another queue's mapping does not count"
    );
    assert_eq!(
        select_mapping(queue, vec![], None),
        Err(MappingError::None {
            queue_arn: queue.to_owned(),
            function: None,
            others: vec![]
        })
    );
    let several = select_mapping(queue, vec![execute.clone(), shadow.clone()], Some(" "));
    assert_eq!(
        several,
        Err(MappingError::Several {
            queue_arn: queue.to_owned(),
            mappings: vec![execute.clone(), shadow.clone()]
        }),
        "an empty --function is no --function"
    );
    assert_eq!(
        several.unwrap_err().to_string(),
        format!(
            "2 event source mappings read {queue}: m-1 ({}, Enabled); m-2 ({}, Enabled); pass --function NAME (or set PAYOUT_EXECUTE_FUNCTION) with the payout-execute function's name, name:alias or ARN to pick one",
            execute.function_arn, shadow.function_arn
        )
    );
    assert_eq!(
        select_mapping(
            queue,
            vec![execute.clone(), shadow.clone()],
            Some("payouts-dev-payout-execute")
        ),
        Ok(execute.clone())
    );
    let none = select_mapping(
        queue,
        vec![shadow.clone()],
        Some("payouts-dev-payout-execute"),
    )
    .unwrap_err();
    assert_eq!(
        none.to_string(),
        format!(
            "no event source mapping reads {queue} for function \"payouts-dev-payout-execute\": check --queue-url / --function (it is read by: m-2 ({}, Enabled))",
            shadow.function_arn
        )
    );
    let err: OpsError = none.into();
    assert_eq!(err.exit_code(), EXIT_USAGE);
}

// ------------------------------------------------------------------------------ command line

fn parse(args: &[&str]) -> Result<Cli, payouts_ops::clap::Error> {
    Cli::try_parse_from(std::iter::once("payouts-ops").chain(args.iter().copied()))
}

#[test]
fn every_command_has_help_with_an_example() {
    let top = parse(&["--help"]).unwrap_err();
    assert_eq!(top.kind(), ErrorKind::DisplayHelp);
    assert_eq!(top.exit_code(), 0);
    let text = top.to_string();
    for expected in [
        "enqueue",
        "retry",
        "status",
        "items",
        "item",
        "dlq",
        "redrive",
        "pause",
        "resume",
        "payouts-ops pause --status",
        "webhooks keep",
        "PayoutExecutionEnabled=false",
        "sam deploy --parameter-overrides",
        "the next\ndeploy can undo a CLI pause",
        "Exit codes:",
        "no event source mapping\n     or several reading the jobs queue",
        "3  the batch",
        "Example:",
    ] {
        assert!(text.contains(expected), "{expected:?} in:\n{text}");
    }
    for command in [
        &["enqueue", "--help"][..],
        &["retry", "--help"],
        &["status", "--help"],
        &["items", "--help"],
        &["item", "--help"],
        &["dlq", "--help"],
        &["dlq", "peek", "--help"],
        &["redrive", "--help"],
        &["pause", "--help"],
        &["resume", "--help"],
    ] {
        let help = parse(command).unwrap_err();
        assert_eq!(help.kind(), ErrorKind::DisplayHelp, "{command:?}");
        assert_eq!(help.exit_code(), 0, "{command:?}");
        let text = help.to_string();
        let purpose = text.lines().next().unwrap_or_default();
        assert!(
            !purpose.is_empty() && !purpose.starts_with("Usage"),
            "{command:?}: {text}"
        );
        assert!(
            text.contains(&format!("Example:\n  payouts-ops {}", command[0])),
            "{command:?}: {text}"
        );
        assert!(text.contains("--payouts-table"), "global options: {text}");
    }
    // pause and resume say what goes on meanwhile and how to keep the state across deploys.
    let pause_help = parse(&["pause", "--help"]).unwrap_err().to_string();
    for expected in [
        "--status",
        "--no-wait",
        "--function <NAME>",
        "PAYOUT_EXECUTE_FUNCTION",
        "jobs wait in\nthe queue",
        "webhooks keep settling\nitems",
        "the next\ndeploy can undo this pause",
        "sam deploy --parameter-overrides PayoutExecutionEnabled=false",
        "payouts-ops pause --status",
    ] {
        assert!(
            pause_help.contains(expected),
            "{expected:?} in:\n{pause_help}"
        );
    }
    let resume_help = parse(&["resume", "--help"]).unwrap_err().to_string();
    for expected in [
        "--no-wait",
        "--function <NAME>",
        "sam deploy --parameter-overrides PayoutExecutionEnabled=true",
    ] {
        assert!(
            resume_help.contains(expected),
            "{expected:?} in:\n{resume_help}"
        );
    }
    assert!(!resume_help.contains("--status"), "{resume_help}");

    let version = parse(&["--version"]).unwrap_err();
    assert_eq!(version.kind(), ErrorKind::DisplayVersion);
    assert_eq!(version.exit_code(), 0);
}

#[test]
fn arguments_parse_and_usage_errors_exit_2() {
    let cli = parse(&[
        "--payouts-table",
        "payouts-dev",
        "--output",
        "json",
        "items",
        "b-1",
        "--status",
        "pending_kyc",
    ])
    .unwrap();
    assert_eq!(cli.output, Output::Json);
    assert_eq!(cli.table().unwrap(), "payouts-dev");
    assert!(matches!(
        cli.command,
        Command::Items { ref batch_id, status: Some(ItemStatus::PendingKyc) } if batch_id == "b-1"
    ));
    // Global options go after the command too.
    let cli = parse(&[
        "redrive",
        "--no-wait",
        "--dlq-url",
        "http://dlq",
        "--rate",
        "50",
    ])
    .unwrap();
    assert_eq!(cli.dlq().unwrap(), "http://dlq");
    assert!(matches!(
        cli.command,
        Command::Redrive {
            max: None,
            no_wait: true,
            rate: Some(50)
        }
    ));
    assert!(matches!(
        parse(&["dlq", "peek"]).unwrap().command,
        Command::Dlq(DlqCommand::Peek { max: 10 })
    ));
    assert!(matches!(
        parse(&["enqueue", "b-1", "--job-id", "j"]).unwrap().command,
        Command::Enqueue { job_id: Some(ref j), .. } if j == "j"
    ));
    assert!(matches!(
        parse(&["item", "b-1", "item-1"]).unwrap().command,
        Command::Item { .. }
    ));
    assert!(matches!(
        parse(&["status", "b-1"]).unwrap().command,
        Command::Status { items: false, .. }
    ));
    assert!(matches!(
        parse(&["status", "--items", "b-1"]).unwrap().command,
        Command::Status { items: true, .. }
    ));

    for (args, kind) in [
        (&["items"][..], ErrorKind::MissingRequiredArgument),
        (&["item", "b-1"], ErrorKind::MissingRequiredArgument),
        (&["retry"], ErrorKind::MissingRequiredArgument),
        (&[], ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand),
        (
            &["dlq"],
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand,
        ),
        (
            &["items", "b-1", "--status", "lost"],
            ErrorKind::InvalidValue,
        ),
        (
            &["--output", "yaml", "status", "b-1"],
            ErrorKind::InvalidValue,
        ),
        (&["dlq", "peek", "--max", "0"], ErrorKind::ValueValidation),
        (
            &["redrive", "--max", "3", "--no-wait"],
            ErrorKind::ArgumentConflict,
        ),
        (&["redrive", "--rate", "501"], ErrorKind::ValueValidation),
        (&["items", "b-1", "--items"], ErrorKind::UnknownArgument),
        (
            &["pause", "--status", "--no-wait"],
            ErrorKind::ArgumentConflict,
        ),
        (&["resume", "--status"], ErrorKind::UnknownArgument),
        (&["pause", "b-1"], ErrorKind::UnknownArgument),
        (&["stop"], ErrorKind::InvalidSubcommand),
    ] {
        let err = parse(args).unwrap_err();
        assert_eq!(err.kind(), kind, "{args:?}: {err}");
        assert_eq!(err.exit_code(), i32::from(EXIT_USAGE), "{args:?}");
    }

    // pause / resume: the jobs queue, and optionally the function.
    let cli = parse(&[
        "pause",
        "--status",
        "--function",
        " payouts-dev-payout-execute ",
        "--queue-url",
        "http://jobs",
    ])
    .unwrap();
    assert!(matches!(
        cli.command,
        Command::Pause {
            status: true,
            no_wait: false,
            ..
        }
    ));
    assert_eq!(cli.jobs_queue().unwrap(), "http://jobs");
    assert_eq!(
        cli.execute_function().as_deref(),
        Some("payouts-dev-payout-execute")
    );
    let cli = parse(&["--output", "json", "resume", "--no-wait", "--function", " "]).unwrap();
    assert_eq!(cli.output, Output::Json);
    assert!(matches!(cli.command, Command::Resume { no_wait: true, .. }));
    assert_eq!(cli.execute_function(), None, "empty is unset");
    assert!(matches!(
        parse(&["pause"]).unwrap().command,
        Command::Pause {
            status: false,
            no_wait: false,
            ..
        }
    ));
    // Without the jobs queue, pause and resume cannot find the mapping: exit 2.
    for command in ["pause", "resume"] {
        let cli = parse(&["--queue-url", "", command]).unwrap();
        let err = cli.jobs_queue().unwrap_err();
        assert_eq!(err.exit_code(), EXIT_USAGE);
        assert_eq!(
            err.to_string(),
            "missing configuration: set PAYOUT_JOBS_QUEUE_URL or pass --queue-url"
        );
    }

    // The usage line shows what to type, whatever the environment provides.
    let missing = parse(&["items"]).unwrap_err().to_string();
    assert!(
        missing.contains("Usage: payouts-ops items [OPTIONS] <BATCH_ID>"),
        "{missing}"
    );

    // An empty setting is missing configuration (exit 2), naming the variable and the option.
    let cli = parse(&["--payouts-table", "  ", "status", "b-1"]).unwrap();
    let err = cli.table().unwrap_err();
    assert_eq!(err.exit_code(), EXIT_USAGE);
    assert_eq!(
        err.to_string(),
        "missing configuration: set PAYOUTS_TABLE or pass --payouts-table"
    );
}
