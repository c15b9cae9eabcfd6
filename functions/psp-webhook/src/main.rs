//! The `psp-webhook` Lambda binary (Function URL / HTTP API payload): wires tracing, the
//! settings, the concrete store and adapters, and the handler. The only place that names
//! concrete types.

use lambda_http::{Body, Error, Request, Response, service_fn};
use payouts_config::{Env, WebhookSettings};
use payouts_core::clock::SystemClock;
use payouts_secrets_aws::SecretsManagerStore;
use payouts_store_dynamodb::DynamoDbRepository;
use psp_webhook::{WebhookApp, handle_webhook};
use std::sync::Arc;

fn main() -> Result<(), Error> {
    payouts_config::start(run)
}

async fn run() -> Result<(), Error> {
    let settings = WebhookSettings::from_env(&Env::from_process())?;
    let aws = aws_config::load_from_env().await;
    // Secrets named in the settings are read when first needed, not here: start-up makes no call.
    let adapters = SecretsManagerStore::psp_adapters(&settings.psp, || {
        aws_sdk_secretsmanager::Client::new(&aws)
    })?;
    tracing::info!(?settings, providers = ?adapters.providers(), "settings read");
    let store = DynamoDbRepository::payouts_only(
        aws_sdk_dynamodb::Client::new(&aws),
        &settings.payouts_table,
    );
    let app = WebhookApp::new(Arc::new(store), adapters, Arc::new(SystemClock));
    let app = &app;
    lambda_http::run(service_fn(move |request: Request| async move {
        let now_secs = app.clock.now_ms() / 1000;
        let answer = handle_webhook(
            app,
            request.method(),
            request.uri().path(),
            request.headers(),
            request.body().as_ref(),
            now_secs,
        )
        .await;
        let (content_type, body) = answer.rendered();
        Response::builder()
            .status(answer.status)
            .header("content-type", content_type)
            .body(Body::from(body))
            .map_err(Error::from)
    }))
    .await
}
