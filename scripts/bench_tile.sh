#!/usr/bin/env bash
# Tiling throughput: `simreg tile` against `gdal_retile.py` on the same real input, tile size and
# output format (Float32 GeoTIFF, uncompressed), both measured in this one run (best of 3 each).
# Input: the AROSICS Sentinel-2 pair from ../shared/realdata (2400×3200), the target warped onto
# the reference grid beforehand so both tools cut the same two co-registered rasters (simreg
# reads the two files; gdal_retile.py a VRT stacking them). The same pair resampled to 2×
# (4800×6400) shows throughput once fixed start-up costs (GDAL for simreg, Python and GDAL for
# gdal_retile.py) are amortised.
# Usage: scripts/bench_tile.sh [TILE_SIZE] [OVERLAP]   (writes under bench-out/; needs gdal-bin)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-128}
OVERLAP=${2:-0}
REPS=3
RD=../shared/realdata/arosics_s2_s2
W=bench-out/tile
SIMREG=./target/release/simreg
THREADS=$(nproc)
[ -x "$SIMREG" ] || { echo "build first: make build" >&2; exit 1; }
[ -d "$RD" ] || { echo "needs ../shared/realdata (not present)" >&2; exit 1; }

now() { date +%s.%N; }
since() { python3 -c "print($(now) - $1)"; }
size_of() { gdalinfo -json "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(*d["size"])'; }

mkdir -p "$W"
if [ ! -f "$W/stack2.vrt" ]; then
  gdal_translate -q -ot Float32 "$RD/ref_S2A_20160608T153121_T33UUU_sub.jp2" "$W/ref.tif"
  gdal_edit.py -unsetnodata "$W/ref.tif"
  # No nodata in the output: every window is cut and written by both tools (the same work).
  read -r xmin ymin xmax ymax < <(gdalinfo -json "$W/ref.tif" | python3 -c '
import json,sys; c=json.load(sys.stdin)["cornerCoordinates"]
print(c["lowerLeft"][0], c["lowerLeft"][1], c["upperRight"][0], c["upperRight"][1])')
  gdalwarp -q -ot Float32 -r bilinear -te "$xmin" "$ymin" "$xmax" "$ymax" -ts $(size_of "$W/ref.tif") \
    -srcnodata None -dstnodata None "$RD/tgt_S2A_20160529T153631_T33UUU_sub.jp2" "$W/mov.tif"
  gdalbuildvrt -q -separate "$W/stack.vrt" "$W/ref.tif" "$W/mov.tif"
  gdal_translate -q -outsize 200% 200% "$W/ref.tif" "$W/ref2.tif"
  gdal_translate -q -outsize 200% 200% "$W/mov.tif" "$W/mov2.tif"
  gdalbuildvrt -q -separate "$W/stack2.vrt" "$W/ref2.tif" "$W/mov2.tif"
fi

bench() {
  local ref=$1 mov=$2 stack=$3 t0 ts=() tr=()
  for _ in $(seq $REPS); do
    rm -rf "$W/simreg_out"
    t0=$(now)
    "$SIMREG" tile -q --threads "$THREADS" --reference "$W/$ref" --moving "$W/$mov" --moving-kind optical \
      --tile-size "$SIZE" --overlap "$OVERLAP" --min-valid 0 --edge shift --out "$W/simreg_out"
    ts+=("$(since "$t0")")
  done
  for _ in $(seq $REPS); do
    rm -rf "$W/retile_out"; mkdir -p "$W/retile_out"
    t0=$(now)
    gdal_retile.py -q -ps "$SIZE" "$SIZE" -overlap "$OVERLAP" -ot Float32 -of GTiff -targetDir "$W/retile_out" "$W/$stack"
    tr+=("$(since "$t0")")
  done
  python3 - "$(printf '%s\n' "${ts[@]}" | sort -g | head -1)" "$(printf '%s\n' "${tr[@]}" | sort -g | head -1)" \
    "$(find "$W/simreg_out" -name '*.tif' | wc -l)" "$(find "$W/retile_out" -name '*.tif' | wc -l)" \
    $(size_of "$W/$ref") "$SIZE" "$OVERLAP" "$THREADS" "$STARTUP" <<'PY'
import sys
ts, tr = float(sys.argv[1]), float(sys.argv[2])
ns, nr, w, h, size, ov, th = map(int, sys.argv[3:10])
startup = float(sys.argv[10])
print(f"input {w}x{h} px ({w*h/1e6:.1f} Mpx), 2 rasters -> 2-band tiles, tile {size}, overlap {ov}, threads {th}")
print(f"  simreg tile    : {ts:7.3f} s  {ns:5d} tiles  {ns/ts:8.1f} tiles/s  {w*h/1e6/ts:6.1f} Mpx/s")
print(f"  gdal_retile.py : {tr:7.3f} s  {nr:5d} tiles  {nr/tr:8.1f} tiles/s  {w*h/1e6/tr:6.1f} Mpx/s")
print(f"  speed-up (tiles/s): {(ns/ts)/(nr/tr):.2f}x; without simreg's start-up: {(ns/(ts-startup))/(nr/tr):.2f}x")
PY
}

t0=$(now); "$SIMREG" --version >/dev/null; STARTUP=$(since "$t0")
echo "simreg start-up (loads GDAL): $(python3 -c "print(round($STARTUP, 3))") s"
bench ref.tif mov.tif stack.vrt
bench ref2.tif mov2.tif stack2.vrt
