#!/usr/bin/env bash
# The benchmark: release builds of the executor, the local DynamoDB and payout-bench, then
# prints its figures beside their targets (takes a few minutes; most of it is the build).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin payouts-local --bin payout-execute --bin payout-bench
target/release/payout-bench
