//! Each PSP's settings: one struct per PSP, one field for it on [`PspSettings`]. An adapter is
//! built from these by `payouts_psp::registry`; a PSP whose settings are absent is not offered.

use crate::{ConfigError, Env, Secret};
use std::time::Duration;

/// A PSP account's request budget, and this process's share of it. Every process that calls
/// the PSP (each `payout-execute` instance the SQS event source may run, and the one
/// `payout-reconcile`) paces its requests at its share, and the shares add up to the budget, so
/// together they never exceed the account's limit, whatever runs at once
/// (`docs/design.md#fan-out-and-the-rate-budget`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestBudget {
    /// The account's limit in requests per second, across every process
    /// (`STRIPE_REQUEST_BUDGET`, `ADYEN_REQUEST_BUDGET`).
    pub per_second: u32,
    pub share: BudgetShare,
}

/// Which slice of a PSP budget a process paces at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetShare {
    /// The whole budget: a local run, a test, or a function that never calls the PSP's API.
    Whole,
    /// One of `instances` executor instances (`PAYOUT_MAX_INSTANCES`, the event source's
    /// `MaximumConcurrency`): an equal part of what the reconciler leaves.
    Executor { instances: u32 },
    /// The reconciler (one instance): [`RECONCILER_SLICE`] of the budget. Its lookups are few
    /// and can wait, so the executors, who pay, keep the rest.
    Reconciler,
}

/// The reconciler's part of a PSP budget: 1 / 20.
pub const RECONCILER_SLICE: (u64, u64) = (1, 20);

impl RequestBudget {
    /// A budget one process has to itself (a local run, a test).
    pub fn alone(per_second: u32) -> Self {
        RequestBudget {
            per_second,
            share: BudgetShare::Whole,
        }
    }

    /// This process's requests per second as a fraction (numerator, denominator).
    fn rate(&self) -> (u64, u64) {
        let budget = u64::from(self.per_second.max(1));
        let (slice, of) = RECONCILER_SLICE;
        match self.share {
            BudgetShare::Whole => (budget, 1),
            BudgetShare::Executor { instances } => {
                (budget * (of - slice), of * u64::from(instances.max(1)))
            }
            BudgetShare::Reconciler => (budget * slice, of),
        }
    }

    /// The least time between two request starts of this process, rounded up to the
    /// nanosecond so the shares never add up to more than the budget.
    pub fn pace_interval(&self) -> Duration {
        let (numerator, denominator) = self.rate();
        Duration::from_nanos((denominator * 1_000_000_000).div_ceil(numerator))
    }

    /// The requests per second this process may start.
    pub fn per_process(&self) -> f64 {
        let (numerator, denominator) = self.rate();
        numerator as f64 / denominator as f64
    }
}

impl PspSettings {
    /// Makes every PSP's budget this process's `share` of it.
    pub fn share_budgets(&mut self, share: BudgetShare) {
        if let Some(stripe) = &mut self.stripe {
            stripe.budget.share = share;
        }
        if let Some(adyen) = &mut self.adyen {
            adyen.budget.share = share;
        }
    }
}

/// The settings of every PSP this deployment may pay through; `None` = not enabled here.
#[derive(Debug, Clone)]
pub struct PspSettings {
    pub sandbox: Option<SandboxSettings>,
    pub stripe: Option<StripeSettings>,
    pub adyen: Option<AdyenSettings>,
    /// `SECRETS_CACHE_SECONDS` (default and most 300): how long a secret read from Secrets
    /// Manager is used before it is read again, so a rotation reaches running functions.
    pub secrets_ttl: Duration,
}

impl Default for PspSettings {
    fn default() -> Self {
        PspSettings {
            sandbox: None,
            stripe: None,
            adyen: None,
            secrets_ttl: PspSettings::DEFAULT_SECRETS_TTL,
        }
    }
}

