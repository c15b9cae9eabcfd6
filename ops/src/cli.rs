//! The command line, declared with clap's derive API: in the library so that tests can parse
//! arguments (`Cli::try_parse_from`) exactly as the binary does. `main.rs` only wires the
//! parsed [`Cli`] to the commands.

use crate::{OpsError, Output};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Parser, Subcommand};
use payouts_core::domain::ItemStatus;

const ABOUT: &str = "Operate payout batches: their status and items, (re)enqueueing their \
payout.execute jobs, the jobs queue's DLQ, and the emergency stop (pause / resume).";

const AFTER_HELP: &str = "\
Each option falls back to its environment variable (stack outputs PayoutsTableName,
PayoutJobsQueueUrl, PayoutJobsDeadLetterQueueUrl). AWS region, credentials and endpoints come
from the standard AWS SDK settings (AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL_DYNAMODB,
AWS_ENDPOINT_URL_SQS, ...).

Emergency stop: `payouts-ops pause` disables payout-execute's SQS event source mapping at
once, so no run starts (jobs wait in the queue; runs already started finish; webhooks keep
settling items); `payouts-ops resume` enables it again; `payouts-ops pause --status` shows it.
The template parameter PayoutExecutionEnabled sets the same mapping at deploy, so the next
deploy can undo a CLI pause: pause with the CLI at once, then keep it paused with
  sam deploy --parameter-overrides PayoutExecutionEnabled=false
and after `payouts-ops resume`, deploy with PayoutExecutionEnabled=true likewise.

Exit codes:
  0  done
  1  an AWS call failed (throttling, permissions, network), a record could not be read, or
     the event source mapping did not reach the state asked for in time (pause, resume)
  2  usage or configuration error (unknown command or option, missing argument, missing
     PAYOUTS_TABLE / queue URL / AWS region; for pause and resume, no event source mapping
     or several reading the jobs queue)
  3  the batch (or, for `item`, the item) does not exist in the payouts table

Example:
  payouts-ops status b-2026-11-0001
  payouts-ops --output json items b-2026-11-0001 --status failed";

/// The heading of the options every command takes, apart from each command's own.
const GLOBAL: &str = "Global options";

/// `payouts-ops`: options shared by every command, then the command.
#[derive(Debug, Parser)]
#[command(
    name = "payouts-ops",
    version,
    about = ABOUT,
    after_help = AFTER_HELP,
    // Usage lines are fixed: clap would list the options an environment variable set as if
    // they had been typed.
    override_usage = "payouts-ops [OPTIONS] <COMMAND>",
    disable_help_subcommand = true,
    propagate_version = true
)]
pub struct Cli {
    /// The jobs queue (enqueue, retry, redrive, pause, resume).
    #[arg(long, global = true, value_name = "URL", env = "PAYOUT_JOBS_QUEUE_URL",
          help_heading = GLOBAL)]
    pub queue_url: Option<String>,

    /// The jobs queue's dead-letter queue (dlq peek, redrive).
    #[arg(long, global = true, value_name = "URL", env = "PAYOUT_DLQ_URL",
          help_heading = GLOBAL)]
    pub dlq_url: Option<String>,

    /// The payouts table (status, items, item, enqueue, retry).
    #[arg(long, global = true, value_name = "NAME", env = "PAYOUTS_TABLE",
          help_heading = GLOBAL)]
    pub payouts_table: Option<String>,

    /// text, or one JSON document on stdout (progress and errors go to stderr).
    #[arg(long, global = true, value_enum, default_value_t = Output::Text,
          help_heading = GLOBAL)]
    pub output: Output,

    // The command to run (no doc comment: clap would take it as help text).
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send a payout.execute job for a batch to the jobs queue (refuses unknown batches).
    #[command(
        override_usage = "payouts-ops enqueue [OPTIONS] <BATCH_ID>",
        after_help = "\
Items already processing or paid are skipped, so enqueueing a batch again never pays twice.

