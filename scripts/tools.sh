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
