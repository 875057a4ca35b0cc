/*
** ltable54.h: a read-only view of the array part of a Lua 5.4 table
** (ltable54.c), for the encoder's arrays of numbers (lcodec.c).
*/
#ifndef LTABLE54_H
#define LTABLE54_H

#include "lconcurrent.h"

/* One slot of the array part: Lua 5.4's TValue (lobject.h), a Value
** and its type tag. Read only: a write would skip the collector's
** barrier. */
typedef struct lconc_slot {
  union { void *p; lua_Integer i; lua_Number n; } v;
  unsigned char tt;
} lconc_slot;

/* The tags of a slot (lobject.h, 'makevariant'); any nil variant has
** the low four bits LUA_TNIL (an empty slot is one). */
#define LCONC_VNUMINT (LUA_TNUMBER | (0 << 4))
#define LCONC_VNUMFLT (LUA_TNUMBER | (1 << 4))
#define lconc_slotisnil(s) (((s)->tt & 0x0f) == LUA_TNIL)

/* Whether this process's Lua lays tables out as ltable54.c reads them:
** 1 after it read tables of known shapes exactly as the API does, else
** 0 (another Lua, another layout), and lconc_arraypart must not run. */
LCONC_FUNC int lconc_arraycheck(lua_State *L);

/* The slots of t[1..*n] of the table at 'idx' (valid index): how many
** its array part is known to hold (maybe fewer than it has, never
** more). Valid until Lua code runs or the state allocates: either may
** resize the table. */
LCONC_FUNC const lconc_slot *lconc_arraypart(lua_State *L, int idx,
                                            lua_Unsigned *n);

#endif
