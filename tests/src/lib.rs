//! The test harness: a DynamoDB to test against, fresh tables, seed helpers, and a request
//! counter on the SDK client.
//!
//! By default each test starts its own in-process dynoxide server on 127.0.0.1:0 and reaches it
//! over HTTP like any endpoint. When `AWS_ENDPOINT_URL_DYNAMODB` (or `AWS_ENDPOINT_URL`) is set,
//! the tests use that endpoint instead (DynamoDB Local, or real AWS with the usual credentials),
//! each test on its own freshly created, uniquely named tables.
//!
//! [`fakes`] holds each PSP's fake (the Stripe API today), for the adapters' tests and local runs.

pub mod fakes;
pub mod simulated_sqs;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use payouts_core::clock::ShiftedClock;
use payouts_core::domain::PayoutItem;
use payouts_core::executor::{Executor, ExecutorConfig};
use payouts_core::ports::payment::PaymentAdapter;
use payouts_core::registry::PaymentAdapterRegistry;
use payouts_local::emulator::LocalDynamoDb;
use payouts_local::{seed, tables};
use payouts_psp::sandbox::SandboxPsp;
use payouts_store_dynamodb::schema::{attr, keys};
use payouts_store_dynamodb::{DynamoDbRepository, PayoutRepository};
use payouts_store_dynamodb::{n, s};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A DynamoDB with the project's tables, ready for one test, and the clock the code under
/// test reads: the machine's time, which a test moves forward (`env.clock.advance(…)`) to let
/// leases run out and keys age.
pub struct TestEnv {
    _server: Option<LocalDynamoDb>,
    pub store: DynamoDbRepository,
    pub requests: RequestCounter,
    pub clock: ShiftedClock,
    sdk_config: aws_config::SdkConfig,
}

/// The one executor configuration the tests start from; a test that needs other values says
/// which with `ExecutorConfig { concurrency: 1, ..test_config() }`.
pub fn test_config() -> ExecutorConfig {
    ExecutorConfig {
        concurrency: 8,
        lease: Duration::from_secs(30),
        psp_timeout: Duration::from_secs(10),
        page_size: None,
    }
}

/// Counts the DynamoDB requests a client sends, by operation (`UpdateItem`, `Query`, …), and
/// the bytes of the answers (their `content-length`), and injects the faults a test plans: a
/// process that dies before its k-th write, or a request held back until the test lets it go
/// (to interleave another writer at an exact point).
#[derive(Debug, Clone, Default)]
pub struct RequestCounter(
    Arc<Mutex<BTreeMap<String, u64>>>,
    Arc<Mutex<RequestFaults>>,
    Arc<AtomicU64>,
);

/// The faults [`RequestCounter`] injects.
#[derive(Debug, Default)]
struct RequestFaults {
    /// Writes sent since [`RequestCounter::die_before_write`] was called, and the one that fails.
    writes: u64,
    die_at_write: Option<u64>,
    pause: Option<Pause>,
}

/// A request whose body contains `marker` waits (its thread blocked) until the test lets it go.
#[derive(Debug)]
struct Pause {
    marker: String,
    reached: std::sync::mpsc::Sender<()>,
    go: std::sync::mpsc::Receiver<()>,
}

/// The test's side of [`RequestCounter::pause_at`].
pub struct PausedRequest {
    reached: std::sync::mpsc::Receiver<()>,
    go: std::sync::mpsc::Sender<()>,
}

impl PausedRequest {
    /// Waits (off the async runtime) until the marked request is held back.
    pub async fn reached(&self) {
        let reached = &self.reached;
        tokio::task::block_in_place(|| {
            reached
                .recv_timeout(Duration::from_secs(30))
                .expect("the marked request was never sent")
        });
    }

    /// Lets the held-back request go on.
    pub fn release(&self) {
        let _ = self.go.send(());
    }
}

const WRITE_OPERATIONS: &[&str] = &[
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "TransactWriteItems",
    "BatchWriteItem",
];

impl RequestCounter {
    /// Bytes of the answers received since the last reset.
    pub fn bytes_received(&self) -> u64 {
        self.2.load(Ordering::Relaxed)
    }

    /// Requests per operation since the last reset.
    pub fn by_operation(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap().clone()
    }

