/*
** tsanjmp.c: linked into the executables that run Lua under 'make tsan'
** (the spec host, embedtest), only there.
**
** Under ThreadSanitizer a Lua error must also unwind TSan's shadow call
** stack, which its longjmp interceptor does. Debian's liblua5.4 is built
** with _FORTIFY_SOURCE: it throws with glibc's __longjmp_chk, which TSan
** does not intercept. So each error raised out of instrumented code (the
** module's C functions) left their frames on that stack, fixed at 64K
** entries, and some 100,000 errors later it overran into the thread's
** own storage: the suite crashed at a garbage pc in about one TSan run
** in seven, some 540 specs in. Defined in the executable, this one takes
** glibc's place for liblua and goes through the intercepted longjmp; the
** check it drops (that the jump goes up the stack) holds for Lua's.
** (The build hides symbols by default: this one must be seen.)
*/
#include <setjmp.h>

__attribute__((visibility("default")))
void __longjmp_chk (jmp_buf env, int val);
void __longjmp_chk (jmp_buf env, int val) {
  longjmp(env, val);
}
