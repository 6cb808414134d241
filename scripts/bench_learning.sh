#!/usr/bin/env bash
# How fast the network learns (issue 17): the four targets, measured in this one run, with the
# network and training parameters of `simreg train`'s defaults (batch 16, lr 1e-3, width 8,
# depth 4, correlation radius 3, no augmentation), CPU.
#  1. steps until the held-out RMSE against truth is ≤ 1 px, σ = 0, on the tiles of
#     pipelines/noise_sweep.toml (target ≤ 150; the worst of 3 seeds);
#  2. the same on the real S1/S2 strip of pipelines/real_s1s2_align.toml (target ≤ 300 steps;
#     needs ../shared);
#  3. the two-scene noise sweep (pipelines/noise_sweep.toml, σ ∈ {0, 4}, its [train] section):
#     network against truth, σ = 4 ≤ 1.0 px and σ = 0 ≤ 0.4 px;
#  4. training throughput against the network this one replaced (built from commit $REF, cached
#     under target/bench-ref/) at the nearest parameter count, best of 3 each (target ≥ 0.9×),
#     and against PyTorch eager (scripts/bench_train.sh; target ≥ 1.0×).
# 1 and 2 train with `simreg enforce-study`'s baseline arm: the same training step as `simreg
# train`, evaluated against the truth every 10 steps. Outputs: bench-out/learning/.
# Usage: scripts/bench_learning.sh [all|steps|real|sweep|throughput]   (≈ 25 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
WHAT=${1:-all}
REF=cced837
SIMREG=./target/release/simreg
LEARN=./target/release/simreg-learn
OUT=bench-out/learning
[ -x "$SIMREG" ] && [ -x "$LEARN" ] || { echo "build first: make build" >&2; exit 1; }
mkdir -p "$OUT"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}  # throughput always uses every core

# A pipeline's tile and labels sections only (σ as given; relative paths made absolute), so that
# its tiles are made without its training.
tiles_of() { # PIPELINE SIGMA OUT_TOML
  python3 - "$@" <<'PY'
import os, re, sys
src, sigma, out = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(src).read()
text = text[: text.index("\n[train]")] + "\n"
here = os.path.dirname(os.path.abspath(src))
text = re.sub(r'"([^"]+\.(?:tif|vrt))"', lambda m: '"%s"' % os.path.join(here, m.group(1)), text)
text = re.sub(r'^out = .*$', 'out = "%s"' % os.path.abspath(os.path.splitext(out)[0]), text, flags=re.M)
text = re.sub(r'sigma = [0-9.]+ }', "sigma = %s }" % sigma, text)
open(out, "w").write(text)
PY
}

# Steps to ≤ 1 px (3 seeds, 300 steps, held-out error every 10 steps) on a pipeline's tiles.
steps_to_1px() { # NAME PIPELINE
  local name=$1
  tiles_of "$2" 0.0 "$OUT/$name.toml"
  rm -rf "$OUT/$name" "$OUT/${name}_study"
  "$SIMREG" run -q "$OUT/$name.toml"
  "$SIMREG" enforce-study -q --labels "$OUT/$name/labels" --out "$OUT/${name}_study" --params \
    'seeds = 3, steps = 300, eval_every = 10, threshold_px = 1.0, batch = 16, lr = 1e-3, width = 8, depth = 4, corr_radius = 3, val_tiles = 128, arms = ["baseline"]' >/dev/null
  python3 - "$OUT/${name}_study/enforce_study.json" "$name" "$3" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
a = d["arms"]["baseline"]
steps = a["steps_to_threshold"]
worst = None if None in steps else max(steps)
curve = " ".join("%d:%.2f" % (s, m) for s, m, _ in a["curve"][::3])
print(f"{sys.argv[2]}: steps to <= 1 px per seed {steps} (worst {worst}; target <= {sys.argv[3]}): "
      f"{'MET' if worst is not None and worst <= int(sys.argv[3]) else 'MISSED'}; "
      f"final {a['final_error_mean']:.3f} px; {a['seconds_per_step']:.3f} s/step; {d['params_count']} parameters")
print(f"  mean held-out error against truth by step: {curve}")
PY
}

