# Thin driver over CMake (as neovim does): `make run`, `make test`.
BUILD_DIR ?= build
BUILD_TYPE ?= Release
CMAKE_FLAGS ?=
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
PORT ?= 7000
RUN_ARGS ?=
# make install PREFIX=/opt/tern (DESTDIR is honoured too, for staging).
PREFIX ?= /usr/local

.PHONY: all deps test-deps configure build run test check fuzz asan tsan lint format format-check clean \
	install docs

# What the test suite uses beyond the build: clang + libFuzzer for the codec
# fuzzers, redis-cli and python3-redis for the tern-kv client tests
# (tests/integration/kv), redis-server for run-kv-bench.sh; libevent and libuv
# (baseline echo servers), redis-benchmark and gnuplot for the benchmark
# smoke test (bench.smoke); podman, runc and debootstrap for the container
# image test (container.chat); doxygen for `make docs`, which `make test`
# runs (seconds, and doxygen's big dependencies come with clang anyway);
# python3 for docs.snippets (tests/docs/run_snippets.py); hiredis and
# redis-server for example-redis-async and its test (integration.redis_async);
# http_parser for proto/http's differential test, curl for example-http-hello's;
# redis-server and python3-redis for tern-kv's client tests (kv.redis_py, ...).
TEST_EXTRA_DEPS ?= clang libclang-rt-14-dev redis-tools libevent-dev libuv1-dev gnuplot-nox \
	libhttp-parser-dev curl python3-redis \
	podman runc debootstrap doxygen python3 libhiredis-dev redis-server prometheus
FUZZ_SECONDS ?= 20
# Static analysers for `make lint` (tools/lint.sh; configs .clang-tidy,
# .cppcheck-suppressions, tools/lint/cppcheck.cfg).
LINT_DEPS ?= clang-tidy cppcheck clang-format

all: build

deps:
	@bash tools/install-deps.sh

test-deps:
	@TERN_EXTRA_DEPS="$(TEST_EXTRA_DEPS)" bash tools/install-deps.sh

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

test: test-deps check
	$(MAKE) --no-print-directory docs
	@if command -v clang >/dev/null; then $(MAKE) --no-print-directory fuzz; \
	 else echo "clang not found: fuzzers skipped"; fi

# Build and run ctest in BUILD_DIR, nothing else.
check: build
	cd $(BUILD_DIR) && ctest --output-on-failure --timeout 600

# Each codec's libFuzzer harness for FUZZ_SECONDS over its seed corpus
# (ASan + UBSan), built with clang in its own tree.
fuzz:
	cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
	  -DTERN_FUZZ=ON -DTERN_BUILD_TOOLS=OFF -DTERN_FUZZ_SECONDS=$(FUZZ_SECONDS) >/dev/null
	cmake --build build-fuzz -j $(JOBS) --target fuzzers
	cd build-fuzz && ctest -L fuzz --output-on-failure

# Sanitizer builds live in their own build trees so they never mix objects.
asan:
	$(MAKE) check BUILD_DIR=build-asan BUILD_TYPE=Debug \
	  CMAKE_FLAGS="-DTERN_SANITIZE=address,undefined -DTERN_BUILD_TOOLS=OFF"

# tests/tsan.supp for every test (the Python ones pass it to the programs).
tsan: export TSAN_OPTIONS = suppressions=$(CURDIR)/tests/tsan.supp
tsan:
	$(MAKE) check BUILD_DIR=build-tsan BUILD_TYPE=Debug \
	  CMAKE_FLAGS="-DTERN_SANITIZE=thread -DTERN_BUILD_TOOLS=OFF"

# clang-format (the committed .clang-format), then clang-tidy + cppcheck over
# core/ net/ proto/ apps/ tools/ examples/; any finding fails. Configures
# build-lint/ for its compile database only.
lint:
	@TERN_EXTRA_DEPS="$(LINT_DEPS)" bash tools/install-deps.sh
	$(MAKE) --no-print-directory format-check
	JOBS=$(JOBS) bash tools/lint.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

# Libraries, headers, tern.pc and the CMake package under PREFIX.
# A library-only install needs only the build dependencies: no Criterion or
# liburing from install-deps.sh, and the test suite is left out of a fresh
# build directory when Criterion is absent (tests/CMakeLists.txt requires it).
install: export TERN_DEPS_NO_TESTS = 1
install: CMAKE_FLAGS += $(if $(shell pkg-config --exists criterion >/dev/null 2>&1 && echo y),,-DTERN_BUILD_TESTS=OFF)
install: build
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD_DIR) --prefix "$(PREFIX)"

# API reference from the public headers into $(BUILD_DIR)/docs/api; any
# doxygen warning (an undocumented public symbol, a bad command) fails.
docs:
	@TERN_EXTRA_DEPS=doxygen bash tools/install-deps.sh
	rm -rf $(BUILD_DIR)/docs && mkdir -p $(BUILD_DIR)/docs
	@TERN_DOCS_OUT="$(abspath $(BUILD_DIR))/docs" \
	  TERN_VERSION="$$(sed -n 's/^#define TERN_VERSION_STRING *"\([^"]*\)".*/\1/p' core/version.h)" \
	  doxygen docs/Doxyfile || { cat $(BUILD_DIR)/docs/warnings.log; \
	  echo "make docs: doxygen warnings (above)"; exit 1; }
	@echo "API reference: $(BUILD_DIR)/docs/api/index.html"

clean:
	rm -rf build build-asan build-tsan build-fuzz build-lint
