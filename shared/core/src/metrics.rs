//! The service's metrics, as CloudWatch Embedded Metric Format (EMF) lines: one JSON object per
//! line on stdout, which CloudWatch Logs turns into metrics. No request and no client, so
//! emitting costs no start-up time and cannot fail a run. Every function builds its lines here
//! and hands them to a [`MetricsSink`] (stdout in Lambda, a recorder in tests).

use serde_json::{Map, Value, json};

/// The CloudWatch namespace of every metric the service emits.
pub const NAMESPACE: &str = "Payouts";

/// The most values one metric may carry in one EMF line (CloudWatch's limit).
pub const MAX_VALUES_PER_LINE: usize = 100;

/// A metric's unit, as EMF names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// One EMF line: its dimension values, the dimension sets CloudWatch files the metrics under,
/// and the metrics. Dimension values are kept few (function, provider, a reason), so the
/// metric count stays small.
#[derive(Debug, Clone)]
pub struct MetricsLine {
    timestamp_ms: u64,
    dimensions: Vec<(&'static str, String)>,
    dimension_sets: Vec<Vec<&'static str>>,
    metrics: Vec<(&'static str, Unit, Value)>,
}

impl MetricsLine {
    /// A line for `function` (dimension `Function`), filed under that dimension alone.
    pub fn new(function: &str, timestamp_ms: u64) -> Self {
        MetricsLine {
            timestamp_ms,
            dimensions: vec![("Function", function.to_owned())],
            dimension_sets: vec![vec!["Function"]],
            metrics: Vec::new(),
        }
    }

    /// Adds dimension `name` = `value`; the metrics are then also filed under `Function` and
    /// `name` together (alarms watch the `Function`-only set, dashboards split by `name`).
    pub fn by(mut self, name: &'static str, value: &str) -> Self {
        self.dimensions.push((name, value.to_owned()));
        let mut set = vec!["Function"];
        set.push(name);
        self.dimension_sets.push(set);
        self
    }

    /// A count.
    pub fn count(mut self, name: &'static str, value: u64) -> Self {
        self.metrics.push((name, Unit::Count, json!(value)));
        self
    }

    /// Several samples of one metric (latencies), at most [`MAX_VALUES_PER_LINE`]: CloudWatch
    /// computes percentiles over them.
    pub fn samples(mut self, name: &'static str, unit: Unit, values: &[f64]) -> Self {
        let values = &values[..values.len().min(MAX_VALUES_PER_LINE)];
        self.metrics.push((name, unit, json!(values)));
        self
    }

    /// Whether the line carries any metric.
    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty()
    }

    /// The EMF document.
    pub fn to_json(&self) -> Value {
        let definitions: Vec<Value> = self
            .metrics
            .iter()
            .map(|(name, unit, _)| json!({"Name": name, "Unit": unit.as_str()}))
            .collect();
        let mut line = Map::new();
        line.insert(
            "_aws".into(),
            json!({
                "Timestamp": self.timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": self.dimension_sets,
                    "Metrics": definitions,
                }],
            }),
        );
        for (name, value) in &self.dimensions {
            line.insert((*name).to_owned(), json!(value));
        }
        for (name, _, value) in &self.metrics {
            line.insert((*name).to_owned(), value.clone());
        }
        Value::Object(line)
    }
}

/// The PSP-health metrics every function that calls a PSP emits.
pub const PSP_METRICS: &[&str] = &[
    "PspCalls",
    "PspRateLimited",
    "PspServerErrors",
    "PspNoAnswer",
    "PspLatency",
];

/// Lines for the PSP calls of `function` since the last take, one set per provider that was
/// called: counts, and latencies in lines of at most [`MAX_VALUES_PER_LINE`] samples.
pub fn psp_call_lines(
    function: &str,
    timestamp_ms: u64,
    stats: &[(String, crate::ports::payment::PspCallStats)],
) -> Vec<MetricsLine> {
    let mut lines = Vec::new();
    for (provider, stats) in stats {
        if stats.answered + stats.no_answer == 0 {
            continue;
        }
        let mut chunks = stats.latencies_ms.chunks(MAX_VALUES_PER_LINE);
        let mut counts = MetricsLine::new(function, timestamp_ms)
            .by("Provider", provider)
            .count("PspCalls", stats.answered + stats.no_answer)
            .count("PspRateLimited", stats.rate_limited)
            .count("PspServerErrors", stats.server_errors)
            .count("PspNoAnswer", stats.no_answer);
        if let Some(first) = chunks.next() {
            counts = counts.samples("PspLatency", Unit::Milliseconds, first);
        }
        lines.push(counts);
        for chunk in chunks {
            lines.push(
                MetricsLine::new(function, timestamp_ms)
                    .by("Provider", provider)
                    .samples("PspLatency", Unit::Milliseconds, chunk),
            );
        }
    }
    lines
}

/// Where metric lines go.
pub trait MetricsSink: Send + Sync {
    fn emit(&self, line: &MetricsLine);
}

/// Prints each line to stdout, where the Lambda runtime hands it to CloudWatch Logs.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdoutMetrics;

impl MetricsSink for StdoutMetrics {
    fn emit(&self, line: &MetricsLine) {
        if !line.is_empty() {
            println!("{}", line.to_json());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_files_its_metrics_under_each_dimension_set() {
        let line = MetricsLine::new("payout-execute", 7)
            .by("Provider", "stripe")
            .count("ItemsSubmitted", 3)
            .samples("PspLatency", Unit::Milliseconds, &[12.0, 30.5])
            .to_json();
        assert_eq!(line["_aws"]["Timestamp"], 7);
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Payouts");
        assert_eq!(
            directive["Dimensions"],
            json!([["Function"], ["Function", "Provider"]])
        );
        assert_eq!(
            directive["Metrics"],
            json!([{"Name": "ItemsSubmitted", "Unit": "Count"}, {"Name": "PspLatency", "Unit": "Milliseconds"}])
        );
        assert_eq!(line["Function"], "payout-execute");
        assert_eq!(line["Provider"], "stripe");
        assert_eq!(line["ItemsSubmitted"], 3);
        assert_eq!(line["PspLatency"], json!([12.0, 30.5]));
    }

    #[test]
    fn samples_are_capped_at_the_emf_limit() {
        let many = vec![1.0; 250];
        let line = MetricsLine::new("f", 0)
            .samples("PspLatency", Unit::Milliseconds, &many)
            .to_json();
        assert_eq!(line["PspLatency"].as_array().unwrap().len(), 100);
    }
}
