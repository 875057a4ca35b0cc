/*
** ltable54.c: reads the array part of a Lua 5.4 table, and writes the
** numbers of a new one, through Lua's own layout; gives the bytes of
** its hash part. Each is checked against the API before its first use
** in a state.
*/
#include <string.h>

#include "ltable54.h"

/*
** One node of the hash part: Lua 5.4's Node (lobject.h, union Node's
** NodeKey, the same in 5.4.0 to 5.4.7): the value and its tag, the
** key's tag, the chain link, the key's value. The unions have Value's
** size and alignment (its other members are no larger), so the node
** has Lua's size: 24 bytes on a 64-bit build, two of them padding.
*/
typedef struct Node54 {
  union { void *p; lua_Integer i; lua_Number n; } v;
  unsigned char tt;
  unsigned char keytt;
  int next;
  union { void *p; lua_Integer i; lua_Number n; } key;
} Node54;

/*
** The head of Lua 5.4's 'Table' (lobject.h, the same in 5.4.0 to 5.4.7;
** 5.5 lays the array out otherwise, which the checks below refuse).
** lua_topointer returns the Table itself. Keys 1..alimit live in
** t->array[0..alimit-1]: luaH_getint looks them up there and nowhere
** else. 'alimit' may be below the array's real size (luaH_getn lowers
** it to a border found, as a hint, when the real size is a power of 2),
** never above it, so the view may stop short, never run past. Every
** other key lives in t->node[0 .. 2^lsizenode - 1] (an empty table's
** 'node' is Lua's static dummy node, one empty node).
*/
typedef struct Table54 {
  void *next;                     /* CommonHeader */
  unsigned char tt, marked;
  unsigned char flags, lsizenode;
  unsigned int alimit;
  lconc_slot *array;
  Node54 *node;
} Table54;

#define VTABLE (LUA_TTABLE | (0 << 4))

const lconc_slot *lconc_arraypart(lua_State *L, int idx, lua_Unsigned *n) {
  const Table54 *t = (const Table54 *)lua_topointer(L, idx);
  *n = t->alimit;
  return t->array;
}

lconc_slot *lconc_arraynew(lua_State *L, int idx, lua_Unsigned *n) {
  const Table54 *t = (const Table54 *)lua_topointer(L, idx);
  *n = t->alimit;
  return t->array;
}

/* Lua 5.4's tag bit of a collectable value (lobject.h, BIT_ISCOLLECTABLE). */
#define COLLECTABLE (1 << 6)

const void *lconc_arrayobj(const void *t, lua_Unsigned i) {
  const Table54 *h = (const Table54 *)t;
  const lconc_slot *s;
  if (i < 1 || i > h->alimit)
    return NULL;
  s = h->array + (i - 1);
  return (s->tt & COLLECTABLE) ? s->v.p : NULL;
}

int lconc_arrayholds(const void *t, lua_Unsigned i, const void *p) {
  return p != NULL && lconc_arrayobj(t, i) == p;
}

/* Lua 5.4's UValue (lobject.h): a TValue, the size of the largest
** alignment. A full userdata's user values sit just below its memory
** (Udata's 'uv', then the bytes: udatamemoffset). */
typedef union UValue54 {
  lconc_slot uv;
  lua_Number n;
  double u;
  void *s;
  lua_Integer i;
  long l;
} UValue54;

/* A collectable table's tag */
#define VTABLEREF (VTABLE | COLLECTABLE)

const void *lconc_uvplace(lua_State *L, int idx) {
  const UValue54 *u = (const UValue54 *)lua_touserdata(L, idx) - 1;
  return u->uv.tt == VTABLEREF && u->uv.v.p == lua_topointer(L, -1)
         ? (const void *)u : NULL;
}

int lconc_uvholds(const void *uv, lua_Unsigned i, const void *p) {
  const lconc_slot *s = &((const UValue54 *)uv)->uv;
  return s->tt == VTABLEREF && lconc_arrayholds(s->v.p, i, p);
}

/* Whether slot 's' holds the value at the top, which is popped. */
static int sametop(lua_State *L, const lconc_slot *s) {
  int type = lua_type(L, -1), ok;
  if (type == LUA_TNUMBER && lua_isinteger(L, -1))
    ok = s->tt == LCONC_VNUMINT && s->v.i == lua_tointeger(L, -1);
  else if (type == LUA_TNUMBER)
    ok = s->tt == LCONC_VNUMFLT && s->v.n == lua_tonumber(L, -1);
  else  /* the rest by type: the low four bits of the tag; tables and
        ** strings also by address (lua_topointer gives the object) */
    ok = s->tt != LCONC_VNUMINT && s->tt != LCONC_VNUMFLT
         && (s->tt & 0x0f) == type
         && ((type != LUA_TTABLE && type != LUA_TSTRING)
             || s->v.p == lua_topointer(L, -1));
  lua_pop(L, 1);
  return ok;
}

