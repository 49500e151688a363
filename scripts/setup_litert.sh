#!/usr/bin/env bash
# Idempotent set-up of the LiteRT environment for the host runtime benchmark (bench_runtime.py --litert ENV):
# LiteRT (ai-edge-litert, XNNPACK delegate) plus the onnx2tf ONNX -> .tflite converter, in a virtual
# environment of its own OUTSIDE the work tree. onnx2tf pulls TensorFlow and pins numpy/onnx/protobuf of its
# own, which must never meet the locked torch in .venv. About 2.6 GB; the first run takes ~1.5 min with a warm
# pip cache, a second run only checks a stamp.
#   ENV: ${EDGEKD_LITERT_ENV:-$HOME/.cache/edgekd/litert-env}; Python: ${EDGEKD_LITERT_PYTHON:-python3.11}.
# onnx2tf 2.x needs Python >= 3.12; 1.29.24 is its last release for 3.11 and pins this exact set (verified
# together, `pip check` clean). Prints the env folder on success (for --litert), one "setup_litert: ..." line
# on failure.
set -euo pipefail

env_dir="${EDGEKD_LITERT_ENV:-$HOME/.cache/edgekd/litert-env}"
fail() { echo "setup_litert: $*" >&2; exit 1; }

# Exact pins: onnx2tf 1.29.24 with everything it resolved to on CPython 3.11 x86_64 (pip freeze).
lock=(
  pip==26.3
  absl-py==2.5.1 ai-edge-litert==2.1.0 astunparse==1.6.3 backports.strenum==1.2.8 certifi==2026.10.19.post1
  charset-normalizer==3.5.3 coloredlogs==15.0.1 flatbuffers==25.12.19 gast==0.7.0 google-pasta==0.2.0
  grpcio==1.85.3 h5py==3.11.0 humanfriendly==10.0 idna==3.20 json2onnx==2.0.3 keras==3.15.1 libclang==18.1.1
  Markdown==3.11.3 markdown-it-py==4.3.0 MarkupSafe==3.0.4 mdurl==0.1.2 ml_dtypes==0.5.1 mpmath==1.3.0
  namex==0.1.0 numpy==1.26.4 onnx==1.19.1 onnx2json==2.0.4 onnx2tf==1.29.24 onnx_graphsurgeon==0.5.8
  onnxoptimizer==0.4.2 onnxruntime==1.23.0 onnxsim==0.4.36 opencv-python==4.11.0.86 opt_einsum==3.4.0
  optree==0.20.0 packaging==26.4 protobuf==4.25.5 psutil==5.9.5 Pygments==2.21.0 requests==2.32.5 rich==15.0.0
  sam4onnx==2.0.0 sbi4onnx==1.0.7 scc4onnx==1.0.7 scs4onnx==1.0.18 sde4onnx==1.0.0 sed4onnx==1.0.5
  simple_onnx_processing_tools==1.1.32 sio4onnx==1.0.3 sit4onnx==1.0.10 six==1.17.0 sna4onnx==1.0.6
  snc4onnx==1.0.14 snd4onnx==1.1.7 sne4onnx==2.0.1 sng4onnx==2.0.1 soa4onnx==1.0.5 soc4onnx==1.0.2
  sod4onnx==1.0.0 sog4onnx==1.0.17 sor4onnx==1.0.7 spo4onnx==1.0.5 ssc4onnx==1.0.8 ssi4onnx==1.0.4
  svs4onnx==1.0.0 sympy==1.14.0 tensorboard==2.19.0 tensorboard-data-server==0.7.2 tensorflow==2.19.0
  tensorflow-io-gcs-filesystem==0.37.1 termcolor==3.3.0 tf_keras==2.19.0 tqdm==4.70.1 typing_extensions==4.16.0
  urllib3==2.8.0 Werkzeug==3.1.9 wrapt==2.5.2
)

python="${EDGEKD_LITERT_PYTHON:-}"
if [ -z "$python" ]; then
  # The pins above are for 3.11 (numpy 1.26.4, TensorFlow 2.19 wheels); take 3.11 wherever the machine has it.
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 \
        && [ "$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "3.11" ]; then
      python="$candidate"; break
    fi
  done
  [ -n "$python" ] || fail "no Python 3.11 found (the pinned wheels need it); set EDGEKD_LITERT_PYTHON to one"
fi

pyversion=$("$python" -c 'import sys; print(sys.version)' 2>/dev/null) || fail "cannot run Python '$python'"
stamp="$env_dir/.edgekd-litert.sha256"
want=$(printf '%s\n' "${lock[@]}" "$pyversion" | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -x "$env_dir/bin/python" ]; then
  if [ -e "$env_dir" ] && [ ! -f "$env_dir/pyvenv.cfg" ] && [ -n "$(ls -A "$env_dir" 2>/dev/null)" ]; then
    fail "$env_dir exists and is not a virtual environment; point EDGEKD_LITERT_ENV elsewhere"
  fi
  echo "setup_litert: installing LiteRT + onnx2tf into $env_dir (~2.6 GB, TensorFlow included)" >&2
  mkdir -p "$env_dir"
  log="$env_dir.setup.log"  # beside the env: venv --clear would delete it inside
  # A stale env (other pins) is updated in place by pip; one made by another Python is rebuilt.
  if [ ! -x "$env_dir/bin/python" ] \
      || [ "$("$env_dir/bin/python" -c 'import sys; print(sys.version)' 2>/dev/null)" != "$pyversion" ]; then
    "$python" -m venv --clear "$env_dir" >"$log" 2>&1 || fail "'$python -m venv $env_dir' failed; see $log"
  fi
  req="$env_dir/requirements.txt"
  printf '%s\n' "${lock[@]}" >"$req"
  { "$env_dir/bin/python" -m pip install "${lock[0]}" &&    # the pip these pins were resolved with
    "$env_dir/bin/python" -m pip install -r "$req" &&
    "$env_dir/bin/python" -m pip check; } >>"$log" 2>&1 \
    || fail "pip failed ($(grep -E '^ERROR|Error' "$log" | tail -n 1)); full log in $log"
  echo "$want" >"$stamp"
fi
# Cheap sanity check (no TensorFlow import): LiteRT's interpreter loads and onnx2tf is installed.
"$env_dir/bin/python" -c "import ai_edge_litert.interpreter, importlib.metadata as m; m.version('onnx2tf')" \
  2>/dev/null || fail "the environment $env_dir is broken; delete it and run again"
echo "$env_dir"
