#!/usr/bin/env bash
# Alignment throughput and memory (issue 7), network and phase-correlation baseline in this one
# run, on the same scene, windows and threads:
#   - a synthetic optical/SAR scene of SIZE² px (default 4096², `simreg synth`), its SAR image
#     displaced by a known smooth field (|D| ≤ 3.5 px; made with `simreg align --apply`);
#   - `simreg align` with --method phase-correlation, with the network without the reliability
#     band (--no-reliability: one forward pass per window) and with it (one Jacobian per window,
#     S_A computed once on the smallest crop and reused through --similarity);
#   - the same on crops of 1024² and 2048² px: peak RSS (VmHWM of the process that aligns)
#     against scene size — it should stay flat (window-by-window processing).
# Prints megapixels/s (whole command: reading, estimating, blending, writing COGs), the
# network/baseline throughput ratio, median errors against the known field, peak RSS.
# Usage: MODEL=RUN/train scripts/bench_align.sh [THREADS]   (results under bench-out/align)
# Environment:
#   MODEL   a model trained on synthetic scenes (4 optical + 2 SAR bands), with its labelled run
#           beside it (RUN/labels) for S_A; default runs/noise_sweep/sweep/sigma_4/train
#   SIZE    the big scene's side (default 4096); CROPS (default "1024 2048")
#   RELIABILITY=0  skip the network run with the reliability band on the big scene
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-$(nproc)}
MODEL=${MODEL:-runs/noise_sweep/sweep/sigma_4/train}
SIZE=${SIZE:-4096}
read -r -a CROPS <<< "${CROPS:-1024 2048}"
RELIABILITY=${RELIABILITY:-1}
SIMREG=./target/release/simreg
PY=/usr/bin/python3   # Debian's python3 with python3-gdal and numpy (scripts/setup.sh)
W=bench-out/align
[ -x "$SIMREG" ] || { echo "build first: make build" >&2; exit 1; }
[ -f "$MODEL/model.json" ] || [ -f "$(dirname "$MODEL")/model.json" ] || { echo "MODEL=$MODEL: no model.json (train one: simreg run pipelines/noise_sweep.toml)" >&2; exit 1; }
mkdir -p "$W"
log() { echo "bench_align: $*" >&2; }
s() { OMP_NUM_THREADS=$THREADS "$SIMREG" --threads "$THREADS" -q "$@"; }

# --- data (kept between runs) ----------------------------------------------------------
if [ ! -f "$W/s$SIZE/truth.tif" ]; then
  # `simreg synth` costs grow faster than the area (Voronoi parcels): the scene is a mosaic of
  # (SIZE/1024)² independent 1024² scenes (seeds 11, 12, ...), placed side by side.
  log "synthetic scene ${SIZE}² px: a mosaic of 1024² scenes"
  n=$((SIZE / 1024)); [ $((n * 1024)) = "$SIZE" ] || { echo "SIZE must be a multiple of 1024" >&2; exit 2; }
  mkdir -p "$W/s$SIZE/synth" "$W/s$SIZE/parts"
  for j in $(seq 0 $((n - 1))); do for i in $(seq 0 $((n - 1))); do
    p="$W/s$SIZE/parts/p${i}_$j"
    [ -f "$p/sar.tif" ] || s synth --out "$p" --size 1024 --seed $((11 + j * n + i))
    for f in optical sar; do  # synth's grid: origin (500000, 5000000), 2 m pixels
      gdal_translate -q -of VRT -a_ullr $((500000 + i * 2048)) $((5000000 - j * 2048)) $((500000 + (i + 1) * 2048)) $((5000000 - (j + 1) * 2048)) "$p/$f.tif" "$p/${f}_placed.vrt"
    done
  done; done
  for f in optical sar; do
    gdalbuildvrt -q "$W/s$SIZE/parts/$f.vrt" "$W"/s$SIZE/parts/p*/${f}_placed.vrt
    gdal_translate -q -co TILED=YES "$W/s$SIZE/parts/$f.vrt" "$W/s$SIZE/synth/$f.tif"
  done
  "$PY" - "$W/s$SIZE" <<'PY'
