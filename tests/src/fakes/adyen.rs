//! A fake Adyen Balance Platform for tests and local runs: the slice of the Transfers API v4
//! the adapter uses (`POST /btl/v4/transfers`, `GET /btl/v4/transfers` by balance account and
//! reference with a creation window and cursor paging, `GET /btl/v4/transfers/{id}`), shaped
//! after Adyen's OpenAPI description (`TransferService-v4`), with a real idempotency store,
//! faults injected on purpose, asynchronous status progression, and a signer for Adyen's
//! `balancePlatform.transfer.*` webhooks (`HmacSignature`).
//!
//! Idempotency as this fake models it (Adyen documents the first two; the rest is the reading
//! the adapter is built to survive):
//! - a repeated `Idempotency-Key` gets the first answer back, errors included once the request
//!   began executing; while the first request is still executing, 409 with errorCode `704`;
//! - the same key with another body also gets the first answer back (Adyen documents no error
//!   for it): the adapter recognises the replay by comparing the transfer with its request;
//! - keys are forgotten 7 days after first use, on a clock tests can move forward;
//! - authentication, rate limiting and validation run before that layer and are not stored.
//!
//! Served over plain HTTP on 127.0.0.1 with hyper (no extra web framework).

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use payouts_config::{AdyenSettings, Secret};
use payouts_psp::adyen::webhook::{sign, transfer_event_json};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The API key the fake accepts (`X-API-Key`); anything else is a 401.
pub const FAKE_API_KEY: &str = "AQE_fake_adyen_api_key";
/// The platform's balance account, the source of every payout.
pub const FAKE_BALANCE_ACCOUNT: &str = "BA_PLATFORM_FAKE";
/// The webhook endpoint's HMAC key (hex, as Adyen's Customer Area shows it).
pub const FAKE_HMAC_KEY: &str = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";
/// How long the fake keeps an idempotency key (the shorter of what Adyen has documented).
pub const FAKE_KEY_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// A failure the fake produces on purpose, for one transfer creation to a counterparty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// A 500 before the idempotency layer: nothing stored, nothing made.
    ServerErrorUnstored,
    /// The request began executing and failed before making the transfer: the 500 is stored
    /// under the key and replayed.
    ServerErrorBeforeCreate,
    /// The transfer was made, then the request failed: the 500 is stored under the key.
    ServerErrorAfterCreate,
    /// 429 with `Retry-After`, before the idempotency layer: nothing stored.
    RateLimited { retry_after_secs: u64 },
    /// The transfer was made and its answer stored, then the connection is closed unanswered.
    DropResponseAfterCreate,
    /// The request holds its key this long before executing (a concurrent request with the
    /// same key meets 409 `704` meanwhile).
    Slow(Duration),
}

impl Fault {
    fn before_idempotency(&self) -> bool {
        matches!(self, Fault::ServerErrorUnstored | Fault::RateLimited { .. })
    }
}

/// A transfer the fake made (the outgoing side, from the platform's balance account).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeTransfer {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    pub balance_account: String,
    pub counterparty: String,
    pub reference: String,
    pub description: Option<String>,
    pub status: String,
    pub reason: String,
    /// Webhooks sent for it so far (the next one's `sequenceNumber` is this + 1).
    pub sequence_number: u64,
    /// Unix ms on the machine's clock (lookups filter on it).
    pub created_ms: u64,
    pub idempotency_key: Option<String>,
}

/// A request as the fake received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub at: std::time::Instant,
    pub method: String,
    pub path: String,
    /// Decoded query parameters, in order.
    pub query: Vec<(String, String)>,
    /// The JSON body (POST), or `Null`.
    pub body: Value,
    pub idempotency_key: Option<String>,
    pub content_type: Option<String>,
    pub authorized: bool,
}

impl RecordedRequest {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn is_create(&self) -> bool {
        self.method == "POST" && self.path == "/btl/v4/transfers"
    }

    /// The counterparty balance account of a create.
    pub fn counterparty(&self) -> Option<&str> {
        self.body["counterparty"]["balanceAccountId"].as_str()
    }
}

