#!/usr/bin/env bash
# Quick start: pays the sample batch (infra/seed/sample-batch.json) end to end on this machine.
# `scripts/run-local.sh stripe` does the same through the Stripe adapter over HTTP, against the
# project's fake Stripe (infra/seed/sample-batch-stripe.json); `scripts/run-local.sh adyen` through
# the Adyen for Platforms adapter, against the project's fake Adyen
# (infra/seed/sample-batch-adyen.json).
#   1. starts the local DynamoDB (payouts-local serve) on a free loopback port;
#   2. creates the tables from infra/tables.json and loads the seed;
#   3. serves payout-execute with `cargo lambda watch` and invokes it with the SQS event in
#      infra/events/sqs-payout-execute.json (the sandbox PSP pays);
#   4. sends a signed webhook for item-001 to psp-webhook (its Function URL on the same
#      `cargo lambda watch`), which marks it paid: `transfer.created` with `Stripe-Signature`
#      (sandbox, Stripe), Adyen's `balancePlatform.transfer.updated` `booked` with `HmacSignature`;
#   5. (stripe) invokes payout-reconcile (threshold 1 s here): item-002, whose webhook is never
#      sent, is looked up at the fake Stripe and settled;
#   6. prints every item's final status.
set -euo pipefail
cd "$(dirname "$0")/.."
PSP=${1:-sandbox}
case "$PSP" in
    sandbox) BATCH=b-sample-0001 SEED=infra/seed/sample-batch.json EVENT=infra/events/sqs-payout-execute.json ;;
    stripe) BATCH=b-sample-stripe-0001 SEED=infra/seed/sample-batch-stripe.json EVENT=infra/events/sqs-payout-execute-stripe.json ;;
    adyen) BATCH=b-sample-adyen-0001 SEED=infra/seed/sample-batch-adyen.json EVENT=infra/events/sqs-payout-execute-adyen.json ;;
    *) echo "usage: scripts/run-local.sh [sandbox|stripe|adyen]" >&2; exit 2 ;;
esac
source scripts/tools.sh
ensure_cargo_lambda

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
DB_PORT=$(free_port)
INVOKE_PORT=$(free_port)
LOG_DIR=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

echo "== building (first run compiles the workspace; later runs are quick)"
cargo build --quiet -p payouts-local -p payouts-ops -p payout-execute -p psp-webhook -p payout-reconcile
case "$PSP" in
    stripe) cargo build --quiet -p integration-tests --bin fake-stripe ;;
    adyen) cargo build --quiet -p integration-tests --bin fake-adyen ;;
esac

export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$DB_PORT"
export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
export PAYOUTS_TABLE=payouts USER_SETTINGS_TABLE=user-settings
export SANDBOX_PSP_ENABLED=true SANDBOX_PSP_LATENCY_MS=50 SANDBOX_WEBHOOK_SECRET=whsec_local_sandbox
export AWS_LAMBDA_LOG_FORMAT=JSON AWS_LAMBDA_LOG_LEVEL=info
# The reconciler sweeps items processing for over a second (its threshold is an hour deployed).
export RECONCILE_STUCK_AFTER_SECONDS=1
if [ "$PSP" = stripe ]; then
    STRIPE_PORT=$(free_port)
    target/debug/fake-stripe --port "$STRIPE_PORT" >"$LOG_DIR/fake-stripe.log" 2>&1 &
    pids+=($!)
    export STRIPE_API_BASE="http://127.0.0.1:$STRIPE_PORT" STRIPE_SECRET_KEY=sk_test_fake_stripe
    export STRIPE_WEBHOOK_SECRET=whsec_local_stripe STRIPE_RECONCILE_SETTLE_SECONDS=1
    echo "== fake Stripe on $STRIPE_API_BASE"
fi
if [ "$PSP" = adyen ]; then
    ADYEN_PORT=$(free_port)
    target/debug/fake-adyen --port "$ADYEN_PORT" >"$LOG_DIR/fake-adyen.log" 2>&1 &
    pids+=($!)
    # The fake's API key, platform balance account and HMAC key (tests/src/fakes/adyen.rs).
    export ADYEN_API_BASE="http://127.0.0.1:$ADYEN_PORT" ADYEN_API_KEY=AQE_fake_adyen_api_key
    export ADYEN_BALANCE_ACCOUNT_ID=BA_PLATFORM_FAKE ADYEN_RECONCILE_SETTLE_SECONDS=1
    export ADYEN_HMAC_KEY=44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056
    echo "== fake Adyen on $ADYEN_API_BASE"
fi

echo "== local DynamoDB on $AWS_ENDPOINT_URL_DYNAMODB"
target/debug/payouts-local serve --port "$DB_PORT" >"$LOG_DIR/dynamodb.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$DB_PORT") 2>/dev/null && break; sleep 0.1; done
target/debug/payouts-local setup --seed "$SEED"

echo "== cargo lambda watch on 127.0.0.1:$INVOKE_PORT (function logs: $LOG_DIR/lambda.log)"
cargo lambda watch --invoke-address 127.0.0.1 --invoke-port "$INVOKE_PORT" --timeout 120 >"$LOG_DIR/lambda.log" 2>&1 &
pids+=($!)
for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$INVOKE_PORT") 2>/dev/null && break; sleep 0.2; done

echo "== invoking payout-execute with $EVENT"
cargo lambda invoke payout-execute --invoke-address 127.0.0.1 --invoke-port "$INVOKE_PORT" \
    --data-file "$EVENT"
echo
echo "== batch summary logged by the function"
grep '"payout batch summary"' "$LOG_DIR/lambda.log" | tail -1 || true
# What the batch's PSP sends to settle item-001, and the header its signature travels in.
case "$PSP" in
    adyen) EVENT_TYPE=booked SIGNATURE_HEADER=HmacSignature ;;
    *) EVENT_TYPE=transfer.created SIGNATURE_HEADER=Stripe-Signature ;;
esac
echo "== sending a signed $EVENT_TYPE webhook for item-001"
signature=$(target/debug/payouts-local sign-webhook "$BATCH" item-001 "$EVENT_TYPE" "$LOG_DIR/event.json")
curl -sS -X POST "http://127.0.0.1:$INVOKE_PORT/lambda-url/psp-webhook/webhooks/$PSP" \
    -H "content-type: application/json" -H "$SIGNATURE_HEADER: $signature" --data-binary @"$LOG_DIR/event.json"
echo
if [ "$PSP" = stripe ]; then
    # The fake Stripe answers GET /v1/transfers/{id} for any process; the in-process sandbox
    # knows only the transfers of the process that made them.
    echo "== payout-reconcile: item-002's webhook never comes; a sweep past the threshold settles it"
    sleep 1.2
    cargo lambda invoke payout-reconcile --invoke-address 127.0.0.1 --invoke-port "$INVOKE_PORT" \
        --data-ascii '{"source":"aws.scheduler","detail-type":"Scheduled Event","detail":{}}'
    echo
    grep '"reconciler sweep summary"' "$LOG_DIR/lambda.log" | tail -1 || true
fi
echo "== final item statuses"
target/debug/payouts-ops status --items "$BATCH"
