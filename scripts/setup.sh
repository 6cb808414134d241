#!/usr/bin/env bash
# Installs what simreg needs on a fresh Debian machine (run as root), and nothing twice:
#   - GDAL (libgdal-dev for the crate; gdal-bin and python3-gdal for tests and benchmarks);
#   - libtorch 2.13.0 from the PyPI torch wheel, in a per-user cache shared by every clone, with
#     a "view" folder that torch-sys links against (recipe: ../shared/docs/stack.md).
# SIMREG_TORCH=cpu (default) or full (with the CUDA libraries; build with `--features cuda`).
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.13.0
FLAVOUR="${SIMREG_TORCH:-cpu}"
CACHE="${SIMREG_CACHE:-$HOME/.cache/simreg}"
ENV_DIR="$CACHE/libtorch-$TORCH_VERSION-$FLAVOUR"

log() { echo "setup: $*" >&2; }

case "$FLAVOUR" in cpu|full) ;; *) echo "setup: SIMREG_TORCH must be 'cpu' or 'full', not '$FLAVOUR'" >&2; exit 2;; esac

# --- Debian packages ---------------------------------------------------------
need_pkgs=()
# fonts-dejavu-core: the font the report's plots are labelled with.
for p in libgdal-dev gdal-bin python3-gdal pkg-config g++ make fonts-dejavu-core; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$p")
done
# Debian's own python3 needs python3-venv for `python3 -m venv` (pyenv builds have it).
python3 -c 'import venv, ensurepip' 2>/dev/null || need_pkgs+=(python3-venv)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing Debian packages: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# --- the lint gate's tools (rustfmt, clippy: components of the Rust toolchain) -----
for c in fmt clippy; do
  cargo "$c" --version >/dev/null 2>&1 || {
    log "cargo $c is missing: installing its rustup component"
    rustup component add "$([ "$c" = fmt ] && echo rustfmt || echo clippy)" >&2 || {
      echo "setup: cargo $c is not available and could not be installed (rustup component add); the tests' lint gate needs it" >&2
      exit 1
    }
  }
done

# --- libtorch from the PyPI wheel ---------------------------------------------
# The cache entry counts only once `.complete` exists, so an interrupted install is redone.
if [ ! -f "$ENV_DIR/.complete" ]; then
  log "installing libtorch $TORCH_VERSION ($FLAVOUR) into $ENV_DIR (about 1 minute)"
  rm -rf "$ENV_DIR"
  mkdir -p "$ENV_DIR"
  /usr/bin/env python3 -m venv "$ENV_DIR/venv"
  py="$ENV_DIR/venv/bin/python"
  if [ "$FLAVOUR" = cpu ]; then
    # libtorch_cpu.so NEEDs libcudart.so.13 and libcupti.so.13: those two small wheels only.
    "$py" -m pip install -q --disable-pip-version-check --no-deps "torch==$TORCH_VERSION" \
      nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
  else
    "$py" -m pip install -q --disable-pip-version-check "torch==$TORCH_VERSION"
  fi
  # numpy: for the side-by-side Python benchmarks (PyTorch eager reference).
  "$py" -m pip install -q --disable-pip-version-check numpy
  site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  torch_dir="$site/torch"
  view="$ENV_DIR/libtorch"
  mkdir -p "$view/lib"
  ln -s "$torch_dir/include" "$view/include"
  if [ "$FLAVOUR" = cpu ]; then
    # Leaving libtorch_cuda.so out of the view keeps torch-sys from linking CUDA.
    for f in libtorch_cpu.so libc10.so libgomp.so.1; do
      [ -e "$torch_dir/lib/$f" ] && ln -s "$torch_dir/lib/$f" "$view/lib/$f"
    done
    ln -s libtorch_cpu.so "$view/lib/libtorch.so"
  else
    for f in "$torch_dir"/lib/*; do ln -s "$f" "$view/lib/$(basename "$f")"; done
  fi
  echo "$TORCH_VERSION" > "$view/build-version"
  touch "$ENV_DIR/.complete"
fi

# The checkout's .libtorch points at the cached view; .venv at the cached Python (benchmarks).
want="$ENV_DIR/libtorch"
if [ "$(readlink .libtorch 2>/dev/null || true)" != "$want" ]; then
  rm -rf .libtorch && ln -s "$want" .libtorch
  # torch-sys does not notice a replaced libtorch at the same path (stack.md, pitfalls).
  [ -d target ] && cargo clean -q -p torch-sys 2>/dev/null || true
fi
[ "$(readlink .venv 2>/dev/null || true)" = "$ENV_DIR/venv" ] || { rm -rf .venv && ln -s "$ENV_DIR/venv" .venv; }
log "ready (GDAL $(gdal-config --version), libtorch $TORCH_VERSION $FLAVOUR)"
