/*
** lfuncs.c: Lua functions across states. They travel as bytecode dumps,
** cached on both sides (C functions travel by name: lnames.c).
*/
#include <stdint.h>
#include <string.h>

#include "lfuncs.h"
#include "ltable54.h"

/*
** The receiving cache holds at most this many dumps per state; past it,
** it starts over (a program that makes functions with 'load' in a loop
** must not grow a worker without bound).
*/
#if !defined(CONC_MAXFUNCCACHE)
#define CONC_MAXFUNCCACHE 1024
#endif

/* Stack slots the functions below use at most (the codec calls them
** deep in a nested value, where only a few are guaranteed). */
#define STACKNEED 16

/* Registry keys (static addresses, one per cache). */
static const char DUMPS = 'd';   /* function -> dump, weak keys */
static const char LOADS = 'l';   /* dump hash -> {dump, loader, info}, n */
static const char MAKERS = 'm';  /* n -> prefix of a maker template */
static const char HEADER = 'h';  /* the header of this state's dumps */

/*
** A dump crosses without its header: the signature, version, format and
** the build's sizes and number formats (ldump.c's dumpHeader), the same
** 31 bytes for every function of a build and a third of a small
** function's dump, which every queued task would carry. The receiver
** puts its own header back when it loads. A dump's check hashes the
** build's fields first, so bytes from a build that differs (another
** byte order, number size or Lua version) fail the check instead of
** being read as this build's bytecode.
*/
#define HEADERSIZE (15 + sizeof(lua_Integer) + sizeof(lua_Number))

/* Push the registry table at 'key', making it (with metatable mode
** 'mode', or none) on first use. */
static void getcache(lua_State *L, const void *key, const char *mode) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) == LUA_TTABLE)
    return;
  lua_pop(L, 1);
  lua_newtable(L);
  if (mode != NULL) {
    lua_createtable(L, 0, 1);
    lua_pushstring(L, mode);
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
  }
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}


/* {======================================================================
** Dumping (the sending side)
** ======================================================================= */

/* lua_dump writes into a luaL_Buffer made on the first call, as
** lstrlib.c's str_dump does (the buffer lives on the stack above the
** function being dumped). */
typedef struct Writer {
  int init;
  luaL_Buffer B;
} Writer;

static int writer(lua_State *L, const void *b, size_t n, void *ud) {
  Writer *w = (Writer *)ud;
  if (!w->init) {
    w->init = 1;
    luaL_buffinit(L, &w->B);
  }
  luaL_addlstring(&w->B, (const char *)b, n);
  return 0;
}

static uint32_t fnv(uint32_t h, const void *p, size_t n) {
  const unsigned char *b = (const unsigned char *)p;
  size_t i;
  for (i = 0; i < n; i++)
    h = (h ^ b[i]) * 16777619u;
  return h;
}

/* FNV-1a: cheap, and enough to catch a corrupted dump; the fields that
** tell builds apart go first. */
void lconc_dumpcheck(const char *b, size_t n, char out[4]) {
  const unsigned char sizes[] = {
    LUA_VERSION_NUM / 100, LUA_VERSION_NUM % 100,
    sizeof(lua_Integer), sizeof(lua_Number)
  };
  const lua_Integer i = 0x5678;      /* byte order, as ldump.c writes */
  const lua_Number x = (lua_Number)370.5;  /* float format */
  uint32_t h = fnv(2166136261u, sizes, sizeof(sizes));
  h = fnv(h, &i, sizeof(i));
  h = fnv(h, &x, sizeof(x));
  h = fnv(h, b, n);
  out[0] = (char)(h & 0xff);
  out[1] = (char)((h >> 8) & 0xff);
  out[2] = (char)((h >> 16) & 0xff);
  out[3] = (char)(h >> 24);
}

/* An entry of the sending cache: a userdata holding the shared bytes
** "<dump without header><check (4 bytes)><nups (1 byte)>", so that a
** thread pool's task names them (conc_bytes_t) instead of copying the
** dump, and other transfers copy them from there. */
static const char ENTRYMT = 'e';  /* registry key of the entries' metatable */

