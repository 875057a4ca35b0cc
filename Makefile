# Makefile for concurrent: futures and executors for Lua 5.4.
# 'make' builds the module into build/; 'make test' runs the specs.
# See README.md for the targets.

# == CHANGE THE SETTINGS BELOW TO SUIT YOUR ENVIRONMENT =======================

CC ?= gcc
LUA ?= lua5.4
LUA_INC ?= /usr/include/lua5.4
LUA_VERSION = 5.4
PREFIX ?= /usr/local
INSTALL_LMOD ?= $(PREFIX)/share/lua/$(LUA_VERSION)
INSTALL_CMOD ?= $(PREFIX)/lib/lua/$(LUA_VERSION)
INSTALL_INC ?= $(PREFIX)/include

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
BUILD = build

# == END OF USER SETTINGS -- NO NEED TO CHANGE ANYTHING BELOW THIS LINE =======

SANFLAGS = $(if $(SAN),-fsanitize=$(SAN) -fno-omit-frame-pointer \
           -fno-sanitize-recover=all)
CFLAGS = -std=c99 -D_GNU_SOURCE $(CWARNS) $(COPT) $(SANFLAGS) -fPIC \
         -pthread -fvisibility=hidden -Icore/include -Icore -Ilua \
         -I$(LUA_INC) $(MYCFLAGS)
LDFLAGS = -shared -pthread $(SANFLAGS) $(MYLDFLAGS)

CORE_SRC = $(sort $(wildcard core/*.c))
BIND_SRC = $(sort $(wildcard lua/*.c))
LUA_SRC = lua/concurrent/futures.lua lua/concurrent/errors.lua
CORE_OBJ = $(CORE_SRC:%.c=$(BUILD)/%.o)
BIND_OBJ = $(BIND_SRC:%.c=$(BUILD)/%.o)
MODULE = $(BUILD)/concurrent/core.so
# Spec-only C module: completes futures from host threads, codec round trips.
TESTHELPER = $(BUILD)/testhelper.so

all: $(MODULE)

$(BUILD)/%.o: %.c $(wildcard core/*.h core/include/*.h lua/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(MODULE): $(CORE_OBJ) $(BIND_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^

# It links the core only and reaches the binding through conc_lua_api_t.
$(TESTHELPER): $(BUILD)/spec/support/testhelper.o $(CORE_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^

clean:
	rm -rf build build-asan build-tsan

print:
	@echo CC=$(CC) CFLAGS=$(CFLAGS)
	@echo CORE_SRC=$(CORE_SRC)
	@echo BIND_SRC=$(BIND_SRC)

.PHONY: all clean print
