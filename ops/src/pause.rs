//! `pause` and `resume`: the emergency stop. Payout runs start only from the jobs queue, through
//! payout-execute's SQS event source mapping; disabling that mapping stops every new run at once
//! (the jobs wait in the queue) and enabling it resumes them. Webhooks are another function and
//! keep settling items meanwhile.
//!
//! The mapping is found from the queue: its ARN (SQS GetQueueAttributes `QueueArn` of the jobs
//! queue's URL), then Lambda ListEventSourceMappings filtered by that ARN, narrowed to one
//! function when `--function` names it ([`select_mapping`]). The change is one
//! UpdateEventSourceMapping (`Enabled`), then GetEventSourceMapping until the state is the one
//! asked for ([`SwitchOptions`]).
//!
//! The template's `PayoutExecutionEnabled` parameter sets the same `Enabled` whenever a deploy
//! updates the mapping, so a pause made here lasts until such a deploy: the reports say so.

use crate::progress::Progress;
use crate::{OpsError, rfc3339};
use aws_sdk_lambda::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::QueueAttributeName;
use serde::Serialize;
use std::fmt;
use std::time::{Duration, Instant};

/// What pausing does to jobs and webhooks (the reports about a pause say it).
pub const WHILE_PAUSED: &str = "while paused no payout run starts: jobs wait in the jobs queue \
(up to its retention) and runs already started finish; webhooks keep settling items";

/// How long a pause or resume made here lasts (every report says it).
pub const DRIFT: &str = "a pause or resume made with payouts-ops lasts until the next deploy: \
the template parameter PayoutExecutionEnabled sets this mapping at deploy";

/// An AWS error in a few words: the service's code and message when it answered, else the
/// whole chain (no connection, timeout, credentials…).
fn describe<E, R>(err: &SdkError<E, R>) -> String
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: fmt::Debug,
{
    match (err, err.code()) {
        (SdkError::ServiceError(_), Some(code)) => match err.message() {
            Some(message) => format!("{code}: {message}"),
            None => code.to_owned(),
        },
        _ => DisplayErrorContext(err).to_string(),
    }
}

/// A Lambda call failed: which one, why, and what to check.
fn lambda_error<E, R>(operation: &str, err: SdkError<E, R>) -> OpsError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: fmt::Debug,
{
    OpsError::Runtime(format!(
        "Lambda {operation} failed: {} (check the AWS credentials and region, and that they allow \
         lambda:{operation}; then run the command again)",
        describe(&err)
    ))
}

// ------------------------------------------------------------------------------- the state

/// Whether payout runs can start, read from the mapping's `State`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Execution {
    /// `Enabled`: the queue's jobs start runs.
    Running,
    /// `Disabled`: no run starts; jobs wait in the queue.
    Paused,
    /// `Disabling`: asked to pause, not yet done (a run may still start).
    Pausing,
    /// `Enabling`: asked to resume, not yet done.
    Resuming,
    /// `Creating`, `Updating`, `Deleting` or a state this CLI does not know: Lambda is
    /// changing the mapping; read it again in a moment.
    Changing,
}

impl Execution {
    /// Interprets an event source mapping's `State` (Lambda's values are `Creating`,
    /// `Enabling`, `Enabled`, `Disabling`, `Disabled`, `Updating` and `Deleting`).
    pub fn from_state(state: &str) -> Execution {
        match state {
            "Enabled" => Execution::Running,
            "Disabled" => Execution::Paused,
            "Disabling" => Execution::Pausing,
            "Enabling" => Execution::Resuming,
            _ => Execution::Changing,
        }
    }

    /// The word the text output uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Execution::Running => "running",
            Execution::Paused => "paused",
            Execution::Pausing => "pausing",
            Execution::Resuming => "resuming",
            Execution::Changing => "changing",
        }
    }
}

impl fmt::Display for Execution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event source mapping, as Lambda reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mapping {
    /// The mapping's id (UpdateEventSourceMapping and the console name it by it).
    pub uuid: String,
    /// The function it invokes; with `AutoPublishAlias` its `live` alias
    /// (`…:function:<stack>-payout-execute:live`).
    pub function_arn: String,
    /// The queue it reads.
    pub event_source_arn: String,
    /// Lambda's `State`: `Enabled`, `Disabled`, `Enabling`, `Disabling`, `Creating`,
    /// `Updating` or `Deleting`.
    pub state: String,
    /// Lambda's `StateTransitionReason` (`User action`, `USER_INITIATED`, …).
    pub state_transition_reason: Option<String>,
    /// When the mapping was last changed (RFC 3339).
    pub last_modified: Option<String>,
}

