#!/usr/bin/env bash
# The test command: set-up (idempotent, the LiteRT environment included), lint, then the whole test suite
# (real sshd, TVM, zig, qemu).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup_litert.sh >/dev/null  # the LiteRT baseline's converter environment (tests/integration)
.venv/bin/ruff check edgekd tests scripts
exec .venv/bin/python -m pytest "$@"
