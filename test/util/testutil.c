/* testutil.h: waits, folders, the example keys, stats, child processes. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- time, waits, scaling ---- */

int hdt_under_valgrind(void) {
  const char *s = getenv("HD_TEST_SLOW");
  return s != NULL && s[0] == '1';
}

int hdt_slow(void) { return hdt_under_valgrind() ? 10 : 1; }

unsigned hdt_count(unsigned normal, unsigned slow) { return hdt_under_valgrind() ? slow : normal; }

int hdt_verbose(void) { return getenv("HD_TEST_VERBOSE") != NULL; }

uint64_t hdt_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void hdt_sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* ---- folders ---- */

char *hdt_mkdtemp(const char *tag) {
  char tmpl[256];
  snprintf(tmpl, sizeof tmpl, "/tmp/hd-%s-XXXXXX", tag);
  if (mkdtemp(tmpl) == NULL) return NULL;
  return strdup(tmpl);
}

char *hdt_path(const char *parent, const char *name) {
  size_t n = strlen(parent) + strlen(name) + 2;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s/%s", parent, name);
  return p;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *f) {
  (void)sb;
  (void)flag;
  (void)f;
  remove(p);
  return 0;
}

int hdt_copy_file(const char *src, const char *dst) {
  FILE *f = fopen(src, "rb");
  if (f == NULL) return -1;
  char *buf = NULL;
  size_t len = 0, cap = 0;
  int rc = 0;
  for (;;) {
    if (len == cap) {
      cap = cap ? cap * 2 : 65536;
      char *b = realloc(buf, cap);
      if (b == NULL) {
        rc = -1;
        break;
      }
      buf = b;
    }
    size_t n = fread(buf + len, 1, cap - len, f);
    if (n == 0) break;
    len += n;
  }
  if (ferror(f)) rc = -1;
  fclose(f);
  int fd = rc == 0 ? open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
  if (fd < 0 || (len != 0 && write(fd, buf, len) != (ssize_t)len)) rc = -1;
  if (fd >= 0) close(fd);
  free(buf);
  return rc;
}

void hdt_rmrf(const char *path) {
  if (path != NULL) nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS);
}

/* ---- keys ---- */

const char *const hdt_example_keys[3][2] = {
    {"808a6e175b246bc93d4adaada45d49c031296efb36da7fdf3c5128d3eb46fd5e",
     "9b0e5bf749a3fd55ca5d08b225962bae6c0c826d9822a79e36b1871b50da82fe"},
    {"684e14316d8f379829ee5d1b883dffd2cf123f2987b8658353ae740ed8758565",
     "09f9cb2e6097bab4936696c7fb2e80c52ecc7e7a0dfe67274d93198e785c1558"},
    {"b0cf93c3f3589ea5e7a09b752e7b6492e6e331661da8fe88854d692aec59114f",
     "4cce6d17f4000b19b9f752fb7c185a56cff16d86f0cda8673e5ab6baed9e7171"},
};

int hdt_example_keypair(hd_keypair_t *kp, int i) {
  uint8_t scalar[32], pk[32];
  int rc = hd_hex_decode(scalar, 32, hdt_example_keys[i][0]);
  if (rc == 0) rc = hd_hex_decode(pk, 32, hdt_example_keys[i][1]);
  if (rc == 0) rc = hd_keypair_from_scalar(kp, scalar, pk);
  return rc;
}

/* ---- stats ---- */

int hdt_server_stats(hd_server_t *s, hd_server_stats_t *st) {
  memset(st, 0, sizeof *st);
  st->version = HD_SERVER_STATS_VERSION;
  return s == NULL ? HD_ECLOSED : hd_server_stats(s, st);
}

int hdt_client_stats(hd_client_t *c, hd_client_stats_t *st) {
  memset(st, 0, sizeof *st);
  st->version = HD_CLIENT_STATS_VERSION;
  return c == NULL ? HD_ECLOSED : hd_client_stats(c, st);
}

/* ---- processes ---- */

pid_t hdt_spawn_self(const char *argv0, const char *argv1, char *const env[], int flags) {
  char self[4096];
  if (hdt_self_path(self, sizeof self) != 0) return -1;
  fflush(NULL);
  pid_t pid = fork();
  if (pid != 0) return pid;
  for (int i = 0; env != NULL && env[i] != NULL; i += 2) setenv(env[i], env[i + 1], 1);
  if (flags & HDT_CHILD_NATIVE) unsetenv("HD_TEST_SLOW");
  if ((flags & HDT_CHILD_QUIET) && !hdt_verbose()) {
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) dup2(devnull, 1);
  }
  char *argv[] = {(char *)argv0, (char *)argv1, NULL};
  execv(self, argv);
  _exit(127);
}

int hdt_wait_child(pid_t pid, int ms) {
  int status = 0;
  uint64_t dl = hdt_now_ms() + (uint64_t)ms * (uint64_t)hdt_slow();
  while (hdt_now_ms() < dl) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return -1;
    hdt_sleep_ms(2);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return -1;
}

int hdt_self_path(char *out, size_t cap) {
  ssize_t n = readlink("/proc/self/exe", out, cap - 1);
  if (n <= 0) return -1;
  out[n] = '\0';
  return 0;
}

long hdt_raise_nofile(long want) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
  if ((long)rl.rlim_cur < want) {
    rl.rlim_cur = (rlim_t)want;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_cur > rl.rlim_max) rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  return (long)rl.rlim_cur;
}
