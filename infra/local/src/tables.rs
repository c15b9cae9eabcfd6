//! The project's tables, from `infra/tables.json`, and their creation on any DynamoDB endpoint.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use serde::Deserialize;

/// The definition file's text, compiled in so tools work from any directory.
pub const TABLES_JSON: &str = include_str!("../../tables.json");

#[derive(Debug, Deserialize)]
struct TablesFile {
    tables: Vec<TableDefinition>,
}

/// One table, in CloudFormation's property names (as the SAM template declares it).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TableDefinition {
    #[serde(rename = "logicalId")]
    pub logical_id: String,
    /// The environment variable that carries the table's name to the functions.
    #[serde(rename = "envVar")]
    pub env_var: String,
    /// The name used for local runs when the variable is unset.
    #[serde(rename = "localName")]
    pub local_name: String,
    pub attribute_definitions: Vec<AttributeDef>,
    pub key_schema: Vec<KeyDef>,
    pub global_secondary_indexes: Vec<IndexDef>,
    pub time_to_live_attribute: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttributeDef {
    pub attribute_name: String,
    pub attribute_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyDef {
    pub attribute_name: String,
    pub key_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IndexDef {
    pub index_name: String,
    pub key_schema: Vec<KeyDef>,
    pub projection: ProjectionDef,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProjectionDef {
    pub projection_type: String,
}

impl TableDefinition {
    /// The table's name here: its environment variable, else its local name.
    pub fn name_from_env(&self) -> String {
        std::env::var(&self.env_var)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| self.local_name.clone())
    }
}

/// Every table definition. The file is part of the build, so a parse error is a bug.
pub fn definitions() -> Vec<TableDefinition> {
    serde_json::from_str::<TablesFile>(TABLES_JSON)
        .expect("infra/tables.json is valid")
        .tables
}

/// A table could not be created.
#[derive(Debug, thiserror::Error)]
#[error("creating table {table}: {message}")]
pub struct CreateTableError {
    pub table: String,
    pub message: String,
}

/// Creates `definition` as `name` (on-demand billing). An existing table is left as it is.
pub async fn create_table(
    client: &Client,
    definition: &TableDefinition,
    name: &str,
) -> Result<(), CreateTableError> {
    let fail = |message: String| CreateTableError {
        table: name.to_owned(),
        message,
    };
    let key = |k: &KeyDef| {
        KeySchemaElement::builder()
            .attribute_name(&k.attribute_name)
            .key_type(KeyType::from(k.key_type.as_str()))
            .build()
            .map_err(|e| fail(e.to_string()))
    };
    let mut request = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest);
    for a in &definition.attribute_definitions {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(&a.attribute_name)
                .attribute_type(ScalarAttributeType::from(a.attribute_type.as_str()))
                .build()
                .map_err(|e| fail(e.to_string()))?,
        );
    }
    for k in &definition.key_schema {
        request = request.key_schema(key(k)?);
    }
    for index in &definition.global_secondary_indexes {
        let mut gsi = GlobalSecondaryIndex::builder()
            .index_name(&index.index_name)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::from(
                        index.projection.projection_type.as_str(),
                    ))
                    .build(),
            );
        for k in &index.key_schema {
            gsi = gsi.key_schema(key(k)?);
        }
        request = request.global_secondary_indexes(gsi.build().map_err(|e| fail(e.to_string()))?);
    }
    match request.send().await {
        Ok(_) => Ok(()),
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            Ok(())
        }
        Err(err) => Err(fail(match err.as_service_error() {
            Some(service) => service.to_string(),
            None => err.to_string(),
        })),
    }
}

/// Creates every table under the names the environment gives them; returns those names by
/// environment variable.
pub async fn create_all(client: &Client) -> Result<Vec<(String, String)>, CreateTableError> {
    let mut names = Vec::new();
    for definition in definitions() {
        let name = definition.name_from_env();
        create_table(client, &definition, &name).await?;
        names.push((definition.env_var.clone(), name));
    }
    Ok(names)
}
