/*
** lnames.c: naming of C functions and module tables. What package.loaded
** holds crosses between states as a name, which the receiver looks up.
*/
#include <dlfcn.h>
#include <string.h>

#include "lualib.h"

#include "lnames.h"
#include "ltable54.h"

/* Stack slots the functions below use at most (the codec calls them
** deep in a nested value, where only a few are guaranteed). */
#define STACKNEED 16

/*
** Registry key of the state's names, a table:
**   [1] value -> name (weak keys): a module table -> its name, a C
**       function -> {module, key, rank}
**   [2] package.loaded's table entries when [1] was made: name -> table
**   [3] how many entries [2] has
**   [4] a Snapshot of package.loaded, or false where this Lua's tables
**       cannot be read (lconc_hashcheck failed): then every transfer
**       walks package.loaded
*/
static const char NAMES = 'n';

/* The bytes of package.loaded's hash part when a walk last found [2]
** to describe it exactly. */
typedef struct Snapshot {
  size_t len;          /* bytes held; 0: none (the next check walks) */
  size_t size;         /* room in 'nodes' */
  unsigned char nodes[];
} Snapshot;

/* Lua's standard libraries (lualib.h): their names win. */
static const char *const stdlibs[] = {
  LUA_GNAME, LUA_LOADLIBNAME, LUA_COLIBNAME, LUA_TABLIBNAME, LUA_IOLIBNAME,
  LUA_OSLIBNAME, LUA_STRLIBNAME, LUA_MATHLIBNAME, LUA_UTF8LIBNAME,
  LUA_DBLIBNAME, NULL
};

static int isstdlib(const char *mod) {
  int i;
  for (i = 0; stdlibs[i] != NULL; i++)
    if (strcmp(mod, stdlibs[i]) == 0)
      return 1;
  return 0;
}

/* Is the C function at 'f' code of Lua itself? Its base library lives in
** _G, beside the user's globals, which a receiving state lacks: only a
** function whose code sits in the same object as lua_newstate (liblua or
** the interpreter) is standard there. */
static int isluacode(lua_State *L, int f) {
  Dl_info fi, li;
  void *code = (void *)lua_tocfunction(L, f);
  void *lua = (void *)lua_newstate;
  return dladdr(code, &fi) != 0 && dladdr(lua, &li) != 0 &&
         fi.dli_fbase == li.dli_fbase;
}

/* The rank of the name 'mod'.key of the C function at 'f': 0 for the
** standard library, 1 for other modules, 2 for a user's global. */
static int cfuncrank(lua_State *L, const char *mod, int f) {
  if (strcmp(mod, LUA_GNAME) == 0)
    return isluacode(L, f) ? 0 : 2;
  return isstdlib(mod) ? 0 : 1;
}

/* Does the name (r1, m1.k1) precede (r2, m2.k2)? The better rank, then
** the shorter name, then the first in byte order (so that the choice
** does not depend on the order of a table traversal). */
static int precedes(int r1, const char *m1, const char *k1,
                    int r2, const char *m2, const char *k2) {
  size_t n1 = strlen(m1) + strlen(k1), n2 = strlen(m2) + strlen(k2);
  int c;
  if (r1 != r2)
    return r1 < r2;
  if (n1 != n2)
    return n1 < n2;
  c = strcmp(m1, m2);
  return c != 0 ? c < 0 : strcmp(k1, k2) < 0;
}


/* {======================================================================
** Making the names
** ======================================================================= */

/* Offer the string at 'mod' as the name of the module table at 't'. */
static void offermodule(lua_State *L, int rev, int mod, int t) {
  const char *m = lua_tostring(L, mod);
  int r = isstdlib(m) ? 0 : 1;
  lua_pushvalue(L, t);
  if (lua_rawget(L, rev) == LUA_TSTRING) {
    const char *old = lua_tostring(L, -1);
    if (!precedes(r, m, "", isstdlib(old) ? 0 : 1, old, "")) {
      lua_pop(L, 1);
      return;
    }
  }
  lua_pop(L, 1);
  lua_pushvalue(L, t);
  lua_pushvalue(L, mod);
  lua_rawset(L, rev);
}

