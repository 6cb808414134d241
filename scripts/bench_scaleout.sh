#!/usr/bin/env bash
# The cost model of scale-out (issue 20), measured: `pipelines/demo.toml` in one process at the
# default settings on this machine's cores, then each stage's seconds per tile (64² px)
# from the stages' own summaries, and what they mean for 1 M tiles on
# K nodes like this one. With SLURM=1 it also runs the demo through a one-node Slurm cluster
# (scripts/slurm_local.sh, as root) with 4 shards and prints both wall times.
# Usage: scripts/bench_scaleout.sh   (writes under bench-out/scaleout/)
set -euo pipefail
cd "$(dirname "$0")/.."
SIMREG=$PWD/target/release/simreg
[ -x "$SIMREG" ] || { echo "build first: make build" >&2; exit 1; }
W=$PWD/bench-out/scaleout
rm -rf "$W/one" "$W/slurm"
mkdir -p "$W"
now() { date +%s.%N; }

t0=$(now)
"$SIMREG" -q run pipelines/demo.toml --out "$W/one"
t1=$(now)
echo "one process ($(nproc) cores): $(awk "BEGIN{printf \"%.0f\", $t1 - $t0}") s"

if [ "${SLURM:-0}" = 1 ]; then
  eval "$(bash scripts/slurm_local.sh start "$W/cluster")"
  trap 'bash scripts/slurm_local.sh stop "$W/cluster"' EXIT
  t0=$(now)
  "$SIMREG" -q run pipelines/demo.toml --out "$W/slurm" --executor slurm --shards 4 >/dev/null
  until "$SIMREG" status "$W/slurm" | tail -1 | grep -q "run complete"; do
    if "$SIMREG" status "$W/slurm" | grep -q "failed"; then "$SIMREG" status "$W/slurm"; exit 1; fi
    sleep 2
  done
  t1=$(now)
  echo "through Slurm, 4 shards, one CPU per job: $(awk "BEGIN{printf \"%.0f\", $t1 - $t0}") s"
  "$SIMREG" status "$W/slurm"
fi

python3 - "$W/one" "$(nproc)" <<'EOF'
import json, os, sys
run, cores = sys.argv[1], int(sys.argv[2])
j = lambda *p: json.load(open(os.path.join(run, *p)))
tiles = j("tiles", "summary.json")
n, size = tiles["n_tiles"], 64
sweep = sorted(os.listdir(os.path.join(run, "sweep")))
stages = {"tile": tiles["seconds"]}
for st in ["labels", "train", "similarity", "audit"]:
    stages[st] = sum(j("sweep", s, st, "summary.json")["seconds"] for s in sweep) / len(sweep)
tr = j("sweep", sweep[0], "train", "summary.json")
sim = j("sweep", sweep[0], "similarity", "summary.json")
print(f"\n{n} tiles of {size}² px; per σ of the sweep ({len(sweep)}): {tr['n_train']} trained on, "
      f"{tr['epochs_run']} epochs, p = {sim['params']} parameters; {cores} cores")
print(f"{'stage':<11} {'s (measured)':>12} {'ms per tile':>12} {'1 M tiles, 1 node':>18} "
      f"{'10 nodes':>9} {'100 nodes':>10}")
for st, s in stages.items():
    per = s / n
    if st == "train":
        # Per tile and epoch: a training run sees every tile of S once per epoch.
        per = s / (tr["n_train"] * tr["epochs_run"])
    h = per * 1e6 / 3600
    note = " (per tile and epoch)" if st == "train" else ""
    print(f"{st:<11} {s:>12.1f} {per*1e3:>12.2f} {h:>16.1f} h {h/10:>7.2f} h {h/100:>8.3f} h{note}")
p = sim["params"]
print(f"\nS_A: d × p = 2 × {p} f64 = {16*p/1e6:.1f} MB per partial; a reduce of N shards reads "
      f"N × {16*p/1e6:.1f} MB and adds them in O(N·p) (1000 shards: {16*p*1000/1e9:.1f} GB, "
      f"seconds); pass-2 rows: 32 B per tile plus the sketch, 2 × {sim['sketch_dim']} × 4 B = "
      f"{8*sim['sketch_dim']/1e3:.0f} kB per tile ({8*sim['sketch_dim']*1e6/1e9:.0f} GB at 1 M tiles)")
EOF
