//! Checks `template.yaml` (the SAM template) against the project's contracts: the tables of
//! `infra/tables.json`, least-privilege IAM per function, the SQS visibility-timeout rule and
//! the DLQ redrive. The template uses long-form intrinsics (`Ref`, `Fn::GetAtt`, `Fn::Sub`), so
//! a plain YAML parser reads it; a short-form tag (`!Ref`) fails this test on purpose.

use payouts_local::tables::{TableDefinition, definitions};
use serde_json::{Value, json};
use std::collections::BTreeSet;

fn template() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    let text = std::fs::read_to_string(path).expect("read template.yaml");
    serde_yaml_ng::from_str(&text).expect("template.yaml is plain YAML (long-form intrinsics only)")
}

fn resource<'t>(template: &'t Value, logical_id: &str) -> &'t Value {
    template
        .pointer(&format!("/Resources/{logical_id}"))
        .unwrap_or_else(|| panic!("template has no resource {logical_id}"))
}

fn props<'t>(template: &'t Value, logical_id: &str) -> &'t Value {
    &resource(template, logical_id)["Properties"]
}

/// `Fn::GetAtt: [X, Arn]` → `X.Arn`, `Ref: X` → `X`, `Fn::Sub: "s"` → `s`, strings as they are.
fn name(value: &Value) -> String {
    if let Some(s) = value.as_str() {
        return s.to_owned();
    }
    if let Some([resource, attribute]) = value["Fn::GetAtt"].as_array().map(Vec::as_slice) {
        return format!(
            "{}.{}",
            resource.as_str().unwrap(),
            attribute.as_str().unwrap()
        );
    }
    if let Some(s) = value["Ref"].as_str() {
        return s.to_owned();
    }
    if let Some(s) = value["Fn::Sub"].as_str() {
        return s.to_owned();
    }
    panic!("unexpected intrinsic {value}")
}

fn one_or_many(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(values) => values.iter().collect(),
        other => vec![other],
    }
}

// ------------------------------------------------------------------------------------- tables

fn keys(keys: &[payouts_local::tables::KeyDef]) -> Value {
    keys.iter()
        .map(|k| json!({"AttributeName": k.attribute_name, "KeyType": k.key_type}))
        .collect()
}

fn expected_table(definition: &TableDefinition) -> Value {
    let attributes: BTreeSet<(String, String)> = definition
        .attribute_definitions
        .iter()
        .map(|a| (a.attribute_name.clone(), a.attribute_type.clone()))
        .collect();
    let indexes: Vec<Value> = definition
        .global_secondary_indexes
        .iter()
        .map(|i| {
            json!({
                "IndexName": i.index_name,
                "KeySchema": keys(&i.key_schema),
                "Projection": {"ProjectionType": i.projection.projection_type},
            })
        })
        .collect();
    json!({
        "attributes": attributes,
        "keys": keys(&definition.key_schema),
        "indexes": indexes,
        "ttl": definition.time_to_live_attribute
            .as_ref()
            .map(|a| json!({"AttributeName": a, "Enabled": true})),
    })
}

