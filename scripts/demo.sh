#!/usr/bin/env bash
# The main job, offline (no download, no data directory, no board): the whole edgekd pipeline on the
# quickstart recipe (generated shapes data) —
#   compress: train a small MobileNetV2 teacher, learn a compact structure by KD under per-block FLOP
#             budgets, prune it physically, finetune it with KD (prints accuracy, FLOPs, params of both);
#   compile:  TVM for the `host` target (model library, C runner, runtime libraries, ONNX), tuned with
#             MetaSchedule on a small budget (untuned TVM is ~100x slower on CPUs: its number would mislead);
#   bench:    run it on the built-in `local` device, check its output against PyTorch, record the rows, with
#             ONNX Runtime timed on the same model in the same bench for comparison.
# The tuning records are kept (~/.cache/edgekd/tuning/host): a second run reuses them and compiles in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out="${1:-runs/demo}"
rm -rf "$out"
.venv/bin/edgekd compress --recipe quickstart --target host --out "$out/compress"
.venv/bin/edgekd compile "$out/compress" --target host --out "$out/artifact" --tune-trials 320 --tune-minutes 2
.venv/bin/edgekd bench "$out/artifact" --device local --repeat 3 --baseline onnxruntime
