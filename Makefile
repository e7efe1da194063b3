# Thin driver over CMake (as neovim does): `make run`, `make test`.
BUILD_DIR ?= build
BUILD_TYPE ?= Release
CMAKE_FLAGS ?=
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
PORT ?= 7000
RUN_ARGS ?=

.PHONY: all deps configure build run test asan tsan format format-check clean

all: build

deps:
	@bash tools/install-deps.sh

$(BUILD_DIR)/CMakeCache.txt:
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS)

configure: deps $(BUILD_DIR)/CMakeCache.txt

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

# Starts the bundled server in the foreground; Ctrl-C stops it gracefully.
run: build
	@if [ -x $(BUILD_DIR)/bin/tern-chat ]; then \
	  exec $(BUILD_DIR)/bin/tern-chat --port $(PORT) $(RUN_ARGS); \
	else \
	  exec $(BUILD_DIR)/bin/tern-echo --port $(PORT) $(RUN_ARGS); \
	fi

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure --timeout 600

# Sanitizer builds live in their own build trees so they never mix objects.
asan:
	$(MAKE) test BUILD_DIR=build-asan BUILD_TYPE=Debug \
	  CMAKE_FLAGS="-DTERN_SANITIZE=address,undefined -DTERN_BUILD_TOOLS=OFF"

tsan:
	$(MAKE) test BUILD_DIR=build-tsan BUILD_TYPE=Debug \
	  CMAKE_FLAGS="-DTERN_SANITIZE=thread -DTERN_BUILD_TOOLS=OFF"

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-tsan
