//! One settings tree per function, read from the environment once at start-up: every value
//! typed, every invalid value an error that names the variable and what it should be, secrets
//! wrapped in [`Secret`] so no `Debug` or log line ever shows them, and the tree logged
//! (redacted) so an operator sees what an instance runs with. The variables are the README's
//! configuration table.

mod env;
mod logging;
mod psp;
mod secret;
mod tls;

pub use env::Env;
pub use logging::{FlatJson, init_logging};
pub use psp::{
    AdyenSettings, BudgetShare, PspSettings, RECONCILER_SLICE, RequestBudget, SandboxSettings,
    StripeSettings,
};
pub use secret::Secret;
pub use tls::{CertFile, ensure_usable_cert_file, start};

use payouts_core::executor::{ExecutorConfig, FanOut};
use payouts_core::reconciler::ReconcilerConfig;

/// A setting in the environment that cannot be used. The function refuses to start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{name}={value:?} is not valid: {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("required setting {0} is not set")]
    Missing(&'static str),
    /// Settings that are each valid but cannot work together; the message names them all and
    /// says what would work.
    #[error("{0}")]
    Conflict(String),
}

/// The `payout-execute` function's settings.
#[derive(Debug, Clone)]
pub struct ExecuteSettings {
    /// `PAYOUTS_TABLE`.
    pub payouts_table: String,
    /// `USER_SETTINGS_TABLE`.
    pub user_settings_table: String,
    /// `PAYOUT_CONCURRENCY`, `PAYOUT_LEASE_SECONDS`, `PAYOUT_PSP_TIMEOUT_SECONDS`.
    pub executor: ExecutorConfig,
    /// `PAYOUT_JOBS_QUEUE_URL`: where a batch that runs out of time is continued and a large
    /// one's segments go; unset falls back to SQS's redelivery, without fan-out.
    pub jobs_queue_url: Option<String>,
    /// `PAYOUT_MAX_INSTANCES` (the most segments, off when unset) and
    /// `PAYOUT_MIN_SEGMENT_ITEMS` (default 200).
    pub fan_out: FanOut,
    pub psp: PspSettings,
}

/// Items below which a segment is not worth its own job: about 5 requests of fixed reads and
/// writes per segment stay under 0.03 per item.
const DEFAULT_MIN_SEGMENT_ITEMS: u32 = 200;

impl ExecuteSettings {
    /// Reads and checks every setting of `payout-execute`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mut psp = PspSettings::from_env(env)?;
        if let Some(instances) = max_instances(env)? {
            psp.share_budgets(BudgetShare::Executor { instances });
        }
        ExecuteSettings {
            payouts_table: env.required("PAYOUTS_TABLE")?,
            user_settings_table: env.required("USER_SETTINGS_TABLE")?,
            executor: executor_config(env)?,
            jobs_queue_url: env.value("PAYOUT_JOBS_QUEUE_URL"),
            fan_out: fan_out(env)?,
            psp,
        }
        .checked()
    }

    /// Cross-field checks between the executor and the PSPs' settings.
    fn checked(self) -> Result<Self, ConfigError> {
        if let Some(adyen) = &self.psp.adyen
            && adyen.request_timeout >= self.executor.psp_timeout
        {
            return Err(ConfigError::Invalid {
                name: "ADYEN_TIMEOUT_SECONDS",
                value: format!("{:?}", adyen.request_timeout.as_secs_f64()),
                expected: "shorter than PAYOUT_PSP_TIMEOUT_SECONDS, so the adapter's own classification is what the executor sees",
            });
        }
        Ok(self)
    }
}

/// The `psp-webhook` function's settings: it reads only the payouts table, and holds only the
/// PSPs' webhook secrets (an adapter without its API key verifies events and refuses to pay).
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// `PAYOUTS_TABLE`.
    pub payouts_table: String,
    pub psp: PspSettings,
}

impl WebhookSettings {
    /// Reads and checks every setting of `psp-webhook`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(WebhookSettings {
            payouts_table: env.required("PAYOUTS_TABLE")?,
            psp: PspSettings::from_env(env)?,
        })
    }
}

/// The `payout-reconcile` function's settings: the tables it sweeps, the queue it resumes
/// batches on, its threshold, and the PSPs it asks about transfers.
#[derive(Debug, Clone)]
pub struct ReconcileSettings {
    /// `PAYOUTS_TABLE`.
    pub payouts_table: String,
    /// `USER_SETTINGS_TABLE` (a `pending_kyc` recipient verified since).
    pub user_settings_table: String,
    /// `PAYOUT_JOBS_QUEUE_URL`: where a batch nothing runs is resumed. Unset (a local run):
    /// the sweep logs the batch to resume instead.
    pub jobs_queue_url: Option<String>,
    /// `RECONCILE_STUCK_AFTER_SECONDS` (default 3600).
    pub reconciler: ReconcilerConfig,
    pub psp: PspSettings,
}

