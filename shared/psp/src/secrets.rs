//! PSP secrets read at run time: a secret named in the settings (`*_SECRET_ID`) is fetched from
//! a [`SecretStore`] (Secrets Manager in Lambda) on first use, never at start-up, and kept for
//! the cache's time to live. A rotated secret therefore reaches a running function within the
//! TTL, without a deploy, and its value is never in the function's environment. A webhook
//! verifier that finds no matching signature re-reads the secret once before refusing, so a
//! rotation is picked up at the first event signed with the new secret.

use http::HeaderValue;
use payouts_config::{ConfigError, Secret};
use payouts_core::ports::payment::PaymentError;
use payouts_core::ports::webhook::{VerifiedWebhook, WebhookError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::{info, warn};

/// A secret could not be read. Calls that need it are retried later (nothing is sent, no item
/// fails for it); webhook deliveries are answered 503 so the PSP redelivers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "secret {secret_id:?} could not be read: {reason}; check that it exists and that the function's role may read it"
)]
pub struct SecretError {
    pub secret_id: String,
    pub reason: String,
}

/// Where named secrets are read from.
#[async_trait::async_trait]
pub trait SecretStore: Send + Sync {
    /// The secret's current string value.
    async fn secret_string(&self, secret_id: &str) -> Result<String, SecretError>;
}

/// The least time between two forced re-reads (a signature that matched no secret): forged
/// requests cannot turn into a stream of Secrets Manager calls.
pub const MIN_FORCED_REFRESH: Duration = Duration::from_secs(10);

/// One secret setting: its values (several during a rotation, newest first), fixed or read from
/// a store and cached.
pub struct SecretValues {
    source: Source,
    /// The values last read and when; a plain lock, never held across a read.
    cached: std::sync::Mutex<Option<(Arc<Vec<Secret>>, Instant)>>,
    /// Serialises reads (one read at a time, however many callers find the cache stale), and
    /// remembers the last forced one.
    reading: Mutex<Option<Instant>>,
}

enum Source {
    Fixed(Arc<Vec<Secret>>),
    Stored {
        secret_id: String,
        store: Arc<dyn SecretStore>,
        ttl: Duration,
    },
}

impl std::fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            Source::Fixed(values) => write!(f, "SecretValues::Fixed({} values)", values.len()),
            Source::Stored { secret_id, ttl, .. } => {
                write!(f, "SecretValues::Stored({secret_id:?}, ttl {ttl:?})")
            }
        }
    }
}

impl SecretValues {
    /// Values given in the settings (a local run, a test).
    pub fn fixed(values: Vec<Secret>) -> Self {
        SecretValues {
            source: Source::Fixed(Arc::new(values)),
            cached: std::sync::Mutex::default(),
            reading: Mutex::default(),
        }
    }

    /// The secret `secret_id` of `store`, re-read once `ttl` has passed.
    pub fn stored(secret_id: String, store: Arc<dyn SecretStore>, ttl: Duration) -> Self {
        SecretValues {
            source: Source::Stored {
                secret_id,
                store,
                ttl,
            },
            cached: std::sync::Mutex::default(),
            reading: Mutex::default(),
        }
    }

    /// The values given in the settings; `None` for a stored secret.
    pub fn fixed_values(&self) -> Option<&[Secret]> {
        match &self.source {
            Source::Fixed(values) => Some(values),
            Source::Stored { .. } => None,
        }
    }

    /// Whether there is nothing to read: no fixed value and no secret named.
    pub fn is_empty(&self) -> bool {
        matches!(&self.source, Source::Fixed(values) if values.is_empty())
    }

    /// The current values: fixed, cached within the TTL, or read now. A failed read falls back
    /// to the last values read (logged), so a Secrets Manager hiccup does not stop payouts.
    pub async fn current(&self) -> Result<Arc<Vec<Secret>>, SecretError> {
        let (secret_id, store, ttl) = match &self.source {
            Source::Fixed(values) => return Ok(values.clone()),
            Source::Stored {
                secret_id,
                store,
                ttl,
            } => (secret_id, store, *ttl),
        };
        let fresh = |cached: &Option<(Arc<Vec<Secret>>, Instant)>| {
            cached
                .as_ref()
                .filter(|(_, read_at)| read_at.elapsed() < ttl)
                .map(|(values, _)| values.clone())
        };
        if let Some(values) = fresh(&self.cached.lock().expect("secret cache poisoned")) {
            return Ok(values);
        }
        let _reading = self.reading.lock().await;
        // Another caller may have read it while this one waited.
        if let Some(values) = fresh(&self.cached.lock().expect("secret cache poisoned")) {
            return Ok(values);
        }
        match read(store.as_ref(), secret_id).await {
            Ok(values) => {
                self.remember(&values);
                Ok(values)
            }
            Err(err) => match self.cached.lock().expect("secret cache poisoned").as_ref() {
                Some((stale, _)) => {
                    warn!(error = %err, "secret re-read failed: the last values read are used meanwhile");
                    Ok(stale.clone())
                }
                None => Err(err),
            },
        }
    }

