#!/usr/bin/env bash
# simreg's align methods side by side with AROSICS (COREG, COREG_LOCAL) and GeFolki (issue 18)
# on every real optical/SAR pair of ../shared/realdata, each with known global shifts and one
# smooth field: shift-difference and absolute errors, wall time, failures, megapixels per second,
# and issue 18's targets printed met or missed. Details: scripts/bench_peers.py.
# Usage: scripts/bench_peers.sh [THREADS]        (results under bench-out/peers)
# Environment:
#   MODEL       also run --method network, and auto with the network fused (RUN/train)
#   PEERS_VENV  an existing venv with the peers (default: bench-out/peers/venv, made here)
#   PAIRS       comma-separated pair names (default: all)
# The venv: Debian's python3 (python3-gdal, numpy) with --system-site-packages, so that it sees
# Debian's GDAL bindings; gdal==3.6.2 and numpy<2 pinned (this gives arosics 1.12.1), and
# scikit-image<0.26 (gefolki 1.1.0 crashes under 0.26; 0.25 still needs the cast in
# bench_peers.py).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-$(nproc)}
SIMREG=./target/release/simreg
[ -x "$SIMREG" ] || { echo "build first: make build" >&2; exit 1; }
[ -d ../shared/realdata ] || { echo "bench_peers: ../shared/realdata: missing (the real pairs)" >&2; exit 1; }
VENV=${PEERS_VENV:-bench-out/peers/venv}
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import arosics, gefolki" 2>/dev/null; then
  echo "bench_peers: installing AROSICS and GeFolki into $VENV" >&2
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
  "$VENV/bin/pip" install -q "gdal==3.6.2" "numpy<2" "arosics==1.12.1" "gefolki==1.1.0" "scikit-image<0.26"
fi
export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
# Every method's sign convention, on a synthetic pair with a known shift, then the cases.
"$VENV/bin/python" scripts/bench_peers.py --check-conventions --threads "$THREADS" 2>&1 | grep "convention:"
exec "$VENV/bin/python" scripts/bench_peers.py --threads "$THREADS" ${MODEL:+--model "$MODEL"} ${PAIRS:+--pairs "$PAIRS"}
