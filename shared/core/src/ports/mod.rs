//! The ports: what the core asks of the world outside it. Each is a trait with its own error
//! type; the implementations (DynamoDB, Stripe, SQS, …) live in other crates and are chosen
//! only in each function's `main.rs`.

pub mod payment;
pub mod queue;
pub mod repository;
pub mod webhook;
