//! The fan-out figures (issue 12): a large batch, and two batches at once, paid through K
//! executor instances fed by a simulated SQS event source, against a fake Stripe that enforces
//! the account's rate limit with 429s, as Stripe does. Each instance has its own Stripe adapter
//! and pacer, as separate Lambda instances have; all share the local DynamoDB.

use crate::Seeder;
use integration_tests::RequestCounter;
use integration_tests::fakes::stripe::FakeStripe;
use integration_tests::simulated_sqs::SimulatedSqs;
use payout_execute::App;
use payouts_config::{BudgetShare, RequestBudget};
use payouts_core::clock::SystemClock;
use payouts_core::domain::ItemStatus;
use payouts_core::executor::{Executor, ExecutorConfig, FanOut};
use payouts_core::job::PayoutJob;
use payouts_core::ports::queue::JobQueue;
use payouts_core::ports::repository::PayoutRepository;
use payouts_core::registry::PaymentAdapterRegistry;
use payouts_psp::stripe::StripeAdapter;
use payouts_store_dynamodb::DynamoDbRepository;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The run's shape; `BENCH_FANOUT_*` variables override it.
pub struct FanOutSetup {
    pub items: usize,
    pub instances: u32,
    pub budget: u32,
    pub latency: Duration,
    pub timeout: Duration,
    pub min_segment_items: u64,
}

impl FanOutSetup {
    pub fn from_env() -> Self {
        let var = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        FanOutSetup {
            items: var("BENCH_FANOUT_ITEMS", 20_000) as usize,
            instances: var("BENCH_FANOUT_INSTANCES", 10) as u32,
            budget: var("BENCH_FANOUT_BUDGET", 100) as u32,
            latency: Duration::from_millis(var("BENCH_FANOUT_LATENCY_MS", 50)),
            timeout: Duration::from_secs(var("BENCH_FANOUT_TIMEOUT_SECONDS", 300)),
            min_segment_items: var("BENCH_FANOUT_MIN_SEGMENT_ITEMS", 200),
        }
    }
}

/// What one run measured.
pub struct FanOutRun {
    pub label: String,
    pub items: usize,
    pub wall: Duration,
    pub stripe_requests: usize,
    pub rate_limited: u64,
    pub peak_per_second: usize,
    pub dynamodb_requests: u64,
    pub jobs_sent: u64,
    pub receives: u64,
    pub delayed: u64,
    pub dead_letters: usize,
}

/// Pays `batches` (id, items) at once through `setup.instances` instances; returns when every
/// item is `processing`.
pub async fn run(
    label: &str,
    store: &DynamoDbRepository,
    observer: &DynamoDbRepository,
    requests: &RequestCounter,
    seeder: &Seeder,
    setup: &FanOutSetup,
    batches: &[(&str, usize)],
) -> FanOutRun {
    for (batch_id, count) in batches {
        seeder.seed_for(batch_id, *count, "stripe").await;
    }
    let fake = FakeStripe::start().await;
    fake.enforce_rate_limit(setup.budget as usize);
    fake.set_latency(setup.latency);
    // Visibility 6 × the function timeout, ten receives, as template.yaml deploys the queue.
    let queue = Arc::new(SimulatedSqs::new(setup.timeout * 6, 10));
    let fan_out = FanOut {
        max_segments: u64::from(setup.instances),
        min_segment_items: setup.min_segment_items,
    };
    let apps: Vec<App> = (0..setup.instances)
        .map(|_| {
            let mut settings = fake.config();
            settings.budget = RequestBudget {
                per_second: setup.budget,
                share: BudgetShare::Executor {
                    instances: setup.instances,
                },
            };
            settings.request_timeout = payouts_config::StripeSettings::DEFAULT_REQUEST_TIMEOUT;
            let adapter = Arc::new(StripeAdapter::new(settings).expect("adapter"));
            let executor = Executor::new(
                Arc::new(store.clone()),
                PaymentAdapterRegistry::new().register(adapter),
                ExecutorConfig::default(),
                Arc::new(SystemClock),
            );
            App::new(executor, Some(queue.clone() as Arc<dyn JobQueue>)).with_fan_out(fan_out)
        })
        .collect();

    requests.reset();
    let started = Instant::now();
    for (batch_id, _) in batches {
        queue
            .enqueue(&PayoutJob::for_batch(batch_id, None))
            .await
            .unwrap();
    }
    let stop = AtomicBool::new(false);
    let pollers = futures_util::future::join_all(
        apps.iter().map(|app| queue.poll(app, setup.timeout, &stop)),
    );
    let watch = async {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let mut paid = 0;
            for (batch_id, _) in batches {
                if let Ok(Some(counts)) = observer.batch_counts(batch_id).await {
                    paid += counts.count(ItemStatus::Processing);
                }
            }
            if paid as usize >= batches.iter().map(|(_, n)| n).sum::<usize>() {
                break started.elapsed();
            }
            if started.elapsed() > Duration::from_secs(3_600) {
                panic!("not paid within an hour: {paid} items");
            }
        }
    };
    let wall = tokio::select! {
        wall = watch => wall,
        _ = pollers => unreachable!("pollers stop only when told"),
    };
    stop.store(true, Ordering::Relaxed);
    let items: usize = batches.iter().map(|(_, n)| n).sum();
    let made = fake.transfers().len();
    assert_eq!(made, items, "one transfer per item");
    FanOutRun {
        label: label.to_owned(),
        items,
        wall,
        stripe_requests: fake.request_count(),
        rate_limited: fake.rate_limited(),
        peak_per_second: fake.peak_requests_per_second(),
        dynamodb_requests: requests.total(),
        jobs_sent: queue.sent.load(Ordering::Relaxed),
        receives: queue.received.load(Ordering::Relaxed),
        delayed: queue.delayed.load(Ordering::Relaxed),
        dead_letters: queue.dead_letters().len(),
    }
}