#[derive(Debug, Clone)]
struct StoredAnswer {
    status: StatusCode,
    body: String,
    stored_at: u64,
}

#[derive(Debug, Clone)]
enum KeyState {
    InFlight { since: u64 },
    Done(StoredAnswer),
}

#[derive(Default)]
struct State {
    clock_offset: Duration,
    next_id: u64,
    transfers: Vec<FakeTransfer>,
    keys: HashMap<String, KeyState>,
    faults: HashMap<String, VecDeque<Fault>>,
    rejections: HashMap<String, (StatusCode, String, String)>,
    requests: Vec<RecordedRequest>,
    replays: u64,
    conflicts: u64,
    /// `GET /btl/v4/transfers/{id}` requests still to answer with a 500.
    failing_retrievals: usize,
    /// The most transfers one list page holds, below the `limit` asked for.
    max_page_size: Option<usize>,
    /// Which list request from now (1 = the next) answers a 500.
    failing_list: Option<usize>,
}

impl State {
    fn now_secs(&self) -> u64 {
        (SystemTime::now() + self.clock_offset)
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    /// The state of `key`, forgetting it once past retention.
    fn key(&mut self, key: &str) -> Option<KeyState> {
        let now = self.now_secs();
        let started = match self.keys.get(key)? {
            KeyState::InFlight { since } => *since,
            KeyState::Done(answer) => answer.stored_at,
        };
        if now.saturating_sub(started) >= FAKE_KEY_RETENTION.as_secs() {
            self.keys.remove(key);
            return None;
        }
        self.keys.get(key).cloned()
    }
}

/// A running fake Adyen on 127.0.0.1. Stops when dropped.
pub struct FakeAdyen {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for FakeAdyen {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeAdyen {
    /// Starts the fake on a free port.
    pub async fn start() -> FakeAdyen {
        Self::start_on(0).await.expect("start the fake Adyen")
    }

    /// Starts the fake on `port` (0: any free port).
    pub async fn start_on(port: u16) -> std::io::Result<FakeAdyen> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let task = tokio::spawn(accept_loop(listener, state.clone(), addr));
        Ok(FakeAdyen { addr, state, task })
    }

    /// The value for `ADYEN_API_BASE`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adapter settings pointing at this fake (fast pace, short timeouts and settle delay),
    /// with the fake's HMAC key.
    pub fn config(&self) -> AdyenSettings {
        let mut config = AdyenSettings::new(FAKE_API_KEY, FAKE_BALANCE_ACCOUNT);
        config.api_base = self.base_url();
        config.hmac_keys = vec![Secret::from(FAKE_HMAC_KEY)];
        config.budget = payouts_config::RequestBudget::alone(1_000);
        config.request_timeout = Duration::from_secs(3);
        config.settle_delay = Duration::from_millis(200);
        config
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fake Adyen state poisoned")
    }

    /// Makes the next `times` transfer creations to `counterparty` meet `fault`.
    pub fn inject(&self, counterparty: &str, fault: Fault, times: usize) {
        self.state()
            .faults
            .entry(counterparty.to_owned())
            .or_default()
            .extend(std::iter::repeat_n(fault, times));
    }

    /// Every transfer to `counterparty` is refused with `status` (400/422) and Adyen's
    /// `errorCode`/`detail`, stored under the key as a request that began executing.
    pub fn reject_counterparty(&self, counterparty: &str, status: u16, code: &str, detail: &str) {
        self.state().rejections.insert(
            counterparty.to_owned(),
            (
                StatusCode::from_u16(status).expect("status"),
                code.to_owned(),
                detail.to_owned(),
            ),
        );
    }

    /// Makes the next `times` requests for one transfer (`GET /btl/v4/transfers/{id}`) answer
    /// a 500, as Adyen does when it is down.
    pub fn fail_retrievals(&self, times: usize) {
        self.state().failing_retrievals += times;
    }