static int entry_gc(lua_State *L) {
  conc_bytes_t **e = (conc_bytes_t **)lua_touserdata(L, 1);
  conc_bytes_unref(*e);
  *e = NULL;
  return 0;
}

/* Push an entry holding 'n' bytes of 'b'. */
static conc_bytes_t *newentry(lua_State *L, const char *b, size_t n) {
  conc_bytes_t **e = (conc_bytes_t **)lua_newuserdatauv(L, sizeof(*e), 0);
  *e = NULL;
  lconc_setgcmeta(L, &ENTRYMT, entry_gc);
  if ((*e = conc_bytes_new(b, n)) == NULL)
    luaL_error(L, "not enough memory");
  return *e;
}

/* Is the value at the top an entry? The cache is a table the registry
** holds, where anything may have been put (debug.getregistry). */
static int isentry(lua_State *L) {
  int ok = lua_type(L, -1) == LUA_TUSERDATA && lua_getmetatable(L, -1);
  if (ok) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &ENTRYMT);
    ok = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
  }
  return ok;
}

/* The cache is keyed by the function value in a weak-keyed table, so an
** entry goes with its function: a later function at the same address
** can never see a stale dump. Debug info is kept (tracebacks, upvalue
** names, which the receiver needs to find '_ENV'); the header is not
** (see HEADERSIZE). The check and the
** upvalue count are found once with the dump: hashing every byte of it
** again, and lua_getinfo, on every transfer cost a fifth of a small
** task's submit (a Lua function has at most 255 upvalues). Pushes the
** entry of the function at 'idx'. */
static conc_bytes_t **pushentry(lua_State *L, int idx) {
  Writer w;
  const char *d;
  char check[4];
  size_t len;
  luaL_checkstack(L, STACKNEED, NULL);
  getcache(L, &DUMPS, "k");
  lua_pushvalue(L, idx);
  lua_rawget(L, -2);
  if (!isentry(L)) {
    if (lconc_closing(L)) {  /* see lconc_dumpfunc */
      lua_pop(L, 2);
      return NULL;
    }
    lua_pop(L, 1);
    lua_pushvalue(L, idx);
    w.init = 0;
    lua_dump(L, writer, &w, 0);  /* more than a header */
    d = luaL_buffaddr(&w.B) + HEADERSIZE;
    lconc_dumpcheck(d, luaL_bufflen(&w.B) - HEADERSIZE, check);
    luaL_addlstring(&w.B, check, 4);
    luaL_addchar(&w.B, (char)lconc_nupvalues(L, idx));
    luaL_pushresult(&w.B);
    lua_remove(L, -2);         /* the function copy */
    d = lua_tolstring(L, -1, &len);
    newentry(L, d + HEADERSIZE, len - HEADERSIZE);
    lua_replace(L, -2);
    lua_pushvalue(L, idx);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4);         /* cache[f] = entry */
  }
  lua_replace(L, -2);          /* over the cache */
  return (conc_bytes_t **)lua_touserdata(L, -1);
}

/* Whether 'm' holds the function at 'idx' (at address 'fn'): its
** holder's weak slots still have it and its cache entry, so it is that
** very function, not a later one at the same address (a collected
** function leaves the slot empty before its memory can be reused: the
** collector clears weak values before it frees anything), and the entry
** that 'm' points into still lives (a function outlives its entry when
** the entry is taken out of the cache, a table the registry holds). The
** slots read in place cost a tenth of the API calls; they go through
** the holder's user value each time, as the API would
** (debug.setuservalue may replace it, and the table read last is then
** no one's to keep alive). */
static int memohit(lua_State *L, const lconc_dumpmemo *m, int holder,
                   const void *fn) {
  int hit = 0, top;
  if (fn != m->fn || fn == NULL)
    return 0;
  if (m->uv != NULL)
    return lconc_uvholds(m->uv, 1, fn)
           && lconc_uvholds(m->uv, 2, m->entryobj);
  if (holder == 0)  /* (lconc_dumpmemoplain) */
    return 0;
  top = lua_gettop(L);
  if (lua_getiuservalue(L, holder, 1) == LUA_TTABLE)
    hit = lua_rawgeti(L, top + 1, 1) == LUA_TFUNCTION
          && lua_topointer(L, -1) == fn
          && lua_rawgeti(L, top + 1, 2) == LUA_TUSERDATA
          && lua_touserdata(L, -1) == (void *)m->entry;
  lua_settop(L, top);
  return hit;
}

