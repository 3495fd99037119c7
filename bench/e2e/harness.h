/* harness.h: what every end-to-end driver shares (Hyperdown's and the peers').
 *
 *  - a log-linear latency histogram (HdrHistogram-like: 64 sub-buckets per power of two, so a
 *    recorded value is within 1.6% of the truth), in nanoseconds;
 *  - the producer loop: closed loop (at most `inflight` events added and not yet completed) or
 *    open loop (paced at `rate` events/s; a latency then counts from the scheduled time, so a
 *    stall is not hidden: no coordinated omission), bounded by an event count AND a duration;
 *  - the exactly-once check: every event carries its id (u64 little-endian, first 8 bytes of the
 *    payload); the consumer reports each id delivered (handler) and completed (acknowledged end
 *    of the path); a duplicate, a foreign id or a missing id is counted and fails the run;
 *  - one JSON line per run appended to --out, and the latency percentile curve as CSV.
 *
 * Header-only; each driver is one .c file. C11 + pthreads. */
#ifndef HD_BENCH_HARNESS_H
#define HD_BENCH_HARNESS_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t h_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
static inline double h_now_s(void) { return (double)h_now_ns() / 1e9; }

static inline void h_sleep_until_ns(uint64_t t) {
  for (;;) {
    uint64_t n = h_now_ns();
    if (n >= t) return;
    uint64_t d = t - n;
    if (d > 200000) { /* sleep, then spin the last 0.2 ms */
      struct timespec ts = {(time_t)((d - 100000) / 1000000000ull), (long)((d - 100000) % 1000000000ull)};
      nanosleep(&ts, NULL);
    }
  }
}

/* ------------------------------------------------------------------ histogram */
#define H_SUB 64
#define H_BINS (H_SUB * 60 + 2 * H_SUB)
typedef struct h_hist {
  uint64_t n[H_BINS];
  uint64_t count, max, min;
  double sum;
} h_hist_t;

static inline int h_bin(uint64_t v) {
  if (v < 2 * H_SUB) return (int)v;
  int e = 63 - __builtin_clzll(v); /* >= 7 */
  int shift = e - 6;
  return shift * H_SUB + (int)(v >> shift);
}
static inline uint64_t h_bin_value(int i) { /* the middle of bin i */
  if (i < 2 * H_SUB) return (uint64_t)i;
  int shift = i / H_SUB - 1;
  uint64_t m = (uint64_t)(i % H_SUB + H_SUB);
  return (m << shift) + ((1ull << shift) >> 1);
}
static inline void h_record(h_hist_t *h, uint64_t v) {
  int b = h_bin(v);
  if (b >= H_BINS) b = H_BINS - 1;
  h->n[b]++;
  h->count++;
  h->sum += (double)v;
  if (v > h->max) h->max = v;
  if (h->count == 1 || v < h->min) h->min = v;
}
static inline uint64_t h_pct(const h_hist_t *h, double p) {
  if (h->count == 0) return 0;
  uint64_t want = (uint64_t)((p / 100.0) * (double)h->count + 0.5);
  if (want < 1) want = 1;
  if (want > h->count) want = h->count;
  uint64_t acc = 0;
  for (int i = 0; i < H_BINS; i++) {
    acc += h->n[i];
    if (acc >= want) {
      uint64_t v = h_bin_value(i);
      return v > h->max ? h->max : v;
    }
  }
  return h->max;
}
/* The percentile curve (HdrHistogram's "percentile distribution" shape) as CSV: pct,us */
static inline void h_write_curve(const h_hist_t *h, const char *path) {
  FILE *f = fopen(path, "w");
  if (!f) return;
  fprintf(f, "percentile,latency_us\n");
  static const double ps[] = {0,  10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 92.5, 95, 96, 97, 98,
                              99, 99.5, 99.7, 99.9, 99.95, 99.99, 99.999, 100};
  for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
    fprintf(f, "%g,%.1f\n", ps[i], (double)(ps[i] == 0 ? h->min : h_pct(h, ps[i])) / 1000.0);
  fclose(f);
}

