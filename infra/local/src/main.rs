//! `payouts-local`: the local emulator and its data, for the quick start and for debugging.
//!
//! ```text
//! payouts-local serve [--port N]      run a DynamoDB-compatible server on 127.0.0.1 (default 8000)
//! payouts-local setup [--seed FILE]   create the tables (and load seed data) at the configured endpoint
//! payouts-local sign-webhook BATCH_ID ITEM_ID EVENT_TYPE BODY_FILE
//!                                     write the PSP's event for the item's transfer to BODY_FILE
//!                                     and print its signature header's value, signed now as the
//!                                     batch's provider signs: Stripe-Signature with
//!                                     SANDBOX_WEBHOOK_SECRET or STRIPE_WEBHOOK_SECRET; for Adyen
//!                                     HmacSignature with ADYEN_HMAC_KEY (hex) over a
//!                                     `balancePlatform.transfer.updated` body whose status is
//!                                     EVENT_TYPE (`booked`, `refused`, `returned`…) and whose
//!                                     source is ADYEN_BALANCE_ACCOUNT_ID
//! ```
//! `setup` reaches DynamoDB through the standard AWS variables
//! (`AWS_ENDPOINT_URL_DYNAMODB`, `AWS_REGION`, credentials); table names come from
//! `PAYOUTS_TABLE` / `USER_SETTINGS_TABLE`, else the local names of `infra/tables.json`.
//! A batch's item statuses: `payouts-ops status --items BATCH_ID` (the operator CLI, `ops/`).

use payouts_core::domain::{PayoutBatch, PayoutItem};
use payouts_core::money::{Currency, PayoutAmount};
use payouts_core::ports::webhook::ItemReference;
use payouts_local::{emulator::LocalDynamoDb, seed, tables};
use payouts_psp::adyen;
use payouts_psp::stripe::webhook;
use payouts_store_dynamodb::{DynamoDbRepository, PayoutRepository};
use std::process::ExitCode;

const USAGE: &str = "usage: payouts-local serve [--port N] | setup [--seed FILE] \
                     | sign-webhook BATCH_ID ITEM_ID EVENT_TYPE BODY_FILE";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["serve"] => serve(8000).await,
        ["serve", "--port", port] => match port.parse() {
            Ok(port) => serve(port).await,
            Err(_) => Err(format!("--port {port:?} is not a port number")),
        },
        ["setup"] => setup(None).await,
        ["setup", "--seed", file] => setup(Some(file)).await,
        ["sign-webhook", batch_id, item_id, event_type, body_file] => {
            sign_webhook(batch_id, item_id, event_type, body_file).await
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("payouts-local: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(port: u16) -> Result<(), String> {
    let server = LocalDynamoDb::start(port)
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "local DynamoDB listening: AWS_ENDPOINT_URL_DYNAMODB={}",
        server.endpoint_url()
    );
    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    Ok(())
}

async fn client() -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&aws_config::load_from_env().await)
}

async fn setup(seed_file: Option<&str>) -> Result<(), String> {
    let client = client().await;
    for (env_var, name) in tables::create_all(&client)
        .await
        .map_err(|e| e.to_string())?
    {
        println!("table ready: {env_var}={name}");
    }
    if let Some(file) = seed_file {
        let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
        let written = seed::load(&client, &text)
            .await
            .map_err(|e| e.to_string())?;
        println!("seeded {written} records from {file}");
    }
    Ok(())
}

async fn store() -> DynamoDbRepository {
    let names: Vec<String> = tables::definitions()
        .iter()
        .map(|d| d.name_from_env())
        .collect();
    DynamoDbRepository::new(client().await, &names[0], &names[1])
}

