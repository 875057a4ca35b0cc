/*
** ltable54.h: a view of the parts of a Lua 5.4 table (ltable54.c): the
** array part for the codec's arrays of numbers (lcodec.c), which the
** encoder reads and the decoder writes into a new table; the bytes of
** the hash part, which lnames.c compares with a snapshot.
*/
#ifndef LTABLE54_H
#define LTABLE54_H

#include "lconcurrent.h"

/* One slot of the array part: Lua 5.4's TValue (lobject.h), a Value
** and its type tag. Written only as lconc_arraynew says: any other
** write would skip the collector's barrier or the table's own upkeep. */
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
** 1 after it read tables of known shapes exactly as the API does, and
** numbers it wrote into a new table read back through the API, else 0
** (another Lua, another layout), and neither lconc_arraypart nor
** lconc_arraynew must run. */
LCONC_FUNC int lconc_arraycheck(lua_State *L);

/* The slots of t[1..*n] of the table at 'idx' (valid index): how many
** its array part is known to hold (maybe fewer than it has, never
** more). Valid until Lua code runs or the state allocates: either may
** resize the table. */
LCONC_FUNC const lconc_slot *lconc_arraypart(lua_State *L, int idx,
                                            lua_Unsigned *n);

/* The array part of the table at 'idx', which the caller made with
** lua_createtable(L, narr, ...) and alone holds: '*n' slots (narr, as
** long as nothing but lua_rawseti of keys 1..narr touched the table),
** empty until written. Only numbers may be written into them: a tag
** LCONC_VNUMINT or LCONC_VNUMFLT and its value. Sound because numbers
** are not collectable (no write barrier is owed, whatever colour the
** collector gave the table), the table's size, border hint ('alimit')
** and flags (absent metamethods, by string key) do not depend on what
** an array slot holds, and no one else can read or resize the table
** meanwhile. Valid until the state allocates (a collector step may run
** a finalizer): read it again after any call that may. */
LCONC_FUNC lconc_slot *lconc_arraynew(lua_State *L, int idx,
                                      lua_Unsigned *n);

/* Whether this process's Lua lays out the hash part as ltable54.c reads
** it: 1 after the nodes of tables of known contents read exactly as the
** API reads them, before and after changes and a rehash, else 0, and
** lconc_hashcopy and lconc_hashsame must not run. */
LCONC_FUNC int lconc_hashcheck(lua_State *L);

/* A copy of the hash part of the table at 'idx' (valid index): every
** key and value it holds outside its array part, with their tags, node
** by node, in the bytes that say what each node holds (the rest zeroed:
** Lua leaves some unwritten). Returns the bytes a copy takes, and makes
** one at 'copy' only if they fit in 'room'. */
LCONC_FUNC size_t lconc_hashcopy(lua_State *L, int idx, void *copy,
                                 size_t room);

/* Whether the hash part of the table at 'idx' holds what 'copy' ('len'
** bytes, made by lconc_hashcopy) does: the same pairs (values compare as
** by rawequal) as long as the objects they point to lived in between
** (an address names one object while it lives). Allocates nothing, runs
** no Lua. */
LCONC_FUNC int lconc_hashsame(lua_State *L, int idx, const void *copy,
                              size_t len);

/* Whether t[i] is within the view of the array part of the table 't'
** (its lua_topointer) and holds the object at 'p': a table or a function
** (whose lua_topointer is the object itself). Not the API's answer for
** a key past the view, which may be in the hash: the caller knows its
** table's shape. An empty slot, as the collector leaves a weak one, holds
** nothing. */
LCONC_FUNC int lconc_arrayholds(const void *t, lua_Unsigned i,
                                const void *p);

/* The object t[i] holds (within the view, as lconc_arrayholds), in the
** form lconc_arrayholds compares: for a full userdata, its header, not
** its lua_topointer. NULL for an empty slot or a value that is no
** object. */
LCONC_FUNC const void *lconc_arrayobj(const void *t, lua_Unsigned i);

/* Where the full userdata at 'idx', made with one user value, keeps it,
** when it is found there holding the table at the top (as the API reads
** that user value); else NULL. Valid while the userdata lives. */
LCONC_FUNC const void *lconc_uvplace(lua_State *L, int idx);

/* Whether the table that the place 'uv' (lconc_uvplace's) holds now
** holds the object at 'p' at [i], as lconc_arrayholds; 0 when it holds
** no table. The user value is read anew: whatever it holds now lives
** (the userdata holds it), even after debug.setuservalue. */
LCONC_FUNC int lconc_uvholds(const void *uv, lua_Unsigned i, const void *p);

#endif
