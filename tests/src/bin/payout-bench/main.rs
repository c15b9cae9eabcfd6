//! `payout-bench`: throughput, DynamoDB requests per paid item, peak memory and cold start of the
//! executor, printed beside their targets. Run it with `scripts/bench.sh` (release build).
//!
//! The local DynamoDB runs as a separate process (`payouts-local serve`), so the peak RSS
//! measured here is the executor's own (plus the sandbox PSP's in-memory ledger).

mod fan_out;

use futures_util::StreamExt;
use integration_tests::{RequestCounter, items, verified_users};
use payouts_core::clock::SystemClock;
use payouts_core::executor::{Executor, ExecutorConfig};
use payouts_core::ports::webhook::{ItemReference, PaymentEvent, PaymentEventKind};
use payouts_core::registry::PaymentAdapterRegistry;
use payouts_core::settlement::{SettlementOutcome, apply_payment_event};
use payouts_local::tables;
use payouts_psp::sandbox::SandboxPsp;
use payouts_store_dynamodb::DynamoDbRepository;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LATENCY: Duration = Duration::from_millis(50);
const BIG_BATCH: usize = 10_000;
const SERIAL_BATCH: usize = 200;
/// The batch the webhook figures are measured on (`BENCH_SETTLE_ITEMS` overrides it).
const SETTLE_BATCH: usize = 100_000;
/// Webhook events applied at once to one batch.
const CONCURRENT_EVENTS: usize = 200;