    pub fn get(&self, operation: &str) -> u64 {
        self.0.lock().unwrap().get(operation).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.0.lock().unwrap().values().sum()
    }

    pub fn reset(&self) {
        self.0.lock().unwrap().clear();
        self.2.store(0, Ordering::Relaxed);
    }

    /// From now on, the `k`-th write request (1-based) and every later one fail before they are
    /// sent, as if the process died there; `None` lifts the fault.
    pub fn die_before_write(&self, k: Option<u64>) {
        let mut faults = self.1.lock().unwrap();
        faults.writes = 0;
        faults.die_at_write = k;
    }

    /// The next request whose body contains `marker` is held back (its thread blocked) until
    /// the returned handle lets it go. Needs a multi-threaded runtime.
    pub fn pause_at(&self, marker: &str) -> PausedRequest {
        let (reached_tx, reached_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel();
        self.1.lock().unwrap().pause = Some(Pause {
            marker: marker.to_owned(),
            reached: reached_tx,
            go: go_rx,
        });
        PausedRequest {
            reached: reached_rx,
            go: go_tx,
        }
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let target = context
            .request()
            .headers()
            .get("x-amz-target")
            .unwrap_or("unknown");
        let operation = target.rsplit('.').next().unwrap_or(target).to_owned();
        *self.0.lock().unwrap().entry(operation.clone()).or_default() += 1;
        let body = context.request().body().bytes().unwrap_or_default();
        let pause = {
            let mut faults = self.1.lock().unwrap();
            if WRITE_OPERATIONS.contains(&operation.as_str()) {
                faults.writes += 1;
                if faults.die_at_write.is_some_and(|k| faults.writes >= k) {
                    return Err(format!(
                        "injected: the process died before write {}",
                        faults.writes
                    )
                    .into());
                }
            }
            let marked = faults
                .pause
                .as_ref()
                .is_some_and(|p| String::from_utf8_lossy(body).contains(p.marker.as_str()));
            if marked { faults.pause.take() } else { None }
        };
        if let Some(pause) = pause {
            let _ = pause.reached.send(());
            // Hands this worker's queued tasks to another thread while it waits.
            tokio::task::block_in_place(|| pause.go.recv_timeout(Duration::from_secs(30))).ok();
        }
        Ok(())
    }

    fn read_before_deserialization(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::BeforeDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let length = context
            .response()
            .headers()
            .get("content-length")
            .and_then(|v| v.parse::<u64>().ok())
            .or_else(|| context.response().body().bytes().map(|b| b.len() as u64))
            .unwrap_or(0);
        self.2.fetch_add(length, Ordering::Relaxed);
        Ok(())
    }
}

/// Records the jobs the code under test enqueues (continuations, segments, the reconciler's
/// resumes) and the redelivery delays it sets, instead of sending them to SQS; the test runs
/// or inspects them.
#[derive(Default)]
pub struct RecordedQueue {
    jobs: Mutex<Vec<payouts_core::job::PayoutJob>>,
    delays: Mutex<Vec<(String, Duration)>>,
}

impl RecordedQueue {
    /// The jobs enqueued so far, in order.
    pub fn jobs(&self) -> Vec<payouts_core::job::PayoutJob> {
        self.jobs.lock().unwrap().clone()
    }

    /// The jobs enqueued so far, forgotten here.
    pub fn take(&self) -> Vec<payouts_core::job::PayoutJob> {
        std::mem::take(&mut self.jobs.lock().unwrap())
    }