/* Offer mod.key (strings at 'mod' and 'key') as the name of the C
** function at 'f'. */
static void offercfunc(lua_State *L, int rev, int mod, int key, int f) {
  const char *m = lua_tostring(L, mod), *k = lua_tostring(L, key);
  int r = cfuncrank(L, m, f);
  lua_pushvalue(L, f);
  if (lua_rawget(L, rev) == LUA_TTABLE) {
    int better;
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    lua_rawgeti(L, -3, 3);
    better = precedes(r, m, k, (int)lua_tointeger(L, -1),
                      lua_tostring(L, -3), lua_tostring(L, -2));
    lua_pop(L, 4);
    if (!better)
      return;
  } else {
    lua_pop(L, 1);
  }
  lua_pushvalue(L, f);
  lua_createtable(L, 3, 0);
  lua_pushvalue(L, mod);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, key);
  lua_rawseti(L, -2, 2);
  lua_pushinteger(L, r);
  lua_rawseti(L, -2, 3);
  lua_rawset(L, rev);
}

/* Offer the names of the C functions in the module table at 't'. */
static void scanmodule(lua_State *L, int rev, int mod, int t) {
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_iscfunction(L, -1))
      offercfunc(L, rev, mod, lua_gettop(L) - 1, lua_gettop(L));
    lua_pop(L, 1);
  }
}

/* Push package.loaded (the registry's, which 'require' uses); return
** whether it is a table. */
static int pushloaded(lua_State *L) {
  return lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE) == LUA_TTABLE;
}

