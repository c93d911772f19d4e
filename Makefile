# rta: top-level entry points. The real build is CMake (CMakeLists.txt); this file only
# strings the steps together so a newcomer needs two commands: `make run` and `make test`.

BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= 2
RUN_ARGS   ?=
FUZZ_RUNS ?= 200000
FUZZ_SEED ?= 1

.PHONY: all deps build asan run test unit unit-asan e2e e2e-asan tsan fuzz fuzz-build format format-check clean

all: build

deps:
	@./scripts/install-deps.sh

build:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

asan:
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DRTA_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j$(JOBS)

# Starts rtad on the embedded default (SQLite in ./var, in-process cache and bus) with the
# market simulator feeding live, clearly labelled simulated data.
run: deps build
	./$(BUILD)/rtad --simulate $(RUN_ARGS)

unit: build
	ctest --test-dir $(BUILD) --output-on-failure

unit-asan: asan
	ctest --test-dir $(ASAN_BUILD) --output-on-failure

e2e: build
	RTAD_BIN=$(BUILD)/rtad node --test --test-concurrency=2 tests/e2e/

e2e-asan: asan
	RTAD_BIN=$(ASAN_BUILD)/rtad RTAD_SANITIZED=1 \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	node --test --test-concurrency=2 tests/e2e/

# ThreadSanitizer over what runs on more than one thread: the writer threads (test_ws runs its
# whole suite with and without them; the realtime e2e files that stress them) and the store
# thread (test_store). A race makes the unit test fail and rtad exit 66 (the e2e checks 0).
TSAN_E2E = tests/e2e/realtime-writers.test.mjs tests/e2e/realtime-slow.test.mjs \
	tests/e2e/realtime-pacing.test.mjs tests/e2e/realtime-shutdown.test.mjs
tsan:
	@cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS="-fsanitize=thread -O1" \
	  -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread >/dev/null
	@cmake --build $(TSAN_BUILD) -j$(JOBS) --target rtad test_ws test_store
	TSAN_OPTIONS=halt_on_error=1:exitcode=66 $(TSAN_BUILD)/test_ws
	TSAN_OPTIONS=halt_on_error=1:exitcode=66 $(TSAN_BUILD)/test_store
	RTAD_BIN=$(TSAN_BUILD)/rtad TSAN_OPTIONS=halt_on_error=1:exitcode=66 \
	node --test --test-concurrency=2 $(TSAN_E2E)

fuzz-build:
	@CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DRTA_FUZZ=ON -DRTA_SANITIZE=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j$(JOBS)

# A short run of every fuzz target: a fixed seed and run count make it repeatable (the same
# inputs every time), so CI does not turn red by chance; longer, random runs: docs/modules/ws.md
# and docs/modules/socketio.md.
fuzz: fuzz-build
	@set -e; for f in $(FUZZ_BUILD)/fuzz_*; do \
	  [ -x "$$f" ] || continue; \
	  name=$$(basename $$f); seeds=tests/fuzz/seeds/$$(echo $$name | cut -d_ -f2); \
	  corpus=$(FUZZ_BUILD)/corpus-$$name; mkdir -p $$corpus; \
	  [ -d $$seeds ] || seeds=; \
	  if $$f -seed=$(FUZZ_SEED) -runs=$(FUZZ_RUNS) -max_total_time=120 $$corpus $$seeds > $(FUZZ_BUILD)/$$name.log 2>&1; then \
	    echo "fuzz: $$name: $$(grep -o 'Done [0-9]* runs in [0-9]* second' $(FUZZ_BUILD)/$$name.log)"; \
	  else \
	    tail -40 $(FUZZ_BUILD)/$$name.log; echo "fuzz: $$name FAILED"; exit 1; \
	  fi; \
	done

# Everything CI checks: formatting, unit + e2e on the normal build and on the ASan+UBSan build,
# short fuzz runs.
test: deps
	@$(MAKE) --no-print-directory format-check unit unit-asan e2e e2e-asan tsan fuzz

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
