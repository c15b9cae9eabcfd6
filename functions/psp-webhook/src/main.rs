//! The `psp-webhook` Lambda binary (Function URL / HTTP API payload): wires tracing, config and
//! the handler.

use lambda_http::{Body, Error, Request, Response, service_fn};
use psp_webhook::{WebhookApp, handle_webhook};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let app = WebhookApp::from_env().await?;
    let app = &app;
    lambda_http::run(service_fn(move |request: Request| async move {
        let now_secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let answer = handle_webhook(
            app,
            request.method(),
            request.uri().path(),
            request.headers(),
            request.body().as_ref(),
            now_secs,
        )
        .await;
        Response::builder()
            .status(answer.status)
            .header("content-type", "application/json")
            .body(Body::from(answer.body.to_string()))
            .map_err(Error::from)
    }))
    .await
}
