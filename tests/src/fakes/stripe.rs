//! A fake Stripe for tests and local runs: the slice of Stripe's API v1 the adapter uses
//! (`POST /v1/transfers`, `GET /v1/transfers` by `transfer_group`/`destination`/`created[gte]`,
//! `GET /v1/transfers/{id}`), shaped after Stripe's OpenAPI description, with a real
//! idempotency store, transfers a test can reverse, and faults injected on purpose.
//!
//! Idempotency as Stripe documents it: the first result of a request that began executing is
//! stored under its `Idempotency-Key` (400s and 500s included) and replayed with
//! `Idempotent-Replayed: true`; the same key with other parameters is a 400 `idempotency_error`;
//! rate limiting and parameter validation run before that layer and are not stored. Keys are
//! forgotten 24 hours after first use, on a clock tests can move forward.
//!
//! Served over plain HTTP on 127.0.0.1 with hyper (no extra web framework).

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use payouts_config::StripeSettings;
use payouts_psp::stripe::STRIPE_API_VERSION;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The secret key the fake accepts (`Authorization: Bearer …`); anything else is a 401.
pub const FAKE_SECRET_KEY: &str = "sk_test_fake_stripe";

/// How long the fake keeps an idempotency key (Stripe: at least 24 hours).
pub const FAKE_KEY_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// A failure the fake produces on purpose, for one transfer creation to a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// A 500 before the request reached the idempotency layer: nothing stored, nothing made.
    ServerErrorUnstored,
    /// The request began executing and failed before making the transfer: the 500 is stored
    /// under the key and replayed.
    ServerErrorStoredBeforeCreate,
    /// The transfer was made, then the request failed: the 500 is stored under the key.
    ServerErrorStoredAfterCreate,
    /// 429 with `Retry-After`, before the idempotency layer: nothing stored.
    RateLimited { retry_after_secs: u64 },
    /// The transfer was made and its 200 stored, then the connection is closed unanswered.
    DropResponseAfterCreate,
    /// The answer comes this much later (the request itself is handled normally).
    Slow(Duration),
}

impl Fault {
    /// Faults that act before the idempotency layer (so they also hit replays).
    fn before_idempotency(&self) -> bool {
        matches!(
            self,
            Fault::ServerErrorUnstored | Fault::RateLimited { .. } | Fault::Slow(_)
        )
    }
}

/// A transfer the fake made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeTransfer {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    pub destination: String,
    pub transfer_group: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// Unix seconds on the fake's clock.
    pub created: u64,
    pub idempotency_key: Option<String>,
    /// The amounts of its reversals, oldest first ([`FakeStripe::reverse`]).
    pub reversals: Vec<i64>,
}

impl FakeTransfer {
    /// How much was taken back (Stripe's `amount_reversed`).
    pub fn amount_reversed(&self) -> i64 {
        self.reversals.iter().sum()
    }
}

/// A request as the fake received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub at: std::time::Instant,
    pub method: String,
    pub path: String,
    /// Decoded query (GET) or form body (POST) parameters, in order.
    pub params: Vec<(String, String)>,
    pub idempotency_key: Option<String>,
    pub stripe_version: Option<String>,
    pub content_type: Option<String>,
    pub authorized: bool,
}

impl RecordedRequest {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn is_create(&self) -> bool {
        self.method == "POST" && self.path == "/v1/transfers"
    }
}

struct StoredAnswer {
    fingerprint: String,
    status: StatusCode,
    body: String,
    stored_at: u64,
}

#[derive(Default)]
struct State {
    clock_offset: Duration,
    next_id: u64,
    transfers: Vec<FakeTransfer>,
    keys: HashMap<String, StoredAnswer>,
    faults: HashMap<String, VecDeque<Fault>>,
    rejections: HashMap<String, (StatusCode, String, String)>,
    requests: Vec<RecordedRequest>,
    replays: u64,
    /// `GET /v1/transfers/{id}` requests still to answer with a 500.
    failing_retrievals: usize,
    /// The most transfers one list page holds, below the `limit` asked for.
    max_page_size: Option<usize>,
    /// Which list request from now (1 = the next) answers a 500.
    failing_list: Option<usize>,
    /// The account's rate limit, as Stripe enforces it: above this many requests in the last
    /// second, a 429 (not stored under the key).
    rate_limit: Option<usize>,
    /// Admitted requests of the last second, and every request of the last second.
    admitted: VecDeque<std::time::Instant>,
    arrived: VecDeque<std::time::Instant>,
    rate_limited: u64,
    peak_arrivals_per_second: usize,
    /// How long every answer takes (Stripe's own latency).
    latency: Duration,
}