    fn remember(&self, values: &Arc<Vec<Secret>>) {
        *self.cached.lock().expect("secret cache poisoned") =
            Some((values.clone(), Instant::now()));
    }

    /// Reads the secret again now (a signature matched none of the current values: the secret
    /// may have been rotated). `None` when it was re-read less than [`MIN_FORCED_REFRESH`] ago,
    /// or when the values are fixed.
    pub async fn refreshed(&self) -> Result<Option<Arc<Vec<Secret>>>, SecretError> {
        let Source::Stored {
            secret_id, store, ..
        } = &self.source
        else {
            return Ok(None);
        };
        let mut last_forced = self.reading.lock().await;
        if last_forced.is_some_and(|at| at.elapsed() < MIN_FORCED_REFRESH) {
            return Ok(None);
        }
        *last_forced = Some(Instant::now());
        let values = read(store.as_ref(), secret_id).await?;
        info!(
            secret_id,
            "secret re-read after a signature matched none of its values"
        );
        self.remember(&values);
        Ok(Some(values))
    }

    /// The newest value as a request header (`header` builds it), for one PSP call. A secret
    /// that cannot be read just now leaves the call retryable; a value that cannot be a header
    /// is the platform's configuration, never the item's fault.
    pub async fn newest_as_header(
        &self,
        header: impl Fn(&Secret) -> Result<HeaderValue, ConfigError>,
    ) -> Result<HeaderValue, PaymentError> {
        let values = self
            .current()
            .await
            .map_err(|err| PaymentError::Transient {
                reason: err.to_string(),
                retry_after: None,
            })?;
        let newest = values
            .first()
            .ok_or_else(|| PaymentError::PlatformRefused {
                reason: "the secret holds no value".into(),
            })?;
        header(newest).map_err(|err| PaymentError::PlatformRefused {
            reason: err.to_string(),
        })
    }

    /// Forgets the cached values (the PSP refused the key: it may have been rotated), so the
    /// next call reads the secret again.
    pub fn forget(&self) {
        if matches!(self.source, Source::Stored { .. }) {
            *self.cached.lock().expect("secret cache poisoned") = None;
        }
    }
}

/// Verifies a webhook with the secret's current values; when no signature matches and the
/// secret is stored, reads it again (at most every [`MIN_FORCED_REFRESH`]) and verifies once
/// more, so an event signed with a just-rotated secret is accepted at once.
pub async fn verify_with_rotation(
    values: &SecretValues,
    verify: impl Fn(&[Secret]) -> Result<VerifiedWebhook, WebhookError>,
) -> Result<VerifiedWebhook, WebhookError> {
    let current = values
        .current()
        .await
        .map_err(|e| WebhookError::SecretUnavailable(e.to_string()))?;
    match verify(&current) {
        Err(WebhookError::BadSignature) => match values.refreshed().await {
            Ok(Some(fresh)) => verify(&fresh),
            Ok(None) => Err(WebhookError::BadSignature),
            Err(err) => {
                warn!(error = %err, "secret re-read failed; the signature is refused");
                Err(WebhookError::BadSignature)
            }
        },
        other => other,
    }
}

/// Where a process reads its named secrets, and for how long it keeps them.
#[derive(Clone)]
pub struct SecretSource {
    pub store: Arc<dyn SecretStore>,
    pub ttl: Duration,
}