/* (lconc_dumpmemoplain: not known yet) */
#define ENVUPS_UNKNOWN (-2)

/* Remember the function at 'idx' ('fn') and its entry (at the top) in
** 'm', both in its holder's weak slots, made on first use. The memo is
** emptied first: an error (out of memory) halfway leaves it empty, not
** half new. The slots are read in place only once such a read found
** them there. */
static void memoset(lua_State *L, lconc_dumpmemo *m, int holder, int idx,
                    const void *fn) {
  const void *t;
  conc_bytes_t **entry = (conc_bytes_t **)lua_touserdata(L, -1);
  m->fn = NULL;
  m->uv = NULL;
  m->envups = ENVUPS_UNKNOWN;
  if (lua_getiuservalue(L, holder, 1) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 2, 0);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, holder, 1);
  }
  lua_pushvalue(L, idx);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, 2);
  t = lua_topointer(L, -1);
  if (m->inplace && lconc_arrayholds(t, 1, fn)
      && (m->entryobj = lconc_arrayobj(t, 2)) != NULL)
    m->uv = lconc_uvplace(L, holder);
  lua_pop(L, 1);
  m->fn = fn;
  m->entry = entry;
}

static int checkupvalues(lua_State *L, int nups, int *env);

/* The number of upvalues of the function at 'idx' (with the dump 'e')
** when they are all '_ENV', else -1; asked once a memo, on its first
** hit (a function sent once costs nothing more), through the API:
** nothing raises, no Lua runs. Still unknown when the stack cannot
** grow (asked again next time). */
static int envupvalues(lua_State *L, int idx, const conc_bytes_t *e) {
  size_t len;
  const char *d = conc_bytes_data(e, &len);
  int nups = (unsigned char)d[len - 1], ok, env;
  if (nups == 0)
    return 0;
  if (!lua_checkstack(L, 3))
    return ENVUPS_UNKNOWN;
  lua_pushvalue(L, idx);
  ok = checkupvalues(L, nups, &env) && env;
  lua_pop(L, 1);
  return ok ? nups : -1;
}

conc_bytes_t *lconc_dumpmemoplain(lua_State *L, int idx, lconc_dumpmemo *m,
                                  int holder, int *nups) {
  conc_bytes_t *e;
  if (!memohit(L, m, holder, lua_topointer(L, idx))
      || (e = *m->entry) == NULL)  /* finalized while the state closes */
    return NULL;
  if (m->envups == ENVUPS_UNKNOWN)
    m->envups = envupvalues(L, idx, e);
  *nups = m->envups;
  return m->envups >= 0 ? e : NULL;
}

const char *lconc_dumpfunc(lua_State *L, int idx, lconc_dumpmemo *m,
                           int holder, size_t *len, int *nups,
                           conc_bytes_t **ref) {
  const void *fn = lua_topointer(L, idx);
  conc_bytes_t **entry, *e;
  const char *d;
  if (m != NULL && memohit(L, m, holder, fn))
    entry = m->entry;
  else {
    idx = lua_absindex(L, idx);
    entry = pushentry(L, idx);
    if (entry == NULL)
      return NULL;
    if (m != NULL)
      memoset(L, m, holder, idx, fn);
    lua_pop(L, 1);  /* the entry: alive as long as its function */
  }
  if ((e = *entry) == NULL)  /* finalized while the state closes */
    return NULL;
  d = conc_bytes_data(e, len);
  *len -= 5;
  *nups = (unsigned char)d[*len + 4];
  if (ref != NULL)
    *ref = e;
  return d;
}

/* }====================================================================== */


/* {======================================================================
** Loading (the receiving side)
** ======================================================================= */

