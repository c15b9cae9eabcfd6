//! Between DynamoDB records and the core's types: decoding batches, items and payout methods
//! (reading items that carry only upstream's attributes), and the SDK error mapping.

use crate::schema::{attr, keys};
use aws_sdk_dynamodb::types::AttributeValue;
use payouts_core::clock::ms_from_rfc3339;
use payouts_core::domain::{AttemptState, ItemStatus, PayoutBatch, PayoutItem, PayoutMethod};
use payouts_core::ports::repository::StoreError;
use std::collections::HashMap;

/// A DynamoDB record as the SDK returns it.
pub type Record = HashMap<String, AttributeValue>;

/// A string attribute value.
pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// A number attribute value.
pub fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn status(status: ItemStatus) -> AttributeValue {
    s(status.as_str())
}

pub(crate) fn get_s<'r>(record: &'r Record, name: &str) -> Option<&'r str> {
    match record.get(name) {
        Some(AttributeValue::S(value)) => Some(value),
        _ => None,
    }
}

pub(crate) fn get_n<T: std::str::FromStr>(record: &Record, name: &str) -> Option<T> {
    match record.get(name) {
        Some(AttributeValue::N(value)) => value.parse().ok(),
        _ => None,
    }
}

/// The status a record holds, when it is one of the design's.
pub(crate) fn status_of(record: &Record) -> Option<ItemStatus> {
    get_s(record, attr::STATUS).and_then(|status| status.parse().ok())
}

/// A failed SDK call as a retryable [`StoreError`], with the service's own message.
pub(crate) fn unavailable<E, R>(
    operation: &'static str,
    err: aws_sdk_dynamodb::error::SdkError<E, R>,
) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let message = match &err {
        aws_sdk_dynamodb::error::SdkError::ServiceError(service) => service.err().to_string(),
        other => format!("{other}"),
    };
    StoreError::Unavailable { operation, message }
}

/// A request that could not even be built (a bug in this crate, not a transient fault).
pub(crate) fn unbuildable(operation: &'static str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable {
        operation,
        message: err.to_string(),
    }
}

pub(crate) fn decode_batch(batch_id: &str, record: &Record) -> Result<PayoutBatch, StoreError> {
    let malformed = |problem: &str| StoreError::Malformed {
        key: keys::batch_pk(batch_id),
        problem: problem.to_owned(),
        in_flight: false,
    };
    Ok(PayoutBatch {
        batch_id: batch_id.to_owned(),
        provider: get_s(record, attr::PROVIDER)
            .ok_or_else(|| malformed("missing string attribute `provider`"))?
            .to_owned(),
        currency: get_s(record, attr::CURRENCY)
            .ok_or_else(|| malformed("missing string attribute `currency`"))?
            .to_owned(),
        status: get_s(record, attr::STATUS).unwrap_or_default().to_owned(),
        started_ms: get_s(record, attr::STARTED_AT).and_then(ms_from_rfc3339),
    })
}

/// Decodes an item record strictly: the item id is the sort key's (every write is keyed by it),
/// an `itemId` attribute that disagrees or a missing `status` makes the record malformed. Reads
/// items that carry only upstream's attributes.
pub fn decode_item(batch_id: &str, record: &Record) -> Result<PayoutItem, StoreError> {
    let sk = get_s(record, attr::SK).unwrap_or_default();
    let in_flight = get_s(record, attr::STATUS) == Some(ItemStatus::Submitting.as_str());
    let malformed = |problem: String| StoreError::Malformed {
        key: format!("{}/{sk}", keys::batch_pk(batch_id)),
        problem,
        in_flight,
    };
    let item_id = keys::item_id_of(sk)
        .ok_or_else(|| malformed("sort key is not ITEM#<itemId>".into()))?
        .to_owned();
    if let Some(attribute) = get_s(record, attr::ITEM_ID).filter(|id| *id != item_id) {
        return Err(malformed(format!(
            "attribute `itemId` {attribute:?} disagrees with the sort key's {item_id:?}"
        )));
    }
    let user_id = get_s(record, attr::USER_ID)
        .ok_or_else(|| malformed("missing string attribute `userId`".into()))?
        .to_owned();
    let net_amount = match record.get(attr::NET_AMOUNT) {
        Some(AttributeValue::N(raw)) | Some(AttributeValue::S(raw)) => raw.clone(),
        _ => return Err(malformed("missing number attribute `netAmount`".into())),
    };
    let status = get_s(record, attr::STATUS)
        .ok_or_else(|| malformed("missing string attribute `status`".into()))?
        .parse::<ItemStatus>()
        .map_err(|e| malformed(e.to_string()))?;
    Ok(PayoutItem {
        batch_id: batch_id.to_owned(),
        item_id,
        user_id,
        net_amount,
        status,
        failure_reason: get_s(record, attr::FAILURE_REASON).map(str::to_owned),
        provider_payout_id: get_s(record, attr::PROVIDER_PAYOUT_ID).map(str::to_owned),
        attempt: AttemptState {
            attempt: get_n(record, attr::ATTEMPT).unwrap_or(0),
            lease_until_ms: get_n(record, attr::LEASE_UNTIL),
            key_generation: get_n(record, attr::KEY_GENERATION).unwrap_or(0),
            key_first_used_ms: get_n(record, attr::KEY_FIRST_USED_AT),
            reconcile_since_ms: get_n(record, attr::RECONCILE_SINCE),
            updated_ms: get_s(record, attr::UPDATED_AT).and_then(ms_from_rfc3339),
        },
        held_transfer_ids: match record.get(attr::HELD_TRANSFER_IDS) {
            Some(AttributeValue::Ss(ids)) => ids.clone(),
            _ => Vec::new(),
        },
        other_known_transfer_ids: [attr::PREVIOUS_PAYOUT_IDS, attr::DUPLICATE_PAYOUT_IDS]
            .iter()
            .filter_map(|name| match record.get(*name) {
                Some(AttributeValue::L(ids)) => Some(ids),
                _ => None,
            })
            .flatten()
            .filter_map(|id| id.as_s().ok().cloned())
            .collect(),
    })
}

pub(crate) fn decode_method(record: &Record) -> Option<PayoutMethod> {
    let AttributeValue::M(method) = record.get(attr::PAYOUT_METHOD)? else {
        return None;
    };
    Some(PayoutMethod {
        provider_account_id: get_s(method, attr::PROVIDER_ACCOUNT_ID).map(str::to_owned),
        is_verified: matches!(
            method.get(attr::IS_VERIFIED),
            Some(AttributeValue::Bool(true))
        ),
        provider: get_s(method, attr::PROVIDER).map(str::to_owned),
        method_type: get_s(method, attr::METHOD_TYPE).map(str::to_owned),
    })
}
