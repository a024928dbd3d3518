# The two commands of a fresh machine: `make demo` and `make test`.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all bootstrap configure build demo test clean

all: build

bootstrap:
	@scripts/bootstrap

$(BUILD)/build.ninja:
	cmake -G Ninja -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

configure: bootstrap $(BUILD)/build.ninja

build: configure
	cmake --build $(BUILD) -j $(JOBS)

# Until training lands, the demo compiles the tiny recipe and shows its IR
# and memory summary.
demo: build
	$(BUILD)/bin/trlc compile recipes/tiny-sft.toml --emit=mlir
	$(BUILD)/bin/trlc compile recipes/tiny-sft.toml -o $(BUILD)/tiny-sft.trlc

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

clean:
	rm -rf $(BUILD)