/* A word-at-a-time hash of a dump: cheap next to hashing it as a Lua
** string key; a collision only costs a reload (entries are compared in
** full). */
static lua_Integer dumphash(const char *b, size_t n) {
  uint64_t h = 0x9e3779b97f4a7c15u ^ (uint64_t)n;
  uint64_t w;
  for (; n >= 8; b += 8, n -= 8) {
    memcpy(&w, b, 8);
    h = (h ^ w) * 0xff51afd7ed558ccdu;
    h ^= h >> 32;
  }
  w = 0;
  memcpy(&w, b, n);
  h = (h ^ w) * 0xc4ceb9fe1a85ec53u;
  h ^= h >> 29;
  return (lua_Integer)h;
}

/* A dump for lua_load: 'head' (a header, or NULL), then 'n' bytes. */
typedef struct Reader {
  const char *head;
  const char *b;
  size_t n;
} Reader;

static const char *reader(lua_State *L, void *ud, size_t *size) {
  Reader *r = (Reader *)ud;
  const char *head = r->head;
  (void)L;
  if (head != NULL) {
    r->head = NULL;
    *size = HEADERSIZE;
    return head;
  }
  *size = r->n;
  r->n = 0;
  return *size > 0 ? r->b : NULL;
}

/* Push this state's dump header (HEADERSIZE bytes) and return it. */
static const char *pushheader(lua_State *L) {
  Writer w;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &HEADER) == LUA_TSTRING)
    return lua_tostring(L, -1);
  lua_pop(L, 1);
  if (luaL_loadstring(L, "return") != LUA_OK)
    lua_error(L);  /* no memory */
  w.init = 0;
  lua_dump(L, writer, &w, 1);
  luaL_pushresult(&w.B);
  lua_pushlstring(L, lua_tostring(L, -1), HEADERSIZE);
  lua_replace(L, -3);
  lua_pop(L, 1);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &HEADER);
  return lua_tostring(L, -1);
}

int lconc_nupvalues(lua_State *L, int idx) {
  lua_Debug ar;
  lua_pushvalue(L, idx);
  lua_getinfo(L, ">u", &ar);
  return ar.nups;
}

/* Do the first 'nups' upvalues of the Lua function at the top exist (its
** prototype, which loaded bytecode may get wrong, agrees with its
** closure), and are they all named '_ENV' ('*env')? */
static int checkupvalues(lua_State *L, int nups, int *env) {
  const char *name;
  int i;
  *env = 1;
  for (i = 1; i <= nups; i++) {
    if ((name = lua_getupvalue(L, -1, i)) == NULL)
      return 0;
    lua_pop(L, 1);
    if (strcmp(name, "_ENV") != 0)
      *env = 0;
  }
  return 1;
}

/*
** Makers. A closure whose upvalues are not all '_ENV' carries one
** transfer's values, so every transfer needs a fresh closure, and the
** only public way to make a closure is to load (or run) bytecode. So
** the first load of such a dump also builds its maker: the compiled and
** stripped chunk "local u1,...,un return function() return u1,...,un
** end" with its one child prototype replaced by the received function,
** whose upvalue descriptors are rewritten to capture the chunk's
** registers 0..n-1. Each call of the maker then runs one CLOSURE: a
** fresh closure of the received prototype, with fresh cells, for the
** price of a call instead of a load. The dump format read here is
** Lua 5.4's (ldump.c); anything unexpected only means no maker (the dump
** is then loaded each time), since lua_load checks the result again.
*/

#define MAXMAKERUPS 200   /* locals of the template (Lua's MAXVARS) */

typedef struct Scan {
  const unsigned char *p, *end;
  int ok;
} Scan;

static void scanskip(Scan *s, size_t n) {
  if ((size_t)(s->end - s->p) < n) {
    s->ok = 0;
    s->p = s->end;
  } else {
    s->p += n;
  }
}

/* A size as ldump.c writes it: 7 bits a byte, high first, last marked. */
static size_t scansize(Scan *s) {
  size_t x = 0;
  int b;
  do {
    if (s->p >= s->end || x > (SIZE_MAX >> 8)) {
      s->ok = 0;
      return 0;
    }
    b = *s->p++;
    x = (x << 7) | (size_t)(b & 0x7f);
  } while (!(b & 0x80));
  return x;
}

static void scanstring(Scan *s) {
  size_t n = scansize(s);
  if (n > 0)
    scanskip(s, n - 1);
}

