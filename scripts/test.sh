#!/usr/bin/env bash
# The test command: set-up (idempotent), lint, then the whole test suite (real sshd, TVM, zig, qemu).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check edgekd tests scripts
exec .venv/bin/python -m pytest "$@"
