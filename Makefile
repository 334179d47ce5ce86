# The project's commands. Every target creates .venv when it is missing and installs what it needs
# into it; stamp files under .venv make the installs happen once per change of pyproject.toml.
#
#   make run     build, then run the demo cluster
#   make test    Rust tests, build, pytest, stubtest
#   make help    every target
#
# Linux and macOS. Windows builds go through maturin-action (.github/workflows/wheels.yml).

PYTHON ?= python3
VENV ?= .venv
CARGO ?= cargo

VENV_ABS := $(abspath $(VENV))
VENV_PY := $(VENV)/bin/python
MATURIN := $(VENV)/bin/maturin
STAMP_DEPS := $(VENV)/.stamp-deps
STAMP_BENCH := $(VENV)/.stamp-bench

# Same bounds as [build-system] requires in pyproject.toml.
MATURIN_REQUIREMENT := maturin>=1.9,<2

# maturin gets a target directory of its own: it builds pyo3 with PYO3_BUILD_EXTENSION_MODULE set and
# plain cargo (test, clippy) builds it without, and sharing one directory would rebuild the pyo3 crates
# on every switch between the two. (target/maturin is maturin's own scratch folder; not that.)
MATURIN_TARGET_DIR := target/extension

# pyo3's build script configures itself for this interpreter (plain cargo commands; maturin sets its
# own). Same interpreter for every command, so cargo never reruns pyo3's configuration needlessly.
export PYO3_PYTHON := $(VENV_ABS)/bin/python