    /// Makes a transfer directly, as if made outside our executor (the Customer Area, another
    /// system): an outgoing internal transfer from the platform's balance account to
    /// `counterparty` with `reference`, status `booked`, no idempotency key, created now on the
    /// machine's clock (as every transfer here: lookups' windows are read on it). Returns its id.
    pub fn make_transfer(
        &self,
        counterparty: &str,
        amount: i64,
        currency: &str,
        reference: &str,
    ) -> String {
        let mut state = self.state();
        state.next_id += 1;
        let transfer = FakeTransfer {
            id: format!("1W1UG35FAKE{:08}", state.next_id),
            amount,
            currency: currency.to_owned(),
            balance_account: FAKE_BALANCE_ACCOUNT.to_owned(),
            counterparty: counterparty.to_owned(),
            reference: reference.to_owned(),
            description: None,
            status: "booked".to_owned(),
            reason: "approved".to_owned(),
            sequence_number: 3,
            created_ms: payouts_core::clock::now_ms(),
            idempotency_key: None,
        };
        let id = transfer.id.clone();
        state.transfers.push(transfer);
        id
    }

    /// Caps every list page (`GET /btl/v4/transfers`) at `size` transfers, whatever `limit`
    /// asks, so paging can be tested with few transfers.
    pub fn set_max_page_size(&self, size: usize) {
        self.state().max_page_size = Some(size.max(1));
    }

    /// Makes the `nth` list request from now (1: the next) answer a 500.
    pub fn fail_list_request(&self, nth: usize) {
        self.state().failing_list = Some(nth.max(1));
    }

    /// Moves the fake's clock forward (key retention).
    pub fn advance_clock(&self, by: Duration) {
        self.state().clock_offset += by;
    }

    /// Whether an answer is stored under the `Idempotency-Key` value `key` now.
    pub fn has_key(&self, key: &str) -> bool {
        matches!(self.state().key(key), Some(KeyState::Done(_)))
    }

    /// Every transfer made, in order.
    pub fn transfers(&self) -> Vec<FakeTransfer> {
        self.state().transfers.clone()
    }

    /// The transfer `id`.
    pub fn transfer(&self, id: &str) -> Option<FakeTransfer> {
        self.state().transfers.iter().find(|t| t.id == id).cloned()
    }

    /// How many transfers `counterparty` received: what was really paid.
    pub fn transfers_to(&self, counterparty: &str) -> usize {
        self.state()
            .transfers
            .iter()
            .filter(|t| t.counterparty == counterparty)
            .count()
    }

    /// Transfers carrying `reference` (one item's, whatever key made them).
    pub fn transfers_with_reference(&self, reference: &str) -> Vec<FakeTransfer> {
        self.state()
            .transfers
            .iter()
            .filter(|t| t.reference == reference)
            .cloned()
            .collect()
    }

    /// Transfers per counterparty.
    pub fn transfer_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for transfer in &self.state().transfers {
            *counts.entry(transfer.counterparty.clone()).or_default() += 1;
        }
        counts
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }

