/*
** lcodec.c: the transfer codec. Lua values to one flat byte string and
** back, across states and processes (rules: API.md, "Transfer").
*/
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lconcurrent.h"
#include "lfuncs.h"
#include "lnames.h"
#include "ltable54.h"

/*
** {======================================================================
** The format (version 1)
**
** A transfer is bytes only: no pointers, no process-local values, ready
** to cross a pipe or a socket. The one exception is a future: in the
** bytes it is an index into the payload's side list of conc_future_t
** pointers, which only the in-process (thread) transport carries; raw
** bytes from a pipe carry no list, so a future in them is refused.
**
**   transfer := VERSION flags count value{count}
**                                             VERSION is the byte 1;
**                                             flags bit 0 (F_REFS): some
**                                             REF or UV_JOIN follows;
**                                             bit 1 (F_WRAP): nesting may
**                                             be 2 levels deeper (below)
**   value    := NIL | FALSE | TRUE
**             | INT  zigzag                   integer subtype
**             | FLT  f64                      float subtype (also -0.0,
**                                             inf, nan: bits kept)
**             | STR  string
**             | TABLE   narr nhash item* (key value){nhash}
**             | TABLEMT narr nhash item* (key value){nhash} value
**                                             the last value is its
**                                             metatable (a table)
**             | REF  id                       an earlier table or Lua
**                                             function of this transfer
**             | NAMED string                  registry[name]: a table
**                                             that is the registry entry
**                                             of its own __name
**                                             (luaL_newmetatable), such
**                                             as an error class
**             | LFUNC string u32 nups upvalue{nups}
**                                             a lua_dump with debug info,
**                                             without its 31-byte header
**                                             (the receiver's own goes
**                                             back: lfuncs.c); u32 is an
**                                             FNV-1a hash of the build's
**                                             dump format and the string
**                                             (little-endian): a corrupt
**                                             dump never reaches lua_load,
**                                             where a bad size in it can
**                                             allocate gigabytes
**             | LFUNCREF index nups upvalue{nups}
**                                             as LFUNC, its dump and check
**                                             in the payload's list[index]
**                                             (shared bytes: a thread
**                                             pool's tasks, which stay in
**                                             the process)
**             | CFUNC string string           package.loaded[mod][key]
**             | MODULE string                 require(name): a table that
**                                             is a value of the sender's
**                                             package.loaded (its best
**                                             name: lnames.c)
**             | FUTURE index                  the payload's list[index]: a
**                                             future or a queue
**   item     := value                         one element of t[1..narr]
**             | FLTS run f64{run}             'run' float elements
**             | INTS run zigzag{run}          'run' integer elements; the
**                                             items cover narr exactly
**   upvalue  := UV_VAL value                  copied by value
**             | UV_ENV                        the receiver's globals
**             | UV_JOIN id n                  shares upvalue 'n' of the
**                                             Lua function 'id'
**   string   := length byte{length}
**
** Tag bytes are the T_ and UV_ values below. count, narr, nhash, nups,
** id, index, n and length are varints: unsigned LEB128, 7 bits a byte,
** low bits first, at most 10 bytes; padded (non-minimal) forms are valid
** (the encoder writes 'narr' and 'nhash' as 5 bytes, patches them in
** place once known, and compacts small tables). zigzag is
** a varint of (i << 1) ^ (i >> 63). f64 is IEEE 754 binary64, 8 bytes,
** little-endian. Ids number tables (TABLE, TABLEMT) and Lua functions
** (LFUNC) 1, 2, ... in the order their encoding starts, before their
** contents, so that cycles and shared references point back; without
** F_REFS the decoder keeps no table of them. The array part holds
** t[1..narr] (FLTS and INTS pack runs of numbers, the common numeric
** arrays); the other pairs follow.
**
** Limits: nesting (tables, functions, metatables) is at most
** CONC_MAXDEPTH deep, on encode and on decode; CONC_MAXDEPTH + 2 with
** F_WRAP, which the encoder sets for a chunk of map's calls
** (LCONC_ENC_WRAP): their results come wrapped two tables deep, and
** each of them may be as deep as a task's own. The decoder checks every
** count against the bytes left before it allocates anything, every tag,
** every id, index and upvalue number, and that nothing trails.
**
** Trust model. Structure is never trusted: truncated, corrupted or
** hostile bytes give a Lua error, never a crash, an overread or an
** allocation out of proportion to the input. Bytecode is trusted: an
** LFUNC is handed to lua_load (binary mode), and Lua does not verify
** bytecode, so only a peer trusted to run code in this process may send
** LFUNC. The decoder also may require() the module of a CFUNC or a
** MODULE, and a metatable it sets may carry __gc, which runs later. The thread pool
** and the process pool (whose children are forks of the same program)
** are such peers. For anything else, decode with LCONC_DEC_NOCODE: it
** refuses LFUNC and loads no module: a CFUNC or MODULE must name one
** already loaded (the fuzzer does that).
** =======================================================================
*/

/* Deepest nesting of tables, functions and metatables in a transfer. It
** bounds the C recursion of both encoder and decoder (each level uses a
** few hundred bytes of C stack and a few Lua stack slots). */
#if !defined(CONC_MAXDEPTH)
#define CONC_MAXDEPTH 200
#endif

/* A payload at least this big takes over the state's buffer instead of
** being copied out of it (then the buffer is remade next time). */
#if !defined(CONC_HANDOVER)
#define CONC_HANDOVER (64 * 1024)
#endif

#define VERSION 1
#define F_REFS 1
#define F_WRAP 2

/* The levels F_WRAP adds (see the format). */
#define WRAPDEPTH 2

/* The 'seen' map of the state's buffer is kept for the next encode if
** it has at most this many slots, else freed once the encode ends. */
#define KEEPSEEN 1024

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

enum {
  T_NIL, T_FALSE, T_TRUE, T_INT, T_FLT, T_STR, T_TABLE, T_TABLEMT,
  T_REF, T_NAMED, T_LFUNC, T_CFUNC, T_FUTURE, T_FLTS, T_INTS, T_MODULE,
  T_LFUNCREF
};

enum { UV_VAL, UV_ENV, UV_JOIN };

/* The buffer keeps room for a payload header before the encoding, so
** that a big encoding becomes a payload without a copy. */
#define HEAD sizeof(conc_payload_t)

/* }====================================================================== */


/* {======================================================================
** The encoder
** ======================================================================= */

/* The output buffer of a state, reused by every encode (a userdata in
** the registry, so an error in the middle of an encode leaks nothing).
** 'b' starts with room for the payload header. */
/*
** The 'seen' map: the objects met so far in a transfer (tables, Lua
** functions, upvalue cells, future and queue handles), by address, with
** their ids; open addressing, a power-of-two size at most half full. A
** slot belongs to the encode whose 'gen' it carries, so a new encode
** starts empty without clearing anything. In C rather than a Lua table:
** every transfer of a function meets one, and a Lua table cost about a
** tenth of a small task's submit. An address names its object while
** the object lives: what the values reach stays alive, but an object
** met only through a weak table may be collected once the encoder has
** moved past it (a collector step that a later allocation of the
** encode runs: see 'addshared'). Its address can then only come back
** as an object made during the encode, which only a finalizer could
** place in values yet to be encoded, rewiring them under the encode.
*/
typedef struct Seen {
  const void *key;
  lua_Integer val;
  unsigned gen;
} Seen;

typedef struct Buffer {
  char *b;
  size_t n, size;
  void **fut;  /* futures, queues and dumps met so far, each with a
               ** reference of the buffer's own (see 'addshared') */
  size_t nfut, sizefut;
  Seen *seen;           /* the 'seen' map */
  size_t nseen, sizeseen;
  unsigned gen;         /* the running encode's slots carry it */
  int busy;             /* an encode is using it (see 'taken') */
  const char *frame;    /* the C frame of the encode that set 'busy' */
  int fastarray;        /* lconc_arraycheck passed: arrays are read
                        ** through ltable54.h */
  lconc_dumpmemo memo;  /* the Lua function sent last (lfuncs.h), held
                        ** weakly in the buffer's user value */
  int unowned;          /* no finalizer will free it (see 'dropunowned') */
} Buffer;

static const char BUFFER = 'b';    /* registry key of the state's buffer */
static const char BUFFERMT = 'm';  /* registry key of its metatable */

/* One step of the path from an argument to the value being encoded;
** SEG_NONE while a table's own bytes are written (its header, runs of
** numbers), so that a refusal there names the table. */
enum { SEG_ALL, SEG_TOP, SEG_INDEX, SEG_KEY, SEG_UPVAL, SEG_META, SEG_NONE };

typedef struct Seg {
  int kind;
  int key;            /* SEG_KEY: stack index of the key */
  lua_Integer i;      /* SEG_TOP, SEG_INDEX */
  const char *name;   /* SEG_UPVAL */
} Seg;

typedef struct Enc {
  lua_State *L;
  Buffer *B;
  int usedrefs;       /* some REF or UV_JOIN was written */
  int local;          /* LCONC_ENC_LOCAL: functions as LFUNCREF */
  int buffer;         /* stack index of B's userdata */
  lconc_payalloc alloc;  /* makes the payload, or NULL */
  void *ud;           /* of 'alloc' */
  int namekey;        /* stack index of the string "__name" */
  lua_Integer nrefs;  /* ids given so far */
  int depth;
  int maxdepth;       /* CONC_MAXDEPTH, or more with LCONC_ENC_WRAP */
  const char *label;
  int labelbase;
  int init;           /* LCONC_ENC_INIT: an initializer and its initargs */
  lconc_names names;  /* C functions and modules by name (lnames.c) */
  Seg path[CONC_MAXDEPTH + WRAPDEPTH + 1];
} Enc;

