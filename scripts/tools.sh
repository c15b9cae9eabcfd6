# Sourced by the scripts: puts the project's Python-installed tools (cargo-lambda, pinned) on
# PATH, installing them into .tools/venv on first use.
CARGO_LAMBDA_VERSION=1.9.2
TOOLS_VENV="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.tools/venv"

ensure_cargo_lambda() {
    if [ ! -x "$TOOLS_VENV/bin/cargo-lambda" ]; then
        echo "installing cargo-lambda $CARGO_LAMBDA_VERSION into .tools/venv (PyPI)…" >&2
        python3 -m venv "$TOOLS_VENV"
        "$TOOLS_VENV/bin/pip" install --quiet "cargo-lambda==$CARGO_LAMBDA_VERSION"
    fi
    export PATH="$TOOLS_VENV/bin:$PATH"
}

STRIPE_PYTHON_VERSION=16.1.0

# The official `stripe` Python package, which a test uses to sign and verify webhooks with an
# implementation this project did not write.
ensure_test_python() {
    if ! "$TOOLS_VENV/bin/python" -c "import stripe" 2>/dev/null; then
        echo "installing stripe==$STRIPE_PYTHON_VERSION into .tools/venv (PyPI)…" >&2
        [ -x "$TOOLS_VENV/bin/python" ] || python3 -m venv "$TOOLS_VENV"
        "$TOOLS_VENV/bin/pip" install --quiet "stripe==$STRIPE_PYTHON_VERSION"
    fi
    export PAYOUTS_TEST_PYTHON="$TOOLS_VENV/bin/python"
}

ADYEN_PYTHON_VERSION=16.0.0

# The official `Adyen` Python package, whose HMAC helpers for Balance Platform webhooks
# (`Adyen.util.generate_payload_sig`, `Adyen.util.is_valid_hmac_payload`) a test uses to sign
# and verify our webhook bodies with an implementation this project did not write.
ensure_adyen_python() {
    if ! "$TOOLS_VENV/bin/python" -c "import importlib.metadata as m; assert m.version('Adyen') == '$ADYEN_PYTHON_VERSION'; from Adyen.util import generate_payload_sig, is_valid_hmac_payload" 2>/dev/null; then
        echo "installing Adyen==$ADYEN_PYTHON_VERSION into .tools/venv (PyPI)…" >&2
        [ -x "$TOOLS_VENV/bin/python" ] || python3 -m venv "$TOOLS_VENV"
        "$TOOLS_VENV/bin/pip" install --quiet "Adyen==$ADYEN_PYTHON_VERSION"
    fi
    export PAYOUTS_TEST_PYTHON="$TOOLS_VENV/bin/python"
}

# aws-sam-cli (pinned) and the cfn-lint it depends on, for the template checks.
SAM_CLI_VERSION=1.170.0
ensure_sam() {
    if ! "$TOOLS_VENV/bin/sam" --version 2>/dev/null | grep -qF "$SAM_CLI_VERSION" \
        || [ ! -x "$TOOLS_VENV/bin/cfn-lint" ]; then
        echo "installing aws-sam-cli $SAM_CLI_VERSION (with cfn-lint) into .tools/venv (PyPI)…" >&2
        [ -x "$TOOLS_VENV/bin/pip" ] || python3 -m venv "$TOOLS_VENV"
        "$TOOLS_VENV/bin/pip" install --quiet "aws-sam-cli==$SAM_CLI_VERSION"
    fi
    export PATH="$TOOLS_VENV/bin:$PATH"
}

# moto's server (pinned): the SQS API for the operator CLI's tests (tests/tests/api/ops_cli.rs).
MOTO_VERSION=5.1.18
ensure_moto() {
    if [ ! -x "$TOOLS_VENV/bin/moto_server" ]; then
        echo "installing moto[server] $MOTO_VERSION into .tools/venv (PyPI)…" >&2
        [ -x "$TOOLS_VENV/bin/pip" ] || python3 -m venv "$TOOLS_VENV"
        "$TOOLS_VENV/bin/pip" install --quiet "moto[server]==$MOTO_VERSION"
    fi
    export MOTO_SERVER="$TOOLS_VENV/bin/moto_server"
}