    /// `POST /btl/v4/transfers` requests for `counterparty`.
    pub fn creations_for(&self, counterparty: &str) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_create() && r.counterparty() == Some(counterparty))
            .collect()
    }

    /// How many answers were replays of a stored one.
    pub fn replays(&self) -> u64 {
        self.state().replays
    }

    /// How many requests met 409 (key in flight).
    pub fn conflicts(&self) -> u64 {
        self.state().conflicts
    }

    /// Moves transfer `id` to `status` (`authorised`, `booked`, `refused`, `returned`…) with
    /// `reason`, as Adyen does asynchronously, and returns the signed
    /// `balancePlatform.transfer.updated` webhook it sends for it.
    pub fn advance(&self, id: &str, status: &str, reason: Option<&str>) -> SignedWebhook {
        let transfer = {
            let mut state = self.state();
            let transfer = state
                .transfers
                .iter_mut()
                .find(|t| t.id == id)
                .expect("known transfer");
            transfer.status = status.to_owned();
            transfer.reason = reason.unwrap_or("approved").to_owned();
            transfer.sequence_number += 1;
            transfer.clone()
        };
        self.webhook(
            &transfer,
            "balancePlatform.transfer.updated",
            transfer.sequence_number,
        )
    }

    /// The signed webhook for `transfer` as Adyen would send it at `sequence_number` with the
    /// transfer's current status: for duplicates and out-of-order deliveries.
    pub fn webhook(
        &self,
        transfer: &FakeTransfer,
        event_type: &str,
        sequence_number: u64,
    ) -> SignedWebhook {
        self.event(
            transfer,
            event_type,
            sequence_number,
            &transfer.status,
            &transfer.reason,
        )
    }

    /// The signed webhook for `transfer` at `sequence_number` with any `status` and `reason`,
    /// whatever the transfer's state here: for events delivered late or out of order.
    pub fn event(
        &self,
        transfer: &FakeTransfer,
        event_type: &str,
        sequence_number: u64,
        status: &str,
        reason: &str,
    ) -> SignedWebhook {
        let timestamp = payouts_core::clock::rfc3339_from_ms(self.state().now_secs() * 1000);
        let body = transfer_event_json(
            event_type,
            &transfer.id,
            sequence_number,
            status,
            Some(reason),
            &transfer.reference,
            &transfer.balance_account,
            &transfer.counterparty,
            (transfer.amount, &transfer.currency),
            &timestamp,
        );
        SignedWebhook::new(body, FAKE_HMAC_KEY)
    }
}

/// A webhook body and its `HmacSignature`, as Adyen posts them.
#[derive(Debug, Clone)]
pub struct SignedWebhook {
    pub body: String,
    pub signature: String,
}

impl SignedWebhook {
    /// `body` signed with the hex `hmac_key`.
    pub fn new(body: String, hmac_key: &str) -> Self {
        let signature = sign(hmac_key, body.as_bytes()).expect("hex HMAC key");
        SignedWebhook { body, signature }
    }

    /// The request headers Adyen sends.
    pub fn headers(&self) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert("HmacSignature", self.signature.parse().expect("header"));
        headers.insert("content-type", "application/json".parse().expect("header"));
        headers
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<Mutex<State>>, addr: SocketAddr) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let hang_up = Arc::new(Notify::new());
            let signal = hang_up.clone();
            let service = hyper::service::service_fn(move |request| {
                handle(state.clone(), signal.clone(), addr, request)
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                _ = hang_up.notified() => {}
            }
        });
    }
}

enum Reply {
    Answer(Response<Full<Bytes>>),
    HangUp,
}

async fn handle(
    state: Arc<Mutex<State>>,
    hang_up: Arc<Notify>,
    addr: SocketAddr,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let recorded = RecordedRequest {
        at: std::time::Instant::now(),
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect(),
        body: if parts.method == Method::POST {
            serde_json::from_slice(&body).unwrap_or(Value::Null)
        } else {
            Value::Null
        },
        idempotency_key: header("idempotency-key"),
        content_type: header("content-type"),
        authorized: header("x-api-key").as_deref() == Some(FAKE_API_KEY),
    };
    state.lock().unwrap().requests.push(recorded.clone());

    let reply = if !recorded.authorized {
        // Adyen's 401 is the older ServiceError shape.
        Reply::Answer(answer(
            StatusCode::UNAUTHORIZED,
            json!({"status": 401, "errorCode": "000", "message": "HTTP Status Response - Unauthorized", "errorType": "security"}).to_string(),
            None,
        ))
    } else {
        match (recorded.method.as_str(), recorded.path.as_str()) {
            ("POST", "/btl/v4/transfers") => {
                // Adyen finishes executing a request whose client went away (a crashed or
                // timed-out caller): its outcome is stored under the key, never left in flight.
                let (state, recorded) = (state.clone(), recorded.clone());
                tokio::spawn(async move { create(&state, &recorded).await })
                    .await
                    .expect("the fake's create panicked")
            }
            ("GET", "/btl/v4/transfers") => Reply::Answer(list(&state, &recorded, addr)),
            ("GET", path) if path.starts_with("/btl/v4/transfers/") => {
                Reply::Answer(get(&state, &path["/btl/v4/transfers/".len()..]))
            }
            _ => Reply::Answer(problem(
                StatusCode::NOT_FOUND,
                "00_404",
                "Not found",
                &format!("No route for {} {}", recorded.method, recorded.path),
            )),
        }
    };
    match reply {
        Reply::Answer(response) => Ok(response),
        Reply::HangUp => {
            hang_up.notify_one();
            std::future::pending().await
        }
    }
}