import sys
import numpy as np
from osgeo import gdal
d = sys.argv[1]
ref = gdal.Open(f"{d}/synth/optical.tif")
W, H = ref.RasterXSize, ref.RasterYSize
y, x = np.mgrid[0:H, 0:W].astype("f4") + 0.5
dx = 2.0 + np.sin(2 * np.pi * x / 900) * np.cos(2 * np.pi * y / 1300)
dy = -1.5 + 0.8 * np.cos(2 * np.pi * (x + y) / 1100)
for name, sign in (("truth", 1), ("neg", -1)):
    o = gdal.GetDriverByName("GTiff").Create(f"{d}/{name}.tif", W, H, 2, gdal.GDT_Float32, ["TILED=YES", "COMPRESS=DEFLATE"])
    o.SetGeoTransform(ref.GetGeoTransform()); o.SetProjection(ref.GetProjection())
    o.GetRasterBand(1).WriteArray((sign * dx).astype("f4")); o.GetRasterBand(2).WriteArray((sign * dy).astype("f4"))
    o = None
PY
  s align --apply "$W/s$SIZE/neg.tif" --moving "$W/s$SIZE/synth/sar.tif" --out "$W/s$SIZE/displaced"
fi
for c in "${CROPS[@]}"; do
  if [ ! -f "$W/c$c/truth.tif" ]; then
    mkdir -p "$W/c$c"
    for f in synth/optical.tif displaced/corrected.tif truth.tif; do
      gdal_translate -q -srcwin 0 0 "$c" "$c" "$W/s$SIZE/$f" "$W/c$c/$(basename "$f")"
    done
  fi
done
paths() { if [ "$1" = "$SIZE" ]; then echo "$W/s$SIZE/synth/optical.tif $W/s$SIZE/displaced/corrected.tif $W/s$SIZE/truth.tif"; else echo "$W/c$1/optical.tif $W/c$1/corrected.tif $W/c$1/truth.tif"; fi; }

RES="$W/results.jsonl"
: > "$RES"
run() { # TAG SIDE ARGS...
  local tag=$1 side=$2; shift 2
  read -r ref mov truth <<< "$(paths "$side")"
  local out="$W/out_${tag}_$side"
  log "$tag on ${side}² px"
  s align --reference "$ref" --moving "$mov" --truth "$truth" --out "$out" "$@"
  "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); d["tag"]=sys.argv[2]; d["side"]=int(sys.argv[3]); print(json.dumps(d))' "$out/summary.json" "$tag" "$side" >> "$RES"
}
SMALLEST=${CROPS[0]}
# S_A once (computed from the model's labelled run), then reused.
run network "$SMALLEST" --model "$MODEL"
SA="$W/out_network_$SMALLEST"
for side in "${CROPS[@]}" "$SIZE"; do
  run phase "$side" --method phase-correlation --window 64 --stride 32
  run network_fast "$side" --model "$MODEL" --no-reliability
  if [ "$side" != "$SIZE" ] || [ "$RELIABILITY" = 1 ]; then
    [ "$side" = "$SMALLEST" ] || run network "$side" --model "$MODEL" --similarity "$SA"
  fi
done

"$PY" - "$RES" "$SIZE" "$THREADS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
size, threads = int(sys.argv[2]), sys.argv[3]
print(f"\nsimreg align, {threads} thread(s); window 64, stride 32; megapixels/s of the whole command")
print(f"{'method':<34}{'scene':>11}{'s':>9}{'Mpx/s':>9}{'estimate s':>12}{'median err px':>15}{'peak RSS MB':>13}")
names = {"phase": "phase correlation", "network_fast": "network (no reliability band)", "network": "network + N_S reliability"}
for r in sorted(rows, key=lambda r: (r["side"], r["tag"])):
    print(f"{names[r['tag']]:<34}{r['side']:>6}²{'':>4}{r['seconds']:>9.1f}{r['megapixels_per_s']:>9.3f}{r['estimate_seconds']:>12.1f}{r['median_error_px']:>15.3f}{r['peak_rss_mb']:>13.0f}")
by = {(r["tag"], r["side"]): r for r in rows}
p = by.get(("phase", size))
for tag in ("network_fast", "network"):
    n = by.get((tag, size))
    if n and p:
        print(f"{names[tag]} / phase correlation throughput at {size}²: {n['megapixels_per_s'] / p['megapixels_per_s']:.3f}")
for tag in ("phase", "network_fast", "network"):
    sides = sorted(s for (t, s) in by if t == tag)
    if len(sides) > 1:
        rss = [by[(tag, s)]["peak_rss_mb"] for s in sides]
        print(f"{names[tag]}: peak RSS {', '.join(f'{v:.0f}' for v in rss)} MB at {', '.join(f'{s}²' for s in sides)} (max/min {max(rss) / min(rss):.2f})")
PY
