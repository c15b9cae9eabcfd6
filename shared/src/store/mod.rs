//! Persistence of batches, items and recipients' settings. DynamoDB is the only store: the
//! conditional writes in [`dynamodb`] are what make the executor's protocol safe.

pub mod dynamodb;
pub mod settlement;
mod time;

pub use dynamodb::{Claim, ClaimOutcome, PayoutStore, TransitionOutcome};
pub use time::{ms_from_rfc3339, now_ms, rfc3339_from_ms};

/// A DynamoDB call failed, or a record cannot be read as DESIGN.md defines it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The call failed after the SDK's own retries (throttling, network, service errors).
    /// Retryable: the job should be retried later.
    #[error("DynamoDB {operation} failed: {message}")]
    Dynamo {
        operation: &'static str,
        message: String,
    },
    /// A record is missing attributes or has the wrong types. Not retryable until fixed.
    #[error("record {key} is malformed: {problem}")]
    Malformed { key: String, problem: String },
}

impl StoreError {
    pub(crate) fn dynamo<E, R>(
        operation: &'static str,
        err: aws_sdk_dynamodb::error::SdkError<E, R>,
    ) -> Self
    where
        E: std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let message = match &err {
            aws_sdk_dynamodb::error::SdkError::ServiceError(service) => service.err().to_string(),
            other => format!("{other}"),
        };
        StoreError::Dynamo { operation, message }
    }
}
