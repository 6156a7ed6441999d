# The two commands of the README. Both install what they need first (scripts/install-deps.sh).
BUILD_DIR ?= build
JOBS ?= 2
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo

.PHONY: all deps build demo test bench sanitize fuzz clean

all: build

deps:
	@bash scripts/install-deps.sh

$(BUILD_DIR)/Makefile: CMakeLists.txt
	cmake -S . -B $(BUILD_DIR) $(CMAKE_FLAGS)

build: deps $(BUILD_DIR)/Makefile
	cmake --build $(BUILD_DIR) -j $(JOBS)

# Runs examples/hello.yaml against a local ledger service; run it twice to see the
# finished run reported instead of redone.
demo: build
	@bash scripts/demo.sh $(BUILD_DIR)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 600

bench: build
	$(BUILD_DIR)/tests/bench/carapace-bench-runtime
	$(BUILD_DIR)/tests/bench/carapace-bench-memory
	$(BUILD_DIR)/tests/bench/carapace-bench-model
	$(BUILD_DIR)/tests/bench/carapace-bench-worker
	$(BUILD_DIR)/tests/bench/carapace-bench-operator

# ASan + UBSan build and test run in its own build dir.
sanitize:
	$(MAKE) test BUILD_DIR=build-asan CMAKE_FLAGS="-DCMAKE_BUILD_TYPE=Debug -DCARAPACE_SANITIZE=ON -DCARAPACE_BUILD_BENCH=OFF"

# libFuzzer (clang) on every harness of tests/fuzz for FUZZ_SECONDS each, from its seed
# corpus; what it finds new is kept in build-fuzz/corpus, crashes in build-fuzz/artifacts.
FUZZ_SECONDS ?= 60
fuzz:
	@CARAPACE_FUZZ_DEPS=1 bash scripts/install-deps.sh
	CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCARAPACE_FUZZ=ON -DCARAPACE_BUILD_TESTS=OFF -DCARAPACE_BUILD_BENCH=OFF
	bash scripts/fuzz.sh build-fuzz $(FUZZ_SECONDS) $(JOBS)

clean:
	rm -rf $(BUILD_DIR) build-asan build-fuzz
