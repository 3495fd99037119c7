/* Helpers shared by the event-delivery integration tests (test_delivery, test_restart, test_crash,
 * test_many_clients, test_bad_input). They use the public header only: what they check is what a
 * C caller of libhyperdown can see.
 *
 *  - bounded waits, stretched 10x when HD_TEST_SLOW=1 (valgrind), and counts scaled down there;
 *  - a log capture shared by every handle, dumped on a failed DCHECK for the evidence;
 *  - fresh data folders (mkdtemp under /tmp) removed recursively at the end;
 *  - the original example's three keypear key pairs;
 *  - a recording client handler (du_client_t) and a recording server consumption callback
 *    (du_server_t) that count every call per (user, seq), check payloads and data, and complete
 *    at once, later (held by the test), from another thread, or with failure on demand.
 *
 * Payload convention: "user<U>#<seq>" (padded on demand); the client completes with the data
 * "ack user<U>#<seq>"; both sides check what they get against that. A test adds a user's events
 * from one thread, so the i-th add of a fresh user gets sequence number i. */
#ifndef HD_DELIVERY_UTIL_H
#define HD_DELIVERY_UTIL_H

#include <hyperdown.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DU_UNUSED __attribute__((unused))
#define DU_TOPIC "topic" /* the original example's folderName */

/* ---- time, waits, scaling ---- */

/* 1 under valgrind (run.sh sets HD_TEST_SLOW=1). */
static DU_UNUSED int du_under_valgrind(void) {
  const char *s = getenv("HD_TEST_SLOW");
  return s != NULL && s[0] == '1';
}
/* Deadlines are multiplied by this. */
static DU_UNUSED int du_slow(void) { return du_under_valgrind() ? 10 : 1; }
/* Heavy counts: `normal`, or `slow` under valgrind. */
static DU_UNUSED unsigned du_count(unsigned normal, unsigned slow) {
  return du_under_valgrind() ? slow : normal;
}

static DU_UNUSED uint64_t du_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static DU_UNUSED void du_sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Polls `cond` every millisecond until it holds or `ms` (scaled) passed; 1 if it held. */
#define DU_WAIT(cond, ms)                                                                         \
  ({                                                                                              \
    uint64_t du_dl_ = du_now_ms() + (uint64_t)(ms) * (uint64_t)du_slow();                         \
    int du_ok_ = 0;                                                                               \
    for (;;) {                                                                                    \
      if (cond) { du_ok_ = 1; break; }                                                            \
      if (du_now_ms() > du_dl_) break;                                                            \
      du_sleep_ms(1);                                                                             \
    }                                                                                             \
    du_ok_;                                                                                       \
  })

/* ---- log capture: every handle logs here; DCHECK dumps the tail when it fails ---- */

#define DU_LOG_CAP (1u << 20)
static pthread_mutex_t du_log_mu = PTHREAD_MUTEX_INITIALIZER;
static char du_log_buf[DU_LOG_CAP];
static size_t du_log_len; /* bytes ever written; the buffer is a ring */

static DU_UNUSED int du_verbose(void) { return getenv("HD_TEST_VERBOSE") != NULL; }

static DU_UNUSED void du_log_line(const char *who, const char *fmt, ...) {
  char line[1024];
  int n = snprintf(line, sizeof line, "%8" PRIu64 " %-10s ", du_now_ms() % 100000000, who);
  va_list ap;
  va_start(ap, fmt);
  n += vsnprintf(line + n, sizeof line - (size_t)n - 2, fmt, ap);
  va_end(ap);
  if (n > (int)sizeof line - 2) n = (int)sizeof line - 2;
  line[n++] = '\n';
  line[n] = '\0';
  pthread_mutex_lock(&du_log_mu);
  for (int i = 0; i < n; i++) du_log_buf[(du_log_len + (size_t)i) % DU_LOG_CAP] = line[i];
  du_log_len += (size_t)n;
  pthread_mutex_unlock(&du_log_mu);
  if (du_verbose()) fputs(line, stderr);
}

/* Every handle's user_data starts with its name: the log callback prints it. */
typedef struct du_named {
  char name[32];
} du_named_t;

static DU_UNUSED void du_log_cb(void *ud, hd_log_level_t level, const char *msg) {
  static const char *const lv[] = {"E", "W", "I", "D"};
  du_log_line(ud ? ((du_named_t *)ud)->name : "?", "[%s] %s", lv[level & 3], msg);
}

static DU_UNUSED hd_log_level_t du_log_level(void) {
  return du_verbose() ? HD_LOG_DEBUG : HD_LOG_INFO;
}

/* Prints the last `max` bytes of the captured log to stderr (the evidence of a failure). */
static DU_UNUSED void du_log_dump(size_t max) {
  pthread_mutex_lock(&du_log_mu);
  size_t len = du_log_len < DU_LOG_CAP ? du_log_len : DU_LOG_CAP;
  if (max > len) max = len;
  fprintf(stderr, "  ---- last %zu bytes of the log ----\n", max);
  for (size_t i = du_log_len - max; i < du_log_len; i++) fputc(du_log_buf[i % DU_LOG_CAP], stderr);
  fprintf(stderr, "  ---- end of log ----\n");
  pthread_mutex_unlock(&du_log_mu);
}

