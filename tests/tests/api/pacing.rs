//! Waiting for a rate slot is not PSP time, and settings that can never pay are refused at
//! start-up (regression tests of the pacing issue).

use integration_tests::fakes::stripe::FakeStripe;
use integration_tests::{TestEnv, items, test_config, verified_users};
use payouts_config::{ConfigError, Env, ExecuteSettings};
use payouts_core::executor::ExecutorConfig;
use payouts_psp::stripe::StripeAdapter;
use std::sync::Arc;
use std::time::Duration;

/// A queue of waiters for rate slots longer than the PSP timeout: every item is sent exactly
/// once in one run, and none is reported as an unknown outcome (nothing was sent while it
/// waited).
#[tokio::test]
async fn a_queue_for_rate_slots_longer_than_the_psp_timeout_is_not_an_unknown_outcome() {
    let env = TestEnv::start().await;
    let batch = items(12, "1.00");
    env.seed_batch("b-queue", "stripe", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    let fake = FakeStripe::start().await;
    let mut settings = fake.config();
    settings.budget = payouts_config::RequestBudget::alone(5); // 12 starts take 2.2 s
    settings.request_timeout = Duration::from_millis(800);
    let adapter = Arc::new(StripeAdapter::new(settings).expect("adapter"));
    let config = ExecutorConfig {
        concurrency: 16,
        psp_timeout: Duration::from_secs(1),
        ..test_config()
    };
    let summary = env
        .executor_with(adapter, config)
        .execute_payout_batch("b-queue", None)
        .await
        .unwrap();
    assert_eq!(
        (summary.submitted, summary.retryable),
        (12, 0),
        "{summary:?}"
    );
    let creations = fake.requests().iter().filter(|r| r.is_create()).count();
    assert_eq!(creations, 12, "each item sent exactly once");
}

/// A lease that cannot hold an item's longest path (a lookup and a submit, each up to the PSP
/// timeout, and the writes) can never pay such an item: refused at start-up, naming both values.
#[test]
fn a_lease_shorter_than_the_longest_item_path_is_refused_at_start_up() {
    let env = |lease: &str, timeout: &str| {
        Env::from_pairs(&[
            ("PAYOUTS_TABLE", "p"),
            ("USER_SETTINGS_TABLE", "u"),
            ("PAYOUT_LEASE_SECONDS", lease),
            ("PAYOUT_PSP_TIMEOUT_SECONDS", timeout),
        ])
    };
    match ExecuteSettings::from_env(&env("2", "1")) {
        Err(err @ ConfigError::Conflict(_)) => {
            let message = err.to_string();
            assert!(
                message.contains("PAYOUT_LEASE_SECONDS")
                    && message.contains("PAYOUT_PSP_TIMEOUT_SECONDS"),
                "{message}"
            );
        }
        other => panic!("lease 2 s with timeout 1 s accepted: {other:?}"),
    }
    assert!(ExecuteSettings::from_env(&env("5", "1")).is_ok());
}
