//! The `payout.execute` job message (`docs/design.md#job-messages-and-their-fate`), and why a body is refused.

use serde::{Deserialize, Serialize};

/// The one job type this service executes.
pub const PAYOUT_EXECUTE: &str = "payout.execute";

/// A parsed `payout.execute` job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutJob {
    #[serde(rename = "type")]
    pub job_type: String,
    pub payload: PayoutJobPayload,
    #[serde(rename = "jobId", default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
}

/// The job's payload: which batch to pay, which of its items (a segment of a fanned-out batch),
/// and for a continuation where to resume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutJobPayload {
    #[serde(rename = "batchId")]
    pub batch_id: String,
    /// Set on a segment's jobs: the items this job pays. Without it the job covers the whole
    /// batch, and its first run may fan the batch out into segments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<ItemRange>,
    /// Set on continuations only: the run resumes after this item (in item order), and leaves
    /// `failed` items, which the job's first run already tried.
    #[serde(
        rename = "resumeAfter",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub resume_after: Option<String>,
}

/// A contiguous range of a batch's item ids, in the store's order: one segment of a batch that
/// is paid by several invocations at once (`docs/design.md#fan-out-and-the-rate-budget`). The
/// segments of one plan partition the whole key space, so every item, even one written after
/// planning, belongs to exactly one segment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemRange {
    /// The range starts after this item id (empty: at the batch's first item).
    #[serde(default)]
    pub after: String,
    /// The range's last item id, inclusive; `None`: through the batch's last item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub through: Option<String>,
}

impl ItemRange {
    /// Consecutive ranges split at `boundaries` (each the last item id of its range, ascending):
    /// `n` boundaries give `n + 1` ranges that cover every item id once.
    pub fn split_at(boundaries: &[String]) -> Vec<ItemRange> {
        let mut ranges = Vec::with_capacity(boundaries.len() + 1);
        let mut after = String::new();
        for boundary in boundaries {
            ranges.push(ItemRange {
                after: std::mem::replace(&mut after, boundary.clone()),
                through: Some(boundary.clone()),
            });
        }
        ranges.push(ItemRange {
            after,
            through: None,
        });
        ranges
    }

    /// Whether `item_id` falls in this range.
    pub fn contains(&self, item_id: &str) -> bool {
        (self.after.is_empty() || item_id > self.after.as_str())
            && self.through.as_deref().is_none_or(|last| item_id <= last)
    }
}

/// Why a message body is a poison message: retrying it can never succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error("message has no body")]
    MissingBody,
    #[error(
        "body is not a payout job ({0}); expected {{\"type\":\"payout.execute\",\"payload\":{{\"batchId\":\"…\"}}}}"
    )]
    Malformed(String),
    #[error("unknown job type {0:?}; this function only executes \"payout.execute\"")]
    UnknownType(String),
    #[error("batchId is empty or not a plain identifier: {0:?}")]
    BadBatchId(String),
    #[error("resumeAfter is empty or not an item id: {0:?}")]
    BadResumeAfter(String),
    #[error("segment is not an item range (ids, `after` below `through`): {0:?}")]
    BadSegment(ItemRange),
}

impl JobError {
    /// A short, stable name of the reason (a metric dimension, a log field).
    pub fn code(&self) -> &'static str {
        match self {
            JobError::MissingBody => "missing_body",
            JobError::Malformed(_) => "malformed",
            JobError::UnknownType(_) => "unknown_type",
            JobError::BadBatchId(_) => "bad_batch_id",
            JobError::BadResumeAfter(_) => "bad_resume_after",
            JobError::BadSegment(_) => "bad_segment",
        }
    }
}

impl PayoutJob {
    /// A job for the whole of `batch_id`, as upstream and the operator CLI enqueue it.
    pub fn for_batch(batch_id: &str, job_id: Option<String>) -> Self {
        PayoutJob {
            job_type: PAYOUT_EXECUTE.to_owned(),
            payload: PayoutJobPayload {
                batch_id: batch_id.to_owned(),
                segment: None,
                resume_after: None,
            },
            job_id,
        }
    }

    /// The job for one segment of `job`'s batch, as a fan-out sends it.
    pub fn segment(job: &PayoutJob, segment: ItemRange) -> Self {
        let mut next = PayoutJob::for_batch(&job.payload.batch_id, job.job_id.clone());
        next.payload.segment = Some(segment);
        next
    }

    /// The continuation of `job` (in its segment, if it has one), resuming after
    /// `resume_after` (`None`: from the start).
    pub fn continuation(job: &PayoutJob, resume_after: Option<String>) -> Self {
        let mut next = PayoutJob::for_batch(&job.payload.batch_id, job.job_id.clone());
        next.payload.segment = job.payload.segment.clone();
        // A continuation always carries a cursor, so it is told apart from a fresh job.
        next.payload.resume_after = Some(resume_after.unwrap_or_default());
        next
    }

