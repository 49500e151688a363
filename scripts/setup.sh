#!/usr/bin/env bash
# One-shot, idempotent set-up of everything edgekd and its tests need on a fresh Debian/Ubuntu machine:
#   - system packages: openssh-server (loopback test boards), qemu-user + the aarch64 glibc sysroot
#     (emulated aarch64 board), binutils (readelf checks), chromium + chromium-driver (the HTML report is
#     checked in headless Chromium);
#   - a virtual environment .venv with the locked Python packages (requirements.lock) and edgekd itself.
# Re-running it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v /usr/sbin/sshd >/dev/null 2>&1 || need_apt+=(openssh-server)
command -v qemu-aarch64 >/dev/null 2>&1 || need_apt+=(qemu-user)
[ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ] || need_apt+=(g++-aarch64-linux-gnu)
command -v readelf >/dev/null 2>&1 || need_apt+=(binutils)
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)                        # torch.compile (inductor) on the host: tests/learn
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)              # the report tests' headless browser
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${need_apt[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.edgekd-requirements.sha256
want=$(sha256sum requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing Python packages from requirements.lock (torch is ~5 GB the first time)" >&2
  log=.venv/setup.log
  { .venv/bin/python -m pip install --upgrade pip &&
    .venv/bin/python -m pip install -r requirements.lock &&
    .venv/bin/python -m pip install --no-deps -e . ; } >"$log" 2>&1 \
    || { tail -n 40 "$log" >&2; echo "setup: pip failed; full log in $log" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
.venv/bin/python -c "import torch, torchvision, tvm, paramiko, torch_pruning, onnxruntime" \
  || { echo "setup: the virtual environment is broken; delete .venv and run again" >&2; exit 1; }
