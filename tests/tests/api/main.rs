//! The integration tests, one binary (one link on 2 cores): each module tests one boundary
//! against a real DynamoDB API (dynoxide in-process by default; `AWS_ENDPOINT_URL_DYNAMODB`
//! for another), with the harness in `tests/src/`.

mod adyen;
mod batch_counts;
mod conformance;
mod executor;
mod fan_out;
mod fault_simulation;
mod lambda_handler;
mod metrics;
mod money_edges;
mod ops_cli;
mod pacing;
mod psp_webhook;
mod reconciler;
mod secrets;
mod sqs_queue;
mod stripe;
mod template;