/* Skip a function's fields before its upvalue descriptors. */
static void scanhead(Scan *s) {
  size_t n, i;
  scanstring(s);                       /* source */
  scansize(s);                         /* linedefined */
  scansize(s);                         /* lastlinedefined */
  scanskip(s, 3);                      /* numparams, is_vararg, maxstack */
  n = scansize(s);                     /* code */
  if (n > SIZE_MAX / 4)
    s->ok = 0;
  scanskip(s, n * 4);
  n = scansize(s);                     /* constants */
  for (i = 0; i < n && s->ok; i++) {
    int tt = s->p < s->end ? *s->p++ : -1;
    switch (tt) {
      case 0: case 1: case 17: break;  /* nil, false, true */
      case 3: scanskip(s, sizeof(lua_Integer)); break;
      case 19: scanskip(s, sizeof(lua_Number)); break;
      case 4: case 20: scanstring(s); break;
      default: s->ok = 0;
    }
  }
}

/* Push the template for 'n' upvalues: its stripped dump up to (and with)
** its count of prototypes; its one child and 4 empty debug sizes follow
** in the dump. Returns 0, pushing nothing, if it cannot be made. */
static int pushtemplate(lua_State *L, int n) {
  luaL_Buffer b;
  Writer w;
  Scan s;
  const char *d;
  size_t len;
  int i;
  getcache(L, &MAKERS, NULL);
  if (lua_rawgeti(L, -1, n) == LUA_TSTRING) {
    lua_remove(L, -2);
    return 1;
  }
  lua_pop(L, 1);
  luaL_buffinit(L, &b);
  for (i = 1; i <= 2 * n; i++)
    lua_pushfstring(L, i == 1 ? "local u1" : i == n + 1
                    ? " return function() return u1" : ",u%d",
                    (i - 1) % n + 1), luaL_addvalue(&b);
  luaL_addstring(&b, " end");
  luaL_pushresult(&b);
  d = lua_tolstring(L, -1, &len);
  if (luaL_loadbuffer(L, d, len, "=(maker)") != LUA_OK) {
    lua_pop(L, 3);
    return 0;
  }
  w.init = 0;
  lua_dump(L, writer, &w, 1);
  luaL_pushresult(&w.B);
  d = lua_tolstring(L, -1, &len);
  s.p = (const unsigned char *)d + HEADERSIZE + 1;
  s.end = (const unsigned char *)d + len;
  s.ok = len > HEADERSIZE + 5 &&
         memcmp(d + len - 4, "\x80\x80\x80\x80", 4) == 0;
  scanhead(&s);
  scanskip(&s, 3 * scansize(&s));      /* its upvalues */
  if (!s.ok || scansize(&s) != 1 || !s.ok) {
    lua_pop(L, 4);
    return 0;
  }
  lua_pushlstring(L, d, (size_t)((const char *)s.p - d));
  lua_pushvalue(L, -1);
  lua_rawseti(L, -6, n);
  lua_replace(L, -5);
  lua_pop(L, 3);
  return 1;
}

