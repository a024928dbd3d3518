# The two commands of a fresh machine: `make demo` and `make test`.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all bootstrap configure build demo test test-sanitize fuzz fuzz-replay clean

all: build

bootstrap:
	@scripts/bootstrap

$(BUILD)/build.ninja:
	cmake -G Ninja -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

configure: bootstrap $(BUILD)/build.ninja

build: configure
	cmake --build $(BUILD) -j $(JOBS)

# Trains a tiny llama-shaped model from scratch to add two numbers (about
# 15 seconds on two cores), then greedily answers held-out prompts.
demo: build
	$(BUILD)/bin/trlc train recipes/tiny-sft.toml -o $(BUILD)/tiny-sft.trlc

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# AddressSanitizer + UndefinedBehaviorSanitizer over the unit, lit and
# fuzz-replay tests (the Python reference tests run in `make test`), in a
# build of its own without CUDA.
SAN_BUILD ?= build-sanitize
test-sanitize: bootstrap
	cmake -G Ninja -S . -B $(SAN_BUILD) -DCMAKE_BUILD_TYPE=Release -DTRLC_CUDA=OFF \
	  -DTRLC_EMU_TESTS=OFF -DTRLC_SANITIZE=address,undefined $(CMAKE_FLAGS)
	cmake --build $(SAN_BUILD) -j $(JOBS)
	cd $(SAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS) -E '^(torch-|smollm2-|python-oracles)'

# libFuzzer (Debian's clang) with ASan + UBSan: each target of tests/fuzz
# runs FUZZ_SECONDS from its corpus; new inputs land in
# $(FUZZ_BUILD)/corpus, crashes in $(FUZZ_BUILD)/crashes (add each to
# tests/fuzz/corpus/TARGET once fixed: CI replays them).
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= recipe jsonl tokenizer chat_template safetensors artifact
fuzz:
	@scripts/bootstrap clang
	CC=clang CXX=clang++ cmake -G Ninja -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Release \
	  -DTRLC_CUDA=OFF -DTRLC_EMU_TESTS=OFF -DTRLC_FUZZ=ON \
	  "-DCMAKE_CXX_FLAGS=-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -g1" \
	  "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address,undefined" $(CMAKE_FLAGS)
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target $(addprefix fuzz-,$(FUZZ_TARGETS))
	scripts/fuzz $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

clean:
	rm -rf $(BUILD)