/* CHECK that also dumps the log tail when it fails. */
#define DCHECK(cond)                                                                              \
  do {                                                                                            \
    if (!(cond)) {                                                                                \
      du_log_dump(12000);                                                                         \
      CHECK(cond);                                                                                \
    }                                                                                             \
  } while (0)

/* ---- folders ---- */

static int du_rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *f) {
  (void)sb;
  (void)flag;
  (void)f;
  remove(p);
  return 0;
}

static DU_UNUSED void du_rmrf(const char *path) {
  if (path != NULL) nftw(path, du_rm_entry, 32, FTW_DEPTH | FTW_PHYS);
}

/* A fresh folder /tmp/hd-<tag>-XXXXXX (malloc'd path; NULL on failure). */
static DU_UNUSED char *du_mkdtemp(const char *tag) {
  char tmpl[256];
  snprintf(tmpl, sizeof tmpl, "/tmp/hd-%s-XXXXXX", tag);
  if (mkdtemp(tmpl) == NULL) return NULL;
  return strdup(tmpl);
}

/* "<parent>/<name>" (malloc'd). */
static DU_UNUSED char *du_path(const char *parent, const char *name) {
  size_t n = strlen(parent) + strlen(name) + 2;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s/%s", parent, name);
  return p;
}

/* ---- keys ---- */

/* The original example's keypear pairs: { scalar, publicKey }. 0: server, 1: online user,
 * 2: offline user. */
static const char *const du_original_keys[3][2] = {
    {"808a6e175b246bc93d4adaada45d49c031296efb36da7fdf3c5128d3eb46fd5e",
     "9b0e5bf749a3fd55ca5d08b225962bae6c0c826d9822a79e36b1871b50da82fe"},
    {"684e14316d8f379829ee5d1b883dffd2cf123f2987b8658353ae740ed8758565",
     "09f9cb2e6097bab4936696c7fb2e80c52ecc7e7a0dfe67274d93198e785c1558"},
    {"b0cf93c3f3589ea5e7a09b752e7b6492e6e331661da8fe88854d692aec59114f",
     "4cce6d17f4000b19b9f752fb7c185a56cff16d86f0cda8673e5ab6baed9e7171"},
};

static DU_UNUSED int du_original_keypair(hd_keypair_t *kp, int i) {
  uint8_t scalar[32], pk[32];
  if (hd_hex_decode(scalar, 32, du_original_keys[i][0]) != 0) return -1;
  if (hd_hex_decode(pk, 32, du_original_keys[i][1]) != 0) return -1;
  return hd_keypair_from_scalar(kp, scalar, pk);
}

/* ---- payloads ---- */

/* "user<U>#<seq>", then `pad` bytes of a pattern (total returned; buf must hold it). */
static DU_UNUSED size_t du_payload(uint8_t *buf, size_t cap, int user, uint64_t seq, size_t pad) {
  int n = snprintf((char *)buf, cap, "user%d#%" PRIu64, user, seq);
  size_t len = (size_t)n;
  for (size_t i = 0; i < pad && len < cap; i++) buf[len++] = (uint8_t)('a' + (seq + i) % 26);
  return len;
}

static DU_UNUSED int du_payload_ok(const uint8_t *p, size_t n, int user, uint64_t seq) {
  uint8_t want[64];
  size_t wl = du_payload(want, sizeof want, user, seq, 0);
  if (n < wl || memcmp(p, want, wl) != 0) return 0;
  if (n > wl && p[wl] >= '0' && p[wl] <= '9') return 0; /* "user1#12" is not "user1#1" */
  for (size_t i = wl; i < n; i++) {
    if (p[i] != (uint8_t)('a' + (seq + (i - wl)) % 26)) return 0;
  }
  return 1;
}

static DU_UNUSED size_t du_ack(char *buf, size_t cap, int user, uint64_t seq) {
  return (size_t)snprintf(buf, cap, "ack user%d#%" PRIu64, user, seq);
}

/* Adds `n` events for `user` (payloads du_payload(tag, first..)) and waits for each; returns 0 or
 * the first error. `first` is the seq the first one must get (0: do not check). */
static DU_UNUSED int du_add_events(hd_server_t *s, const uint8_t user[32], int tag,
                                   uint64_t first, int n, size_t pad) {
  uint8_t buf[4096];
  for (int i = 0; i < n; i++) {
    uint64_t want = first ? first + (uint64_t)i : 0, got = 0;
    size_t len = du_payload(buf, sizeof buf, tag, want ? want : (uint64_t)i + 1, pad);
    int rc = hd_server_add_event_wait(s, user, buf, len, &got);
    if (rc != 0) return rc;
    if (want && got != want) {
      fprintf(stderr, "  add for user%d got seq %" PRIu64 ", wanted %" PRIu64 "\n", tag, got, want);
      return HD_ESTATE;
    }
  }
  return 0;
}

