#!/usr/bin/env bash
# checkov in its own virtualenv (.venv/checkov), from requirements-checkov.txt: its dependency pins
# conflict with the project's (boto3 among them). Prints the checkov executable's path.
# Reinstalled when requirements-checkov.txt changes.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
VENV=$ROOT/.venv/checkov
STAMP=$VENV/.installed-$(sha1sum "$ROOT/requirements-checkov.txt" | cut -c1-12)
if [[ ! -e $STAMP ]]; then
    echo "Installing checkov into $VENV ..." >&2
    [[ -x $VENV/bin/python ]] || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/requirements-checkov.txt" >&2
    rm -f "$VENV"/.installed-* && touch "$STAMP"
fi
echo "$VENV/bin/checkov"
