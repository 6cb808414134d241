#!/usr/bin/env bash
# Copies the model trained by pipelines/default_model.toml, with the S_A its N_S reliability
# needs, into models/default/ (what `simreg align` uses without --model). MODEL.md describes it.
#   simreg run pipelines/default_model.toml && scripts/ship_default_model.sh [RUN]
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:-runs/default_model}
for f in train/model.json train/model.safetensors similarity/s_a.json similarity/s_a.safetensors; do
  [[ -f $run/$f ]] || { echo "ship_default_model: '$run/$f' missing: run pipelines/default_model.toml first" >&2; exit 1; }
done
tmp=$(mktemp -d models/.default.XXXXXX)
mkdir -p "$tmp/train" "$tmp/similarity"
cp "$run/train/model.json" "$run/train/model.safetensors" "$tmp/train/"
cp "$run/similarity/s_a.json" "$run/similarity/s_a.safetensors" "$tmp/similarity/"
rm -rf models/default.old
[[ -d models/default ]] && mv models/default models/default.old
mv "$tmp" models/default && rm -rf models/default.old
du -sh models/default
