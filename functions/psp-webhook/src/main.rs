//! The `psp-webhook` Lambda binary (Function URL / HTTP API payload): wires tracing, the
//! settings, the concrete store and adapters, and the handler. The only place that names
//! concrete types.

use lambda_http::{Body, Error, Request, Response, service_fn};
use payouts_config::{CertFile, Env, WebhookSettings, ensure_usable_cert_file};
use payouts_core::clock::SystemClock;
use payouts_psp::registry::registry_from_settings;
use payouts_secrets_aws::SecretsManagerStore;
use payouts_store_dynamodb::DynamoDbRepository;
use psp_webhook::{WebhookApp, handle_webhook};
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
    let settings = WebhookSettings::from_env(&Env::from_process())?;
    let aws = aws_config::load_from_env().await;
    // Secrets named in the settings are read when first needed, not here: start-up makes no call.
    let secrets = SecretsManagerStore::source_for(&settings.psp, || {
        aws_sdk_secretsmanager::Client::new(&aws)
    });
    let adapters = registry_from_settings(&settings.psp, secrets.as_ref())?;
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
