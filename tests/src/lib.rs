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
/// the bytes of the answers (their `content-length`).
#[derive(Debug, Clone, Default)]
pub struct RequestCounter(Arc<Mutex<BTreeMap<String, u64>>>, Arc<AtomicU64>);

impl RequestCounter {
    /// Bytes of the answers received since the last reset.
    pub fn bytes_received(&self) -> u64 {
        self.1.load(Ordering::Relaxed)
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
        self.1.store(0, Ordering::Relaxed);
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
        *self.0.lock().unwrap().entry(operation).or_default() += 1;
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
        self.1.fetch_add(length, Ordering::Relaxed);
        Ok(())
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
        }
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
                .query_items_page(batch_id, start, None)
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
