//! The `payout-reconcile` Lambda binary: wires tracing, the settings, the concrete store,
//! adapters and queue, and the handler. The only place that names concrete types.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use payout_reconcile::{NoQueue, handle_schedule};
use payouts_config::{Env, ReconcileSettings};
use payouts_core::clock::{Clock, SystemClock};
use payouts_core::ports::queue::JobQueue;
use payouts_core::reconciler::Reconciler;
use payouts_queue_sqs::SqsJobQueue;
use payouts_secrets_aws::SecretsManagerStore;
use payouts_store_dynamodb::DynamoDbRepository;
use std::sync::Arc;

fn main() -> Result<(), Error> {
    payouts_config::start(run)
}

async fn run() -> Result<(), Error> {
    let settings = ReconcileSettings::from_env(&Env::from_process())?;
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
    let queue: Arc<dyn JobQueue> = match settings.jobs_queue_url.clone() {
        Some(url) => Arc::new(SqsJobQueue::new(aws_sdk_sqs::Client::new(&aws), url)),
        None => Arc::new(NoQueue),
    };
    let reconciler = Reconciler::new(
        Arc::new(store),
        adapters,
        queue,
        Arc::new(SystemClock),
        settings.reconciler,
    );
    let reconciler = &reconciler;
    lambda_runtime::run(service_fn(
        move |_scheduled: LambdaEvent<serde_json::Value>| async move {
            handle_schedule(reconciler, SystemClock.now_ms())
                .await
                .map(|summary| serde_json::json!({ "openBatches": summary.open_batches }))
                .map_err(Error::from)
        },
    ))
    .await
}