async fn create(state: &Arc<Mutex<State>>, request: &RecordedRequest) -> Reply {
    let counterparty = request.counterparty().unwrap_or_default().to_owned();
    // Before the idempotency layer: rate limiting and unstored failures.
    let fault = {
        let mut state = state.lock().unwrap();
        let queue = state.faults.entry(counterparty.clone()).or_default();
        match queue.front() {
            Some(fault) if fault.before_idempotency() => queue.pop_front(),
            _ => None,
        }
    };
    match fault {
        Some(Fault::RateLimited { retry_after_secs }) => {
            let mut response = problem(
                StatusCode::TOO_MANY_REQUESTS,
                "00_429",
                "Too many requests",
                "Rate limit exceeded",
            );
            response
                .headers_mut()
                .insert("retry-after", retry_after_secs.to_string().parse().unwrap());
            return Reply::Answer(response);
        }
        Some(_) => {
            return Reply::Answer(problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "99_500",
                "Error processing request",
                "Internal error",
            ));
        }
        None => {}
    }

    // Validation (not stored).
    let body = &request.body;
    let key = request.idempotency_key.clone();
    if key.as_ref().is_some_and(|k| k.len() > 64) {
        return Reply::Answer(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "00_422",
            "Unprocessable entity",
            "Idempotency-Key is longer than 64 characters",
        ));
    }
    let amount = body["amount"]["value"].as_i64().unwrap_or(0);
    let currency = body["amount"]["currency"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let reference = body["reference"].as_str().unwrap_or_default().to_owned();
    let invalid = |name: &str, message: &str| {
        Reply::Answer(answer(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({
                "type": "https://docs.adyen.com/errors/validation",
                "title": "Invalid transfer information provided", "status": 422,
                "detail": "Invalid transfer information provided", "errorCode": "00_422",
                "invalidFields": [{"name": name, "value": "", "message": message}],
                "requestId": "fake-request",
            })
            .to_string(),
            None,
        ))
    };
    if body["category"] != "internal" {
        return invalid("category", "only internal transfers are modelled");
    }
    if amount <= 0 {
        return invalid("amount.value", "must be a positive integer");
    }
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return invalid("amount.currency", "must be an upper-case ISO code");
    }
    if body["balanceAccountId"] != FAKE_BALANCE_ACCOUNT {
        return invalid("balanceAccountId", "not a balance account of this platform");
    }
    if counterparty.is_empty() {
        return invalid(
            "counterparty.balanceAccountId",
            "a counterparty is required",
        );
    }
    if reference.is_empty() || reference.chars().count() > 80 {
        return invalid("reference", "1 to 80 characters");
    }

    // The idempotency layer.
    if let Some(key) = &key {
        let mut guard = state.lock().unwrap();
        match guard.key(key) {
            Some(KeyState::InFlight { .. }) => {
                guard.conflicts += 1;
                return Reply::Answer(problem(
                    StatusCode::CONFLICT,
                    "704",
                    "Conflict",
                    "request already processed or in progress",
                ));
            }
            Some(KeyState::Done(stored)) => {
                guard.replays += 1;
                return Reply::Answer(answer(stored.status, stored.body, Some(key)));
            }
            None => {
                let since = guard.now_secs();
                guard.keys.insert(key.clone(), KeyState::InFlight { since });
            }
        }
    }

    // Executing: from here on, the outcome is stored under the key.
    let execution_fault = {
        let mut guard = state.lock().unwrap();
        let queue = guard.faults.entry(counterparty.clone()).or_default();
        queue.pop_front()
    };
    if let Some(Fault::Slow(delay)) = execution_fault {
        tokio::time::sleep(delay).await;
    }
    let mut state = state.lock().unwrap();
    let store = |state: &mut State, status: StatusCode, body: String| {
        if let Some(key) = &key {
            let stored_at = state.now_secs();
            state.keys.insert(
                key.clone(),
                KeyState::Done(StoredAnswer {
                    status,
                    body,
                    stored_at,
                }),
            );
        }
    };
    let server_error = || problem_json(500, "99_500", "Error processing request", "Internal error");
    if execution_fault == Some(Fault::ServerErrorBeforeCreate) {
        let body = server_error();
        store(&mut state, StatusCode::INTERNAL_SERVER_ERROR, body.clone());
        return Reply::Answer(answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            body,
            key.as_deref(),
        ));
    }
    if let Some((status, code, detail)) = state.rejections.get(&counterparty).cloned() {
        let body = problem_json(
            status.as_u16(),
            &code,
            "Invalid transfer information provided",
            &detail,
        );
        store(&mut state, status, body.clone());
        return Reply::Answer(answer(status, body, key.as_deref()));
    }
    state.next_id += 1;
    let transfer = FakeTransfer {
        id: format!("1W1UG35FAKE{:08}", state.next_id),
        amount,
        currency,
        balance_account: FAKE_BALANCE_ACCOUNT.to_owned(),
        counterparty: counterparty.clone(),
        reference,
        description: body["description"].as_str().map(str::to_owned),
        status: "received".to_owned(),
        reason: "pending".to_owned(),
        sequence_number: 1,
        created_ms: payouts_core::clock::now_ms(),
        idempotency_key: key.clone(),
    };
    let body = transfer_json(&transfer).to_string();
    state.transfers.push(transfer);
    match execution_fault {
        Some(Fault::ServerErrorAfterCreate) => {
            let body = server_error();
            store(&mut state, StatusCode::INTERNAL_SERVER_ERROR, body.clone());
            Reply::Answer(answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                body,
                key.as_deref(),
            ))
        }
        Some(Fault::DropResponseAfterCreate) => {
            store(&mut state, StatusCode::ACCEPTED, body);
            Reply::HangUp
        }
        _ => {
            store(&mut state, StatusCode::ACCEPTED, body.clone());
            Reply::Answer(answer(StatusCode::ACCEPTED, body, key.as_deref()))
        }
    }
}

