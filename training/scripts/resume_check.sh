#!/usr/bin/env bash
# Exact-resume check of a real stage through the CLI: train STEPS steps uninterrupted;
# train again, SIGKILL the process once the checkpoint at KILL_AT exists, resume it to
# STEPS; then print the largest weight difference between the two runs as JSON.
#
#   training/scripts/resume_check.sh STAGE DATA [STEPS=30] [KILL_AT=20] [OUT=/tmp/resume-check]
#   e.g. training/scripts/resume_check.sh vae corpus 30 20
set -euo pipefail
stage=${1:?stage (vae or svac)}
data=${2:?corpus root}
steps=${3:-30}
kill_at=${4:-20}
out=${5:-/tmp/resume-check}
every=$(( kill_at < 10 ? kill_at : 10 ))
swansphere=${SWANSPHERE:-swansphere}
rm -rf "$out" && mkdir -p "$out"
common=(train "$stage" --data "$data" --steps "$steps" --checkpoint-every "$every" --no-track
        --eval-every 0 --set eval_clips=2)

"$swansphere" "${common[@]}" --out "$out/full" > "$out/full.log" 2>&1

"$swansphere" "${common[@]}" --out "$out/killed" > "$out/killed.log" 2>&1 &
pid=$!
marker="$out/killed/checkpoints/$(printf 'step_%08d' "$kill_at")"
until [ -e "$marker" ]; do
    kill -0 "$pid" 2>/dev/null || { echo "the run ended before step $kill_at" >&2; exit 1; }
    sleep 0.2
done
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
"$swansphere" "${common[@]}" --out "$out/killed" --resume > "$out/resumed.log" 2>&1

"${PYTHON:-python}" - "$out" "$steps" "$kill_at" <<'EOF'
import json
import sys
from pathlib import Path

from safetensors.torch import load_file

out, steps, kill_at = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
name = f"step_{steps:08d}/model.safetensors"
a = load_file(out / "full" / "checkpoints" / name)
b = load_file(out / "killed" / "checkpoints" / name)
assert a.keys() == b.keys(), "the two runs hold different tensors"
diff = max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
print(json.dumps({
    "steps": steps, "killed_after_checkpoint": kill_at, "tensors": len(a),
    "max_abs_weight_diff": diff, "bitwise_equal": all(a[k].equal(b[k]) for k in a),
}))
EOF
