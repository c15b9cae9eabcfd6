//! The `payout-execute` Lambda binary: wires tracing, the settings, the concrete store,
//! adapters and queue, and the handler. The only place that names concrete types.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use payout_execute::{App, deadline_from_epoch_ms, handle_sqs_event};
use payouts_config::{CertFile, Env, ExecuteSettings, ensure_usable_cert_file};
use payouts_core::clock::SystemClock;
use payouts_core::executor::Executor;
use payouts_core::ports::queue::JobQueue;
use payouts_psp::registry::registry_from_settings;
use payouts_queue_sqs::SqsJobQueue;
use payouts_secrets_aws::SecretsManagerStore;
use payouts_store_dynamodb::DynamoDbRepository;
use std::sync::Arc;

fn main() -> Result<(), Error> {
    // Before any thread starts: it may remove SSL_CERT_FILE from the environment.
    let cert_file = ensure_usable_cert_file();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cert_file))
}

async fn run(cert_file: CertFile) -> Result<(), Error> {
    payouts_config::init_logging();
    cert_file.log();
    let settings = ExecuteSettings::from_env(&Env::from_process())?;
    let aws = aws_config::load_from_env().await;
    // Secrets named in the settings are read when first needed, not here: start-up makes no call.
    let secrets = SecretsManagerStore::source_for(&settings.psp, || {
        aws_sdk_secretsmanager::Client::new(&aws)
    });
    let adapters = registry_from_settings(&settings.psp, secrets.as_ref())?;
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