static void releaseheld(Buffer *B);
static void seendrop(Buffer *B);

static void freebuffer(Buffer *B) {
  releaseheld(B);
  free(B->b);
  free(B->fut);
  free(B->seen);
  B->b = NULL;
  B->fut = NULL;
  B->seen = NULL;
  B->size = B->sizefut = B->sizeseen = 0;
}

/* A finalizer at lua_close may still encode (set_result, a queue's put)
** after the buffer's own finalizer ran, or make the state's first
** buffer then, which Lua never finalizes: what the encode grows in such
** a buffer is freed when it ends (succeeds or refuses), or it leaked. */
static void dropunowned(Buffer *B) {
  if (B->unowned)
    freebuffer(B);
}

static int buffer_gc(lua_State *L) {
  Buffer *B = (Buffer *)lua_touserdata(L, 1);
  freebuffer(B);
  B->unowned = 1;
  return 0;
}

/*
** Whether an encode running in C frame 'frame' finds the buffer taken.
** An encode that raised an error the API made (lua_next's "invalid key"
** once a finalizer rehashed the table, out of memory), which is no
** refusal, leaves it busy. The encode that set 'busy' is still running
** only if this one runs inside it, re-entered from a finalizer, so in a
** deeper frame: below its frame, as the C stack grows down. A frame at
** or above it means that encode is gone, and the buffer is free again.
** (One state's encodes run on one C stack at a time: coroutines share
** the resumer's, and no encode yields; the frames compare as integers,
** as unrelated pointers may not.) Costs nothing per encode, where a
** to-be-closed buffer cost about 400 instructions.
*/
static int taken(const Buffer *B, const char *frame) {
  return B->busy && (uintptr_t)frame < (uintptr_t)B->frame;
}

/* Push a new, empty buffer userdata. */
static Buffer *newbuffer(lua_State *L) {
  Buffer *B = (Buffer *)lua_newuserdatauv(L, sizeof(Buffer), 1);
  memset(B, 0, sizeof(*B));
  lconc_setgcmeta(L, &BUFFERMT, buffer_gc);
  B->unowned = lconc_closing(L);  /* never finalized */
  B->fastarray = lconc_arraycheck(L);
  B->memo.inplace = B->fastarray;
  return B;
}

void lconc_pushencbuffer(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &BUFFER) == LUA_TUSERDATA)
    return;
  lua_pop(L, 1);
  newbuffer(L);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &BUFFER);
}

/* Push the state's buffer; a temporary one if it is taken (an encode
** re-entered from a finalizer that ran during an allocation). */
static Buffer *getbuffer(lua_State *L, const char *frame) {
  Buffer *B;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &BUFFER) == LUA_TUSERDATA) {
    B = (Buffer *)lua_touserdata(L, -1);
    if (!taken(B, frame))
      return B;
    lua_pop(L, 1);
    return newbuffer(L);
  }
  lua_pop(L, 1);
  B = newbuffer(L);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &BUFFER);
  return B;
}

/* Push ".key" for the string key 'k' ('len' bytes), a NUL as \0: the
** message is a C string on its way (luaL_error's %s), which would end
** at the first one. */
static void pushkeyseg(lua_State *L, const char *k, size_t len) {
  const char *nul;
  lua_pushliteral(L, ".");
  while ((nul = (const char *)memchr(k, '\0', len)) != NULL) {
    lua_pushlstring(L, k, (size_t)(nul - k));
    lua_pushliteral(L, "\\0");
    lua_concat(L, 3);
    len -= (size_t)(nul - k) + 1;
    k = nul + 1;
  }
  lua_pushlstring(L, k, len);
  lua_concat(L, 2);
}

