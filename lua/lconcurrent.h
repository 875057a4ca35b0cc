/*
** lconcurrent.h: declarations shared by the Lua binding files of lua/.
** Nothing here is exported from the module: only luaopen_concurrent_core.
*/
#ifndef LCONCURRENT_H
#define LCONCURRENT_H

#include "lua.h"
#include "lauxlib.h"

#include "concurrent.h"

#if defined(__GNUC__)
#define LCONC_FUNC __attribute__((visibility("hidden"))) extern
#else
#define LCONC_FUNC extern
#endif

#define LCONC_FUTURE_MT "concurrent.Future"
#define LCONC_QUEUE_MT "concurrent.Queue"

/* The module's one export; worker states open it too (lworker.c). */
__attribute__((visibility("default")))
LUAMOD_API int luaopen_concurrent_core(lua_State *L);

/* Stack-balance checks for binding code (debug builds only). */
#if defined(LCONC_DEBUG)
#include <assert.h>
#define lconc_stackcheck_begin(L) int lconc_top_ = lua_gettop(L)
#define lconc_stackcheck_end(L, n) assert(lua_gettop(L) == lconc_top_ + (n))
#else
#define lconc_stackcheck_begin(L) ((void)0)
#define lconc_stackcheck_end(L, n) ((void)0)
#endif

/* lconcurrent.c: a function, or a value with __call, at 'arg' */
LCONC_FUNC void lconc_checkcallable(lua_State *L, int arg);
/* lconcurrent.c: whether the value on top is the string of one of
** 'names' (NULL-ended) */
LCONC_FUNC int lconc_isname(lua_State *L, const char *const *names);
/* lconcurrent.c: the first key of the table at 't' that is none of
** 'names' (nor an integer, with 'integers'), pushed as a string; NULL
** when every key is known. A misspelt key would drop its setting
** unnoticed: the caller raises. */
LCONC_FUNC const char *lconc_unknownkey(lua_State *L, int t,
                                        const char *const *names,
                                        int integers);
/* lconcurrent.c: the option table at argument 'arg' has only keys of
** 'names', else "unknown option 'k' (known: a, b)" */
LCONC_FUNC void lconc_checkoptions(lua_State *L, int arg,
                                   const char *const *names);
/* lconcurrent.c: give the userdata on top the metatable registered
** under the address 'key', made on first use with 'gc' as its __gc (a
** light key: cheaper than luaL_newmetatable's lookup by name) */
LCONC_FUNC void lconc_setgcmeta(lua_State *L, const void *key,
                                lua_CFunction gc);

