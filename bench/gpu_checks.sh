#!/bin/bash
# Every GPU check of lm-edit in one call, for a short lease on a one-GPU machine:
#   1. the device-placement tests (blocks split between the GPU and the CPU),
#   2. bench/bench_gpu.py on a Llama-2-7B-shaped model with random weights in bfloat16,
#   3. the reference's timing (EasyEdit's ROME and MEMIT on the same model), when a
#      script for it is given in REFERENCE_TIMING (it lives outside the repository).
# Results go to $OUT (default ./gpu-figures). Each step has its own time limit so that a
# slow one cannot take the others' time.
set -u
OUT=${OUT:-gpu-figures}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}.
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/gpu.txt"
# LoRA on the GPU/CPU split first, alone and with its whole traceback (it failed on an H200
# once, with the traceback lost to the time limit). SIGINT at the limit makes pytest print
# the failures it has so far instead of dying silently; -k kills it 15 s later if it hangs.
timeout -s INT -k 15 "${LORA_S:-60}" python3 -m pytest -q -p no:cacheprovider --tb=long -rxXf \
  tests/test_placement.py -k "lora and cuda" > "$OUT/placement_lora.txt" 2>&1
grep -E "^(FAILED|ERROR|XFAIL|XPASS)|passed|failed|Error" "$OUT/placement_lora.txt" | head -n 20
timeout -s INT -k 15 "${PLACEMENT_S:-150}" python3 -m pytest -q -p no:cacheprovider --tb=short \
  -rf tests/test_placement.py -k "not (lora and cuda)" > "$OUT/placement.txt" 2>&1
grep -E "^(FAILED|ERROR)|passed|failed" "$OUT/placement.txt"
timeout "${BENCH_S:-300}" python3 bench/bench_gpu.py --size 7b --device cuda --dtype bfloat16 \
  --memit-batches "${MEMIT_BATCHES:-1,100}" --out "$OUT/lm_edit_gpu.json" > "$OUT/bench.log" 2>&1
grep -v "it/s\|batch/s\|edit/s\|passage/s" "$OUT/bench.log" | tail -n 30
if [ -n "${REFERENCE_TIMING:-}" ]; then
  timeout "${REFERENCE_S:-200}" python3 "$REFERENCE_TIMING" --out "$OUT/reference_gpu.json" 2>&1 | tail -n 30
fi
