//! An in-process PSP for local runs and tests. It keeps an idempotency store like a real PSP
//! (a repeated key replays the first outcome; the same key with other parameters is refused),
//! records every transfer it made so a test can count payments, and fails on purpose when told.

use crate::secrets::{SecretSource, SecretValues, secret_values, verify_with_rotation};
use crate::stripe::webhook as stripe_scheme;
use payouts_config::{ConfigError, SandboxSettings, Secret};
use payouts_core::money::{MoneyError, PayoutAmount, iso_minor_units};
use payouts_core::ports::payment::{
    ListedTransfer, PaymentAdapter, PaymentError, TransferReceipt, TransferRequest, TransferState,
};
use payouts_core::ports::webhook::{
    ItemReference, VerifiedWebhook, WebhookError, WebhookRequest, WebhookVerifier,
};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

/// The provider name batches use to pay through the sandbox.
pub const SANDBOX_PROVIDER: &str = "sandbox";

/// Destinations starting with this are always rejected, so a local run can show a `failed` item.
pub const REJECTED_ACCOUNT_PREFIX: &str = "acct_sandbox_reject";

/// A failure the sandbox produces on purpose, once per injection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxFault {
    /// Refuses the transfer for good; the refusal is stored under the key, as PSPs do.
    Reject { code: String, message: String },
    /// Fails before doing anything (a 503 or a 429).
    TransientBeforeAccept,
    /// Makes the transfer, then the caller sees a timeout: the outcome is unknown to it.
    TimeoutAfterAccept,
    /// Makes the transfer, then never answers: stands for the caller crashing mid-call.
    HangAfterAccept,
}

/// A transfer the sandbox made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxTransfer {
    pub id: String,
    pub idempotency_key: String,
    pub batch_id: String,
    pub item_id: String,
    pub destination: String,
    pub amount_minor: i64,
    pub currency: String,
}

#[derive(Debug, Clone)]
enum StoredOutcome {
    Transfer(usize),
    Rejected { code: String, message: String },
}

#[derive(Default)]
struct Ledger {
    transfers: Vec<SandboxTransfer>,
    by_key: HashMap<String, (TransferRequest, StoredOutcome)>,
    faults: HashMap<String, VecDeque<SandboxFault>>,
    calls: u64,
}

/// The sandbox PSP. Cheap to share behind an `Arc`; all state is in memory.
pub struct SandboxPsp {
    latency: Duration,
    ledger: Mutex<Ledger>,
    /// Secrets its webhooks are signed with (Stripe's scheme); the first signs.
    webhook_secrets: SecretValues,
}

impl SandboxPsp {
    /// A sandbox that answers each call after `latency`.
    pub fn new(latency: Duration) -> Self {
        SandboxPsp {
            latency,
            ledger: Mutex::new(Ledger::default()),
            webhook_secrets: SecretValues::fixed(Vec::new()),
        }
    }

    /// A sandbox as the settings describe it, its webhook secret read from `source` at run time
    /// when the settings name one.
    pub fn from_settings(
        settings: SandboxSettings,
        source: Option<&SecretSource>,
    ) -> Result<Self, ConfigError> {
        let mut sandbox = SandboxPsp::new(settings.latency);
        sandbox.webhook_secrets = secret_values(
            settings.webhook_secrets,
            settings.webhook_secret_id.as_ref(),
            source,
            "SANDBOX_WEBHOOK_SECRET",
        )?;
        Ok(sandbox)
    }

    /// Sets the webhook secrets (newest first; older ones still verify during a rotation).
    pub fn with_webhook_secrets(mut self, secrets: Vec<Secret>) -> Self {
        self.webhook_secrets = SecretValues::fixed(secrets);
        self
    }

    /// A signed webhook request (body, `Stripe-Signature` value) for a transfer the sandbox made,
    /// as its PSP side would send it at `now_secs`.
    pub fn signed_transfer_event(
        &self,
        event_id: &str,
        event_type: &str,
        transfer: &SandboxTransfer,
        failure_message: Option<&str>,
        now_secs: u64,
    ) -> (String, String) {
        let reference = ItemReference {
            batch_id: transfer.batch_id.clone(),
            item_id: transfer.item_id.clone(),
        };
        let body = stripe_scheme::transfer_event_json(
            event_id,
            event_type,
            &transfer.id,
            &reference,
            failure_message,
        );
        let secret = self
            .webhook_secrets
            .fixed_values()
            .and_then(<[Secret]>::first)
            .map(Secret::expose)
            .unwrap_or_default();
        let header = stripe_scheme::signature_header(secret, now_secs, body.as_bytes());
        (body, header)
    }

    /// Makes the next `times` submissions to `destination` fail with `fault`.
    pub fn inject(&self, destination: &str, fault: SandboxFault, times: usize) {
        let mut ledger = self.ledger.lock().expect("sandbox ledger poisoned");
        let queue = ledger.faults.entry(destination.to_owned()).or_default();
        queue.extend(std::iter::repeat_n(fault, times));
    }

