#!/usr/bin/env bash
# The whole test suite, on a machine that has only Rust: every integration test starts its own
# DynamoDB-compatible server (dynoxide, in-process, 127.0.0.1:0).
# Set AWS_ENDPOINT_URL_DYNAMODB (and credentials) to run the same tests against DynamoDB Local
# or a real AWS account instead.
# Before the cargo tests: the SAM template checks (scripts/check-template.sh); the official
# stripe and Adyen packages (webhook signatures) and moto's SQS server (operator CLI tests) install from
# PyPI into .tools/venv on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/check-template.sh
source scripts/tools.sh
ensure_test_python
ensure_adyen_python
ensure_moto

if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast "$@"
else
    echo "cargo-nextest not found; running cargo test (install it with: cargo install cargo-nextest --locked)" >&2
    cargo test --workspace --no-fail-fast "$@"
fi