impl Mapping {
    /// Whether runs start, from [`Mapping::state`].
    pub fn execution(&self) -> Execution {
        Execution::from_state(&self.state)
    }

    /// The function's name and qualifier (`payouts-dev-payout-execute`, `live`) from its ARN.
    pub fn function(&self) -> (&str, Option<&str>) {
        function_name(&self.function_arn)
    }

    /// The function as `name[:qualifier]`, for the text output.
    pub fn function_label(&self) -> String {
        match self.function() {
            (name, Some(qualifier)) => format!("{name}:{qualifier}"),
            (name, None) => name.to_owned(),
        }
    }
}

/// One mapping per line in an error: `uuid (function, state)`.
fn listing(mappings: &[Mapping]) -> String {
    mappings
        .iter()
        .map(|m| format!("{} ({}, {})", m.uuid, m.function_arn, m.state))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why no single mapping could be chosen: both are configuration errors (exit 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// Nothing reads the queue, or nothing of the function named.
    #[error(
        "no event source mapping reads {queue_arn}{}: check --queue-url / --function{}",
        function.as_deref().map_or(String::new(), |f| format!(" for function {f:?}")),
        if others.is_empty() { String::new() } else { format!(" (it is read by: {})", listing(others)) }
    )]
    None {
        /// The jobs queue's ARN.
        queue_arn: String,
        /// The `--function` given, if any.
        function: Option<String>,
        /// The mappings that read the queue for other functions.
        others: Vec<Mapping>,
    },
    /// Several mappings read the queue (for the function named, if any).
    #[error(
        "{} event source mappings read {queue_arn}: {}; pass --function NAME (or set PAYOUT_EXECUTE_FUNCTION) with the payout-execute function's name, name:alias or ARN to pick one",
        mappings.len(),
        listing(mappings)
    )]
    Several {
        /// The jobs queue's ARN.
        queue_arn: String,
        /// Every candidate.
        mappings: Vec<Mapping>,
    },
}

/// A function ARN's name and qualifier: `arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`
/// → (`NAME`, `QUALIFIER`). Anything else is taken as `NAME[:QUALIFIER]`.
fn function_name(arn: &str) -> (&str, Option<&str>) {
    let rest = arn.split_once(":function:").map_or(arn, |(_, rest)| rest);
    match rest.split_once(':') {
        Some((name, qualifier)) => (name, Some(qualifier)),
        None => (rest, None),
    }
}

/// Whether `function` (as `--function` takes it: a name, `name:alias`, an ARN with or without
/// its qualifier, or a partial ARN `ACCOUNT:function:NAME[:QUALIFIER]`) names the mapping's
/// function. A name or ARN without qualifier matches every version and alias of the function.
pub fn names_function(function: &str, function_arn: &str) -> bool {
    let function = function.trim();
    let (name, qualifier) = function_name(function_arn);
    if function.contains(":function:") {
        // An ARN or a partial ARN: the same ARN, or the same without the mapping's qualifier.
        let unqualified = match qualifier {
            Some(q) => &function_arn[..function_arn.len() - q.len() - 1],
            None => function_arn,
        };
        let same = |arn: &str| {
            arn == function
                || (!function.starts_with("arn:") && arn.ends_with(&format!(":{function}")))
        };
        return same(function_arn) || same(unqualified);
    }
    match function.split_once(':') {
        Some((n, q)) => n == name && Some(q) == qualifier,
        None => function == name,
    }
}

/// Picks the one mapping of `mappings` (those ListEventSourceMappings returned for
/// `queue_arn`) that reads the queue, for `function` when given (see [`names_function`]).
/// None, or several: a [`MappingError`] that lists what there is and says what to pass.
pub fn select_mapping(
    queue_arn: &str,
    mappings: Vec<Mapping>,
    function: Option<&str>,
) -> Result<Mapping, MappingError> {
    let function = function.map(str::trim).filter(|f| !f.is_empty());
    let (mut chosen, others): (Vec<Mapping>, Vec<Mapping>) = mappings
        .into_iter()
        .filter(|m| m.event_source_arn.is_empty() || m.event_source_arn == queue_arn)
        .partition(|m| function.is_none_or(|f| names_function(f, &m.function_arn)));
    match chosen.len() {
        1 => Ok(chosen.remove(0)),
        0 => Err(MappingError::None {
            queue_arn: queue_arn.to_owned(),
            function: function.map(str::to_owned),
            others,
        }),
        _ => Err(MappingError::Several {
            queue_arn: queue_arn.to_owned(),
            mappings: chosen,
        }),
    }
}

