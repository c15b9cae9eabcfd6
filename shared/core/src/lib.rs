//! The payout core: the domain of `docs/design.md`, the ports the core needs from the outside
//! world (a store, PSP adapters, a job queue, a clock), the executor that pays a batch, and
//! settlement, which applies verified PSP events. Nothing here knows DynamoDB, HTTP or a
//! particular PSP: those live in the crates beside this one and depend on it, never the reverse.

pub mod clock;
pub mod domain;
pub mod executor;
pub mod job;
pub mod metrics;
pub mod money;
pub mod ports;
pub mod reconciler;
pub mod registry;
pub mod settlement;