/* lmailbox.c: the per-state owner. Lua callbacks of a state run only on
** its own thread, at safe points (see API.md, "Callbacks"). */
/* Something the owner must close before the module's code may go (an
** executor whose workers run that code): linked while open. */
typedef struct lconc_owner lconc_owner;
typedef struct lconc_closer {
  struct lconc_closer *next, **prev;
  void (*close)(struct lconc_closer *c);
  lconc_owner *owner;  /* set by lconc_addcloser: lives as the state */
} lconc_closer;
struct lconc_owner {
  conc_mailbox_t *mb;
  int in_callback;   /* > 0 while a callback runs: no safe points */
  lua_Integer dfirst, dlast;  /* the deferred FIFO's ends (lmailbox.c) */
  lconc_closer *closers;
  conc_taskctl_t *ctl;  /* a worker state's running task, or NULL */
};
LCONC_FUNC lconc_owner *lconc_getowner(lua_State *L);
/* Link 'c' to the state's owner, whose finalizer closes what is still
** linked when the state closes (Lua runs no finalizer of an object made
** while it closes). Raises "the Lua state is closing" once the owner is
** finalized: nothing new may start then. */
LCONC_FUNC void lconc_addcloser(lua_State *L, lconc_closer *c);
/* whether the state is closing (see lconc_addcloser) */
LCONC_FUNC int lconc_closing(lua_State *L);
/* the same with the state's owner at hand (cheaper than the registry) */
LCONC_FUNC int lconc_ownerclosing(lua_State *L, lconc_owner *o);
/* Raise "the Lua state is closing" if it is: before making a handle
** (a future's, a queue's) whose finalizer must release a reference,
** since none would run for one made then. */
LCONC_FUNC void lconc_checkopen(lua_State *L);
LCONC_FUNC void lconc_removecloser(lconc_closer *c);
/* push the state's weak table: light userdata(future) -> handle */
LCONC_FUNC void lconc_pushhandles(lua_State *L);
LCONC_FUNC void lconc_open_owner(lua_State *L);
/* adds dispatch and notify_fd to the module table at the top */
LCONC_FUNC void lconc_open_mailbox(lua_State *L);
/* run the queued callbacks of the state, unless inside a callback;
** returns how many ran */
LCONC_FUNC int lconc_safepoint(lua_State *L);
/* the same with the state's owner at hand (an upvalue of the caller:
** cheaper than the registry) */
LCONC_FUNC int lconc_ownersafepoint(lua_State *L, lconc_owner *o);
/* cf.dispatch's work: run this state's ready callbacks, waiting until
** the absolute 'deadline' for one; how many ran. */
LCONC_FUNC int lconc_dispatch(lua_State *L, double deadline);
/* run the state's callbacks of the done future whose handle is at 'idx';
** 'always' = 0 skips it inside a callback (a safe point does that) */
LCONC_FUNC int lconc_firecallbacks(lua_State *L, int idx, int always);
/* register fn and its bound arguments (stack idx..top) for handle 'h' */
LCONC_FUNC void lconc_addcallback(lua_State *L, int h, int fn);
/* drop the callbacks of the handle at 'h' whose function is the value
** at 'fn' (not run yet); the handle is no longer anchored by them */
LCONC_FUNC void lconc_removecallback(lua_State *L, int h, int fn);
/* whether the handle at 'h' has callbacks that have not run (so the
** state's owner anchors it) */
LCONC_FUNC int lconc_haspending(lua_State *L, int h);
/* a new watch set on the state's mailbox (the caller frees it) */
LCONC_FUNC conc_watch_t *lconc_watchnew(lua_State *L);
/* push a new watch set anchored in a userdata (closed by __gc/__close) */
LCONC_FUNC conc_watch_t *lconc_pushwatch(lua_State *L);
LCONC_FUNC void lconc_closewatch(lua_State *L, int idx);
/* wait for the next completed future of 'set', running callbacks at safe
** points meanwhile: 1 and its tag, or 0 when 'deadline' passed */
LCONC_FUNC int lconc_watchnext(lua_State *L, conc_watch_t *set,
                               double deadline, uintptr_t *tag);
/* in a worker state whose running task was asked to stop, raise the
** error it unwinds with: CancelledError, or TimeoutError naming its
** limit; else nothing */
LCONC_FUNC void lconc_checkstop(lua_State *L);
/* push the error a stopped task unwinds with and return 1; 0 (nothing
** pushed) when 'ctl' asks no stop */
LCONC_FUNC int lconc_pushstop(lua_State *L, conc_taskctl_t *ctl);
/* the message of a task stopped by its time limit, written without a
** state into 'msg' (LCONC_STOPMSG_SIZE bytes) */
#define LCONC_STOPMSG_SIZE 64
LCONC_FUNC void lconc_timeoutmsg(char *msg, const conc_taskctl_t *ctl);
/* a timeout argument: nil = forever; a number >= 0; else an arg error */
LCONC_FUNC double lconc_optdeadline(lua_State *L, int arg);

/* lqueue.c: adds Queue. A state holds at most one handle per queue. */
LCONC_FUNC conc_chanq_t *lconc_testqueue(lua_State *L, int idx);
LCONC_FUNC void lconc_pushqueue(lua_State *L, conc_chanq_t *q);
LCONC_FUNC void lconc_open_queue(lua_State *L);

/* ltimer.c: adds _timer and _untimer (cf.await's timeouts) */
LCONC_FUNC void lconc_open_timer(lua_State *L);

/* lworker.c: adds worker (cf.worker) */
LCONC_FUNC void lconc_open_worker(lua_State *L);
/* in a worker state with max_memory, let its allocator pass the cap
** ('lift' 1) or hold it again (0); nothing in another state */
LCONC_FUNC void lconc_liftcap(lua_State *L, int lift);

/* lexecutor.c: adds ThreadPoolExecutor and executor_methods */
LCONC_FUNC void lconc_open_executor(lua_State *L);

