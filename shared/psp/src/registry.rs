//! Builds the adapters a deployment pays through from its settings: the only code that names
//! every PSP. A new PSP adds one line here (see `docs/adding-a-psp.md`).

use crate::adyen::AdyenAdapter;
use crate::sandbox::SandboxPsp;
use crate::secrets::SecretSource;
use crate::stripe::StripeAdapter;
use payouts_config::{ConfigError, PspSettings};
use payouts_core::registry::PaymentAdapterRegistry;
use std::sync::Arc;

/// The registry of every PSP whose settings are present. Secrets the settings name
/// (`…_SECRET_ID`) are read from `secrets` at run time, when first needed.
pub fn registry_from_settings(
    settings: &PspSettings,
    secrets: Option<&SecretSource>,
) -> Result<PaymentAdapterRegistry, ConfigError> {
    let mut registry = PaymentAdapterRegistry::new();
    if let Some(sandbox) = &settings.sandbox {
        registry = registry.register(Arc::new(SandboxPsp::from_settings(
            sandbox.clone(),
            secrets,
        )?));
    }
    if let Some(stripe) = &settings.stripe {
        registry = registry.register(Arc::new(StripeAdapter::with_secrets(
            stripe.clone(),
            secrets,
        )?));
    }
    if let Some(adyen) = &settings.adyen {
        registry = registry.register(Arc::new(AdyenAdapter::with_secrets(
            adyen.clone(),
            secrets,
        )?));
    }
    Ok(registry)
}