#[tokio::main]
async fn main() {
    let bin_dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_owned();
    let mut server = Command::new(bin_dir.join("payouts-local"))
        .args(["serve", "--port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start payouts-local (build it first: scripts/bench.sh does)");
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let endpoint = line.trim().rsplit('=').next().unwrap().to_owned();

    let requests = RequestCounter::default();
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "bench", "bench", None, None, "bench",
        ))
        .load()
        .await;
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(requests.clone())
            .build(),
    );
    for definition in tables::definitions() {
        tables::create_table(&client, &definition, &definition.local_name)
            .await
            .unwrap();
    }
    let store = DynamoDbRepository::new(client, "payouts", "user-settings");
    let env = Seeder {
        store: store.clone(),
    };
    // Reads the benchmark's own progress checks, outside the counted requests.
    let observer = DynamoDbRepository::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        "payouts",
        "user-settings",
    );
    let fan_out_setup = fan_out::FanOutSetup::from_env();
    let fan_out_runs = || async {
        let one = fan_out::run(
            "one batch",
            &store,
            &observer,
            &requests,
            &env,
            &fan_out_setup,
            &[("b-fan-one", fan_out_setup.items)],
        )
        .await;
        let half = fan_out_setup.items / 2;
        let two = fan_out::run(
            "two batches at once",
            &store,
            &observer,
            &requests,
            &env,
            &fan_out_setup,
            &[
                ("b-fan-two-a", half),
                ("b-fan-two-b", fan_out_setup.items - half),
            ],
        )
        .await;
        vec![one, two]
    };
    if std::env::var("BENCH_ONLY").as_deref() == Ok("fan-out") {
        let runs = fan_out_runs().await;
        let _ = server.kill();
        let _ = server.wait();
        fan_out::print(&fan_out_setup, &runs);
        return;
    }
    let default_config = ExecutorConfig::default();

    // Concurrency 1 on a smaller batch: the naive loop's rate does not depend on the batch size.
    env.seed("b-serial", SERIAL_BATCH).await;
    let (serial_rate, _) = run(
        &store,
        "b-serial",
        SERIAL_BATCH,
        ExecutorConfig {
            concurrency: 1,
            ..default_config.clone()
        },
        &requests,
    )
    .await;

    env.seed("b-bench", BIG_BATCH).await;
    reset_peak_rss();
    let rss_before = rss_kib("VmRSS");
    let (rate, per_item) = run(
        &store,
        "b-bench",
        BIG_BATCH,
        default_config.clone(),
        &requests,
    )
    .await;
    let peak = rss_kib("VmHWM");
    let by_op = requests.by_operation();
    let settle_items: usize = std::env::var("BENCH_SETTLE_ITEMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(SETTLE_BATCH);
    let settled = settlement(&store, &requests, settle_items).await;
    let fan_out = fan_out_runs().await;
    let _ = server.kill();
    let _ = server.wait();

    let limit = default_config.concurrency as f64 / LATENCY.as_secs_f64();
    let binary = bin_dir.join("payout-execute");
    let (ready, size) = cold_start(&binary, &endpoint, &[]);
    let bundle = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists());
    let (ready_bundle, _) = cold_start(
        &binary,
        &endpoint,
        &[("SSL_CERT_FILE", bundle.unwrap_or_default())],
    );
    // A bundle that is not there: the function drops the setting with a WARN and still starts.
    let (ready_missing, _) = cold_start(
        &binary,
        &endpoint,
        &[("SSL_CERT_FILE", "/nonexistent/ca-bundle.crt")],
    );
    let machine = format!("{} cores, {}", num_cpus(), mem_total());
    println!();
    println!(
        "payout-bench — sandbox PSP at {} ms per call, local DynamoDB (dynoxide) in its own process; {machine}",
        LATENCY.as_millis()
    );
    println!("| figure | measured | target |");
    println!("|---|---|---|");
    println!(
        "| items/s, {BIG_BATCH} items, concurrency {} | {rate:.0} | ≥ 80 % of {limit:.0} (concurrency ÷ latency) → {:.0} |",
        default_config.concurrency,
        limit * 0.8
    );
    println!(
        "| items/s, concurrency 1 ({SERIAL_BATCH} items) | {serial_rate:.1} | — (the naive loop) |"
    );
    println!("| speed-up | {:.1}× | ≥ 20× |", rate / serial_rate);
    println!(
        "| DynamoDB requests per paid item | {per_item:.3} | ≤ 2.1 (floor: 2 writes + amortised reads ≈ {:.3}) |",
        floor(BIG_BATCH)
    );
    println!("| requests by operation | {by_op:?} | |");
    println!(
        "| peak RSS during the {BIG_BATCH}-item run | {:.1} MiB (was {:.1} MiB before) | < 40 MiB |",
        peak as f64 / 1024.0,
        rss_before as f64 / 1024.0
    );
    println!(
        "| payout-execute start → first /next, SSL_CERT_FILE={} as template.yaml sets it (median of 20) | {:.1} ms | < 10 ms |",
        bundle.unwrap_or("(no bundle found)"),
        ready_bundle.as_secs_f64() * 1000.0
    );
    println!(
        "| the same without SSL_CERT_FILE (the system's certificate directory is scanned) | {:.1} ms | |",
        ready.as_secs_f64() * 1000.0
    );
    println!(
        "| the same with SSL_CERT_FILE naming a missing file (dropped with a WARN: the system's roots) | {:.1} ms | starts |",
        ready_missing.as_secs_f64() * 1000.0
    );
    println!(
        "| payout-execute release binary | {:.2} MB | < 8 MB |",
        size as f64 / 1e6
    );
    println!();
    println!(
        "webhook events on one {}-item batch (settlement against the local DynamoDB; requests and answer bytes counted at the SDK client)",
        settled.items
    );
    println!("| figure | measured | target |");
    println!("|---|---|---|");
    for (position, cost) in &settled.costs {
        println!(
            "| one event, {position} item: requests (by operation), bytes received | {} ({}), {} B | ≤ 3 requests, ≤ 8 KB |",
            cost.requests, cost.by_operation, cost.bytes
        );
    }
    println!(
        "| {CONCURRENT_EVENTS} concurrent events on the batch: latency p50 / p99 | {:.1} ms / {:.1} ms | |",
        settled.p50.as_secs_f64() * 1000.0,
        settled.p99.as_secs_f64() * 1000.0
    );
    println!(
        "| transactions retried after TransactionConflict | {} | |",
        settled.conflict_retries
    );
    println!(
        "| the event that completes the batch: requests (by operation) | {} ({}) | ≤ 3 requests, the batch record's write included |",
        settled.completing.requests, settled.completing.by_operation
    );
    fan_out::print(&fan_out_setup, &fan_out);
}

