/*
** ctest.h: what the C test drivers (pooltest.c, queuetest.c) share: CHECK,
** and a main that runs the cases named on the command line ("all" for
** every one, "list" to name them), printing "ok <case>" after each, with
** an alarm that kills a hung case.
*/
#ifndef CTEST_H
#define CTEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(c) \
  ((c) ? (void)0 : ctest_fail(__FILE__, __LINE__, #c))

static void ctest_fail(const char *file, int line, const char *what) {
  fprintf(stderr, "%s:%d: check failed: %s\n", file, line, what);
  exit(1);
}

typedef struct ctest_case {
  const char *name;
  void (*fn)(void);
} ctest_case;

/* Run the cases of 'argv' (argv[1] is not "bench" or another command of
** the driver's own): the exit status of main. */
static int ctest_main(int argc, char **argv, const ctest_case *cases,
                      int ncases, unsigned timeout) {
  int i, k, ran = 0;
  if (strcmp(argv[1], "list") == 0) {
    for (i = 0; i < ncases; i++)
      printf("%s\n", cases[i].name);
    return 0;
  }
  alarm(timeout);  /* a hung case dies of SIGALRM */
  for (i = 0; i < ncases; i++) {
    int want = strcmp(argv[1], "all") == 0;
    for (k = 1; k < argc && !want; k++)
      want = strcmp(argv[k], cases[i].name) == 0;
    if (want) {
      cases[i].fn();
      printf("ok %s\n", cases[i].name);
      fflush(stdout);
      ran++;
    }
  }
  if (ran == 0) {
    fprintf(stderr, "%s: no such case '%s'\n", argv[0], argv[1]);
    return 2;
  }
  return 0;
}

#endif