/* ---- the recording client ---- */

enum {
  DU_OK = 0,     /* complete ok inside the handler */
  DU_HOLD = 1,   /* keep the event; the test completes it (du_client_release) */
  DU_THREAD = 2, /* a worker thread completes it ok a moment later */
};

#define DU_MAX_HELD 64
#define DU_QCAP 4096

typedef struct du_client {
  char name[32];            /* first: the log callback prints it */
  int tag;                  /* the user number in payloads */
  hd_keypair_t kp;
  uint8_t server_pk[32];
  char addr[64];
  char *dir;                /* data_dir (owned) */
  hd_client_t *h;           /* the open handle or NULL */
  uint32_t window;          /* option passed through (0 = default) */
  /* a payload checker other than du_payload_ok (returns 1 if good) */
  int (*check)(int tag, uint64_t seq, const uint8_t *p, size_t n);

  pthread_mutex_t mu;
  pthread_cond_t cv;
  int mode;
  uint64_t fail_seq;        /* the first `fail_times` calls for this seq complete with failure */
  int fail_times, failed_so_far;
  uint64_t cap;             /* seqs 1..cap-1 are recorded */
  int *calls;               /* handler calls per seq */
  int *oks;                 /* ok completions per seq */
  uint64_t last_call, last_ok;
  long total_calls, total_ok, total_failed;
  int order_errors;         /* a call for a lower seq than the previous call */
  int payload_errors;       /* wrong payload for the seq (or another user's event) */
  int rehandled;            /* a call for a seq already completed ok */
  int out_of_range;
  int complete_errors;      /* hd_event_complete returned an error */
  char first_error[256];    /* the first error seen, as evidence */
  hd_event_t *held[DU_MAX_HELD];
  uint64_t held_seq[DU_MAX_HELD];
  int nheld;
  /* DU_THREAD */
  pthread_t worker;
  int worker_on, worker_stop;
  hd_event_t *q[DU_QCAP];
  uint64_t q_seq[DU_QCAP];
  size_t q_head, q_len;

  atomic_int connected, disconnected;
  atomic_int last_status;
} du_client_t;

static DU_UNUSED void du_client_note(du_client_t *c, const char *fmt, ...) {
  if (c->first_error[0]) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->first_error, sizeof c->first_error, fmt, ap);
  va_end(ap);
  du_log_line(c->name, "TEST: %s", c->first_error);
}

/* Records and completes (called without c->mu held). */
static DU_UNUSED void du_client_finish(du_client_t *c, hd_event_t *ev, uint64_t seq, int ok) {
  char data[64];
  size_t dl = du_ack(data, sizeof data, c->tag, seq);
  pthread_mutex_lock(&c->mu);
  if (ok) {
    if (seq < c->cap) c->oks[seq]++;
    c->total_ok++;
    c->last_ok = seq;
  } else {
    c->total_failed++;
  }
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
  int rc = hd_event_complete(ev, ok, ok ? data : NULL, ok ? dl : 0);
  if (rc != 0) {
    pthread_mutex_lock(&c->mu);
    c->complete_errors++;
    du_client_note(c, "hd_event_complete(seq %" PRIu64 ") returned %s", seq, hd_err_name(rc));
    pthread_mutex_unlock(&c->mu);
  }
}

static DU_UNUSED void du_on_event(void *ud, hd_event_t *ev) {
  du_client_t *c = ud;
  hd_event_info_t info;
  memset(&info, 0, sizeof info);
  int rc = hd_event_info(ev, &info);
  uint64_t seq = info.seq;
  int ok = 1;
  pthread_mutex_lock(&c->mu);
  if (rc != 0 || seq != hd_event_seq(ev)) {
    c->payload_errors++;
    du_client_note(c, "hd_event_info rc %d, seq %" PRIu64 " vs %" PRIu64, rc, seq, hd_event_seq(ev));
  }
  c->total_calls++;
  if (seq == 0 || seq >= c->cap) {
    c->out_of_range++;
    du_client_note(c, "seq %" PRIu64 " out of the recorded range", seq);
  } else {
    c->calls[seq]++;
    if (c->oks[seq] > 0) {
      c->rehandled++;
      du_client_note(c, "handler called again for seq %" PRIu64 " already completed ok", seq);
    }
  }
  if (seq < c->last_call) {
    c->order_errors++;
    du_client_note(c, "handler got seq %" PRIu64 " after seq %" PRIu64, seq, c->last_call);
  }
  c->last_call = seq;
  int good = c->check ? c->check(c->tag, seq, info.payload, info.payload_len)
                      : du_payload_ok(info.payload, info.payload_len, c->tag, seq);
  if (!good) {
    c->payload_errors++;
    du_client_note(c, "wrong payload for seq %" PRIu64 ": %.*s", seq,
                   (int)(info.payload_len < 80 ? info.payload_len : 80), (const char *)info.payload);
  }
  if (info.created_ms < 1600000000000LL) {
    c->payload_errors++;
    du_client_note(c, "created_ms %" PRId64 " for seq %" PRIu64, info.created_ms, seq);
  }
  if (seq == c->fail_seq && c->failed_so_far < c->fail_times) {
    c->failed_so_far++;
    ok = 0;
  }
  if (du_verbose()) du_log_line(c->name, "TEST: handler seq %" PRIu64 " (%s)", seq, ok ? "ok" : "fail");
  if (ok && c->mode == DU_HOLD && c->nheld < DU_MAX_HELD) {
    c->held[c->nheld] = ev;
    c->held_seq[c->nheld++] = seq;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return;
  }
  if (ok && c->mode == DU_THREAD && c->q_len < DU_QCAP) {
    size_t at = (c->q_head + c->q_len++) % DU_QCAP;
    c->q[at] = ev;
    c->q_seq[at] = seq;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return;
  }
  pthread_mutex_unlock(&c->mu);
  du_client_finish(c, ev, seq, ok);
}

