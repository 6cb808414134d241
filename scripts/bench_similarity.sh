#!/usr/bin/env bash
# Similarity-stage benchmarks (issue 5), each side by side in this one run:
#   1. per-sample Jacobian throughput: `simreg-learn bench-jacobian` against PyTorch torch.func
#      (vmap(jacrev(functional_call)), scripts/bench_similarity.py) on the same network, batch,
#      threads and input size, random inputs; best of 3 each, the two sides alternating. On the
#      default (noise-sweep) network and on the small network of parts 2 and 3.
#   2. N_S cost growth: `simreg-learn bench-ns` for N = 1k, 2k, 4k, 8k, each N in its own
#      process (time and peak RSS per process), on the small network (the default one is too
#      slow on 2 cores: 2 passes × 8k Jacobians at ~16/s).
#   3. The reference code's method at N = 2000 (PyTorch, batch 1, one backward pass per sample
#      and output component, gradients saved as .npy files in a temporary directory, numpy two
#      passes; timed as a whole, files deleted) against `simreg-learn bench-ns --n 2000`, on the
#      same small network (REF_NET=full: the default network), the Rust run right after the
#      reference one.
# Before timing: the two networks' parameter counts must agree (Rust and Python), and the
# Python side checks itself (torch.func = the reference loop; N_S sane on random inputs).
# Both sides use libtorch 2.13.0 (the project's cached venv, .venv; Python's `import torch`
# needs the wheel's CUDA dependencies, installed once as in scripts/bench_train.sh).
# Usage: scripts/bench_similarity.sh [THREADS]   (default: nproc; results under bench-out/similarity)
# Environment:
#   SIMREG_LEARN  the binary (default target/release/simreg-learn)
#   SMALL_NET     the small network's options (default: the default network with --tile 32 --width 4)
#   NS_SIZES      part 2's N (default "1000 2000 4000 8000")
#   REF_N, REF_NET  part 3's N (default 2000) and network: small (default) or full
#   BATCH, REPS   batch (default 32), runs of part 1 per side (default 3)
#   PARTS         which parts to run (default "1 2 3"; the table shows those)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-$(nproc)}
LEARN=${SIMREG_LEARN:-./target/release/simreg-learn}
PY=.venv/bin/python
BATCH=${BATCH:-32}
REPS=${REPS:-3}
read -r -a SMALLNET <<< "${SMALL_NET:---tile 32 --reference-bands 4 --moving-bands 2 --width 4 --depth 3 --corr-radius 3}"
read -r -a NS_SIZES <<< "${NS_SIZES:-1000 2000 4000 8000}"
REF_N=${REF_N:-2000}
REF_NET=${REF_NET:-small}
case "$REF_NET" in small|full) ;; *) echo "REF_NET must be small or full" >&2; exit 2;; esac
PARTS=" ${PARTS:-1 2 3} "
part() { [[ "$PARTS" == *" $1 "* ]]; }
W=bench-out/similarity
[ -x "$LEARN" ] || { echo "build first: make build" >&2; exit 1; }
if ! "$PY" -c 'import torch, numpy' 2>/dev/null; then
  echo "installing PyTorch's Python dependencies into the cached venv (once)" >&2
  "$PY" -m pip install -q --disable-pip-version-check "torch==2.13.0" numpy
fi
mkdir -p "$W"
OUT="$W/results.jsonl"
: > "$OUT"
export OMP_NUM_THREADS=$THREADS
# The network options both sides take (the defaults of `simreg-learn bench-*`, spelled out).
FULL=(--tile 64 --reference-bands 4 --moving-bands 2 --width 8 --depth 3 --corr-radius 3)
log() { echo "bench_similarity: $*" >&2; }
# record TAG JSON...: one line per measurement, tagged.
record() { local tag=$1; shift; for j in "$@"; do python3 -c 'import json,sys; d=json.loads(sys.argv[2]); d["tag"]=sys.argv[1]; print(json.dumps(d))' "$tag" "$j" >> "$OUT"; done; }
rust() { "$LEARN" --threads "$THREADS" "$@"; }
pyb() { "$PY" scripts/bench_similarity.py "$1" --threads "$THREADS" "${@:2}"; }

# --- 0. same network on both sides, and the Python side's self-check --------------------
for net in full small; do
  if [ $net = full ]; then opts=("${FULL[@]}"); else opts=("${SMALLNET[@]}"); fi
  pr=$(rust bench-jacobian "${opts[@]}" --batch 1 --warmup 0 --steps 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["params"])')
  pp=$(pyb params "${opts[@]}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["params"])')
  echo "parameters, $net network (${opts[*]}): simreg-learn $pr, PyTorch $pp"
  [ "$pr" = "$pp" ] || { echo "bench_similarity: the two networks differ ($pr vs $pp parameters)" >&2; exit 1; }
  record "params_$net" "{\"rust\": $pr, \"python\": $pp}"
done
log "self-check of the Python side (float64)"
record check "$(pyb check "${SMALLNET[@]}")"

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min), $(getconf _NPROCESSORS_ONLN) cores"