/// A secret setting's values: fixed ones from the environment, or those of secret `secret_id`
/// (the `setting`'s `_SECRET_ID`), which needs a store.
pub fn secret_values(
    fixed: Vec<Secret>,
    secret_id: Option<&String>,
    source: Option<&SecretSource>,
    setting: &'static str,
) -> Result<SecretValues, ConfigError> {
    match (secret_id, source) {
        (None, _) => Ok(SecretValues::fixed(fixed)),
        (Some(id), Some(source)) => Ok(SecretValues::stored(
            id.clone(),
            source.store.clone(),
            source.ttl,
        )),
        (Some(_), None) => Err(ConfigError::Conflict(format!(
            "{setting}_SECRET_ID is set but this process reads no secret store: build the adapters with one (registry_from_settings)"
        ))),
    }
}

/// A single-valued secret setting (an API key), `None` when neither its value nor its secret
/// is set (a verify-only adapter).
pub fn optional_secret(
    fixed: Option<&Secret>,
    secret_id: Option<&String>,
    source: Option<&SecretSource>,
    setting: &'static str,
) -> Result<Option<SecretValues>, ConfigError> {
    if fixed.is_none() && secret_id.is_none() {
        return Ok(None);
    }
    secret_values(
        fixed.into_iter().cloned().collect(),
        secret_id,
        source,
        setting,
    )
    .map(Some)
}

/// A secret's values: its string, comma-separated during a rotation (newest first).
async fn read(store: &dyn SecretStore, secret_id: &str) -> Result<Arc<Vec<Secret>>, SecretError> {
    let value = store.secret_string(secret_id).await?;
    let values: Vec<Secret> = value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(Secret::from)
        .collect();
    if values.is_empty() {
        return Err(SecretError {
            secret_id: secret_id.to_owned(),
            reason: "the secret is empty".into(),
        });
    }
    Ok(Arc::new(values))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A store whose value can be changed, counting reads.
    #[derive(Default)]
    struct Rotating {
        value: std::sync::Mutex<String>,
        reads: AtomicU64,
        failing: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl SecretStore for Rotating {
        async fn secret_string(&self, secret_id: &str) -> Result<String, SecretError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            if self.failing.load(Ordering::SeqCst) {
                return Err(SecretError {
                    secret_id: secret_id.into(),
                    reason: "throttled".into(),
                });
            }
            Ok(self.value.lock().unwrap().clone())
        }
    }

    const TTL: Duration = Duration::from_millis(80);

    fn exposed(values: &[Secret]) -> Vec<&str> {
        values.iter().map(Secret::expose).collect()
    }

    #[tokio::test]
    async fn a_stored_secret_is_read_lazily_cached_for_its_ttl_and_rotates_without_a_deploy() {
        let store = Arc::new(Rotating::default());
        *store.value.lock().unwrap() = "whsec_old".into();
        let secret = SecretValues::stored("payouts/webhook".into(), store.clone(), TTL);
        assert_eq!(
            store.reads.load(Ordering::SeqCst),
            0,
            "nothing read at construction"
        );
        assert_eq!(exposed(&secret.current().await.unwrap()), ["whsec_old"]);
        *store.value.lock().unwrap() = "whsec_new, whsec_old".into();
        assert_eq!(
            exposed(&secret.current().await.unwrap()),
            ["whsec_old"],
            "cached"
        );
        assert_eq!(store.reads.load(Ordering::SeqCst), 1);
        tokio::time::sleep(TTL + Duration::from_millis(20)).await;
        assert_eq!(
            exposed(&secret.current().await.unwrap()),
            ["whsec_new", "whsec_old"],
            "both accepted during the overlap"
        );
        // A store outage keeps the last values; a forced re-read is rate-limited.
        store.failing.store(true, Ordering::SeqCst);
        tokio::time::sleep(TTL + Duration::from_millis(20)).await;
        assert_eq!(secret.current().await.unwrap().len(), 2);
        store.failing.store(false, Ordering::SeqCst);
        *store.value.lock().unwrap() = "whsec_newer".into();
        assert_eq!(
            exposed(&secret.refreshed().await.unwrap().unwrap()),
            ["whsec_newer"]
        );
        assert!(
            secret.refreshed().await.unwrap().is_none(),
            "not again within 10 s"
        );
    }

    #[tokio::test]
    async fn an_unreadable_secret_with_nothing_cached_is_an_error_naming_it() {
        let store = Arc::new(Rotating::default());
        store.failing.store(true, Ordering::SeqCst);
        let secret = SecretValues::stored("payouts/key".into(), store, Duration::from_secs(60));
        let err = secret.current().await.unwrap_err();
        assert_eq!(err.secret_id, "payouts/key");
        assert!(err.to_string().contains("role may read it"), "{err}");
    }
}