/* Push the path of the value being encoded: argument #2.config.handle;
** outside any value (the header, the final copy) the values as a whole:
** "arguments". */
static void pushpath(Enc *E) {
  lua_State *L = E->L;
  luaL_Buffer b;
  int d;
  luaL_buffinit(L, &b);
  for (d = 0; d <= E->depth; d++) {
    const Seg *s = &E->path[d];
    if (s->kind == SEG_NONE)
      continue;
    switch (s->kind) {
      case SEG_ALL:
        if (E->init)
          lua_pushliteral(L, "the initializer and its initargs");
        else
          lua_pushfstring(L, "%ss", E->label);
        break;
      case SEG_TOP:  /* an initializer's values by the options that hold them */
        if (E->init && s->i == 0)
          lua_pushliteral(L, "initializer");
        else if (E->init)
          lua_pushfstring(L, "initargs[%I]", s->i);
        else
          lua_pushfstring(L, "%s #%I", E->label, s->i + E->labelbase);
        break;
      case SEG_INDEX: lua_pushfstring(L, "[%I]", s->i); break;
      case SEG_UPVAL:  /* a stripped function's has no name ("(no name)") */
        if (strcmp(s->name, "(no name)") == 0 || s->name[0] == '\0')
          lua_pushfstring(L, "(upvalue #%I)", s->i);
        else
          lua_pushfstring(L, "(upvalue '%s')", s->name);
        break;
      case SEG_META: lua_pushliteral(L, "(metatable)"); break;
      default:  /* SEG_KEY */
        switch (lua_type(L, s->key)) {
          case LUA_TSTRING: {
            size_t len;
            const char *k = lua_tolstring(L, s->key, &len);
            pushkeyseg(L, k, len);
            break;
          }
          case LUA_TNUMBER:
            if (lua_isinteger(L, s->key))
              lua_pushfstring(L, "[%I]", lua_tointeger(L, s->key));
            else
              lua_pushfstring(L, "[%f]", lua_tonumber(L, s->key));
            break;
          case LUA_TBOOLEAN:
            lua_pushstring(L, lua_toboolean(L, s->key) ? "[true]" : "[false]");
            break;
          default: lua_pushfstring(L, "[%s]", luaL_typename(L, s->key));
        }
    }
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
}

/* What to do instead, for a kind of value that cannot cross. */
static const char *hint(const char *why) {
  static const char *const hints[][2] = {
    {"userdata", "create it inside the task or pass what it is made from"},
    {"light userdata", "pass the data it points to"},
    {"thread", "create the coroutine inside the task"},
    {"C function with upvalues", "call it inside the task, through its "
     "module"},
    {"C function not found in package.loaded", "require its module or "
     "call it inside the task"},
  };
  size_t i;
  for (i = 0; i < sizeof(hints) / sizeof(hints[0]); i++)
    if (strcmp(why, hints[i][0]) == 0)
      return hints[i][1];
  return NULL;
}

/* Every encode error goes through here: it frees the buffer for the
** next encode, then raises "cannot transfer <path> (<why>)", followed
** by ": <hint>" for a kind of value that never crosses. */
static void refuse(Enc *E, const char *why) {
  lua_State *L = E->L;
  const char *h = hint(why);
  E->B->busy = 0;
  seendrop(E->B);
  dropunowned(E->B);
  lua_checkstack(L, 8);
  pushpath(E);
  luaL_error(L, "cannot transfer %s (%s)%s%s", lua_tostring(L, -1), why,
             h ? ": " : "", h ? h : "");
}

static void grow(Enc *E, size_t k) {
  Buffer *B = E->B;
  size_t want = B->size < 256 ? 256 : B->size * 2;
  char *nb;
  if (k > SIZE_MAX / 2 - B->n)
    refuse(E, "too large");
  if (want < B->n + k)
    want = B->n + k;
  nb = (char *)realloc(B->b, want);
  if (nb == NULL)
    refuse(E, "not enough memory");
  B->b = nb;
  B->size = want;
}

/* Make room for 'k' more bytes; the put* below then write unchecked. */
#define ensure(E, k) \
  ((E)->B->n + (size_t)(k) <= (E)->B->size ? (void)0 : grow(E, k))

#define putbyte(E, c) ((E)->B->b[(E)->B->n++] = (char)(c))

/* The store* write at 'p' and return the byte after: loops over many
** numbers keep the position in a local. */
static char *storevarint(char *p, lua_Unsigned x) {
  while (x >= 0x80) {
    *p++ = (char)(x | 0x80);
    x >>= 7;
  }
  *p++ = (char)x;
  return p;
}

static void putvarint(Enc *E, lua_Unsigned x) {
  Buffer *B = E->B;
  B->n = (size_t)(storevarint(B->b + B->n, x) - B->b);
}

/* A varint in exactly 5 bytes at 'p' (x < 2^35): patched in place. */
static void patchvarint5(char *p, lua_Unsigned x) {
  int i;
  for (i = 0; i < 4; i++, x >>= 7)
    p[i] = (char)((x & 0x7f) | 0x80);
  p[4] = (char)(x & 0x7f);
}

static void putblock(Enc *E, const void *s, size_t n) {
  memcpy(E->B->b + E->B->n, s, n);
  E->B->n += n;
}

static void putstring(Enc *E, const char *s, size_t n) {
  ensure(E, 10 + n);
  putvarint(E, n);
  putblock(E, s, n);
}

static char *storefloat(char *p, lua_Number x) {
  double d = (double)x;
  uint64_t u;
  memcpy(&u, &d, 8);
#if !(defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)
  {
    unsigned char le[8];
    int i;
    for (i = 0; i < 8; i++)
      le[i] = (unsigned char)(u >> (8 * i));
    memcpy(&u, le, 8);
  }
#endif
  memcpy(p, &u, 8);
  return p + 8;
}

static void putfloat(Enc *E, lua_Number x) {
  Buffer *B = E->B;
  B->n = (size_t)(storefloat(B->b + B->n, x) - B->b);
}

static void encode(Enc *E, int idx);

/* (Called.) Take the LUA_MINSTACK slots a call has, and as many again
** for each of the 'k' - 1 calls it nests (the integer at 1). */
static int takeroom(lua_State *L) {
  lua_Integer k = lua_tointeger(L, 1);
  if (k > 1) {
    lua_settop(L, LUA_MINSTACK - 2);  /* the next call's room above them */
    lua_pushcfunction(L, takeroom);
    lua_pushinteger(L, k - 1);
    lua_call(L, 1, 0);
  }
  return 0;
}

/* Whether the stack has room for 'n' more values. lua_checkstack gives
** 0 both when the stack would pass LUAI_MAXSTACK and when growing it
** failed (a worker at its max_memory): that failure is raised here as
** Lua's memory error, not taken for an overflow. A call makes room as
** lua_checkstack does but fails with the error that happened, so nested
** calls taking as much room as 'n' tell the two apart. */
static int stackroom(lua_State *L, int n) {
  int st;
  if (lua_checkstack(L, n))
    return 1;
  lua_pushcfunction(L, takeroom);
  lua_pushinteger(L, n / (LUA_MINSTACK - 2) + 1);
  if ((st = lua_pcall(L, 1, 0, 0)) == LUA_ERRMEM)
    lua_error(L);  /* Lua's memory message: raised as a memory error */
  if (st != LUA_OK)
    lua_pop(L, 1);
  return lua_checkstack(L, n);
}

/* One level deeper, within the limit, with Lua stack to spare. A chunk's
** wrapping is not the user's nesting: the message names the limit of
** a value of its own. */
static void enter(Enc *E) {
  if (E->depth >= E->maxdepth)
    refuse(E, "nesting deeper than " STRINGIFY(CONC_MAXDEPTH));
  if (!stackroom(E->L, 8))
    refuse(E, "stack overflow");
  E->path[++E->depth].kind = SEG_NONE;
}

static void setseg(Enc *E, int kind, int key, lua_Integer i,
                   const char *name) {
  Seg *s = &E->path[E->depth];
  s->kind = kind;
  s->key = key;
  s->i = i;
  s->name = name;
}

static size_t seenhash(const void *k, size_t size) {
  uint64_t h = (uint64_t)(uintptr_t)k * 0x9E3779B97F4A7C15u;
  return (size_t)(h >> 32) & (size - 1);
}

/* The slot of 'k' in the 'seen' map: where it is, or the free slot
** where it goes. */
static Seen *seenslot(Buffer *B, const void *k) {
  size_t i = seenhash(k, B->sizeseen);
  while (B->seen[i].gen == B->gen && B->seen[i].key != k)
    i = (i + 1) & (B->sizeseen - 1);
  return &B->seen[i];
}

/* The id of 'k' in this transfer: 1 and '*v', or 0 if not met yet. */
static int seenget(Enc *E, const void *k, lua_Integer *v) {
  Seen *s;
  if (E->B->nseen == 0)
    return 0;
  s = seenslot(E->B, k);
  if (s->gen != E->B->gen)
    return 0;
  *v = s->val;
  return 1;
}

/* Double the map, keeping this transfer's entries. */
static void seengrow(Enc *E) {
  Buffer *B = E->B;
  size_t n = B->sizeseen ? 2 * B->sizeseen : 16, i;
  Seen *old = B->seen, *ns = (Seen *)calloc(n, sizeof(*ns));
  size_t oldsize = B->sizeseen;
  unsigned gen = B->gen;
  if (ns == NULL)
    refuse(E, "not enough memory");
  B->seen = ns;
  B->sizeseen = n;
  B->gen = 1;
  for (i = 0; i < oldsize; i++)
    if (old[i].gen == gen) {
      Seen *s = seenslot(B, old[i].key);
      *s = old[i];
      s->gen = 1;
    }
  free(old);
}

/* Enter 'k' (not in the map yet) with the id 'v'. */
static void seenput(Enc *E, const void *k, lua_Integer v) {
  Seen *s;
  if (2 * (E->B->nseen + 1) > E->B->sizeseen)
    seengrow(E);
  s = seenslot(E->B, k);
  s->key = k;
  s->val = v;
  s->gen = E->B->gen;
  E->B->nseen++;
}

/* A new encode starts with an empty map: a new generation (the slots
** are cleared only when the counter wraps around). */
static void seenreset(Buffer *B) {
  B->nseen = 0;
  if (++B->gen == 0) {
    if (B->seen != NULL)
      memset(B->seen, 0, B->sizeseen * sizeof(*B->seen));
    B->gen = 1;
  }
}

/* Once an encode ends, a big map is freed. */
static void seendrop(Buffer *B) {
  if (B->sizeseen > KEEPSEEN) {
    free(B->seen);
    B->seen = NULL;
    B->sizeseen = 0;
  }
}

/* If the object at 'idx' was met before in this transfer, write a REF
** to it and return 1; else give it the next id and return 0. */
static int encseen(Enc *E, int idx) {
  const void *k = lua_topointer(E->L, idx);
  lua_Integer id;
  if (seenget(E, k, &id)) {
    ensure(E, 11);
    putbyte(E, T_REF);
    putvarint(E, (lua_Unsigned)id);
    E->usedrefs = 1;
    return 1;
  }
  seenput(E, k, ++E->nrefs);
  return 0;
}

/* A table that is the registry entry of its own __name crosses by that
** name (error classes: Class:is(e) must hold on the other side). */
static int encnamed(Enc *E, int t) {
  lua_State *L = E->L;
  int named = 0;
  if (lua_isnil(L, E->namekey)) {
    lua_pushliteral(L, "__name");
    lua_replace(L, E->namekey);
  }
  lua_pushvalue(L, E->namekey);
  if (lua_rawget(L, t) == LUA_TSTRING) {
    lua_pushvalue(L, -1);
    lua_rawget(L, LUA_REGISTRYINDEX);
    named = lua_rawequal(L, -1, t);
    lua_pop(L, 1);
    if (named) {
      size_t len;
      const char *s = lua_tolstring(L, -1, &len);
      ensure(E, 1);
      putbyte(E, T_NAMED);
      putstring(E, s, len);
    }
  }
  lua_pop(L, 1);
  return named;
}

/* A table that package.loaded holds crosses as its module name: the
** receiver gets its own require(name) (identity kept on the way back). */
static int encmodule(Enc *E, int t) {
  lua_State *L = E->L;
  size_t len;
  const char *s;
  if (!lconc_modulename(L, &E->names, t))
    return 0;
  s = lua_tolstring(L, -1, &len);
  ensure(E, 1);
  putbyte(E, T_MODULE);
  putstring(E, s, len);
  lua_pop(L, 1);
  return 1;
}

/* Patch the table's counts (5-byte varints at 'at') and, for a small
** table, close the gap they leave (no offsets point into the bytes, so
** moving them is safe; the move is bounded by the small size). */
static void patchcounts(Enc *E, size_t at, lua_Integer narr,
                        lua_Integer nhash) {
  Buffer *B = E->B;
  size_t body = B->n - (at + 10);
  if (narr < 0x80 && nhash < 0x80 && body <= 256) {
    B->b[at] = (char)narr;
    B->b[at + 1] = (char)nhash;
    memmove(B->b + at + 2, B->b + at + 10, body);
    B->n -= 8;
  } else {
    patchvarint5(B->b + at, (lua_Unsigned)narr);
    patchvarint5(B->b + at + 5, (lua_Unsigned)nhash);
  }
}

static lua_Unsigned zigzag(lua_Integer i) {
  lua_Unsigned u = (lua_Unsigned)i;
  return (u << 1) ^ (0 - (u >> 63));
}

/* An open run of array numbers of one subtype (FLTS or INTS). */
typedef struct Run {
  int tag;          /* T_FLTS or T_INTS; 0 when none is open */
  size_t at;        /* offset of its 5-byte count */
  lua_Integer n;
} Run;

/* Close the run: a run of one becomes a plain FLT or INT, a short one
** gets a 1-byte count (both moves are of at most 127 numbers, at the
** end of the buffer). */
static void closerun(Enc *E, Run *r) {
  Buffer *B = E->B;
  size_t body = B->n - (r->at + 5);
  if (r->tag == 0)
    return;
  if (r->n == 1) {
    B->b[r->at - 1] = (char)(r->tag == T_FLTS ? T_FLT : T_INT);
    memmove(B->b + r->at, B->b + r->at + 5, body);
    B->n -= 5;
  } else if (r->n < 0x80) {
    B->b[r->at] = (char)r->n;
    memmove(B->b + r->at + 1, B->b + r->at + 5, body);
    B->n -= 4;
  } else {
    patchvarint5(B->b + r->at, (lua_Unsigned)r->n);
  }
  r->tag = 0;
}

/* Close the open run, if any, and open one of 'tag' (T_FLTS, T_INTS). */
static void openrun(Enc *E, Run *r, int tag) {
  closerun(E, r);
  ensure(E, 6);
  putbyte(E, tag);
  r->tag = tag;
  r->at = E->B->n;
  r->n = 0;
  E->B->n += 5;
}

/* The array's item t[i], at the top, that is no number: it ends the
** open run and is encoded as a value; then the path names the table
** again, for its own bytes. */
static void encitem(Enc *E, Run *r, lua_Integer i) {
  closerun(E, r);
  setseg(E, SEG_INDEX, 0, i, NULL);
  encode(E, lua_gettop(E->L));
  E->path[E->depth].kind = SEG_NONE;
}

/* Numbers of a run written per check of the buffer's room: the room
** asked for stays near what the run needs. */
#define CHUNK 256

/* Whether the four slots s[0..3] all hold floats. */
#define FLOATS4(s) \
  ((s)[0].tt == LCONC_VNUMFLT && (s)[1].tt == LCONC_VNUMFLT \
   && (s)[2].tt == LCONC_VNUMFLT && (s)[3].tt == LCONC_VNUMFLT)

/* Store the floats of slots s[0..7] at 'p'; returns the byte after.
** Written out: a loop step per float cost as much as the float itself
** (gcc -O2 does not unroll loops). */
static char *storefloats8(char *p, const lconc_slot *s) {
  p = storefloat(p, s[0].v.n);
  p = storefloat(p, s[1].v.n);
  p = storefloat(p, s[2].v.n);
  p = storefloat(p, s[3].v.n);
  p = storefloat(p, s[4].v.n);
  p = storefloat(p, s[5].v.n);
  p = storefloat(p, s[6].v.n);
  return storefloat(p, s[7].v.n);
}

/* The floats at s[i], s[i + 1]... before 'end', up to the first slot
** that holds another value, stored from '*pp' on; returns the index
** after the last. Eight slots a step while all eight are floats. */
static lua_Unsigned storefloats(char **pp, const lconc_slot *s,
                                lua_Unsigned i, lua_Unsigned end) {
  char *p = *pp;
  for (; end - i >= 8 && FLOATS4(s + i) && FLOATS4(s + i + 4); i += 8)
    p = storefloats8(p, s + i);
  for (; i < end && s[i].tt == LCONC_VNUMFLT; i++)
    p = storefloat(p, s[i].v.n);
  *pp = p;
  return i;
}

/* The numbers of the run's subtype at s[n], s[n + 1]... (before
** 'size'), added to it; returns the index after the last. */
static lua_Unsigned putslots(Enc *E, Run *r, const lconc_slot *s,
                             lua_Unsigned n, lua_Unsigned size) {
  Buffer *B = E->B;
  lua_Unsigned i = n, end;
  char *p;
  do {
    end = size - i < CHUNK ? size : i + CHUNK;
    if (r->tag == T_FLTS) {
      ensure(E, 8 * (end - i));
      p = B->b + B->n;
      i = storefloats(&p, s, i, end);
    } else {
      ensure(E, 10 * (end - i));
      for (p = B->b + B->n; i < end && s[i].tt == LCONC_VNUMINT; i++)
        p = storevarint(p, zigzag(s[i].v.i));
    }
    B->n = (size_t)(p - B->b);
  } while (i == end && i < size);
  r->n += (lua_Integer)(i - n);
  return i;
}

/*
** The array's first elements read straight from the table's array part
** (ltable54.h), t[1], t[2]... while it is known to hold them, up to the
** first nil: the pairs lua_next gives first, in the same order, at a
** few instructions a number instead of a call per key and value. Any
** other value is encoded through the API: an allocation there may run
** a finalizer that resizes the table, so the view is read again after
** it. Returns the count n; lua_next goes on from the key n, in the
** array part.
*/
static lua_Integer encslots(Enc *E, int t, Run *r) {
  lua_State *L = E->L;
  lua_Unsigned n = 0, size;
  const lconc_slot *s = lconc_arraypart(L, t, &size);
  while (n < size) {
    int tt = s[n].tt;
    if (tt == LCONC_VNUMFLT || tt == LCONC_VNUMINT) {
      int tag = tt == LCONC_VNUMFLT ? T_FLTS : T_INTS;
      if (r->tag != tag)
        openrun(E, r, tag);
      n = putslots(E, r, s, n, size);
    } else if (lconc_slotisnil(&s[n]))
      break;
    else {
      lua_rawgeti(L, t, (lua_Integer)++n);
      encitem(E, r, (lua_Integer)n);
      lua_pop(L, 1);
      s = lconc_arraypart(L, t, &size);
    }
  }
  return (lua_Integer)n;
}

/* Pairs an array's traversal leaves on the stack before it drops them
** all at once: pushing the next key costs less than popping a value. */
#define KEEPPAIRS 32

/*
** The array: t[1], t[2]... for as long as lua_next gives these keys in
** that order (it gives the array part first, in order). Numbers join a
** run of their subtype (the common numeric arrays decode without a tag
** per element); the rest are values. Returns 1 when it stopped at the
** first pair outside the array, then moved to 'k' and 'k' + 1, or 0 at
** the end. Where the layout is known, encslots takes the elements first;
** lua_next then goes on from its last key, or from the start. Per
** element lua_next costs a call for the pair and a few to read its key
** and value: the Lua API offers nothing cheaper that sees every key.
*/
static int encarray(Enc *E, int t, int k, lua_Integer *narr) {
  lua_State *L = E->L;
  lua_Integer n = 0;
  int more, kept = 0;
  Run run;
  if (!stackroom(L, 2 * KEEPPAIRS + 2))
    refuse(E, "stack overflow");
  run.tag = 0;
  if (E->B->fastarray && (n = encslots(E, t, &run)) > 0) {
    lua_pushinteger(L, n);
    lua_replace(L, k);
  }
  while ((more = lua_next(L, t)) != 0) {
    if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) != n + 1)
      break;
    n++;
    if (lua_isinteger(L, -1)) {
      if (run.tag != T_INTS)
        openrun(E, &run, T_INTS);
      ensure(E, 10);
      putvarint(E, zigzag(lua_tointeger(L, -1)));
      run.n++;
    } else if (lua_type(L, -1) == LUA_TNUMBER) {
      if (run.tag != T_FLTS)
        openrun(E, &run, T_FLTS);
      ensure(E, 8);
      putfloat(E, lua_tonumber(L, -1));
      run.n++;
    } else
      encitem(E, &run, n);
    if (++kept == KEEPPAIRS) {
      lua_settop(L, k - 1);
      kept = 0;
    }
    lua_pushinteger(L, n);  /* the key lua_next goes on from */
  }
  closerun(E, &run);
  if (more) {
    lua_copy(L, -2, k);
    lua_copy(L, -1, k + 1);
    lua_settop(L, k + 1);
  } else
    lua_settop(L, k - 1);
  *narr = n;
  return more;
}

