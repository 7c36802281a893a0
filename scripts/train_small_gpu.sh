#!/usr/bin/env bash
# The heavy stages of fuse-small on one GPU, inside a fixed wall-time budget, with the same train.py and configs
# as the CPU recipe (`make train-small`); only batch sizes, workers, precision and time limits are overridden.
#
#   CORPUS=/tmp/corpus RUNS=/tmp/runs MINUTES_1=4 MINUTES_2=4 bash scripts/train_small_gpu.sh
#
# Phase 1 runs three jobs side by side on the one GPU (small models leave it mostly idle): BEATs pre-training and
# the spectral VAE in both representations, `complex` and `magnitude`. The VAE with the better clean round trip on
# the validation pairs (ESTOI, then SI-SDR) is kept. Phase 2 trains the diffusion UNet on the frozen pair.
set -uo pipefail
CORPUS=${CORPUS:-$HOME/.cache/fuse-corpus}
RUNS=${RUNS:-$HOME/.cache/fuse-hf/runs/fuse-small-gpu}
CONFIGS=${CONFIGS:-configs/fuse-small}
MINUTES_1=${MINUTES_1:-4}
MINUTES_2=${MINUTES_2:-4}
WORKERS=${WORKERS:-4}
BATCH=${BATCH:-32}
PRECISION=${PRECISION:-bf16}
METRICS=${METRICS:-estoi,si_sdr}
LOGS=${LOGS:-$RUNS/logs}
PY=${PYTHON:-python3}
mkdir -p "$RUNS" "$LOGS"

DATA=(--speech_dir "$CORPUS/speech/train" --noise_dir "$CORPUS/noise/train"
      --valid_speech_dir "$CORPUS/speech/valid" --valid_noise_dir "$CORPUS/noise/valid")
COMMON=(--mixed_precision "$PRECISION" --report_to none --checkpointing_steps 1000000 --max_train_steps 1000000
        --validation_metrics "$METRICS" --dataloader_num_workers "$WORKERS" --train_batch_size "$BATCH")

echo "phase 1: beats + vae (complex) + vae (magnitude), $MINUTES_1 min each, $(date)"
"$PY" train.py beats --config "$CONFIGS/beats.yaml" "${DATA[@]}" "${COMMON[@]}" --output_dir "$RUNS/beats" \
  --max_train_minutes "$MINUTES_1" --validation_steps 1000 > "$LOGS/beats.log" 2>&1 &
"$PY" train.py vae --config "$CONFIGS/vae.yaml" "${DATA[@]}" "${COMMON[@]}" --output_dir "$RUNS/vae-complex" \
  --representation complex --max_train_minutes "$MINUTES_1" --validation_steps 500 > "$LOGS/vae-complex.log" 2>&1 &
"$PY" train.py vae --config "$CONFIGS/vae.yaml" "${DATA[@]}" "${COMMON[@]}" --output_dir "$RUNS/vae-magnitude" \
  --representation magnitude --max_train_minutes "$MINUTES_1" --validation_steps 500 > "$LOGS/vae-magnitude.log" 2>&1 &
wait
tail -n 3 "$LOGS"/*.log

BEST=$("$PY" - "$RUNS" <<'EOF'
import json, sys
from pathlib import Path
best, score = None, None
for rep in ("complex", "magnitude"):
    history = Path(sys.argv[1]) / f"vae-{rep}" / "validation_history.jsonl"
    if not (history.parent / "vae" / "config.json").is_file() or not history.is_file():
        continue
    last = json.loads(history.read_text().splitlines()[-1])
    key = (last.get("estoi", -1), last.get("si_sdr", -99))
    print(f"vae-{rep}: step {last['step']} estoi {key[0]:.3f} si_sdr {key[1]:.2f}", file=sys.stderr)
    if score is None or key > score:
        best, score = rep, key
print(best or "")
EOF
)
pack_results() {
  # Small files only: logs, validation histories, curves and figures; the pipeline as fp16 safetensors in parts.
  [ -n "${PACK_TO:-}" ] || return 0
  (cd "$RUNS" && tar czf "$PACK_TO/results.tgz" --exclude='checkpoints' --exclude='*.safetensors' . ) || true
  if [ -f "$RUNS/diffusion/pipeline/model_index.json" ]; then
    "$PY" - "$RUNS/diffusion/pipeline" <<'PYEOF'
import sys, torch
from pathlib import Path
from safetensors.torch import load_file, save_file
for f in Path(sys.argv[1]).rglob("*.safetensors"):
    tensors = load_file(str(f))
    save_file({k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}, str(f))
PYEOF
    (cd "$RUNS/diffusion" && tar cf - pipeline | split -b 15m - "$PACK_TO/pipeline.tar.part-")
  fi
}
trap pack_results EXIT
trap 'exit 143' TERM INT

if [ -z "$BEST" ] || [ ! -f "$RUNS/beats/conditioner/config.json" ]; then
  echo "phase 1 failed: no VAE or no BEATs"; exit 1
fi
echo "kept the $BEST VAE"

echo "phase 2: diffusion, $MINUTES_2 min, $(date)"
"$PY" train.py diffusion --config "$CONFIGS/diffusion.yaml" "${DATA[@]}" "${COMMON[@]}" \
  --output_dir "$RUNS/diffusion" --vae_path "$RUNS/vae-$BEST/vae" --conditioner_path "$RUNS/beats/conditioner" \
  --max_train_minutes "$MINUTES_2" --validation_steps 1000000 --num_validation_pairs "${DIFFUSION_VALID_PAIRS:-8}" \
  --dataloader_num_workers "${WORKERS_2:-12}" --train_batch_size "${BATCH_2:-$BATCH}" > "$LOGS/diffusion.log" 2>&1
tail -n 5 "$LOGS/diffusion.log"
echo "done $(date)"