/* Whether slot 's' holds what the API reads at t[i] ('t' at the top). */
static int sameslot(lua_State *L, const lconc_slot *s, lua_Integer i) {
  lua_rawgeti(L, -1, i);
  return sametop(L, s);
}

/* Whether the table at the top is a table to the layout, its view
** holds between 'lo' and 'hi' slots, and each reads as the API reads it;
** the table is popped. */
static int agrees(lua_State *L, lua_Unsigned lo, lua_Unsigned hi) {
  const Table54 *t = (const Table54 *)lua_topointer(L, -1);
  const lconc_slot *s;
  lua_Unsigned n, i;
  int ok = t->tt == VTABLE;
  if (ok) {  /* the count first: a wrong layout reads no slot */
    s = lconc_arraypart(L, -1, &n);
    ok = lo <= n && n <= hi && (n == 0 || s != NULL);
    for (i = 0; ok && i < n; i++)
      ok = sameslot(L, s + i, (lua_Integer)i + 1);
  }
  lua_pop(L, 1);
  return ok;
}

/*
** Whether numbers written through lconc_arraynew read back through the
** API: a float and an integer into the first two of three slots, then
** the border '#' must be 2, and 3 once the last is written too.
*/
static int writes(lua_State *L) {
  lconc_slot *s;
  lua_Unsigned n;
  int ok;
  lua_createtable(L, 3, 0);
  s = lconc_arraynew(L, -1, &n);
  if (n != 3) {
    lua_pop(L, 1);
    return 0;
  }
  s[0].v.n = 0.75;
  s[0].tt = LCONC_VNUMFLT;
  s[1].v.i = LUA_MININTEGER;
  s[1].tt = LCONC_VNUMINT;
  ok = lua_rawlen(L, -1) == 2;
  ok = lua_rawgeti(L, -1, 1) == LUA_TNUMBER && !lua_isinteger(L, -1)
       && lua_tonumber(L, -1) == 0.75 && ok;
  ok = lua_rawgeti(L, -2, 2) == LUA_TNUMBER && lua_isinteger(L, -1)
       && lua_tointeger(L, -1) == LUA_MININTEGER && ok;
  ok = lua_rawgeti(L, -3, 3) == LUA_TNIL && ok;
  lua_pop(L, 3);
  if (ok) {
    s[2].v.i = 3;
    s[2].tt = LCONC_VNUMINT;
    ok = lua_rawlen(L, -1) == 3;
  }
  lua_pop(L, 1);
  return ok;
}

/*
** Three shapes, some 25,000 instructions once a state: an array part
** made by size (the offset of 'alimit' and 'array', the slot size, the
** tags of both number subtypes, nil and a string); integer keys placed
** in the hash, which the view must not claim; an array part grown by
** rehashes whose length '#' then lowered 'alimit' below its real size.
** Then writes through the layout, only once the reads agreed.
*/
int lconc_arraycheck(lua_State *L) {
  int i, ok;
  if (LUA_VERSION_NUM != 504 || !lua_checkstack(L, 4))
    return 0;
  lua_createtable(L, 4, 1);
  lua_pushinteger(L, -7);
  lua_rawseti(L, -2, 1);
  lua_pushnumber(L, 0.5);
  lua_rawseti(L, -2, 2);
  lua_pushliteral(L, "s");
  lua_rawseti(L, -2, 3);
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "k");
  ok = agrees(L, 4, 4);
  lua_createtable(L, 0, 4);
  for (i = 1; i <= 3; i++) {
    lua_pushinteger(L, i);
    lua_setfield(L, -2, i == 1 ? "x" : i == 2 ? "y" : "z");
  }
  lua_pushinteger(L, 1);
  lua_rawseti(L, -2, 1);  /* in the hash's free node: no rehash */
  ok = agrees(L, 0, 0) && ok;
  lua_createtable(L, 0, 0);
  for (i = 1; i <= 5; i++) {  /* rehashed to an array part of 8 */
    lua_pushnumber(L, i + 0.25);
    lua_rawseti(L, -2, i);
  }
  ok = lua_rawlen(L, -1) == 5 && ok;
  ok = agrees(L, 5, 8) && ok;
  return ok && writes(L);
}


/* {======================================================================
** The hash part
** ======================================================================= */

/* The tag of a short string key (lobject.h: LUA_VSHRSTR, collectable). */
#define KEYSHRSTR (LUA_TSTRING | (0 << 4) | (1 << 6))

/* Node 'n' with only the bytes that say what it holds: the tags, and
** a value or key only where its tag gives it one (Lua leaves the value
** bytes of an empty slot or a boolean unwritten, and the padding);
** the rest zeroed. Equal canonical nodes hold the same pair. */
static void canonical(const Node54 *n, Node54 *c) {
  int vt = n->tt & 0x0f, kt = n->keytt & 0x0f;
  memset(c, 0, sizeof(*c));
  c->tt = n->tt;
  c->keytt = n->keytt;
  if (vt != LUA_TNIL && vt != LUA_TBOOLEAN)
    memcpy(&c->v, &n->v, sizeof(c->v));
  if (kt != LUA_TNIL && kt != LUA_TBOOLEAN)
    memcpy(&c->key, &n->key, sizeof(c->key));
}