static void *du_client_worker(void *arg) {
  du_client_t *c = arg;
  unsigned r = 12345;
  pthread_mutex_lock(&c->mu);
  for (;;) {
    while (c->q_len == 0 && !c->worker_stop) pthread_cond_wait(&c->cv, &c->mu);
    if (c->q_len == 0) break;
    hd_event_t *ev = c->q[c->q_head];
    uint64_t seq = c->q_seq[c->q_head];
    c->q_head = (c->q_head + 1) % DU_QCAP;
    c->q_len--;
    pthread_mutex_unlock(&c->mu);
    r = r * 1103515245u + 12345u;
    if ((r >> 16) % 4 == 0) du_sleep_ms(1); /* now and then, complete a little later */
    du_client_finish(c, ev, seq, 1);
    pthread_mutex_lock(&c->mu);
  }
  pthread_mutex_unlock(&c->mu);
  return NULL;
}

static DU_UNUSED void du_on_connected(void *ud, const uint8_t pk[32]) {
  du_client_t *c = ud;
  (void)pk;
  atomic_fetch_add(&c->connected, 1);
}

static DU_UNUSED void du_on_disconnected(void *ud, const uint8_t *pk, int status) {
  du_client_t *c = ud;
  (void)pk;
  atomic_store(&c->last_status, status);
  atomic_fetch_add(&c->disconnected, 1);
}

/* `cap`: the highest seq recorded + 1. `dir`: taken over (freed by du_client_free). */
static DU_UNUSED void du_client_init(du_client_t *c, const char *name, int tag,
                                     const hd_keypair_t *kp, const uint8_t server_pk[32],
                                     char *dir, uint64_t cap) {
  memset(c, 0, sizeof *c);
  snprintf(c->name, sizeof c->name, "%s", name);
  c->tag = tag;
  c->kp = *kp;
  memcpy(c->server_pk, server_pk, 32);
  c->dir = dir;
  c->cap = cap;
  c->calls = calloc(cap, sizeof(int));
  c->oks = calloc(cap, sizeof(int));
  pthread_mutex_init(&c->mu, NULL);
  pthread_cond_init(&c->cv, NULL);
}

static DU_UNUSED void du_client_set_addr(du_client_t *c, int port) {
  snprintf(c->addr, sizeof c->addr, "127.0.0.1:%d", port);
}

static DU_UNUSED void du_client_fill_options(du_client_t *c, hd_client_options_t *o) {
  hd_client_options_t d = HD_CLIENT_OPTIONS_INIT;
  *o = d;
  o->keypair = &c->kp;
  o->server_public_key = c->server_pk;
  o->topic = DU_TOPIC;
  o->connect = c->addr;
  o->data_dir = c->dir;
  o->on_event = du_on_event;
  o->user_data = c;
  o->log = du_log_cb;
  o->log_level = du_log_level();
  o->on_connected = du_on_connected;
  o->on_disconnected = du_on_disconnected;
  o->reconnect_min_ms = 20;
  o->reconnect_max_ms = 200;
  o->retry_min_ms = 10;
  o->retry_max_ms = 100;
  o->window = c->window;
}

/* Creates the handle (the worker thread too in DU_THREAD mode). 0 or the create's error. */
static DU_UNUSED int du_client_start(du_client_t *c) {
  hd_client_options_t o;
  du_client_fill_options(c, &o);
  if (c->mode == DU_THREAD && !c->worker_on) {
    c->worker_stop = 0;
    if (pthread_create(&c->worker, NULL, du_client_worker, c) != 0) return HD_ENOMEM;
    c->worker_on = 1;
  }
  int rc = hd_client_create(&c->h, &o);
  if (rc != 0) {
    c->h = NULL;
    du_log_line(c->name, "TEST: hd_client_create: %s (%s)", hd_err_name(rc), hd_last_error_message());
  }
  return rc;
}