/* ------------------------------------------------------------------ the run */
typedef struct h_cfg {
  const char *mode;      /* tput | lat | paced | drain */
  long events;           /* at most this many */
  double duration_s;     /* and at most this long (issuing) */
  long inflight;         /* closed loop: added and not yet completed */
  double rate;           /* paced: events/s */
  long payload;          /* bytes, >= 16 */
  const char *system;    /* "hyperdown", "redis", ... */
  const char *durability;/* written next to every figure */
  const char *out;       /* JSON lines */
  const char *curve_dir; /* where latency curves go (CSV) */
  double drain_timeout_s;
  int port;
  long server_pid;
  const char *extra;     /* driver-specific */
} h_cfg_t;

typedef struct h_run {
  h_cfg_t c;
  _Atomic long issued, completed, delivered;
  atomic_long dup_deliver, dup_complete, foreign;
  uint64_t *t_send;     /* per id: when it was added (or scheduled) */
  _Atomic uint8_t *seen;/* bit 0 delivered, bit 1 completed */
  h_hist_t lat_deliver, lat_complete;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  uint64_t t0, t_last_complete, t_issue_end;
  int waiting;
} h_run_t;

static inline void h_cfg_defaults(h_cfg_t *c) {
  memset(c, 0, sizeof *c);
  c->mode = "tput";
  c->events = 1000000;
  c->duration_s = 5;
  c->inflight = 1;
  c->payload = 100;
  c->system = "?";
  c->durability = "?";
  c->out = NULL;
  c->curve_dir = NULL;
  c->drain_timeout_s = 60;
  c->extra = "";
}

/* Parses the options every driver shares; returns 1 when argv[*i] was one of them. */
static inline int h_parse(h_cfg_t *c, int argc, char **argv, int *i) {
  const char *a = argv[*i];
  if (*i + 1 >= argc) return 0;
  const char *v = argv[*i + 1];
#define H_OPT(name, stmt) if (strcmp(a, name) == 0) { stmt; (*i)++; return 1; }
  H_OPT("--mode", c->mode = v)
  H_OPT("--events", c->events = atol(v))
  H_OPT("--duration", c->duration_s = atof(v))
  H_OPT("--inflight", c->inflight = atol(v))
  H_OPT("--rate", c->rate = atof(v))
  H_OPT("--payload", c->payload = atol(v))
  H_OPT("--durability", c->durability = v)
  H_OPT("--out", c->out = v)
  H_OPT("--curves", c->curve_dir = v)
  H_OPT("--drain-timeout", c->drain_timeout_s = atof(v))
  H_OPT("--port", c->port = atoi(v))
  H_OPT("--server-pid", c->server_pid = atol(v))
  H_OPT("--extra", c->extra = v)
#undef H_OPT
  return 0;
}

static inline void h_init(h_run_t *r, const h_cfg_t *c) {
  memset(r, 0, sizeof *r);
  r->c = *c;
  if (r->c.payload < 16) r->c.payload = 16;
  if (strcmp(c->mode, "lat") == 0) r->c.inflight = 1;
  r->t_send = calloc((size_t)r->c.events, sizeof(uint64_t));
  r->seen = calloc((size_t)r->c.events, 1);
  if (!r->t_send || !r->seen) {
    fprintf(stderr, "harness: out of memory\n");
    exit(1);
  }
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->cv, NULL);
}

/* The payload of event `id`: the id, then filler. */
static inline void h_fill(uint8_t *buf, long len, uint64_t id) {
  memcpy(buf, &id, 8);
  for (long i = 8; i < len; i++) buf[i] = (uint8_t)('a' + (i + (long)id) % 26);
}
static inline uint64_t h_id_of(const void *payload, size_t len) {
  uint64_t id = UINT64_MAX;
  if (len >= 8) memcpy(&id, payload, 8);
  return id;
}

/* The consumer's handler saw event `id` (any thread; one thread at a time per run). */
static inline void h_deliver(h_run_t *r, uint64_t id) {
  uint64_t now = h_now_ns();
  if (id >= (uint64_t)atomic_load(&r->issued)) {
    atomic_fetch_add(&r->foreign, 1);
    return;
  }
  uint8_t old = atomic_fetch_or(&r->seen[id], 1);
  if (old & 1) {
    atomic_fetch_add(&r->dup_deliver, 1);
    return;
  }
  atomic_fetch_add(&r->delivered, 1);
  uint64_t ts = __atomic_load_n(&r->t_send[id], __ATOMIC_ACQUIRE);
  h_record(&r->lat_deliver, now > ts ? now - ts : 0);
}