/* Fill the names table at 'names' anew from package.loaded. */
static void rebuild(lua_State *L, int names) {
  int rev, snap, loaded;
  lua_Integer count = 0;
  lua_createtable(L, 0, 64);
  rev = lua_gettop(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, rev);
  lua_newtable(L);
  snap = lua_gettop(L);
  if (pushloaded(L)) {
    loaded = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, loaded) != 0) {
      int mod = lua_gettop(L) - 1, t = mod + 1;
      if (lua_type(L, mod) == LUA_TSTRING && lua_istable(L, t)) {
        lua_pushvalue(L, mod);
        lua_pushvalue(L, t);
        lua_rawset(L, snap);
        count++;
        offermodule(L, rev, mod, t);
        scanmodule(L, rev, mod, t);
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  lua_pushinteger(L, count);
  lua_rawseti(L, names, 3);
  lua_rawseti(L, names, 2);
  lua_rawseti(L, names, 1);
}

/* Do the names at 'names' still describe package.loaded: the same
** tables under the same names, and no others? Neither allocates nor
** runs Lua code. */
static int uptodate(lua_State *L, int names) {
  lua_Integer count = 0;
  int ok = 1;
  lua_rawgeti(L, names, 2);
  if (pushloaded(L)) {
    lua_pushnil(L);
    while (ok && lua_next(L, -2) != 0) {
      if (lua_type(L, -2) == LUA_TSTRING && lua_istable(L, -1)) {
        count++;
        lua_pushvalue(L, -2);
        lua_rawget(L, -5);
        ok = lua_rawequal(L, -1, -2);
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
    if (!ok)
      lua_pop(L, 1);  /* the key lua_next left */
  }
  lua_pop(L, 2);
  lua_rawgeti(L, names, 3);
  ok = ok && lua_tointeger(L, -1) == count;
  lua_pop(L, 1);
  return ok;
}

/*
** Does package.loaded hold what it held at the snapshot? If so, the
** names are up to date, without a walk (some 6,500 instructions a
** transfer with the standard libraries and this module loaded; the
** compare costs some 1,000). Sound because:
** - the snapshot was taken (see 'snapshot') when a walk found [2] to
**   hold exactly the string-keyed tables of those bytes, with nothing
**   allocated nor run in between; [2] and the snapshot are replaced
**   together (the snapshot is emptied first), so while it is valid, [2]
**   keeps each key string and table of those pairs alive;
** - an address names one object while the object lives, so a table
**   with the same canonical nodes in its hash part (lconc_hashcopy:
**   tags, and the values and keys they give one; its node array, wherever it
**   is now; the same table or another one the registry holds instead)
**   holds the same pairs: each node the same key and value tags and
**   payloads, any string key with a table value the very objects [2]
**   holds. Tags decide which pairs count, so a node that does not count
**   in one does not in the other; string keys never live in the array
**   part;
** - so the walk would find the same string-keyed tables, and no others.
** Nodes that differ where the pairs do not (a dead key the collector
** marked, a rehash to the same pairs) only cost a walk.
*/
static int unchanged(lua_State *L, int names) {
  const Snapshot *s;
  int same = 0;
  lua_rawgeti(L, names, 4);
  s = (const Snapshot *)lua_touserdata(L, -1);
  if (pushloaded(L) && s != NULL && s->len != 0) {
    same = lconc_hashsame(L, -1, s->nodes, s->len);
  }
  lua_pop(L, 2);
  return same;
}

/* Push a new, empty snapshot with room for 'size' bytes. */
static Snapshot *newsnapshot(lua_State *L, size_t size) {
  Snapshot *s = (Snapshot *)lua_newuserdatauv(
      L, sizeof(Snapshot) + size, 0);
  s->len = 0;
  s->size = size;
  return s;
}

/* Take the snapshot of package.loaded, valid only if a walk right after
** the copy finds the names up to date. Its room is made first: an
** allocation may run a finalizer that changes package.loaded. */
static void snapshot(lua_State *L, int names) {
  Snapshot *s;
  size_t len = 0;
  if (pushloaded(L))
    len = lconc_hashcopy(L, -1, NULL, 0);
  lua_pop(L, 1);
  lua_rawgeti(L, names, 4);
  s = (Snapshot *)lua_touserdata(L, -1);
  if (s->size < len) {
    lua_pop(L, 1);
    s = newsnapshot(L, len);
    lua_pushvalue(L, -1);
    lua_rawseti(L, names, 4);
  }
  if (pushloaded(L)) {  /* from here on nothing allocates */
    len = lconc_hashcopy(L, -1, s->nodes, s->size);
    if (len <= s->size) {
      if (uptodate(L, names))
        s->len = len;
    }
  }
  lua_pop(L, 2);
}

/* Check the names against package.loaded by a walk (unless known to be
** 'stale'), make them anew if they are stale, and take a new snapshot.
** The old one is emptied first: it must not outlive the [2] it was
** checked against, and if the rebuild or the snapshot raises (out of
** memory), the next transfer walks again. */
static void recheck(lua_State *L, int names, int stale) {
  Snapshot *s;
  lua_rawgeti(L, names, 4);
  s = (Snapshot *)lua_touserdata(L, -1);  /* [4] keeps it alive */
  lua_pop(L, 1);
  if (s != NULL)
    s->len = 0;
  if (stale || !uptodate(L, names))
    rebuild(L, names);
  if (s != NULL)
    snapshot(L, names);
}

/* Push the state's names, checked against package.loaded once per
** transfer; return its stack index. A new names table goes into the
** registry once complete: making it allocates, which may raise. */
static int getnames(lua_State *L, lconc_names *N) {
  int names;
  luaL_checkstack(L, STACKNEED, NULL);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &NAMES) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 4, 0);
    if (lconc_hashcheck(L))
      newsnapshot(L, 0);
    else
      lua_pushboolean(L, 0);
    lua_rawseti(L, -2, 4);
    rebuild(L, lua_gettop(L));
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &NAMES);
  }
  names = lua_gettop(L);
  if (!N->checked) {
    if (!unchanged(L, names))
      recheck(L, names, 0);
    N->checked = 1;
  }
  return names;
}

/* }====================================================================== */


/* {======================================================================
** Looking names up
** ======================================================================= */

int lconc_modulename(lua_State *L, lconc_names *N, int idx) {
  int names;
  idx = lua_absindex(L, idx);
  names = getnames(L, N);
  lua_rawgeti(L, names, 1);
  lua_pushvalue(L, idx);
  if (lua_rawget(L, -2) == LUA_TSTRING) {
    lua_replace(L, names);
    lua_pop(L, 1);
    return 1;
  }
  lua_settop(L, names - 1);
  return 0;
}