// ------------------------------------------------------------------------------ the reads

/// Builds a [`Mapping`] from any of Lambda's answers that describe one (they share the field
/// names but not a type).
macro_rules! mapping_of {
    ($m:expr) => {{
        let m = $m;
        Mapping {
            uuid: m.uuid().unwrap_or_default().to_owned(),
            function_arn: m.function_arn().unwrap_or_default().to_owned(),
            event_source_arn: m.event_source_arn().unwrap_or_default().to_owned(),
            state: m.state().unwrap_or("unknown").to_owned(),
            state_transition_reason: m.state_transition_reason().map(str::to_owned),
            last_modified: rfc3339(
                m.last_modified()
                    .and_then(|t| t.to_millis().ok())
                    .and_then(|ms| u64::try_from(ms).ok()),
            ),
        }
    }};
}

/// The jobs queue's ARN (GetQueueAttributes `QueueArn`): mappings name queues by ARN.
pub async fn jobs_queue_arn(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
) -> Result<String, OpsError> {
    sqs.get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| {
            OpsError::Runtime(format!(
                "SQS GetQueueAttributes (QueueArn) of the jobs queue {queue_url} failed: {} \
                 (check --queue-url / PAYOUT_JOBS_QUEUE_URL, the AWS credentials and region, and \
                 that they allow sqs:GetQueueAttributes)",
                describe(&e)
            ))
        })?
        .attributes
        .unwrap_or_default()
        .remove(&QueueAttributeName::QueueArn)
        .ok_or_else(|| {
            OpsError::Runtime(format!(
                "SQS did not return the QueueArn of the jobs queue {queue_url}"
            ))
        })
}

/// Every mapping that reads `queue_arn` (ListEventSourceMappings filtered by it, every page).
pub async fn mappings_reading(
    lambda: &aws_sdk_lambda::Client,
    queue_arn: &str,
) -> Result<Vec<Mapping>, OpsError> {
    let mut mappings = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let out = lambda
            .list_event_source_mappings()
            .event_source_arn(queue_arn)
            .set_marker(marker.take())
            .send()
            .await
            .map_err(|e| lambda_error("ListEventSourceMappings", e))?;
        mappings.extend(out.event_source_mappings().iter().map(|m| mapping_of!(m)));
        match out.next_marker() {
            Some(next) if !next.is_empty() => marker = Some(next.to_owned()),
            _ => return Ok(mappings),
        }
    }
}

/// The jobs queue's ARN and the one mapping that reads it (for `function` when given).
pub async fn find_mapping(
    sqs: &aws_sdk_sqs::Client,
    lambda: &aws_sdk_lambda::Client,
    queue_url: &str,
    function: Option<&str>,
) -> Result<(String, Mapping), OpsError> {
    let queue_arn = jobs_queue_arn(sqs, queue_url).await?;
    let mappings = mappings_reading(lambda, &queue_arn).await?;
    let mapping = select_mapping(&queue_arn, mappings, function)?;
    Ok((queue_arn, mapping))
}

/// The mapping as it is now (GetEventSourceMapping).
async fn get_mapping(lambda: &aws_sdk_lambda::Client, uuid: &str) -> Result<Mapping, OpsError> {
    match lambda.get_event_source_mapping().uuid(uuid).send().await {
        Ok(out) => Ok(mapping_of!(&out)),
        Err(err) if err.code() == Some("ResourceNotFoundException") => {
            Err(OpsError::Runtime(format!(
                "the event source mapping {uuid} no longer exists (deleted by a deploy or by hand?): \
                 run `payouts-ops pause --status` to find the current one"
            )))
        }
        Err(err) => Err(lambda_error("GetEventSourceMapping", err)),
    }
}

// ------------------------------------------------------------------------------ the report

/// What a report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// `payouts-ops pause`.
    Pause,
    /// `payouts-ops resume`.
    Resume,
    /// `payouts-ops pause --status`: a read, nothing changed.
    Status,
}

/// What `pause`, `resume` or `pause --status` found and did: one JSON document with
/// `--output json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionReport {
    /// The command.
    pub action: Action,
    /// The jobs queue's ARN, which the mapping reads.
    pub queue_arn: String,
    /// The mapping as last read.
    pub mapping: Mapping,
    /// Whether runs start now, from the mapping's state.
    pub execution: Execution,
    /// The mapping's state before the command (the same as `mapping.state` for a read).
    pub previous_state: String,
    /// Whether UpdateEventSourceMapping was called (not when the mapping already was, or was
    /// becoming, what was asked).
    pub changed: bool,
    /// What this means for jobs and webhooks, how to keep it across deploys, what to run next.
    pub notes: Vec<String>,
}