    /// Every transfer made so far, in order.
    pub fn transfers(&self) -> Vec<SandboxTransfer> {
        self.ledger
            .lock()
            .expect("sandbox ledger poisoned")
            .transfers
            .clone()
    }

    /// How many transfers were made for one item, whatever key they were made under.
    pub fn transfers_for_item(&self, batch_id: &str, item_id: &str) -> usize {
        let ledger = self.ledger.lock().expect("sandbox ledger poisoned");
        ledger
            .transfers
            .iter()
            .filter(|t| t.batch_id == batch_id && t.item_id == item_id)
            .count()
    }

    /// How many submissions reached the sandbox, replays and failures included.
    pub fn calls(&self) -> u64 {
        self.ledger.lock().expect("sandbox ledger poisoned").calls
    }

    /// What the sandbox does with one submission: the PSP's side of the exchange.
    fn answer_submission(&self, request: &TransferRequest) -> Decision {
        let mut ledger = self.ledger.lock().expect("sandbox ledger poisoned");
        ledger.calls += 1;
        let fault = ledger
            .faults
            .get_mut(&request.destination)
            .and_then(VecDeque::pop_front);
        if fault == Some(SandboxFault::TransientBeforeAccept) {
            return Decision::Answer(Err(PaymentError::Transient {
                reason: "sandbox: injected transient failure".into(),
                retry_after: None,
            }));
        }
        let key = request.idempotency_key.as_str().to_owned();
        if let Some((first, outcome)) = ledger.by_key.get(&key) {
            if !same_parameters(first, request) {
                return Decision::Answer(Err(PaymentError::KeyConflict {
                    code: "idempotency_error".into(),
                    message: format!("key {key} was first used with other parameters"),
                }));
            }
            let answer = match outcome {
                StoredOutcome::Transfer(index) => Ok(TransferReceipt {
                    provider_payout_id: ledger.transfers[*index].id.clone(),
                    replayed: true,
                }),
                StoredOutcome::Rejected { code, message } => Err(PaymentError::Rejected {
                    code: code.clone(),
                    message: message.clone(),
                }),
            };
            return Decision::Answer(answer);
        }
        let rejection = match &fault {
            Some(SandboxFault::Reject { code, message }) => Some((code.clone(), message.clone())),
            _ if request.destination.starts_with(REJECTED_ACCOUNT_PREFIX) => Some((
                "account_invalid".to_owned(),
                format!(
                    "sandbox: account {} cannot receive transfers",
                    request.destination
                ),
            )),
            _ => None,
        };
        if let Some((code, message)) = rejection {
            let stored = StoredOutcome::Rejected {
                code: code.clone(),
                message: message.clone(),
            };
            ledger.by_key.insert(key, (request.clone(), stored));
            return Decision::Answer(Err(PaymentError::Rejected { code, message }));
        }
        let index = ledger.transfers.len();
        let id = format!("tr_sandbox_{:08}", index + 1);
        ledger.transfers.push(SandboxTransfer {
            id: id.clone(),
            idempotency_key: key.clone(),
            batch_id: request.batch_id.clone(),
            item_id: request.item_id.clone(),
            destination: request.destination.clone(),
            amount_minor: request.amount_minor,
            currency: request.currency.clone(),
        });
        ledger
            .by_key
            .insert(key, (request.clone(), StoredOutcome::Transfer(index)));
        match fault {
            Some(SandboxFault::TimeoutAfterAccept) => {
                Decision::Answer(Err(PaymentError::OutcomeUnknown {
                    reason: "sandbox: injected timeout after the transfer was made".into(),
                }))
            }
            Some(SandboxFault::HangAfterAccept) => Decision::Hang,
            _ => Decision::Answer(Ok(TransferReceipt {
                provider_payout_id: id,
                replayed: false,
            })),
        }
    }
}

/// Whether two requests under one key ask for the same transfer (what a PSP compares; the
/// caller's own `send_by` is not part of the request the PSP sees).
fn same_parameters(first: &TransferRequest, again: &TransferRequest) -> bool {
    (
        &first.batch_id,
        &first.item_id,
        &first.destination,
        first.amount_minor,
        &first.currency,
    ) == (
        &again.batch_id,
        &again.item_id,
        &again.destination,
        again.amount_minor,
        &again.currency,
    )
}

/// The sandbox's side of one submission: an answer, or none ever (a hang).
enum Decision {
    Answer(Result<TransferReceipt, PaymentError>),
    Hang,
}

#[async_trait::async_trait]
impl PaymentAdapter for SandboxPsp {
    fn provider(&self) -> &str {
        SANDBOX_PROVIDER
    }

