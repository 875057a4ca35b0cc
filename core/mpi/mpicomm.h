/*
** mpicomm.h: the MPI back-end (mpicomm.c), built only into the optional
** module concurrent.futures.mpi (make mpi). One communication thread per
** process makes every MPI call (it calls MPI_Init_thread itself, so
** MPI_THREAD_FUNNELED is enough). On rank 0 it serves the executors made
** by conc_mpiexec_new; on ranks >= 1 it feeds the worker loop of
** conc_mpi_serve, which runs tasks through a runtime on the caller's
** thread. Lua-free, like the rest of core/.
*/
#ifndef CONC_MPICOMM_H
#define CONC_MPICOMM_H

#include "internal.h"

/* Start MPI on the communication thread (once per process): 0 and this
** process's rank and the number of ranks; or CONC_ESYS and '*why' (a
** static text) when MPI could not start. */
CONC__FUNC int conc_mpi_start(int *rank, int *size, const char **why);

/* What a worker rank makes of a pool's setup: 'open' builds the runtime
** of a pool from the bytes and the initializer payload its owner sent
** ('init' is taken, NULL when none): 0, or CONC_ENOMEM; 'close' releases
** what 'open' made, after the runtime's 'stop'. */
typedef struct conc_mpi_worker {
  int (*open)(const char *setup, size_t len, conc_payload_t *init,
              conc_runtime_t *rt);
  void (*close)(conc_runtime_t *rt);
} conc_mpi_worker;

/* Ranks >= 1: serve pools on this thread until rank 0 says exit, then
** finalize MPI. Returns the exit status for the process. */
CONC__FUNC int conc_mpi_serve(const conc_mpi_worker *w);

/* Rank 0: an executor over ranks 1..max_workers (at most the worker
** ranks there are), whose workers build their runtime from 'setup' and
** 'init' (taken, NULL when none) with conc_mpi_worker.open, and start a
** fresh state of it after every 'max_tasks' tasks (0: never). NULL when
** out of memory. */
CONC__FUNC conc_executor_t *conc_mpiexec_new(int max_workers, int max_tasks,
                                             const void *setup, size_t len,
                                             conc_payload_t *init);

/* Whether a pool's setup of 'len' bytes and its initializer 'init' (NULL
** when none) fit in the message that opens the pool on a rank: a pool
** whose do not could start on none. */
CONC__FUNC int conc_mpi_setupfits(size_t len, const conc_payload_t *init);

/* Rank 0 of a job of one rank (a plain `lua5.4 script.lua`): start 'n'
** processes running 'cmd' with 'argv' (MPI_Comm_spawn) that join as
** ranks 1..n. Once per process: 0 and the new number of ranks in
** '*size'; or CONC_ESYS and '*why' (static) where MPI cannot spawn. */
CONC__FUNC int conc_mpi_spawn(const char *cmd, char **argv, int n,
                              int *size, const char **why);

/* Rank 0, at the end: cancel what the pools still queue, wait for what
** runs, tell every worker rank to exit, finalize MPI. Idempotent. */
CONC__FUNC void conc_mpi_stop(void);

/* For the specs: on rank 0 the futures forwarded to ranks that some
** rank may still hold; on a worker rank its proxies of them. */
CONC__FUNC long conc_mpi_proxies(void);

#endif