# Without the (deprecated) extension-module feature the bindings crate links libpython, so its test
# binary needs the interpreter's shared library on the loader path when Python is a shared build.
PY_LIBDIR = $$($(VENV_PY) -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")')
WITH_LIBPYTHON = LD_LIBRARY_PATH="$(PY_LIBDIR)$${LD_LIBRARY_PATH:+:$$LD_LIBRARY_PATH}" \
	DYLD_LIBRARY_PATH="$(PY_LIBDIR)$${DYLD_LIBRARY_PATH:+:$$DYLD_LIBRARY_PATH}"

.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
.PHONY: help venv deps build run test test-rust test-python stubtest lint fmt-check clippy fmt \
	typecheck bench bench-rust bench-python bench-asv bench-peers fuzz wheel sdist clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# --- environment --------------------------------------------------------------------------------

$(VENV_PY):
	$(PYTHON) -m venv $(VENV)

venv: $(VENV_PY) ## Create .venv (no packages)

# The runtime dependencies, the test tools and maturin, named in pyproject.toml; reinstalled when it changes.
$(STAMP_DEPS): pyproject.toml .ci/extras.py | $(VENV_PY)
	$(VENV_PY) -m pip install --quiet --upgrade pip
	$(VENV_PY) .ci/extras.py runtime test > $(VENV)/requirements-test.txt
	$(VENV_PY) -m pip install --quiet '$(MATURIN_REQUIREMENT)' -r $(VENV)/requirements-test.txt
	touch $@

$(STAMP_BENCH): pyproject.toml .ci/extras.py $(STAMP_DEPS)
	$(VENV_PY) .ci/extras.py bench > $(VENV)/requirements-bench.txt
	$(VENV_PY) -m pip install --quiet -r $(VENV)/requirements-bench.txt
	touch $@

deps: $(STAMP_DEPS) ## Install maturin and the test tools into .venv

# --- build and run ------------------------------------------------------------------------------

build: $(STAMP_DEPS) ## Compile the extension (release) and install the package into .venv
	VIRTUAL_ENV=$(VENV_ABS) $(MATURIN) develop --release --target-dir $(MATURIN_TARGET_DIR)

run: build ## Run the demo (python -m consensus demo)
	$(VENV_PY) -m consensus demo

# --- tests --------------------------------------------------------------------------------------

test: test-rust test-python stubtest ## Rust tests, then pytest and stubtest against a fresh build

test-rust: $(VENV_PY) ## cargo test, whole workspace, release profile
	$(WITH_LIBPYTHON) $(CARGO) test --workspace --release

# pytest exits 5 when it collects nothing; that fails the target like any other failure.
test-python: build ## pytest (tests/ only; benches are not collected)
	$(VENV_PY) -m pytest

stubtest: build ## Check python/consensus/_core.pyi against the compiled module
	$(VENV_PY) -m mypy.stubtest consensus._core --allowlist stubtest-allowlist.txt

# Not part of `test`: rustfmt and clippy are rustup components a machine may lack. CI runs them.
lint: fmt-check clippy typecheck ## rustfmt --check, clippy -D warnings, mypy on the package

typecheck: build ## mypy on python/consensus
	$(VENV_PY) -m mypy python/consensus --ignore-missing-imports

fmt-check: ## rustfmt --check (needs the rustfmt component)
	$(CARGO) fmt --all --check

clippy: $(VENV_PY) ## clippy on every target, warnings are errors (needs the clippy component)
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the Rust code in place
	$(CARGO) fmt --all

# Not part of `test` (which runs the seed-driven stand-in, rust/core/tests/hostile_fuzz.rs): libFuzzer
# needs a nightly toolchain and cargo-fuzz, installed here when missing. FUZZ_TARGET picks the
# target (hostile, decode_raft), FUZZ_SECONDS bounds the run; a crash leaves its input in
# rust/core/fuzz/artifacts/.
FUZZ_TARGET ?= hostile
FUZZ_SECONDS ?= 60

fuzz: ## cargo-fuzz for FUZZ_SECONDS (default 60) on FUZZ_TARGET (default hostile); needs nightly
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@$(CARGO) +nightly fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	cd rust/core && $(CARGO) +nightly fuzz run $(FUZZ_TARGET) -- -max_total_time=$(FUZZ_SECONDS)

# --- benchmarks ---------------------------------------------------------------------------------

bench: bench-rust bench-python ## criterion benches, then pytest-benchmark suites

bench-rust: $(VENV_PY) ## criterion (cargo bench -p consensus-core), then the pure-Rust cluster loop
	$(CARGO) bench -p consensus-core
	$(CARGO) run --release -p consensus-core --example cluster_loop

# benches/asv holds asv's suites (run with `asv run`, config in asv.conf.json), not pytest's.
bench-python: build $(STAMP_BENCH) ## pytest-benchmark suites in benches/bench_*.py
	$(VENV_PY) -m pytest benches --ignore=benches/asv --benchmark-only
	$(VENV_PY) benches/bench_cluster.py

# Not part of `bench`: one quick asv pass of benches/asv against the installed package.
bench-asv: build $(STAMP_BENCH) ## asv suites once against the installed package (asv run --python=same --quick)
	$(VENV)/bin/asv run --python=same --quick --show-stderr

# Not part of `bench`: installs etcd (apt) and PySyncObj (pip), then runs three 3-node clusters one
# after another on this machine with the same load generator. BENCH_PEERS_ARGS passes options
# (e.g. --quick, --systems consensus,etcd).
bench-peers: build ## consensus vs etcd vs PySyncObj, 3-node clusters side by side (apt etcd, pip pysyncobj)
	bash benches/peers/setup.sh $(VENV_PY)
	$(VENV_PY) benches/peers/run.py $(BENCH_PEERS_ARGS)

# --- packaging ----------------------------------------------------------------------------------

wheel: $(STAMP_DEPS) ## abi3 wheel and sdist into dist/
	$(MATURIN) build --release --out dist --interpreter $(VENV_PY) --target-dir $(MATURIN_TARGET_DIR)
	$(MATURIN) sdist --out dist

sdist: $(STAMP_DEPS) ## sdist only, into dist/
	$(MATURIN) sdist --out dist

clean: ## Remove build output, the compiled module and .venv
	$(CARGO) clean
	rm -rf dist $(VENV) .pytest_cache .hypothesis .benchmarks .mypy_cache
	rm -f python/consensus/_core*.so python/consensus/_core*.pyd
	find python tests benches -name __pycache__ -type d -prune -exec rm -rf {} +
