# dobj: durable objects, self-hosted.
#
#   make            build build/dobj and the example classes
#   make run        install what is missing, build, serve the examples on :8080
#   make test       install what is missing, build, run unit and system tests
#   make bench      benchmarks (figures go to BENCHMARKS.md)
#   make sim        the replication protocol under the simulator: SEEDS=N, or SEED=S to replay one
#   make install    PREFIX=/usr/local DESTDIR=
#   make asan       an ASan+UBSan build in build-asan/
#   make fuzz       the libFuzzer targets of tests/fuzz/ (clang, build-fuzz/), FUZZ_SECONDS each
#
# SANITIZE=1 builds everything with ASan+UBSan into build-asan/.

PREFIX ?= /usr/local
DESTDIR ?=
CC ?= cc
PY := /usr/bin/python3

ifeq ($(FUZZ),1)
# libFuzzer targets (tests/fuzz/) need clang's coverage instrumentation.
BUILD ?= build-fuzz
CC := clang
SANFLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined \
    -Wno-unknown-warning-option -Wno-format-nonliteral
OPT ?= -O1 -g
else ifeq ($(SANITIZE),1)
BUILD ?= build-asan
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT ?= -O1 -g
else
BUILD ?= build
SANFLAGS :=
OPT ?= -O2 -g
endif

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 \
        -Wimplicit-fallthrough -Wvla -Wno-format-truncation
CSTD := -std=c11 -D_GNU_SOURCE
INC := -Isdk/include -Isdk -Iruntime -Iwal -Ireplicate -Irouter
CFLAGS_ALL := $(CSTD) $(OPT) $(WARN) $(INC) $(SANFLAGS) $(CFLAGS)
LIBS := -luv -lsqlite3 -lh2o -lwslay -lssl -lcrypto -lxxhash -lzstd -luring -lcurl -lpthread -ldl
# The binary exports only the SDK (dobj_*) to the class libraries it loads.
LDFLAGS_BIN := -Wl,--dynamic-list=sdk/exports.list $(SANFLAGS) $(LDFLAGS)

SDK_SRC := $(wildcard sdk/src/*.c)
RT_SRC := $(filter-out runtime/main.c,$(wildcard runtime/*.c)) $(wildcard wal/*.c replicate/*.c router/*.c)
LIB_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(SDK_SRC) $(RT_SRC))
MAIN_OBJ := $(BUILD)/obj/runtime/main.o

EXAMPLES := $(BUILD)/examples/counter.so $(BUILD)/examples/chat.so
TEST_CLASSES := $(BUILD)/tests/probe.so
CLASS_CFLAGS := $(CSTD) $(OPT) $(WARN) -Isdk/include -fPIC -shared -fvisibility=hidden

UNIT_SRC := $(wildcard tests/unit/*/*.c)
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/unit/%,$(UNIT_SRC))

.PHONY: all deps run run-cluster test test-unit test-system test-sim sim bench install uninstall clean asan \
    fuzz fuzz-run fuzz-seeds

all: $(BUILD)/dobj $(EXAMPLES) $(TEST_CLASSES)