    async fn submit_transfer(
        &self,
        request: &TransferRequest,
    ) -> Result<TransferReceipt, PaymentError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        match self.answer_submission(request) {
            Decision::Answer(answer) => answer,
            Decision::Hang => std::future::pending().await,
        }
    }

    /// The sandbox reads amounts as ISO 4217 does.
    fn minor_units(&self, amount: &PayoutAmount) -> Result<i64, MoneyError> {
        iso_minor_units(amount)
    }

    /// Searches the ledger by id. The sandbox's transfers are final when made: paid. Ids are
    /// checked as the HTTP adapters check them, so every adapter refuses the same ids.
    async fn transfers_since(&self, _since_ms: u64) -> Result<Vec<ListedTransfer>, PaymentError> {
        // The sandbox keeps no creation time: every transfer it made is listed.
        Ok(self
            .transfers()
            .into_iter()
            .map(|t| ListedTransfer {
                id: t.id,
                item: Some(ItemReference {
                    batch_id: t.batch_id,
                    item_id: t.item_id,
                }),
            })
            .collect())
    }

    async fn transfer_state(&self, transfer_id: &str) -> Result<TransferState, PaymentError> {
        let id = crate::http::transfer_id_segment(SANDBOX_PROVIDER, transfer_id)?;
        Ok(if self.transfers().iter().any(|t| t.id == id) {
            TransferState::Paid
        } else {
            TransferState::NotFound
        })
    }

    /// Searches the ledger by batch and item, whatever key the transfer was made under.
    async fn find_transfer(
        &self,
        request: &TransferRequest,
    ) -> Result<Option<TransferReceipt>, PaymentError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let ledger = self.ledger.lock().expect("sandbox ledger poisoned");
        Ok(ledger
            .transfers
            .iter()
            .find(|t| t.batch_id == request.batch_id && t.item_id == request.item_id)
            .map(|t| TransferReceipt {
                provider_payout_id: t.id.clone(),
                replayed: true,
            }))
    }
}

#[async_trait::async_trait]
impl WebhookVerifier for SandboxPsp {
    async fn verify_webhook(
        &self,
        request: WebhookRequest<'_>,
    ) -> Result<VerifiedWebhook, WebhookError> {
        verify_with_rotation(&self.webhook_secrets, |secrets| {
            stripe_scheme::verify_stripe_scheme(SANDBOX_PROVIDER, secrets, request)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use payouts_core::ports::payment::IdempotencyKey;

    fn request(generation: u32, amount_minor: i64) -> TransferRequest {
        TransferRequest {
            idempotency_key: IdempotencyKey::for_item("b1", "i1", generation),
            batch_id: "b1".into(),
            item_id: "i1".into(),
            destination: "acct_1".into(),
            amount_minor,
            currency: "USD".into(),
            send_by: None,
        }
    }

    #[tokio::test]
    async fn replays_by_key_and_refuses_changed_parameters() {
        let psp = SandboxPsp::new(Duration::ZERO);
        let first = psp.submit_transfer(&request(0, 100)).await.unwrap();
        let again = psp.submit_transfer(&request(0, 100)).await.unwrap();
        assert!(!first.replayed && again.replayed);
        assert_eq!(first.provider_payout_id, again.provider_payout_id);
        let changed = psp.submit_transfer(&request(0, 101)).await.unwrap_err();
        assert!(
            matches!(changed, PaymentError::KeyConflict { code, .. } if code == "idempotency_error")
        );
        assert_eq!(psp.transfers_for_item("b1", "i1"), 1);
        psp.submit_transfer(&request(1, 100)).await.unwrap();
        assert_eq!(
            psp.transfers_for_item("b1", "i1"),
            2,
            "a new key generation is a new transfer"
        );
    }

    #[tokio::test]
    async fn finds_an_items_transfer_by_reference() {
        let psp = SandboxPsp::new(Duration::ZERO);
        assert_eq!(psp.find_transfer(&request(0, 100)).await, Ok(None));
        let made = psp.submit_transfer(&request(0, 100)).await.unwrap();
        let found = psp.find_transfer(&request(3, 100)).await.unwrap().unwrap();
        assert_eq!(found.provider_payout_id, made.provider_payout_id);
        assert!(found.replayed);
    }

    #[tokio::test]
    async fn injected_faults_fire_once_each() {
        let psp = SandboxPsp::new(Duration::ZERO);
        psp.inject("acct_1", SandboxFault::TransientBeforeAccept, 1);
        psp.inject("acct_1", SandboxFault::TimeoutAfterAccept, 1);
        assert!(matches!(
            psp.submit_transfer(&request(0, 100)).await,
            Err(PaymentError::Transient { .. })
        ));
        assert_eq!(psp.transfers().len(), 0);
        assert!(matches!(
            psp.submit_transfer(&request(0, 100)).await,
            Err(PaymentError::OutcomeUnknown { .. })
        ));
        assert_eq!(
            psp.transfers().len(),
            1,
            "the timeout came after the transfer"
        );
        assert!(
            psp.submit_transfer(&request(0, 100))
                .await
                .unwrap()
                .replayed
        );
        assert_eq!(psp.calls(), 3);
    }
}
