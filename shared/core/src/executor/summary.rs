//! What one run did to a batch: the per-batch summary line, and the caller's basis for
//! deciding whether the batch needs another run.

use serde::Serialize;

/// Counts of what a run did to a batch's items.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchSummary {
    pub batch_id: String,
    /// The batch's provider (empty if the run never read the batch).
    pub provider: String,
    /// Items read.
    pub total: u64,
    /// Items the PSP accepted in this run (now `processing`, or moved on by a webhook).
    pub submitted: u64,
    /// Items left alone: already `processing`/`paid`, or taken by a racing worker.
    pub skipped: u64,
    /// Items without a verified payout method.
    pub pending_kyc: u64,
    /// Items that end this run `failed`: the PSP rejected them for good, or they can never be
    /// paid as they stand (amount, ids), with the reason on the item.
    pub failed: u64,
    /// Items (or reads) that hit a retryable PSP or store error; a later run retries them.
    pub retryable: u64,
    /// Item records that cannot be decoded; logged with their key, nothing written, never paid.
    pub invalid: u64,
    /// Items held by another live attempt; a later run checks them once the lease ends.
    pub in_flight: u64,
    /// Items not started because the deadline was near; the next run continues with them.
    pub deferred: u64,
    /// False when the run stopped reading before the last page (deadline or read error).
    pub read_all_pages: bool,
    /// Transfers the PSP made for items already recorded with another transfer: each one a
    /// double payment, logged at ERROR and kept on the item.
    pub double_payments: u64,
    /// Items not started, or released unpaid, after the PSP refused the platform itself (no
    /// funds, transfers not allowed, a restricted or wrong key): the run stops starting items
    /// and the job is retried until the platform is fixed. No item is failed for it.
    pub halted: u64,
    /// Items this run moved forward (submitted, newly held for KYC, newly failed); re-failing a
    /// `failed` item or re-reading an unchanged one is not progress. A continuation is only
    /// worth sending when this is non-zero.
    pub moved: u64,
    /// The longest wait a PSP asked for (`Retry-After` on a rate limit) among the retryable
    /// items, in milliseconds: the job is not redelivered sooner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// Where a continuation resumes: after this item (empty: from the start). Set when the run
    /// stopped before every item was started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume_after: Option<String>,
}

/// What became of one item in one run: the unit the summary counts.
/// Whether an item's status changed in this run: progress is counted on moves only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Movement {
    Moved,
    Unchanged,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ItemOutcome {
    Submitted,
    Skipped,
    PendingKyc(Movement),
    Failed(Movement),
    Retryable,
    /// Retryable, and the PSP said when: not before this wait.
    RetryAfter(std::time::Duration),
    Invalid,
    InFlight,
    Deferred,
    /// Paid by the PSP although the item already recorded another transfer.
    DoublePayment,
    Halted,
}

impl BatchSummary {
    /// Whether anything in the batch is left for another run to do.
    pub fn needs_another_run(&self) -> bool {
        self.retryable > 0
            || self.in_flight > 0
            || self.deferred > 0
            || self.halted > 0
            || !self.read_all_pages
    }

    /// Whether only the time budget, not an error or another worker, kept the run from finishing:
    /// the batch can be continued at once.
    pub fn stopped_for_time(&self) -> bool {
        self.retryable == 0
            && self.in_flight == 0
            && self.halted == 0
            && (self.deferred > 0 || !self.read_all_pages)
    }

    /// Adds `other`'s item counts to these (the reader's and the workers' halves of one run).
    pub(crate) fn absorb(&mut self, other: BatchSummary) {
        self.total += other.total;
        self.submitted += other.submitted;
        self.skipped += other.skipped;
        self.pending_kyc += other.pending_kyc;
        self.failed += other.failed;
        self.retryable += other.retryable;
        self.invalid += other.invalid;
        self.in_flight += other.in_flight;
        self.deferred += other.deferred;
        self.double_payments += other.double_payments;
        self.halted += other.halted;
        self.moved += other.moved;
        self.retry_after_ms = self.retry_after_ms.max(other.retry_after_ms);
    }

    pub(crate) fn count(&mut self, outcome: ItemOutcome) {
        if matches!(
            outcome,
            ItemOutcome::Submitted
                | ItemOutcome::DoublePayment
                | ItemOutcome::PendingKyc(Movement::Moved)
                | ItemOutcome::Failed(Movement::Moved)
        ) {
            self.moved += 1;
        }
        let counter = match outcome {
            ItemOutcome::Submitted => &mut self.submitted,
            ItemOutcome::Skipped => &mut self.skipped,
            ItemOutcome::PendingKyc(_) => &mut self.pending_kyc,
            ItemOutcome::Failed(_) => &mut self.failed,
            ItemOutcome::Retryable => &mut self.retryable,
            ItemOutcome::RetryAfter(wait) => {
                let wait_ms = wait.as_millis().min(u128::from(u64::MAX)) as u64;
                self.retry_after_ms = self.retry_after_ms.max(Some(wait_ms));
                &mut self.retryable
            }
            ItemOutcome::Invalid => &mut self.invalid,
            ItemOutcome::InFlight => &mut self.in_flight,
            ItemOutcome::Deferred => &mut self.deferred,
            ItemOutcome::DoublePayment => {
                self.submitted += 1;
                &mut self.double_payments
            }
            ItemOutcome::Halted => &mut self.halted,
        };
        *counter += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_run_is_needed_for_anything_left_and_time_alone_allows_a_continuation() {
        let done = BatchSummary {
            read_all_pages: true,
            submitted: 3,
            ..BatchSummary::default()
        };
        assert!(!done.needs_another_run());
        let deferred = BatchSummary {
            deferred: 1,
            ..done.clone()
        };
        assert!(deferred.needs_another_run() && deferred.stopped_for_time());
        let unread = BatchSummary {
            read_all_pages: false,
            ..done.clone()
        };
        assert!(unread.needs_another_run() && unread.stopped_for_time());
        let retry = BatchSummary {
            retryable: 1,
            deferred: 1,
            ..done.clone()
        };
        assert!(retry.needs_another_run() && !retry.stopped_for_time());
        let held = BatchSummary {
            in_flight: 1,
            ..done.clone()
        };
        assert!(held.needs_another_run() && !held.stopped_for_time());
        let halted = BatchSummary {
            halted: 1,
            deferred: 2,
            ..done
        };
        assert!(halted.needs_another_run() && !halted.stopped_for_time());
    }
}