/* Completes every held event (oldest first) with `ok`. Returns how many. */
static DU_UNUSED int du_client_release(du_client_t *c, int ok) {
  int n = 0;
  for (;;) {
    pthread_mutex_lock(&c->mu);
    if (c->nheld == 0) {
      pthread_mutex_unlock(&c->mu);
      return n;
    }
    hd_event_t *ev = c->held[0];
    uint64_t seq = c->held_seq[0];
    memmove(c->held, c->held + 1, (size_t)(c->nheld - 1) * sizeof c->held[0]);
    memmove(c->held_seq, c->held_seq + 1, (size_t)(c->nheld - 1) * sizeof c->held_seq[0]);
    c->nheld--;
    pthread_mutex_unlock(&c->mu);
    du_client_finish(c, ev, seq, ok);
    n++;
  }
}

static DU_UNUSED int du_client_nheld(du_client_t *c) {
  pthread_mutex_lock(&c->mu);
  int n = c->nheld;
  pthread_mutex_unlock(&c->mu);
  return n;
}

static DU_UNUSED void du_client_stop_worker(du_client_t *c) {
  if (!c->worker_on) return;
  pthread_mutex_lock(&c->mu);
  c->worker_stop = 1;
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
  pthread_join(c->worker, NULL);
  c->worker_on = 0;
}

/* Closes the handle (if open) and waits. Events still held are then completed, which after the
 * close only frees them (docs/threading.md "Completions"): they are handed out again next time. */
static DU_UNUSED int du_client_stop(du_client_t *c) {
  du_client_stop_worker(c);
  int rc = 0;
  if (c->h) rc = hd_client_close_wait(c->h);
  c->h = NULL;
  for (;;) {
    pthread_mutex_lock(&c->mu);
    if (c->nheld == 0) {
      pthread_mutex_unlock(&c->mu);
      break;
    }
    hd_event_t *ev = c->held[--c->nheld];
    pthread_mutex_unlock(&c->mu);
    hd_event_complete(ev, 0, NULL, 0);
  }
  return rc;
}

static DU_UNUSED void du_client_free(du_client_t *c) {
  du_client_stop(c);
  free(c->calls);
  free(c->oks);
  c->calls = c->oks = NULL;
  pthread_mutex_destroy(&c->mu);
  pthread_cond_destroy(&c->cv);
  du_rmrf(c->dir);
  free(c->dir);
  c->dir = NULL;
}

/* Reads of the records under the lock. */
static DU_UNUSED int du_client_calls(du_client_t *c, uint64_t seq) {
  pthread_mutex_lock(&c->mu);
  int n = seq < c->cap ? c->calls[seq] : -1;
  pthread_mutex_unlock(&c->mu);
  return n;
}

static DU_UNUSED int du_client_oks(du_client_t *c, uint64_t seq) {
  pthread_mutex_lock(&c->mu);
  int n = seq < c->cap ? c->oks[seq] : -1;
  pthread_mutex_unlock(&c->mu);
  return n;
}

static DU_UNUSED long du_client_total_ok(du_client_t *c) {
  pthread_mutex_lock(&c->mu);
  long n = c->total_ok;
  pthread_mutex_unlock(&c->mu);
  return n;
}

static DU_UNUSED long du_client_total_calls(du_client_t *c) {
  pthread_mutex_lock(&c->mu);
  long n = c->total_calls;
  pthread_mutex_unlock(&c->mu);
  return n;
}

/* 1 if every seq in [from, to] was completed ok exactly once. */
static DU_UNUSED int du_client_all_ok_once(du_client_t *c, uint64_t from, uint64_t to) {
  int ok = 1;
  pthread_mutex_lock(&c->mu);
  for (uint64_t s = from; s <= to && s < c->cap; s++) {
    if (c->oks[s] != 1) ok = 0;
  }
  pthread_mutex_unlock(&c->mu);
  return ok;
}

/* 1 if every seq in [from, to] was completed ok at least once. */
static DU_UNUSED int du_client_all_ok(du_client_t *c, uint64_t from, uint64_t to) {
  int ok = 1;
  pthread_mutex_lock(&c->mu);
  for (uint64_t s = from; s <= to && s < c->cap; s++) {
    if (c->oks[s] < 1) ok = 0;
  }
  pthread_mutex_unlock(&c->mu);
  return ok;
}

/* 0 errors of any kind recorded (prints the first one otherwise). */
static DU_UNUSED int du_client_clean(du_client_t *c) {
  pthread_mutex_lock(&c->mu);
  int bad = c->order_errors + c->payload_errors + c->rehandled + c->out_of_range + c->complete_errors;
  if (bad) {
    fprintf(stderr, "  %s: order %d, payload %d, rehandled %d, out of range %d, complete errors %d; first: %s\n",
            c->name, c->order_errors, c->payload_errors, c->rehandled, c->out_of_range,
            c->complete_errors, c->first_error);
  }
  pthread_mutex_unlock(&c->mu);
  return bad == 0;
}

static DU_UNUSED int du_client_stats(du_client_t *c, hd_client_stats_t *st) {
  memset(st, 0, sizeof *st);
  st->version = HD_CLIENT_STATS_VERSION;
  if (c->h == NULL) return HD_ECLOSED;
  return hd_client_stats(c->h, st);
}