fn declared_table(properties: &Value) -> Value {
    let attributes: BTreeSet<(String, String)> = properties["AttributeDefinitions"]
        .as_array()
        .expect("AttributeDefinitions")
        .iter()
        .map(|a| {
            (
                a["AttributeName"].as_str().unwrap().to_owned(),
                a["AttributeType"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    json!({
        "attributes": attributes,
        "keys": properties["KeySchema"],
        "indexes": properties.get("GlobalSecondaryIndexes").cloned().unwrap_or(json!([])),
        "ttl": properties.get("TimeToLiveSpecification"),
    })
}

#[test]
fn tables_match_the_shared_definition() {
    let template = template();
    let definitions = definitions();
    assert_eq!(definitions.len(), 2);
    for definition in &definitions {
        let table = resource(&template, &definition.logical_id);
        assert_eq!(
            table["Type"], "AWS::DynamoDB::Table",
            "{}",
            definition.logical_id
        );
        let properties = &table["Properties"];
        assert_eq!(
            declared_table(properties),
            expected_table(definition),
            "{} differs from infra/tables.json",
            definition.logical_id
        );
        assert_eq!(properties["BillingMode"], "PAY_PER_REQUEST");
        assert_eq!(
            properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"], true,
            "{}: point-in-time recovery",
            definition.logical_id
        );
        assert!(
            properties.get("TableName").is_none(),
            "CloudFormation names the tables; the functions get them through the environment"
        );
    }
    let tables: Vec<&String> = template["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::DynamoDB::Table")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        tables.len(),
        definitions.len(),
        "tables not in tables.json: {tables:?}"
    );
}

#[test]
fn functions_get_the_table_names_from_the_variables_of_the_shared_definition() {
    let template = template();
    for (function, tables) in [
        (
            "PayoutExecuteFunction",
            vec!["PayoutsTable", "UserSettingsTable"],
        ),
        ("PspWebhookFunction", vec!["PayoutsTable"]),
        (
            "PayoutReconcileFunction",
            vec!["PayoutsTable", "UserSettingsTable"],
        ),
    ] {
        let variables = &props(&template, function)["Environment"]["Variables"];
        for definition in definitions() {
            let value = variables.get(&definition.env_var);
            if tables.contains(&definition.logical_id.as_str()) {
                assert_eq!(
                    value,
                    Some(&json!({"Ref": definition.logical_id})),
                    "{function}: {}",
                    definition.env_var
                );
            } else {
                assert_eq!(
                    value, None,
                    "{function} does not use {}",
                    definition.env_var
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------- IAM

/// Every (action, resource) pair the function's role allows.
fn allowed(template: &Value, function: &str) -> BTreeSet<(String, String)> {
    let function_props = props(template, function);
    assert!(
        function_props.get("Policies").is_none(),
        "{function}: permissions live on its own role, not in SAM policy templates"
    );
    let role = name(&function_props["Role"]);
    let role = role
        .strip_suffix(".Arn")
        .expect("Role: Fn::GetAtt [<role>, Arn]");
    let role_props = props(template, role);
    assert_eq!(resource(template, role)["Type"], "AWS::IAM::Role");
    assert!(
        role_props.get("ManagedPolicyArns").is_none(),
        "{role}: no managed policies (they grant more than the function uses)"
    );
    let mut pairs = BTreeSet::new();
    for policy in role_props["Policies"].as_array().expect("inline policies") {
        for statement in policy["PolicyDocument"]["Statement"].as_array().unwrap() {
            assert_eq!(statement["Effect"], "Allow");
            assert!(statement.get("NotAction").is_none() && statement.get("NotResource").is_none());
            for action in one_or_many(&statement["Action"]) {
                for resource in one_or_many(&statement["Resource"]) {
                    // A conditional resource: what it grants when the condition holds.
                    let resource = match resource["Fn::If"].as_array() {
                        Some(branches) => {
                            assert_eq!(branches[2], json!({"Ref": "AWS::NoValue"}));
                            &branches[1]
                        }
                        None => resource,
                    };
                    pairs.insert((action.as_str().unwrap().to_owned(), name(resource)));
                }
            }
        }
    }
    pairs
}

/// `secretsmanager:GetSecretValue` on the secrets named by these parameters, and nothing else.
fn secrets(parameters: &[&str]) -> Vec<(String, String)> {
    parameters
        .iter()
        .map(|p| {
            (
                "secretsmanager:GetSecretValue".to_owned(),
                format!("arn:${{AWS::Partition}}:secretsmanager:${{AWS::Region}}:${{AWS::AccountId}}:secret:${{{p}}}-*"),
            )
        })
        .collect()
}

/// What `Tracing: Active` needs: X-Ray's write actions, which take no narrower resource.
const XRAY: (&str, &[&str]) = ("*", &["xray:PutTraceSegments", "xray:PutTelemetryRecords"]);

fn pairs(expected: &[(&str, &[&str])]) -> BTreeSet<(String, String)> {
    expected
        .iter()
        .flat_map(|(resource, actions)| {
            actions
                .iter()
                .map(move |action| ((*action).to_owned(), (*resource).to_owned()))
        })
        .collect()
}

#[test]
fn payout_execute_may_do_only_what_it_does() {
    let expected = pairs(&[
        (
            "PayoutsTable.Arn",
            &[
                "dynamodb:GetItem",
                "dynamodb:Query",
                "dynamodb:UpdateItem",
                "dynamodb:PutItem",
                "dynamodb:DeleteItem",
            ],
        ),
        ("UserSettingsTable.Arn", &["dynamodb:BatchGetItem"]),
        (
            "PayoutJobsQueue.Arn",
            &[
                "sqs:SendMessage",
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:ChangeMessageVisibility",
            ],
        ),
        (
            "PayoutExecuteLogGroup.Arn",
            &["logs:CreateLogStream", "logs:PutLogEvents"],
        ),
        XRAY,
    ]);
    let mut expected = expected;
    expected.extend(secrets(&[
        "StripeSecretKeySecretName",
        "AdyenApiKeySecretName",
    ]));
    assert_eq!(allowed(&template(), "PayoutExecuteFunction"), expected);
}

#[test]
fn psp_webhook_may_do_only_what_it_does() {
    let expected = pairs(&[
        (
            "PayoutsTable.Arn",
            &[
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:Query",
            ],
        ),
        ("${PayoutsTable.Arn}/index/*", &["dynamodb:Query"]),
        (
            "PspWebhookLogGroup.Arn",
            &["logs:CreateLogStream", "logs:PutLogEvents"],
        ),
        XRAY,
    ]);
    let mut expected = expected;
    expected.extend(secrets(&[
        "StripeWebhookSecretName",
        "AdyenHmacKeySecretName",
        "SandboxWebhookSecretName",
    ]));
    assert_eq!(allowed(&template(), "PspWebhookFunction"), expected);
}

#[test]
fn payout_reconcile_may_do_only_what_it_does() {
    let expected = pairs(&[
        (
            "PayoutsTable.Arn",
            &[
                "dynamodb:GetItem",
                "dynamodb:Query",
                "dynamodb:UpdateItem",
                "dynamodb:PutItem",
                "dynamodb:DeleteItem",
            ],
        ),
        ("${PayoutsTable.Arn}/index/openBatches", &["dynamodb:Scan"]),
        ("UserSettingsTable.Arn", &["dynamodb:BatchGetItem"]),
        ("PayoutJobsQueue.Arn", &["sqs:SendMessage"]),
        (
            "PayoutReconcileLogGroup.Arn",
            &["logs:CreateLogStream", "logs:PutLogEvents"],
        ),
        XRAY,
    ]);
    let mut expected = expected;
    expected.extend(secrets(&[
        "StripeSecretKeySecretName",
        "AdyenApiKeySecretName",
    ]));
    let template = template();
    assert_eq!(allowed(&template, "PayoutReconcileFunction"), expected);
    let schedule = &props(&template, "PayoutReconcileFunction")["Events"]["Sweep"];
    assert_eq!(schedule["Type"], "ScheduleV2");
    assert_eq!(
        schedule["Properties"]["ScheduleExpression"],
        json!({"Ref": "ReconcileSchedule"})
    );
    // The alarms watch the metrics the sweep emits, with a topic and an OK action.
    for (alarm, metric) in [
        ("StuckItemsAlarm", "StuckItems"),
        ("TransfersNotFoundAlarm", "TransfersNotFound"),
        ("OrphanTransfersAlarm", "OrphanTransfers"),
    ] {
        let alarm_props = props(&template, alarm);
        assert_eq!(alarm_props["MetricName"], metric);
        assert_eq!(
            alarm_props["Namespace"],
            payout_reconcile::METRICS_NAMESPACE
        );
        assert!(
            payout_reconcile::SWEEP_METRICS.contains(&metric),
            "{metric} is emitted"
        );
        assert_eq!(alarm_props["Dimensions"][0]["Value"], "payout-reconcile");
        for actions in ["AlarmActions", "OKActions"] {
            assert_eq!(
                alarm_props[actions]["Fn::If"][0], "HasAlarmTopic",
                "{alarm} {actions}"
            );
        }
    }
}

#[test]
fn secrets_come_from_secrets_manager_never_from_parameters() {
    let template = template();
    // Each function names the secrets it uses (read at run time); none holds a value.
    for (function, secrets) in [
        (
            "PayoutExecuteFunction",
            vec![
                ("STRIPE_SECRET_KEY", "StripeSecretKeySecretName"),
                ("ADYEN_API_KEY", "AdyenApiKeySecretName"),
            ],
        ),
        (
            "PspWebhookFunction",
            vec![
                ("STRIPE_WEBHOOK_SECRET", "StripeWebhookSecretName"),
                ("ADYEN_HMAC_KEY", "AdyenHmacKeySecretName"),
            ],
        ),
        (
            "PayoutReconcileFunction",
            vec![
                ("STRIPE_SECRET_KEY", "StripeSecretKeySecretName"),
                ("ADYEN_API_KEY", "AdyenApiKeySecretName"),
            ],
        ),
    ] {
        let variables = &props(&template, function)["Environment"]["Variables"];
        for (setting, parameter) in secrets {
            let named = &variables[format!("{setting}_SECRET_ID")];
            // Adyen is opt-in: its secrets are named only under the AdyenOn condition.
            let named = match named["Fn::If"].as_array() {
                Some(branches) => {
                    assert_eq!(branches[0], "AdyenOn", "{function} {setting}");
                    assert_eq!(branches[2], json!({"Ref": "AWS::NoValue"}));
                    branches[1].clone()
                }
                None => named.clone(),
            };
            assert_eq!(named, json!({"Ref": parameter}), "{function} {setting}");
        }
    }
    // No value of any secret in any function's configuration (GetFunctionConfiguration shows
    // the environment to anyone allowed to read it).
    let functions: Vec<(&String, &Value)> = template["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .collect();
    let globals = &template["Globals"]["Function"]["Environment"]["Variables"];
    for (id, function) in functions {
        for variables in [&function["Properties"]["Environment"]["Variables"], globals] {
            for (name, value) in variables.as_object().into_iter().flatten() {
                assert!(
                    !value.to_string().contains("resolve:secretsmanager"),
                    "{id} {name}: a secret's value resolved into the environment"
                );
                for setting in [
                    "STRIPE_SECRET_KEY",
                    "STRIPE_WEBHOOK_SECRET",
                    "ADYEN_API_KEY",
                    "ADYEN_HMAC_KEY",
                    "SANDBOX_WEBHOOK_SECRET",
                ] {
                    assert_ne!(name, setting, "{id} holds {setting}'s value");
                }
            }
        }
    }
    assert_eq!(
        globals["SECRETS_CACHE_SECONDS"],
        json!({"Ref": "SecretsCacheSeconds"})
    );
    assert_eq!(
        template["Parameters"]["SecretsCacheSeconds"]["MaxValue"],
        300
    );
    // Each secret only where it is used: API keys pay, webhook secrets verify.
    for (function, absent) in [
        (
            "PayoutExecuteFunction",
            [
                "STRIPE_WEBHOOK_SECRET_SECRET_ID",
                "ADYEN_HMAC_KEY_SECRET_ID",
            ],
        ),
        (
            "PspWebhookFunction",
            ["STRIPE_SECRET_KEY_SECRET_ID", "ADYEN_API_KEY_SECRET_ID"],
        ),
        (
            "PayoutReconcileFunction",
            [
                "STRIPE_WEBHOOK_SECRET_SECRET_ID",
                "ADYEN_HMAC_KEY_SECRET_ID",
            ],
        ),
    ] {
        let variables = &props(&template, function)["Environment"]["Variables"];
        for secret in absent {
            assert!(
                variables.get(secret).is_none(),
                "{function} must not hold {secret}"
            );
        }
    }
    let sandbox = &props(&template, "PspWebhookFunction")["Environment"]["Variables"]["SANDBOX_WEBHOOK_SECRET_SECRET_ID"]
        ["Fn::If"];
    assert_eq!(sandbox[0], "HasSandboxWebhookSecret");
    assert_eq!(
        sandbox[2],
        json!({"Ref": "AWS::NoValue"}),
        "unset when the condition is false"
    );
    for condition in ["HasSandboxWebhookSecret", "SandboxPspOn"] {
        let text = template["Conditions"][condition].to_string();
        assert!(
            text.contains("IsProd"),
            "{condition}: never in prod: {text}"
        );
    }
    for function in [
        "PayoutExecuteFunction",
        "PspWebhookFunction",
        "PayoutReconcileFunction",
    ] {
        let sandbox = &props(&template, function)["Environment"]["Variables"]["SANDBOX_PSP_ENABLED"]
            ["Fn::If"];
        assert_eq!(sandbox[0], "SandboxPspOn", "{function}");
    }
    for (parameter, _) in template["Parameters"].as_object().unwrap() {
        let lower = parameter.to_lowercase();
        assert!(
            !(lower.contains("secret") || lower.contains("key"))
                || lower.ends_with("secretname")
                || parameter == "SecretsCacheSeconds",
            "parameter {parameter} looks like it holds a secret; pass a secret's name instead"
        );
    }
}

// -------------------------------------------------------------------------------- functions

#[test]
fn functions_are_rust_on_al2023_arm64() {
    let template = template();
    let globals = &template["Globals"]["Function"];
    for (function, code) in [
        ("PayoutExecuteFunction", "functions/payout-execute"),
        ("PspWebhookFunction", "functions/psp-webhook"),
        ("PayoutReconcileFunction", "functions/payout-reconcile"),
    ] {
        let r = resource(&template, function);
        let p = &r["Properties"];
        let setting = |key: &str| p.get(key).unwrap_or(&globals[key]).clone();
        assert_eq!(r["Type"], "AWS::Serverless::Function");
        assert_eq!(
            r["Metadata"]["BuildMethod"], "rust-cargolambda",
            "{function}"
        );
        assert_eq!(setting("Runtime"), "provided.al2023", "{function}");
        assert_eq!(setting("Architectures"), json!(["arm64"]), "{function}");
        assert_eq!(setting("Handler"), "bootstrap", "{function}");
        assert_eq!(p["CodeUri"], code);
        // Lambda sets AWS_LAMBDA_LOG_FORMAT / AWS_LAMBDA_LOG_LEVEL from LoggingConfig.
        assert_eq!(p["LoggingConfig"]["LogFormat"], "JSON", "{function}");
        assert_eq!(
            p["LoggingConfig"]["ApplicationLogLevel"],
            json!({"Ref": "LogLevel"})
        );
        assert_eq!(
            globals["Environment"]["Variables"]["SSL_CERT_FILE"],
            "/etc/pki/tls/certs/ca-bundle.crt"
        );
    }
    let url = &props(&template, "PspWebhookFunction")["FunctionUrlConfig"];
    assert_eq!(
        url["AuthType"], "NONE",
        "the PSP signature is the authentication"
    );
}

#[test]
fn operators_have_an_emergency_stop_and_the_public_endpoint_a_ceiling() {
    let template = template();
    let event = &props(&template, "PayoutExecuteFunction")["Events"]["PayoutJobs"]["Properties"];
    assert_eq!(event["Enabled"], json!({"Ref": "PayoutExecutionEnabled"}));
    assert_eq!(
        template["Parameters"]["PayoutExecutionEnabled"]["AllowedValues"],
        json!(["true", "false"])
    );
    assert_eq!(
        props(&template, "PspWebhookFunction")["ReservedConcurrentExecutions"],
        json!({"Ref": "WebhookReservedConcurrency"})
    );
    for function in [
        "PayoutExecuteFunction",
        "PspWebhookFunction",
        "PayoutReconcileFunction",
    ] {
        assert_eq!(
            props(&template, function)["LoggingConfig"]["SystemLogLevel"],
            "INFO",
            "{function}: the platform's REPORT lines (duration, memory, init) stay"
        );
    }
}

#[test]
fn the_jobs_queue_outlives_the_function_and_redrives_to_the_dlq() {
    let template = template();
    let function = props(&template, "PayoutExecuteFunction");
    let timeout = function
        .get("Timeout")
        .unwrap_or(&template["Globals"]["Function"]["Timeout"])
        .as_u64()
        .expect("a numeric Timeout");
    let event = function["Events"]
        .as_object()
        .unwrap()
        .values()
        .find(|e| e["Type"] == "SQS")
        .expect("an SQS event");
    let event = &event["Properties"];
    let queue = name(&event["Queue"]);
    let queue = queue.strip_suffix(".Arn").unwrap();
    assert_eq!(queue, "PayoutJobsQueue");
    assert_eq!(
        function["Environment"]["Variables"]["PAYOUT_JOBS_QUEUE_URL"],
        json!({"Ref": queue}),
        "continuations go to the queue the function consumes"
    );
    assert_eq!(
        event["FunctionResponseTypes"],
        json!(["ReportBatchItemFailures"])
    );
    assert!(event["BatchSize"].as_u64().is_some_and(|n| n >= 1));
    assert!(event["ScalingConfig"].get("MaximumConcurrency").is_some());

    let queue_props = props(&template, queue);
    let visibility = queue_props["VisibilityTimeout"]
        .as_u64()
        .expect("VisibilityTimeout");
    assert!(
        visibility >= 6 * timeout,
        "VisibilityTimeout {visibility} must be at least 6 x the function timeout {timeout}"
    );
    let redrive = &queue_props["RedrivePolicy"];
    let dlq = name(&redrive["deadLetterTargetArn"]);
    let dlq = dlq.strip_suffix(".Arn").expect("DLQ by Fn::GetAtt Arn");
    assert_eq!(resource(&template, dlq)["Type"], "AWS::SQS::Queue");
    assert!(
        redrive["maxReceiveCount"]
            .as_u64()
            .is_some_and(|n| (1..=10).contains(&n))
    );

    // Someone is told when jobs land in the DLQ, and when either function fails.
    let alarms: Vec<&Value> = template["Resources"]
        .as_object()
        .unwrap()
        .values()
        .filter(|r| r["Type"] == "AWS::CloudWatch::Alarm")
        .map(|r| &r["Properties"])
        .collect();
    let watches = |metric: &str, dimension: Value| {
        alarms.iter().any(|a| {
            a["MetricName"] == metric
                && a["Dimensions"].as_array().unwrap().contains(&dimension)
                && a["Threshold"] == 0
                && a["ComparisonOperator"] == "GreaterThanThreshold"
        })
    };
    assert!(watches(
        "ApproximateNumberOfMessagesVisible",
        json!({"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq, "QueueName"]}})
    ));
    for function in ["PayoutExecuteFunction", "PspWebhookFunction"] {
        assert!(
            watches(
                "Errors",
                json!({"Name": "FunctionName", "Value": {"Ref": function}})
            ),
            "{function} Errors alarm"
        );
    }
    for output in [
        "PayoutJobsQueueUrl",
        "PayoutJobsDeadLetterQueueUrl",
        "PayoutsTableName",
        "UserSettingsTableName",
        "WebhookUrl",
    ] {
        assert!(template["Outputs"].get(output).is_some(), "output {output}");
    }
}

/// Every process that may call a PSP's API paces at its share of the account's budget
/// (`payouts_config::RequestBudget`: the reconciler 1/20, each executor instance an equal part
/// of the rest); the shares add up to the budget only if the instance count the executors are
/// told is the one the event source enforces, the reconciler is one instance, and no other
/// function holds an API key.
#[test]
fn no_configuration_can_exceed_a_psp_accounts_request_budget() {
    let template = template();
    let execute = props(&template, "PayoutExecuteFunction");
    let reconcile = props(&template, "PayoutReconcileFunction");
    let event = execute["Events"]
        .as_object()
        .unwrap()
        .values()
        .find(|e| e["Type"] == "SQS")
        .expect("an SQS event");
    assert_eq!(
        event["Properties"]["ScalingConfig"]["MaximumConcurrency"],
        json!({"Ref": "MaximumConcurrency"})
    );
    assert_eq!(reconcile["ReservedConcurrentExecutions"], 1);
    for (function, props) in [("executor", execute), ("reconciler", reconcile)] {
        let vars = &props["Environment"]["Variables"];
        assert_eq!(
            vars["PAYOUT_MAX_INSTANCES"],
            json!({"Ref": "MaximumConcurrency"}),
            "{function}: its share must count every instance the event source may run"
        );
        assert_eq!(
            vars["STRIPE_REQUEST_BUDGET"],
            json!({"Ref": "StripeRequestBudget"}),
            "{function}"
        );
        assert_eq!(
            vars["ADYEN_REQUEST_BUDGET"],
            json!({"Fn::If": ["AdyenOn", {"Ref": "AdyenRequestBudget"}, {"Ref": "AWS::NoValue"}]}),
            "{function}"
        );
    }
    let functions: Vec<(&String, &Value)> = template["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .collect();
    for (logical_id, function) in functions {
        let vars = &function["Properties"]["Environment"]["Variables"];
        let calls_a_psp = vars.get("STRIPE_SECRET_KEY_SECRET_ID").is_some()
            || vars.get("ADYEN_API_KEY_SECRET_ID").is_some();
        assert_eq!(
            calls_a_psp,
            ["PayoutExecuteFunction", "PayoutReconcileFunction"].contains(&logical_id.as_str()),
            "{logical_id}: only the budget's sharers may hold a PSP API key"
        );
    }
    // Within what the functions accept: a budget of at least 1/s, at most 1000 instances.
    let parameter = |name: &str| &template["Parameters"][name];
    assert_eq!(parameter("StripeRequestBudget")["MinValue"], 1);
    assert_eq!(parameter("AdyenRequestBudget")["MinValue"], 1);
    assert!(
        parameter("MaximumConcurrency")["MaxValue"]
            .as_u64()
            .unwrap()
            <= 1000
    );
}

/// The metrics each function emits, by its `Function` dimension value.
fn emitted(function: &str) -> Vec<&'static str> {
    let psp = payouts_core::metrics::PSP_METRICS.iter().copied();
    match function {
        "payout-execute" => payout_execute::emitted_metrics(),
        "psp-webhook" => psp_webhook::WEBHOOK_METRICS.to_vec(),
        "payout-reconcile" => payout_reconcile::SWEEP_METRICS
            .iter()
            .copied()
            .chain(psp)
            .collect(),
        other => panic!("no function {other} emits metrics"),
    }
}

fn alarms(template: &Value) -> Vec<(&String, &Value)> {
    template["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::CloudWatch::Alarm")
        .map(|(id, r)| (id, &r["Properties"]))
        .collect()
}

/// Every way the service fails quietly has an alarm; every alarm tells the topic when it fires
/// and when it clears; and every alarm on the service's own metrics watches a metric the code
/// emits, under the dimension it emits it with.
#[test]
fn every_silent_failure_has_an_alarm_with_a_topic_and_an_ok_action() {
    let template = template();
    let alarms = alarms(&template);
    let topic =
        json!({"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]});
    for (id, alarm) in &alarms {
        assert_eq!(alarm["AlarmActions"], topic, "{id}");
        assert_eq!(alarm["OKActions"], topic, "{id}");
        assert_eq!(alarm["TreatMissingData"], "notBreaching", "{id}");
        assert!(
            alarm["AlarmDescription"]
                .as_str()
                .is_some_and(|d| d.len() > 20),
            "{id}"
        );
        if alarm["Namespace"] == "Payouts" {
            let dimensions = alarm["Dimensions"].as_array().unwrap();
            assert_eq!(
                dimensions.len(),
                1,
                "{id}: alarms watch the Function-only set"
            );
            assert_eq!(dimensions[0]["Name"], "Function", "{id}");
            let function = dimensions[0]["Value"].as_str().unwrap();
            let metric = alarm["MetricName"].as_str().unwrap();
            assert!(
                emitted(function).contains(&metric),
                "{id}: {function} does not emit {metric}"
            );
        }
    }
    let watched = |namespace: &str, metric: &str, dimension: &str| {
        alarms.iter().any(|(_, a)| {
            a["Namespace"] == namespace
                && a["MetricName"] == metric
                && a["Dimensions"].to_string().contains(dimension)
        })
    };
    for (namespace, metric, dimension) in [
        ("Payouts", "DoublePayments", "payout-execute"),
        ("Payouts", "PoisonMessages", "payout-execute"),
        ("Payouts", "PspRateLimited", "payout-execute"),
        ("Payouts", "WebhookRejected", "psp-webhook"),
        ("Payouts", "StuckItems", "payout-reconcile"),
        ("Payouts", "OrphanTransfers", "payout-reconcile"),
        ("AWS/Lambda", "Url4xxCount", "PspWebhookFunction"),
        (
            "AWS/SQS",
            "ApproximateAgeOfOldestMessage",
            "PayoutJobsQueue",
        ),
        (
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            "PayoutJobsDeadLetterQueue",
        ),
    ] {
        assert!(
            watched(namespace, metric, dimension),
            "no alarm on {namespace} {metric} ({dimension})"
        );
    }
    for function in [
        "PayoutExecuteFunction",
        "PspWebhookFunction",
        "PayoutReconcileFunction",
    ] {
        for metric in ["Errors", "Throttles"] {
            assert!(
                watched("AWS/Lambda", metric, function),
                "no {metric} alarm on {function}"
            );
        }
    }
    assert_eq!(template["Globals"]["Function"]["Tracing"], "Active");
}

/// The dashboard's widgets show metrics the functions emit, under their dimensions.
#[test]
fn the_dashboard_shows_only_metrics_the_functions_emit() {
    let template = template();
    let body = props(&template, "PayoutsDashboard")["DashboardBody"]["Fn::Sub"]
        .as_str()
        .expect("DashboardBody: Fn::Sub of the JSON");
    // CloudFormation substitutes ${...}; any string stands in for it here.
    let substituted = regex_free_substitute(body);
    let dashboard: Value = serde_json::from_str(&substituted).expect("the dashboard is JSON");
    let mut shown = 0;
    for widget in dashboard["widgets"].as_array().unwrap() {
        for row in widget["properties"]["metrics"].as_array().unwrap() {
            let row = row.as_array().unwrap();
            if row[0] == "Payouts" {
                assert_eq!(row[2], "Function");
                let (function, metric) = (row[3].as_str().unwrap(), row[1].as_str().unwrap());
                assert!(
                    emitted(function).contains(&metric),
                    "{function} does not emit {metric}"
                );
                shown += 1;
            }
        }
    }
    assert!(shown >= 20, "{shown} of the service's metrics shown");
}

/// `body` with every `${...}` replaced by `X`.
fn regex_free_substitute(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closed ${") + start;
        out.push('X');
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Every deploy publishes a version behind `live`, shifted to gradually in prod and rolled back
/// by the function's own alarms; the webhook URL, the queue and the schedule invoke the alias.
#[test]
fn deploys_shift_traffic_and_roll_back_on_the_functions_alarms() {
    let template = template();
    assert_eq!(template["Globals"]["Function"]["AutoPublishAlias"], "live");
    for (function, must_watch) in [
        (
            "PayoutExecuteFunction",
            &["PayoutExecuteErrorsAlarm", "DoublePaymentAlarm"][..],
        ),
        (
            "PspWebhookFunction",
            &["PspWebhookErrorsAlarm", "WebhookRejectedAlarm"][..],
        ),
        (
            "PayoutReconcileFunction",
            &["PayoutReconcileErrorsAlarm"][..],
        ),
    ] {
        let preference = &props(&template, function)["DeploymentPreference"];
        assert_eq!(
            preference["Type"],
            json!({"Fn::If": ["IsProd", "Canary10Percent5Minutes", "AllAtOnce"]}),
            "{function}"
        );
        let alarms: Vec<String> = preference["Alarms"]
            .as_array()
            .expect("rollback alarms")
            .iter()
            .map(name)
            .collect();
        for alarm in must_watch {
            assert!(
                alarms.contains(&(*alarm).to_owned()),
                "{function} rolls back on {alarm}"
            );
        }
        for alarm in &alarms {
            assert_eq!(resource(&template, alarm)["Type"], "AWS::CloudWatch::Alarm");
        }
    }
}
