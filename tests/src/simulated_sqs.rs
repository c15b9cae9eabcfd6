//! A standard SQS queue and Lambda's event source for it, in process: messages become
//! invisible when received and visible again after the visibility timeout (or the delay a
//! `ChangeMessageVisibility` sets), each receive counts, a message received more than
//! `max_receive_count` times moves to the DLQ, and pollers hand one message at a time
//! (`BatchSize: 1`) to the handler, deleting it unless the response reports it failed. It
//! stands in for SQS where there is none (the benchmark); the template's queue is the real one.

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use payout_execute::{App, handle_sqs_event};
use payouts_core::job::PayoutJob;
use payouts_core::ports::queue::{JobQueue, QueueError};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

struct Message {
    id: String,
    body: String,
    visible_at: Instant,
    receive_count: u32,
    receipt_handle: Option<String>,
}

/// The queue. Share it as an `Arc`.
pub struct SimulatedSqs {
    messages: Mutex<Vec<Message>>,
    dead_letters: Mutex<Vec<String>>,
    visibility_timeout: Duration,
    max_receive_count: u32,
    next_id: AtomicU64,
    /// Counters of what happened, for the benchmark's figures.
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub delayed: AtomicU64,
}

impl SimulatedSqs {
    pub fn new(visibility_timeout: Duration, max_receive_count: u32) -> Self {
        SimulatedSqs {
            messages: Mutex::new(Vec::new()),
            dead_letters: Mutex::new(Vec::new()),
            visibility_timeout,
            max_receive_count,
            next_id: AtomicU64::new(1),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            delayed: AtomicU64::new(0),
        }
    }

    /// Sends a raw body.
    pub fn send(&self, body: String) {
        let id = format!("msg-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.messages.lock().unwrap().push(Message {
            id,
            body,
            visible_at: Instant::now(),
            receive_count: 0,
            receipt_handle: None,
        });
    }

    /// Receives the oldest visible message, as `ReceiveMessage` with `MaxNumberOfMessages: 1`;
    /// a message past its receive limit moves to the DLQ instead.
    pub fn receive(&self) -> Option<SqsMessage> {
        let now = Instant::now();
        let mut messages = self.messages.lock().unwrap();
        loop {
            let index = messages.iter().position(|m| m.visible_at <= now)?;
            if messages[index].receive_count >= self.max_receive_count {
                let dead = messages.remove(index);
                self.dead_letters.lock().unwrap().push(dead.body);
                continue;
            }
            // Received messages go to the back, as SQS gives no order but tends to FIFO.
            let mut message = messages.remove(index);
            message.receive_count += 1;
            message.visible_at = now + self.visibility_timeout;
            let handle = format!("{}#{}", message.id, message.receive_count);
            message.receipt_handle = Some(handle.clone());
            let mut received = SqsMessage::default();
            received.message_id = Some(message.id.clone());
            received.receipt_handle = Some(handle);
            received.body = Some(message.body.clone());
            received.attributes.insert(
                "ApproximateReceiveCount".into(),
                message.receive_count.to_string(),
            );
            messages.push(message);
            self.received.fetch_add(1, Ordering::Relaxed);
            return Some(received);
        }
    }

    /// Deletes the message received with `receipt_handle` (a stale handle deletes nothing).
    pub fn delete(&self, receipt_handle: &str) {
        self.messages
            .lock()
            .unwrap()
            .retain(|m| m.receipt_handle.as_deref() != Some(receipt_handle));
    }

    /// Messages in the queue, visible or not.
    pub fn len(&self) -> usize {
        self.messages.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bodies moved to the DLQ.
    pub fn dead_letters(&self) -> Vec<String> {
        self.dead_letters.lock().unwrap().clone()
    }

    /// Runs Lambda's event source for `app` until `stop` is raised: receive one message,
    /// invoke with a deadline `timeout` away, delete it unless reported failed.
    pub async fn poll(&self, app: &App, timeout: Duration, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            let Some(message) = self.receive() else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let id = message.message_id.clone().unwrap_or_default();
            let handle = message.receipt_handle.clone().unwrap_or_default();
            let mut event = SqsEvent::default();
            event.records = vec![message];
            let response = handle_sqs_event(app, event, Some(Instant::now() + timeout)).await;
            if !response
                .batch_item_failures
                .iter()
                .any(|f| f.item_identifier == id)
            {
                self.delete(&handle);
            }
        }
    }
}

#[async_trait::async_trait]
impl JobQueue for SimulatedSqs {
    async fn enqueue(&self, job: &PayoutJob) -> Result<(), QueueError> {
        let body = serde_json::to_string(job).map_err(|e| QueueError::enqueue(e.to_string()))?;
        self.send(body);
        Ok(())
    }

    async fn redeliver_after(
        &self,
        receipt_handle: &str,
        delay: Duration,
    ) -> Result<(), QueueError> {
        let mut messages = self.messages.lock().unwrap();
        let message = messages
            .iter_mut()
            .find(|m| m.receipt_handle.as_deref() == Some(receipt_handle))
            .ok_or_else(|| QueueError::delay("ReceiptHandleIsInvalid"))?;
        message.visible_at = Instant::now() + delay;
        self.delayed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
