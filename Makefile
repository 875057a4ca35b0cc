# Makefile for concurrent: futures and executors for Lua 5.4.
# 'make' builds the module into build/; 'make test' runs the specs.
# See README.md for the targets.

# == CHANGE THE SETTINGS BELOW TO SUIT YOUR ENVIRONMENT =======================

# make's own default CC is "cc": replace only that default, so that
# 'make CC=clang' and CC in the environment still win.
ifeq ($(origin CC),default)
CC = gcc
endif
LUA ?= lua5.4
LUA_INC ?= /usr/include/lua5.4
LUA_VERSION = 5.4
PREFIX ?= /usr/local
INSTALL_LMOD ?= $(PREFIX)/share/lua/$(LUA_VERSION)
INSTALL_CMOD ?= $(PREFIX)/lib/lua/$(LUA_VERSION)
INSTALL_INC ?= $(PREFIX)/include
INSTALL_LIB ?= $(PREFIX)/lib
INSTALL_PC ?= $(INSTALL_LIB)/pkgconfig

# Lua's own warning set (CWARNSC of its makefile) on top of -Wall -Wextra.
CWARNS = -Wall -Wextra -Wshadow -Wsign-compare -Wundef -Wwrite-strings \
         -Wredundant-decls -Wdisabled-optimization -Wdouble-promotion \
         -Wdeclaration-after-statement -Wmissing-prototypes \
         -Wnested-externs -Wstrict-prototypes -Wc++-compat \
         -Wold-style-definition
COPT = -O2 -g
# SAN: a sanitizer list for -fsanitize=, e.g. SAN=address,undefined.
# 'make asan' and 'make tsan' set it and build into their own directory.
SAN =
# The compiler of every sanitizer build (asan, tsan, faults, fuzz). Its
# runtimes must survive a fork while other threads allocate, as a process
# pool's does: those of clang 19 lock their allocators around fork; those
# of gcc 12 and of clang up to 16 do not, and a child forked while another
# thread was inside one hangs at its first allocation there (Debian 12:
# clang-19 and libclang-rt-19-dev, which the targets install).
CLANG = clang-19
BUILD = build

# == END OF USER SETTINGS -- NO NEED TO CHANGE ANYTHING BELOW THIS LINE =======

SANFLAGS = $(if $(SAN),-fsanitize=$(SAN) -fno-omit-frame-pointer \
           -fno-sanitize-recover=all)
# Link-time optimization, with gcc outside the sanitizer builds: the
# module's files call each other's small functions on every task
# (future state, payload data, slab blocks, the codec's scalar reads),
# and inlined across files a w1 task costs the owner thread some 250
# instructions less (make callgrind). Fat objects: the core's objects
# also make libconcurrent.a and the test programs, linked without LTO.
# Not with clang, whose LTO needs a linker plugin of its own. The link
# optimizes, so it takes COPT too.
LTO = $(if $(SAN),,$(if $(findstring gcc,$(notdir $(CC))),-flto=auto -ffat-lto-objects))
CFLAGS = -std=c99 -D_GNU_SOURCE $(CWARNS) $(COPT) $(LTO) $(SANFLAGS) \
         -fPIC -pthread -fvisibility=hidden -Icore/include -Icore -Ilua \
         -I$(LUA_INC) $(MYCFLAGS)
LDFLAGS = -shared -pthread $(if $(LTO),$(LTO) $(COPT)) $(SANFLAGS) $(MYLDFLAGS)