/* lwait.c: adds as_completed, wait and the return_when constants */
LCONC_FUNC void lconc_open_wait(lua_State *L);

/* lfuture.c: future handles. A state holds at most one handle per core
** future, so a future that crosses twice is the same value. */
LCONC_FUNC conc_future_t *lconc_testfuture(lua_State *L, int idx);
LCONC_FUNC conc_future_t *lconc_checkfuture(lua_State *L, int idx);
LCONC_FUNC void lconc_pushfuture(lua_State *L, conc_future_t *f);
/* push a handle for a future just made in this state: it is not in the
** state's handle table until it is shared (lconc_sharefuture), since
** until then it cannot come back by pointer */
LCONC_FUNC void lconc_newfuture(lua_State *L, conc_future_t *f);
/* the same with the Future metatable at 'mt' (an upvalue of the caller:
** cheaper than the registry); 'f' NULL: a handle of no future yet, whose
** future the caller stores through the slot returned (a reference of
** the caller's becomes the handle's) before anyone else sees it */
LCONC_FUNC conc_future_t **lconc_newfuturemt(lua_State *L,
                                             conc_future_t *f, int mt);
/* enter the handle at 'idx' in the handle table: its future may come
** back by pointer (it crosses to another state, a host saw it, or a
** mailbox will post it) */
LCONC_FUNC void lconc_sharefuture(lua_State *L, int idx);
/* whether the handle at 'idx' may have callbacks registered */
LCONC_FUNC int lconc_hascallbacks(lua_State *L, int idx);
/* the handle's flag: the state's mailbox is subscribed to its future
** (once: it posts when the future is done, whatever callbacks are
** added and removed meanwhile) */
LCONC_FUNC int lconc_subscribed(lua_State *L, int idx);
LCONC_FUNC void lconc_setsubscribed(lua_State *L, int idx);
/* let go of the future of the handle at 'idx' (the state's owner, as
** the state closes, for handles that kept it for callbacks: fut_gc) */
LCONC_FUNC void lconc_releasefuture(lua_State *L, int idx);
LCONC_FUNC void lconc_open_future(lua_State *L);

/* lerror.c: raise an error of one of the module's classes
** ("TimeoutError", "CancelledError", ...) with a message. */
LCONC_FUNC int lconc_raise(lua_State *L, const char *cls, const char *fmt,
                           ...);
/* push an error object of a class (does not raise) */
LCONC_FUNC void lconc_pusherror(lua_State *L, const char *cls,
                                const char *msg);
/* add the error classes to the module table at the top */
LCONC_FUNC void lconc_open_errors(lua_State *L);
/* push the text of the error value at 'idx' for a traceback, as lua.c's
** msghandler makes it, and return it; never raises (a __tostring that
** raises or returns no string gives "(error object is a table value)") */
LCONC_FUNC const char *lconc_errortext(lua_State *L, int idx);
/* map a negative core code to a Lua error; 'what' names the operation */
LCONC_FUNC int lconc_coreerror(lua_State *L, int code, const char *what);

/* lcodec.c: the transfer codec (rules: API.md, "Transfer"). Payloads
** (conc_payload_t) are the core's: bytes plus the futures they name. */
/* Encode the 'n' values at stack indices first..first+n-1 as ONE transfer.
** Paths in errors read "<label> #<i + labelbase>...", e.g.
** label "argument", labelbase 1: the value at 'first' is "argument #1".
** On refusal raises a Lua error "cannot transfer argument #2.x (userdata)".
** Never leaks on error. */
LCONC_FUNC conc_payload_t *lconc_encode(lua_State *L, int first, int n,
                                        const char *label, int labelbase);
/* As lconc_encode; 'flags' LCONC_ENC_LOCAL names each Lua function's
** cached dump (shared bytes) instead of copying it: for a payload that
** stays in the process (a thread pool's task). 'alloc' (if not NULL)
** makes the payload for 'len' bytes and 'nfutures' entries (an empty
** list), once the encoding is done, or returns NULL to have the encoder
** make its own. No Lua runs and nothing raises between it and the
** return. */
#define LCONC_ENC_LOCAL 1
/* 'flags' LCONC_ENC_WRAP: the one value is a chunk of map's calls
** (run_chunk in futures.lua), whose results lie two tables deep; those
** two levels do not count toward the nesting limit (lcodec.c). */
#define LCONC_ENC_WRAP 2
/* 'flags' LCONC_ENC_INIT: the first value is an executor's initializer,
** the rest its initargs; paths read "initializer", "initargs[2].x". */
#define LCONC_ENC_INIT 4
typedef conc_payload_t *(*lconc_payalloc)(void *ud, size_t len,
                                          size_t nfutures);
