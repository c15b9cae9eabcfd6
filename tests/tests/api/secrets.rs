//! PSP secrets read at run time from Secrets Manager (moto's API): a key named in the settings
//! pays without ever being in the environment, a rotated webhook secret is accepted at the first
//! event signed with it (before the cache's TTL ends), and a forged signature is still refused.

use crate::ops_cli::Moto;
use http::{HeaderMap, HeaderValue, Method};
use integration_tests::fakes::stripe::{FAKE_SECRET_KEY, FakeStripe};
use integration_tests::{TestEnv, items, test_config, verified_users};
use payouts_config::{SandboxSettings, StripeSettings};
use payouts_core::registry::PaymentAdapterRegistry;
use payouts_psp::sandbox::SandboxPsp;
use payouts_psp::secrets::SecretSource;
use payouts_psp::stripe::StripeAdapter;
use payouts_psp::stripe::webhook::signature_header;
use payouts_secrets_aws::SecretsManagerStore;
use psp_webhook::{WebhookApp, handle_webhook};
use std::sync::Arc;
use std::time::Duration;

async fn secrets_manager(moto: &Moto) -> aws_sdk_secretsmanager::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&moto.endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await;
    aws_sdk_secretsmanager::Client::new(&config)
}

async fn put(client: &aws_sdk_secretsmanager::Client, name: &str, value: &str, create: bool) {
    if create {
        client
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .unwrap();
    } else {
        client
            .put_secret_value()
            .secret_id(name)
            .secret_string(value)
            .send()
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_stored_key_pays_and_a_rotated_webhook_secret_is_accepted_before_the_ttl_ends() {
    let moto = Moto::start().await;
    let client = secrets_manager(&moto).await;
    put(
        &client,
        "payouts/test/stripe-secret-key",
        FAKE_SECRET_KEY,
        true,
    )
    .await;
    put(&client, "payouts/test/sandbox-webhook", "whsec_one", true).await;
    let source = SecretSource {
        store: Arc::new(SecretsManagerStore::new(client.clone())),
        ttl: Duration::from_secs(300),
    };

    // The Stripe key exists only in Secrets Manager; the adapter reads it at the first call.
    let env = TestEnv::start().await;
    let batch = items(2, "3.00");
    env.seed_batch("b-secret", "stripe", "USD", &batch).await;
    env.seed_users(&verified_users(&batch)).await;
    let fake = FakeStripe::start().await;
    let mut settings: StripeSettings = fake.config();
    settings.secret_key = None;
    settings.secret_key_id = Some("payouts/test/stripe-secret-key".into());
    let adapter = Arc::new(StripeAdapter::with_secrets(settings, Some(&source)).unwrap());
    let summary = env
        .executor_with(adapter, test_config())
        .execute_payout_batch("b-secret", None)
        .await
        .unwrap();
    assert_eq!(summary.submitted, 2, "{summary:?}");
    assert!(fake.requests().iter().all(|r| r.authorized));

    // Webhooks: the sandbox's secret is read from Secrets Manager, cached for 300 s.
    let sandbox = SandboxPsp::from_settings(
        SandboxSettings {
            latency: Duration::ZERO,
            webhook_secrets: Vec::new(),
            webhook_secret_id: Some("payouts/test/sandbox-webhook".into()),
        },
        Some(&source),
    )
    .unwrap();
    let app = WebhookApp::new(
        env.repository(),
        PaymentAdapterRegistry::new().register(Arc::new(sandbox)),
        Arc::new(env.clock.clone()),
    );
    let now = payouts_core::clock::now_ms() / 1000;
    let body = br#"{"id":"evt_rot","type":"transfer.created","data":{"object":{"id":"tr_x","object":"transfer","metadata":{}}}}"#;
    let post = |secret: &'static str| {
        let app = &app;
        async move {
            let mut headers = HeaderMap::new();
            let signature = signature_header(secret, now, body);
            headers.insert(
                "stripe-signature",
                HeaderValue::from_str(&signature).unwrap(),
            );
            handle_webhook(app, &Method::POST, "/webhooks/sandbox", &headers, body, now)
                .await
                .status
        }
    };
    assert!(post("whsec_one").await.is_success());
    // Rotated in Secrets Manager: new first, old kept for the overlap.
    put(
        &client,
        "payouts/test/sandbox-webhook",
        "whsec_two,whsec_one",
        false,
    )
    .await;
    assert!(
        post("whsec_two").await.is_success(),
        "an event signed with the new secret is accepted at once: the verifier re-reads on a mismatch"
    );
    assert!(
        post("whsec_one").await.is_success(),
        "the old one during the overlap"
    );
    assert_eq!(
        post("whsec_forged").await,
        400,
        "a forged signature is still refused"
    );
}