sweep() {
  python3 - pipelines/noise_sweep.toml "$OUT/sweep.toml" <<'PY'
import os, re, sys
text = open(sys.argv[1]).read()
text = text[: text.index("\n[similarity]")] + "\n"
text = re.sub(r"^sigma = \[.*\]$", "sigma = [0.0, 4.0]", text, flags=re.M)
text = re.sub(r'^out = .*$', 'out = "%s"' % os.path.abspath(sys.argv[2][:-5]), text, flags=re.M)
open(sys.argv[2], "w").write(text)
PY
  rm -rf "$OUT/sweep"
  local t0=$SECONDS
  "$SIMREG" run -q "$OUT/sweep.toml"
  python3 - "$OUT/sweep/noise_sweep.json" $((SECONDS - t0)) <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
rows = {r["sigma_px"]: r for r in d}
for s, target in [(0.0, 0.4), (4.0, 1.0)]:
    r = rows[s]
    n, l = r["net_rmse_truth_px"], r["label_rmse_truth_px"]
    print(f"two-scene sweep, sigma {s:g}: network {n:.3f} px against truth (labels {l:.3f}); "
          f"target <= {target}: {'MET' if n <= target else 'MISSED'}")
print(f"  ({sys.argv[2]} s for both sigma)")
PY
}

throughput() {
  local OMP_NUM_THREADS
  OMP_NUM_THREADS=$(nproc)
  export OMP_NUM_THREADS
  local src=target/bench-ref/src tgt=target/bench-ref/target old
  old=$tgt/release/simreg-learn
  if [ ! -x "$old" ]; then
    echo "building the reference network (commit $REF) once, into target/bench-ref/" >&2
    rm -rf "$src"
    mkdir -p target/bench-ref
    git archive --prefix=src/ "$REF" | tar -x -m -C target/bench-ref  # -m: fresh mtimes, so that cargo rebuilds what the copied target holds
    ln -sfn "$(readlink -f .libtorch)" "$src/.libtorch"
    [ -d "$tgt/release" ] || { mkdir -p "$tgt" && cp -a target/release "$tgt/"; }
    (cd "$src" && CARGO_TARGET_DIR="$PWD/../target" cargo build --release --locked -q -p simreg-learn)
  fi
  local args=(--tile 64 --reference-bands 4 --moving-bands 2 --corr-radius 3 --threads "$(nproc)")
  local timed=(--batch 16 --warmup 5 --steps 30) count=(--batch 2 --warmup 0 --steps 1)
  # The new network at its defaults; the old one at the width whose parameter count is nearest.
  local new_p width
  new_p=$("$LEARN" bench-train "${args[@]}" "${count[@]}" --width 8 --depth 4 | python3 -c 'import json,sys; print(json.load(sys.stdin)["params"])')
  width=$(for w in 6 7 8 9 10 11 12; do "$old" bench-train "${args[@]}" "${count[@]}" --width $w --depth 3 | python3 -c "import json,sys; print(abs(json.load(sys.stdin)['params'] - $new_p), $w)"; done | sort -n | head -1 | cut -d' ' -f2)
  best() { python3 -c 'import sys, json; r = [json.loads(l) for l in sys.stdin]; b = max(r, key=lambda x: x["samples_per_s"]); print(b["samples_per_s"], b["params"])'; }
  rm -f "$OUT/new.jsonl" "$OUT/old.jsonl"
  for _ in 1 2 3; do # alternated, so that both see the same machine
    "$LEARN" bench-train "${args[@]}" "${timed[@]}" --width 8 --depth 4 >>"$OUT/new.jsonl"
    "$old" bench-train "${args[@]}" "${timed[@]}" --width "$width" --depth 3 >>"$OUT/old.jsonl"
  done
  local n o
  n=$(best <"$OUT/new.jsonl")
  o=$(best <"$OUT/old.jsonl")
  python3 - "$n" "$o" "$width" <<'PY'
import sys
(ns, np_), (os_, op) = (map(float, a.split()) for a in sys.argv[1:3])
print(f"throughput, batch 16, 64-px tiles: correlation pyramid (width 8, depth 4, {np_:.0f} parameters) "
      f"{ns:.1f} samples/s; the network it replaced (width {sys.argv[3]}, {op:.0f} parameters) {os_:.1f} samples/s; "
      f"ratio {ns / os_:.2f} (target >= 0.9): {'MET' if ns / os_ >= 0.9 else 'MISSED'}")
PY
  bash scripts/bench_train.sh 16 8 4
}

case $WHAT in
  all) steps_to_1px noise_sweep_tiles pipelines/noise_sweep.toml 150
       if [ -d ../shared/realdata ]; then steps_to_1px real_strip pipelines/real_s1s2_align.toml 300
       else echo "real strip: skipped (no ../shared/realdata)"; fi
       sweep; throughput ;;
  steps) steps_to_1px noise_sweep_tiles pipelines/noise_sweep.toml 150 ;;
  real) steps_to_1px real_strip pipelines/real_s1s2_align.toml 300 ;;
  sweep) sweep ;;
  throughput) throughput ;;
  *) echo "usage: $0 [all|steps|real|sweep|throughput]" >&2; exit 2 ;;
esac