impl ReconcileSettings {
    /// Reads and checks every setting of `payout-reconcile`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mut reconciler = ReconcilerConfig::default();
        reconciler.stuck_after = env
            .seconds("RECONCILE_STUCK_AFTER_SECONDS")?
            .unwrap_or(reconciler.stuck_after);
        let mut psp = PspSettings::from_env(env)?;
        if max_instances(env)?.is_some() {
            psp.share_budgets(BudgetShare::Reconciler);
        }
        Ok(ReconcileSettings {
            payouts_table: env.required("PAYOUTS_TABLE")?,
            user_settings_table: env.required("USER_SETTINGS_TABLE")?,
            jobs_queue_url: env.value("PAYOUT_JOBS_QUEUE_URL"),
            reconciler,
            psp,
        })
    }
}

/// `PAYOUT_MAX_INSTANCES`: the executor instances the event source may run at once (the
/// template sets it from `MaximumConcurrency`); unset in a local run.
fn max_instances(env: &Env) -> Result<Option<u32>, ConfigError> {
    env.integer("PAYOUT_MAX_INSTANCES", 1..=1000)
}

/// Segments per batch: one per executor instance the event source may run at once.
fn fan_out(env: &Env) -> Result<FanOut, ConfigError> {
    let min_segment_items = env
        .integer("PAYOUT_MIN_SEGMENT_ITEMS", 1..=1_000_000)?
        .unwrap_or(DEFAULT_MIN_SEGMENT_ITEMS);
    let Some(instances) = max_instances(env)? else {
        return Ok(FanOut::OFF);
    };
    Ok(FanOut {
        max_segments: u64::from(instances),
        min_segment_items: u64::from(min_segment_items),
    })
}