/* 1 when the client's store holds nothing: no unhandled, no consumed-unconfirmed event. */
static DU_UNUSED int du_client_store_empty(du_client_t *c) {
  hd_client_stats_t st;
  return du_client_stats(c, &st) == 0 && st.unhandled == 0 && st.consumed == 0;
}

static DU_UNUSED int du_client_is_connected(du_client_t *c) {
  hd_client_stats_t st;
  return du_client_stats(c, &st) == 0 && st.connected == 1;
}

/* ---- the recording server ---- */

enum {
  DU_SRV_OK = 0,        /* complete every event ok inside on_consumed, one by one */
  DU_SRV_HOLD = 1,      /* keep the batches; the test completes them (du_server_release) */
  DU_SRV_FAIL_ONCE = 2, /* the first report of (fail_tag, fail_seq) completes with failure */
};

#define DU_MAX_USERS 8
#define DU_MAX_BATCHES 256

typedef struct du_server {
  char name[32];
  hd_keypair_t kp;
  char *dir;                /* data_dir (owned) */
  int port;                 /* 0 until the first start; restarts reuse it */
  hd_server_t *h;
  int sync_normal;
  int (*check)(int tag, uint64_t seq, const uint8_t *p, size_t n);

  pthread_mutex_t mu;
  int mode;
  int fail_tag;
  uint64_t fail_seq;
  int fail_done;
  int nusers;
  uint8_t keys[DU_MAX_USERS][32];
  int tags[DU_MAX_USERS];
  uint64_t cap;
  int *calls[DU_MAX_USERS]; /* on_consumed reports per (user, seq) */
  int *oks[DU_MAX_USERS];   /* completed ok per (user, seq) */
  long total_calls, batches;
  int unknown_user, data_errors, payload_errors, after_ok, order_errors, complete_errors;
  char first_error[256];
  hd_consumed_t *held[DU_MAX_BATCHES];
  int held_user[DU_MAX_BATCHES];
  int nheld;
  atomic_int peers_connected, peers_disconnected;
} du_server_t;

static DU_UNUSED void du_server_note(du_server_t *s, const char *fmt, ...) {
  if (s->first_error[0]) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->first_error, sizeof s->first_error, fmt, ap);
  va_end(ap);
  du_log_line(s->name, "TEST: %s", s->first_error);
}

static int du_server_user(du_server_t *s, const uint8_t key[32]) {
  for (int i = 0; i < s->nusers; i++) {
    if (memcmp(s->keys[i], key, 32) == 0) return i;
  }
  return -1;
}

/* Records ok completions of a batch's events (under s->mu), then completes them one by one. */
static void du_server_complete_batch(du_server_t *s, int u, hd_consumed_t *b, int ok_all,
                                     uint64_t fail_seq) {
  size_t n = hd_consumed_count(b);
  int *oks = malloc((n ? n : 1) * sizeof(int));
  pthread_mutex_lock(&s->mu);
  for (size_t i = 0; i < n; i++) {
    hd_event_info_t info;
    int ok = ok_all;
    if (hd_consumed_event(b, i, &info) == 0) {
      if (info.seq == fail_seq && fail_seq != 0) ok = 0;
      if (ok && u >= 0 && info.seq < s->cap) s->oks[u][info.seq]++;
    }
    if (oks) oks[i] = ok;
  }
  pthread_mutex_unlock(&s->mu);
  for (size_t i = 0; i < n; i++) {
    int rc = hd_consumed_complete(b, i, oks ? oks[i] : ok_all);
    if (rc != 0) {
      pthread_mutex_lock(&s->mu);
      s->complete_errors++;
      du_server_note(s, "hd_consumed_complete(%zu/%zu) returned %s", i, n, hd_err_name(rc));
      pthread_mutex_unlock(&s->mu);
    }
  }
  free(oks);
}