impl ExecutionReport {
    fn new(action: Action, queue_arn: String, mapping: Mapping, previous_state: String) -> Self {
        let execution = mapping.execution();
        let paused = matches!(execution, Execution::Paused | Execution::Pausing);
        let notes = match action {
            Action::Pause => vec![
                WHILE_PAUSED.to_owned(),
                format!(
                    "{DRIFT}; keep payouts paused with `sam deploy --parameter-overrides \
                     PayoutExecutionEnabled=false`"
                ),
                "resume with: payouts-ops resume".to_owned(),
            ],
            Action::Resume => vec![
                "the jobs that waited in the jobs queue start payout runs again".to_owned(),
                format!(
                    "{DRIFT}; if the stack was deployed with PayoutExecutionEnabled=false, keep \
                     payouts running with `sam deploy --parameter-overrides \
                     PayoutExecutionEnabled=true`"
                ),
                "pause with: payouts-ops pause".to_owned(),
            ],
            Action::Status if paused => vec![
                WHILE_PAUSED.to_owned(),
                format!("{DRIFT} (PayoutExecutionEnabled=false keeps payouts paused)"),
                "resume with: payouts-ops resume".to_owned(),
            ],
            Action::Status => vec![
                "jobs from the jobs queue start payout runs".to_owned(),
                format!("{DRIFT} (PayoutExecutionEnabled=false keeps payouts paused)"),
                "pause at once with: payouts-ops pause".to_owned(),
            ],
        };
        ExecutionReport {
            action,
            queue_arn,
            execution,
            previous_state,
            changed: false,
            notes,
            mapping,
        }
    }
}