/* 'buffer' is the index of the state's encoding buffer (as
** lconc_pushencbuffer pushes it, e.g. an upvalue: cheaper than its
** registry lookup), or 0. */
LCONC_FUNC conc_payload_t *lconc_encodex(lua_State *L, int first, int n,
                                         const char *label, int labelbase,
                                         int flags, lconc_payalloc alloc,
                                         void *ud, int buffer);
/* As lconc_encodex with LCONC_ENC_LOCAL when the value at 'first'
** (> 0) is the Lua function that the state's encoding buffer 'buffer'
** (the userdata lconc_pushencbuffer pushes, which the caller keeps
** alive) sent last, its upvalues all '_ENV', and the 'n' - 1 values
** after it are nil, booleans or numbers (the same bytes; 'alloc' as
** there); NULL for anything else, and when 'alloc' gives no block:
** lconc_encodex then does it, or says why not. Raises nothing, runs no
** Lua. */
LCONC_FUNC conc_payload_t *lconc_encodeplain(lua_State *L, int first,
                                             int n, lconc_payalloc alloc,
                                             void *ud, void *buffer);
/* As lconc_encodex when the 'n' values are all nil, booleans, numbers
** or strings (the same bytes; 'alloc' as there); NULL for any other
** value, and when out of memory: lconc_encode then does it, or says why
** not. Raises nothing. */
LCONC_FUNC conc_payload_t *lconc_encodescalars(lua_State *L, int first,
                                               int n, lconc_payalloc alloc,
                                               void *ud);
/* A payload of the one string 'msg' (nil for NULL) made without a
** state (one of out of memory can still report it), or NULL. */
LCONC_FUNC conc_payload_t *lconc_encodetext(const char *msg);
/* A payload of no values made without a state, or NULL. */
LCONC_FUNC conc_payload_t *lconc_encodenone(void);
/* Push the state's encoding buffer, made on first use. */
LCONC_FUNC void lconc_pushencbuffer(lua_State *L);
/* Decode a payload's values onto the stack (of a possibly different state
** of the same process); returns how many were pushed. A core error
** payload (CONC_PAYLOAD_ERROR) pushes one error object of its class.
** Corrupt input raises a Lua error, never crashes. */
LCONC_FUNC int lconc_decode(lua_State *L, const conc_payload_t *p);
/* As lconc_decode, finding functions of shared bytes in 'memo' first
** (lfuncs.h): a worker decoding task after task. */
struct lconc_loadmemo;
LCONC_FUNC int lconc_decodememo(lua_State *L, const conc_payload_t *p,
                                struct lconc_loadmemo *memo);
/* A nil, boolean or number read from a payload without a Lua state. */
typedef struct lconc_scalar {
  int type;   /* LUA_TNIL, LUA_TBOOLEAN or LUA_TNUMBER */
  int isint;  /* a number: an integer */
  union { lua_Integer i; lua_Number n; } v;  /* a boolean is 'i' */
} lconc_scalar;
/* Whether the values payload 'p' is exactly one nil, boolean or number
** (the common single result), read into '*s'; 0 for anything else,
** which lconc_decode handles (and rejects, if corrupt). */
LCONC_FUNC int lconc_peekscalar(const conc_payload_t *p, lconc_scalar *s);
/* Decode raw bytes (from a pipe, a socket, the fuzzer): as lconc_decode
** of a payload without futures. 'flags' LCONC_DEC_NOCODE also refuses
** Lua functions (bytecode) and module loading, for untrusted peers:
** see the trust model in lcodec.c. */
#define LCONC_DEC_NOCODE 1
LCONC_FUNC int lconc_decode_bytes(lua_State *L, const void *b, size_t len,
                                  int flags);

#endif
