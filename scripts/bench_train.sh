#!/usr/bin/env bash
# Training throughput: simreg-learn (Rust, tch) against the same network, loss and optimiser in
# PyTorch eager (scripts/bench_train.py), same batch, threads and input size, random inputs,
# both measured in this one run (best of 3 each). Both use the same libtorch 2.13.0.
# Python's `import torch` needs the wheel's CUDA dependencies, which the CPU set-up leaves out:
# the first run installs them into the cached venv (~2.7 GB, a few minutes).
# Usage: scripts/bench_train.sh [BATCH] [WIDTH] [DEPTH]   (defaults 16 8 4: `simreg train`'s network)
set -euo pipefail
cd "$(dirname "$0")/.."
BATCH=${1:-16}
WIDTH=${2:-8}
DEPTH=${3:-4}
THREADS=$(nproc)
LEARN=./target/release/simreg-learn
PY=.venv/bin/python
[ -x "$LEARN" ] || { echo "build first: make build" >&2; exit 1; }
if ! "$PY" -c 'import torch' 2>/dev/null; then
  echo "installing PyTorch's Python dependencies into the cached venv (once)" >&2
  "$PY" -m pip install -q --disable-pip-version-check "torch==2.13.0"
fi
ARGS=(--batch "$BATCH" --width "$WIDTH" --tile 64 --reference-bands 4 --moving-bands 2 --depth "$DEPTH" --corr-radius 3 --warmup 5 --steps 30)
best() { python3 -c 'import sys, json; print(max(json.loads(l)["samples_per_s"] for l in sys.stdin))'; }
rust=$(for _ in 1 2 3; do OMP_NUM_THREADS=$THREADS "$LEARN" --threads "$THREADS" bench-train "${ARGS[@]}"; done | best)
py=$(for _ in 1 2 3; do OMP_NUM_THREADS=$THREADS "$PY" scripts/bench_train.py --threads "$THREADS" "${ARGS[@]}"; done | best)
python3 - "$rust" "$py" "$BATCH" "$WIDTH" "$THREADS" "$DEPTH" <<'PY'
import sys
rust, py = float(sys.argv[1]), float(sys.argv[2])
print(f"training step, 64x64 tiles (4+2 bands), batch {sys.argv[3]}, width {sys.argv[4]}, depth {sys.argv[6]}, threads {sys.argv[5]}")
print(f"  simreg-learn (tch) : {rust:8.1f} samples/s")
print(f"  PyTorch eager      : {py:8.1f} samples/s")
print(f"  ratio              : {rust / py:.2f}x")
PY
