/* What any C test program may share, through the public header only: bounded waits (stretched
 * 10x under valgrind) and heavy counts scaled down there, fresh folders under /tmp removed
 * recursively, the original example's three key pairs, stats read with their version set, and
 * child processes that are this test binary run again. Compiled once into the test helper
 * library (build/test/libtestutil.a). */
#ifndef HD_TESTUTIL_H
#define HD_TESTUTIL_H

#include <hyperdown.h>

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- time, waits, scaling ---- */

/* 1 under valgrind (run.sh sets HD_TEST_SLOW=1 there). */
int hdt_under_valgrind(void);
/* Deadlines are multiplied by this: 10 under valgrind, else 1. */
int hdt_slow(void);
/* Heavy counts: `normal`, or `slow` under valgrind. */
unsigned hdt_count(unsigned normal, unsigned slow);
/* 1 when HD_TEST_VERBOSE is set: logs go to stderr as they come. */
int hdt_verbose(void);

uint64_t hdt_now_ms(void); /* monotonic */
void hdt_sleep_ms(int ms);

/* Polls `cond` every millisecond until it holds or `ms` (scaled) passed; 1 if it held. */
#define WAIT_FOR(cond, ms)                                                                        \
  ({                                                                                              \
    uint64_t hdt_dl_ = hdt_now_ms() + (uint64_t)(ms) * (uint64_t)hdt_slow();                      \
    int hdt_ok_ = 0;                                                                              \
    for (;;) {                                                                                    \
      if (cond) { hdt_ok_ = 1; break; }                                                           \
      if (hdt_now_ms() > hdt_dl_) break;                                                          \
      hdt_sleep_ms(1);                                                                            \
    }                                                                                             \
    hdt_ok_;                                                                                      \
  })

/* ---- folders ---- */

/* A fresh folder /tmp/hd-<tag>-XXXXXX (malloc'd path; NULL on failure). */
char *hdt_mkdtemp(const char *tag);
/* "<parent>/<name>" (malloc'd). */
char *hdt_path(const char *parent, const char *name);
/* Removes `path` and everything below it (NULL: nothing). */
void hdt_rmrf(const char *path);
/* Copies the file `src` to `dst` (replacing it). 0, or -1 (also when `src` is missing). */
int hdt_copy_file(const char *src, const char *dst);

/* ---- keys ---- */

/* The original example's keypear pairs as hex: { scalar, publicKey }. 0: server, 1: online user,
 * 2: offline user. */
extern const char *const hdt_example_keys[3][2];
/* Key pair `i` of hdt_example_keys; 0 or the error of the decode or of hd_keypair_from_scalar. */
int hdt_example_keypair(hd_keypair_t *kp, int i);

/* ---- stats ---- */

/* hd_*_stats with the struct zeroed and its version set; HD_ECLOSED for a NULL handle. */
int hdt_server_stats(hd_server_t *s, hd_server_stats_t *st);
int hdt_client_stats(hd_client_t *c, hd_client_stats_t *st);

/* ---- processes ---- */

enum {
  HDT_CHILD_NATIVE = 1, /* the child runs without HD_TEST_SLOW (valgrind does not follow exec) */
  HDT_CHILD_QUIET = 2,  /* the child's stdout goes to /dev/null unless HD_TEST_VERBOSE */
};

/* Forks and execs this binary as `argv0 argv1` with the environment pairs env[0]=env[1], ...
 * (NULL-terminated) set in the child. The pid, or -1. */
pid_t hdt_spawn_self(const char *argv0, const char *argv1, char *const env[], int flags);
/* Waits for `pid` up to `ms` (scaled); kills it (SIGKILL) if it is still there. Returns the wait
 * status, or -1 if it had to be killed. */
int hdt_wait_child(pid_t pid, int ms);
/* The path of this binary (under valgrind: the test binary, not valgrind). 0 or -1. */
int hdt_self_path(char *out, size_t cap);
/* Raises the soft RLIMIT_NOFILE to at least `want` (up to the hard limit); returns the limit. */
long hdt_raise_nofile(long want);

#endif