impl State {
    fn now_secs(&self) -> u64 {
        (SystemTime::now() + self.clock_offset)
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    /// Counts a request arriving `at` against the enforced rate limit: whether it is over.
    fn over_rate_limit(&mut self, at: std::time::Instant) -> bool {
        let window_start = at.checked_sub(Duration::from_secs(1));
        for window in [&mut self.arrived, &mut self.admitted] {
            while window
                .front()
                .is_some_and(|first| window_start.is_some_and(|start| *first <= start))
            {
                window.pop_front();
            }
        }
        self.arrived.push_back(at);
        self.peak_arrivals_per_second = self.peak_arrivals_per_second.max(self.arrived.len());
        let Some(limit) = self.rate_limit else {
            return false;
        };
        if self.admitted.len() >= limit {
            self.rate_limited += 1;
            return true;
        }
        self.admitted.push_back(at);
        false
    }

    /// The stored answer under `key`, forgetting it once past retention.
    fn stored(&mut self, key: &str) -> Option<&StoredAnswer> {
        let now = self.now_secs();
        if self
            .keys
            .get(key)
            .is_some_and(|a| now.saturating_sub(a.stored_at) >= FAKE_KEY_RETENTION.as_secs())
        {
            self.keys.remove(key);
        }
        self.keys.get(key)
    }
}

/// A running fake Stripe on 127.0.0.1. Stops when dropped.
pub struct FakeStripe {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeStripe {
    /// Starts the fake on a free port.
    pub async fn start() -> FakeStripe {
        Self::start_on(0).await.expect("start the fake Stripe")
    }

    /// Starts the fake on `port` (0: any free port).
    pub async fn start_on(port: u16) -> std::io::Result<FakeStripe> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let task = tokio::spawn(accept_loop(listener, state.clone()));
        Ok(FakeStripe { addr, state, task })
    }

    /// Enforces an account rate limit from now on: more than `per_second` requests in any
    /// one-second window are answered 429 with `Retry-After: 1`, nothing stored.
    pub fn enforce_rate_limit(&self, per_second: usize) {
        self.state().rate_limit = Some(per_second);
    }

    /// Every answer takes `latency` from now on.
    pub fn set_latency(&self, latency: Duration) {
        self.state().latency = latency;
    }

    /// Requests answered 429 by the enforced rate limit.
    pub fn rate_limited(&self) -> u64 {
        self.state().rate_limited
    }

    /// The most requests that arrived within one second (admitted or not).
    pub fn peak_requests_per_second(&self) -> usize {
        self.state().peak_arrivals_per_second
    }

    /// Requests that arrived so far.
    pub fn request_count(&self) -> usize {
        self.state().requests.len()
    }

    /// The value for `STRIPE_API_BASE`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adapter settings pointing at this fake (fast pace, short timeouts and settle delay).
    pub fn config(&self) -> StripeSettings {
        let mut config = StripeSettings::new(FAKE_SECRET_KEY);
        config.api_base = self.base_url();
        config.budget = payouts_config::RequestBudget::alone(1_000);
        config.request_timeout = Duration::from_secs(3);
        config.settle_delay = Duration::from_millis(200);
        config
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fake Stripe state poisoned")
    }

    /// Makes the next `times` transfer creations to `destination` meet `fault`.
    pub fn inject(&self, destination: &str, fault: Fault, times: usize) {
        self.state()
            .faults
            .entry(destination.to_owned())
            .or_default()
            .extend(std::iter::repeat_n(fault, times));
    }

    /// Every transfer to `destination` is refused with `status` and Stripe's `code`/`message`
    /// (stored under the key, as a request that began executing).
    pub fn reject_destination(&self, destination: &str, status: u16, code: &str, message: &str) {
        self.state().rejections.insert(
            destination.to_owned(),
            (
                StatusCode::from_u16(status).expect("status"),
                code.to_owned(),
                message.to_owned(),
            ),
        );
    }

