/*
** proc.h: what the process pool's supervisor (proc.c) and its children
** (child.c) agree on besides the frames. Internal to core/.
*/
#ifndef CONC_PROC_H
#define CONC_PROC_H

#include <sys/types.h>

#include "forward.h"

/* The socket's descriptor in a child (every other one above it is
** closed; 0, 1 and 2 stay). */
#define CONC__CHILD_FD 3
/* Where the child's socket waits across fork (proc.c's movehigh). */
#define CONC__CHILD_FDFLOOR 256

/* Exit statuses of a child that gives up (the parent reports them). */
#define CONC__CHILD_ENOMEM 70   /* out of memory outside any task */
#define CONC__CHILD_EPROTO 71   /* the parent is gone or spoke nonsense */

/* A forwarded id with this bit names the future of the pool's own task
** whose id is in the low bits, so that the task, waiting on the proxy
** of its own future in the child, is told it would deadlock. Ids of
** other futures count up from 1 and never reach it; a queue's id has
** CONC__QID (frame.h), the bit above. */
#define CONC__FWD_TASK ((uint64_t)1 << 62)

/* The child's life after fork; never returns. */
CONC__FUNC void conc__child_main(int sock, const conc_runtime_t *rt,
                                 int maxtasks, pid_t parent, int id);

#endif
