//! The operator CLI `payouts-ops`, as a library so that every command can be tested against a
//! real DynamoDB API and an SQS server: [`cli`] is the command line (clap), and each command is
//! a plain async function over the clients it needs, returning a report that prints as text
//! ([`fmt::Display`]) or as one JSON document ([`serde::Serialize`], camelCase field names).
//!
//! - the payouts table: [`batch_status`], [`list_items`], [`show_item`] (reads only), and the
//!   batch check of [`enqueue`] / [`retry`]; everything that decides something reads through
//!   [`PayoutRepository`];
//! - the queues: [`enqueue`] / [`retry`] (one SendMessage), [`peek_dlq`] (receives and makes
//!   the messages visible again, never deletes), [`redrive`] (SQS's message-move task, or a
//!   receive → send → delete move where the service has no move tasks);
//! - Lambda: [`pause`] / [`resume`] (the emergency stop: disable or enable payout-execute's
//!   SQS event source mapping, found from the jobs queue's ARN) and [`execution_status`].
//!
//! `docs/design.md` defines the vocabulary: item statuses, batch counts, the job message.

pub mod cli;
mod items;
mod pause;
mod progress;
mod queues;

/// The SDK the `pause` / `resume` functions take a client of (tests build one with it).
pub use aws_sdk_lambda;
/// The command-line parser [`cli::Cli`] is declared with (tests parse with it).
pub use clap;
pub use items::{
    BatchStatus, ItemDetail, ItemLine, ItemList, StatusWithItems, TimelineEntry, batch_status,
    list_items, show_item, status_with_items,
};
pub use pause::{
    Action, DRIFT, Execution, ExecutionReport, Mapping, MappingError, SwitchOptions, WHILE_PAUSED,
    execution_status, find_mapping, jobs_queue_arn, mappings_reading, names_function, pause,
    resume, select_mapping,
};
pub use progress::{NoProgress, Progress, StderrProgress};
pub use queues::{
    DlqMessage, DlqPeek, MoveTask, RedriveMethod, RedriveOptions, RedriveReport, RetrySent,
    SentJob, enqueue, peek_dlq, redrive, retry, unsupported_operation,
};

use payouts_core::ports::repository::StoreError;
use serde::Serialize;
use std::fmt;

/// Exit code: the command did what it was asked.
pub const EXIT_OK: u8 = 0;
/// Exit code: an AWS call failed, or a record could not be read.
pub const EXIT_RUNTIME: u8 = 1;
/// Exit code: bad arguments or missing configuration (queue URL, table name, region; for
/// `pause` / `resume`, no event source mapping or several reading the jobs queue). clap's own
/// usage errors exit with the same code.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the batch (or, for `item`, the item) does not exist in the payouts table.
pub const EXIT_BATCH_NOT_FOUND: u8 = 3;

/// Why a command failed. Each kind has its own exit code, so that scripts can tell "fix the
/// command line" from "try again" from "wrong id"; each message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The arguments make no sense together (checked after clap parsed them).
    #[error("{0}")]
    Usage(String),
    /// A setting is missing or names the wrong thing: the message names the variable and the
    /// option that provide it.
    #[error("missing configuration: {0}")]
    Config(String),
    /// `pause` / `resume`: no event source mapping, or several, read the jobs queue.
    #[error(transparent)]
    Mapping(#[from] MappingError),
    /// No batch record under this id.
    #[error(
        "batch {0:?} does not exist in the payouts table: check the id, and that PAYOUTS_TABLE (or --payouts-table) names this stage's table"
    )]
    BatchNotFound(String),
    /// The batch exists but has no item under this id.
    #[error(
        "batch {batch_id:?} has no item {item_id:?}: list its items with `payouts-ops items {batch_id}`"
    )]
    ItemNotFound {
        /// The batch, which exists.
        batch_id: String,
        /// The item id that is not in it.
        item_id: String,
    },
    /// An AWS call failed or a record could not be read; the message says which and why.
    #[error("{0}")]
    Runtime(String),
}

impl OpsError {
    /// The process exit code for this error (see the `EXIT_*` constants).
    pub fn exit_code(&self) -> u8 {
        match self {
            OpsError::Usage(_) | OpsError::Config(_) | OpsError::Mapping(_) => EXIT_USAGE,
            OpsError::BatchNotFound(_) | OpsError::ItemNotFound { .. } => EXIT_BATCH_NOT_FOUND,
            OpsError::Runtime(_) => EXIT_RUNTIME,
        }
    }
}

impl From<StoreError> for OpsError {
    fn from(err: StoreError) -> Self {
        let hint = match err {
            StoreError::Unavailable { .. } => {
                "check the AWS credentials, region and PAYOUTS_TABLE, then run the command again"
            }
            StoreError::Malformed { .. } => {
                "the record does not follow docs/design.md#data-contracts: fix it in the table"
            }
        };
        OpsError::Runtime(format!("{err} ({hint})"))
    }
}

/// How a command prints its result: for a person, or for a script (`--output json`: one JSON
/// document on stdout and nothing else; progress and errors go to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Output {
    // No doc comments on the variants: clap would turn them into a long `--help` listing.
    #[default]
    Text,
    Json,
}

/// A command's report: printable as text and as JSON. Every report type is one, so callers
/// (main, tests) can take any of them without naming serde.
pub trait Report: fmt::Display + Serialize {}

impl<T: fmt::Display + Serialize> Report for T {}

/// A command's result in the chosen [`Output`]: the text ends with a newline; the JSON is one
/// pretty-printed document followed by a newline.
pub fn render<T: Report + ?Sized>(report: &T, output: Output) -> String {
    match output {
        Output::Text => {
            let text = report.to_string();
            if text.ends_with('\n') {
                text
            } else {
                format!("{text}\n")
            }
        }
        Output::Json => {
            // Serialising plain owned data cannot fail; should it ever, say so as JSON too.
            let json = serde_json::to_string_pretty(report).unwrap_or_else(|err| {
                serde_json::json!({ "error": format!("cannot serialise the report: {err}") })
                    .to_string()
            });
            format!("{json}\n")
        }
    }
}

/// Serialises an item status as the string stored in DynamoDB (`pending_kyc`, …).
pub(crate) fn status_str<S: serde::Serializer>(
    status: &payouts_core::domain::ItemStatus,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(status.as_str())
}

/// An optional epoch-ms time as RFC 3339 (what every time in the JSON output is).
pub(crate) fn rfc3339(ms: Option<u64>) -> Option<String> {
    ms.map(payouts_core::clock::rfc3339_from_ms)
}
