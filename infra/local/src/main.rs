//! `payouts-local`: the local emulator and its data, for the quick start and for debugging.
//!
//! ```text
//! payouts-local serve [--port N]      run a DynamoDB-compatible server on 127.0.0.1 (default 8000)
//! payouts-local setup [--seed FILE]   create the tables (and load seed data) at the configured endpoint
//! payouts-local show BATCH_ID         print each item of a batch with its status and reason
//! ```
//! `setup` and `show` reach DynamoDB through the standard AWS variables
//! (`AWS_ENDPOINT_URL_DYNAMODB`, `AWS_REGION`, credentials); table names come from
//! `PAYOUTS_TABLE` / `USER_SETTINGS_TABLE`, else the local names of `infra/tables.json`.

use payouts_local::{emulator::LocalDynamoDb, seed, tables};
use payouts_shared::store::PayoutStore;
use std::process::ExitCode;

const USAGE: &str = "usage: payouts-local serve [--port N] | setup [--seed FILE] | show BATCH_ID";

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
        ["show", batch_id] => show(batch_id).await,
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

async fn show(batch_id: &str) -> Result<(), String> {
    let names: Vec<String> = tables::definitions()
        .iter()
        .map(|d| d.name_from_env())
        .collect();
    let store = PayoutStore::new(client().await, &names[0], &names[1]);
    let batch = store
        .get_batch(batch_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("batch {batch_id:?} does not exist"))?;
    println!(
        "batch {} provider={} currency={}",
        batch.batch_id, batch.provider, batch.currency
    );
    let mut start = None;
    loop {
        let page = store
            .query_items_page(batch_id, start, None)
            .await
            .map_err(|e| e.to_string())?;
        for item in page.items {
            match item {
                Ok(item) => println!(
                    "  {:<14} {:<22} {:>10}  {:<12} {}",
                    item.item_id,
                    item.user_id,
                    item.net_amount,
                    item.status,
                    item.provider_payout_id
                        .or(item.failure_reason)
                        .unwrap_or_default()
                ),
                Err(err) => println!("  unreadable item: {err}"),
            }
        }
        match page.next {
            Some(next) => start = Some(next),
            None => return Ok(()),
        }
    }
}