/* One pass of lua_next: the array, then every other pair, then the
** metatable. The counts are patched in once known. */
static void enctable(Enc *E, int t) {
  lua_State *L = E->L;
  lua_Integer narr, nhash = 0;
  size_t at;
  int mt, k;
  if (encnamed(E, t) || encmodule(E, t) || encseen(E, t))
    return;
  enter(E);
  mt = lua_getmetatable(L, t) ? lua_gettop(L) : 0;
  ensure(E, 11);
  putbyte(E, mt ? T_TABLEMT : T_TABLE);
  at = E->B->n;
  E->B->n += 10;
  lua_pushnil(L);
  k = lua_gettop(L);  /* lua_next keeps the key here, the value above */
  if (encarray(E, t, k, &narr)) {
    do {
      setseg(E, SEG_KEY, k, 0, NULL);
      encode(E, k);
      encode(E, k + 1);
      nhash++;
      lua_settop(L, k);
    } while (lua_next(L, t) != 0);
  }
  patchcounts(E, at, narr, nhash);
  if (mt) {
    setseg(E, SEG_META, 0, 0, NULL);
    encode(E, mt);
    lua_pop(L, 1);
  }
  E->depth--;
}

/* Upvalue 'i' of the Lua function 'f' (whose id is 'id'). A cell met
** before in this transfer is joined to its first holder; '_ENV' is
** always the receiver's globals; the rest is copied by value. */
static void encupvalue(Enc *E, int f, lua_Integer id, int i) {
  lua_State *L = E->L;
  const char *name = lua_getupvalue(L, f, i);
  void *cell = lua_upvalueid(L, f, i);
  int isenv = strcmp(name, "_ENV") == 0;
  lua_Integer where;
  int met = seenget(E, cell, &where);
  ensure(E, 21);
  if (met && !isenv) {
    putbyte(E, UV_JOIN);
    E->usedrefs = 1;
    putvarint(E, (lua_Unsigned)(where >> 8));
    putvarint(E, (lua_Unsigned)(where & 0xff));
    lua_pop(L, 1);
    return;
  }
  if (!met)
    seenput(E, cell, (id << 8) | i);  /* i <= 255 (MAXUPVAL) */
  if (isenv)
    putbyte(E, UV_ENV);
  else {
    putbyte(E, UV_VAL);
    setseg(E, SEG_UPVAL, 0, i, name);
    encode(E, lua_gettop(L));
  }
  lua_pop(L, 1);
}

static lua_Integer addshared(Enc *E, void *obj);