    /// Parses and validates an SQS body. The type is checked before the payload's shape, so
    /// a job meant for another consumer is reported as such.
    pub fn parse(body: Option<&str>) -> Result<Self, JobError> {
        let body = body.ok_or(JobError::MissingBody)?;
        let value: serde_json::Value =
            serde_json::from_str(body).map_err(|e| JobError::Malformed(e.to_string()))?;
        match value.get("type").and_then(|t| t.as_str()) {
            Some(PAYOUT_EXECUTE) => {}
            Some(other) => return Err(JobError::UnknownType(other.to_owned())),
            None => return Err(JobError::Malformed("missing string field `type`".into())),
        }
        let job: PayoutJob =
            serde_json::from_value(value).map_err(|e| JobError::Malformed(e.to_string()))?;
        let id = &job.payload.batch_id;
        let plain = |c: char| c.is_ascii_alphanumeric() || "-_.:".contains(c);
        if id.is_empty() || id.len() > 200 || !id.chars().all(plain) {
            return Err(JobError::BadBatchId(id.clone()));
        }
        if let Some(after) = &job.payload.resume_after
            && (after.len() > crate::domain::MAX_ITEM_ID_LEN
                || !after.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(JobError::BadResumeAfter(after.clone()));
        }
        if let Some(segment) = &job.payload.segment {
            let plain_id = |id: &str| {
                id.len() <= crate::domain::MAX_ITEM_ID_LEN
                    && id.bytes().all(|b| b.is_ascii_graphic())
            };
            let valid = plain_id(&segment.after)
                && segment.through.as_deref().is_none_or(|last| {
                    !last.is_empty() && plain_id(last) && last > segment.after.as_str()
                });
            if !valid {
                return Err(JobError::BadSegment(segment.clone()));
            }
        }
        Ok(job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_contract_shape() {
        let job = PayoutJob::parse(Some(
            r#"{"type":"payout.execute","payload":{"batchId":"b-2026-11-0001"},"jobId":"j1"}"#,
        ))
        .unwrap();
        assert_eq!(job.payload.batch_id, "b-2026-11-0001");
        assert_eq!(job.job_id.as_deref(), Some("j1"));
        let round_trip = serde_json::to_string(&PayoutJob::for_batch("b1", None)).unwrap();
        assert_eq!(
            PayoutJob::parse(Some(&round_trip))
                .unwrap()
                .payload
                .batch_id,
            "b1"
        );
    }

    #[test]
    fn refuses_poison_with_a_reason() {
        assert_eq!(PayoutJob::parse(None), Err(JobError::MissingBody));
        assert!(matches!(
            PayoutJob::parse(Some("{not json")),
            Err(JobError::Malformed(_))
        ));
        assert!(matches!(
            PayoutJob::parse(Some(r#"{"type":"payout.refund","payload":{"batchId":"b"}}"#)),
            Err(JobError::UnknownType(t)) if t == "payout.refund"
        ));
        assert!(matches!(
            PayoutJob::parse(Some(r#"{"type":"payout.execute","payload":{}}"#)),
            Err(JobError::Malformed(_))
        ));
        assert!(matches!(
            PayoutJob::parse(Some(
                r#"{"type":"payout.execute","payload":{"batchId":"a b"}}"#
            )),
            Err(JobError::BadBatchId(_))
        ));
        assert!(matches!(
            PayoutJob::parse(Some(
                r#"{"type":"payout.execute","payload":{"batchId":"b","resumeAfter":"a b"}}"#
            )),
            Err(JobError::BadResumeAfter(_))
        ));
        assert!(matches!(
            PayoutJob::parse(Some(
                r#"{"type":"payout.execute","payload":{"batchId":"b","segment":{"after":"k","through":"c"}}}"#
            )),
            Err(JobError::BadSegment(_))
        ));
        let continued = PayoutJob::continuation(&PayoutJob::for_batch("b", None), None);
        let body = serde_json::to_string(&continued).unwrap();
        assert_eq!(
            PayoutJob::parse(Some(&body)).unwrap().payload.resume_after,
            Some(String::new()),
            "a continuation from the start still says it is one: {body}"
        );
    }

    #[test]
    fn segments_split_at_boundaries_cover_every_id_once() {
        let boundaries = ["item-03".to_owned(), "item-06".to_owned()];
        let ranges = ItemRange::split_at(&boundaries);
        assert_eq!(ranges.len(), 3);
        let ids = [
            "item-01", "item-03", "item-04", "item-06", "item-07", "item-99", "z",
        ];
        for id in ids {
            let holders = ranges.iter().filter(|r| r.contains(id)).count();
            assert_eq!(holders, 1, "{id} is in {holders} segments: {ranges:?}");
        }
        assert!(ranges[0].contains("item-03") && ranges[1].contains("item-04"));
        assert_eq!(ItemRange::split_at(&[]), vec![ItemRange::default()]);
        let segment = PayoutJob::segment(&PayoutJob::for_batch("b", None), ranges[1].clone());
        let continued = PayoutJob::continuation(&segment, Some("item-05".into()));
        let body = serde_json::to_string(&continued).unwrap();
        let parsed = PayoutJob::parse(Some(&body)).unwrap();
        assert_eq!(parsed.payload.segment, Some(ranges[1].clone()), "{body}");
        assert_eq!(parsed.payload.resume_after.as_deref(), Some("item-05"));
    }
}
