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
/* The running task, asked to stop, was stuck CONC__CHILD_GRACE seconds
** where no stop reaches (see 'ctl.raised'): the child sent its outcome
** as stopped (the runtime's 'stopped') in an F_STUCK and exits; the
** parent ends the task with it, and replaces the child. */
#define CONC__CHILD_STUCK 72

/*
** Seconds a task may stay where no stop reaches it after the runtime
** raised its stop (a running cancel, its time limit) there. The stop
** reaches Lua code through a debug hook, whose error Lua hands to an
** xpcall message handler with the hooks still off: a handler that does
** not return (or C code it calls) cannot be stopped, and its worker
** would be lost for good. Once the error is caught the hook runs again,
** and raises again, at the next Lua instruction, so a task unwinding
** normally (its pcalls, its __close handlers) leaves that state within
** microseconds, even on a loaded machine or under a sanitizer. A task
** in a foreign C call was never raised into (the hook runs only
** between Lua instructions) and is not ended however long the call
** lasts: it stops when the call returns (API.md).
*/
#define CONC__CHILD_GRACE 1.0

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
