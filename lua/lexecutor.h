/*
** lexecutor.h: the executor classes' one Lua face (lexecutor.c) over any
** core back-end; the MPI module (lua/mpi/lmpi.c) adds its class with it.
*/
#ifndef LEXECUTOR_H
#define LEXECUTOR_H

#include "lworker.h"

/* What a constructor accepts and how it makes its back-end. */
typedef struct lconc_execkind {
  const char *mt;              /* "concurrent.<class name>" */
  const char *const *options;  /* the option names it knows */
  /* The back-end for 'o' (o->runtime runs over 'sh'), or NULL when out
  ** of memory; may raise a Lua error of its own. */
  conc_executor_t *(*make)(lua_State *L, const conc_executor_opts_t *o,
                           lconc_shared *sh);
  int defworkers;              /* times the number of processors; 0:
                               ** the back-end's own default */
  int sharedinit;              /* its workers share the initializer's
                               ** futures and queues (threads: not a
                               ** copy made by fork or sent away) */
} lconc_execkind;

/* Construct an executor of kind 'k' from the arguments at 1: the
** constructor of its class (registered with lconc_newexecclass). */
LCONC_FUNC int lconc_newexecutor(lua_State *L, const lconc_execkind *k);

/* Register the class metatable 'mt' over the methods table at the top
** (core's executor_methods). */
LCONC_FUNC void lconc_newexecclass(lua_State *L, const char *mt);

#endif