fn list(
    state: &Arc<Mutex<State>>,
    request: &RecordedRequest,
    addr: SocketAddr,
) -> Response<Full<Bytes>> {
    let mut state = state.lock().unwrap();
    match state.failing_list {
        Some(1) => {
            state.failing_list = None;
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "99_500",
                "Error processing request",
                "Internal error",
            );
        }
        Some(n) => state.failing_list = Some(n - 1),
        None => {}
    }
    let window = (
        request.param("createdSince").and_then(parse_time_ms),
        request.param("createdUntil").and_then(parse_time_ms),
    );
    let (Some(since), Some(until)) = window else {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "00_422",
            "Unprocessable entity",
            "createdSince and createdUntil are required ISO 8601 date-times",
        );
    };
    if until < since || until - since > 184 * 24 * 3600 * 1000 {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "00_422",
            "Unprocessable entity",
            "createdSince must be at most 6 months before createdUntil",
        );
    }
    let Some(account) = request.param("balanceAccountId") else {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "00_422",
            "Unprocessable entity",
            "balanceAccountId, accountHolderId or balancePlatform is required",
        );
    };
    let limit = match request.param("limit").map(str::parse::<usize>) {
        None => 10,
        Some(Ok(limit)) if (1..=100).contains(&limit) => limit,
        Some(_) => {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "00_422",
                "Unprocessable entity",
                "limit must be between 1 and 100",
            );
        }
    };
    let limit = state.max_page_size.map_or(limit, |max| limit.min(max));
    let offset = match request.param("cursor") {
        None => 0,
        Some(cursor) => match cursor
            .strip_prefix("S2B-")
            .and_then(|c| c.parse::<usize>().ok())
        {
            Some(offset) => offset,
            None => {
                return problem(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "00_422",
                    "Unprocessable entity",
                    "invalid cursor",
                );
            }
        },
    };
    let mut matching: Vec<&FakeTransfer> = state
        .transfers
        .iter()
        .filter(|t| {
            t.balance_account == account
                && (since..=until).contains(&t.created_ms)
                && request.param("reference").is_none_or(|r| t.reference == r)
        })
        .collect();
    if request.param("sortOrder") == Some("desc") {
        matching.reverse();
    }
    let data: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|t| transfer_data_json(t))
        .collect();
    let mut body = json!({ "data": data });
    if matching.len() > offset + limit {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in &request.query {
            if name != "cursor" {
                query.append_pair(name, value);
            }
        }
        query.append_pair("cursor", &format!("S2B-{}", offset + limit));
        body["_links"] =
            json!({"next": {"href": format!("http://{addr}/btl/v4/transfers?{}", query.finish())}});
    }
    answer(StatusCode::OK, body.to_string(), None)
}