# --- 1. per-sample Jacobian throughput --------------------------------------------------
part 1 && for net in full small; do
  if [ $net = full ]; then opts=("${FULL[@]}"); else opts=("${SMALLNET[@]}"); fi
  for i in $(seq "$REPS"); do
    log "Jacobians, $net network, run $i/$REPS"
    record "jac_rust_$net" "$(rust bench-jacobian "${opts[@]}" --batch "$BATCH" --warmup 2 --steps 10)"
    record "jac_py_$net" "$(pyb jacobian "${opts[@]}" --batch "$BATCH" --warmup 2 --steps 10)"
  done
done

# --- 2. N_S cost growth (each N its own process) -----------------------------------------
part 2 && for n in "${NS_SIZES[@]}"; do
  log "N_S, N = $n"
  record "ns_$n" "$(rust bench-ns "${SMALLNET[@]}" --n "$n" --batch "$BATCH")"
done

# --- 3. the reference code's method against simreg-learn --------------------------------
if part 3; then
  if [ "$REF_NET" = full ]; then ropts=("${FULL[@]}"); else ropts=("${SMALLNET[@]}"); fi
  log "reference method, N = $REF_N, $REF_NET network (gradients, .npy files, numpy passes)"
  record ref_py "$(pyb reference "${ropts[@]}" --n "$REF_N" --tmpdir "${TMPDIR:-/tmp}")"
  log "simreg-learn bench-ns, N = $REF_N, $REF_NET network"
  record ref_rust "$(rust bench-ns "${ropts[@]}" --n "$REF_N" --batch "$BATCH")"
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min)"

# --- table -----------------------------------------------------------------------------
python3 - "$OUT" "$THREADS" "$BATCH" "${SMALLNET[*]}" "$REF_NET" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault(r["tag"], []).append(r)
threads, batch, small = sys.argv[2], sys.argv[3], sys.argv[4]
print(f"\nsimilarity benchmarks, threads {threads}, batch {batch}; small network: {small}")
if "jac_rust_full" in by:
    print("\n1. per-sample Jacobians/s (best of the runs; goal ≥ 2×)")
    print(f"  {'network':<8} {'params':>8} {'simreg-learn':>13} {'torch.func':>11} {'ratio':>7}")
    for net in ("full", "small"):
        r = max(x["jacobians_per_s"] for x in by[f"jac_rust_{net}"])
        p = max(x["jacobians_per_s"] for x in by[f"jac_py_{net}"])
        print(f"  {net:<8} {by['params_' + net][0]['rust']:>8} {r:>13.1f} {p:>11.1f} {r / p:>6.2f}x")
ns = sorted((x for t, v in by.items() if t.startswith("ns_") for x in v), key=lambda x: x["n"])
if ns:
    base = ns[0]
    print(f"\n2. N_S, simreg-learn bench-ns (2 passes), one process per N (goals: time ratio 8k/1k ≤ 8.8, peak RSS ≤ 1.1×)")
    print(f"  {'N':>6} {'seconds':>9} {'Jacobians/s':>12} {'peak RSS MB':>12} {'time / N=' + str(base['n']):>14} {'RSS / N=' + str(base['n']):>13} {'mean N_S':>9}")
    for x in ns:
        print(f"  {x['n']:>6} {x['seconds']:>9.1f} {2 * x['n'] / x['seconds']:>12.1f} {x['peak_rss_mb']:>12.1f} {x['seconds'] / base['seconds']:>14.2f} {x['peak_rss_mb'] / base['peak_rss_mb']:>13.3f} {x['ns_mean']:>9.1f}")
if "ref_py" in by:
    ref, rust = by["ref_py"][0], by["ref_rust"][0]
    print(f"\n3. N_S at N = {ref['n']}, {sys.argv[5]} network ({ref['params']} parameters): reference method vs simreg-learn (goal ≥ 20×)")
    print(f"  reference (PyTorch batch 1 + .npy + numpy): {ref['seconds']:8.1f} s  (gradients + saving {ref['gradient_seconds']:.1f} s, numpy passes {ref['numpy_seconds']:.1f} s, {ref['disk_mb']:.0f} MB of .npy, peak RSS {ref['peak_rss_mb']:.0f} MB, mean N_S {ref['ns_mean']:.1f})")
    print(f"  simreg-learn bench-ns                     : {rust['seconds']:8.1f} s  (peak RSS {rust['peak_rss_mb']:.0f} MB, mean N_S {rust['ns_mean']:.1f})")
    print(f"  ratio                                     : {ref['seconds'] / rust['seconds']:.2f}x")
c = by["check"][0]
print(f"\nPython self-check: torch.func vs loop {c['func_vs_loop_rel_f64']:.1e} (f64), {c['func_vs_loop_rel_f32']:.1e} (f32); N_S on 24 random inputs {c['ns_random_min']:.2f}…{c['ns_random_max']:.2f}")
PY
