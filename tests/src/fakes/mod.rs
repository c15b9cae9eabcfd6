//! PSP fakes: each a local server on 127.0.0.1 that behaves like its PSP (idempotency store,
//! key expiry on a clock tests move, injectable faults), for the adapters' tests, the
//! conformance suite, the fault simulation and local runs.

pub mod adyen;
pub mod stripe;