/// The executor's settings, defaults kept for unset ones; the lease must outlive a PSP call.
fn executor_config(env: &Env) -> Result<ExecutorConfig, ConfigError> {
    let mut config = ExecutorConfig::default();
    if let Some(concurrency) = env.integer("PAYOUT_CONCURRENCY", 1..=1024)? {
        config.concurrency = concurrency as usize;
    }
    config.lease = env.seconds("PAYOUT_LEASE_SECONDS")?.unwrap_or(config.lease);
    config.psp_timeout = env
        .seconds("PAYOUT_PSP_TIMEOUT_SECONDS")?
        .unwrap_or(config.psp_timeout);
    let longest = config.longest_item_path();
    if config.lease < longest {
        return Err(ConfigError::Conflict(format!(
            "PAYOUT_LEASE_SECONDS={} cannot hold an item's longest path with PAYOUT_PSP_TIMEOUT_SECONDS={}: a lookup and a submit of up to the timeout each, plus 1 s for the writes, need {} s; set PAYOUT_LEASE_SECONDS to at least {} or lower PAYOUT_PSP_TIMEOUT_SECONDS",
            config.lease.as_secs_f64(),
            config.psp_timeout.as_secs_f64(),
            longest.as_secs_f64(),
            longest.as_secs_f64().ceil()
        )));
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn execute(pairs: &[(&str, &str)]) -> Result<ExecuteSettings, ConfigError> {
        let mut all = vec![("PAYOUTS_TABLE", "p"), ("USER_SETTINGS_TABLE", "u")];
        all.extend_from_slice(pairs);
        ExecuteSettings::from_env(&Env::from_pairs(&all))
    }

    #[test]
    fn defaults_and_overrides() {
        let settings = execute(&[]).unwrap();
        assert_eq!(settings.executor, ExecutorConfig::default());
        assert!(settings.psp.sandbox.is_none() && settings.psp.stripe.is_none());
        let settings = execute(&[
            ("PAYOUT_CONCURRENCY", "8"),
            ("PAYOUT_LEASE_SECONDS", "30"),
            ("PAYOUT_PSP_TIMEOUT_SECONDS", "2.5"),
        ])
        .unwrap();
        assert_eq!(settings.executor.concurrency, 8);
        assert_eq!(settings.executor.psp_timeout, Duration::from_millis(2500));
    }

    #[test]
    fn instances_and_the_reconciler_never_exceed_the_budget_together() {
        for instances in [1_u32, 2, 3, 7, 10, 99, 1000] {
            for budget in [1_u32, 3, 10, 25, 100, 10_000] {
                let vars = [
                    ("STRIPE_SECRET_KEY", "sk_test_x"),
                    ("PAYOUT_MAX_INSTANCES", &instances.to_string()),
                    ("STRIPE_REQUEST_BUDGET", &budget.to_string()),
                ];
                let settings = execute(&vars).unwrap();
                let executor = settings.psp.stripe.unwrap().budget;
                let mut reconcile_vars = vec![("PAYOUTS_TABLE", "p"), ("USER_SETTINGS_TABLE", "u")];
                reconcile_vars.extend_from_slice(&vars);
                let reconciler = ReconcileSettings::from_env(&Env::from_pairs(&reconcile_vars))
                    .unwrap()
                    .psp
                    .stripe
                    .unwrap()
                    .budget;
                assert_eq!(executor.share, BudgetShare::Executor { instances });
                assert_eq!(reconciler.share, BudgetShare::Reconciler);
                // Requests started per second by every process at once, from their intervals.
                let per_second = |b: RequestBudget| 1e9 / b.pace_interval().as_nanos() as f64;
                let total = per_second(executor) * f64::from(instances) + per_second(reconciler);
                assert!(
                    total <= f64::from(budget) * (1.0 + 1e-12),
                    "{instances} instances at {budget}/s: {total}/s together"
                );
                assert!(
                    per_second(executor) * f64::from(instances) >= f64::from(budget) * 0.949,
                    "the executors keep 19/20 of the budget"
                );
                assert_eq!(settings.fan_out.max_segments, u64::from(instances));
            }
        }
        let local = execute(&[("STRIPE_SECRET_KEY", "sk_test_x")]).unwrap();
        assert_eq!(
            local.fan_out,
            FanOut::OFF,
            "no fan-out without instances to fan out to"
        );
        assert_eq!(local.psp.stripe.unwrap().budget, RequestBudget::alone(25));
    }

    #[test]
    fn a_secret_is_named_or_given_never_both() {
        let named = execute(&[
            (
                "STRIPE_SECRET_KEY_SECRET_ID",
                "payouts/prod/stripe-secret-key",
            ),
            (
                "STRIPE_WEBHOOK_SECRET_SECRET_ID",
                "payouts/prod/stripe-webhook-secret",
            ),
        ])
        .unwrap();
        let stripe = named.psp.stripe.as_ref().unwrap();
        assert_eq!(stripe.secret_key, None, "no value in the environment");
        assert_eq!(
            stripe.secret_key_id.as_deref(),
            Some("payouts/prod/stripe-secret-key")
        );
        assert!(named.psp.reads_stored_secrets());
        assert_eq!(named.psp.secrets_ttl, Duration::from_secs(300));
        let both = execute(&[
            ("STRIPE_SECRET_KEY", "sk_test_x"),
            (
                "STRIPE_SECRET_KEY_SECRET_ID",
                "payouts/prod/stripe-secret-key",
            ),
        ]);
        assert!(
            matches!(&both, Err(ConfigError::Conflict(m)) if m.contains("STRIPE_SECRET_KEY_SECRET_ID")),
            "{both:?}"
        );
        assert!(matches!(
            execute(&[
                ("STRIPE_SECRET_KEY", "sk_test_x"),
                ("SECRETS_CACHE_SECONDS", "301")
            ]),
            Err(ConfigError::Invalid {
                name: "SECRETS_CACHE_SECONDS",
                ..
            })
        ));
    }

    #[test]
    fn every_invalid_value_is_an_error_naming_the_variable() {
        for (name, value) in [
            ("PAYOUT_CONCURRENCY", "0"),
            ("PAYOUT_CONCURRENCY", "many"),
            ("PAYOUT_LEASE_SECONDS", "-1"),
            ("PAYOUT_PSP_TIMEOUT_SECONDS", "abc"),
            ("SANDBOX_PSP_ENABLED", "yes please"),
            ("SANDBOX_PSP_LATENCY_MS", "abc"),
            ("STRIPE_REQUEST_BUDGET", "0"),
            ("PAYOUT_MAX_INSTANCES", "0"),
            ("PAYOUT_MIN_SEGMENT_ITEMS", "few"),
            ("STRIPE_TIMEOUT_SECONDS", "forever"),
        ] {
            let mut pairs = vec![(name, value)];
            if name.starts_with("SANDBOX_PSP_LATENCY") {
                pairs.push(("SANDBOX_PSP_ENABLED", "true"));
            }
            if name.starts_with("STRIPE") {
                pairs.push(("STRIPE_SECRET_KEY", "sk_test_x"));
            }
            match execute(&pairs) {
                Err(ConfigError::Invalid { name: named, .. }) => assert_eq!(named, name),
                other => panic!("{name}={value}: {other:?}"),
            }
        }
        assert_eq!(
            ExecuteSettings::from_env(&Env::from_pairs(&[("PAYOUTS_TABLE", "p")])).unwrap_err(),
            ConfigError::Missing("USER_SETTINGS_TABLE")
        );
    }

    #[test]
    fn a_lease_must_hold_the_longest_item_path() {
        let err = execute(&[
            ("PAYOUT_LEASE_SECONDS", "10"),
            ("PAYOUT_PSP_TIMEOUT_SECONDS", "5"),
        ])
        .unwrap_err();
        assert!(
            matches!(&err, ConfigError::Conflict(message) if message.contains("at least 11")),
            "{err}"
        );
        let ok = execute(&[
            ("PAYOUT_LEASE_SECONDS", "11"),
            ("PAYOUT_PSP_TIMEOUT_SECONDS", "5"),
        ]);
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let settings = execute(&[
            ("STRIPE_SECRET_KEY", "sk_test_very_secret"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_new_secret,whsec_old_secret"),
            ("SANDBOX_PSP_ENABLED", "1"),
            ("SANDBOX_WEBHOOK_SECRET", "whsec_sandbox_secret"),
        ])
        .unwrap();
        let shown = format!("{settings:?}");
        assert!(
            !shown.contains("sk_test") && !shown.contains("whsec"),
            "{shown}"
        );
        let stripe = settings.psp.stripe.unwrap();
        assert_eq!(stripe.webhook_secrets.len(), 2);
        assert_eq!(stripe.webhook_secrets[1].expose(), "whsec_old_secret");
    }

    #[test]
    fn adyen_settings_and_their_invalid_values() {
        let base = [
            ("ADYEN_API_KEY", "AQE_test_api_key_value"),
            ("ADYEN_BALANCE_ACCOUNT_ID", "BA_PLATFORM"),
        ];
        let adyen = execute(&base).unwrap().psp.adyen.unwrap();
        assert_eq!(adyen.api_base, AdyenSettings::DEFAULT_API_BASE);
        assert_eq!(adyen.balance_account_id.as_deref(), Some("BA_PLATFORM"));
        assert!(adyen.hmac_keys.is_empty());
        assert!(!format!("{adyen:?}").contains("AQE_test"), "{adyen:?}");
        assert!(
            execute(&[]).unwrap().psp.adyen.is_none(),
            "absent unless a key is set"
        );

        let webhook_only = WebhookSettings::from_env(&Env::from_pairs(&[
            ("PAYOUTS_TABLE", "p"),
            (
                "ADYEN_HMAC_KEY",
                "44782DEF547AAA06C910C43932B1EB0C, 0a1b2c3d",
            ),
        ]))
        .unwrap()
        .psp
        .adyen
        .unwrap();
        assert!(webhook_only.api_key.is_none() && webhook_only.balance_account_id.is_none());
        assert_eq!(webhook_only.hmac_keys.len(), 2);
        assert_eq!(webhook_only.hmac_keys[1].expose(), "0a1b2c3d");

        for (name, value) in [
            ("ADYEN_HMAC_KEY", "not-hex-at-all"),
            ("ADYEN_HMAC_KEY", "abc"),
            ("ADYEN_HMAC_KEY", "0a1b,zz"),
            ("ADYEN_REQUEST_BUDGET", "0"),
            ("ADYEN_TIMEOUT_SECONDS", "forever"),
            ("ADYEN_RECONCILE_SETTLE_SECONDS", "-3"),
            ("ADYEN_TIMEOUT_SECONDS", "20"),
        ] {
            let mut pairs = base.to_vec();
            pairs.push((name, value));
            match execute(&pairs) {
                Err(ConfigError::Invalid {
                    name: named,
                    value: shown,
                    ..
                }) => {
                    assert_eq!(named, name);
                    if name == "ADYEN_HMAC_KEY" {
                        assert_eq!(shown, "<redacted>", "a key is never echoed");
                    }
                }
                other => panic!("{name}={value}: {other:?}"),
            }
        }
        assert_eq!(
            execute(&[("ADYEN_API_KEY", "AQE_key")]).unwrap_err(),
            ConfigError::Missing("ADYEN_BALANCE_ACCOUNT_ID")
        );
    }
}
