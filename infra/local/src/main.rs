//! `payouts-local`: the local emulator and its data, for the quick start and for debugging.
//!
//! ```text
//! payouts-local serve [--port N]      run a DynamoDB-compatible server on 127.0.0.1 (default 8000)
//! payouts-local setup [--seed FILE]   create the tables (and load seed data) at the configured endpoint
//! ```
//! `setup` reaches DynamoDB through the standard AWS variables
//! (`AWS_ENDPOINT_URL_DYNAMODB`, `AWS_REGION`, credentials); table names come from
//! `PAYOUTS_TABLE` / `USER_SETTINGS_TABLE`, else the local names of `infra/tables.json`.
//! A batch's item statuses: `payouts-ops status --items BATCH_ID` (the operator CLI, `ops/`).

use payouts_local::{emulator::LocalDynamoDb, seed, tables};
use std::process::ExitCode;

const USAGE: &str = "usage: payouts-local serve [--port N] | setup [--seed FILE]";

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