Example:
  payouts-ops enqueue b-2026-11-0001 --job-id nov-run-1"
    )]
    Enqueue {
        /// The batch's id (its record is BATCH#<id> in the payouts table).
        batch_id: String,
        /// A job id for the logs (`jobId`); none by default.
        #[arg(long, value_name = "ID")]
        job_id: Option<String>,
    },

    /// Send a fresh whole-batch job for a batch once the cause of its failures is fixed.
    #[command(
        override_usage = "payouts-ops retry [OPTIONS] <BATCH_ID>",
        after_help = "\
The job's first run retries failed items under a new idempotency key, re-checks the
pending_kyc ones and skips processing and paid items. Its job id is ops-retry-<time>.
Prints the job it sent and the counts it will work on.

Example:
  payouts-ops retry b-2026-11-0001"
    )]
    Retry {
        /// The batch's id.
        batch_id: String,
    },

    /// A batch's status and its live item counts per status (one small read).
    #[command(
        override_usage = "payouts-ops status [OPTIONS] <BATCH_ID>",
        after_help = "\
The counts come from the batch's counter shards, whatever its size; before its first run they
are counted from its items (progress on stderr when it is a terminal). List the items with
`payouts-ops items` (or here, after the counts, with --items).

Example:
  payouts-ops status b-2026-11-0001"
    )]
    Status {
        /// The batch's id.
        batch_id: String,
        /// Also list every item, as `payouts-ops items BATCH_ID` does.
        #[arg(long)]
        items: bool,
    },

    /// A batch's items with their reason, attempt and PSP transfer id, optionally of one status.
    #[command(
        override_usage = "payouts-ops items [OPTIONS] <BATCH_ID>",
        after_help = "\
Reads every page of the batch's items (strongly consistent; progress on stderr when it is a
terminal). Records that cannot be decoded are listed as unreadable.

Example:
  payouts-ops items b-2026-11-0001 --status failed"
    )]
    Items {
        /// The batch's id.
        batch_id: String,
        /// Only the items of this status.
        #[arg(long, value_name = "STATUS", value_parser = status_parser())]
        status: Option<ItemStatus>,
    },

    /// One item: every field, and its timeline when the record has one.
    #[command(
        override_usage = "payouts-ops item [OPTIONS] <BATCH_ID> <ITEM_ID>",
        after_help = "\
Example:
  payouts-ops item b-2026-11-0001 item-00042"
    )]
    Item {
        /// The batch's id.
        batch_id: String,
        /// The item's id (its record is ITEM#<id>).
        item_id: String,
    },

    /// The jobs queue's dead-letter queue: look at its messages (`dlq peek`).
    #[command(
        subcommand,
        override_usage = "payouts-ops dlq [OPTIONS] <COMMAND>",
        after_help = "\
Example:
  payouts-ops dlq peek --max 5"
    )]
    Dlq(DlqCommand),

    /// Move the DLQ's messages back to the jobs queue (after fixing what sent them there).
    #[command(
        override_usage = "payouts-ops redrive [OPTIONS]",
        after_help = "\
Uses SQS's message-move task (StartMessageMoveTask from the DLQ to the jobs queue) and watches
it until it ends (progress on stderr when it is a terminal); Ctrl-C stops watching, not the
task. Where the service does not support move tasks, and with --max, messages are moved one
by one: received, sent with their attributes, and deleted from the DLQ only once sent.

Example:
  payouts-ops redrive
  payouts-ops redrive --max 1    # try one job first"
    )]
    Redrive {
        /// Move at most N messages, one by one (a move task always moves the whole DLQ).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..),
              conflicts_with_all = ["no_wait", "rate"])]
        max: Option<u32>,
        /// Start the move task and report it without waiting for it to end.
        #[arg(long)]
        no_wait: bool,
        /// The move task's pace, messages per second (1 to 500; SQS's default: up to 500).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..=500))]
        rate: Option<i32>,
    },

    /// Emergency stop: disable payout-execute's SQS event source so that no payout run starts.
    #[command(
        override_usage = "payouts-ops pause [OPTIONS]",
        after_help = "\
Finds the event source mapping that reads the jobs queue (its ARN from --queue-url), disables
it (UpdateEventSourceMapping Enabled=false) and waits until Lambda reports it Disabled
(progress on stderr when it is a terminal; at most 5 minutes). No new run starts: jobs wait in
the queue (up to its retention), runs already started finish, and webhooks keep settling
items. --status only shows the mapping's state. Several mappings on the queue: name the
function with --function.