static DU_UNUSED void du_on_consumed(void *ud, const uint8_t user[32], hd_consumed_t *b) {
  du_server_t *s = ud;
  size_t n = hd_consumed_count(b);
  uint64_t fail_seq = 0;
  pthread_mutex_lock(&s->mu);
  int u = du_server_user(s, user);
  s->batches++;
  if (u < 0) {
    s->unknown_user++;
    du_server_note(s, "on_consumed for an unknown user");
  }
  int tag = u >= 0 ? s->tags[u] : -1;
  uint64_t prev = 0;
  for (size_t i = 0; i < n; i++) {
    hd_event_info_t info;
    if (hd_consumed_event(b, i, &info) != 0) {
      s->data_errors++;
      du_server_note(s, "hd_consumed_event(%zu of %zu) failed", i, n);
      continue;
    }
    s->total_calls++;
    if (du_verbose()) du_log_line(s->name, "TEST: on_consumed user%d seq %" PRIu64, tag, info.seq);
    if (info.seq <= prev) {
      s->order_errors++;
      du_server_note(s, "batch not in order: %" PRIu64 " after %" PRIu64, info.seq, prev);
    }
    prev = info.seq;
    if (u >= 0 && info.seq > 0 && info.seq < s->cap) {
      s->calls[u][info.seq]++;
      if (s->oks[u][info.seq] > 0) {
        s->after_ok++;
        du_server_note(s, "on_consumed again for user%d seq %" PRIu64 " after it was completed ok",
                       tag, info.seq);
      }
    }
    char want[64];
    size_t wl = du_ack(want, sizeof want, tag, info.seq);
    if (info.data_len != wl || memcmp(info.data, want, wl) != 0) {
      s->data_errors++;
      du_server_note(s, "user%d seq %" PRIu64 ": client data '%.*s', wanted '%s'", tag, info.seq,
                     (int)(info.data_len < 60 ? info.data_len : 60),
                     info.data ? (const char *)info.data : "", want);
    }
    int good = s->check ? s->check(tag, info.seq, info.payload, info.payload_len)
                        : du_payload_ok(info.payload, info.payload_len, tag, info.seq);
    if (!good) {
      s->payload_errors++;
      du_server_note(s, "user%d seq %" PRIu64 ": wrong payload in the consumed batch", tag, info.seq);
    }
    if (s->mode == DU_SRV_FAIL_ONCE && !s->fail_done && tag == s->fail_tag &&
        info.seq == s->fail_seq) {
      s->fail_done = 1;
      fail_seq = info.seq;
    }
  }
  if (s->mode == DU_SRV_HOLD && s->nheld < DU_MAX_BATCHES) {
    s->held_user[s->nheld] = u;
    s->held[s->nheld++] = b;
    pthread_mutex_unlock(&s->mu);
    return;
  }
  pthread_mutex_unlock(&s->mu);
  du_server_complete_batch(s, u, b, 1, fail_seq);
}

static DU_UNUSED void du_on_peer(void *ud, const uint8_t pk[32]) {
  (void)pk;
  atomic_fetch_add(&((du_server_t *)ud)->peers_connected, 1);
}

static DU_UNUSED void du_on_peer_gone(void *ud, const uint8_t *pk, int status) {
  (void)pk;
  (void)status;
  atomic_fetch_add(&((du_server_t *)ud)->peers_disconnected, 1);
}

static DU_UNUSED void du_server_init(du_server_t *s, const char *name, const hd_keypair_t *kp,
                                     char *dir, uint64_t cap) {
  memset(s, 0, sizeof *s);
  snprintf(s->name, sizeof s->name, "%s", name);
  s->kp = *kp;
  s->dir = dir;
  s->cap = cap;
  pthread_mutex_init(&s->mu, NULL);
}

/* Registers a user whose reports are recorded; tag = its number in payloads. */
static DU_UNUSED void du_server_add_user(du_server_t *s, const uint8_t key[32], int tag) {
  if (s->nusers >= DU_MAX_USERS) return;
  memcpy(s->keys[s->nusers], key, 32);
  s->tags[s->nusers] = tag;
  s->calls[s->nusers] = calloc(s->cap, sizeof(int));
  s->oks[s->nusers] = calloc(s->cap, sizeof(int));
  s->nusers++;
}

static DU_UNUSED void du_server_fill_options(du_server_t *s, hd_server_options_t *o, char *listen,
                                             size_t listen_size) {
  hd_server_options_t d = HD_SERVER_OPTIONS_INIT;
  *o = d;
  snprintf(listen, listen_size, "127.0.0.1:%d", s->port);
  o->keypair = &s->kp;
  o->topic = DU_TOPIC;
  o->listen = listen;
  o->data_dir = s->dir;
  o->sync_normal = s->sync_normal;
  o->on_consumed = du_on_consumed;
  o->user_data = s;
  o->log = du_log_cb;
  o->log_level = du_log_level();
  o->on_peer_connected = du_on_peer;
  o->on_peer_disconnected = du_on_peer_gone;
}

/* Creates the server: on port 0 the first time, then again on the port the OS gave it (so that
 * clients redial the same address); retries a few times if that port is briefly busy. */
static DU_UNUSED int du_server_start(du_server_t *s) {
  hd_server_options_t o;
  char listen[64];
  du_server_fill_options(s, &o, listen, sizeof listen);
  int rc = HD_EADDRINUSE;
  for (int i = 0; i < 100 && rc == HD_EADDRINUSE; i++) {
    rc = hd_server_create(&s->h, &o);
    if (rc == HD_EADDRINUSE) du_sleep_ms(20);
  }
  if (rc != 0) {
    s->h = NULL;
    du_log_line(s->name, "TEST: hd_server_create: %s (%s)", hd_err_name(rc), hd_last_error_message());
    return rc;
  }
  s->port = hd_server_port(s->h);
  return 0;
}

/* Completes every held batch with `ok`. Returns how many batches. */
static DU_UNUSED int du_server_release(du_server_t *s, int ok) {
  int n = 0;
  for (;;) {
    pthread_mutex_lock(&s->mu);
    if (s->nheld == 0) {
      pthread_mutex_unlock(&s->mu);
      return n;
    }
    hd_consumed_t *b = s->held[0];
    int u = s->held_user[0];
    memmove(s->held, s->held + 1, (size_t)(s->nheld - 1) * sizeof s->held[0]);
    memmove(s->held_user, s->held_user + 1, (size_t)(s->nheld - 1) * sizeof s->held_user[0]);
    s->nheld--;
    pthread_mutex_unlock(&s->mu);
    du_server_complete_batch(s, u, b, ok, 0);
    n++;
  }
}