/* A Lua function: its cached dump, copied, or (LCONC_ENC_LOCAL) named
** in the payload's list, so that queued tasks share one copy. */
static void enclfunc(Enc *E, int f) {
  lua_State *L = E->L;
  const char *dump;
  conc_bytes_t *ref;
  size_t len;
  lua_Integer id;
  int nups, i;
  if (encseen(E, f))
    return;
  id = E->nrefs;
  enter(E);
  dump = lconc_dumpfunc(L, f, &E->B->memo, E->buffer, &len, &nups, &ref);
  if (dump == NULL)
    refuse(E, "the Lua state is closing");
  if (E->local) {
    lua_Integer at = addshared(E, ref);  /* alive with its entry */
    ensure(E, 1 + 10 + 10);
    putbyte(E, T_LFUNCREF);
    putvarint(E, (lua_Unsigned)at);
  } else {
    ensure(E, 1 + 10 + len + 4 + 10);
    putbyte(E, T_LFUNC);
    putvarint(E, len);
    putblock(E, dump, len + 4);  /* the dump and its check */
  }
  putvarint(E, (lua_Unsigned)nups);
  for (i = 1; i <= nups; i++)
    encupvalue(E, f, id, i);
  E->depth--;
}

/* A C function crosses as the name under which package.loaded holds it;
** its upvalues could hold anything, so one with upvalues is refused. */
static void enccfunc(Enc *E, int f) {
  lua_State *L = E->L;
  size_t ml, kl;
  const char *m, *k;
  if (lua_getupvalue(L, f, 1) != NULL)
    refuse(E, "C function with upvalues");
  if (!lconc_cfuncname(L, &E->names, f))
    refuse(E, "C function not found in package.loaded");
  m = lua_tolstring(L, -2, &ml);
  k = lua_tolstring(L, -1, &kl);
  ensure(E, 1);
  putbyte(E, T_CFUNC);
  putstring(E, m, ml);
  putstring(E, k, kl);
  lua_pop(L, 2);
}

/* Add a shared object to the payload's list; its index. */
/* Give back the list's references: once its payload took its own, or
** at the next encode after an error. */
static void releaseheld(Buffer *B) {
  while (B->nfut > 0)
    conc_shared_unref(B->fut[--B->nfut]);
}

/* The list holds a reference on each object until the payload takes
** its own: what holds the object may let go of it before then (a
** future handle or a function met only through a weak table, collected
** by a step of the collector that an allocation of this encode ran,
** takes its future or its dump's bytes with it). */
static lua_Integer addshared(Enc *E, void *obj) {
  Buffer *B = E->B;
  if (B->nfut == B->sizefut) {
    size_t want = B->sizefut ? 2 * B->sizefut : 8;
    void **nf = (void **)realloc(B->fut, want * sizeof(*nf));
    if (nf == NULL)
      refuse(E, "not enough memory");
    B->fut = nf;
    B->sizefut = want;
  }
  conc_shared_ref(obj);
  B->fut[B->nfut] = obj;
  return (lua_Integer)B->nfut++;
}

/* A future or a queue crosses as an index into the payload's list of
** shared objects; a handle met twice is one entry. */
static void encfuture(Enc *E, int idx) {
  lua_State *L = E->L;
  void *f = lconc_testfuture(L, idx);
  lua_Integer i;
  if (f != NULL)
    lconc_sharefuture(L, idx);  /* it may come back: one handle per state */
  else if ((f = lconc_testqueue(L, idx)) == NULL)
    refuse(E, "userdata");
  if (!seenget(E, lua_topointer(L, idx), &i)) {
    i = addshared(E, f);
    seenput(E, lua_topointer(L, idx), i);
  }
  ensure(E, 11);
  putbyte(E, T_FUTURE);
  putvarint(E, (lua_Unsigned)i);
}

static void encode(Enc *E, int idx) {
  lua_State *L = E->L;
  switch (lua_type(L, idx)) {
    case LUA_TNIL: ensure(E, 1); putbyte(E, T_NIL); break;
    case LUA_TBOOLEAN:
      ensure(E, 1);
      putbyte(E, lua_toboolean(L, idx) ? T_TRUE : T_FALSE);
      break;
    case LUA_TNUMBER:
      ensure(E, 11);
      if (lua_isinteger(L, idx)) {
        putbyte(E, T_INT);
        putvarint(E, zigzag(lua_tointeger(L, idx)));
      } else {
        putbyte(E, T_FLT);
        putfloat(E, lua_tonumber(L, idx));
      }
      break;
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      ensure(E, 1);
      putbyte(E, T_STR);
      putstring(E, s, len);
      break;
    }
    case LUA_TTABLE: enctable(E, idx); break;
    case LUA_TFUNCTION:
      if (lua_iscfunction(L, idx))
        enccfunc(E, idx);
      else
        enclfunc(E, idx);
      break;
    case LUA_TUSERDATA: encfuture(E, idx); break;
    case LUA_TLIGHTUSERDATA: refuse(E, "light userdata"); break;
    default: refuse(E, luaL_typename(L, idx));  /* thread */
  }
}

/* Move the encoding out of the buffer into a payload block, taking a
** reference on each future. A big one takes the buffer itself. */
static conc_payload_t *finish(Enc *E) {
  Buffer *B = E->B;
  size_t size = B->n - HEAD;
  conc_payload_t *p;
  size_t i;
  if (E->alloc != NULL && (p = E->alloc(E->ud, size, B->nfut)) != NULL) {
    memcpy(conc_payload_data(p), B->b + HEAD, size);
  } else if (size >= CONC_HANDOVER) {
    p = conc_payload_adopt(B->b, size, B->nfut);
    if (p == NULL)
      refuse(E, "not enough memory");
    B->b = NULL;
    B->n = B->size = 0;
  } else {
    p = conc_payload_new(B->b + HEAD, size, B->nfut);
    if (p == NULL)
      refuse(E, "not enough memory");
  }
  for (i = 0; i < B->nfut; i++)
    conc_payload_setshared(p, i, B->fut[i]);
  return p;
}

/* Most values (the function and its arguments) and most upvalues of
** the function that the plain form below takes. */
#define PLAINMAX 8
#define PLAINUPS 8

/* The bytes of a scalar value at 'idx' at 'p' (as 'encode' writes them);
** NULL if it is no nil, boolean or number. */
static char *storescalar(lua_State *L, int idx, char *p) {
  if (lua_isinteger(L, idx)) {  /* the common argument: no lua_type */
    *p++ = T_INT;
    return storevarint(p, zigzag(lua_tointeger(L, idx)));
  }
  switch (lua_type(L, idx)) {
    case LUA_TNIL: *p++ = T_NIL; break;
    case LUA_TBOOLEAN: *p++ = lua_toboolean(L, idx) ? T_TRUE : T_FALSE; break;
    case LUA_TNUMBER:
      *p++ = T_FLT;
      return storefloat(p, lua_tonumber(L, idx));
    default: return NULL;
  }
  return p;
}

/*
** The common task without the general encoder: the Lua function sent
** last (lconc_dumpmemoplain: its upvalues all '_ENV'), named in the
** payload's list (LCONC_ENC_LOCAL), and nils, booleans and numbers. The
** bytes are the general encoder's for these values; they go straight
** into the payload that 'alloc' makes. NULL when the values take
** another form or 'alloc' has no block: the general encoder then does
** it all, and reports what it must. No Lua runs, nothing raises: it
** needs no buffer, 'seen' map or path. A fifth of the general cost.
** Its own function, called before lconc_encodex, not inside it: the
** general encoder's frame (its 'Enc', a few KiB, and six saved
** registers) cost this path some 20 instructions a task.
*/
conc_payload_t *lconc_encodeplain(lua_State *L, int first, int n,
                                  lconc_payalloc alloc, void *ud,
                                  void *buffer) {
  char b[6 + PLAINUPS + (PLAINMAX - 1) * 11], *p = b;
  Buffer *B = (Buffer *)buffer;
  conc_bytes_t *dump;
  conc_payload_t *pay;
  int i, nups;
  if (first < 1 || n < 1 || n > PLAINMAX || B == NULL
      || (dump = lconc_dumpmemoplain(L, first, &B->memo, 0,
                                     &nups)) == NULL
      || nups > PLAINUPS)
    return NULL;
  *p++ = VERSION;
  *p++ = 0;  /* flags: no REF */
  *p++ = (char)n;  /* varints below 128 are one byte */
  *p++ = T_LFUNCREF;
  *p++ = 0;  /* the dump: list[0] */
  *p++ = (char)nups;
  for (i = 0; i < nups; i++)
    *p++ = UV_ENV;
  for (i = 1; i < n; i++)
    if ((p = storescalar(L, first + i, p)) == NULL)
      return NULL;
  if ((pay = alloc(ud, (size_t)(p - b), 1)) == NULL)
    return NULL;
  memcpy(conc_payload_data(pay), b, (size_t)(p - b));
  conc_payload_setshared(pay, 0, dump);
  return pay;
}

conc_payload_t *lconc_encode(lua_State *L, int first, int n,
                            const char *label, int labelbase) {
  return lconc_encodex(L, first, n, label, labelbase, 0, NULL, NULL, 0);
}

