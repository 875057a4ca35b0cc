/*
** lnames.h: naming of C functions and module tables (lnames.c), for the
** codec: what package.loaded holds crosses by name, not by copy.
*/
#ifndef LNAMES_H
#define LNAMES_H

#include "lconcurrent.h"

/* One transfer's view of the names: the first lookup of a transfer
** checks that the cached names still describe package.loaded (one pass
** over it); later lookups of the same transfer trust them. Zero it at
** the start of each transfer. */
typedef struct lconc_names {
  int checked;
} lconc_names;

/* Push the module name and the key under which the C function at 'idx'
** is found in package.loaded and return 1; or return 0, pushing
** nothing. Of several names, the standard library's wins, then the
** shortest (API.md, "Transfer"). */
LCONC_FUNC int lconc_cfuncname(lua_State *L, lconc_names *N, int idx);

/* Push the name under which package.loaded holds the table at 'idx' (a
** module table) and return 1; or return 0, pushing nothing. Same
** preference as lconc_cfuncname. */
LCONC_FUNC int lconc_modulename(lua_State *L, lconc_names *N, int idx);

/* With the string 'mod' at that stack index, push package.loaded[mod]
** and return 1; with 'userequire', a module not loaded yet is required
** first. Or return 0 and push a message saying why not. */
LCONC_FUNC int lconc_getmodule(lua_State *L, int mod, int userequire);

/* With the strings 'mod' and 'key' at those stack indices, push
** package.loaded[mod][key] and return 1 if it is a function; or return 0
** and push a message saying why not. 'userequire' as above. */
LCONC_FUNC int lconc_cfunclookup(lua_State *L, int mod, int key,
                                 int userequire);

#endif
