#!/usr/bin/env bash
# benchmarks/gpu.py on a GPU machine with JAX (CUDA), Flax, Optax, Orbax and chex installed, from the
# repository's root, in under 8 minutes. Writes gpu.json and gpu.log to $OUT (default ./gpu_out).
#
# Packages the machine lacks and cannot fetch (ml-collections, on this project's lent machines) are
# installed from wheels in .whl/ if that folder exists; make it, on a machine with the registry, with
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps -d .whl 'ml-collections>=1.1'
# and carry it along. jaxdl itself runs from the checkout (PYTHONPATH), not installed.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_out}"
mkdir -p "$out"
if ! python3 -c "import ml_collections" 2>/dev/null; then
  if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/jaxdl-site .whl/*.whl
    export PYTHONPATH="/tmp/jaxdl-site${PYTHONPATH:+:$PYTHONPATH}"
  else
    echo "gpu.sh: ml_collections is missing and there is no .whl/ folder to install it from (see this script's header)" >&2
    exit 2
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee "$out/gpu.log" || true
python3 -c "import jax; print('jax', jax.__version__, jax.devices())" | tee -a "$out/gpu.log"
timeout 470 python3 benchmarks/gpu.py --out "$out" "$@" 2>&1 | tee -a "$out/gpu.log"
