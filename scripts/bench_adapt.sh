#!/usr/bin/env bash
# `simreg adapt` on the real pairs of ../shared/realdata the shipped model never saw (issue 18):
# the GeFolki patch and the three BigEarthNet pairs, laid out as a user's archive (one folder
# per pair, reference.tif = B02,B03,B04 or the GeFolki S2 patch, moving.tif = VV), half held
# out. Prints held-out RMSE before/after, the audit's estimate and the wall time, for the
# default settings and for the variants of BENCHMARKS.md ("Fine-tuning on a user's pairs").
# Usage: scripts/bench_adapt.sh [THREADS]        (results under bench-out/adapt)
# Environment: VARIANTS  space-separated "name:options" (default: the table's rows)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-$(nproc)}
SIMREG=./target/release/simreg
[ -x "$SIMREG" ] || { echo "build first: make build" >&2; exit 1; }
R=../shared/realdata
[ -d "$R/bigearthnet_common" ] || { echo "bench_adapt: $R/bigearthnet_common: missing" >&2; exit 1; }
OUT=bench-out/adapt
rm -rf "$OUT" && mkdir -p "$OUT/pairs/gefolki"
P=$OUT/pairs
gdal_translate -q "$R/gefolki_s1s2/S2_patch11.tif" "$P/gefolki/reference.tif"
gdal_translate -q -b 1 "$R/gefolki_s1s2/S1_patch11.tif" "$P/gefolki/moving.tif"
for pair in "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48 S2A_MSIL2A_20170613T101031_87_48" \
            "S1A_IW_GRDH_1SDV_20170925T043256_35VPK_69_24 S2B_MSIL2A_20170924T93020_69_24" \
            "S1A_IW_GRDH_1SDV_20180204T043253_35VPK_57_38 S2B_MSIL2A_20180204T94161_57_38"; do
  set -- $pair
  s1=$1 s2=$2 d=$P/ben_${2: -5}
  mkdir -p "$d"
  b=$R/bigearthnet_common/$s2/$s2
  gdalbuildvrt -q -separate "$OUT/${2: -5}.vrt" "${b}_B02.tif" "${b}_B03.tif" "${b}_B04.tif"
  gdal_translate -q "$OUT/${2: -5}.vrt" "$d/reference.tif"
  cp "$R/bigearthnet_common/$s1/${s1}_VV.tif" "$d/moving.tif"
done
VARIANTS=${VARIANTS:-"default: epochs10:--epochs=10 lr1e-3:--lr=1e-3 stride16_epochs10:--stride=16,--epochs=10"}
printf '%-20s %6s %6s %8s %8s %-22s %7s\n' variant train held before after "audit [interval]" seconds
for v in $VARIANTS; do
  name=${v%%:*} opts=${v#*:}
  "$SIMREG" --threads "$THREADS" -q adapt --pairs "$P" --out "$OUT/run_$name" --holdout 0.5 \
    ${opts//,/ } --json > "$OUT/$name.json"
  /usr/bin/python3 - "$OUT/$name.json" "$name" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))
iv = a.get("audit_predicted_rmse_interval_px") or [float("nan")] * 2
au = a.get("audit_predicted_rmse_px") or float("nan")
print(f"{sys.argv[2]:<20} {a['n_train_tiles']:>6} {a['n_heldout_tiles']:>6} "
      f"{a['heldout_rmse_before_px']:>8.3f} {a['heldout_rmse_after_px']:>8.3f} "
      f"{au:.2f} [{iv[0]:.2f}, {iv[1]:.2f}]{'':<6} {a['seconds']:>7.1f}   "
      f"held out: {','.join(a['heldout_pairs'])}")
PY
done