conc_payload_t *lconc_encodex(lua_State *L, int first, int n,
                             const char *label, int labelbase, int flags,
                             lconc_payalloc alloc, void *ud, int buffer) {
  Enc E;
  conc_payload_t *p;
  const char *frame = (const char *)__builtin_frame_address(0);
  int i;
  first = lua_absindex(L, first);
  luaL_checkstack(L, 8, "cannot transfer");
  lua_pushnil(L);  /* slot of the string "__name" */
  E.L = L;
  E.namekey = lua_gettop(L);
  E.usedrefs = 0;
  E.local = (flags & LCONC_ENC_LOCAL) != 0;
  E.alloc = alloc;
  E.ud = ud;
  E.nrefs = 0;
  E.depth = 0;
  E.maxdepth = CONC_MAXDEPTH + ((flags & LCONC_ENC_WRAP) ? WRAPDEPTH : 0);
  E.label = label;
  E.labelbase = labelbase;
  E.init = (flags & LCONC_ENC_INIT) != 0;
  E.names.checked = 0;
  E.B = buffer != 0 ? (Buffer *)lua_touserdata(L, buffer) : NULL;
  if (E.B != NULL && !taken(E.B, frame))
    lua_pushvalue(L, buffer);
  else
    E.B = getbuffer(L, frame);
  E.buffer = lua_gettop(L);
  E.B->busy = 1;
  E.B->frame = frame;
  E.B->n = HEAD;
  releaseheld(E.B);  /* what an encode that raised left */
  seenreset(E.B);
  setseg(&E, SEG_ALL, 0, 0, NULL);
  ensure(&E, 12);
  putbyte(&E, VERSION);
  putbyte(&E, 0);  /* flags, patched below */
  putvarint(&E, (lua_Unsigned)n);
  for (i = 0; i < n; i++) {
    setseg(&E, SEG_TOP, 0, i, NULL);
    encode(&E, first + i);
  }
  E.B->b[HEAD + 1] = (char)((E.usedrefs ? F_REFS : 0)
                             | ((flags & LCONC_ENC_WRAP) ? F_WRAP : 0));
  setseg(&E, SEG_ALL, 0, 0, NULL);
  p = finish(&E);
  releaseheld(E.B);
  seendrop(E.B);
  dropunowned(E.B);
  E.B->busy = 0;
  lua_pop(L, 2);
  return p;
}

/* Where lconc_encodescalars writes: the first 'max' bytes at 'b'; 'n'
** counts every byte, written or not. */
typedef struct Scalars {
  char *b;
  size_t n, max;
} Scalars;

/* Add the value at 'idx' as 'encode' writes it; 0 if it is no nil,
** boolean, number or string. */
static int addscalar(lua_State *L, int idx, Scalars *s) {
  char head[11];  /* a tag and a varint */
  char *p;
  const char *str = NULL;
  size_t len = 0, k;
  if (lua_type(L, idx) == LUA_TSTRING) {
    str = lua_tolstring(L, idx, &len);
    head[0] = T_STR;
    p = storevarint(head + 1, len);
  } else if ((p = storescalar(L, idx, head)) == NULL)
    return 0;
  k = (size_t)(p - head);
  if (k + len > SIZE_MAX / 4 - s->n)  /* 's->n' stays below SIZE_MAX / 4 */
    return 0;  /* too large: lconc_encode says so */
  if (s->n + k + len <= s->max) {
    if (s->n + sizeof(head) <= s->max)  /* a fixed size: no call */
      memcpy(s->b + s->n, head, sizeof(head));
    else
      memcpy(s->b + s->n, head, k);
    if (len > 0)
      memcpy(s->b + s->n + k, str, len);
  }
  s->n += k + len;
  return 1;
}

/* Add the header and the 'n' values at 'first'...; 0 if one is no
** scalar. */
static int addscalars(lua_State *L, int first, int n, Scalars *s) {
  char *p = s->b;  /* the header fits: 12 bytes at most */
  int i;
  *p++ = VERSION;
  *p++ = 0;  /* no flags */
  p = storevarint(p, (lua_Unsigned)n);
  s->n = (size_t)(p - s->b);
  for (i = 0; i < n; i++)
    if (!addscalar(L, first + i, s))
      return 0;
  return 1;
}

/* The bytes lconc_encode makes for such values, written straight into
** a payload of their size: a task's usual results need none of the
** encoder's state (its buffer, its path, its 'seen' map), which cost a
** fifth of a small task in a worker. One pass writes them on the C
** stack while they fit there (then a copy); past that, a second one
** writes them into their payload. */
conc_payload_t *lconc_encodescalars(lua_State *L, int first, int n,
                                    lconc_payalloc alloc, void *ud) {
  char buf[128];
  Scalars s;
  conc_payload_t *p;
  s.b = buf;
  s.max = sizeof(buf);
  if (!addscalars(L, first, n, &s))
    return NULL;
  if ((alloc == NULL || (p = alloc(ud, s.n, 0)) == NULL)
      && (p = conc_payload_new(NULL, s.n, 0)) == NULL)
    return NULL;
  if (s.n <= sizeof(buf))
    memcpy(conc_payload_data(p), buf, s.n);
  else {
    s.b = conc_payload_data(p);
    s.max = s.n;
    addscalars(L, first, n, &s);
  }
  return p;
}

/* The bytes lconc_encode makes for the one string 'msg' (nil for
** NULL), in a payload made without the state: a worker whose state is
** out of memory (max_memory) can still say why its task failed. */
conc_payload_t *lconc_encodetext(const char *msg) {
  size_t len = msg != NULL ? strlen(msg) : 0, k;
  char head[2 + 2 * 10 + 1], *p = head;  /* two varints and three bytes */
  conc_payload_t *pl;
  *p++ = VERSION;
  *p++ = 0;  /* no flags */
  p = storevarint(p, 1);
  if (msg == NULL)
    *p++ = T_NIL;
  else {
    *p++ = T_STR;
    p = storevarint(p, len);
  }
  k = (size_t)(p - head);
  if (len > SIZE_MAX - k || (pl = conc_payload_new(NULL, k + len, 0)) == NULL)
    return NULL;
  memcpy(conc_payload_data(pl), head, k);
  if (len > 0)
    memcpy((char *)conc_payload_data(pl) + k, msg, len);
  return pl;
}

conc_payload_t *lconc_encodenone(void) {
  const char head[3] = { VERSION, 0, 0 };  /* no flags, a count of 0 */
  return conc_payload_new(head, sizeof(head), 0);
}

/* }====================================================================== */


/* {======================================================================
** The decoder
** ======================================================================= */

typedef struct Dec {
  lua_State *L;
  const unsigned char *b, *p, *end;
  const conc_payload_t *pl;  /* futures come from its list, or NULL */
  lconc_loadmemo *memo;      /* where LFUNCREF functions are found first,
                             ** or NULL */
  int refs;           /* stack index: id -> table or Lua function */
  int hasrefs;        /* the 'refs' slot holds the table (not nil) */
  int userefs;        /* F_REFS: objects must be numbered */
  int fastarray;      /* numbers go straight into array parts (see
                      ** 'decrun'); -1 until a table asks */
  lua_Integer nrefs;
  int depth;
  int maxdepth;       /* CONC_MAXDEPTH, or more with F_WRAP */
  int flags;
} Dec;

/* Every decode error goes through here. */
static void error(Dec *D, const char *why) {
  luaL_error(D->L, "cannot decode transfer (%s at byte %I)", why,
             (lua_Integer)(D->p - D->b));
}

/* Every read goes through here: the next 'n' bytes, if there are. */
static const unsigned char *need(Dec *D, size_t n) {
  const unsigned char *r = D->p;
  if ((size_t)(D->end - D->p) < n)
    error(D, "truncated");
  D->p += n;
  return r;
}

static int loadbyte(Dec *D) {
  return *need(D, 1);
}

enum { VAR_OK, VAR_TRUNCATED, VAR_OVERFLOW };

/* The varint at '*pp' (before 'end') into '*x', and '*pp' moved past
** what was read; VAR_OK or what is wrong. Read through a local
** pointer, the tenth byte apart (only its lowest bit fits), inline:
** INTS runs decode one per element (a call each cost them 10-20%).
** It also reads a payload with no decoder (lconc_peekscalar). */
static inline int getvarint(const unsigned char **pp,
                            const unsigned char *end, lua_Unsigned *x) {
  const unsigned char *p = *pp;
  lua_Unsigned r = 0;
  int shift;
  unsigned c;
  for (shift = 0; shift < 63; shift += 7) {
    if (p == end)
      goto truncated;
    c = *p++;
    r |= (lua_Unsigned)(c & 0x7f) << shift;
    if (!(c & 0x80)) {
      *pp = p;
      *x = r;
      return VAR_OK;
    }
  }
  if (p == end)
    goto truncated;
  c = *p++;
  if ((c & 0x7e) == 0 && (c & 0x80)) {  /* an 11th byte follows */
    if (p == end)
      goto truncated;
    p++;
  }
  *pp = p;
  *x = r | (lua_Unsigned)c << 63;
  return c > 1 ? VAR_OVERFLOW : VAR_OK;
truncated:
  *pp = p;
  return VAR_TRUNCATED;
}

static lua_Unsigned loadlongvarint(Dec *D) {
  const unsigned char *p = D->p;
  lua_Unsigned x = 0;
  int status = getvarint(&p, D->end, &x);
  D->p = p;
  if (status != VAR_OK)
    error(D, status == VAR_TRUNCATED ? "truncated" : "varint overflow");
  return x;
}

/* Most varints (counts, ids, small integers) are one byte, read here
** without a call. */
static inline lua_Unsigned loadvarint(Dec *D) {
  if (D->p < D->end && *D->p < 0x80)
    return *D->p++;
  return loadlongvarint(D);
}

/* A count of items taking at least 'unit' bytes each: more than the
** bytes left can hold is corrupt, so nothing is allocated for it. */
static int loadcount(Dec *D, size_t unit) {
  lua_Unsigned x = loadvarint(D);
  if (x > (lua_Unsigned)(D->end - D->p) / unit || x > INT_MAX)
    error(D, "count larger than the input");
  return (int)x;
}

static void loadstring(Dec *D) {
  size_t n = (size_t)loadcount(D, 1);
  lua_pushlstring(D->L, (const char *)need(D, n), n);
}