/* Is the function at the top a maker of closures with 'nups' upvalues?
** (One call to see.) If not, pop it. */
static int checkmaker(lua_State *L, int nups) {
  int ok;
  lua_pushvalue(L, -1);
  ok = lua_pcall(L, 0, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TFUNCTION &&
       !lua_iscfunction(L, -1) && lconc_nupvalues(L, -1) == nups;
  lua_pop(L, ok ? 1 : 2);
  return ok;
}

/* Push the maker of the dump 'b' (without its header: a function with
** 'nups' upvalues, which this state loaded) and return 1; or return 0,
** pushing nothing. */
static int makemaker(lua_State *L, const char *b, size_t n, int nups) {
  luaL_Buffer buf;
  Reader r;
  Scan s;
  const char *tpl;
  const unsigned char *list;
  size_t tlen;
  int i;
  if (nups < 1 || nups > MAXMAKERUPS || n < 1 || !pushtemplate(L, nups))
    return 0;
  tpl = lua_tolstring(L, -1, &tlen);
  s.p = (const unsigned char *)b + 1;
  s.end = (const unsigned char *)b + n;
  s.ok = 1;
  scanhead(&s);
  if (scansize(&s) != (size_t)nups || !s.ok) {
    lua_pop(L, 1);
    return 0;
  }
  list = s.p;
  scanskip(&s, 3 * (size_t)nups);
  if (!s.ok) {
    lua_pop(L, 1);
    return 0;
  }
  luaL_buffinit(L, &buf);
  luaL_addlstring(&buf, tpl, tlen);
  luaL_addlstring(&buf, b + 1, (size_t)((const char *)list - (b + 1)));
  for (i = 0; i < nups; i++) {
    luaL_addchar(&buf, 1);            /* instack: the maker's register */
    luaL_addchar(&buf, (char)i);      /* idx */
    luaL_addchar(&buf, (char)list[3 * i + 2]);  /* kind, as it was */
  }
  luaL_addlstring(&buf, (const char *)s.p, (size_t)(s.end - s.p));
  luaL_addlstring(&buf, "\x80\x80\x80\x80", 4);
  luaL_pushresult(&buf);
  r.head = NULL;  /* the template's own header is there */
  r.b = lua_tolstring(L, -1, &r.n);
  if (lua_load(L, reader, &r, "=(maker)", "b") != LUA_OK) {
    lua_pop(L, 3);
    return 0;
  }
  lua_replace(L, -3);
  lua_pop(L, 1);
  return checkmaker(L, nups);
}

/* What the receiving cache keeps for a dump, its loader: LD_SHARED, a
** closure that every transfer shares (its upvalues are all '_ENV', so
** no transfer's values go into its cells); LD_MAKER, a maker of fresh
** closures (see Makers). LD_FRESH: a closure just loaded, for one use
** (no maker could be made). */
enum { LD_SHARED, LD_MAKER, LD_FRESH };

/* With the cache at the top, push its loader of the dump if it holds one
** and return its kind, with its closures' number of upvalues in
** '*nups'; else push nothing and return -1. */
static int cached(lua_State *L, lua_Integer h, const char *b, size_t n,
                  int *nups) {
  const char *d;
  size_t dn;
  lua_Integer info;
  if (lua_rawgeti(L, -1, h) != LUA_TTABLE) {
    lua_pop(L, 1);
    return -1;
  }
  lua_rawgeti(L, -1, 1);
  d = lua_tolstring(L, -1, &dn);
  if (d == NULL || dn != n || memcmp(d, b, n) != 0) {
    lua_pop(L, 2);
    return -1;
  }
  lua_pop(L, 1);
  lua_rawgeti(L, -1, 2);
  lua_rawgeti(L, -2, 3);
  info = lua_tointeger(L, -1);
  lua_pop(L, 1);
  lua_remove(L, -2);
  *nups = (int)(info >> 1);
  return (int)(info & 1);  /* LD_SHARED or LD_MAKER */
}

/* With the cache at -2 and a loader at -1, remember the loader: its
** kind and its closures' number of upvalues go into one integer. */
static void remember(lua_State *L, lua_Integer h, const char *b, size_t n,
                     int kind, int nups) {
  lua_Integer count;
  lua_getfield(L, -2, "n");
  count = lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (count >= CONC_MAXFUNCCACHE) {  /* start over */
    lua_newtable(L);
    lua_replace(L, -3);
    lua_pushvalue(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &LOADS);
    count = 0;
  }
  lua_createtable(L, 3, 0);
  lua_pushlstring(L, b, n);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, 2);
  lua_pushinteger(L, (lua_Integer)nups << 1 | kind);
  lua_rawseti(L, -2, 3);
  lua_rawseti(L, -3, h);
  lua_pushinteger(L, count + 1);
  lua_setfield(L, -3, "n");
}