    /// Transfers to `destination` are accepted again (funds arrived, the restriction lifted);
    /// refusals already stored under keys are still replayed, as at Stripe.
    pub fn accept_destination(&self, destination: &str) {
        self.state().rejections.remove(destination);
    }

    /// Reverses `amount` of transfer `id` (`POST /v1/transfers/{id}/reversals`, which the
    /// adapter never calls: the platform's staff do it): `amount_reversed` grows, a reversal
    /// joins the transfer's `reversals`, and `reversed` turns true once all of it is back, as
    /// at Stripe. Panics on an unknown transfer or more than its unreversed amount (Stripe
    /// refuses those).
    pub fn reverse(&self, id: &str, amount: i64) {
        let mut state = self.state();
        let transfer = state
            .transfers
            .iter_mut()
            .find(|t| t.id == id)
            .expect("known transfer");
        assert!(
            amount > 0 && transfer.amount_reversed() + amount <= transfer.amount,
            "Stripe reverses only up to the unreversed amount"
        );
        transfer.reversals.push(amount);
    }

    /// Makes the next `times` requests for one transfer (`GET /v1/transfers/{id}`) answer a 500,
    /// as Stripe does when it is down.
    pub fn fail_retrievals(&self, times: usize) {
        self.state().failing_retrievals += times;
    }

    /// Makes a transfer directly, as if made outside our executor (the dashboard, another
    /// system using the same key): no idempotency key, `metadata[batch_id]`/`[item_id]` set
    /// from `item` (`(batch, item)`) if given, `created` on the fake's clock. Returns its id.
    pub fn make_transfer(
        &self,
        destination: &str,
        amount: i64,
        currency: &str,
        item: Option<(&str, &str)>,
    ) -> String {
        let mut state = self.state();
        state.next_id += 1;
        let metadata = item
            .map(|(batch, item)| {
                BTreeMap::from([
                    ("batch_id".to_owned(), batch.to_owned()),
                    ("item_id".to_owned(), item.to_owned()),
                ])
            })
            .unwrap_or_default();
        let transfer = FakeTransfer {
            id: format!("tr_fake{:016}", state.next_id),
            amount,
            currency: currency.to_ascii_lowercase(),
            destination: destination.to_owned(),
            transfer_group: None,
            metadata,
            created: state.now_secs(),
            idempotency_key: None,
            reversals: Vec::new(),
        };
        let id = transfer.id.clone();
        state.transfers.push(transfer);
        id
    }

    /// Caps every list page (`GET /v1/transfers`) at `size` transfers, whatever `limit` asks,
    /// so paging can be tested with few transfers.
    pub fn set_max_page_size(&self, size: usize) {
        self.state().max_page_size = Some(size.max(1));
    }

    /// Makes the `nth` list request from now (1: the next) answer a 500.
    pub fn fail_list_request(&self, nth: usize) {
        self.state().failing_list = Some(nth.max(1));
    }

    /// Unix seconds on the fake's clock (what `created` records).
    pub fn now_secs(&self) -> u64 {
        self.state().now_secs()
    }

    /// Moves the fake's clock forward (key retention, `created`).
    pub fn advance_clock(&self, by: Duration) {
        self.state().clock_offset += by;
    }

    /// Whether an answer is stored under `key` now (false once the key expired).
    pub fn has_key(&self, key: &str) -> bool {
        self.state().stored(key).is_some()
    }

    /// Every transfer made, in order.
    pub fn transfers(&self) -> Vec<FakeTransfer> {
        self.state().transfers.clone()
    }

    /// How many transfers `destination` received: what was really paid.
    pub fn transfers_to(&self, destination: &str) -> usize {
        self.state()
            .transfers
            .iter()
            .filter(|t| t.destination == destination)
            .count()
    }

    /// Transfers per destination.
    pub fn transfer_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for transfer in &self.state().transfers {
            *counts.entry(transfer.destination.clone()).or_default() += 1;
        }
        counts
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }

