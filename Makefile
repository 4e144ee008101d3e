# Thin wrapper over meson; every target installs missing Debian packages first.
BUILD ?= build

.PHONY: all deps build run test bench clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@[ -f $(BUILD)/build.ninja ] || meson setup $(BUILD)
	ninja -C $(BUILD)

# Runs the core demo: two users chatting through the library (real LMDB in
# ./data, no sockets). The daemons replace this once they exist.
run: build
	$(BUILD)/examples/mim-demo ./data/demo

test:
	@scripts/test.sh

bench: build
	$(BUILD)/tests/bench/bench-store

clean:
	rm -rf build build-asan