/* The f64 at 's' (8 bytes the caller checked). */
static lua_Number getfloat(const unsigned char *s) {
  double d;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  memcpy(&d, s, 8);
#else
  uint64_t u = 0;
  int i;
  for (i = 7; i >= 0; i--)
    u = (u << 8) | s[i];
  memcpy(&d, &u, 8);
#endif
  return (lua_Number)d;
}

static lua_Number loadfloat(Dec *D) {
  return getfloat(need(D, 8));
}

/* One level deeper, with stack to spare: a value at the top level has
** the LUA_MINSTACK slots that decodeall keeps free for each. */
static void enterd(Dec *D) {
  if (D->depth >= D->maxdepth)
    error(D, "nesting deeper than " STRINGIFY(CONC_MAXDEPTH));
  if (D->depth > 0 && !stackroom(D->L, 8))
    error(D, "stack overflow");
  D->depth++;
}

/* Give the object at the top the next id. */
static void addref(Dec *D) {
  lua_State *L = D->L;
  D->nrefs++;
  if (!D->userefs)
    return;
  if (!D->hasrefs) {
    lua_newtable(L);
    lua_replace(L, D->refs);
    D->hasrefs = 1;
  }
  lua_pushvalue(L, -1);
  lua_rawseti(L, D->refs, D->nrefs);
}

/* Push the object of an id read from the input. */
static void loadref(Dec *D) {
  lua_Unsigned id = loadvarint(D);
  if (!D->userefs || id < 1 || id > (lua_Unsigned)D->nrefs)
    error(D, "bad reference");
  lua_rawgeti(D->L, D->refs, (lua_Integer)id);
}

static void decode(Dec *D);

static lua_Integer unzigzag(lua_Unsigned z) {
  return (lua_Integer)((z >> 1) ^ (0 - (z & 1)));
}

/* Whether this state's Lua passed lconc_arraycheck (asked once a
** transfer, of the state's buffer, which keeps the answer). */
static int fastarray(Dec *D) {
  if (D->fastarray < 0) {
    lconc_pushencbuffer(D->L);
    D->fastarray = ((Buffer *)lua_touserdata(D->L, -1))->fastarray;
    lua_pop(D->L, 1);
  }
  return D->fastarray;
}

/* Slot s[k] := the float at f + 8 * k. */
#define SETFLOAT(s, f, k) \
  ((s)[k].v.n = getfloat((f) + 8 * (k)), (s)[k].tt = LCONC_VNUMFLT)

/* Slots s[0..7] := the 8 floats at 'f'. Written out: a loop step per
** float cost as much as the float itself (gcc -O2 does not unroll loops). */
static void setfloats8(lconc_slot *s, const unsigned char *f) {
  SETFLOAT(s, f, 0);
  SETFLOAT(s, f, 1);
  SETFLOAT(s, f, 2);
  SETFLOAT(s, f, 3);
  SETFLOAT(s, f, 4);
  SETFLOAT(s, f, 5);
  SETFLOAT(s, f, 6);
  SETFLOAT(s, f, 7);
}

/* The run's 'run' numbers written into slots s[0..run-1] of a new
** table (ltable54.h, lconc_arraynew: why no barrier is owed): a few
** instructions a float, where pushing it for the constructor (stacked)
** and storing it there took about 30. */
static void slotrun(Dec *D, lconc_slot *s, int run, int floats) {
  int j;
  if (floats) {
    const unsigned char *f = need(D, (size_t)run * 8);
    for (j = 0; run - j >= 8; j += 8, f += 64)
      setfloats8(s + j, f);
    for (; j < run; j++, f += 8)
      SETFLOAT(s + j, f, 0);
  } else {
    for (j = 0; j < run; j++) {
      s[j].v.i = unzigzag(loadvarint(D));
      s[j].tt = LCONC_VNUMINT;
    }
  }
}

/* A FLTS or INTS run of t[i...] (at most up to 'narr'); returns the
** next i. With t == 0 the elements stay on the stack, in order. The
** count was checked against the bytes left, so floats are read without
** a check each. Into a table 't' made here (dectable) where the layout
** check passed, they are written into its array part: the view is read
** again for each run, as decoding an item between runs allocates. The
** table exists before its items, so a REF among them may point back to
** it, as on the lua_rawseti path. */
static int decrun(Dec *D, int t, int i, int narr) {
  lua_State *L = D->L;
  int floats = loadbyte(D) == T_FLTS;
  int run = loadcount(D, floats ? 8 : 1), j;
  lconc_slot *s = NULL;
  lua_Unsigned n = 0;  /* slots in the view: none without one */
  if (run == 0 || run > narr - i + 1)
    error(D, "bad number run");
  if (t && D->fastarray > 0)
    s = lconc_arraynew(L, t, &n);
  if (n >= (lua_Unsigned)(i - 1 + run))
    slotrun(D, s + (i - 1), run, floats);
  else if (floats) {
    const unsigned char *f = need(D, (size_t)run * 8);
    for (j = 0; j < run; j++, f += 8) {
      lua_pushnumber(L, getfloat(f));
      if (t)
        lua_rawseti(L, t, i + j);
    }
  } else {
    for (j = 0; j < run; j++) {
      lua_pushinteger(L, unzigzag(loadvarint(D)));
      if (t)
        lua_rawseti(L, t, i + j);
    }
  }
  return i + run;
}

/* The items t[i..narr] (into 't', or onto the stack with t == 0). */
static void decitems(Dec *D, int t, int narr) {
  int i;
  for (i = 1; i <= narr; ) {
    if (D->p < D->end && (*D->p == T_FLTS || *D->p == T_INTS))
      i = decrun(D, t, i, narr);
    else {
      decode(D);
      if (t)
        lua_rawseti(D->L, t, i);
      i++;
    }
  }
}

static const char MAKER = 'k';  /* registry key of 'maker' below */

/*
** An array of at least MINSTACKED items and no other pairs is made the
** way Lua's own constructor makes one: the items go onto the stack and
** a Lua function returns {...}, which stores them in one pass (about
** half the cost of a lua_rawseti each), where the state cannot write
** them straight into the table's array part (fastarray, cheaper still).
** Not for a transfer with references: a REF inside may point back to
** the table, which must then exist before its items. At most MAXSTACKED
** items, so the stack stays small next to the table itself.
*/
#define MINSTACKED 16
#define MAXSTACKED (1 << 16)

static int stacked(Dec *D, int narr, int nhash) {
  lua_State *L = D->L;
  if (D->userefs || nhash != 0 || narr < MINSTACKED || narr > MAXSTACKED
      || !lua_checkstack(L, narr + LUA_MINSTACK))
    return 0;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &MAKER) != LUA_TFUNCTION) {
    lua_pop(L, 1);
    if (luaL_loadbuffer(L, "return {...}", 12, "=(transfer)") != LUA_OK)
      lua_error(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &MAKER);
  }
  return 1;
}

static void dectable(Dec *D, int hasmt) {
  lua_State *L = D->L;
  int narr, nhash, i, t;
  enterd(D);
  narr = loadcount(D, 1);
  nhash = loadcount(D, 2);
  if (!fastarray(D) && stacked(D, narr, nhash)) {
    D->nrefs++;  /* its id (no F_REFS: none is kept) */
    decitems(D, 0, narr);
    lua_call(L, narr, 1);
    t = lua_gettop(L);
  } else {
    lua_createtable(L, narr, nhash);
    t = lua_gettop(L);
    addref(D);
    decitems(D, t, narr);
  }
  for (i = 0; i < nhash; i++) {
    decode(D);
    if (lua_isnil(L, -1))
      error(D, "nil key");
    if (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) !=
        lua_tonumber(L, -1))
      error(D, "NaN key");
    decode(D);
    lua_rawset(L, t);
  }
  if (hasmt) {
    decode(D);
    if (!lua_istable(L, -1))
      error(D, "metatable is not a table");
    lua_setmetatable(L, t);
  }
  D->depth--;
}

/* Upvalue 'i' of the new closure 'f' joins upvalue 'n' of a Lua
** function decoded before (both checked: lua_upvaluejoin trusts them). */
static void joinupvalue(Dec *D, int f, int i) {
  lua_State *L = D->L;
  lua_Unsigned n;
  loadref(D);
  n = loadvarint(D);
  if (lua_type(L, -1) != LUA_TFUNCTION || lua_iscfunction(L, -1))
    error(D, "upvalue joined to a non-function");
  if (n < 1 || n > (lua_Unsigned)lconc_nupvalues(L, -1) ||
      lua_getupvalue(L, -1, (int)n) == NULL)
    error(D, "bad upvalue number");
  lua_pop(L, 1);
  lua_upvaluejoin(L, f, i, -1, (int)n);
  lua_pop(L, 1);
}

/* A closure shared by every transfer ('shared', see lconc_loadfunc) only
** takes UV_ENV: its cells must not carry one transfer's values. */
static void decupvalue(Dec *D, int f, int i, int shared) {
  lua_State *L = D->L;
  int kind = loadbyte(D);
  if (kind != UV_ENV && shared)
    error(D, "upvalue of a shared function");
  switch (kind) {
    case UV_ENV:
      lua_pushglobaltable(L);
      lua_setupvalue(L, f, i);
      break;
    case UV_VAL:
      decode(D);
      lua_setupvalue(L, f, i);
      break;
    case UV_JOIN: joinupvalue(D, f, i); break;
    default: error(D, "bad upvalue tag");
  }
}

