//! Loads seed data written in BatchWriteItem's request format (DynamoDB JSON, keyed by the
//! tables' local names), so the same file also works with `aws dynamodb batch-write-item`.

use crate::tables::definitions;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use serde_json::Value;
use std::collections::HashMap;

/// Seed data could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("seed file is not valid: {0}")]
    Invalid(String),
    #[error("writing seed data to {table}: {message}")]
    Write { table: String, message: String },
}

/// Writes every PutRequest of `seed_json` to its table (names resolved from the environment).
/// Returns the number of records written.
pub async fn load(client: &Client, seed_json: &str) -> Result<usize, SeedError> {
    let seed: Value =
        serde_json::from_str(seed_json).map_err(|e| SeedError::Invalid(e.to_string()))?;
    let names: HashMap<String, String> = definitions()
        .into_iter()
        .map(|d| (d.local_name.clone(), d.name_from_env()))
        .collect();
    let mut written = 0;
    for (local_name, requests) in seed.as_object().into_iter().flatten() {
        if local_name.starts_with('_') {
            continue;
        }
        let table = names
            .get(local_name)
            .ok_or_else(|| SeedError::Invalid(format!("unknown table {local_name:?}")))?;
        let requests = requests.as_array().ok_or_else(|| {
            SeedError::Invalid(format!("{local_name}: expected a list of PutRequests"))
        })?;
        let mut writes = Vec::with_capacity(requests.len());
        for request in requests {
            let item = request.pointer("/PutRequest/Item").ok_or_else(|| {
                SeedError::Invalid(format!("{local_name}: entry without PutRequest.Item"))
            })?;
            let AttributeValue::M(item) = attribute_value(&Value::Object(
                [("M".to_owned(), item.clone())].into_iter().collect(),
            ))?
            else {
                unreachable!("an M value decodes to a map");
            };
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(|e| SeedError::Invalid(e.to_string()))?;
            writes.push(WriteRequest::builder().put_request(put).build());
        }
        for chunk in writes.chunks(25) {
            write_chunk(client, table, chunk.to_vec()).await?;
            written += chunk.len();
        }
    }
    Ok(written)
}

/// Writes up to 25 requests, retrying what DynamoDB leaves unprocessed.
pub async fn write_chunk(
    client: &Client,
    table: &str,
    mut writes: Vec<WriteRequest>,
) -> Result<(), SeedError> {
    for round in 0..10u32 {
        let out = client
            .batch_write_item()
            .request_items(table, writes)
            .send()
            .await
            .map_err(|e| SeedError::Write {
                table: table.to_owned(),
                message: e
                    .as_service_error()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| e.to_string()),
            })?;
        writes = out
            .unprocessed_items
            .and_then(|mut left| left.remove(table))
            .unwrap_or_default();
        if writes.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(20 << round.min(5))).await;
    }
    Err(SeedError::Write {
        table: table.to_owned(),
        message: "items still unprocessed after 10 rounds".into(),
    })
}

/// Decodes one DynamoDB-JSON attribute value (`{"S": …}`, `{"N": …}`, `{"M": {…}}`, …).
pub fn attribute_value(value: &Value) -> Result<AttributeValue, SeedError> {
    let invalid = || SeedError::Invalid(format!("not a DynamoDB attribute value: {value}"));
    let object = value
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or_else(invalid)?;
    let (kind, inner) = object.iter().next().ok_or_else(invalid)?;
    Ok(match (kind.as_str(), inner) {
        ("S", Value::String(s)) => AttributeValue::S(s.clone()),
        ("N", Value::String(n)) => AttributeValue::N(n.clone()),
        ("BOOL", Value::Bool(b)) => AttributeValue::Bool(*b),
        ("NULL", Value::Bool(true)) => AttributeValue::Null(true),
        ("M", Value::Object(map)) => AttributeValue::M(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), attribute_value(v)?)))
                .collect::<Result<_, SeedError>>()?,
        ),
        ("L", Value::Array(list)) => {
            AttributeValue::L(list.iter().map(attribute_value).collect::<Result<_, _>>()?)
        }
        _ => return Err(invalid()),
    })
}
