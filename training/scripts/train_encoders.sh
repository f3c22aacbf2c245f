#!/usr/bin/env bash
# The tiny FOA-VAE and SVAC from nothing, in about an hour on two CPU cores: the video
# direction cue first on both cores, then three training runs in two lanes of one thread
# each, one MLflow pipeline run over them, a bundle, and the evaluations.
#
#   first:  video direction cue (CUE_STEPS), data-parallel over CUE_PROCS processes
#   lane 1: SVAC, all four negatives (SVAC_STEPS), its content also asked to tell the time
#           shifts apart on its own
#   lane 2: FOA-VAE (VAE_STEPS), then SVAC with batch negatives only (the ablation)
#
# The SVACs' spatial code reads the cue's cell map at cue_share 0.5 (training/EXPERIMENTS.md,
# "SVAC"), so the cue trains first: on both cores (torchrun, one thread a process, the batch
# split between them) it takes about half its one-core time, and both lanes need it. OUT/trained
# holds the VAE, the SVAC and the cue as trained, OUT/ablation_trained the ablation's SVAC.
# Then each SVAC's part weights (content, spatial code, activity map) are chosen on DATA's
# test split (`eval svac --weighings`): OUT/bundle and OUT/ablation are those bundles so
# weighed (load one with --model OUT/bundle). Prints one JSON object: each stage's wall
# time, the total, the weighings, and `eval vae` / `eval svac` of both on the test split of
# DATA and of every corpus in EVAL_DATA (SVAC also as trained: `as_trained`).
#
#   training/scripts/train_encoders.sh DATA [OUT=runs/encoders]
#   e.g. swansphere data synth --out corpus --clips 800 --split train --preset small --seed 1
#        swansphere data synth --out corpus --clips 64 --split test --preset small --seed 1
#        swansphere data caption corpus
#        training/scripts/train_encoders.sh corpus
#
# Environment: VAE_STEPS (600), CUE_STEPS (2250), CUE_PROCS (2; 1 trains the cue without
# torchrun), CUE_BATCH (8, split between the processes), CUE_FROM (a bundle whose direction
# cue the SVACs carry instead of one trained here, e.g. default: the shipped cue, trained
# far longer than this hour allows), SVAC_STEPS (1000), SVAC_BATCH (12), EVAL_CLIPS (128),
# EVAL_DATA (more test corpora, space-separated), CHOOSE_WEIGHING (1; 0 bundles the SVACs
# weighed as trained), SWANSPHERE_NO_TRACK=1 (no MLflow), MLFLOW_RUN_ID (a pipeline run
# to nest under instead of a new one, as `mlflow run mlflow -e encoders` sets it),
# SWANSPHERE (the command), PYTHON.
set -euo pipefail
data=${1:?corpus root (train/ and test/ splits, captioned)}
out=${2:-runs/encoders}
vae_steps=${VAE_STEPS:-600}
cue_steps=${CUE_STEPS:-2250}
cue_procs=${CUE_PROCS:-2}
cue_batch=${CUE_BATCH:-8}
svac_steps=${SVAC_STEPS:-1000}
svac_batch=${SVAC_BATCH:-12}
eval_clips=${EVAL_CLIPS:-128}
choose_weighing=${CHOOSE_WEIGHING:-1}
swansphere=${SWANSPHERE:-swansphere}
python=${PYTHON:-python}
if [ ! -d "$data/train" ] || [ ! -d "$data/test" ]; then
    echo "$data: no train/ and test/ splits (swansphere data synth writes them)" >&2
    exit 2
fi
if [ "$cue_procs" -lt 1 ] || [ $((cue_batch % cue_procs)) != 0 ]; then
    echo "CUE_BATCH ($cue_batch) must split evenly between CUE_PROCS ($cue_procs) processes" >&2
    exit 2
fi
if [ -e "$out/runs" ]; then  # a stage would write its checkpoints among the old ones
    echo "$out already holds runs: name another OUT or remove it" >&2
    exit 2
fi
mkdir -p "$out/logs" "$out/times"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1  # one core a lane (and a cue process)

track=()
pipeline_run=
begun=
if [ "${SWANSPHERE_NO_TRACK:-0}" = 1 ]; then
    track=(--no-track)
elif [ -n "${MLFLOW_RUN_ID:-}" ]; then
    pipeline_run=$MLFLOW_RUN_ID  # `mlflow run -e encoders` made the pipeline run and ends it
