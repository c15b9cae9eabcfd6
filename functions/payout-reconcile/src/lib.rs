//! The `payout-reconcile` handler: one sweep per scheduled invocation
//! (`docs/design.md#reconciler`), its summary logged by the sweep and emitted as CloudWatch
//! metrics in the Embedded Metric Format (one JSON line on stdout: no request, no start-up cost).

use payouts_core::job::PayoutJob;
use payouts_core::metrics::{MetricsLine, MetricsSink, StdoutMetrics, psp_call_lines};
use payouts_core::ports::queue::{JobQueue, QueueError};
use payouts_core::ports::repository::StoreError;
use payouts_core::reconciler::{Reconciler, SweepSummary};
use serde_json::{Value, json};

/// The CloudWatch namespace of the service's metrics.
pub const METRICS_NAMESPACE: &str = payouts_core::metrics::NAMESPACE;

/// The function's name in its metrics (dimension `Function`).
pub const FUNCTION: &str = "payout-reconcile";

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
    let calls = reconciler.adapters().take_call_stats();
    for line in psp_call_lines(FUNCTION, now_ms, &calls) {
        StdoutMetrics.emit(&line);
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
                "Function": FUNCTION,
                "Status": status.as_str(),
                "AgeBand": band.as_str(),
                "StuckItems": count,
            })
        })
        .collect()
}

/// The sweep's summary as one Embedded Metric Format line (dimension: the function).
pub fn metrics_line(summary: &SweepSummary, now_ms: u64) -> Value {
    MetricsLine::new(FUNCTION, now_ms)
        .count("StuckItems", summary.stuck_total())
        .count("ItemsSettledBySweep", summary.items_settled)
        .count("BatchesReenqueued", summary.batches_enqueued)
        .count("TransfersNotFound", summary.transfers_not_found)
        .count("OrphanTransfers", summary.orphan_transfers)
        .count("ReconcilerErrors", summary.errors)
        .count("OpenBatches", summary.open_batches)
        .to_json()
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