static DU_UNUSED int du_server_nheld(du_server_t *s) {
  pthread_mutex_lock(&s->mu);
  int n = s->nheld;
  pthread_mutex_unlock(&s->mu);
  return n;
}

/* Closes the handle (if open) and waits. Batches still held are then completed, which after the
 * close only frees them (their events stay stored; the client reports them again). */
static DU_UNUSED int du_server_stop(du_server_t *s) {
  int rc = 0;
  if (s->h) rc = hd_server_close_wait(s->h);
  s->h = NULL;
  for (;;) {
    pthread_mutex_lock(&s->mu);
    if (s->nheld == 0) {
      pthread_mutex_unlock(&s->mu);
      break;
    }
    hd_consumed_t *b = s->held[--s->nheld];
    pthread_mutex_unlock(&s->mu);
    hd_consumed_complete_all(b, 0);
  }
  return rc;
}

static DU_UNUSED void du_server_free(du_server_t *s) {
  du_server_stop(s);
  for (int i = 0; i < s->nusers; i++) {
    free(s->calls[i]);
    free(s->oks[i]);
  }
  s->nusers = 0;
  pthread_mutex_destroy(&s->mu);
  du_rmrf(s->dir);
  free(s->dir);
  s->dir = NULL;
}

static DU_UNUSED int du_server_calls(du_server_t *s, int user_index, uint64_t seq) {
  pthread_mutex_lock(&s->mu);
  int n = (user_index < s->nusers && seq < s->cap) ? s->calls[user_index][seq] : -1;
  pthread_mutex_unlock(&s->mu);
  return n;
}

static DU_UNUSED long du_server_total_calls(du_server_t *s) {
  pthread_mutex_lock(&s->mu);
  long n = s->total_calls;
  pthread_mutex_unlock(&s->mu);
  return n;
}

/* 1 if every seq in [from, to] of user `ui` was reported exactly `times` times. */
static DU_UNUSED int du_server_calls_are(du_server_t *s, int ui, uint64_t from, uint64_t to,
                                         int times) {
  int ok = 1;
  pthread_mutex_lock(&s->mu);
  for (uint64_t q = from; q <= to && q < s->cap; q++) {
    if (s->calls[ui][q] != times) ok = 0;
  }
  pthread_mutex_unlock(&s->mu);
  return ok;
}

static DU_UNUSED int du_server_clean(du_server_t *s) {
  pthread_mutex_lock(&s->mu);
  int bad = s->unknown_user + s->data_errors + s->payload_errors + s->after_ok + s->order_errors +
            s->complete_errors;
  if (bad) {
    fprintf(stderr, "  %s: unknown user %d, data %d, payload %d, after ok %d, order %d, complete errors %d; first: %s\n",
            s->name, s->unknown_user, s->data_errors, s->payload_errors, s->after_ok,
            s->order_errors, s->complete_errors, s->first_error);
  }
  pthread_mutex_unlock(&s->mu);
  return bad == 0;
}

static DU_UNUSED int du_server_stats(du_server_t *s, hd_server_stats_t *st) {
  memset(st, 0, sizeof *st);
  st->version = HD_SERVER_STATS_VERSION;
  if (s->h == NULL) return HD_ECLOSED;
  return hd_server_stats(s->h, st);
}

static DU_UNUSED uint64_t du_server_pending(du_server_t *s, const uint8_t user[32]) {
  uint64_t n = UINT64_MAX;
  if (s->h == NULL || hd_server_pending(s->h, user, &n) != 0) return UINT64_MAX;
  return n;
}

static DU_UNUSED uint64_t du_server_pending_total(du_server_t *s) {
  hd_server_stats_t st;
  if (du_server_stats(s, &st) != 0) return UINT64_MAX;
  return st.pending_total;
}

/* ---- processes ---- */

/* The path of this binary (under valgrind: the test binary, not valgrind). */
static DU_UNUSED int du_self_path(char *out, size_t cap) {
  ssize_t n = readlink("/proc/self/exe", out, cap - 1);
  if (n <= 0) return -1;
  out[n] = '\0';
  return 0;
}

/* Waits for `pid` up to `ms` (scaled); kills it (SIGKILL) if it is still there. Returns the
 * wait status, or -1 if it had to be killed. */
static DU_UNUSED int du_wait_child(pid_t pid, int ms) {
  int status = 0;
  uint64_t dl = du_now_ms() + (uint64_t)ms * (uint64_t)du_slow();
  while (du_now_ms() < dl) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return -1;
    du_sleep_ms(2);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return -1;
}

/* Raises the soft RLIMIT_NOFILE to at least `want` (up to the hard limit); returns the limit. */
static DU_UNUSED long du_raise_nofile(long want) {
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

#endif