/* With the cache at the top, load the dump and replace the cache with
** its loader; returns its kind, or -1 with the message instead. A
** closure whose prototype disagrees with it about its number of
** upvalues ('*nups', the closure's) is refused here, once per dump. A
** load that ran out of memory is no bad dump: its error goes on as a
** memory error (lua_error raises Lua's own message as one), as in the
** rest of a decode, so a worker at its max_memory fails the task with
** "not enough memory". */
static int loadnew(lua_State *L, lua_Integer h, const char *b, size_t n,
                   int *nups) {
  Reader r;
  int env, st;
  r.head = pushheader(L);
  r.b = b;
  r.n = n;
  if ((st = lua_load(L, reader, &r, "=(transfer)", "b")) != LUA_OK) {
    if (st == LUA_ERRMEM)
      lua_error(L);
    lua_remove(L, -2);
    lua_remove(L, -2);
    return -1;
  }
  lua_remove(L, -2);  /* the header */
  *nups = lconc_nupvalues(L, -1);
  if (!checkupvalues(L, *nups, &env)) {
    lua_pop(L, 2);
    lua_pushliteral(L, "upvalue count");
    return -1;
  }
  if (env) {
    remember(L, h, b, n, LD_SHARED, *nups);
    lua_remove(L, -2);
    return LD_SHARED;
  }
  if (!makemaker(L, b, n, *nups)) {
    lua_remove(L, -2);
    return LD_FRESH;
  }
  lua_remove(L, -2);  /* the closure: the maker makes them */
  remember(L, h, b, n, LD_MAKER, *nups);
  lua_remove(L, -2);
  return LD_MAKER;
}

/* Push the loader of the dump 'b' ('n' bytes); its kind, or -1. */
static int loader(lua_State *L, const char *b, size_t n, int *nups) {
  lua_Integer h = dumphash(b, n);
  int kind;
  luaL_checkstack(L, STACKNEED, NULL);
  getcache(L, &LOADS, NULL);
  if ((kind = cached(L, h, b, n, nups)) < 0)
    return loadnew(L, h, b, n, nups);
  lua_remove(L, -2);
  return kind;
}

/* Replace the loader at the top with the closure to use; 1 if shared. */
static int closure(lua_State *L, int kind) {
  if (kind == LD_MAKER)
    lua_call(L, 0, 1);
  return kind == LD_SHARED;
}

int lconc_loadfunc(lua_State *L, const char *b, size_t n, int *nups) {
  int kind = loader(L, b, n, nups);
  return kind < 0 ? -1 : closure(L, kind);
}

void lconc_loadmemo_init(lconc_loadmemo *m) {
  int i;
  for (i = 0; i < LCONC_LOADMEMO; i++) {
    m->slot[i].bytes = NULL;
    m->slot[i].ref = LUA_NOREF;
  }
}

void lconc_loadmemo_free(lconc_loadmemo *m) {
  int i;
  for (i = 0; i < LCONC_LOADMEMO; i++) {
    conc_bytes_unref(m->slot[i].bytes);
    m->slot[i].bytes = NULL;
  }
}

/* Keep the loader at the top (of kind 'kind') in slot 'e' for 's'. The
** slot is emptied first: an error (out of memory) halfway leaves it
** empty, not half new. */
static void memoload(lua_State *L, lconc_loadslot *e, conc_bytes_t *s,
                     int kind, int nups) {
  conc_bytes_t *old = e->bytes;
  e->bytes = NULL;
  conc_bytes_unref(old);
  lua_pushvalue(L, -1);
  if (e->ref == LUA_NOREF)
    e->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  else
    lua_rawseti(L, LUA_REGISTRYINDEX, e->ref);
  conc_bytes_ref(s);
  e->bytes = s;
  e->kind = kind;
  e->nups = nups;
}

/* A slot per shared bytes object, by its address: a task's function
** is found by one comparison and one registry read, where hashing and
** comparing its dump, with two table lookups, cost a sixth of a small
** task in a worker. The reference the slot holds keeps the address from
** naming other bytes while it is there. */
int lconc_loadshared(lua_State *L, conc_bytes_t *s, lconc_loadmemo *m,
                     int *nups) {
  lconc_loadslot *e = &m->slot[((uintptr_t)s >> 4) % LCONC_LOADMEMO];
  size_t n;
  const char *b;
  int kind;
  if (e->bytes == s) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->ref);
    *nups = e->nups;
    return closure(L, e->kind);
  }
  b = conc_bytes_data(s, &n);
  kind = loader(L, b, n - 5, nups);  /* its check and upvalue count */
  if (kind == LD_SHARED || kind == LD_MAKER)
    memoload(L, e, s, kind, *nups);
  return kind < 0 ? -1 : closure(L, kind);
}

/* }====================================================================== */