impl PspSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(PspSettings {
            sandbox: SandboxSettings::from_env(env)?,
            stripe: StripeSettings::from_env(env)?,
            adyen: AdyenSettings::from_env(env)?,
            secrets_ttl: match env.integer("SECRETS_CACHE_SECONDS", 1..=300)? {
                Some(seconds) => Duration::from_secs(u64::from(seconds)),
                None => Self::DEFAULT_SECRETS_TTL,
            },
        })
    }

    /// Five minutes: a rotation reaches every running function within it.
    pub const DEFAULT_SECRETS_TTL: Duration = Duration::from_secs(300);

    /// Whether any setting names a secret to read at run time.
    pub fn reads_stored_secrets(&self) -> bool {
        let sandbox = self
            .sandbox
            .as_ref()
            .and_then(|s| s.webhook_secret_id.as_ref());
        let stripe = self
            .stripe
            .as_ref()
            .and_then(|s| s.secret_key_id.as_ref().or(s.webhook_secret_id.as_ref()));
        let adyen = self
            .adyen
            .as_ref()
            .and_then(|s| s.api_key_id.as_ref().or(s.hmac_key_id.as_ref()));
        sandbox.or(stripe).or(adyen).is_some()
    }
}

/// The in-process sandbox PSP (local runs and tests; never in prod).
#[derive(Debug, Clone, Default)]
pub struct SandboxSettings {
    /// `SANDBOX_PSP_LATENCY_MS`: how long each call takes.
    pub latency: Duration,
    /// `SANDBOX_WEBHOOK_SECRET`, comma-separated during a rotation (newest first).
    pub webhook_secrets: Vec<Secret>,
    /// `SANDBOX_WEBHOOK_SECRET_SECRET_ID`: the secret holding them, read at run time.
    pub webhook_secret_id: Option<String>,
}

impl SandboxSettings {
    /// Present when `SANDBOX_PSP_ENABLED` is `true`/`1`.
    pub fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        if !env.flag("SANDBOX_PSP_ENABLED")? {
            return Ok(None);
        }
        Ok(Some(SandboxSettings {
            latency: env.millis("SANDBOX_PSP_LATENCY_MS")?.unwrap_or_default(),
            webhook_secret_id: env.secret_id("SANDBOX_WEBHOOK_SECRET")?,
            webhook_secrets: env.secrets("SANDBOX_WEBHOOK_SECRET"),
        }))
    }
}

/// Stripe Connect transfers.
#[derive(Debug, Clone)]
pub struct StripeSettings {
    /// `STRIPE_API_BASE`; `http://` only on loopback (a local fake Stripe).
    pub api_base: String,
    /// `STRIPE_SECRET_KEY`; `None` in the webhook function, whose adapter only verifies events.
    pub secret_key: Option<Secret>,
    /// `STRIPE_SECRET_KEY_SECRET_ID`: the secret holding the key, read at run time.
    pub secret_key_id: Option<String>,
    /// `STRIPE_WEBHOOK_SECRET`, comma-separated during a rotation.
    pub webhook_secrets: Vec<Secret>,
    /// `STRIPE_WEBHOOK_SECRET_SECRET_ID`: the secret holding them, read at run time.
    pub webhook_secret_id: Option<String>,
    /// `STRIPE_REQUEST_BUDGET` (the account's requests per second) and this process's share.
    pub budget: RequestBudget,
    /// `STRIPE_TIMEOUT_SECONDS`: bound on one HTTP exchange.
    pub request_timeout: Duration,
    /// `STRIPE_RECONCILE_SETTLE_SECONDS`: wait after the last call under a key before a lookup
    /// by reference is trusted.
    pub settle_delay: Duration,
}

impl StripeSettings {
    pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";
    /// Stripe's test-mode limit (live mode allows about 100/s: set it there).
    pub const DEFAULT_REQUEST_BUDGET: u32 = 25;
    /// Under the executor's default PSP timeout, so the adapter's own classification is what
    /// the executor sees.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_SETTLE_DELAY: Duration = Duration::from_secs(10);