/* LFUNC, or LFUNCREF ('ref'): the dump is in the bytes, or in shared
** bytes of the payload's list (made by this process: no check). */
static void declfunc(Dec *D, int ref) {
  lua_State *L = D->L;
  const char *b;
  size_t n;
  int shared, nups, i, f;
  if (D->flags & LCONC_DEC_NOCODE)
    error(D, "function refused");
  enterd(D);
  if (ref) {
    lua_Unsigned at = loadvarint(D);
    conc_bytes_t *s = D->pl != NULL && at < D->pl->nfutures
                      ? conc_payload_bytes(D->pl, (size_t)at) : NULL;
    if (s == NULL)
      error(D, "bad function index");
    b = conc_bytes_data(s, &n);
    if (n < 5)
      error(D, "bad function index");
    shared = D->memo != NULL ? lconc_loadshared(L, s, D->memo, &nups)
                             : lconc_loadfunc(L, b, n - 5, &nups);
  } else {
    const char *hb;
    char check[4];
    n = (size_t)loadcount(D, 1);
    b = (const char *)need(D, n);
    hb = (const char *)need(D, 4);
    lconc_dumpcheck(b, n, check);
    if (memcmp(hb, check, 4) != 0)
      error(D, "bad bytecode: hash mismatch");
    shared = lconc_loadfunc(L, b, n, &nups);
  }
  if (shared < 0)
    error(D, lua_pushfstring(L, "bad bytecode: %s", lua_tostring(L, -1)));
  f = lua_gettop(L);
  addref(D);
  if (loadvarint(D) != (lua_Unsigned)nups)
    error(D, "wrong upvalue count");
  for (i = 1; i <= nups; i++)
    decupvalue(D, f, i, shared);
  D->depth--;
}

/* A module by name: the receiver's own (required if need be). */
static void decmodule(Dec *D) {
  lua_State *L = D->L;
  loadstring(D);
  if (!lconc_getmodule(L, -1, !(D->flags & LCONC_DEC_NOCODE)))
    error(D, lua_tostring(L, -1));
  lua_remove(L, -2);
}

static void deccfunc(Dec *D) {
  lua_State *L = D->L;
  loadstring(D);
  loadstring(D);
  if (!lconc_cfunclookup(L, -2, -1, !(D->flags & LCONC_DEC_NOCODE)))
    error(D, lua_pushfstring(L, "C function '%s.%s': %s",
                             lua_tostring(L, -3), lua_tostring(L, -2),
                             lua_tostring(L, -1)));
  lua_replace(L, -3);
  lua_pop(L, 1);
}

/* registry[name], if it is a table whose __name is that name (as the
** encoder requires): other registry entries (package.loaded) stay out
** of reach of hostile bytes. */
static void decnamed(Dec *D) {
  lua_State *L = D->L;
  int ok = 0;
  loadstring(D);
  lua_pushvalue(L, -1);
  if (lua_rawget(L, LUA_REGISTRYINDEX) == LUA_TTABLE) {
    lua_pushliteral(L, "__name");
    lua_rawget(L, -2);
    ok = lua_rawequal(L, -1, -3);
    lua_pop(L, 1);
  }
  if (!ok)
    error(D, lua_pushfstring(L, "no registry table '%s' here",
                             lua_tostring(L, -2)));
  lua_remove(L, -2);
}

static void decfuture(Dec *D) {
  lua_Unsigned i = loadvarint(D);
  if (D->pl == NULL || D->pl->nfutures == 0)
    error(D, "future handle in raw bytes");
  if (i < D->pl->nfutures && conc_payload_queue(D->pl, i) != NULL)
    lconc_pushqueue(D->L, conc_payload_queue(D->pl, (size_t)i));
  else if (i >= D->pl->nfutures || conc_payload_future(D->pl, i) == NULL)
    error(D, "bad future index");
  else
    lconc_pushfuture(D->L, conc_payload_future(D->pl, (size_t)i));
}

/* Push the next value. */
static void decode(Dec *D) {
  lua_State *L = D->L;
  int tag = loadbyte(D);
  switch (tag) {
    case T_NIL: lua_pushnil(L); break;
    case T_FALSE: lua_pushboolean(L, 0); break;
    case T_TRUE: lua_pushboolean(L, 1); break;
    case T_INT: lua_pushinteger(L, unzigzag(loadvarint(D))); break;
    case T_FLT: lua_pushnumber(L, loadfloat(D)); break;
    case T_STR: loadstring(D); break;
    case T_TABLE: case T_TABLEMT: dectable(D, tag == T_TABLEMT); break;
    case T_REF: loadref(D); break;
    case T_NAMED: decnamed(D); break;
    case T_LFUNC: case T_LFUNCREF: declfunc(D, tag == T_LFUNCREF); break;
    case T_CFUNC: deccfunc(D); break;
    case T_FUTURE: decfuture(D); break;
    case T_MODULE: decmodule(D); break;
    default: error(D, "bad tag");
  }
}

/* A transfer of one nil, boolean, number or string (most results): it
** needs neither the 'refs' slot nor more than one stack slot. */
static int decodescalar(Dec *D) {
  decode(D);
  if (D->p != D->end)
    error(D, "trailing bytes");
  return 1;
}

/* Decode a whole transfer; nothing of it stays on the stack but its
** values (objects of a failed decode are garbage, nothing leaks). */
static int decodeall(lua_State *L, const void *b, size_t size,
                     const conc_payload_t *pl, lconc_loadmemo *memo,
                     int flags) {
  Dec D;
  int n, i;
  D.L = L;
  D.b = D.p = (const unsigned char *)b;
  D.end = D.b + size;
  D.pl = pl;
  D.memo = memo;
  D.hasrefs = 0;
  D.fastarray = -1;
  D.nrefs = 0;
  D.depth = 0;
  D.flags = flags;
  luaL_checkstack(L, 8, "cannot decode transfer");
  if (loadbyte(&D) != VERSION)
    error(&D, "unknown format version");
  D.userefs = loadbyte(&D);
  if (D.userefs & ~(F_REFS | F_WRAP))
    error(&D, "unknown flags");
  D.maxdepth = CONC_MAXDEPTH + ((D.userefs & F_WRAP) ? WRAPDEPTH : 0);
  D.userefs &= F_REFS;
  n = loadcount(&D, 1);
  if (n == 1 && D.p < D.end && *D.p <= T_STR && !D.userefs)
    return decodescalar(&D);
  D.refs = 0;
  if (D.userefs) {  /* else no REF can follow: no slot to remove after */
    lua_pushnil(L);  /* slot of the 'refs' table */
    D.refs = lua_gettop(L);
  }
  if (n > INT_MAX - LUA_MINSTACK || !lua_checkstack(L, n + LUA_MINSTACK))
    error(&D, "too many values");
  for (i = 0; i < n; i++)
    decode(&D);
  if (D.p != D.end)
    error(&D, "trailing bytes");
  if (D.userefs)
    lua_remove(L, D.refs);
  return n;
}

/* An error made by the core: "<class>\0<message>" becomes an error
** object of that class, or the message string when the class is "". */
static int decodeerror(lua_State *L, const conc_payload_t *p) {
  const char *b = conc_payload_data(p);
  size_t lc = strnlen(b, p->size);
  if (lc == p->size)
    return luaL_error(L, "cannot decode transfer (bad error payload)");
  lua_pushlstring(L, b + lc + 1, p->size - lc - 1);
  if (lc > 0) {  /* else the message itself is the error */
    lconc_pusherror(L, b, lua_tostring(L, -1));
    lua_remove(L, -2);
  }
  return 1;
}

/* The header VERSION, no flags, a count of 1, then one scalar tag: a
** task's usual result, read with no decoder setup and no stack use. */
int lconc_peekscalar(const conc_payload_t *p, lconc_scalar *s) {
  const unsigned char *b = (const unsigned char *)conc_payload_data(p);
  const unsigned char *end = b + p->size, *val = b + 4;
  lua_Unsigned z;
  if (p->kind != CONC_PAYLOAD_VALUES || p->size < 4 || b[0] != VERSION
      || b[1] != 0 || b[2] != 1)
    return 0;
  s->type = LUA_TBOOLEAN;
  s->isint = 0;
  switch (b[3]) {
    case T_NIL: s->type = LUA_TNIL; return p->size == 4;
    case T_FALSE: s->v.i = 0; return p->size == 4;
    case T_TRUE: s->v.i = 1; return p->size == 4;
    case T_INT:
      s->type = LUA_TNUMBER;
      s->isint = 1;
      if (getvarint(&val, end, &z) != VAR_OK || val != end)
        return 0;  /* the decoder says what is wrong */
      s->v.i = unzigzag(z);
      return 1;
    case T_FLT:
      s->type = LUA_TNUMBER;
      if (p->size != 12)
        return 0;
      s->v.n = getfloat(b + 4);
      return 1;
    default: return 0;
  }
}

int lconc_decodememo(lua_State *L, const conc_payload_t *p,
                     lconc_loadmemo *memo) {
  if (p == NULL)
    return luaL_error(L, "cannot decode transfer (no payload)");
  if (p->kind == CONC_PAYLOAD_ERROR)
    return decodeerror(L, p);
  return decodeall(L, conc_payload_data(p), p->size, p, memo, 0);
}

int lconc_decode(lua_State *L, const conc_payload_t *p) {
  return lconc_decodememo(L, p, NULL);
}

int lconc_decode_bytes(lua_State *L, const void *b, size_t len,
                       int flags) {
  return decodeall(L, b, len, NULL, NULL, flags);
}

/* }====================================================================== */