impl fmt::Display for ExecutionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.mapping;
        let (verb, done, goal) = match self.action {
            Action::Pause => ("pause", "paused", Execution::Paused),
            Action::Resume => ("resume", "resumed", Execution::Running),
            Action::Status => ("", "", Execution::Changing),
        };
        let headline = match (self.action, self.changed, self.execution == goal) {
            (Action::Status, ..) => format!("payout execution is {}", self.execution),
            (_, true, true) => format!("{done} payout execution"),
            (_, false, true) => format!("payout execution was already {}", self.execution),
            (_, true, false) => format!(
                "asked Lambda to {verb} payout execution (not waited for): it is {}",
                self.execution
            ),
            (_, false, false) => format!(
                "payout execution is already {} (not waited for)",
                self.execution
            ),
        };
        writeln!(
            f,
            "{headline}: event source mapping {} of {} is {}",
            m.uuid,
            m.function_label(),
            m.state
        )?;
        writeln!(f, "  reads {}", self.queue_arn)?;
        if self.previous_state != m.state {
            writeln!(f, "  was {}", self.previous_state)?;
        }
        let details: Vec<String> = [
            m.last_modified
                .as_deref()
                .map(|t| format!("last changed {t}")),
            m.state_transition_reason
                .as_deref()
                .map(|r| format!("reason: {r}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !details.is_empty() {
            writeln!(f, "  {}", details.join(", "))?;
        }
        if self.execution != goal && self.action != Action::Status {
            writeln!(f, "check it with: payouts-ops pause --status")?;
        }
        for note in &self.notes {
            writeln!(f, "{note}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------- pause and resume

/// How `pause` and `resume` wait for the mapping's new state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwitchOptions {
    /// Wait until the state is `Disabled` (pause) or `Enabled` (resume); `false`: `--no-wait`.
    pub wait: bool,
    /// How often to read the mapping while waiting.
    pub poll_every: Duration,
    /// Give up waiting after this long (an error: the change was asked for and may still
    /// happen).
    pub timeout: Duration,
}

impl Default for SwitchOptions {
    fn default() -> Self {
        SwitchOptions {
            wait: true,
            poll_every: Duration::from_secs(2),
            timeout: Duration::from_secs(300),
        }
    }
}

/// `payouts-ops pause --status`: the mapping that reads the jobs queue and whether runs start;
/// changes nothing.
pub async fn execution_status(
    sqs: &aws_sdk_sqs::Client,
    lambda: &aws_sdk_lambda::Client,
    queue_url: &str,
    function: Option<&str>,
) -> Result<ExecutionReport, OpsError> {
    let (queue_arn, mapping) = find_mapping(sqs, lambda, queue_url, function).await?;
    let previous = mapping.state.clone();
    Ok(ExecutionReport::new(
        Action::Status,
        queue_arn,
        mapping,
        previous,
    ))
}

/// `payouts-ops pause`: disables the mapping that reads the jobs queue (UpdateEventSourceMapping
/// `Enabled=false`) and, unless `options.wait` is off, waits until its state is `Disabled`.
/// Already `Disabled` or `Disabling`: nothing is changed (it still waits for `Disabled`).
pub async fn pause(
    sqs: &aws_sdk_sqs::Client,
    lambda: &aws_sdk_lambda::Client,
    queue_url: &str,
    function: Option<&str>,
    options: SwitchOptions,
    progress: &mut dyn Progress,
) -> Result<ExecutionReport, OpsError> {
    switch(
        sqs,
        lambda,
        queue_url,
        function,
        Switch::Off,
        options,
        progress,
    )
    .await
}

/// `payouts-ops resume`: enables the mapping that reads the jobs queue (`Enabled=true`) and,
/// unless `options.wait` is off, waits until its state is `Enabled`. Already `Enabled` or
/// `Enabling`: nothing is changed.
pub async fn resume(
    sqs: &aws_sdk_sqs::Client,
    lambda: &aws_sdk_lambda::Client,
    queue_url: &str,
    function: Option<&str>,
    options: SwitchOptions,
    progress: &mut dyn Progress,
) -> Result<ExecutionReport, OpsError> {
    switch(
        sqs,
        lambda,
        queue_url,
        function,
        Switch::On,
        options,
        progress,
    )
    .await
}

/// Which way `switch` turns the mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Switch {
    /// Resume: `Enabled=true`, waiting for `Enabled`.
    On,
    /// Pause: `Enabled=false`, waiting for `Disabled`.
    Off,
}

impl Switch {
    /// The command, the state asked for, the state on the way there, and the participle.
    fn parts(self) -> (Action, &'static str, &'static str, &'static str) {
        match self {
            Switch::On => (Action::Resume, "Enabled", "Enabling", "enabled"),
            Switch::Off => (Action::Pause, "Disabled", "Disabling", "disabled"),
        }
    }
}

/// Pause or resume: find, update unless already so, wait.
async fn switch(
    sqs: &aws_sdk_sqs::Client,
    lambda: &aws_sdk_lambda::Client,
    queue_url: &str,
    function: Option<&str>,
    way: Switch,
    options: SwitchOptions,
    progress: &mut dyn Progress,
) -> Result<ExecutionReport, OpsError> {
    let (action, target, on_the_way, participle) = way.parts();
    let (queue_arn, mapping) = find_mapping(sqs, lambda, queue_url, function).await?;
    let previous = mapping.state.clone();
    let mut changed = false;
    let mut current = mapping;
    if current.state != target && current.state != on_the_way {
        current = match lambda
            .update_event_source_mapping()
            .uuid(&current.uuid)
            .enabled(way == Switch::On)
            .send()
            .await
        {
            Ok(out) => mapping_of!(&out),
            Err(err) if err.code() == Some("ResourceInUseException") => {
                return Err(OpsError::Runtime(format!(
                    "Lambda is changing the event source mapping {} (state {}), so it cannot be \
                     {} now: wait a minute and run the command again",
                    current.uuid, current.state, participle
                )));
            }
            Err(err) => return Err(lambda_error("UpdateEventSourceMapping", err)),
        };
        changed = true;
    }
    if options.wait && current.state != target {
        let started = Instant::now();
        loop {
            let elapsed = started.elapsed();
            if elapsed >= options.timeout {
                progress.finish();
                return Err(OpsError::Runtime(format!(
                    "the event source mapping {} is still {} after {} s, not {target}: Lambda \
                     was asked{}, and may still get there; check with `payouts-ops pause --status`{}",
                    current.uuid,
                    current.state,
                    elapsed.as_secs(),
                    if changed { "" } else { " before this command" },
                    current
                        .state_transition_reason
                        .as_deref()
                        .map_or(String::new(), |r| format!(" (reason: {r})"))
                )));
            }
            progress.update(
                &format!("mapping {}, seconds waiting for {target}", current.state),
                elapsed.as_secs(),
                None,
            );
            tokio::time::sleep(options.poll_every).await;
            current = match get_mapping(lambda, &current.uuid).await {
                Ok(mapping) => mapping,
                Err(err) => {
                    progress.finish();
                    return Err(err);
                }
            };
            if current.state == target {
                break;
            }
        }
        progress.finish();
    }
    let mut report = ExecutionReport::new(action, queue_arn, current, previous);
    report.changed = changed;
    Ok(report)
}
