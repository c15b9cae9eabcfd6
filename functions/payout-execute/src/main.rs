//! The `payout-execute` Lambda binary: wires tracing, the settings, the concrete store,
//! adapters and queue, and the handler. The only place that names concrete types.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use payout_execute::{App, deadline_from_epoch_ms, handle_sqs_event};
use payouts_config::{Env, ExecuteSettings};
use payouts_core::clock::SystemClock;
use payouts_core::executor::Executor;
use payouts_core::ports::queue::JobQueue;
use payouts_queue_sqs::SqsJobQueue;
use payouts_secrets_aws::SecretsManagerStore;
use payouts_store_dynamodb::DynamoDbRepository;
use std::sync::Arc;

fn main() -> Result<(), Error> {
    payouts_config::start(run)
}

async fn run() -> Result<(), Error> {
    let settings = ExecuteSettings::from_env(&Env::from_process())?;
    let aws = aws_config::load_from_env().await;
    // Secrets named in the settings are read when first needed, not here: start-up makes no call.
    let adapters = SecretsManagerStore::psp_adapters(&settings.psp, || {
        aws_sdk_secretsmanager::Client::new(&aws)
    })?;
    tracing::info!(?settings, providers = ?adapters.providers(), "settings read");
    let store = DynamoDbRepository::new(
        aws_sdk_dynamodb::Client::new(&aws),
        &settings.payouts_table,
        &settings.user_settings_table,
    );
    let queue = settings.jobs_queue_url.clone().map(|url| {
        Arc::new(SqsJobQueue::new(aws_sdk_sqs::Client::new(&aws), url)) as Arc<dyn JobQueue>
    });
    let executor = Executor::new(
        Arc::new(store),
        adapters,
        settings.executor.clone(),
        Arc::new(SystemClock),
    );
    let app = App::new(executor, queue).with_fan_out(settings.fan_out);
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = deadline_from_epoch_ms(event.context.deadline);
        Ok::<SqsBatchResponse, Error>(handle_sqs_event(app, event.payload, Some(deadline)).await)
    }))
    .await
}
