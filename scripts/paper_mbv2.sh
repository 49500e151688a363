#!/usr/bin/env bash
# The paper comparison (Ahmed et al., ICPR 2020) at the mbv2 recipe's full schedule — a GPU job:
#   1. edgekd train    the dense CIFAR-10 MobileNetV2 (the paper's baseline, and the teacher), 200 epochs;
#   2. edgekd compress KD + per-stage FLOP budgets from that teacher (30 epochs learning, 60 finetuning);
#   3. edgekd distill  the recipe's uniform x0.75 student, KD from the same teacher, 200 epochs (what a user
#                      would do instead), run beside 2 on the same GPU.
# Every row comes from the real command; each step resumes (--resume) when its run directory exists.
#
#   bash scripts/paper_mbv2.sh DATA OUT [--set KEY=VALUE ...]
#
# DATA holds cifar10-train50k.npz (train 0..39999 minus 5000 validation, test 40000..49999). $EDGEKD is
# the command (default: edgekd). Writes OUT/{teacher,compress,distill}.json and OUT/summary.json.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 DATA OUT [--set KEY=VALUE ...]" >&2; exit 2; }
data=$1 out=$2
shift 2
read -r -a edgekd <<< "${EDGEKD:-edgekd}"
mkdir -p "$out"

step() {  # step NAME COMMAND...: run (or resume) one stage; its JSON on stdout, its log beside it
    local name=$1
    shift
    local resume=()
    [ -d "$out/$name" ] && resume=(--resume)
    "${edgekd[@]}" "$@" --data "$data" --out "$out/$name" "${resume[@]}" --json >"$out/$name.json.tmp" \
        2>"$out/$name.log"
    mv "$out/$name.json.tmp" "$out/$name.json"
}

[ -f "$out/teacher.json" ] || step teacher train --recipe mbv2 "$@"
pids=()
[ -f "$out/compress.json" ] || { step compress compress --recipe mbv2 --teacher "$out/teacher" "$@" & pids+=($!); }
[ -f "$out/distill.json" ] || { step distill distill --recipe mbv2 --teacher "$out/teacher" "$@" & pids+=($!); }
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
[ $status -eq 0 ] || { echo "a stage failed: see $out/*.log" >&2; exit 1; }

python3 - "$out" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
runs = {name: json.loads((out / f"{name}.json").read_text()) for name in ("teacher", "compress", "distill")}
dense = runs["teacher"]
rows = {}
for name, run in runs.items():
    if name == "compress":  # its student is the compact network; its time is the two phases'
        seconds = sum(phase.get("seconds") or 0 for phase in run["phases"].values())
        run = {**run["student"], "seconds": seconds}
    rows[name] = {"test_acc": run["test_acc"], "flops": run["flops"], "params": run["params"],
                  "flop_reduction": dense["flops"] / run["flops"], "param_reduction": dense["params"] / run["params"],
                  "acc_vs_dense_pp": 100 * (run["test_acc"] - dense["test_acc"]), "seconds": run.get("seconds")}
(out / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
for name, row in rows.items():
    print(f"{name:9s} acc {100 * row['test_acc']:.2f}%  ({row['acc_vs_dense_pp']:+.2f} pp)  "
          f"FLOPs /{row['flop_reduction']:.2f}  params /{row['param_reduction']:.2f}  {row['seconds']:.0f} s")
EOF
