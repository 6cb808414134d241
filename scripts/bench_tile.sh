#!/usr/bin/env bash
# Tiling throughput: `simreg tile` against GDAL's command-line tools, cutting the same inputs
# into the same tiles, every case measured in this one run (best of REPS each), simreg at its
# default settings (tiles in the sources' type, uncompressed).
#
# Cases (issue 19), made once under bench-out/tile/ from the real AROSICS Sentinel-2 pair
# (../shared/realdata/arosics_s2_s2, 2400×3200 UInt16, UTM 33N):
#   near-identical  a 4096² three-band Byte reference in EPSG:4326, and a moving raster made
#                   with `gdalwarp -te … -ts 4096 4096` onto its extent (the two grids differ
#                   by round-off only); tile 256, overlap 0.
#                   GDAL route: gdalwarp onto the reference grid, then gdal_retile.py on both.
#   true-warp       the same reference; the moving raster in UTM 33N at 1.3× the pixel size.
#                   GDAL route: as above.
#   aligned-Byte, aligned-UInt16, aligned-Float32
#                   the reference and the moving raster already on one grid (the GDAL route's
#                   warped raster), in each type. GDAL route: gdal_retile.py on both.
# Then the older Float32 cases (issue 2): the S2 pair at 2400×3200 and 4800×6400, tile 128,
# against gdal_retile.py on a VRT stacking the two.
# Usage: scripts/bench_tile.sh   (writes under bench-out/; needs gdal-bin and python3-gdal)
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
RD=../shared/realdata/arosics_s2_s2
W=bench-out/tile
SIMREG=./target/release/simreg
THREADS=$(nproc)
[ -x "$SIMREG" ] || { echo "build first: make build" >&2; exit 1; }
[ -d "$RD" ] || { echo "needs ../shared/realdata (not present)" >&2; exit 1; }