    /// The redelivery delays set so far: (receipt handle, delay), in order.
    pub fn delays(&self) -> Vec<(String, Duration)> {
        self.delays.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl payouts_core::ports::queue::JobQueue for RecordedQueue {
    async fn enqueue(
        &self,
        job: &payouts_core::job::PayoutJob,
    ) -> Result<(), payouts_core::ports::queue::QueueError> {
        self.jobs.lock().unwrap().push(job.clone());
        Ok(())
    }

    async fn redeliver_after(
        &self,
        receipt_handle: &str,
        delay: Duration,
    ) -> Result<(), payouts_core::ports::queue::QueueError> {
        self.delays
            .lock()
            .unwrap()
            .push((receipt_handle.to_owned(), delay));
        Ok(())
    }
}

/// Keeps every line (tests read what a run emitted).
#[derive(Debug, Default)]
pub struct RecordedMetrics(Mutex<Vec<serde_json::Value>>);

impl RecordedMetrics {
    /// The lines emitted so far.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        self.0.lock().expect("metrics poisoned").clone()
    }

    /// The sum of metric `name` over every line whose dimensions include all of `dimensions`.
    pub fn total(&self, name: &str, dimensions: &[(&str, &str)]) -> f64 {
        self.lines()
            .iter()
            .filter(|line| dimensions.iter().all(|(k, v)| line[*k] == *v))
            .map(|line| match &line[name] {
                serde_json::Value::Number(n) => n.as_f64().unwrap_or(0.0),
                serde_json::Value::Array(values) => {
                    values.iter().filter_map(serde_json::Value::as_f64).sum()
                }
                _ => 0.0,
            })
            .sum()
    }
}

impl payouts_core::metrics::MetricsSink for RecordedMetrics {
    fn emit(&self, line: &payouts_core::metrics::MetricsLine) {
        if !line.is_empty() {
            self.0
                .lock()
                .expect("metrics poisoned")
                .push(line.to_json());
        }
    }
}

static TABLE_COUNTER: AtomicU64 = AtomicU64::new(0);

impl TestEnv {
    /// Starts (or connects to) DynamoDB, creates fresh tables, and sends the code's logs to
    /// the test's output.
    pub async fn start() -> TestEnv {
        init_logs();
        let external = ["AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL"]
            .iter()
            .any(|v| std::env::var(v).is_ok_and(|v| !v.is_empty()));
        let requests = RequestCounter::default();
        let (server, sdk_config) = if external {
            (None, aws_config::load_from_env().await)
        } else {
            let server = LocalDynamoDb::start(0).await.expect("start local DynamoDB");
            let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .endpoint_url(server.endpoint_url())
                .region(aws_config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                    "test", "test", None, None, "tests",
                ))
                .load()
                .await;
            (Some(server), config)
        };
        let config = aws_sdk_dynamodb::config::Builder::from(&sdk_config)
            .interceptor(requests.clone())
            .build();
        let client = Client::from_conf(config);
        let suffix = format!(
            "{}-{}-{}",
            std::process::id(),
            TABLE_COUNTER.fetch_add(1, Ordering::Relaxed),
            payouts_core::clock::now_ms()
        );
        let mut names = Vec::new();
        for definition in tables::definitions() {
            let name = format!("{}-test-{suffix}", definition.local_name);
            tables::create_table(&client, &definition, &name)
                .await
                .expect("create table");
            wait_active(&client, &name).await;
            names.push(name);
        }
        requests.reset();
        TestEnv {
            _server: server,
            store: DynamoDbRepository::new(client, &names[0], &names[1]),
            requests,
            clock: ShiftedClock::new(),
            sdk_config,
        }
    }

    /// The same tables through a client of its own, with its own request counter and faults:
    /// one writer (the webhook function, say) can die mid-request while the others go on.
    pub fn repository_with_own_faults(&self) -> (Arc<dyn PayoutRepository>, RequestCounter) {
        let requests = RequestCounter::default();
        let config = aws_sdk_dynamodb::config::Builder::from(&self.sdk_config)
            .interceptor(requests.clone())
            .build();
        let store = DynamoDbRepository::new(
            Client::from_conf(config),
            self.store.payouts_table(),
            self.store.settings_table(),
        );
        (Arc::new(store), requests)
    }

    pub fn client(&self) -> &Client {
        self.store.client()
    }

    /// The store as the core sees it.
    pub fn repository(&self) -> Arc<dyn PayoutRepository> {
        Arc::new(self.store.clone())
    }

    /// An executor on these tables paying through `sandbox`.
    pub fn executor(&self, sandbox: &Arc<SandboxPsp>, config: ExecutorConfig) -> Executor {
        self.executor_with(sandbox.clone(), config)
    }

