//! The registry of PSP adapters a deployment pays through, keyed by the batch's `provider`.
//! Built once at start-up (by `payouts_psp::registry` from the settings) and only read after.

use crate::ports::payment::PaymentAdapter;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The batch names a provider this deployment has no adapter for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no payment adapter for provider {provider:?} (configured: {configured}); fix the batch or enable the provider"
)]
pub struct UnknownProvider {
    pub provider: String,
    pub configured: String,
}

/// The adapters a deployment can pay through, keyed by provider name.
#[derive(Clone, Default)]
pub struct PaymentAdapterRegistry {
    adapters: BTreeMap<String, Arc<dyn PaymentAdapter>>,
}

impl PaymentAdapterRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `adapter` under its own provider name, replacing any earlier one.
    pub fn register(mut self, adapter: Arc<dyn PaymentAdapter>) -> Self {
        self.adapters.insert(adapter.provider().to_owned(), adapter);
        self
    }

    /// The adapter for a batch's `provider`.
    pub fn adapter_for(&self, provider: &str) -> Result<Arc<dyn PaymentAdapter>, UnknownProvider> {
        self.adapters
            .get(provider)
            .cloned()
            .ok_or_else(|| UnknownProvider {
                provider: provider.to_owned(),
                configured: self.providers().join(", "),
            })
    }

    /// Each adapter's PSP calls since the last take, by provider (for the PSP-health metrics).
    pub fn take_call_stats(&self) -> Vec<(String, crate::ports::payment::PspCallStats)> {
        self.adapters
            .iter()
            .map(|(provider, adapter)| (provider.clone(), adapter.take_call_stats()))
            .collect()
    }

    /// The registered provider names, for start-up logs and errors.
    pub fn providers(&self) -> Vec<String> {
        self.adapters.keys().cloned().collect()
    }
}
