/*
** lfuncs.h: functions across states (lfuncs.c), for the codec: Lua
** functions as cached bytecode dumps, C functions by qualified name.
*/
#ifndef LFUNCS_H
#define LFUNCS_H

#include "lconcurrent.h"

/* Push the binary dump (with debug info) of the Lua function at 'idx'
** and return it; one dump per function value, cached in a weak table. */
LCONC_FUNC const char *lconc_dumpfunc(lua_State *L, int idx, size_t *len);

/* Push a closure of the dump 'b'. Returns 1 when it is the state's
** cached closure for that dump (its upvalues are all '_ENV', so one
** closure serves every transfer), 0 when it is a fresh closure (it has
** other upvalues, which each transfer fills), or -1 with the load error
** message pushed instead. Loads binary chunks only. */
LCONC_FUNC int lconc_loadfunc(lua_State *L, const char *b, size_t n);

/* The number of upvalues of the function at 'idx', as its closure holds
** them. Loaded bytecode is not verified: its prototype may claim more,
** and lua_getupvalue/lua_setupvalue/lua_upvaluejoin past this count
** would read outside the closure, so the codec never asks past it. */
LCONC_FUNC int lconc_nupvalues(lua_State *L, int idx);

/* Push the module name and the key under which the C function at 'idx'
** is found in package.loaded and return 1; or return 0, pushing
** nothing. */
LCONC_FUNC int lconc_cfuncname(lua_State *L, int idx);

/* With the strings 'mod' and 'key' at those stack indices, push
** package.loaded[mod][key] and return 1 if it is a function; or return 0
** and push a message saying why not. With 'userequire', a module that is
** not loaded yet is required first. */
LCONC_FUNC int lconc_cfunclookup(lua_State *L, int mod, int key,
                                 int userequire);

#endif