CORE_SRC = $(sort $(wildcard core/*.c))
BIND_SRC = $(sort $(wildcard lua/*.c))
LUA_SRC = $(sort $(wildcard lua/concurrent/*.lua))
CORE_OBJ = $(CORE_SRC:%.c=$(BUILD)/%.o)
BIND_OBJ = $(BIND_SRC:%.c=$(BUILD)/%.o)
MODULE = $(BUILD)/concurrent/core.so
# Spec-only C module: completes futures from host threads, codec round trips.
# It links no core of its own: it reaches the module's through conc_lua_api_t;
# the general rule for spec/support/*.c below builds it.
TESTHELPER = $(BUILD)/testhelper.so

# The core alone, for C programs without Lua. A host that embeds Lua uses
# the module's own core through conc_lua_api_t instead (examples/embed.c).
LIBCORE = $(BUILD)/libconcurrent.a
EMBED = $(BUILD)/embed

all: $(MODULE) $(LIBCORE)

$(LIBCORE): $(CORE_OBJ)
	$(AR) rcs $@ $^

$(BUILD)/%.o: %.c $(wildcard core/*.h core/include/*.h lua/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# The modules stay mapped once loaded (-z nodelete): lua_close dlcloses
# them, yet a host may hold futures (and conc_lua_api_t, which points into
# the module) past the close of the last state that loaded one, and go on
# completing, reading and releasing them from its own threads; a Lua state
# in another thread may be using them too. Unmapped, each such call was a
# jump into freed pages (spec/20-embed_spec.lua).
MODLDFLAGS = -Wl,-z,nodelete

$(MODULE): $(CORE_OBJ) $(BIND_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $(MODLDFLAGS) -o $@ $^

# == SPECS, DEMO, SANITIZERS, INSTALL =========================================

# Spec-only C modules: every spec/support/<name>.c except the sanitizer host
# becomes $(BUILD)/<name>.so; it reaches the module through conc_lua_api_t.
HELPER_SRC = $(filter-out spec/support/host.c spec/support/pooltest.c spec/support/queuetest.c spec/support/embedtest.c spec/support/tsanjmp.c,$(sort $(wildcard spec/support/*.c)))
HELPERS = $(HELPER_SRC:spec/support/%.c=$(BUILD)/%.so)
# Their objects are intermediate to make: keep them, so a rerun relinks nothing.
.SECONDARY: $(HELPER_SRC:%.c=$(BUILD)/%.o)
HOST = $(BUILD)/host
# The core thread pool driven from C alone (spec/07-corepool_spec.lua).
POOLTEST = $(BUILD)/pooltest
# The core queue and timer from C alone (spec/16-corequeue_spec.lua).
QUEUETEST = $(BUILD)/queuetest
# A host of several Lua states in threads of its own (spec/20-embed_spec.lua).
EMBEDTEST = $(BUILD)/embedtest
SPECS = $(sort $(wildcard spec/*_spec.lua))
# Stress specs (bounded in count and time) run with the others.
SPECS += $(sort $(wildcard spec/stress/*_spec.lua))
BENCHES = $(sort $(wildcard spec/bench/*.lua))
ROCKSPEC = rockspec/concurrent-scm-1.rockspec
VERSION = $(shell sed -n 's/^\#define CONC_VERSION "\(.*\)"/\1/p' core/include/concurrent.h)

# Every entry point checks its Debian packages first (mk/deps.sh installs
# them as root, otherwise prints the apt-get command), then builds in a
# sub-make so that nothing is compiled before the headers are there.
DEPS = LUA='$(LUA)' LUA_INC='$(LUA_INC)' CC='$(CC)' sh mk/deps.sh
CLANGDEPS = LUA='$(LUA)' LUA_INC='$(LUA_INC)' CC='$(CLANG)' sh mk/deps.sh
SUBMAKE = $(MAKE) --no-print-directory
LUAENV = LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='$(BUILD)/?.so;;'
# Bounds on a spec run (mk/specrun.sh): past this many seconds it has hung,
# past this much resident memory it runs away; either way it fails.
SPEC_TIMEOUT = 600
# The sanitizers' runs are 5-10x slower: the whole suite took 520 s of
# the 600 under TSan before the last round's specs were added.
SAN_SPEC_TIMEOUT = 1500
SPEC_RSS_MB = 8192
BUSTED_ARGS = --lpath='lua/?.lua;lua/?/init.lua' --cpath='$(BUILD)/?.so' \
              --output=spec/support/summary.lua \
              $(if $(wildcard spec/helpers.lua),--helper=spec/helpers.lua) $(SPECS)

# Sanitizers.  The stock lua5.4 is not instrumented, and a sanitizer runtime
# cannot arrive late with a dlopen'ed module (ASan must be first in the
# library list, TSan must see every thread from the start).  So 'make asan'
# and 'make tsan' rebuild everything with SAN= into their own directory, plus
# spec/support/host.c: a minimal 'lua script args' interpreter linked with
# liblua5.4 and the runtime, which runs busted's runner.  The host closes its
# lua_State before exiting, so LeakSanitizer sees only real leaks.
# mk/specrun.sh turns a sanitizer abort into a counted failure.
ASAN_ENV = ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1 \
           UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
TSAN_SUPP = spec/support/tsan.supp
# die_after_fork=0: a process-pool child starts a thread of its own (its
# reader) after the fork; it touches nothing the parent's threads held.
TSAN_ENV = TSAN_OPTIONS='halt_on_error=1:second_deadlock_stack=1:die_after_fork=0$(if $(wildcard $(TSAN_SUPP)),:suppressions=$(CURDIR)/$(TSAN_SUPP))'
SAN_ENV = $(if $(findstring thread,$(SAN)),$(TSAN_ENV),$(ASAN_ENV))

test:
	@$(DEPS) cc lua headers busted luv script
	@$(SUBMAKE) specs

asan:
	@$(CLANGDEPS) cc sanitizers lua headers busted luv script
	@$(SUBMAKE) CC=$(CLANG) SAN=address,undefined BUILD=build-asan \
	  SPEC_TIMEOUT=$(SAN_SPEC_TIMEOUT) specs

tsan:
	@$(CLANGDEPS) cc sanitizers lua headers busted luv script
	@$(SUBMAKE) CC=$(CLANG) SAN=thread BUILD=build-tsan \
	  SPEC_TIMEOUT=$(SAN_SPEC_TIMEOUT) specs

# The suite with the assertions on (conc_assert in core/, the binding's
# stack checks), as Lua's own test builds turn LUAI_ASSERT on.
debug:
	@$(DEPS) cc lua headers busted luv
	@$(SUBMAKE) BUILD=build-debug COPT='-O1 -g' \
	  MYCFLAGS='$(MYCFLAGS) -DCONC_DEBUG -DLCONC_DEBUG' specs

# Fault injection: the module rebuilt under ASan+UBSan (with its task
# blocks' slabs, CONC_FAULTS) with
# spec/faults/faults.c wrapped around its malloc, calloc, realloc, mmap,
# pthread_create, eventfd, socketpair, fork and its worker states'
# allocator (faults.c says why --wrap), then spec/faults/sweep.lua fails each call in turn of every
# scenario, within FAULTS_TIME seconds: each failure must end as a Lua
# error or a failed future, never a crash, hang, abort or leak.
FAULTS_BUILD = build-faults
FAULTS_TIME = 120
FAULTS_WRAP = -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=mmap \
              -Wl,--wrap=pthread_create,--wrap=eventfd,--wrap=socketpair,--wrap=fork \
              -Wl,--wrap=luaL_newstate

faults:
	@$(CLANGDEPS) cc sanitizers lua headers
	@$(SUBMAKE) CC=$(CLANG) SAN=address,undefined BUILD=$(FAULTS_BUILD) $(FAULTS_BUILD)/host
	@$(SUBMAKE) CC=$(CLANG) SAN=address,undefined BUILD=$(FAULTS_BUILD) \
	  MYCFLAGS='$(MYCFLAGS) -DCONC_FAULTS' \
	  MYLDFLAGS='$(MYLDFLAGS) $(FAULTS_WRAP)' $(FAULTS_BUILD)/concurrent/core.so
	@$(ASAN_ENV) $(LUA) spec/faults/sweep.lua $(FAULTS_BUILD) $(FAULTS_TIME)

# The faults build links the wrappers into the module (an added prerequisite).
$(FAULTS_BUILD)/concurrent/core.so: $(FAULTS_BUILD)/spec/faults/faults.o

demo:
	@$(DEPS) cc lua headers
	@$(SUBMAKE) run-demo

# Every example (and the C host) under valgrind: any error or leak fails.
EXAMPLES = $(sort $(wildcard examples/*.lua))
# Forked process-pool workers leave with _exit, holding the parent's heap:
# only the parent is checked.
VALGRIND = valgrind -q --leak-check=full --error-exitcode=9 --child-silent-after-fork=yes \
           --errors-for-leak-kinds=definite,indirect,possible
valgrind:
	@$(DEPS) cc lua headers valgrind
	@$(SUBMAKE) $(MODULE) $(EMBED)
	@pass=0; fail=0; \
	for f in $(EXAMPLES) $(EMBED); do \
	  case $$f in *.lua) cmd="$(LUA) $$f" ;; *) cmd=$$f ;; esac; \
	  if $(LUAENV) $(VALGRIND) $$cmd >/dev/null; then pass=$$((pass+1)); \
	  else echo "valgrind: $$f: errors or leaks"; fail=$$((fail+1)); fi; \
	done; echo "$$pass passed, $$fail failed"; [ $$fail -eq 0 ]

# Each spec/bench/*.lua is one section of the report, run in name order.
# The thread-pool section also writes its table as data, which gnuplot
# (when installed) draws as the chart the README shows.
BENCH_DATA = doc/bench.dat
BENCH_CHART = doc/bench.svg
bench:
	@$(DEPS) cc lua headers luv python3
	@$(SUBMAKE) run-bench

# Owner-thread instructions per w1 task under callgrind (wall-clock time
# is noise on a shared machine; instruction counts are not), with the
# functions that take them.
callgrind:
	@$(DEPS) cc lua headers valgrind
	@$(SUBMAKE) $(MODULE)
	@$(LUAENV) sh spec/bench/threadpool/callgrind.sh $(LUA)

# Internal: the demo and the benchmarks, once the packages are there.
run-demo: $(MODULE)
	$(LUAENV) $(LUA) examples/hello.lua

run-bench: $(MODULE) $(HELPERS)
	@$(if $(BENCHES),,echo "no benchmarks in spec/bench/")
	@for f in $(BENCHES); do \
	  echo "== $$f"; $(LUAENV) BENCH_DATA=$(BENCH_DATA) $(LUA) $$f || exit 1; \
	done
	@if command -v gnuplot >/dev/null; then \
	  gnuplot -e "datafile='$(BENCH_DATA)'; outfile='$(BENCH_CHART)'" mk/bench.gp && \
	  echo "chart: $(BENCH_CHART)"; \
	else echo "gnuplot not installed (apt-get install gnuplot-nox): $(BENCH_CHART) not drawn"; fi

# Internal: build the module and helpers, run every spec with busted under
# $(LUA), or under $(HOST) when SAN is set.  SPEC_LUA names the same
# interpreter for specs that start a fresh Lua process (spec/helpers.lua).
# The specs find the Debian package check's settings in LUA and LUA_INC.
specs: $(MODULE) $(HELPERS) $(POOLTEST) $(QUEUETEST) $(EMBED) $(EMBEDTEST) $(if $(SAN),$(HOST))
	@$(if $(SAN),$(SAN_ENV)) $(LUAENV) LUA='$(LUA)' LUA_INC='$(LUA_INC)' \
	  POOLTEST='$(CURDIR)/$(POOLTEST)' QUEUETEST='$(CURDIR)/$(QUEUETEST)' \
	  EMBED_EXAMPLE='$(CURDIR)/$(EMBED)' EMBEDTEST='$(CURDIR)/$(EMBEDTEST)' \
	  SPEC_LUA='$(if $(SAN),$(CURDIR)/$(HOST),$(LUA))' \
	  SPEC_TIMEOUT=$(SPEC_TIMEOUT) SPEC_RSS_MB=$(SPEC_RSS_MB) sh mk/specrun.sh \
	  $(if $(SAN),$(HOST),$(LUA)) "$$(command -v busted)" $(BUSTED_ARGS)

$(BUILD)/%.so: $(BUILD)/spec/support/%.o
	$(CC) $(LDFLAGS) -o $@ $^

# testhelper's failalloc puts its own allocator in a state: the library
# must stay mapped until the state's last free, after the state has
# dlclose'd it (Lua unloads C modules before it frees the rest).
$(BUILD)/testhelper.so: LDFLAGS += -Wl,-z,nodelete

# codechelper also reads tables through the encoder's view (arrayview).
$(BUILD)/codechelper.so: $(BUILD)/lua/ltable54.o

$(POOLTEST): $(BUILD)/spec/support/pooltest.o $(CORE_OBJ)
	$(CC) $(SANFLAGS) -pthread -o $@ $^ -lm $(MYLDFLAGS)

$(QUEUETEST): $(BUILD)/spec/support/queuetest.o $(CORE_OBJ)
	$(CC) $(SANFLAGS) -pthread -o $@ $^ -lm $(MYLDFLAGS)

$(EMBED): $(BUILD)/examples/embed.o
	$(CC) $(SANFLAGS) -pthread -rdynamic -o $@ $^ -llua5.4 -lm -ldl $(MYLDFLAGS)

# Under TSan, the executables that run Lua take Lua's longjmp through
# TSan's interceptor (spec/support/tsanjmp.c says why).
TSANJMP = $(if $(findstring thread,$(SAN)),$(BUILD)/spec/support/tsanjmp.o)

$(EMBEDTEST): $(BUILD)/spec/support/embedtest.o $(TSANJMP)
	$(CC) $(SANFLAGS) -pthread -rdynamic -o $@ $^ -llua5.4 -lm -ldl $(MYLDFLAGS)

$(HOST): $(BUILD)/spec/support/host.o $(TSANJMP)
	$(CC) $(SANFLAGS) -pthread -o $@ $^ -llua5.4 -lm -ldl $(MYLDFLAGS)

# The decoder's fuzz target (libFuzzer, from the sanitizer builds' clang):
# every source linked into one binary, run for FUZZ_TIME seconds on the
# seeds and crash inputs kept in spec/fuzz/corpus/ (the specs replay
# them; add a crash input there when the fuzzer finds one).
FUZZ_CC = $(CLANG)
FUZZ_TIME = 60
FUZZ = build-fuzz/decode
FUZZ_CFLAGS = -std=c99 -D_GNU_SOURCE $(CWARNS) -g -O1 \
              -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
              -pthread -Icore/include -Icore -Ilua -I$(LUA_INC)

fuzz:
	@LUA='$(LUA)' LUA_INC='$(LUA_INC)' CC='$(FUZZ_CC)' sh mk/deps.sh cc headers fuzzer
	@$(SUBMAKE) $(FUZZ)
	@mkdir -p build-fuzz/corpus
	$(FUZZ) -max_total_time=$(FUZZ_TIME) -timeout=10 -rss_limit_mb=2048 \
	  -artifact_prefix=build-fuzz/ build-fuzz/corpus spec/fuzz/corpus

$(FUZZ): spec/fuzz/decode.c $(CORE_SRC) $(BIND_SRC) $(wildcard core/*.h core/include/*.h lua/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ spec/fuzz/decode.c $(CORE_SRC) \
	  $(BIND_SRC) -llua5.4 -lm -ldl

.PHONY: fuzz

# The files 'make install' writes (also what 'make uninstall' removes).
INSTALLED = $(INSTALL_CMOD)/concurrent/core.so \
  $(LUA_SRC:lua/%=$(INSTALL_LMOD)/%) $(INSTALL_INC)/concurrent.h \
  $(INSTALL_LIB)/libconcurrent.a $(INSTALL_PC)/concurrent.pc

install: $(MODULE) $(LIBCORE)
	install -d $(DESTDIR)$(INSTALL_CMOD)/concurrent \
	  $(DESTDIR)$(INSTALL_LMOD)/concurrent $(DESTDIR)$(INSTALL_INC) \
	  $(DESTDIR)$(INSTALL_LIB) $(DESTDIR)$(INSTALL_PC)
	install -m 0755 $(MODULE) $(DESTDIR)$(INSTALL_CMOD)/concurrent/core.so
	install -m 0644 $(LUA_SRC) $(DESTDIR)$(INSTALL_LMOD)/concurrent/
	install -m 0644 core/include/concurrent.h $(DESTDIR)$(INSTALL_INC)/
	install -m 0644 $(LIBCORE) $(DESTDIR)$(INSTALL_LIB)/
	printf '%s\n' 'includedir=$(INSTALL_INC)' 'libdir=$(INSTALL_LIB)' '' \
	  'Name: concurrent' \
	  'Description: futures and thread pools in C; the core of concurrent.futures for Lua' \
	  'Version: $(VERSION)' 'Cflags: -I$${includedir}' \
	  'Libs: -L$${libdir} -lconcurrent -pthread' \
	  >$(DESTDIR)$(INSTALL_PC)/concurrent.pc

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	-rmdir $(DESTDIR)$(INSTALL_CMOD)/concurrent $(DESTDIR)$(INSTALL_LMOD)/concurrent 2>/dev/null

# The API reference: LDoc (config.ld) reads the doc comments of lua/*.c
# and lua/concurrent/*.lua into doc/reference/; mk/doccheck.lua then
# checks that every exported function is in it.
doc:
	@$(DEPS) cc lua headers ldoc
	@$(SUBMAKE) $(MODULE)
	rm -rf doc/reference
	ldoc -q .
	@$(LUAENV) $(LUA) mk/doccheck.lua doc/reference

# Installing as users do (mk/installcheck.sh): LuaRocks into a temporary
# tree from a clean copy of HEAD, and 'make install DESTDIR=' with the C
# host example built through pkg-config.
installcheck:
	@$(DEPS) cc lua headers luarocks pkgconfig
	@LUA='$(LUA)' LUA_INC='$(LUA_INC)' CC='$(CC)' sh mk/installcheck.sh

# luarocks lint checks the rockspec (it builds through this Makefile).
lint:
	@$(DEPS) lua
	@if command -v luarocks >/dev/null; then \
	  luarocks --lua-version $(LUA_VERSION) lint $(ROCKSPEC) && \
	  echo "$(ROCKSPEC): luarocks lint passed"; \
	else echo "luarocks not installed: 'luarocks lint' skipped"; fi
	@if command -v luacheck >/dev/null; then luacheck -q --no-color .; \
	else echo "luacheck not installed (apt-get install lua-check): skipped"; fi

clean:
	rm -rf build build-asan build-tsan build-fuzz build-debug build-faults

print:
	@echo CC=$(CC) CFLAGS=$(CFLAGS)
	@echo CORE_SRC=$(CORE_SRC)
	@echo BIND_SRC=$(BIND_SRC)
	@echo LUA_SRC=$(LUA_SRC)
	@echo HELPERS=$(HELPERS)
	@echo SPECS=$(SPECS)

.PHONY: all clean print test asan tsan demo bench specs install uninstall \
  installcheck doc lint valgrind run-demo run-bench
.PHONY: debug faults callgrind

# == MPI (optional) ===========================================================

# concurrent.futures.mpi: its own copy of the core and the binding, plus
# the MPI back-end, linked with Open MPI. Only 'make mpi' and
# 'make test-mpi' build it; the rest of the Makefile never needs MPI.
MPI_MODULE = $(BUILD)/concurrent/futures/mpi.so
MPI_SRC = $(sort $(wildcard core/mpi/*.c lua/mpi/*.c))
MPI_OBJ = $(MPI_SRC:%.c=$(BUILD)/%.o)
# MPI's headers as system headers: Lua's warning set is not theirs.
MPI_INC = $(patsubst -I%,-isystem %,$(filter -I%,$(shell mpicc --showme:compile 2>/dev/null)))
MPI_LIBS = $(shell mpicc --showme:link 2>/dev/null)
# The specs' launch: 3 ranks (rank 0 runs busted, two workers) on any
# machine (--oversubscribe); root (CI) must say so to Open MPI.
MPI_NP = 3
MPIEXEC = mpiexec --oversubscribe $(if $(filter 0,$(shell id -u)),--allow-run-as-root) \
          -x LUA_PATH -x LUA_CPATH
MPI_TIMEOUT = 300
MPI_END_RUNS = 5
# A singleton job (no mpiexec) that spawns its workers: Open MPI counts
# one slot per core, and refuses root unless told.
MPI_SINGLETON_ENV = OMPI_MCA_rmaps_base_oversubscribe=1 \
  $(if $(filter 0,$(shell id -u)),OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1)
MPI_BUSTED = "$$(command -v busted)" --lpath='lua/?.lua;lua/?/init.lua' \
             --cpath='$(BUILD)/?.so' --output=spec/support/summary.lua \
             $(if $(wildcard spec/helpers.lua),--helper=spec/helpers.lua)

mpi:
	@$(DEPS) cc lua headers mpi
	@$(SUBMAKE) $(MPI_MODULE)

test-mpi:
	@$(DEPS) cc lua headers busted mpi
	@$(SUBMAKE) mpi-specs

$(MPI_OBJ): CFLAGS += $(MPI_INC) -Icore/mpi
$(MPI_OBJ): $(wildcard core/mpi/*.h)

$(MPI_MODULE): $(CORE_OBJ) $(BIND_OBJ) $(MPI_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $(MODLDFLAGS) -o $@ $^ $(MPI_LIBS) -ldl

# Internal: spec/mpi/mpi_spec.lua under mpiexec, then the corrupt-frame
# case (a test-only switch makes every worker rank cut its results), the
# out-of-memory case (another makes rank 0 fail the frames ranks wait
# for), a singleton job spawning its workers, os.exit with a task running,
# each bounded by MPI_TIMEOUT seconds, a rank's wait on rank 0's
# future at the job's end (endwait.lua: a hang fails it after 30 s), and
# a forwarded future set as the job ends, MPI_END_RUNS times each way
# (endforward.lua: the crash it caught came in most runs, not all).
# The main module too: mpi_spec.lua runs examples/mpi_primes.lua on the
# thread and process pools in a plain lua5.4, which loads concurrent.core;
# a clean tree or a C change must not leave it a missing or stale build.
# test-mpi reaches it through this target, after the package check.
mpi-specs: $(MPI_MODULE) $(MODULE)
	@$(LUAENV) timeout $(MPI_TIMEOUT) $(MPIEXEC) -n $(MPI_NP) \
	  $(LUA) -l concurrent.futures.mpi $(MPI_BUSTED) spec/mpi/mpi_spec.lua
	@$(LUAENV) CONCURRENT_MPI_TEST_CORRUPT=1 timeout $(MPI_TIMEOUT) \
	  $(MPIEXEC) -x CONCURRENT_MPI_TEST_CORRUPT -n 2 \
	  $(LUA) -l concurrent.futures.mpi $(MPI_BUSTED) spec/mpi/corrupt_spec.lua
	@$(LUAENV) CONCURRENT_MPI_TEST_NOMEM=1 timeout $(MPI_TIMEOUT) \
	  $(MPIEXEC) -x CONCURRENT_MPI_TEST_NOMEM -n 2 \
	  $(LUA) -l concurrent.futures.mpi $(MPI_BUSTED) spec/mpi/nomem_spec.lua
	@$(LUAENV) $(MPI_SINGLETON_ENV) timeout $(MPI_TIMEOUT) \
	  $(LUA) $(MPI_BUSTED) spec/mpi/spawn_spec.lua
	@out=$$($(LUAENV) timeout $(MPI_TIMEOUT) $(MPIEXEC) -n $(MPI_NP) \
	  $(LUA) -l concurrent.futures.mpi spec/mpi/osexit.lua) && \
	  echo "$$out" | grep -q "the running task finished" && \
	  echo "os.exit: 1 passed, 0 failed"
	@out=$$($(LUAENV) timeout 30 $(MPIEXEC) -n 2 \
	  $(LUA) -l concurrent.futures.mpi spec/mpi/endwait.lua) && \
	  echo "$$out" | grep -q "queue false (get: the pool is broken), future false (BrokenMPIPool: rank 0 has ended)" && \
	  echo "endwait: 1 passed, 0 failed"
	@pass=0; fail=0; \
	for i in $$(seq $(MPI_END_RUNS)); do for how in close exit; do \
	  if out=$$($(LUAENV) timeout 60 $(MPIEXEC) -n $(MPI_NP) $(LUA) \
	       -l concurrent.futures.mpi spec/mpi/endforward.lua $$how 2>&1) \
	     && echo "$$out" | grep -q "endforward: set"; then pass=$$((pass+1)); \
	  else echo "endforward ($$how): $$out"; fail=$$((fail+1)); fi; \
	done; done; echo "endforward: $$pass passed, $$fail failed"; [ $$fail -eq 0 ]

.PHONY: mpi test-mpi mpi-specs
