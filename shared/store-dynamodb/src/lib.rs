//! The DynamoDB implementation of the core's [`PayoutRepository`]: every transition is one
//! conditional write, which is what makes the executor's protocol safe. [`schema`] names every
//! attribute and key; [`expression`] builds every update and condition.

mod codec;
mod counts;
mod events;
pub mod expression;
mod items;
mod repository;
pub mod schema;

use aws_sdk_dynamodb::Client;

pub use codec::{Record, decode_item, n, s};
pub use counts::conflict_retries;
pub use payouts_core::ports::repository::PayoutRepository;

/// The payouts and user-settings tables. Cheap to clone; build it once per process.
#[derive(Clone, Debug)]
pub struct DynamoDbRepository {
    client: Client,
    payouts_table: String,
    settings_table: String,
}

impl DynamoDbRepository {
    /// The store over `payouts_table` and `settings_table` (the webhook function, which never
    /// reads settings, passes the payouts table's name only: see [`Self::payouts_only`]).
    pub fn new(
        client: Client,
        payouts_table: impl Into<String>,
        settings_table: impl Into<String>,
    ) -> Self {
        DynamoDbRepository {
            client,
            payouts_table: payouts_table.into(),
            settings_table: settings_table.into(),
        }
    }

    /// A store for a function that reads only the payouts table: any settings read fails with
    /// a clear error instead of naming an empty table.
    pub fn payouts_only(client: Client, payouts_table: impl Into<String>) -> Self {
        Self::new(client, payouts_table, "")
    }

    /// The SDK client, for table-level calls (setup, tests).
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn payouts_table(&self) -> &str {
        &self.payouts_table
    }

    pub fn settings_table(&self) -> &str {
        &self.settings_table
    }
}
