#!/usr/bin/env bash
# The main job on an offline default (no download, no data directory): train a small teacher on the
# generated shapes dataset, then distill a narrower student from it; prints accuracy, FLOPs and params.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out="${1:-runs/quickstart-demo}"
rm -rf "$out"
.venv/bin/edgekd train --recipe quickstart --out "$out/teacher"
.venv/bin/edgekd distill --recipe quickstart --teacher "$out/teacher" --out "$out/student"
