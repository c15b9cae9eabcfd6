#!/usr/bin/env bash
# Checks template.yaml offline: `sam validate --lint` (SAM transform + cfn-lint rules) and
# `cfn-lint` on the SAM template. Installs aws-sam-cli (pinned, with its cfn-lint) from PyPI into
# .tools/venv on first use. No AWS account is needed: the region and credentials are dummies.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/tools.sh
ensure_sam

export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-dummy}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-dummy}"
export SAM_CLI_TELEMETRY=0

echo "== sam validate --lint (aws-sam-cli $(sam --version | awk '{print $NF}'))"
sam validate --lint --region us-east-1 --template-file template.yaml
echo "== cfn-lint template.yaml ($(cfn-lint --version))"
cfn-lint --regions us-east-1 -- template.yaml
echo "template checks passed"
