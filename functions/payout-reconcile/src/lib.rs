//! The `payout-reconcile` handler: one sweep per scheduled invocation
//! (`docs/design.md#reconciler`), its summary logged by the sweep and emitted as CloudWatch
//! metrics in the Embedded Metric Format (one JSON line on stdout: no request, no start-up cost).

use payouts_core::job::PayoutJob;
use payouts_core::ports::queue::{JobQueue, QueueError};
use payouts_core::ports::repository::StoreError;
use payouts_core::reconciler::{Reconciler, SweepSummary};
use serde_json::{Value, json};

/// The CloudWatch namespace of the service's metrics.
pub const METRICS_NAMESPACE: &str = "Payouts";

/// The metrics one sweep emits, by name: what the alarms in `template.yaml` watch.
pub const SWEEP_METRICS: &[&str] = &[
    "StuckItems",
    "ItemsSettledBySweep",
    "BatchesReenqueued",
    "TransfersNotFound",
    "OrphanTransfers",
    "ReconcilerErrors",
    "OpenBatches",
];

/// Runs one sweep and prints its metrics line. A storage error on the open-batch index fails
/// the invocation (the schedule runs the next one; Lambda's Errors metric shows it).
pub async fn handle_schedule(
    reconciler: &Reconciler,
    now_ms: u64,
) -> Result<SweepSummary, StoreError> {
    let summary = reconciler.sweep().await?;
    println!("{}", metrics_line(&summary, now_ms));
    for line in stuck_lines(&summary, now_ms) {
        println!("{line}");
    }
    Ok(summary)
}

/// `StuckItems` by item status and age band (`Status`, `AgeBand` dimensions besides `Function`):
/// one Embedded Metric Format line per pair with stuck items (EMF gives a line one value per
/// dimension).
pub fn stuck_lines(summary: &SweepSummary, now_ms: u64) -> Vec<Value> {
    summary
        .stuck
        .iter()
        .map(|((status, band), count)| {
            json!({
                "_aws": {
                    "Timestamp": now_ms,
                    "CloudWatchMetrics": [{
                        "Namespace": METRICS_NAMESPACE,
                        "Dimensions": [["Function", "Status", "AgeBand"]],
                        "Metrics": [{"Name": "StuckItems", "Unit": "Count"}],
                    }],
                },
                "Function": "payout-reconcile",
                "Status": status.as_str(),
                "AgeBand": band.as_str(),
                "StuckItems": count,
            })
        })
        .collect()
}

/// The sweep's summary as one Embedded Metric Format line (dimension: the function).
pub fn metrics_line(summary: &SweepSummary, now_ms: u64) -> Value {
    let metrics: Vec<Value> = SWEEP_METRICS
        .iter()
        .map(|name| json!({"Name": name, "Unit": "Count"}))
        .collect();
    json!({
        "_aws": {
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{
                "Namespace": METRICS_NAMESPACE,
                "Dimensions": [["Function"]],
                "Metrics": metrics,
            }],
        },
        "Function": "payout-reconcile",
        "StuckItems": summary.stuck_total(),
        "ItemsSettledBySweep": summary.items_settled,
        "BatchesReenqueued": summary.batches_enqueued,
        "TransfersNotFound": summary.transfers_not_found,
        "OrphanTransfers": summary.orphan_transfers,
        "ReconcilerErrors": summary.errors,
        "OpenBatches": summary.open_batches,
    })
}

/// The queue of a deployment without `PAYOUT_JOBS_QUEUE_URL` (a local run): every resume is
/// refused with what to do instead, so the sweep logs it and counts an error.
pub struct NoQueue;

#[async_trait::async_trait]
impl JobQueue for NoQueue {
    async fn enqueue(&self, job: &PayoutJob) -> Result<(), QueueError> {
        Err(QueueError::enqueue(format!(
            "PAYOUT_JOBS_QUEUE_URL is not set: enqueue batch {} with `payouts-ops enqueue`",
            job.payload.batch_id
        )))
    }

    async fn redeliver_after(
        &self,
        _receipt_handle: &str,
        _delay: std::time::Duration,
    ) -> Result<(), QueueError> {
        Err(QueueError::delay("PAYOUT_JOBS_QUEUE_URL is not set"))
    }
}