else
    cue_params=(--param cue_steps="$cue_steps" --param cue_procs="$cue_procs")
    [ -z "${CUE_FROM:-}" ] || cue_params=(--param cue_from="$CUE_FROM")
    pipeline_run=$("$python" -m swansphere_training.tracking begin encoders \
        --param data="$data" --param vae_steps="$vae_steps" "${cue_params[@]}" \
        --param svac_steps="$svac_steps" --param svac_batch="$svac_batch")
    begun=$pipeline_run
fi
finish() {
    local status=$?
    [ -z "$begun" ] || "$python" -m swansphere_training.tracking end "$begun" \
        --status "$([ "$status" = 0 ] && echo FINISHED || echo FAILED)"
}
trap finish EXIT

since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f\n", b - a }'; }

# [stdout_to=FILE] timed NAME CMD...: run CMD, log to OUT/logs/NAME.log (its standard
# output to FILE instead when given), its wall seconds to OUT/times/NAME.
timed() {
    local name=$1 start=$EPOCHREALTIME
    shift
    local status=0
    if [ -n "${stdout_to:-}" ]; then
        "$@" > "$stdout_to" 2> "$out/logs/$name.log" || status=$?
    else
        "$@" > "$out/logs/$name.log" 2>&1 || status=$?
    fi
    if [ "$status" != 0 ]; then  # 143: stopped because the other lane failed
        echo "$name: exit status $status; the end of $out/logs/$name.log:" >&2
        tail -c 3000 "$out/logs/$name.log" | tr '\r' '\n' | tail -n 20 >&2
        return 1
    fi
    since "$start" > "$out/times/$name"
}

# lanes PID...: wait for the lanes; when one fails, stop the others and fail.
lanes() {
    local pids=("$@") ended pid rest
    while [ "${#pids[@]}" -gt 0 ]; do
        if ! wait -n -p ended "${pids[@]}"; then
            for pid in "${pids[@]}"; do pkill -P "$pid" 2>/dev/null || true; done
            return 1
        fi
        rest=()
        for pid in "${pids[@]}"; do [ "$pid" = "$ended" ] || rest+=("$pid"); done
        pids=("${rest[@]}")
    done
}

# [procs=N] train STAGE NAME STEPS [--set ...]: each stage nests under the pipeline run;
# with procs > 1, data-parallel over that many processes through torchrun.
train() {
    local stage=$1 name=$2 steps=$3 run=("$swansphere")
    shift 3
    if [ "${procs:-1}" -gt 1 ]; then
        run=("$python" -m torch.distributed.run --standalone --nproc_per_node="$procs"
             "$(command -v "$swansphere")")
    fi
    MLFLOW_RUN_ID=$pipeline_run timed "$name" "${run[@]}" train "$stage" --data "$data" \
        --preset tiny --steps "$steps" --out "$out/runs/$name" --eval-every 0 "${track[@]}" "$@"
}

# The content pools with the code's saliency without moving it (content_pooling
# "detached"): its own shift loss would pull the saliency away from where the code needs it.
svac_settings=(--set batch_size="$svac_batch" --set cue_from="$out/cue"
               --set 'model={"cue_share": 0.5, "content_pooling": "detached"}')
start=$EPOCHREALTIME
if [ -n "${CUE_FROM:-}" ]; then
    # A given cue: OUT/cue holds it alone, and the bundles take it from there.
    timed cue_bundle "$swansphere" bundle "$out/cue" --base "$CUE_FROM" --keep direction
    cue_source=(--base "$out/cue")
else
    # The cue, data-parallel: each process takes CUE_BATCH / CUE_PROCS crops of every batch.
    decay=$((cue_steps > 100 ? cue_steps - 50 : 0))  # anneal to 0 after the 50 warm-up steps
    procs=$cue_procs train direction cue "$cue_steps" --set batch_size=$((cue_batch / cue_procs)) \
        --set lr=1.5e-3 --set lr_decay_steps="$decay" --set cell_weight=1.0 \
        --set 'cell_pulse="mean"' --set caption_dropout=0.25
    timed cue_bundle "$swansphere" bundle "$out/cue" --direction "$out/runs/cue" --data "$data"
    cue_source=(--direction "$out/runs/cue")
fi
(
    train svac svac "$svac_steps" "${svac_settings[@]}" \
        --set 'negatives={"n_time_shift": 1, "n_rotation": 1, "n_roll": 1}' \
        --set content_shift_weight=1.0
) &
lane1=$!
(
    train vae vae "$vae_steps"
    train svac svac_ablation "$svac_steps" "${svac_settings[@]}" \
        --set 'negatives={"time_shift": false, "rotation": false, "roll": false}'
) &
lane2=$!
lanes "$lane1" "$lane2"
since "$start" > "$out/times/training"