now() { date +%s.%N; }
since() { python3 -c "print($(now) - $1)"; }
size_of() { gdalinfo -json "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(*d["size"])'; }
extent_of() {
  gdalinfo -json "$1" | python3 -c '
import json,sys; c=json.load(sys.stdin)["cornerCoordinates"]
print(c["lowerLeft"][0], c["lowerLeft"][1], c["upperRight"][0], c["upperRight"][1])'
}
best() { printf '%s\n' "$@" | sort -g | head -1; }
mb_of() { du -sm --apparent-size "$1" | cut -f1; }

mkdir -p "$W"
# --- inputs -------------------------------------------------------------------------------
if [ ! -f "$W/.inputs-19" ]; then
  # Byte, three bands, no nodata (every window is cut by every tool).
  gdal_translate -q -ot Byte -scale -a_nodata none -b 1 -b 1 -b 1 \
    "$RD/ref_S2A_20160608T153121_T33UUU_sub.jp2" "$W/ref_utm_byte.tif"
  gdal_translate -q -ot Byte -scale -a_nodata none -b 1 -b 1 -b 1 \
    "$RD/tgt_S2A_20160529T153631_T33UUU_sub.jp2" "$W/mov_utm_byte.tif"
  gdalwarp -q -overwrite -t_srs EPSG:4326 -ts 4096 4096 -r bilinear -dstnodata None \
    "$W/ref_utm_byte.tif" "$W/ref.tif"
  read -r xmin ymin xmax ymax < <(extent_of "$W/ref.tif")
  # The issue's case: the moving raster warped onto the reference's extent and size (its
  # geotransform then differs from the reference's by round-off).
  gdalwarp -q -overwrite -t_srs EPSG:4326 -te "$xmin" "$ymin" "$xmax" "$ymax" -ts 4096 4096 \
    -r bilinear -dstnodata None "$W/mov_utm_byte.tif" "$W/mov_near.tif"
  # True warp: UTM at 1.3× the reference's pixel size (in metres, from its area).
  px=$(python3 -c "
import math; w,h=4096,4096
print(round(1.3*math.sqrt($(gdalinfo -json "$W/ref_utm_byte.tif" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["size"][0]*d["size"][1]*100)')/(w*h)), 4))")
  gdalwarp -q -overwrite -tr "$px" "$px" -r bilinear -dstnodata None "$W/mov_utm_byte.tif" "$W/mov_utm.tif"
  # Pre-aligned pairs: the moving raster on the reference grid (as gdalwarp puts it).
  gdalwarp -q -overwrite -te "$xmin" "$ymin" "$xmax" "$ymax" -ts 4096 4096 -dstnodata None \
    "$W/mov_near.tif" "$W/aligned_mov_byte.tif"
  cp "$W/ref.tif" "$W/aligned_ref_byte.tif"
  for t in UInt16 Float32; do
    scale=$([ "$t" = UInt16 ] && echo "-scale 0 255 0 65535" || echo "")
    for r in ref mov; do
      # shellcheck disable=SC2086
      gdal_translate -q -ot "$t" $scale "$W/aligned_${r}_byte.tif" "$W/aligned_${r}_${t,,}.tif"
    done
  done
  touch "$W/.inputs-19"
fi
if [ ! -f "$W/stack2.vrt" ]; then
  gdal_translate -q -ot Float32 "$RD/ref_S2A_20160608T153121_T33UUU_sub.jp2" "$W/f32ref.tif"
  gdal_edit.py -unsetnodata "$W/f32ref.tif"
  read -r xmin ymin xmax ymax < <(extent_of "$W/f32ref.tif")
  gdalwarp -q -ot Float32 -r bilinear -te "$xmin" "$ymin" "$xmax" "$ymax" -ts $(size_of "$W/f32ref.tif") \
    -srcnodata None -dstnodata None "$RD/tgt_S2A_20160529T153631_T33UUU_sub.jp2" "$W/f32mov.tif"
  gdalbuildvrt -q -separate "$W/stack.vrt" "$W/f32ref.tif" "$W/f32mov.tif"
  gdal_translate -q -outsize 200% 200% "$W/f32ref.tif" "$W/f32ref2.tif"
  gdal_translate -q -outsize 200% 200% "$W/f32mov.tif" "$W/f32mov2.tif"
  gdalbuildvrt -q -separate "$W/stack2.vrt" "$W/f32ref2.tif" "$W/f32mov2.tif"
fi

# --- runs ---------------------------------------------------------------------------------
simreg_tile() { # REF MOV SIZE: prints seconds
  rm -rf "$W/simreg_out"
  local t0; t0=$(now)
  "$SIMREG" tile -q --threads "$THREADS" --reference "$1" --moving "$2" --moving-kind optical \
    --tile-size "$3" --overlap 0 --min-valid 0 --edge shift --out "$W/simreg_out"
  since "$t0"
}
gdal_route() { # REF MOV SIZE WARP(0|1): prints seconds (gdalwarp onto the grid, retile both)
  rm -rf "$W/retile_out" "$W/gdal_mov.tif"; mkdir -p "$W/retile_out/ref" "$W/retile_out/mov"
  local t0 mov=$2; t0=$(now)
  if [ "$4" = 1 ]; then
    read -r xmin ymin xmax ymax < <(extent_of "$1")
    # shellcheck disable=SC2046
    gdalwarp -q -t_srs "$(gdalsrsinfo -o wkt1 "$1" | tr -d '\n')" -te "$xmin" "$ymin" "$xmax" "$ymax" \
      -ts $(size_of "$1") -r bilinear "$mov" "$W/gdal_mov.tif"
    mov=$W/gdal_mov.tif
  fi
  gdal_retile.py -q -ps "$3" "$3" -overlap 0 -of GTiff -targetDir "$W/retile_out/ref" "$1"
  gdal_retile.py -q -ps "$3" "$3" -overlap 0 -of GTiff -targetDir "$W/retile_out/mov" "$mov"
  since "$t0"
}

RESULTS=$W/results.tsv
: >"$RESULTS"
case_run() { # NAME REF MOV SIZE WARP
  local ts=() tg=()
  for _ in $(seq "$REPS"); do ts+=("$(simreg_tile "$2" "$3" "$4")"); done
  local n_s mb_s misfit dtype
  n_s=$(find "$W/simreg_out" -name '*.tif' -path '*/x*' | wc -l)
  mb_s=$(mb_of "$W/simreg_out")
  read -r misfit dtype < <(python3 -c '
import json,sys; m=json.load(open(sys.argv[1]))
s=m["scenes"][0]; src=s["modalities"][1]["sources"][0]
print(src.get("in_place_misfit_px", "warped"), s["sample_type"])' "$W/simreg_out/manifest.json")
  for _ in $(seq "$REPS"); do tg+=("$(gdal_route "$2" "$3" "$4" "$5")"); done
  local n_g mb_g
  n_g=$(find "$W/retile_out" -name '*.tif' | wc -l)
  mb_g=$(mb_of "$W/retile_out")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$(best "${ts[@]}")" "$(best "${tg[@]}")" \
    "$n_s" "$n_g" "$mb_s" "$mb_g" "$misfit" "$dtype" "$(size_of "$2" | tr ' ' x)" >>"$RESULTS"
}

echo "simreg tile (threads $THREADS) vs the GDAL route; best of $REPS; $(date -u +%F)"
case_run near-identical "$W/ref.tif" "$W/mov_near.tif" 256 1
case_run true-warp "$W/ref.tif" "$W/mov_utm.tif" 256 1
for t in byte uint16 float32; do
  case_run "aligned-$t" "$W/aligned_ref_$t.tif" "$W/aligned_mov_$t.tif" 256 0
done
python3 - "$RESULTS" <<'PY'
import sys
print(f"{'case':16} {'input':>10} {'simreg s':>9} {'GDAL s':>8} {'ratio':>6}  {'tiles':>11}  {'MB out':>11}  tiles  moving read")
for line in open(sys.argv[1]):
    name, ts, tg, ns, ng, ms, mg, misfit, dtype, size = line.rstrip("\n").split("\t")
    ts, tg = float(ts), float(tg)
    route = "gdalwarp + 2x gdal_retile.py" if not name.startswith("aligned") else "2x gdal_retile.py"
    read = "warped (VRT)" if misfit == "warped" else f"in place ({float(misfit):.4f} px)"
    print(f"{name:16} {size:>10} {ts:9.3f} {tg:8.3f} {tg/ts:5.2f}x  {ns:>5}/{ng:<5}  {ms:>5}/{mg:<5}  {dtype:7} {read}   [{route}]")
PY

# --- the older Float32 cases (issue 2) ----------------------------------------------------
bench_f32() {
  local ref=$1 mov=$2 stack=$3 t0 ts=() tr=()
  for _ in $(seq "$REPS"); do
    rm -rf "$W/simreg_out"
    t0=$(now)
    "$SIMREG" tile -q --threads "$THREADS" --reference "$W/$ref" --moving "$W/$mov" --moving-kind optical \
      --tile-size 128 --overlap 0 --min-valid 0 --edge shift --out "$W/simreg_out"
    ts+=("$(since "$t0")")
  done
  for _ in $(seq "$REPS"); do
    rm -rf "$W/retile_out"; mkdir -p "$W/retile_out"
    t0=$(now)
    gdal_retile.py -q -ps 128 128 -overlap 0 -ot Float32 -of GTiff -targetDir "$W/retile_out" "$W/$stack"
    tr+=("$(since "$t0")")
  done
  python3 - "$(best "${ts[@]}")" "$(best "${tr[@]}")" "$(find "$W/simreg_out" -name '*.tif' -path '*/x*' | wc -l)" \
    "$(find "$W/retile_out" -name '*.tif' | wc -l)" $(size_of "$W/$ref") <<'PY'
import sys
ts, tr = float(sys.argv[1]), float(sys.argv[2])
ns, nr, w, h = map(int, sys.argv[3:7])
print(f"Float32 {w}x{h}, tile 128, 2-band tiles: simreg {ts:.3f} s ({ns} tiles), gdal_retile.py on a VRT stack {tr:.3f} s ({nr} tiles): {(ns/ts)/(nr/tr):.2f}x")
PY
}
bench_f32 f32ref.tif f32mov.tif stack.vrt
bench_f32 f32ref2.tif f32mov2.tif stack2.vrt
