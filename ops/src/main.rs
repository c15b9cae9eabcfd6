//! `payouts-ops`: the operator CLI. Parses the command line ([`payouts_ops::cli::Cli`]), builds
//! the AWS clients, runs the command from the library and prints its report; `--help` lists
//! the commands and the exit codes (README "Operate").

use clap::Parser;
use payouts_ops::cli::{Cli, Command, DlqCommand};
use payouts_ops::{
    NoProgress, OpsError, Progress, RedriveOptions, StderrProgress, SwitchOptions, batch_status,
    enqueue, execution_status, list_items, pause, peek_dlq, redrive, render, resume, retry,
    show_item, status_with_items,
};
use payouts_store_dynamodb::DynamoDbRepository;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

/// The AWS settings from the standard SDK sources; a missing region is a configuration error.
async fn aws_config() -> Result<aws_config::SdkConfig, OpsError> {
    let config = aws_config::load_from_env().await;
    if config.region().is_none() {
        return Err(OpsError::Config(
            "no AWS region: set AWS_REGION (or a profile with a region)".into(),
        ));
    }
    Ok(config)
}

/// The operator commands read and write the payouts table only.
fn store(config: &aws_config::SdkConfig, payouts_table: String) -> DynamoDbRepository {
    DynamoDbRepository::payouts_only(aws_sdk_dynamodb::Client::new(config), payouts_table)
}

/// Progress on stderr only when a person watches it.
fn progress() -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() {
        Box::new(StderrProgress::new())
    } else {
        Box::new(NoProgress)
    }
}

async fn run(cli: Cli) -> Result<String, OpsError> {
    let output = cli.output;
    match &cli.command {
        Command::Enqueue { batch_id, job_id } => {
            let (queue_url, table) = (cli.jobs_queue()?, cli.table()?);
            let config = aws_config().await?;
            let sent = enqueue(
                &store(&config, table),
                &aws_sdk_sqs::Client::new(&config),
                &queue_url,
                batch_id,
                job_id.clone(),
            )
            .await?;
            Ok(render(&sent, output))
        }
        Command::Retry { batch_id } => {
            let (queue_url, table) = (cli.jobs_queue()?, cli.table()?);
            let config = aws_config().await?;
            let sent = retry(
                &store(&config, table),
                &aws_sdk_sqs::Client::new(&config),
                &queue_url,
                batch_id,
                payouts_core::clock::now_ms(),
            )
            .await?;
            Ok(render(&sent, output))
        }
        Command::Status { batch_id, items } => {
            let table = cli.table()?;
            let config = aws_config().await?;
            let store = store(&config, table);
            if *items {
                let report = status_with_items(&store, batch_id, None, &mut *progress()).await?;
                return Ok(render(&report, output));
            }
            let status = batch_status(&store, batch_id, None, &mut *progress()).await?;
            Ok(render(&status, output))
        }
        Command::Items { batch_id, status } => {
            let table = cli.table()?;
            let config = aws_config().await?;
            let items = list_items(
                &store(&config, table),
                batch_id,
                *status,
                None,
                &mut *progress(),
            )
            .await?;
            Ok(render(&items, output))
        }
        Command::Item { batch_id, item_id } => {
            let table = cli.table()?;
            let config = aws_config().await?;
            let item = show_item(&store(&config, table), batch_id, item_id).await?;
            Ok(render(&item, output))
        }
        Command::Dlq(DlqCommand::Peek { max }) => {
            let dlq_url = cli.dlq()?;
            let config = aws_config().await?;
            let peek =
                peek_dlq(&aws_sdk_sqs::Client::new(&config), &dlq_url, *max as usize).await?;
            Ok(render(&peek, output))
        }
        Command::Redrive { max, no_wait, rate } => {
            let (queue_url, dlq_url) = (cli.jobs_queue()?, cli.dlq()?);
            let config = aws_config().await?;
            let options = RedriveOptions {
                max: max.map(|n| n as usize),
                wait: !no_wait,
                rate: *rate,
                ..RedriveOptions::default()
            };
            let report = redrive(
                &aws_sdk_sqs::Client::new(&config),
                &dlq_url,
                &queue_url,
                options,
                &mut *progress(),
            )
            .await?;
            Ok(render(&report, output))
        }
        Command::Pause {
            status, no_wait, ..
        } => {
            let (queue_url, function) = (cli.jobs_queue()?, cli.execute_function());
            let config = aws_config().await?;
            let (sqs, lambda) = (
                aws_sdk_sqs::Client::new(&config),
                aws_sdk_lambda::Client::new(&config),
            );
            let report = if *status {
                execution_status(&sqs, &lambda, &queue_url, function.as_deref()).await?
            } else {
                let options = SwitchOptions {
                    wait: !no_wait,
                    ..SwitchOptions::default()
                };
                pause(
                    &sqs,
                    &lambda,
                    &queue_url,
                    function.as_deref(),
                    options,
                    &mut *progress(),
                )
                .await?
            };
            Ok(render(&report, output))
        }
        Command::Resume { no_wait, .. } => {
            let (queue_url, function) = (cli.jobs_queue()?, cli.execute_function());
            let config = aws_config().await?;
            let options = SwitchOptions {
                wait: !no_wait,
                ..SwitchOptions::default()
            };
            let report = resume(
                &aws_sdk_sqs::Client::new(&config),
                &aws_sdk_lambda::Client::new(&config),
                &queue_url,
                function.as_deref(),
                options,
                &mut *progress(),
            )
            .await?;
            Ok(render(&report, output))
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    // clap prints help and version to stdout (exit 0) and usage errors to stderr (exit 2).
    let cli = Cli::try_parse().unwrap_or_else(|err| err.exit());
    match run(cli).await {
        Ok(report) => {
            let mut stdout = std::io::stdout().lock();
            if stdout
                .write_all(report.as_bytes())
                .and_then(|()| stdout.flush())
                .is_err()
            {
                // A closed pipe (`| head`): nothing left to tell anyone.
                return ExitCode::from(payouts_ops::EXIT_RUNTIME);
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("payouts-ops: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}
