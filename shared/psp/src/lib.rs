//! The PSP adapters: each PSP in its own folder (typed wire types in `transformers.rs`, its
//! webhook scheme in `webhook.rs`), the HTTP client and pacer they share, and the registry that
//! builds them from the settings. `template/` is the documented starting point for the next
//! PSP (`docs/adding-a-psp.md`).

pub mod adyen;
pub mod http;
pub mod rate_limit;
pub mod registry;
pub mod sandbox;
pub mod secrets;
pub mod stripe;