size_t lconc_hashcopy(lua_State *L, int idx, void *copy, size_t room) {
  const Table54 *t = (const Table54 *)lua_topointer(L, idx);
  size_t i, size = (size_t)1 << t->lsizenode;
  if (size * sizeof(Node54) <= room)
    for (i = 0; i < size; i++)
      canonical(&t->node[i], (Node54 *)copy + i);
  return size * sizeof(Node54);
}

int lconc_hashsame(lua_State *L, int idx, const void *copy, size_t len) {
  const Table54 *t = (const Table54 *)lua_topointer(L, idx);
  size_t i, size = (size_t)1 << t->lsizenode;
  Node54 c;
  if (len != size * sizeof(Node54))
    return 0;
  for (i = 0; i < size; i++) {
    canonical(&t->node[i], &c);
    if (memcmp(&c, (const Node54 *)copy + i, sizeof(c)) != 0)
      return 0;
  }
  return 1;
}

/* The stack index of the string among 'nk' at 'k', 'k' + 1... whose
** object is at 'p', or 0. */
static int keyat(lua_State *L, const void *p, int k, int nk) {
  int i;
  for (i = k; i < k + nk; i++)
    if (lua_topointer(L, i) == p)
      return i;
  return 0;
}

/* Whether the table at the top has a hash part of 'size' nodes that
** read as the API reads the table: 'used' of them hold one of the 'nk'
** strings at 'k'... as key and rawget's value for it, the others an
** empty value. */
static int hashagrees(lua_State *L, int k, int nk, unsigned size,
                      int used) {
  const Table54 *t = (const Table54 *)lua_topointer(L, -1);
  unsigned i;
  int ok = t->tt == VTABLE && t->lsizenode < 8
           && (1u << t->lsizenode) == size;
  for (i = 0; ok && i < size; i++) {
    const Node54 *n = &t->node[i];
    lconc_slot v;
    int key;
    if ((n->tt & 0x0f) == LUA_TNIL)  /* an empty value: no pair */
      continue;
    key = n->keytt == KEYSHRSTR ? keyat(L, n->key.p, k, nk) : 0;
    ok = key != 0 && used-- > 0;
    if (ok) {  /* the node's value and tag, as the slot's first bytes */
      memcpy(&v.v, &n->v, sizeof(v.v));
      v.tt = n->tt;
      lua_pushvalue(L, key);
      lua_rawget(L, -2);
      ok = sametop(L, &v);
    }
  }
  return ok && used == 0;
}

/* t[k] = the value at the top (popped), the table just below it. */
static void setkey(lua_State *L, int k) {
  lua_pushvalue(L, k);
  lua_insert(L, -2);
  lua_rawset(L, -3);
}

/*
** An empty table shows the dummy node. A table made with room for four
** pairs gets three (a table, an integer, a float: four nodes, three
** used), loses one (its node's value reads empty), gets one more (in a
** node of the same array), then two more, which fill the array and
** rehash the table to eight nodes, in a new array. Each step's nodes
** must read as the API reads the table. Some 12,000 instructions once
** a state.
*/
int lconc_hashcheck(lua_State *L) {
  static const char *const keys[] = { "a", "b", "c", "d", "e", "f" };
  int k, i, ok;
  if (LUA_VERSION_NUM != 504 || !lua_checkstack(L, 12))
    return 0;
  k = lua_gettop(L) + 1;
  for (i = 0; i < 6; i++)
    lua_pushstring(L, keys[i]);
  lua_createtable(L, 0, 0);
  ok = hashagrees(L, k, 6, 1, 0);
  lua_pop(L, 1);
  lua_createtable(L, 0, 4);
  lua_newtable(L);
  setkey(L, k);
  lua_pushinteger(L, 42);
  setkey(L, k + 1);
  lua_pushnumber(L, 0.25);
  setkey(L, k + 2);
  ok = ok && hashagrees(L, k, 6, 4, 3);
  lua_pushnil(L);
  setkey(L, k + 1);
  ok = ok && hashagrees(L, k, 6, 4, 2);
  lua_pushvalue(L, k);
  setkey(L, k + 3);
  ok = ok && hashagrees(L, k, 6, 4, 3);
  lua_pushboolean(L, 1);
  setkey(L, k + 4);
  lua_pushinteger(L, LUA_MININTEGER);
  setkey(L, k + 5);
  ok = ok && hashagrees(L, k, 6, 8, 5);
  lua_settop(L, k - 1);
  return ok;
}

/* }====================================================================== */