fn get(state: &Arc<Mutex<State>>, id: &str) -> Response<Full<Bytes>> {
    let mut state = state.lock().unwrap();
    if state.failing_retrievals > 0 {
        state.failing_retrievals -= 1;
        return problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "99_500",
            "Error processing request",
            "Internal error",
        );
    }
    match state.transfers.iter().find(|t| t.id == id) {
        Some(transfer) => answer(
            StatusCode::OK,
            transfer_data_json(transfer).to_string(),
            None,
        ),
        None => problem(
            StatusCode::NOT_FOUND,
            "00_404",
            "Not found",
            &format!("Transfer {id} not found"),
        ),
    }
}

fn parse_time_ms(text: &str) -> Option<u64> {
    payouts_core::clock::ms_from_rfc3339(text)
}

/// The `Transfer` answer to a create (fields Adyen's description marks required, and those the
/// adapter reads).
fn transfer_json(transfer: &FakeTransfer) -> Value {
    json!({
        "id": transfer.id,
        "accountHolder": {"id": "AH_PLATFORM_FAKE"},
        "amount": {"value": transfer.amount, "currency": transfer.currency},
        "balanceAccount": {"id": transfer.balance_account},
        "category": "internal",
        "counterparty": {"balanceAccountId": transfer.counterparty},
        "description": transfer.description,
        "direction": "outgoing",
        "reason": transfer.reason,
        "reference": transfer.reference,
        "status": transfer.status,
        "type": "internalTransfer",
    })
}

/// A `TransferData` list entry.
fn transfer_data_json(transfer: &FakeTransfer) -> Value {
    let mut value = transfer_json(transfer);
    value["balancePlatform"] = json!("YOUR_BALANCE_PLATFORM");
    value["creationDate"] = json!(payouts_core::clock::rfc3339_from_ms(transfer.created_ms));
    value["sequenceNumber"] = json!(transfer.sequence_number);
    value
}

fn problem_json(status: u16, code: &str, title: &str, detail: &str) -> String {
    json!({
        "type": "https://docs.adyen.com/errors/general",
        "title": title, "status": status, "detail": detail, "errorCode": code,
        "requestId": "fake-request",
    })
    .to_string()
}

fn problem(status: StatusCode, code: &str, title: &str, detail: &str) -> Response<Full<Bytes>> {
    answer(
        status,
        problem_json(status.as_u16(), code, title, detail),
        None,
    )
}

fn answer(
    status: StatusCode,
    body: String,
    idempotency_key: Option<&str>,
) -> Response<Full<Bytes>> {
    let mut response = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if let Some(key) = idempotency_key {
        response = response.header("idempotency-key", key);
    }
    response
        .body(Full::new(Bytes::from(body)))
        .expect("valid response")
}
