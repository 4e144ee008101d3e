# Thin wrapper over meson; every target installs missing Debian packages first.
BUILD ?= build

.PHONY: all deps build run logic gate demo test fuzz bench clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@[ -f $(BUILD)/build.ninja ] || meson setup $(BUILD)
	ninja -C $(BUILD)

# Starts logicd + gatewayd on config/dev.ini (development auth, data in
# ./data); Ctrl-C stops both. `make logic` / `make gate` start one each.
run: build
	BUILD=$(BUILD) scripts/run-dev.sh both

logic: build
	BUILD=$(BUILD) scripts/run-dev.sh logic

gate: build
	BUILD=$(BUILD) scripts/run-dev.sh gate

# The library embedded in one program, no sockets.
demo: build
	$(BUILD)/examples/mim-demo ./data/demo

test:
	@scripts/test.sh

# Coverage-guided fuzzing with libFuzzer (clang) in build-fuzz/: every fuzz
# target for FUZZ_SECONDS (default 60) each; docs/fuzzing.md.
FUZZ_SECONDS ?= 60
fuzz:
	@scripts/install-deps.sh --fuzz
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_BUILD=build-fuzz tests/fuzz/run-libfuzzer.sh

# The standard load set against freshly started daemons (< 5 min), then
# the store and codec benchmarks.
bench: build
	BUILD=$(BUILD) scripts/bench.sh
	$(BUILD)/tests/bench/bench-store --runs 3
	$(BUILD)/tests/bench/bench-codec

clean:
	rm -rf build build-asan build-fuzz