The template parameter PayoutExecutionEnabled sets the same mapping at deploy, so the next
deploy can undo this pause. Pause with the CLI at once, then keep it paused with
  sam deploy --parameter-overrides PayoutExecutionEnabled=false

Example:
  payouts-ops pause
  payouts-ops pause --status"
    )]
    Pause {
        /// Only show whether payouts are paused (the mapping's state); change nothing.
        #[arg(long, conflicts_with = "no_wait")]
        status: bool,
        /// Ask Lambda to disable the mapping and report without waiting for Disabled.
        #[arg(long)]
        no_wait: bool,
        /// The payout-execute function (name, name:alias or ARN), when several mappings read
        /// the jobs queue.
        #[arg(long, value_name = "NAME", env = "PAYOUT_EXECUTE_FUNCTION")]
        function: Option<String>,
    },

    /// Undo `pause`: enable payout-execute's SQS event source so that runs start again.
    #[command(
        override_usage = "payouts-ops resume [OPTIONS]",
        after_help = "\
Enables the event source mapping that reads the jobs queue (UpdateEventSourceMapping
Enabled=true) and waits until Lambda reports it Enabled (progress on stderr when it is a
terminal; at most 5 minutes). The jobs that waited in the queue start runs again.

The template parameter PayoutExecutionEnabled sets the same mapping at deploy: if the stack was
deployed with PayoutExecutionEnabled=false, the next deploy can pause payouts again. Resume with
the CLI at once, then keep payouts running with
  sam deploy --parameter-overrides PayoutExecutionEnabled=true

Example:
  payouts-ops resume"
    )]
    Resume {
        /// Ask Lambda to enable the mapping and report without waiting for Enabled.
        #[arg(long)]
        no_wait: bool,
        /// The payout-execute function (name, name:alias or ARN), when several mappings read
        /// the jobs queue.
        #[arg(long, value_name = "NAME", env = "PAYOUT_EXECUTE_FUNCTION")]
        function: Option<String>,
    },
}

/// `payouts-ops dlq …`
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Look at DLQ messages without removing them.
    #[command(
        override_usage = "payouts-ops dlq peek [OPTIONS]",
        after_help = "\
Receives up to N messages and makes them visible again at once; never deletes. Each message is
shown with its id, receive count, sent time, batch and body.

Example:
  payouts-ops dlq peek --max 5"
    )]
    Peek {
        /// How many messages to show.
        #[arg(long, value_name = "N", default_value_t = 10,
              value_parser = clap::value_parser!(u32).range(1..=1000))]
        max: u32,
    },
}

/// `--status` values: the design's item statuses, listed in `--help` and in errors.
fn status_parser() -> impl TypedValueParser<Value = ItemStatus> {
    PossibleValuesParser::new(ItemStatus::ALL.map(ItemStatus::as_str))
        .map(|s| s.parse::<ItemStatus>().expect("one of the possible values"))
}

impl Cli {
    /// A setting's value (option or environment variable, trimmed), or a configuration error
    /// that names both.
    pub fn setting(value: &Option<String>, flag: &str, env_var: &str) -> Result<String, OpsError> {
        value
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| OpsError::Config(format!("set {env_var} or pass {flag}")))
    }

    /// The payouts table's name.
    pub fn table(&self) -> Result<String, OpsError> {
        Self::setting(&self.payouts_table, "--payouts-table", "PAYOUTS_TABLE")
    }

    /// The jobs queue's URL.
    pub fn jobs_queue(&self) -> Result<String, OpsError> {
        Self::setting(&self.queue_url, "--queue-url", "PAYOUT_JOBS_QUEUE_URL")
    }

    /// The DLQ's URL.
    pub fn dlq(&self) -> Result<String, OpsError> {
        Self::setting(&self.dlq_url, "--dlq-url", "PAYOUT_DLQ_URL")
    }

    /// `--function` / `PAYOUT_EXECUTE_FUNCTION` of `pause` and `resume`, trimmed; none when
    /// unset or empty (then the jobs queue must have exactly one event source mapping).
    pub fn execute_function(&self) -> Option<String> {
        let function = match &self.command {
            Command::Pause { function, .. } | Command::Resume { function, .. } => function,
            _ => return None,
        };
        function
            .as_deref()
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
    }
}
