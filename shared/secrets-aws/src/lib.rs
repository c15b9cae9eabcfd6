//! The PSP secret store on AWS Secrets Manager (`GetSecretValue`): the functions' environment
//! holds only each secret's name (`…_SECRET_ID`); the value is read when first needed and cached
//! by `payouts_psp::secrets` for `SECRETS_CACHE_SECONDS`. The endpoint follows the standard
//! `AWS_ENDPOINT_URL_SECRETS_MANAGER` / `AWS_ENDPOINT_URL`, so tests run against moto.

use payouts_config::{ConfigError, PspSettings};
use payouts_core::registry::PaymentAdapterRegistry;
use payouts_psp::registry::registry_from_settings;
use payouts_psp::secrets::{SecretError, SecretSource, SecretStore};
use std::sync::Arc;

/// Reads secrets with one Secrets Manager client.
pub struct SecretsManagerStore {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretsManagerStore {
    pub fn new(client: aws_sdk_secretsmanager::Client) -> Self {
        SecretsManagerStore { client }
    }

    /// The adapters for `psp`'s settings, their named secrets read through a client `client`
    /// builds (only when a setting names one): what every function's `main` calls.
    pub fn psp_adapters(
        psp: &PspSettings,
        client: impl FnOnce() -> aws_sdk_secretsmanager::Client,
    ) -> Result<PaymentAdapterRegistry, ConfigError> {
        let secrets = Self::source_for(psp, client);
        registry_from_settings(psp, secrets.as_ref())
    }

    /// The secret source for `psp`'s settings: `None` when no setting names a secret (a local
    /// run with values in the environment), so no client is built.
    pub fn source_for(
        psp: &PspSettings,
        client: impl FnOnce() -> aws_sdk_secretsmanager::Client,
    ) -> Option<SecretSource> {
        psp.reads_stored_secrets().then(|| SecretSource {
            store: Arc::new(SecretsManagerStore::new(client())),
            ttl: psp.secrets_ttl,
        })
    }
}

#[async_trait::async_trait]
impl SecretStore for SecretsManagerStore {
    async fn secret_string(&self, secret_id: &str) -> Result<String, SecretError> {
        let failed = |reason: String| SecretError {
            secret_id: secret_id.to_owned(),
            reason,
        };
        let out = self
            .client
            .get_secret_value()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| {
                failed(
                    e.as_service_error()
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| e.to_string()),
                )
            })?;
        out.secret_string
            .ok_or_else(|| failed("the secret holds binary data, not a string".into()))
    }
}
