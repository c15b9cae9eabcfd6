//! [`PayoutRepository`] for DynamoDB: each port method is one of the reads or conditional
//! writes in `items` (the executor's) or `events` (settlement's).

use crate::DynamoDbRepository;
use crate::codec::{get_n, n, s, unavailable};
use crate::schema::{attr, keys};
use payouts_core::domain::{PayoutBatch, PayoutItem, PayoutMethod};
use payouts_core::ports::repository::{
    BatchCompletion, BatchCounts, BatchIdPage, Claim, ClaimOutcome, CurrentKey, EventApplied,
    EventTarget, ItemPage, PageCursor, PayoutRepository, StoreError, TransitionOutcome,
};
use payouts_core::ports::webhook::{ItemReference, PaymentEvent, PaymentEventKind};
use std::collections::HashMap;
use std::time::Duration;

#[async_trait::async_trait]
impl PayoutRepository for DynamoDbRepository {
    async fn get_batch(&self, batch_id: &str) -> Result<Option<PayoutBatch>, StoreError> {
        self.read_batch(batch_id).await
    }

    async fn get_item(
        &self,
        batch_id: &str,
        item_id: &str,
    ) -> Result<Option<PayoutItem>, StoreError> {
        self.read_item(batch_id, item_id).await
    }

    async fn query_items_page(
        &self,
        batch_id: &str,
        start: Option<PageCursor>,
        through: Option<&str>,
        limit: Option<i32>,
    ) -> Result<ItemPage, StoreError> {
        self.read_items_page(batch_id, start, through, limit).await
    }

    async fn sample_item_ids(&self, batch_id: &str, every: u64) -> Result<Vec<String>, StoreError> {
        self.read_item_id_sample(batch_id, every).await
    }

    async fn get_payout_methods(
        &self,
        user_ids: &[String],
    ) -> Result<HashMap<String, PayoutMethod>, StoreError> {
        self.read_payout_methods(user_ids).await
    }

    async fn mark_refused(
        &self,
        item: &PayoutItem,
        reason: &str,
        now_ms: u64,
    ) -> Result<TransitionOutcome, StoreError> {
        self.write_refused(item, reason, now_ms).await
    }

    async fn mark_pending_kyc(
        &self,
        item: &PayoutItem,
        reason: &str,
        now_ms: u64,
    ) -> Result<TransitionOutcome, StoreError> {
        self.write_pending_kyc(item, reason, now_ms).await
    }

    async fn claim(
        &self,
        item: &PayoutItem,
        provider: &str,
        now_ms: u64,
        lease: Duration,
    ) -> Result<ClaimOutcome, StoreError> {
        self.write_claim(item, provider, now_ms, lease).await
    }

    async fn record_duplicate_transfer(
        &self,
        claim: &Claim,
        provider_payout_id: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.write_duplicate_transfer(claim, provider_payout_id, now_ms)
            .await
    }

    async fn record_accepted(
        &self,
        claim: &Claim,
        provider_payout_id: &str,
        now_ms: u64,
    ) -> Result<TransitionOutcome, StoreError> {
        self.write_accepted(claim, provider_payout_id, now_ms).await
    }

    async fn record_rejected(
        &self,
        claim: &Claim,
        reason: &str,
        key: CurrentKey,
        now_ms: u64,
    ) -> Result<TransitionOutcome, StoreError> {
        self.write_rejected(claim, reason, key, now_ms).await
    }

    async fn advance_key_generation(
        &self,
        claim: &mut Claim,
        now_ms: u64,
    ) -> Result<TransitionOutcome, StoreError> {
        self.write_next_key_generation(claim, now_ms).await
    }

    async fn release(
        &self,
        claim: &Claim,
        key: CurrentKey,
        now_ms: u64,
    ) -> Result<TransitionOutcome, StoreError> {
        self.write_release(claim, key, now_ms).await
    }

    async fn find_item_by_provider_payout_id(
        &self,
        provider_payout_id: &str,
    ) -> Result<Option<PayoutItem>, StoreError> {
        self.find_by_provider_payout_id(provider_payout_id).await
    }

    async fn apply_item_event(
        &self,
        provider: &str,
        event: &PaymentEvent,
        kind: &PaymentEventKind,
        target: &EventTarget,
        now_ms: u64,
    ) -> Result<EventApplied, StoreError> {
        self.write_item_event(provider, event, kind, target, now_ms)
            .await
    }

    async fn held_events(
        &self,
        provider: &str,
        transfer_id: &str,
    ) -> Result<Vec<PaymentEvent>, StoreError> {
        self.read_held_events(provider, transfer_id).await
    }

    async fn forget_held_event(
        &self,
        provider: &str,
        transfer_id: &str,
        event_id: &str,
    ) -> Result<(), StoreError> {
        self.delete_held_event(provider, transfer_id, event_id)
            .await
    }

    async fn forget_held_transfer(
        &self,
        batch_id: &str,
        item_id: &str,
        transfer_id: &str,
    ) -> Result<(), StoreError> {
        self.unmark_held_transfer(batch_id, item_id, transfer_id)
            .await
    }

    async fn record_event_once(
        &self,
        provider: &str,
        event: &PaymentEvent,
        item: Option<&ItemReference>,
        outcome: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        self.put_event_once(provider, event, item, outcome, now_ms)
            .await
    }

    async fn start_batch_run(
        &self,
        batch_id: &str,
        retry_settled: bool,
        now_ms: u64,
    ) -> Result<BatchCounts, StoreError> {
        self.write_batch_start(batch_id, retry_settled, now_ms)
            .await
    }

    async fn open_batches(&self, start: Option<String>) -> Result<BatchIdPage, StoreError> {
        let (batch_ids, next) = self.scan_open_batches(start).await?;
        Ok(BatchIdPage { batch_ids, next })
    }

    async fn orphans_checked_until(&self) -> Result<Option<u64>, StoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(self.payouts_table())
            .key(attr::PK, s(keys::RECONCILER_PK))
            .key(attr::SK, s(keys::RECONCILER_SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", e))?;
        Ok(out
            .item
            .as_ref()
            .and_then(|record| get_n(record, attr::ORPHANS_CHECKED_UNTIL)))
    }

    async fn set_orphans_checked_until(&self, until_ms: u64) -> Result<(), StoreError> {
        self.client()
            .update_item()
            .table_name(self.payouts_table())
            .key(attr::PK, s(keys::RECONCILER_PK))
            .key(attr::SK, s(keys::RECONCILER_SK))
            .update_expression("SET #until = :until")
            .expression_attribute_names("#until", attr::ORPHANS_CHECKED_UNTIL)
            .expression_attribute_values(":until", n(until_ms))
            .send()
            .await
            .map_err(|e| unavailable("UpdateItem", e))?;
        Ok(())
    }

    async fn batch_counts(&self, batch_id: &str) -> Result<Option<BatchCounts>, StoreError> {
        Ok(self.read_counts(batch_id).await?.map(|read| read.counts))
    }

    async fn refresh_batch_completion(
        &self,
        batch_id: &str,
        now_ms: u64,
    ) -> Result<Option<BatchCompletion>, StoreError> {
        self.write_batch_completion(batch_id, now_ms).await
    }
}