    /// An executor on these tables paying through `adapter` (the Stripe adapter, say).
    pub fn executor_with(
        &self,
        adapter: Arc<dyn PaymentAdapter>,
        config: ExecutorConfig,
    ) -> Executor {
        let adapters = PaymentAdapterRegistry::new().register(adapter);
        Executor::new(
            self.repository(),
            adapters,
            config,
            Arc::new(self.clock.clone()),
        )
    }

    /// Writes a batch record and its items (`(itemId, userId, netAmount)`), as upstream does.
    pub async fn seed_batch(
        &self,
        batch_id: &str,
        provider: &str,
        currency: &str,
        items: &[(String, String, String)],
    ) {
        let mut records = vec![HashMap::from([
            (attr::PK.to_owned(), s(keys::batch_pk(batch_id))),
            (attr::SK.to_owned(), s(keys::BATCH_SK)),
            (attr::BATCH_ID.to_owned(), s(batch_id)),
            (attr::PROVIDER.to_owned(), s(provider)),
            (attr::CURRENCY.to_owned(), s(currency)),
            (attr::STATUS.to_owned(), s("pending")),
            ("createdAt".to_owned(), s("2026-11-25T09:00:00Z")),
        ])];
        records.extend(items.iter().map(|(item_id, user_id, amount)| {
            HashMap::from([
                (attr::PK.to_owned(), s(keys::batch_pk(batch_id))),
                (attr::SK.to_owned(), s(keys::item_sk(item_id))),
                (attr::ITEM_ID.to_owned(), s(item_id)),
                (attr::USER_ID.to_owned(), s(user_id)),
                (
                    attr::NET_AMOUNT.to_owned(),
                    AttributeValue::N(amount.clone()),
                ),
                (attr::STATUS.to_owned(), s("pending")),
            ])
        }));
        self.put_all(self.store.payouts_table(), records).await;
    }

    /// Writes recipients' settings: `(userId, providerAccountId, isVerified)`.
    pub async fn seed_users(&self, users: &[(String, String, bool)]) {
        let records = users
            .iter()
            .map(|(user_id, account, verified)| {
                HashMap::from([
                    (attr::USER_ID.to_owned(), s(user_id)),
                    (
                        attr::PAYOUT_METHOD.to_owned(),
                        AttributeValue::M(HashMap::from([
                            (attr::PROVIDER_ACCOUNT_ID.to_owned(), s(account)),
                            (
                                attr::IS_VERIFIED.to_owned(),
                                AttributeValue::Bool(*verified),
                            ),
                            (attr::METHOD_TYPE.to_owned(), s("bank_account")),
                        ])),
                    ),
                ])
            })
            .collect();
        self.put_all(self.store.settings_table(), records).await;
        self.requests.reset();
    }

    async fn put_all(&self, table: &str, records: Vec<HashMap<String, AttributeValue>>) {
        let writes: Vec<WriteRequest> = records
            .into_iter()
            .map(|item| {
                WriteRequest::builder()
                    .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
                    .build()
            })
            .collect();
        for chunk in writes.chunks(25) {
            seed::write_chunk(self.client(), table, chunk.to_vec())
                .await
                .expect("seed");
        }
        self.requests.reset();
    }

    /// Sets attributes of an item record by hand, as upstream edits or an earlier (crashed)
    /// attempt left them; `None` removes the attribute.
    pub async fn set_item_attributes(
        &self,
        batch_id: &str,
        item_id: &str,
        values: &[(&str, Option<AttributeValue>)],
    ) {
        self.set_attributes(keys::item_sk(item_id), batch_id, values)
            .await;
    }

    /// Sets attributes of a batch record by hand (`None` removes one).
    pub async fn set_batch_attributes(
        &self,
        batch_id: &str,
        values: &[(&str, Option<AttributeValue>)],
    ) {
        self.set_attributes(keys::BATCH_SK.to_owned(), batch_id, values)
            .await;
    }

