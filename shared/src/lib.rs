//! What both payout Lambdas share: the domain of DESIGN.md, money, the job message, the
//! DynamoDB store, the PSP boundary (adapter trait, factory, adapters) and the executor.

pub mod domain;
pub mod executor;
pub mod job;
pub mod money;
pub mod psp;
pub mod settlement;
pub mod store;