    /// `POST /v1/transfers` requests for `destination`.
    pub fn creations_for(&self, destination: &str) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_create() && r.param("destination") == Some(destination))
            .collect()
    }

    /// How many answers were replays of a stored one.
    pub fn replays(&self) -> u64 {
        self.state().replays
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<Mutex<State>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            // Set by a handler that wants the connection closed without an answer.
            let hang_up = Arc::new(Notify::new());
            let signal = hang_up.clone();
            let service = hyper::service::service_fn(move |request| {
                handle(state.clone(), signal.clone(), request)
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
    /// Close the connection without answering.
    HangUp,
}

async fn handle(
    state: Arc<Mutex<State>>,
    hang_up: Arc<Notify>,
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
    let params: Vec<(String, String)> = if parts.method == Method::POST {
        form_urlencoded::parse(&body).into_owned().collect()
    } else {
        form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect()
    };
    let recorded = RecordedRequest {
        at: std::time::Instant::now(),
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        params,
        idempotency_key: header("idempotency-key"),
        stripe_version: header("stripe-version"),
        content_type: header("content-type"),
        authorized: header("authorization").as_deref()
            == Some(format!("Bearer {FAKE_SECRET_KEY}").as_str()),
    };
    let (over_limit, latency) = {
        let mut state = state.lock().unwrap();
        state.requests.push(recorded.clone());
        (state.over_rate_limit(recorded.at), state.latency)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    let reply = if over_limit {
        Reply::Answer(rate_limited(1))
    } else if !recorded.authorized {
        Reply::Answer(error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            None,
            "Invalid API Key provided: sk_****",
        ))
    } else {
        match (recorded.method.as_str(), recorded.path.as_str()) {
            ("POST", "/v1/transfers") => create(&state, &recorded).await,
            ("GET", "/v1/transfers") => Reply::Answer(list(&state, &recorded)),
            ("GET", path) if path.starts_with("/v1/transfers/") => {
                Reply::Answer(get(&state, &path["/v1/transfers/".len()..]))
            }
            _ => Reply::Answer(error(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                None,
                &format!(
                    "Unrecognized request URL ({} {}).",
                    recorded.method, recorded.path
                ),
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
    let destination = request.param("destination").unwrap_or_default().to_owned();
    // Before the idempotency layer: slowness, rate limiting, unstored failures.
    loop {
        let fault = {
            let mut state = state.lock().unwrap();
            let queue = state.faults.entry(destination.clone()).or_default();
            match queue.front() {
                Some(fault) if fault.before_idempotency() => queue.pop_front(),
                _ => None,
            }
        };
        match fault {
            Some(Fault::Slow(delay)) => tokio::time::sleep(delay).await,
            Some(Fault::RateLimited { retry_after_secs }) => {
                return Reply::Answer(rate_limited(retry_after_secs));
            }
            Some(_) => {
                return Reply::Answer(error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "api_error",
                    None,
                    "An unknown error occurred",
                ));
            }
            None => break,
        }
    }

    let mut state = state.lock().unwrap();
    let mut sorted = request.params.clone();
    sorted.sort();
    let fingerprint = format!("POST /v1/transfers {sorted:?}");
    if let Some(key) = &request.idempotency_key
        && let Some(stored) = state.stored(key)
    {
        if stored.fingerprint != fingerprint {
            return Reply::Answer(error(
                StatusCode::BAD_REQUEST,
                "idempotency_error",
                None,
                &format!(
                    "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request."
                ),
            ));
        }
        let response = answer(stored.status, stored.body.clone(), Some(key), true);
        state.replays += 1;
        return Reply::Answer(response);
    }

    // Parameter validation (not stored, as at Stripe).
    let amount = match request.param("amount").map(str::parse::<i64>) {
        Some(Ok(amount)) if amount > 0 => amount,
        Some(_) => {
            return Reply::Answer(error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("parameter_invalid_integer"),
                "Invalid positive integer",
            ));
        }
        None => {
            return Reply::Answer(error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("parameter_missing"),
                "Missing required param: amount.",
            ));
        }
    };
    let currency = request.param("currency").unwrap_or_default();
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_lowercase()) {
        return Reply::Answer(error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("parameter_invalid_string"),
            &format!(
                "Invalid currency: {currency}. Stripe currencies are three lowercase letters."
            ),
        ));
    }
    if !destination.starts_with("acct_") {
        return Reply::Answer(error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such destination: '{destination}'"),
        ));
    }

    // Executing: from here on, the outcome is stored under the key.
    let execution_fault = {
        let queue = state.faults.entry(destination.clone()).or_default();
        queue.pop_front()
    };
    let key = request.idempotency_key.clone();
    let store = |state: &mut State, status: StatusCode, body: String| {
        if let Some(key) = &key {
            let stored_at = state.now_secs();
            state.keys.insert(
                key.clone(),
                StoredAnswer {
                    fingerprint: fingerprint.clone(),
                    status,
                    body,
                    stored_at,
                },
            );
        }
    };
    let server_error = || {
        error_json(
            "api_error",
            None,
            "An unknown error occurred while processing the request.",
        )
    };
    if execution_fault == Some(Fault::ServerErrorStoredBeforeCreate) {
        let body = server_error();
        store(&mut state, StatusCode::INTERNAL_SERVER_ERROR, body.clone());
        return Reply::Answer(answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            body,
            key.as_deref(),
            false,
        ));
    }
    if let Some((status, code, message)) = state.rejections.get(&destination).cloned() {
        let body = error_json("invalid_request_error", Some(&code), &message);
        store(&mut state, status, body.clone());
        return Reply::Answer(answer(status, body, key.as_deref(), false));
    }
    state.next_id += 1;
    let metadata: BTreeMap<String, String> = request
        .params
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("metadata[")
                .and_then(|k| k.strip_suffix(']'))
                .map(|k| (k.to_owned(), v.clone()))
        })
        .collect();
    let transfer = FakeTransfer {
        id: format!("tr_fake{:016}", state.next_id),
        amount,
        currency: currency.to_owned(),
        destination: destination.clone(),
        transfer_group: request.param("transfer_group").map(str::to_owned),
        metadata,
        created: state.now_secs(),
        idempotency_key: key.clone(),
        reversals: Vec::new(),
    };
    let body = transfer_json(&transfer).to_string();
    state.transfers.push(transfer);
    match execution_fault {
        Some(Fault::ServerErrorStoredAfterCreate) => {
            let body = server_error();
            store(&mut state, StatusCode::INTERNAL_SERVER_ERROR, body.clone());
            Reply::Answer(answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                body,
                key.as_deref(),
                false,
            ))
        }
        Some(Fault::DropResponseAfterCreate) => {
            store(&mut state, StatusCode::OK, body);
            Reply::HangUp
        }
        _ => {
            store(&mut state, StatusCode::OK, body.clone());
            Reply::Answer(answer(StatusCode::OK, body, key.as_deref(), false))
        }
    }
}

