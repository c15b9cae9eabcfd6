//! The functions' logs: with Lambda's JSON log format (`AWS_LAMBDA_LOG_FORMAT=JSON`, as the
//! template sets it), one flat JSON object per event. The fields of every span the event is in
//! are at the top level beside the event's own: the runtime's `requestId` and `xrayTraceId`,
//! and the executor's `batch_id`, `item_id` and `attempt`. So CloudWatch Logs Insights can filter
//! `item_id = "…"` directly. Otherwise, the runtime's plain text. The level comes from
//! `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else INFO, as the runtime's default subscriber reads it.

use serde_json::{Map, Value};
use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Installs the process's log subscriber (once, at start-up).
pub fn init_logging() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "INFO".to_owned());
    let filter = EnvFilter::builder()
        .with_default_directive(
            level
                .parse::<tracing::level_filters::LevelFilter>()
                .unwrap_or(tracing::level_filters::LevelFilter::INFO)
                .into(),
        )
        .from_env_lossy();
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    if json {
        builder
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .init();
    } else {
        builder.with_target(false).without_time().init();
    }
}

/// Formats an event as one flat JSON object: `timestamp`, `level`, `target`, the fields of its
/// spans from the outermost in, then its own (an inner value wins over an outer one).
pub struct FlatJson;

impl<S> FormatEvent<S, JsonFields> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            Value::String(payouts_core::clock::rfc3339_from_ms(
                payouts_core::clock::now_ms(),
            )),
        );
        let metadata = event.metadata();
        line.insert("level".into(), Value::String(metadata.level().to_string()));
        line.insert("target".into(), Value::String(metadata.target().to_owned()));
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<JsonFields>>() else {
                    continue;
                };
                if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields.as_str()) {
                    line.extend(fields);
                }
            }
        }
        event.record(&mut Fields(&mut line));
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// Collects an event's fields as JSON values.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().into(), Value::String(value.into()));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    #[test]
    fn an_event_is_one_flat_line_with_its_spans_fields() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buffer.clone())
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let invoke = tracing::info_span!(
                "Lambda runtime invoke",
                requestId = "req-1",
                xrayTraceId = "Root=1-abc"
            );
            let _invoke = invoke.enter();
            let batch = tracing::info_span!("batch", batch_id = "b-1", job_id = "j");
            let _batch = batch.enter();
            let item = tracing::info_span!("item", batch_id = "b-1", item_id = "item-7");
            let _item = item.enter();
            tracing::info!(
                from = "pending",
                to = "submitting",
                attempt = 2_u64,
                "item transition"
            );
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let line: Value = serde_json::from_str(lines[0]).unwrap();
        for (key, value) in [
            ("level", Value::from("INFO")),
            ("message", "item transition".into()),
            ("requestId", "req-1".into()),
            ("xrayTraceId", "Root=1-abc".into()),
            ("batch_id", "b-1".into()),
            ("item_id", "item-7".into()),
            ("attempt", 2.into()),
            ("from", "pending".into()),
        ] {
            assert_eq!(line[key], value, "{key}: {line}");
        }
        assert!(
            line.get("spans").is_none() && line.get("span").is_none(),
            "flat: {line}"
        );
    }
}