    /// The defaults, with `secret_key` (empty: verify-only).
    pub fn new(secret_key: &str) -> Self {
        let secret_key = secret_key.trim();
        StripeSettings {
            api_base: Self::DEFAULT_API_BASE.to_owned(),
            secret_key: (!secret_key.is_empty()).then(|| Secret::from(secret_key)),
            secret_key_id: None,
            webhook_secrets: Vec::new(),
            webhook_secret_id: None,
            budget: RequestBudget::alone(Self::DEFAULT_REQUEST_BUDGET),
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            settle_delay: Self::DEFAULT_SETTLE_DELAY,
        }
    }

    /// Present when `STRIPE_SECRET_KEY` or `STRIPE_WEBHOOK_SECRET` is set, or the secret
    /// holding either (`…_SECRET_ID`).
    pub fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        let secret_key = env.value("STRIPE_SECRET_KEY");
        let webhook_secrets = env.secrets("STRIPE_WEBHOOK_SECRET");
        let secret_key_id = env.secret_id("STRIPE_SECRET_KEY")?;
        let webhook_secret_id = env.secret_id("STRIPE_WEBHOOK_SECRET")?;
        if secret_key.is_none()
            && webhook_secrets.is_empty()
            && secret_key_id.is_none()
            && webhook_secret_id.is_none()
        {
            return Ok(None);
        }
        let mut settings = StripeSettings::new(secret_key.as_deref().unwrap_or_default());
        settings.webhook_secrets = webhook_secrets;
        settings.secret_key_id = secret_key_id;
        settings.webhook_secret_id = webhook_secret_id;
        if let Some(base) = env.value("STRIPE_API_BASE") {
            settings.api_base = base;
        }
        settings.budget = RequestBudget::alone(
            env.integer("STRIPE_REQUEST_BUDGET", 1..=10_000)?
                .unwrap_or(Self::DEFAULT_REQUEST_BUDGET),
        );
        settings.request_timeout = env
            .seconds("STRIPE_TIMEOUT_SECONDS")?
            .unwrap_or(settings.request_timeout);
        settings.settle_delay = env
            .seconds("STRIPE_RECONCILE_SETTLE_SECONDS")?
            .unwrap_or(settings.settle_delay);
        Ok(Some(settings))
    }
}

/// Adyen for Platforms: internal transfers on the Balance Platform (Transfers API v4) from the
/// platform's balance account to each recipient's, and Adyen's HMAC-signed transfer webhooks.
#[derive(Debug, Clone)]
pub struct AdyenSettings {
    /// `ADYEN_API_BASE`: the Balance Platform API host, without `/btl/v4` (default: the test
    /// environment); `https://` only, `http://` only on loopback (a local fake Adyen).
    pub api_base: String,
    /// `ADYEN_API_KEY` (sent as `X-API-Key`); `None` in the webhook function, whose adapter only
    /// verifies events and refuses to pay.
    pub api_key: Option<Secret>,
    /// `ADYEN_HMAC_KEY`: the webhook endpoint's HMAC keys, hex as Adyen's Customer Area shows
    /// them, comma-separated during a rotation (newest first). Checked to be hex at start-up.
    pub hmac_keys: Vec<Secret>,
    /// `ADYEN_API_KEY_SECRET_ID`: the secret holding the API key, read at run time.
    pub api_key_id: Option<String>,
    /// `ADYEN_HMAC_KEY_SECRET_ID`: the secret holding the HMAC keys, read at run time (checked
    /// to be hex when read).
    pub hmac_key_id: Option<String>,
    /// `ADYEN_BALANCE_ACCOUNT_ID`: the platform's balance account payouts are made from; required
    /// with `ADYEN_API_KEY`. In the webhook function it narrows events to that account's side.
    pub balance_account_id: Option<String>,
    /// `ADYEN_REQUEST_BUDGET` (the account's requests per second) and this process's share.
    pub budget: RequestBudget,
    /// `ADYEN_TIMEOUT_SECONDS`: bound on one HTTP exchange.
    pub request_timeout: Duration,
    /// `ADYEN_RECONCILE_SETTLE_SECONDS`: wait after the last call under a key before a lookup by
    /// reference is trusted.
    pub settle_delay: Duration,
}