/* The end of the path for event `id`: acknowledged (any thread; one at a time per run). */
static inline void h_complete(h_run_t *r, uint64_t id) {
  uint64_t now = h_now_ns();
  if (id >= (uint64_t)atomic_load(&r->issued)) {
    atomic_fetch_add(&r->foreign, 1);
    return;
  }
  uint8_t old = atomic_fetch_or(&r->seen[id], 2);
  if (old & 2) {
    atomic_fetch_add(&r->dup_complete, 1);
    return;
  }
  uint64_t ts = __atomic_load_n(&r->t_send[id], __ATOMIC_ACQUIRE);
  h_record(&r->lat_complete, now > ts ? now - ts : 0);
  r->t_last_complete = now;
  atomic_fetch_add(&r->completed, 1);
  if (__atomic_load_n(&r->waiting, __ATOMIC_ACQUIRE)) {
    pthread_mutex_lock(&r->mu);
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
  }
}

/* Adds event `id` (payload built by the caller's buffer); returns 0 or fails the run. */
typedef int (*h_send_fn)(void *ctx, uint64_t id, const uint8_t *payload, size_t len);

/* Waits (bounded) until completed >= target; returns 0, or -1 at the deadline. */
static inline int h_wait_completed(h_run_t *r, long target, uint64_t deadline_ns) {
  while (atomic_load(&r->completed) < target) {
    if (h_now_ns() > deadline_ns) return -1;
    pthread_mutex_lock(&r->mu);
    __atomic_store_n(&r->waiting, 1, __ATOMIC_RELEASE);
    if (atomic_load(&r->completed) < target) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_nsec += 2000000;
      if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
      }
      pthread_cond_timedwait(&r->cv, &r->mu, &ts);
    }
    __atomic_store_n(&r->waiting, 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&r->mu);
  }
  return 0;
}

/* The producer: issues events (closed or open loop) until the count or the duration is reached,
 * then waits for every issued event to complete (bounded by drain_timeout). Returns 0 when all
 * completed in time. `flush` (optional) is called when the producer is about to wait. */
static inline int h_produce(h_run_t *r, h_send_fn send, void *ctx, void (*flush)(void *)) {
  uint8_t *buf = malloc((size_t)r->c.payload);
  int paced = strcmp(r->c.mode, "paced") == 0 && r->c.rate > 0;
  long inflight = paced ? r->c.events : (r->c.inflight < 1 ? 1 : r->c.inflight);
  r->t0 = h_now_ns();
  uint64_t end = r->t0 + (uint64_t)(r->c.duration_s * 1e9);
  uint64_t hard = end + (uint64_t)(r->c.drain_timeout_s * 1e9);
  long i = 0;
  for (; i < r->c.events; i++) {
    uint64_t now = h_now_ns();
    if (now > end) break;
    uint64_t ts;
    if (paced) {
      ts = r->t0 + (uint64_t)((double)i * 1e9 / r->c.rate);
      h_sleep_until_ns(ts);
    } else {
      if (i - atomic_load(&r->completed) >= inflight) {
        if (flush) flush(ctx);
        if (h_wait_completed(r, i - inflight + 1, hard) != 0) break;
      }
      ts = h_now_ns();
    }
    __atomic_store_n(&r->t_send[i], ts, __ATOMIC_RELEASE);
    atomic_store(&r->issued, i + 1);
    h_fill(buf, r->c.payload, (uint64_t)i);
    if (send(ctx, (uint64_t)i, buf, (size_t)r->c.payload) != 0) {
      fprintf(stderr, "%s: send failed at event %ld\n", r->c.system, i);
      break;
    }
  }
  r->t_issue_end = h_now_ns();
  if (flush) flush(ctx);
  free(buf);
  return h_wait_completed(r, atomic_load(&r->issued), r->t_issue_end + (uint64_t)(r->c.drain_timeout_s * 1e9));
}

