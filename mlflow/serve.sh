#!/usr/bin/env bash
# Launch the MLflow tracking server and UI over the repository's SQLite store.
#
#   mlflow/serve.sh                      # http://127.0.0.1:5000, loopback only
#   MLFLOW_PORT=5001 mlflow/serve.sh     # another port
#   MLFLOW_HOST=0.0.0.0 mlflow/serve.sh  # reachable from other machines: put it behind
#                                        # an authenticating proxy, MLflow has no auth here
#
# Environment (all optional): MLFLOW_HOST (127.0.0.1), MLFLOW_PORT (5000),
# MLFLOW_BACKEND_STORE_URI (sqlite:///mlflow/mlruns.db), MLFLOW_ARTIFACT_ROOT
# (mlflow/artifacts), MLFLOW_BIN (the venv's mlflow, else the one on PATH).
# Extra arguments go to `mlflow server` unchanged (e.g. --workers 2).
# Training writes to the same store directly (no server needed); to send runs through
# the server instead: export MLFLOW_TRACKING_URI=http://127.0.0.1:5000
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"  # the store paths below are relative to the repository root

host="${MLFLOW_HOST:-127.0.0.1}"
port="${MLFLOW_PORT:-5000}"
backend="${MLFLOW_BACKEND_STORE_URI:-sqlite:///mlflow/mlruns.db}"
artifacts="${MLFLOW_ARTIFACT_ROOT:-mlflow/artifacts}"
mlflow_bin="${MLFLOW_BIN:-}"
if [[ -z "$mlflow_bin" ]]; then
    if [[ -x "$repo/.venv/bin/mlflow" ]]; then
        mlflow_bin="$repo/.venv/bin/mlflow"
    else
        mlflow_bin="$(command -v mlflow || true)"
    fi
fi
if [[ -z "$mlflow_bin" ]]; then
    echo "serve.sh: mlflow not found; run 'make setup' or set MLFLOW_BIN" >&2
    exit 1
fi

mkdir -p "$artifacts"
export MLFLOW_DISABLE_TELEMETRY="${MLFLOW_DISABLE_TELEMETRY:-true}"
echo "MLflow UI: http://${host}:${port}  (store ${backend}, artifacts ${artifacts})" >&2
exec "$mlflow_bin" server \
    --backend-store-uri "$backend" \
    --default-artifact-root "$artifacts" \
    --host "$host" \
    --port "$port" \
    "$@"