$(BUILD)/obj/%.o: %.c $(wildcard sdk/include/*.h sdk/*.h runtime/*.h wal/*.h replicate/*.h router/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/dobj: $(LIB_OBJ) $(MAIN_OBJ) sdk/exports.list
	$(CC) $(LIB_OBJ) $(MAIN_OBJ) -o $@ $(LDFLAGS_BIN) $(LIBS)

$(BUILD)/examples/%.so: examples/%/*.c sdk/include/dobj.h
	@mkdir -p $(dir $@)
	$(CC) $(CLASS_CFLAGS) $(filter %.c,$^) -o $@

$(BUILD)/tests/%.so: tests/system/classes/%.c sdk/include/dobj.h
	@mkdir -p $(dir $@)
	$(CC) $(CLASS_CFLAGS) $< -o $@

# Unit tests link the runtime's objects, so they can test internal functions.
$(BUILD)/unit/%: tests/unit/%.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itests/unit $< $(LIB_OBJ) -o $@ $(SANFLAGS) -lcriterion $(LIBS)

asan:
	$(MAKE) SANITIZE=1 all

# Fuzzing (tests/fuzz/): each target over its committed seed corpus, then
# new inputs for FUZZ_SECONDS (kept under build-fuzz/fuzz/new-*, not in git).
FUZZ_SECONDS ?= 10
FUZZ_SRC := $(filter-out tests/fuzz/seeds.c,$(wildcard tests/fuzz/*.c))
FUZZ_BIN := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))

$(BUILD)/fuzz/%: tests/fuzz/%.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $< $(LIB_OBJ) -o $@ -fsanitize=fuzzer,address,undefined $(LIBS)

fuzz:
	@$(MAKE) --no-print-directory FUZZ=1 fuzz-run

fuzz-run: $(FUZZ_BIN)
	@for t in $(FUZZ_BIN); do n=$$(basename $$t); n=$${n#fuzz_}; mkdir -p $(BUILD)/fuzz/new-$$n; \
	    echo "== $$t: $(FUZZ_SECONDS) s from tests/fuzz/corpus/$$n"; \
	    $(SAN_ENV) $$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -artifact_prefix=$(BUILD)/fuzz/ \
	        $(BUILD)/fuzz/new-$$n tests/fuzz/corpus/$$n > $(BUILD)/fuzz/$$n.log 2>&1 || \
	        { tail -60 $(BUILD)/fuzz/$$n.log; echo "fuzz: $$t failed; the input is under $(BUILD)/fuzz/"; exit 1; }; \
	    grep -E "DONE" $(BUILD)/fuzz/$$n.log; done

# Writes the seed corpora with the real encoders (commit what it writes).
fuzz-seeds: $(LIB_OBJ)
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS_ALL) tests/fuzz/seeds.c $(LIB_OBJ) -o $(BUILD)/fuzz-seeds $(LIBS)
	$(BUILD)/fuzz-seeds tests/fuzz/corpus

# The simulator (tests/sim/) links the protocol core; sim-planted-N builds it
# with bug N planted in the core (replicate/quorum.c), and sim-planted-nojoint
# with one planted in its model of the runtime (leaders that skip the joint
# configuration of a membership change), which the checker must catch.
SIM_LIB_OBJ := $(filter-out $(BUILD)/obj/replicate/quorum.o,$(LIB_OBJ))
PLANTED := 1 2 3
SIM_PLANTED := $(PLANTED) nojoint

$(BUILD)/sim/sim: tests/sim/sim.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $< $(LIB_OBJ) -o $@ $(SANFLAGS) $(LIBS)

$(BUILD)/sim/sim-planted-%: tests/sim/sim.c replicate/quorum.c $(SIM_LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -DREPL_SIM_PLANTED_BUG=$* tests/sim/sim.c replicate/quorum.c $(SIM_LIB_OBJ) -o $@ \
	    $(SANFLAGS) $(LIBS)

$(BUILD)/sim/sim-planted-nojoint: tests/sim/sim.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -DSIM_PLANTED_NO_JOINT $< $(LIB_OBJ) -o $@ $(SANFLAGS) $(LIBS)

SEEDS ?= 2000
sim: $(BUILD)/sim/sim
	$< $(if $(SEED),--seed $(SEED) -v,--seeds $(SEEDS) $(if $(FROM),--from $(FROM)))

test-sim: $(BUILD)/sim/sim $(addprefix $(BUILD)/sim/sim-planted-,$(SIM_PLANTED))
	$(SAN_ENV) $(BUILD)/sim/sim --seeds $(SEEDS)
	@for b in $(SIM_PLANTED); do \
	    if $(SAN_ENV) $(BUILD)/sim/sim-planted-$$b --seeds $(SEEDS) >$(BUILD)/sim/planted-$$b.log 2>&1; then \
	        echo "test-sim: planted bug $$b was not caught"; exit 1; fi; \
	    echo "test-sim: planted bug $$b caught: $$(head -1 $(BUILD)/sim/planted-$$b.log)"; done

# ---- set-up -------------------------------------------------------------

DEB_PACKAGES := gcc make pkg-config libuv1-dev libsqlite3-dev libh2o-dev libwslay-dev libssl-dev \
    liburing-dev libcurl4-openssl-dev libxxhash-dev libzstd-dev libcriterion-dev sqlite3 curl wrk \
    python3-pytest python3-requests python3-websocket python3-websockets python3-boto3 python3-zstandard python3-xxhash \
    swift-proxy swift-account swift-container swift-object nodejs etcd-server etcd-client nftables \
    clang libclang-rt-14-dev

# s3rver (npm), one of the two S3 servers of the system tests
# (tests/system/s3servers.py), goes into tests/.node, not into the system.
S3RVER_VERSION := 3.7.1
NODE_DIR := tests/.node

# Installs, only when something is missing, the Debian packages the build and
# tests need; `apt-get update` runs once, and only then.
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "make deps: installing $$missing"; \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@grep -qs '"version": "$(S3RVER_VERSION)"' $(NODE_DIR)/node_modules/s3rver/package.json || { \
	    echo "make deps: installing s3rver $(S3RVER_VERSION) into $(NODE_DIR)"; \
	    if ! command -v npm >/dev/null; then \
	        SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	        $$SUDO apt-get update -qq && \
	        DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends npm; \
	    fi; \
	    mkdir -p $(NODE_DIR) && \
	    npm install --prefix $(NODE_DIR) --no-save --no-package-lock --no-audit --no-fund --loglevel=error \
	        s3rver@$(S3RVER_VERSION); }

run: deps
	@$(MAKE) --no-print-directory all
	@mkdir -p data
	@echo "dobj: serving on http://127.0.0.1:8080 with data in ./data; try:"
	@echo "  curl -X POST http://127.0.0.1:8080/counter/alice"
	@echo "  curl http://127.0.0.1:8080/counter/alice"
	@echo "  open http://127.0.0.1:8080/chat/lobby/ in a browser (chat over WebSocket)"
	exec $(BUILD)/dobj serve --listen 127.0.0.1:8080 --data ./data $(addprefix --class ,$(EXAMPLES))

# Six hosts on loopback: clients on 8081..8086, peers on 9081..9086, data in
# ./data-cluster/hN and a shared file:// store; Ctrl-C stops them all.
CLUSTER_DIR := data-cluster
run-cluster: deps
	@$(MAKE) --no-print-directory all
	@mkdir -p $(CLUSTER_DIR)
	@test -f $(CLUSTER_DIR)/cluster.conf || { \
	  echo "secret $$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"; \
	  for i in 1 2 3 4 5 6; do echo "host $$i 127.0.0.1:808$$i 127.0.0.1:908$$i"; done; \
	} > $(CLUSTER_DIR)/cluster.conf
	@echo "dobj: six hosts on http://127.0.0.1:8081 .. :8086 (cluster file $(CLUSTER_DIR)/cluster.conf); try:"
	@echo "  curl -X POST http://127.0.0.1:8083/counter/alice     (any host: forwarded to its leader)"
	@echo "  $(BUILD)/dobj status --server http://127.0.0.1:8081"
	@echo "  open http://127.0.0.1:8085/chat/lobby/ in a browser"
	@trap 'kill $$(jobs -p) 2>/dev/null; wait' INT TERM EXIT; \
	for i in 1 2 3 4 5 6; do \
	  $(BUILD)/dobj serve --cluster $(CLUSTER_DIR)/cluster.conf --host-id $$i --data $(CLUSTER_DIR)/h$$i \
	    --store file://$(CURDIR)/$(CLUSTER_DIR)/store --listen 127.0.0.1:808$$i --shards 1 \
	    $(addprefix --class ,$(EXAMPLES)) & \
	done; wait

# Unit tests run under ASan+UBSan; the system tests run against both builds.
test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory SANITIZE=1 all
	@$(MAKE) --no-print-directory SANITIZE=1 test-unit
	@$(MAKE) --no-print-directory SANITIZE=1 test-sim SEEDS=200
	@$(MAKE) --no-print-directory test-sim SEEDS=2000
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=10
	@$(MAKE) --no-print-directory SANITIZE=1 test-system
	@$(MAKE) --no-print-directory test-system

SAN_ENV := ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0

test-unit: $(UNIT_BIN)
	@fail=0; for t in $(UNIT_BIN); do echo "== $$t"; $(SAN_ENV) $$t --jobs 2 || fail=1; done; exit $$fail

test-system: all
	$(SAN_ENV) DOBJ_BUILD_DIR=$(CURDIR)/$(BUILD) $(PY) -m pytest -q tests/system

bench: deps all
	tests/bench/run.sh
	DOBJ_BUILD=$(BUILD) $(PY) tests/bench/store.py
	DOBJ_BUILD=$(BUILD) $(PY) tests/bench/cluster.py
	DOBJ_BUILD=$(BUILD) $(PY) tests/bench/router.py
	DOBJ_BUILD=$(BUILD) $(PY) tests/bench/membership.py

# ---- install ------------------------------------------------------------

install: $(BUILD)/dobj
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 755 $(BUILD)/dobj $(DESTDIR)$(PREFIX)/bin/dobj
	install -m 644 sdk/include/dobj.h $(DESTDIR)$(PREFIX)/include/dobj.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(shell sed -n 's/^#define DOBJ_VERSION "\(.*\)"/\1/p' sdk/include/dobj.h)|g' \
	    sdk/dobj.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/dobj.pc

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/dobj $(DESTDIR)$(PREFIX)/include/dobj.h $(DESTDIR)$(PREFIX)/lib/pkgconfig/dobj.pc

clean:
	rm -rf build build-asan