static inline long h_rss_kib_of(long pid, const char *field) {
  char path[64], line[256];
  if (pid > 0) snprintf(path, sizeof path, "/proc/%ld/status", pid);
  else snprintf(path, sizeof path, "/proc/self/status");
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  long kib = -1;
  size_t fl = strlen(field);
  while (fgets(line, sizeof line, f))
    if (strncmp(line, field, fl) == 0 && line[fl] == ':') {
      kib = atol(line + fl + 1);
      break;
    }
  fclose(f);
  return kib;
}

/* Checks exactly-once over every issued id; prints and appends the JSON line. Returns 0 if ok. */
static inline int h_report(h_run_t *r, int completed_in_time, const char *more_json) {
  long issued = atomic_load(&r->issued), missing_d = 0, missing_c = 0;
  for (long i = 0; i < issued; i++) {
    if (!(r->seen[i] & 1)) missing_d++;
    if (!(r->seen[i] & 2)) missing_c++;
  }
  long dups = atomic_load(&r->dup_deliver) + atomic_load(&r->dup_complete);
  long foreign = atomic_load(&r->foreign);
  int exact = missing_d == 0 && missing_c == 0 && dups == 0 && foreign == 0 && completed_in_time == 0;
  long done = atomic_load(&r->completed);
  double secs = (double)((r->t_last_complete > r->t0 ? r->t_last_complete : h_now_ns()) - r->t0) / 1e9;
  double eps = secs > 0 ? (double)done / secs : 0;
  const h_hist_t *L = &r->lat_deliver, *C = &r->lat_complete;
  char line[2048];
  snprintf(line, sizeof line,
           "{\"system\":\"%s\",\"durability\":\"%s\",\"mode\":\"%s\",\"inflight\":%ld,\"rate\":%.0f,"
           "\"payload\":%ld,\"events\":%ld,\"seconds\":%.3f,\"events_per_s\":%.1f,"
           "\"deliver_p50_us\":%.1f,\"deliver_p99_us\":%.1f,\"deliver_p999_us\":%.1f,\"deliver_max_us\":%.1f,"
           "\"complete_p50_us\":%.1f,\"complete_p99_us\":%.1f,\"complete_p999_us\":%.1f,\"complete_max_us\":%.1f,"
           "\"exactly_once\":%s,\"missing\":%ld,\"duplicates\":%ld,\"foreign\":%ld%s%s}",
           r->c.system, r->c.durability, r->c.mode, r->c.inflight, r->c.rate, r->c.payload, issued,
           secs, eps, h_pct(L, 50) / 1e3, h_pct(L, 99) / 1e3, h_pct(L, 99.9) / 1e3, L->max / 1e3,
           h_pct(C, 50) / 1e3, h_pct(C, 99) / 1e3, h_pct(C, 99.9) / 1e3, C->max / 1e3,
           exact ? "true" : "false", missing_c > missing_d ? missing_c : missing_d, dups, foreign,
           more_json ? "," : "", more_json ? more_json : "");
  printf("%s\n", line);
  fflush(stdout);
  if (r->c.out) {
    FILE *f = fopen(r->c.out, "a");
    if (f) {
      fprintf(f, "%s\n", line);
      fclose(f);
    }
  }
  if (r->c.curve_dir && (strcmp(r->c.mode, "lat") == 0 || strcmp(r->c.mode, "paced") == 0)) {
    char p[1024];
    char dur[128];
    snprintf(dur, sizeof dur, "%s", r->c.durability);
    for (char *s = dur; *s; s++)
      if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9'))) *s = '_';
    snprintf(p, sizeof p, "%s/curve-%s-%s-%s.csv", r->c.curve_dir, r->c.system, dur, r->c.mode);
    h_write_curve(L, p);
  }
  if (!exact)
    fprintf(stderr, "%s: NOT exactly once: %ld not delivered, %ld not completed, %ld duplicates, "
                    "%ld foreign ids%s\n", r->c.system, missing_d, missing_c, dups, foreign,
            completed_in_time ? " (timed out)" : "");
  return exact ? 0 : 1;
}

static inline void h_raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}
#endif