timed trained_bundle "$swansphere" bundle "$out/trained" --vae "$out/runs/vae" \
    --svac "$out/runs/svac" "${cue_source[@]}" --data "$data"
timed ablation_trained_bundle "$swansphere" bundle "$out/ablation_trained" \
    --svac "$out/runs/svac_ablation" "${cue_source[@]}" --data "$data"

# weigh NAME BASE TO: how much of the similarity each SVAC part takes (content, spatial code,
# activity map) is chosen after training, so `eval svac --weighings` scores a fixed grid of
# shares on DATA's test split, which no stage trains on, and TO is BASE with the one whose
# worst score is furthest above its target. EVAL_DATA takes no part in the choice.
weigh() {
    local name=$1 base=$2 to=$3
    stdout_to="$out/weighing_$name.json" timed "weigh_$name" "$swansphere" eval svac \
        --model "$base" --data "$data" --clips "$eval_clips" --weighings --json
    timed "${name}_bundle" "$swansphere" bundle "$to" --base "$base" \
        --weighing "$out/weighing_$name.json"
}
if [ "$choose_weighing" = 1 ]; then
    weigh svac "$out/trained" "$out/bundle" &
    weigh1=$!
    weigh ablation "$out/ablation_trained" "$out/ablation" &
    weigh2=$!
    lanes "$weigh1" "$weigh2"
else
    cp -r "$out/trained" "$out/bundle"
    cp -r "$out/ablation_trained" "$out/ablation"
fi

# Evaluations, two lanes again: the bundle's VAE and SVAC in one, the ablation in the other.
sets=("$data" ${EVAL_DATA:-})
(
    for i in "${!sets[@]}"; do
        timed "eval_vae_$i" "$swansphere" eval vae --model "$out/bundle" --data "${sets[$i]}" \
            --clips 32 --json
        timed "eval_svac_$i" "$swansphere" eval svac --model "$out/bundle" \
            --data "${sets[$i]}" --clips "$eval_clips" --weighings --json
    done
) &
eval1=$!
(
    for i in "${!sets[@]}"; do
        timed "eval_ablation_$i" "$swansphere" eval svac --model "$out/ablation" \
            --data "${sets[$i]}" --clips "$eval_clips" --weighings --json
    done
) &
eval2=$!
lanes "$eval1" "$eval2"

"$python" - "$out" "${sets[@]}" <<'EOF'
import json
import sys
from pathlib import Path

out, sets = Path(sys.argv[1]), sys.argv[2:]


def last_json(log: Path) -> dict:
    """The JSON object that ends a command's log (progress bars may come before it)."""
    text = log.read_text().rstrip()
    decoder = json.JSONDecoder()
    start = len(text)
    while (start := text.rfind("{", 0, start)) >= 0:
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        if end == len(text):
            return value
    raise SystemExit(f"{log}: it does not end with a JSON object")


times = {p.name: round(float(p.read_text()), 1) for p in sorted((out / "times").iterdir())}
report = {
    "out": str(out),
    "bundle": str(out / "bundle"),
    "seconds": {k: v for k, v in times.items() if not k.startswith("eval_")},
    "training_minutes": round(times["training"] / 60, 1),
    "eval": {},
}
weighed = {}  # the SVACs' weights as trained, where a weighing was chosen
for name in ("svac", "ablation"):
    path = out / f"weighing_{name}.json"
    if path.is_file():
        weighing = json.loads(path.read_text())
        weighed[name] = weighing["weights"]
        report[f"weighing_{name}"] = {"trained": weighing["weights"], "chosen": weighing["chosen"]}


def svac_eval(log: Path, name: str) -> dict:
    """`eval svac --weighings` without its list of candidates, with the scores of the
    weighing as trained (``as_trained``) beside the bundle's when it was chosen."""
    result = last_json(log)
    candidates = result.pop("weighings")
    for key in ("chosen", "targets"):
        result.pop(key)
    if name in weighed:
        trained = weighed[name]
        result["as_trained"] = next(
            (c for c in candidates if all(c[k] == v for k, v in trained.items())), None
        )
    return result


for i, corpus in enumerate(sets):
    report["eval"][corpus] = {
        "vae": last_json(out / "logs" / f"eval_vae_{i}.log"),
        "svac": svac_eval(out / "logs" / f"eval_svac_{i}.log", "svac"),
        "svac_ablation": svac_eval(out / "logs" / f"eval_ablation_{i}.log", "ablation"),
    }
(out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
print(json.dumps(report, indent=2))
EOF