impl AdyenSettings {
    /// Adyen's Balance Platform test environment (`/btl/v4/...` is appended per call).
    pub const DEFAULT_API_BASE: &str = "https://balanceplatform-api-test.adyen.com";
    /// A conservative budget: Adyen publishes no fixed per-endpoint rate for the Transfers API
    /// and answers 429 when exceeded, which pauses the adapter.
    pub const DEFAULT_REQUEST_BUDGET: u32 = 10;
    /// Under the executor's default PSP timeout (15 s), so the adapter's own classification is
    /// what the executor sees.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_SETTLE_DELAY: Duration = Duration::from_secs(10);

    /// The defaults, with `api_key` (empty: verify-only) and the source balance account.
    pub fn new(api_key: &str, balance_account_id: &str) -> Self {
        let api_key = api_key.trim();
        let balance_account_id = balance_account_id.trim();
        AdyenSettings {
            api_base: Self::DEFAULT_API_BASE.to_owned(),
            api_key: (!api_key.is_empty()).then(|| Secret::from(api_key)),
            hmac_keys: Vec::new(),
            api_key_id: None,
            hmac_key_id: None,
            balance_account_id: (!balance_account_id.is_empty())
                .then(|| balance_account_id.to_owned()),
            budget: RequestBudget::alone(Self::DEFAULT_REQUEST_BUDGET),
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            settle_delay: Self::DEFAULT_SETTLE_DELAY,
        }
    }

    /// Present when `ADYEN_API_KEY` or `ADYEN_HMAC_KEY` is set. An HMAC key that is not hex, or
    /// an API key without `ADYEN_BALANCE_ACCOUNT_ID`, stops the function.
    pub fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        let api_key = env.value("ADYEN_API_KEY");
        let hmac_keys = env.secrets("ADYEN_HMAC_KEY");
        let api_key_id = env.secret_id("ADYEN_API_KEY")?;
        let hmac_key_id = env.secret_id("ADYEN_HMAC_KEY")?;
        if api_key.is_none()
            && hmac_keys.is_empty()
            && api_key_id.is_none()
            && hmac_key_id.is_none()
        {
            return Ok(None);
        }
        if hmac_keys.iter().any(|key| !is_hmac_key(key.expose())) {
            return Err(ConfigError::Invalid {
                name: "ADYEN_HMAC_KEY",
                value: "<redacted>".to_owned(),
                expected: "hex HMAC keys as Adyen shows them (an even number of 0-9/A-F digits), comma-separated during a rotation",
            });
        }
        let balance_account_id = env.value("ADYEN_BALANCE_ACCOUNT_ID");
        if (api_key.is_some() || api_key_id.is_some()) && balance_account_id.is_none() {
            return Err(ConfigError::Missing("ADYEN_BALANCE_ACCOUNT_ID"));
        }
        let mut settings = AdyenSettings::new(
            api_key.as_deref().unwrap_or_default(),
            balance_account_id.as_deref().unwrap_or_default(),
        );
        settings.hmac_keys = hmac_keys;
        settings.api_key_id = api_key_id;
        settings.hmac_key_id = hmac_key_id;
        if let Some(base) = env.value("ADYEN_API_BASE") {
            settings.api_base = base;
        }
        settings.budget = RequestBudget::alone(
            env.integer("ADYEN_REQUEST_BUDGET", 1..=10_000)?
                .unwrap_or(Self::DEFAULT_REQUEST_BUDGET),
        );
        settings.request_timeout = env
            .seconds("ADYEN_TIMEOUT_SECONDS")?
            .unwrap_or(settings.request_timeout);
        settings.settle_delay = env
            .seconds("ADYEN_RECONCILE_SETTLE_SECONDS")?
            .unwrap_or(settings.settle_delay);
        Ok(Some(settings))
    }
}

/// Whether `key` is usable as an Adyen HMAC key: hex, whole bytes, not empty.
pub fn is_hmac_key(key: &str) -> bool {
    !key.is_empty() && key.len().is_multiple_of(2) && key.bytes().all(|b| b.is_ascii_hexdigit())
}