fn list(state: &Arc<Mutex<State>>, request: &RecordedRequest) -> Response<Full<Bytes>> {
    let mut state = state.lock().unwrap();
    match state.failing_list {
        Some(1) => {
            state.failing_list = None;
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                None,
                "An unknown error occurred",
            );
        }
        Some(n) => state.failing_list = Some(n - 1),
        None => {}
    }
    let created_gte = match request.param("created[gte]").map(str::parse::<u64>) {
        None => None,
        Some(Ok(secs)) => Some(secs),
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("parameter_invalid_integer"),
                "Invalid integer: created[gte]",
            );
        }
    };
    let limit = match request.param("limit").map(str::parse::<usize>) {
        None => 10,
        Some(Ok(limit)) if (1..=100).contains(&limit) => limit,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("parameter_invalid_integer"),
                "Invalid integer: limit must be between 1 and 100",
            );
        }
    };
    // Newest first, as Stripe lists.
    let mut matching: Vec<&FakeTransfer> = state
        .transfers
        .iter()
        .rev()
        .filter(|t| {
            request
                .param("transfer_group")
                .is_none_or(|g| t.transfer_group.as_deref() == Some(g))
                && request
                    .param("destination")
                    .is_none_or(|d| t.destination == d)
                && created_gte.is_none_or(|since| t.created >= since)
        })
        .collect();
    let limit = state.max_page_size.map_or(limit, |max| limit.min(max));
    if let Some(after) = request.param("starting_after") {
        match matching.iter().position(|t| t.id == after) {
            Some(index) => matching.drain(..=index).for_each(drop),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    Some("resource_missing"),
                    &format!("No such transfer: '{after}'"),
                );
            }
        }
    }
    let has_more = matching.len() > limit;
    let data: Vec<Value> = matching
        .into_iter()
        .take(limit)
        .map(transfer_json)
        .collect();
    let body =
        json!({"object": "list", "data": data, "has_more": has_more, "url": "/v1/transfers"});
    answer(StatusCode::OK, body.to_string(), None, false)
}