/* Is package.loaded[entry[1]][entry[2]] (entry at the top) still the
** function at 'f'? If so, leave module and key pushed in place of the
** entry; if not, pop the entry. A module's fields may change without
** package.loaded changing. */
static int stillnamed(lua_State *L, int f) {
  int top = lua_gettop(L);
  int ok = 0;
  lua_rawgeti(L, top, 1);
  lua_rawgeti(L, top, 2);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_istable(L, -1)) {
    lua_pushvalue(L, top + 1);
    if (lua_rawget(L, -2) == LUA_TTABLE) {
      lua_pushvalue(L, top + 2);
      lua_rawget(L, -2);
      ok = lua_rawequal(L, -1, f);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (ok)
    lua_remove(L, top);
  else
    lua_settop(L, top - 1);
  return ok;
}

int lconc_cfuncname(lua_State *L, lconc_names *N, int idx) {
  int names, pass;
  idx = lua_absindex(L, idx);
  names = getnames(L, N);
  for (pass = 0; pass < 2; pass++) {
    lua_rawgeti(L, names, 1);
    lua_pushvalue(L, idx);
    if (lua_rawget(L, -2) == LUA_TTABLE && stillnamed(L, idx)) {
      lua_remove(L, names + 1);  /* the value -> name table */
      lua_remove(L, names);
      return 1;
    }
    lua_settop(L, names);
    if (pass == 0)  /* unknown or stale: look at what is loaded now */
      recheck(L, names, 1);
  }
  lua_pop(L, 1);
  return 0;
}

/* Push the first line of the message at the top, without a final colon
** (the rest of a 'require' error lists every path it tried). */
static const char *firstline(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  size_t n;
  if (msg == NULL)
    msg = "(error object is not a string)";
  n = strcspn(msg, "\n");
  if (n > 0 && msg[n - 1] == ':')
    n--;
  lua_pushlstring(L, msg, n);
  return lua_tostring(L, -1);
}

/* Push require(mod)'s value and return 1; or return 0 with a message
** pushed. Without a 'require' function, push nil. */
static int requiremodule(lua_State *L, int mod) {
  if (lua_getglobal(L, "require") != LUA_TFUNCTION) {
    lua_pop(L, 1);
    lua_pushnil(L);
    return 1;
  }
  lua_pushvalue(L, mod);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    const char *why = firstline(L);
    lua_pushfstring(L, "cannot require '%s': %s", lua_tostring(L, mod), why);
    lua_replace(L, -3);
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

int lconc_getmodule(lua_State *L, int mod, int userequire) {
  luaL_checkstack(L, STACKNEED, NULL);
  mod = lua_absindex(L, mod);
  if (lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE) == LUA_TTABLE) {
    lua_pushvalue(L, mod);
    lua_rawget(L, -2);
    lua_remove(L, -2);
  } else {
    lua_pop(L, 1);
    lua_pushnil(L);
  }
  if (lua_isnil(L, -1) && userequire) {
    lua_pop(L, 1);
    if (!requiremodule(L, mod))
      return 0;
  }
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushfstring(L, "module '%s' not loaded", lua_tostring(L, mod));
    return 0;
  }
  return 1;
}

int lconc_cfunclookup(lua_State *L, int mod, int key, int userequire) {
  mod = lua_absindex(L, mod);
  key = lua_absindex(L, key);
  if (!lconc_getmodule(L, mod, userequire))
    return 0;
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_pushfstring(L, "module '%s' is not a table", lua_tostring(L, mod));
    return 0;
  }
  lua_pushvalue(L, key);
  lua_rawget(L, -2);
  lua_remove(L, -2);
  if (lua_type(L, -1) != LUA_TFUNCTION) {
    lua_pop(L, 1);
    lua_pushfstring(L, "no function '%s.%s'", lua_tostring(L, mod),
                    lua_tostring(L, key));
    return 0;
  }
  return 1;
}

/* }====================================================================== */
