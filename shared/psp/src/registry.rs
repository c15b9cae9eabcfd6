//! Builds the adapters a deployment pays through from its settings: the only code that names
//! every PSP. A new PSP adds one line here (see `docs/adding-a-psp.md`).

use crate::adyen::AdyenAdapter;
use crate::sandbox::SandboxPsp;
use crate::stripe::StripeAdapter;
use payouts_config::{ConfigError, PspSettings};
use payouts_core::registry::PaymentAdapterRegistry;
use std::sync::Arc;

/// The registry of every PSP whose settings are present.
pub fn registry_from_settings(
    settings: &PspSettings,
) -> Result<PaymentAdapterRegistry, ConfigError> {
    let mut registry = PaymentAdapterRegistry::new();
    if let Some(sandbox) = &settings.sandbox {
        registry = registry.register(Arc::new(SandboxPsp::from_settings(sandbox.clone())));
    }
    if let Some(stripe) = &settings.stripe {
        registry = registry.register(Arc::new(StripeAdapter::new(stripe.clone())?));
    }
    if let Some(adyen) = &settings.adyen {
        registry = registry.register(Arc::new(AdyenAdapter::new(adyen.clone())?));
    }
    Ok(registry)
}