fn get(state: &Arc<Mutex<State>>, id: &str) -> Response<Full<Bytes>> {
    let mut state = state.lock().unwrap();
    if state.failing_retrievals > 0 {
        state.failing_retrievals -= 1;
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            None,
            "An unknown error occurred",
        );
    }
    match state.transfers.iter().find(|t| t.id == id) {
        Some(transfer) => answer(
            StatusCode::OK,
            transfer_json(transfer).to_string(),
            None,
            false,
        ),
        None => error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such transfer: '{id}'"),
        ),
    }
}

/// A `transfer` object with the fields Stripe's OpenAPI description marks required, and the
/// ones the adapter reads.
fn transfer_json(transfer: &FakeTransfer) -> Value {
    let reversals: Vec<Value> = transfer
        .reversals
        .iter()
        .enumerate()
        .map(|(n, amount)| {
            json!({
                "id": format!("trr_{}{n}", &transfer.id[3..]),
                "object": "transfer_reversal",
                "amount": amount,
                "currency": transfer.currency,
                "transfer": transfer.id,
            })
        })
        .collect();
    let amount_reversed = transfer.amount_reversed();
    json!({
        "id": transfer.id,
        "object": "transfer",
        "amount": transfer.amount,
        "amount_reversed": amount_reversed,
        "balance_transaction": format!("txn_{}", &transfer.id[3..]),
        "created": transfer.created,
        "currency": transfer.currency,
        "description": null,
        "destination": transfer.destination,
        "destination_payment": format!("py_{}", &transfer.id[3..]),
        "livemode": false,
        "metadata": transfer.metadata,
        "reversals": {
            "object": "list",
            "total_count": reversals.len(),
            "data": reversals,
            "has_more": false,
            "url": format!("/v1/transfers/{}/reversals", transfer.id),
        },
        // Stripe: true only once reversed in full; a partial reversal leaves it false.
        "reversed": amount_reversed >= transfer.amount,
        "source_transaction": null,
        "source_type": "card",
        "transfer_group": transfer.transfer_group,
    })
}

/// Stripe's 429, with `Retry-After` in seconds (nothing stored under the key).
fn rate_limited(retry_after_secs: u64) -> Response<Full<Bytes>> {
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        "invalid_request_error",
        Some("rate_limit"),
        "Request rate limit exceeded. You can learn more about rate limits here https://stripe.com/docs/rate-limits.",
    );
    response
        .headers_mut()
        .insert("retry-after", retry_after_secs.to_string().parse().unwrap());
    response
}

fn error_json(kind: &str, code: Option<&str>, message: &str) -> String {
    let mut error = json!({"type": kind, "message": message});
    if let Some(code) = code {
        error["code"] = json!(code);
        error["doc_url"] = json!(format!("https://stripe.com/docs/error-codes/{code}"));
    }
    json!({ "error": error }).to_string()
}

fn error(
    status: StatusCode,
    kind: &str,
    code: Option<&str>,
    message: &str,
) -> Response<Full<Bytes>> {
    answer(status, error_json(kind, code, message), None, false)
}

fn answer(
    status: StatusCode,
    body: String,
    idempotency_key: Option<&str>,
    replayed: bool,
) -> Response<Full<Bytes>> {
    let mut response = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("stripe-version", STRIPE_API_VERSION);
    if let Some(key) = idempotency_key {
        response = response.header("idempotency-key", key);
    }
    if replayed {
        response = response.header("idempotent-replayed", "true");
    }
    response
        .body(Full::new(Bytes::from(body)))
        .expect("valid response")
}
