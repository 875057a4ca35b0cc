/*
** lfuncs.h: Lua functions across states (lfuncs.c), for the codec: as
** cached bytecode dumps.
*/
#ifndef LFUNCS_H
#define LFUNCS_H

#include "lconcurrent.h"

/* A sender's memo of the function it dumped last: a submit loop sends
** one function again and again, and finding its entry in the cache is
** most of the cost of sending it. Zero it before first use. */
typedef struct lconc_dumpmemo {
  const void *fn;         /* that function, while the holder's weak slot
                          ** [1] holds it */
  conc_bytes_t **entry;   /* where its cache entry keeps its bytes,
                          ** while the weak slot [2] holds the entry */
  const void *entryobj;   /* that entry as slot [2] holds it, when 'uv'
                          ** (lconc_arrayobj) */
  int envups;             /* its upvalues are all '_ENV': how many; -1
                          ** when some other is among them, -2 not
                          ** known yet */
  int inplace;            /* set by the holder: lconc_arraycheck passed,
                          ** so the weak slots are read in place */
  const void *uv;         /* where the holder keeps the table of the
                          ** weak slots (lconc_uvplace), when 'inplace'
                          ** and a read in place found both */
} lconc_dumpmemo;

/* Return the binary dump (with debug info) of the Lua function at
** 'idx', valid while that function lives; one dump per function value,
** cached in a weak table, and with 'm' (or NULL) remembered in 'm' and,
** with its cache entry, in weak slots of the user value of the userdata
** at 'holder' (made with one).
** The dump leaves out its header (the same for every function of a
** build: lfuncs.c). '*len' bytes are followed by its 4-byte check, which
** the cache keeps with it, as it keeps the function's number of
** upvalues ('*nups', as lconc_nupvalues). With 'ref', '*ref' is the
** shared bytes of the entry: the dump, its check and one more byte,
** which a payload may name instead of a copy (a reference is the
** taker's to add). NULL in a finalizer at lua_close when the function
** has no entry, or its entry was finalized: Lua would never finalize
** one made then, and its bytes would leak. */
LCONC_FUNC const char *lconc_dumpfunc(lua_State *L, int idx,
                                      lconc_dumpmemo *m, int holder,
                                      size_t *len, int *nups,
                                      conc_bytes_t **ref);

/* The shared bytes of the Lua function at 'idx' when it is the one 'm'
** holds (as lconc_dumpfunc remembered it with 'holder') and its
** upvalues are all '_ENV', with their number in '*nups'; else NULL
** (another value, the function changed, its entry finalized while the
** state closes). The common task's fast path: no Lua runs, nothing
** raises. With 'holder' 0, only a memo whose weak slots are read in
** place can hit (the caller keeps the holder alive without it on the
** stack). */
LCONC_FUNC conc_bytes_t *lconc_dumpmemoplain(lua_State *L, int idx,
                                             lconc_dumpmemo *m,
                                             int holder, int *nups);

/* The check of a dump: FNV-1a, 32 bits, of the build's dump format and
** the bytes, little-endian into 'out'. */
LCONC_FUNC void lconc_dumpcheck(const char *b, size_t n, char out[4]);

/* Push a closure of the dump 'b' (as lconc_dumpfunc makes it: without
** the header, which this state supplies). Returns 1 when it is the state's
** cached closure for that dump (its upvalues are all '_ENV', so one
** closure serves every transfer), 0 when it is a fresh closure (it has
** other upvalues, which each transfer fills), or -1 with the load error
** message pushed instead. '*nups' is the closure's number of upvalues
** (as lconc_nupvalues), which its prototype was checked to agree with.
** Loads binary chunks only; out of memory, raises a memory error. */
LCONC_FUNC int lconc_loadfunc(lua_State *L, const char *b, size_t n,
                              int *nups);

/* A receiver's memo of the shared bytes (conc_bytes_t) it loaded
** functions from, by address: a worker of a thread pool gets the same
** bytes for every task of one function. Each slot holds a reference on
** its bytes and a registry reference to what the cache keeps for them.
** Made by lconc_loadmemo_init, for one state; lconc_loadmemo_free lets
** go of the bytes (the state's references go with the state). */
#define LCONC_LOADMEMO 8
typedef struct lconc_loadslot {
  conc_bytes_t *bytes;    /* or NULL */
  int ref;                /* registry, or LUA_NOREF */
  int kind;               /* lfuncs.c's LD_SHARED or LD_MAKER */
  int nups;
} lconc_loadslot;

typedef struct lconc_loadmemo {
  lconc_loadslot slot[LCONC_LOADMEMO];
} lconc_loadmemo;

LCONC_FUNC void lconc_loadmemo_init(lconc_loadmemo *m);
LCONC_FUNC void lconc_loadmemo_free(lconc_loadmemo *m);

/* As lconc_loadfunc, for the dump in shared bytes 's' (lconc_dumpfunc's
** '*ref': the dump, then 5 bytes), found first in 'm'. */
LCONC_FUNC int lconc_loadshared(lua_State *L, conc_bytes_t *s,
                                lconc_loadmemo *m, int *nups);

/* The number of upvalues of the function at 'idx', as its closure holds
** them. Loaded bytecode is not verified: its prototype may claim more,
** and lua_getupvalue/lua_setupvalue/lua_upvaluejoin past this count
** would read outside the closure, so the codec never asks past it. */
LCONC_FUNC int lconc_nupvalues(lua_State *L, int idx);

#endif
