# The two commands of the README: `make demo` and `make test`. Both install what is missing.
# GPU=1 switches to the CUDA build of libtorch (SIMREG_TORCH=full) and the `cuda` feature.
SHELL := /bin/bash
CARGO ?= cargo
ifeq ($(GPU),1)
export SIMREG_TORCH := full
FEATURES := --features simreg-learn/cuda
endif
# OpenMP threads per test process: test binaries run in parallel (../shared/docs/stack.md).
TEST_ENV := OMP_NUM_THREADS=1

.PHONY: setup build demo test lint bench-tile bench-similarity clean-runs

setup:
	@bash scripts/setup.sh

build: setup
	$(CARGO) build --release --locked $(FEATURES)

demo: build
	./target/release/simreg run pipelines/demo.toml

# The lint gate runs after the tests' build, so that clippy reuses its compiled dependencies.
test: setup
	$(CARGO) fmt --check
	$(TEST_ENV) $(CARGO) test --release --locked $(FEATURES)
	$(CARGO) clippy --release --locked --all-targets $(FEATURES) -- -D warnings

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --release --locked --all-targets $(FEATURES) -- -D warnings

bench-tile: build
	bash scripts/bench_tile.sh

# Similarity stage (issue 5): Jacobians vs torch.func, N_S growth, the reference method at N = 2000.
bench-similarity: build
	bash scripts/bench_similarity.sh

clean-runs:
	rm -rf runs bench-out