async fn sign_webhook(
    batch_id: &str,
    item_id: &str,
    event_type: &str,
    body_file: &str,
) -> Result<(), String> {
    let store = store().await;
    let batch = store
        .get_batch(batch_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("batch {batch_id:?} does not exist"))?;
    // Signed as the batch's PSP signs: the sandbox's or Stripe's webhook secret, Adyen's HMAC key.
    let secret_var = match batch.provider.as_str() {
        "sandbox" => "SANDBOX_WEBHOOK_SECRET",
        "adyen" => "ADYEN_HMAC_KEY",
        _ => "STRIPE_WEBHOOK_SECRET",
    };
    let secret = std::env::var(secret_var)
        .ok()
        .and_then(|v| v.split(',').next().map(str::to_owned))
        .ok_or_else(|| format!("{secret_var} is not set"))?;
    let item = store
        .get_item(batch_id, item_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("item {item_id:?} of batch {batch_id:?} does not exist"))?;
    let transfer_id = item.provider_payout_id.clone().ok_or_else(|| {
        format!(
            "item {item_id:?} has no transfer yet (status {})",
            item.status
        )
    })?;
    if batch.provider == "adyen" {
        return sign_adyen_webhook(
            &store,
            &batch,
            &item,
            &transfer_id,
            event_type,
            &secret,
            body_file,
        )
        .await;
    }
    let reference = ItemReference {
        batch_id: batch_id.to_owned(),
        item_id: item_id.to_owned(),
    };
    let now_secs = payouts_core::clock::now_ms() / 1000;
    let event_id = format!("evt_local_{item_id}_{now_secs}");
    let body = webhook::transfer_event_json(&event_id, event_type, &transfer_id, &reference, None);
    std::fs::write(body_file, &body).map_err(|e| format!("cannot write {body_file}: {e}"))?;
    println!(
        "{}",
        webhook::signature_header(&secret, now_secs, body.as_bytes())
    );
    Ok(())
}

/// Adyen's `balancePlatform.transfer.updated` for the outgoing side of the item's transfer, with
/// `status` (`booked` pays the item), signed with the hex HMAC key (`HmacSignature`).
async fn sign_adyen_webhook(
    store: &DynamoDbRepository,
    batch: &PayoutBatch,
    item: &PayoutItem,
    transfer_id: &str,
    status: &str,
    hmac_key: &str,
    body_file: &str,
) -> Result<(), String> {
    let source = std::env::var("ADYEN_BALANCE_ACCOUNT_ID")
        .map_err(|_| "ADYEN_BALANCE_ACCOUNT_ID is not set".to_owned())?;
    let reference = adyen::transformers::transfer_reference(&batch.batch_id, &item.item_id)
        .ok_or_else(|| format!("item {:?} has no Adyen reference", item.item_id))?;
    let counterparty = store
        .get_payout_methods(std::slice::from_ref(&item.user_id))
        .await
        .map_err(|e| e.to_string())?
        .remove(&item.user_id)
        .and_then(|method| method.provider_account_id)
        .unwrap_or_default();
    let currency = Currency::parse(&batch.currency).map_err(|e| e.to_string())?;
    let amount = PayoutAmount::parse(&item.net_amount, currency).map_err(|e| e.to_string())?;
    let value = adyen::currency::minor_units(&amount).map_err(|e| e.to_string())?;
    let now_ms = payouts_core::clock::now_ms();
    // A sequence number past the creation's, unique per second: each call is a new event.
    let sequence_number = 1 + now_ms / 1000 % 1_000_000;
    let body = adyen::webhook::transfer_event_json(
        "balancePlatform.transfer.updated",
        transfer_id,
        sequence_number,
        status,
        None,
        &reference,
        &source,
        &counterparty,
        (value, currency.code()),
        &payouts_core::clock::rfc3339_from_ms(now_ms),
    );
    std::fs::write(body_file, &body).map_err(|e| format!("cannot write {body_file}: {e}"))?;
    let signature = adyen::webhook::sign(hmac_key, body.as_bytes())
        .ok_or_else(|| "ADYEN_HMAC_KEY is not hex".to_owned())?;
    println!("{signature}");
    Ok(())
}
