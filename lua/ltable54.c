/*
** ltable54.c: reads the array part of a Lua 5.4 table, and writes the
** numbers of a new one, through Lua's own layout, checked against the
** API before the first use in a state.
*/
#include "ltable54.h"

/*
** The head of Lua 5.4's 'Table' (lobject.h, the same in 5.4.0 to 5.4.7;
** 5.5 lays the array out otherwise, which the check below refuses).
** lua_topointer returns the Table itself. Keys 1..alimit live in
** t->array[0..alimit-1]: luaH_getint looks them up there and nowhere
** else. 'alimit' may be below the array's real size (luaH_getn lowers
** it to a border found, as a hint, when the real size is a power of 2),
** never above it, so the view may stop short, never run past.
*/
typedef struct Table54 {
  void *next;                     /* CommonHeader */
  unsigned char tt, marked;
  unsigned char flags, lsizenode;
  unsigned int alimit;
  lconc_slot *array;
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

int lconc_arrayholds(const void *t, lua_Unsigned i, const void *p) {
  const Table54 *h = (const Table54 *)t;
  const lconc_slot *s;
  if (i < 1 || i > h->alimit)
    return 0;
  s = h->array + (i - 1);
  return (s->tt & COLLECTABLE) && s->v.p == p;
}

/* Whether slot 's' holds what the API reads at t[i] ('t' at the top). */
static int sameslot(lua_State *L, const lconc_slot *s, lua_Integer i) {
  int type = lua_rawgeti(L, -1, i), ok;
  if (type == LUA_TNUMBER && lua_isinteger(L, -1))
    ok = s->tt == LCONC_VNUMINT && s->v.i == lua_tointeger(L, -1);
  else if (type == LUA_TNUMBER)
    ok = s->tt == LCONC_VNUMFLT && s->v.n == lua_tonumber(L, -1);
  else  /* the rest by type alone: the low four bits of the tag */
    ok = s->tt != LCONC_VNUMINT && s->tt != LCONC_VNUMFLT
         && (s->tt & 0x0f) == type;
  lua_pop(L, 1);
  return ok;
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
