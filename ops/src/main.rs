//! `payouts-ops`: the operator CLI. See `USAGE` (and the README's "Operate" section).

use payouts_ops::{OpsError, batch_status, enqueue, redrive};
use payouts_store_dynamodb::DynamoDbRepository;
use std::process::ExitCode;

const USAGE: &str = "\
usage: payouts-ops [OPTIONS] COMMAND

commands:
  enqueue BATCH_ID [--job-id ID]  send a payout.execute job for the batch to the jobs queue
                                  (refuses batches that are not in the payouts table)
  status BATCH_ID [--items]       items per status (the batch's live counts, one small read);
                                  --items lists every item, and the failed / pending_kyc ones with
                                  their reasons
  redrive [--max N]               move messages from the DLQ back to the jobs queue, deleting
                                  each from the DLQ only after the jobs queue accepted it

options (each defaults to its environment variable):
  --queue-url URL        the jobs queue             PAYOUT_JOBS_QUEUE_URL  (enqueue, redrive)
  --dlq-url URL          the jobs queue's DLQ       PAYOUT_DLQ_URL         (redrive)
  --payouts-table NAME   the payouts table          PAYOUTS_TABLE          (enqueue, status)
AWS region, credentials and endpoints come from the standard AWS SDK settings
(AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL_SQS, ...).

exit codes: 0 ok, 1 AWS or runtime error, 2 usage or configuration error, 3 batch not found";

#[derive(Debug, Default)]
struct Args {
    command: Vec<String>,
    queue_url: Option<String>,
    dlq_url: Option<String>,
    payouts_table: Option<String>,
    job_id: Option<String>,
    max: Option<usize>,
    items: bool,
}

fn parse_args(raw: impl Iterator<Item = String>) -> Result<Option<Args>, OpsError> {
    let mut args = Args::default();
    let mut raw = raw.peekable();
    while let Some(arg) = raw.next() {
        let mut value = |name: &str| {
            raw.next()
                .filter(|v| !v.starts_with("--"))
                .ok_or_else(|| OpsError::Usage(format!("{name} needs a value")))
        };
        match arg.as_str() {
            "-h" | "--help" | "help" => return Ok(None),
            "--queue-url" => args.queue_url = Some(value("--queue-url")?),
            "--dlq-url" => args.dlq_url = Some(value("--dlq-url")?),
            "--payouts-table" => args.payouts_table = Some(value("--payouts-table")?),
            "--job-id" => args.job_id = Some(value("--job-id")?),
            "--max" => {
                let max = value("--max")?;
                args.max = Some(max.parse().map_err(|_| {
                    OpsError::Usage(format!("--max {max:?} is not a number of messages"))
                })?);
            }
            "--items" => args.items = true,
            other if other.starts_with('-') => {
                return Err(OpsError::Usage(format!("unknown option {other}")));
            }
            _ => args.command.push(arg),
        }
    }
    Ok(Some(args))
}

/// The option's value, else the environment variable's, else a configuration error.
fn setting(option: Option<String>, flag: &str, env_var: &str) -> Result<String, OpsError> {
    option
        .or_else(|| std::env::var(env_var).ok())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| OpsError::Config(format!("set {env_var} or pass {flag}")))
}

async fn aws_config() -> Result<aws_config::SdkConfig, OpsError> {
    let config = aws_config::load_from_env().await;
    if config.region().is_none() {
        return Err(OpsError::Config(
            "no AWS region: set AWS_REGION (or a profile with a region)".into(),
        ));
    }
    Ok(config)
}

fn store(config: &aws_config::SdkConfig, payouts_table: String) -> DynamoDbRepository {
    // The operator commands only read and write the payouts table.
    let settings_table = std::env::var("USER_SETTINGS_TABLE").unwrap_or_default();
    DynamoDbRepository::new(
        aws_sdk_dynamodb::Client::new(config),
        payouts_table,
        settings_table,
    )
}

async fn run(args: Args) -> Result<(), OpsError> {
    let command: Vec<&str> = args.command.iter().map(String::as_str).collect();
    let only = |allowed: &[&str]| -> Result<(), OpsError> {
        let given = [
            ("--queue-url", args.queue_url.is_some()),
            ("--dlq-url", args.dlq_url.is_some()),
            ("--payouts-table", args.payouts_table.is_some()),
            ("--job-id", args.job_id.is_some()),
            ("--max", args.max.is_some()),
            ("--items", args.items),
        ];
        match given
            .iter()
            .find(|(name, set)| *set && !allowed.contains(name))
        {
            Some((name, _)) => Err(OpsError::Usage(format!(
                "{name} does not apply to {}",
                command[0]
            ))),
            None => Ok(()),
        }
    };
    match command.as_slice() {
        ["enqueue", batch_id] => {
            only(&["--queue-url", "--payouts-table", "--job-id"])?;
            let queue_url = setting(args.queue_url, "--queue-url", "PAYOUT_JOBS_QUEUE_URL")?;
            let table = setting(args.payouts_table, "--payouts-table", "PAYOUTS_TABLE")?;
            let config = aws_config().await?;
            let sqs = aws_sdk_sqs::Client::new(&config);
            let message_id = enqueue(
                &store(&config, table),
                &sqs,
                &queue_url,
                batch_id,
                args.job_id,
            )
            .await?;
            println!("enqueued payout.execute for batch {batch_id}: message {message_id}");
            Ok(())
        }
        ["status", batch_id] => {
            only(&["--payouts-table", "--items"])?;
            let table = setting(args.payouts_table, "--payouts-table", "PAYOUTS_TABLE")?;
            let config = aws_config().await?;
            let status = batch_status(&store(&config, table), batch_id, None, args.items).await?;
            print!("{status}");
            Ok(())
        }
        ["redrive"] => {
            only(&["--queue-url", "--dlq-url", "--max"])?;
            let queue_url = setting(args.queue_url, "--queue-url", "PAYOUT_JOBS_QUEUE_URL")?;
            let dlq_url = setting(args.dlq_url, "--dlq-url", "PAYOUT_DLQ_URL")?;
            if queue_url == dlq_url {
                return Err(OpsError::Usage(
                    "the DLQ and the jobs queue are the same queue".into(),
                ));
            }
            let config = aws_config().await?;
            let report = redrive(
                &aws_sdk_sqs::Client::new(&config),
                &dlq_url,
                &queue_url,
                args.max,
            )
            .await?;
            println!("redrove {} message(s) from the DLQ", report.moved);
            Ok(())
        }
        [] => Err(OpsError::Usage("no command given".into())),
        [name, ..] if ["enqueue", "status", "redrive"].contains(name) => {
            Err(OpsError::Usage(format!("wrong arguments for {name}")))
        }
        [name, ..] => Err(OpsError::Usage(format!("unknown command {name:?}"))),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match parse_args(std::env::args().skip(1)) {
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Some(args)) => run(args).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("payouts-ops: {err}");
            if let OpsError::Usage(_) = err {
                eprintln!("\n{USAGE}");
            }
            ExitCode::from(err.exit_code())
        }
    }
}