    async fn set_attributes(
        &self,
        sk: String,
        batch_id: &str,
        values: &[(&str, Option<AttributeValue>)],
    ) {
        let (mut sets, mut removes) = (Vec::new(), Vec::new());
        let mut request = self
            .client()
            .update_item()
            .table_name(self.store.payouts_table())
            .key(attr::PK, s(keys::batch_pk(batch_id)))
            .key(attr::SK, s(sk));
        for (n, (name, value)) in values.iter().enumerate() {
            request = request.expression_attribute_names(format!("#a{n}"), *name);
            match value {
                Some(value) => {
                    sets.push(format!("#a{n} = :v{n}"));
                    request = request.expression_attribute_values(format!(":v{n}"), value.clone());
                }
                None => removes.push(format!("#a{n}")),
            }
        }
        let mut expression = String::new();
        if !sets.is_empty() {
            expression.push_str(&format!("SET {}", sets.join(", ")));
        }
        if !removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        request
            .update_expression(expression.trim())
            .send()
            .await
            .expect("UpdateItem");
        self.requests.reset();
    }

    /// The raw batch record (status, `itemCounts`, …), read strongly consistently.
    pub async fn raw_batch(&self, batch_id: &str) -> HashMap<String, AttributeValue> {
        self.client()
            .get_item()
            .table_name(self.store.payouts_table())
            .key(attr::PK, s(keys::batch_pk(batch_id)))
            .key(attr::SK, s(keys::BATCH_SK))
            .consistent_read(true)
            .send()
            .await
            .expect("GetItem")
            .item
            .expect("batch exists")
    }

    /// The raw item record, read strongly consistently.
    pub async fn raw_item(
        &self,
        batch_id: &str,
        item_id: &str,
    ) -> Option<HashMap<String, AttributeValue>> {
        self.client()
            .get_item()
            .table_name(self.store.payouts_table())
            .key(attr::PK, s(keys::batch_pk(batch_id)))
            .key(attr::SK, s(keys::item_sk(item_id)))
            .consistent_read(true)
            .send()
            .await
            .expect("GetItem")
            .item
    }

    /// The decoded item.
    pub async fn item(&self, batch_id: &str, item_id: &str) -> PayoutItem {
        self.store
            .get_item(batch_id, item_id)
            .await
            .expect("GetItem")
            .expect("item exists")
    }

    /// Every item of the batch, through the store's own pagination.
    pub async fn items(&self, batch_id: &str) -> Vec<PayoutItem> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .store
                .query_items_page(batch_id, start, None, None)
                .await
                .expect("Query");
            items.extend(page.items.into_iter().map(|i| i.expect("item decodes")));
            match page.next {
                Some(next) => start = Some(next),
                None => return items,
            }
        }
    }

    /// Every record of the payouts table (for "nothing was written" checks).
    pub async fn scan_payouts(&self) -> Vec<HashMap<String, AttributeValue>> {
        let mut records = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client()
                .scan()
                .table_name(self.store.payouts_table())
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("Scan");
            records.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(next) if !next.is_empty() => start = Some(next),
                _ => {
                    records.sort_by_key(|r| format!("{:?}{:?}", r.get(attr::PK), r.get(attr::SK)));
                    return records;
                }
            }
        }
    }
}

async fn wait_active(client: &Client, table: &str) {
    for _ in 0..120 {
        let out = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .expect("DescribeTable");
        if out
            .table
            .and_then(|t| t.table_status)
            .is_some_and(|s| s.as_str() == "ACTIVE")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("table {table} did not become ACTIVE");
}

/// `count` items `item-00001…` for users `user-00001…`, each `amount`.
pub fn items(count: usize, amount: &str) -> Vec<(String, String, String)> {
    (1..=count)
        .map(|i| {
            (
                format!("item-{i:05}"),
                format!("user-{i:05}"),
                amount.to_owned(),
            )
        })
        .collect()
}

/// Verified settings for the users of `items`, account `acct_<userId>`.
pub fn verified_users(items: &[(String, String, String)]) -> Vec<(String, String, bool)> {
    items
        .iter()
        .map(|(_, user, _)| (user.clone(), format!("acct_{user}"), true))
        .collect()
}

/// A number attribute, re-exported for tests that write records by hand.
pub fn number(value: impl ToString) -> AttributeValue {
    n(value)
}

/// Sends the code's logs to the test's output (shown for failing tests), once per process.
fn init_logs() {
    use lambda_runtime::tracing::subscriber;
    let _ = subscriber::fmt()
        .with_env_filter(subscriber::EnvFilter::new(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        ))
        .with_test_writer()
        .try_init();
}