struct EventCost {
    requests: u64,
    bytes: u64,
    by_operation: String,
}

struct Settled {
    items: usize,
    costs: Vec<(&'static str, EventCost)>,
    p50: Duration,
    p99: Duration,
    conflict_retries: u64,
    completing: EventCost,
}

fn paid_event(batch_id: &str, item_id: &str) -> PaymentEvent {
    PaymentEvent {
        event_id: format!("evt_{item_id}"),
        event_type: "transfer.created".into(),
        kind: Some(PaymentEventKind::Paid),
        provider_payout_id: Some(format!("tr_{item_id}")),
        reference: Some(ItemReference {
            batch_id: batch_id.into(),
            item_id: item_id.into(),
        }),
    }
}

async fn apply_measured(
    store: &DynamoDbRepository,
    requests: &RequestCounter,
    event: &PaymentEvent,
) -> (EventCost, SettlementOutcome) {
    requests.reset();
    let outcome = apply_payment_event(store, &SystemClock, "sandbox", event)
        .await
        .expect("settle");
    let cost = EventCost {
        requests: requests.total(),
        bytes: requests.bytes_received(),
        by_operation: requests
            .by_operation()
            .iter()
            .map(|(op, n)| format!("{n} {op}"))
            .collect::<Vec<_>>()
            .join(", "),
    };
    (cost, outcome)
}

/// Seeds a batch of `count` items already `processing` (as a run leaves them, with counts to
/// match), then applies events: one at the first, middle and last item, then 200 at once,
/// then the rest, and the last one, which completes the batch.
async fn settlement(
    store: &DynamoDbRepository,
    requests: &RequestCounter,
    count: usize,
) -> Settled {
    use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
    use payouts_store_dynamodb::schema::{attr, keys};
    use payouts_store_dynamodb::{n, s};
    let batch_id = "b-settle";
    let ids: Vec<String> = (1..=count).map(|i| format!("item-{i:06}")).collect();
    // Counted as a run counts it: the items by status as the base, the shards with no moves.
    let mut writes = vec![record(vec![
        (attr::PK, s(keys::batch_pk(batch_id))),
        (attr::SK, s(keys::BATCH_SK)),
        (attr::PROVIDER, s("sandbox")),
        (attr::CURRENCY, s("USD")),
        (attr::STATUS, s("executing")),
        (attr::ITEM_TOTAL, n(count)),
        (
            attr::BASE_COUNTS,
            AttributeValue::M([("processing".to_owned(), n(count))].into()),
        ),
    ])];
    for id in &ids {
        writes.push(record(vec![
            (attr::PK, s(keys::batch_pk(batch_id))),
            (attr::SK, s(keys::item_sk(id))),
            (attr::USER_ID, s(format!("user-{id}"))),
            (attr::NET_AMOUNT, n("12.34")),
            (attr::STATUS, s("processing")),
            (attr::ITEM_PROVIDER, s("sandbox")),
            (attr::PROVIDER_PAYOUT_ID, s(format!("tr_{id}"))),
            (attr::ATTEMPT, n(1)),
        ]));
    }
    for shard in 0..payouts_store_dynamodb::schema::COUNTER_SHARDS {
        writes.push(record(vec![
            (attr::PK, s(keys::batch_pk(batch_id))),
            (attr::SK, s(keys::counts_sk(shard))),
            (attr::COUNTED, AttributeValue::Bool(true)),
        ]));
    }
    fn record(attrs: Vec<(&str, AttributeValue)>) -> WriteRequest {
        let item = attrs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        WriteRequest::builder()
            .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
            .build()
    }
    futures_util::stream::iter(writes.chunks(25).map(|chunk| chunk.to_vec()))
        .map(|chunk| async move {
            payouts_local::seed::write_chunk(store.client(), store.payouts_table(), chunk)
                .await
                .unwrap()
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;

    let mut costs = Vec::new();
    for (position, index) in [("first", 0), ("middle", count / 2), ("last", count - 1)] {
        let (cost, outcome) =
            apply_measured(store, requests, &paid_event(batch_id, &ids[index])).await;
        assert!(
            matches!(outcome, SettlementOutcome::Applied { .. }),
            "{outcome:?}"
        );
        costs.push((position, cost));
    }

    let retries_before = payouts_store_dynamodb::conflict_retries();
    let concurrent: Vec<_> = ids[1..=CONCURRENT_EVENTS.min(count - 3)]
        .iter()
        .map(|id| {
            let store = store.clone();
            let event = paid_event(batch_id, id);
            tokio::spawn(async move {
                let started = Instant::now();
                let outcome = apply_payment_event(&store, &SystemClock, "sandbox", &event)
                    .await
                    .expect("settle");
                assert!(
                    matches!(outcome, SettlementOutcome::Applied { .. }),
                    "{outcome:?}"
                );
                started.elapsed()
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for handle in concurrent {
        latencies.push(handle.await.unwrap());
    }
    latencies.sort();
    let conflict_retries = payouts_store_dynamodb::conflict_retries() - retries_before;
    let quantile = |q: f64| {
        latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1]
    };

    // The rest, then the one left, whose event completes the batch.
    let rest: Vec<&String> = ids[CONCURRENT_EVENTS.min(count - 3) + 1..count - 1]
        .iter()
        .filter(|id| **id != ids[count / 2])
        .collect();
    let (last_one, rest) = rest.split_last().expect("items left");
    futures_util::stream::iter(rest.iter().map(|id| paid_event(batch_id, id)))
        .map(|event| async move {
            apply_payment_event(store, &SystemClock, "sandbox", &event)
                .await
                .expect("settle")
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let (completing, outcome) =
        apply_measured(store, requests, &paid_event(batch_id, last_one)).await;
    assert!(
        matches!(
            outcome,
            SettlementOutcome::Applied {
                batch_completion: Some(_),
                ..
            }
        ),
        "the last event completes the batch: {outcome:?}"
    );
    Settled {
        items: count,
        costs,
        p50: quantile(0.5),
        p99: quantile(0.99),
        conflict_retries,
        completing,
    }
}

/// The least a run can send: a claim and a record per item, one GetItem, and the reads for
/// 1 MB Query pages and 100-key BatchGetItem calls.
fn floor(items: usize) -> f64 {
    let pages = (items as f64 * 160.0 / 1_048_576.0).ceil();
    (2.0 * items as f64 + 1.0 + pages + (items as f64 / 100.0).ceil()) / items as f64
}

async fn run(
    store: &DynamoDbRepository,
    batch_id: &str,
    count: usize,
    config: ExecutorConfig,
    requests: &RequestCounter,
) -> (f64, f64) {
    let psp = Arc::new(SandboxPsp::new(LATENCY));
    let executor = Executor::new(
        Arc::new(store.clone()),
        PaymentAdapterRegistry::new().register(psp.clone()),
        config,
        Arc::new(SystemClock),
    );
    requests.reset();
    let started = Instant::now();
    let summary = executor
        .execute_payout_batch(batch_id, None)
        .await
        .expect("bench run");
    let elapsed = started.elapsed();
    assert_eq!(summary.submitted as usize, count, "{summary:?}");
    assert_eq!(psp.transfers().len(), count);
    (
        count as f64 / elapsed.as_secs_f64(),
        requests.total() as f64 / count as f64,
    )
}

pub(crate) struct Seeder {
    store: DynamoDbRepository,
}

impl Seeder {
    async fn seed(&self, batch_id: &str, count: usize) {
        self.seed_for(batch_id, count, "sandbox").await
    }

    /// Seeds a `pending` batch of `count` items for `provider`, and its verified recipients.
    pub(crate) async fn seed_for(&self, batch_id: &str, count: usize, provider: &str) {
        use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
        use payouts_store_dynamodb::s;
        use payouts_store_dynamodb::schema::{attr, keys};
        let batch = items(count, "12.34");
        let mut writes = vec![record([
            (attr::PK, s(keys::batch_pk(batch_id))),
            (attr::SK, s(keys::BATCH_SK)),
            (attr::PROVIDER, s(provider)),
            (attr::CURRENCY, s("USD")),
            (attr::STATUS, s("pending")),
        ])];
        for (item_id, user_id, amount) in &batch {
            writes.push(record([
                (attr::PK, s(keys::batch_pk(batch_id))),
                (attr::SK, s(keys::item_sk(item_id))),
                (attr::ITEM_ID, s(item_id)),
                (attr::USER_ID, s(user_id)),
                (attr::NET_AMOUNT, AttributeValue::N(amount.clone())),
                (attr::STATUS, s("pending")),
            ]));
        }
        let users: Vec<_> = verified_users(&batch)
            .into_iter()
            .map(|(user, account, verified)| {
                let method = AttributeValue::M(
                    [
                        (attr::PROVIDER_ACCOUNT_ID.to_owned(), s(account)),
                        (attr::IS_VERIFIED.to_owned(), AttributeValue::Bool(verified)),
                    ]
                    .into(),
                );
                record([(attr::USER_ID, s(user)), (attr::PAYOUT_METHOD, method)])
            })
            .collect();
        fn record<const N: usize>(attrs: [(&str, AttributeValue); N]) -> WriteRequest {
            let item = attrs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            WriteRequest::builder()
                .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
                .build()
        }
        for (table, writes) in [
            (self.store.payouts_table(), writes),
            (self.store.settings_table(), users),
        ] {
            for chunk in writes.chunks(25) {
                payouts_local::seed::write_chunk(self.store.client(), table, chunk.to_vec())
                    .await
                    .unwrap();
            }
        }
    }
}

/// Median time from spawning the release binary to its first call to the Runtime API's
/// `/next`, on a local listener standing in for Lambda; and the binary's size.
fn cold_start(
    binary: &std::path::Path,
    endpoint: &str,
    extra_env: &[(&str, &str)],
) -> (Duration, u64) {
    let size = std::fs::metadata(binary).map(|m| m.len()).unwrap_or(0);
    let mut times = Vec::new();
    for _ in 0..20 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let runtime_api = listener.local_addr().unwrap().to_string();
        let started = Instant::now();
        let mut child = Command::new(binary)
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", &runtime_api)
            .env("AWS_LAMBDA_FUNCTION_NAME", "payout-execute")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_LEVEL", "error")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "bench")
            .env("AWS_SECRET_ACCESS_KEY", "bench")
            .env("AWS_ENDPOINT_URL_DYNAMODB", endpoint)
            .env("PAYOUTS_TABLE", "payouts")
            .env("USER_SETTINGS_TABLE", "user-settings")
            .envs(extra_env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn payout-execute");
        let (mut stream, _) = listener.accept().unwrap();
        let mut first = [0u8; 64];
        let n = stream.read(&mut first).unwrap();
        let elapsed = started.elapsed();
        assert!(
            String::from_utf8_lossy(&first[..n]).contains("/runtime/invocation/next"),
            "not a /next call"
        );
        let _ = child.kill();
        let _ = child.wait();
        times.push(elapsed);
    }
    times.sort();
    (times[times.len() / 2], size)
}

fn reset_peak_rss() {
    // Writing 5 to clear_refs resets VmHWM to the current RSS (Linux ≥ 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field).and_then(|v| {
                v.trim_start_matches(':')
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn mem_total() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .map(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<u64>().ok())
                .map(|kb| format!("{} GiB RAM", kb / 1_048_576))
                .unwrap_or_default()
        })
        .unwrap_or_default()
}