/// Prints the runs beside their targets.
pub fn print(setup: &FanOutSetup, runs: &[FanOutRun]) {
    println!();
    println!(
        "fan-out: {} executor instances (each its own Stripe adapter and pacer at {:.2} req/s = 19/20 of the budget ÷ {}), a simulated SQS event source (BatchSize 1, visibility {} s, 10 receives), a fake Stripe enforcing {} req/s with 429s and answering in {} ms, the local DynamoDB; invocation timeout {} s; no reconciler running (its 1/20 of the budget idles)",
        setup.instances,
        RequestBudget {
            per_second: setup.budget,
            share: BudgetShare::Executor {
                instances: setup.instances
            }
        }
        .per_process(),
        setup.instances,
        setup.timeout.as_secs() * 6,
        setup.budget,
        setup.latency.as_millis(),
        setup.timeout.as_secs(),
    );
    println!(
        "| run | items | wall time | bound (items ÷ budget) | wall ÷ bound (target ≤ 1.1 + one start-up) | 429s (target 0) | peak Stripe requests in 1 s | budget used | Stripe req / item | DynamoDB req / paid item (target ≤ 2.1) | jobs sent / receives / backoffs / DLQ |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for run in runs {
        let bound = run.items as f64 / f64::from(setup.budget);
        let wall = run.wall.as_secs_f64();
        println!(
            "| {} | {} | {:.1} s | {:.1} s | {:.3} | {} | {} | {:.1} % | {:.3} | {:.3} | {} / {} / {} / {} |",
            run.label,
            run.items,
            wall,
            bound,
            wall / bound,
            run.rate_limited,
            run.peak_per_second,
            100.0 * (run.stripe_requests - run.rate_limited as usize) as f64
                / (wall * f64::from(setup.budget)),
            run.stripe_requests as f64 / run.items as f64,
            run.dynamodb_requests as f64 / run.items as f64,
            run.jobs_sent,
            run.receives,
            run.delayed,
            run.dead_letters,
        );
    }
    if let Some(first) = runs.first() {
        let rate = first.items as f64 / first.wall.as_secs_f64();
        println!(
            "| 100,000 items, extrapolated from the first run's {rate:.1} items/s (not measured) | 100000 | {:.0} s ({:.1} min) | {:.0} s | | | | | | | |",
            100_000.0 / rate,
            100_000.0 / rate / 60.0,
            100_000.0 / f64::from(setup.budget),
        );
    }
}
