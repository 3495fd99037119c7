/* delivery_util.h: the log capture, the recording client and server, the world. */
#include "delivery_util.h"

#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- log capture: every handle logs here; DCHECK dumps the tail when it fails ---- */

#define DU_LOG_CAP (1u << 20)
static pthread_mutex_t du_log_mu = PTHREAD_MUTEX_INITIALIZER;
static char du_log_buf[DU_LOG_CAP];
static size_t du_log_len; /* bytes ever written; the buffer is a ring */

void du_log_line(const char *who, const char *fmt, ...) {
  char line[1024];
  int n = snprintf(line, sizeof line, "%8" PRIu64 " %-10s ", hdt_now_ms() % 100000000, who);
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
  if (hdt_verbose()) fputs(line, stderr);
}

/* Every handle's user_data starts with its name: the log callback prints it. */
typedef struct du_named {
  char name[32];
} du_named_t;

void du_log_cb(void *ud, hd_log_level_t level, const char *msg) {
  static const char *const lv[] = {"E", "W", "I", "D"};
  du_log_line(ud ? ((du_named_t *)ud)->name : "?", "[%s] %s", lv[level & 3], msg);
}

static hd_log_level_t du_log_level(void) {
  return hdt_verbose() ? HD_LOG_DEBUG : HD_LOG_INFO;
}

/* Prints the last `max` bytes of the captured log to stderr (the evidence of a failure). */
void du_log_dump(size_t max) {
  pthread_mutex_lock(&du_log_mu);
  size_t len = du_log_len < DU_LOG_CAP ? du_log_len : DU_LOG_CAP;
  if (max > len) max = len;
  fprintf(stderr, "  ---- last %zu bytes of the log ----\n", max);
  for (size_t i = du_log_len - max; i < du_log_len; i++) fputc(du_log_buf[i % DU_LOG_CAP], stderr);
  fprintf(stderr, "  ---- end of log ----\n");
  pthread_mutex_unlock(&du_log_mu);
}

int du_log_count(const char *who, const char *needle) {
  pthread_mutex_lock(&du_log_mu);
  size_t len = du_log_len < DU_LOG_CAP ? du_log_len : DU_LOG_CAP;
  char *copy = malloc(len + 1);
  if (copy != NULL) {
    for (size_t i = 0; i < len; i++) copy[i] = du_log_buf[(du_log_len - len + i) % DU_LOG_CAP];
    copy[len] = '\0';
  }
  pthread_mutex_unlock(&du_log_mu);
  if (copy == NULL) return -1;
  int n = 0;
  for (char *line = copy, *next; line != NULL && *line != '\0'; line = next) {
    next = strchr(line, '\n');
    if (next != NULL) *next++ = '\0';
    /* a line is "<ms> <who padded> <text>" */
    char name[64] = "";
    sscanf(line, "%*s %63s", name);
    if ((who == NULL || strcmp(name, who) == 0) && strstr(line, needle) != NULL) n++;
  }
  free(copy);
  return n;
}

/* `expr` (of type `type`) read under the recorder's lock: r is a du_client_t or a du_server_t. */
#define LOCKED(r, type, expr)                                                                     \
  ({                                                                                              \
    pthread_mutex_lock(&(r)->mu);                                                                 \
    type locked_ = (expr);                                                                        \
    pthread_mutex_unlock(&(r)->mu);                                                               \
    locked_;                                                                                      \
  })

/* 1 if lo <= a[q] <= hi for every q in [from, to] below cap. */
static int all_within(const int *a, uint64_t cap, uint64_t from, uint64_t to, int lo, int hi) {
  for (uint64_t q = from; q <= to && q < cap; q++) {
    if (a[q] < lo || a[q] > hi) return 0;
  }
  return 1;
}

/* Appends to what the recorder holds (under its lock); 0, or -1 when it is full. */
static int held_push(du_held_t *h, void *item, uint64_t tag) {
  if (h->n >= DU_MAX_HELD) return -1;
  h->item[h->n] = item;
  h->tag[h->n++] = tag;
  return 0;
}

/* Takes the oldest item the recorder holds (NULL: none) under its lock `mu`; *tag: its tag. */
static void *held_take(pthread_mutex_t *mu, du_held_t *h, uint64_t *tag) {
  void *item = NULL;
  pthread_mutex_lock(mu);
  if (h->n > 0) {
    item = h->item[0];
    if (tag) *tag = h->tag[0];
    h->n--;
    memmove(h->item, h->item + 1, (size_t)h->n * sizeof h->item[0]);
    memmove(h->tag, h->tag + 1, (size_t)h->n * sizeof h->tag[0]);
  }
  pthread_mutex_unlock(mu);
  return item;
}

/* ---- payloads ---- */

/* "user<U>#<seq>", then `pad` bytes of a pattern (total returned; buf must hold it). */
size_t du_payload(uint8_t *buf, size_t cap, int user, uint64_t seq, size_t pad) {
  int n = snprintf((char *)buf, cap, "user%d#%" PRIu64, user, seq);
  size_t len = (size_t)n;
  for (size_t i = 0; i < pad && len < cap; i++) buf[len++] = (uint8_t)('a' + (seq + i) % 26);
  return len;
}

int du_payload_ok(const uint8_t *p, size_t n, int user, uint64_t seq) {
  uint8_t want[64];
  size_t wl = du_payload(want, sizeof want, user, seq, 0);
  if (n < wl || memcmp(p, want, wl) != 0) return 0;
  if (n > wl && p[wl] >= '0' && p[wl] <= '9') return 0; /* "user1#12" is not "user1#1" */
  for (size_t i = wl; i < n; i++) {
    if (p[i] != (uint8_t)('a' + (seq + (i - wl)) % 26)) return 0;
  }
  return 1;
}

size_t du_ack(char *buf, size_t cap, int user, uint64_t seq) {
  return (size_t)snprintf(buf, cap, "ack user%d#%" PRIu64, user, seq);
}

/* Adds `n` events for `user` (payloads du_payload(tag, first..)) and waits for each; returns 0 or
 * the first error. `first` is the seq the first one must get (0: do not check). */
int du_add_events(hd_server_t *s, const uint8_t user[32], int tag, uint64_t first, int n,
                  size_t pad) {
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

static void du_client_note(du_client_t *c, const char *fmt, ...) {
  if (c->first_error[0]) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->first_error, sizeof c->first_error, fmt, ap);
  va_end(ap);
  du_log_line(c->name, "TEST: %s", c->first_error);
}

/* Records and completes (called without c->mu held). */
static void du_client_finish(du_client_t *c, hd_event_t *ev, uint64_t seq, int ok) {
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

void du_on_event(void *ud, hd_event_t *ev) {
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
  c->repeated = hd_event_possibly_repeated(ev);
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
  if (seq != 0 && seq == c->reject_seq) {
    pthread_mutex_unlock(&c->mu);
    if (hd_event_reject(ev, "rejected by the test", 20) != 0) c->complete_errors++;
    return;
  }
  if (hdt_verbose()) du_log_line(c->name, "TEST: handler seq %" PRIu64 " (%s)", seq, ok ? "ok" : "fail");
  if (ok && c->mode == DU_HOLD && held_push(&c->held, ev, seq) == 0) {
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
    if ((r >> 16) % 4 == 0) hdt_sleep_ms(1); /* now and then, complete a little later */
    du_client_finish(c, ev, seq, 1);
    pthread_mutex_lock(&c->mu);
  }
  pthread_mutex_unlock(&c->mu);
  return NULL;
}

static void du_on_connected(void *ud, const uint8_t pk[32]) {
  du_client_t *c = ud;
  (void)pk;
  atomic_fetch_add(&c->connected, 1);
}

static void du_on_disconnected(void *ud, const uint8_t *pk, int status) {
  du_client_t *c = ud;
  (void)pk;
  atomic_store(&c->last_status, status);
  atomic_fetch_add(&c->disconnected, 1);
}

/* `cap`: the highest seq recorded + 1. `dir`: taken over (freed by du_client_free). */
void du_client_init(du_client_t *c, const char *name, int tag, const hd_keypair_t *kp,
                    const uint8_t server_pk[32], char *dir, uint64_t cap) {
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

void du_client_set_addr(du_client_t *c, int port) {
  snprintf(c->addr, sizeof c->addr, "127.0.0.1:%d", port);
}

void du_client_fill_options(du_client_t *c, hd_client_options_t *o) {
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
  o->sync_normal = c->sync_normal;
}

/* Creates the handle (the worker thread too in DU_THREAD mode). 0 or the create's error. */
int du_client_start(du_client_t *c) {
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

/* Takes the oldest event the handler holds out of the recorder (NULL: none); *seq: its seq. */
static hd_event_t *du_client_take(du_client_t *c, uint64_t *seq) {
  return held_take(&c->mu, &c->held, seq);
}

/* Completes every held event (oldest first) with `ok`. Returns how many. */
int du_client_release(du_client_t *c, int ok) {
  int n = 0;
  uint64_t seq = 0;
  for (hd_event_t *ev; (ev = du_client_take(c, &seq)) != NULL; n++)
    du_client_finish(c, ev, seq, ok);
  return n;
}
int du_client_nheld(du_client_t *c) { return LOCKED(c, int, c->held.n); }
static void du_client_stop_worker(du_client_t *c) {
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
int du_client_stop(du_client_t *c) {
  du_client_stop_worker(c);
  int rc = 0;
  if (c->h) rc = hd_client_close_wait(c->h);
  c->h = NULL;
  for (hd_event_t *ev; (ev = du_client_take(c, NULL)) != NULL;) hd_event_complete(ev, 0, NULL, 0);
  return rc;
}
void du_client_free(du_client_t *c) {
  du_client_stop(c);
  free(c->calls);
  free(c->oks);
  c->calls = c->oks = NULL;
  pthread_mutex_destroy(&c->mu);
  pthread_cond_destroy(&c->cv);
  hdt_rmrf(c->dir);
  free(c->dir);
  c->dir = NULL;
}

/* Reads of the records under the lock. */
int du_client_calls(du_client_t *c, uint64_t seq) {
  return LOCKED(c, int, seq < c->cap ? c->calls[seq] : -1);
}
int du_client_oks(du_client_t *c, uint64_t seq) {
  return LOCKED(c, int, seq < c->cap ? c->oks[seq] : -1);
}
long du_client_total_ok(du_client_t *c) { return LOCKED(c, long, c->total_ok); }
long du_client_total_calls(du_client_t *c) { return LOCKED(c, long, c->total_calls); }
/* 1 if every seq in [from, to] was completed ok exactly once. */
int du_client_all_ok_once(du_client_t *c, uint64_t from, uint64_t to) {
  return LOCKED(c, int, all_within(c->oks, c->cap, from, to, 1, 1));
}
/* 1 if every seq in [from, to] was completed ok at least once. */
int du_client_all_ok(du_client_t *c, uint64_t from, uint64_t to) {
  return LOCKED(c, int, all_within(c->oks, c->cap, from, to, 1, INT_MAX));
}
/* 0 errors of any kind recorded (prints the first one otherwise). */
int du_client_clean(du_client_t *c) {
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

int du_client_stats(du_client_t *c, hd_client_stats_t *st) { return hdt_client_stats(c->h, st); }

/* 1 when the client's store holds nothing: no unhandled, no consumed-unconfirmed event. */
int du_client_store_empty(du_client_t *c) {
  hd_client_stats_t st;
  return du_client_stats(c, &st) == 0 && st.unhandled == 0 && st.consumed == 0;
}

int du_client_is_connected(du_client_t *c) {
  hd_client_stats_t st;
  return du_client_stats(c, &st) == 0 && st.connected == 1;
}

/* ---- the recording server ---- */

static void du_server_note(du_server_t *s, const char *fmt, ...) {
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

static void du_on_consumed(void *ud, const uint8_t user[32], hd_consumed_t *b) {
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
    if (hdt_verbose()) du_log_line(s->name, "TEST: on_consumed user%d seq %" PRIu64, tag, info.seq);
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
  if (s->mode == DU_SRV_HOLD && held_push(&s->held, b, (uint64_t)(int64_t)u) == 0) {
    pthread_mutex_unlock(&s->mu);
    return;
  }
  pthread_mutex_unlock(&s->mu);
  du_server_complete_batch(s, u, b, 1, fail_seq);
}

static void du_on_peer(void *ud, const uint8_t pk[32]) {
  (void)pk;
  atomic_fetch_add(&((du_server_t *)ud)->peers_connected, 1);
}

static void du_on_peer_gone(void *ud, const uint8_t *pk, int status) {
  (void)pk;
  (void)status;
  atomic_fetch_add(&((du_server_t *)ud)->peers_disconnected, 1);
}

void du_server_init(du_server_t *s, const char *name, const hd_keypair_t *kp, char *dir,
                    uint64_t cap) {
  memset(s, 0, sizeof *s);
  snprintf(s->name, sizeof s->name, "%s", name);
  s->kp = *kp;
  s->dir = dir;
  s->cap = cap;
  pthread_mutex_init(&s->mu, NULL);
}

/* Registers a user whose reports are recorded; tag = its number in payloads. */
void du_server_add_user(du_server_t *s, const uint8_t key[32], int tag) {
  if (s->nusers >= DU_MAX_USERS) return;
  memcpy(s->keys[s->nusers], key, 32);
  s->tags[s->nusers] = tag;
  s->calls[s->nusers] = calloc(s->cap, sizeof(int));
  s->oks[s->nusers] = calloc(s->cap, sizeof(int));
  s->nusers++;
}

void du_server_fill_options(du_server_t *s, hd_server_options_t *o, char *listen,
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
int du_server_start(du_server_t *s) {
  hd_server_options_t o;
  char listen[64];
  du_server_fill_options(s, &o, listen, sizeof listen);
  int rc = HD_EADDRINUSE;
  for (int i = 0; i < 100 && rc == HD_EADDRINUSE; i++) {
    rc = hd_server_create(&s->h, &o);
    if (rc == HD_EADDRINUSE) hdt_sleep_ms(20);
  }
  if (rc != 0) {
    s->h = NULL;
    du_log_line(s->name, "TEST: hd_server_create: %s (%s)", hd_err_name(rc), hd_last_error_message());
    return rc;
  }
  s->port = hd_server_port(s->h);
  return 0;
}

hd_consumed_t *du_server_take(du_server_t *s, int *user_index) {
  uint64_t tag = (uint64_t)-1;
  hd_consumed_t *b = held_take(&s->mu, &s->held, &tag);
  if (user_index) *user_index = (int)(int64_t)tag;
  return b;
}

void du_server_record_ok(du_server_t *s, int user_index, hd_consumed_t *b, size_t i) {
  hd_event_info_t info;
  pthread_mutex_lock(&s->mu);
  if (hd_consumed_event(b, i, &info) == 0 && user_index >= 0 && user_index < s->nusers &&
      info.seq < s->cap)
    s->oks[user_index][info.seq]++;
  pthread_mutex_unlock(&s->mu);
}

/* Completes every held batch with `ok`. Returns how many batches. */
int du_server_release(du_server_t *s, int ok) {
  int n = 0, u = -1;
  for (hd_consumed_t *b; (b = du_server_take(s, &u)) != NULL; n++)
    du_server_complete_batch(s, u, b, ok, 0);
  return n;
}

int du_server_nheld(du_server_t *s) { return LOCKED(s, int, s->held.n); }
/* Closes the handle (if open) and waits. Batches still held are then completed, which after the
 * close only frees them (their events stay stored; the client reports them again). */
int du_server_stop(du_server_t *s) {
  int rc = 0;
  if (s->h) rc = hd_server_close_wait(s->h);
  s->h = NULL;
  for (hd_consumed_t *b; (b = du_server_take(s, NULL)) != NULL;) hd_consumed_complete_all(b, 0);
  return rc;
}
void du_server_free(du_server_t *s) {
  du_server_stop(s);
  for (int i = 0; i < s->nusers; i++) {
    free(s->calls[i]);
    free(s->oks[i]);
  }
  s->nusers = 0;
  pthread_mutex_destroy(&s->mu);
  hdt_rmrf(s->dir);
  free(s->dir);
  s->dir = NULL;
}

int du_server_calls(du_server_t *s, int user_index, uint64_t seq) {
  return LOCKED(s, int, user_index < s->nusers && seq < s->cap ? s->calls[user_index][seq] : -1);
}
long du_server_total_calls(du_server_t *s) { return LOCKED(s, long, s->total_calls); }
/* 1 if every seq in [from, to] of user `ui` was reported exactly `times` times. */
int du_server_calls_are(du_server_t *s, int ui, uint64_t from, uint64_t to, int times) {
  return LOCKED(s, int, all_within(s->calls[ui], s->cap, from, to, times, times));
}
int du_server_clean(du_server_t *s) {
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

int du_server_stats(du_server_t *s, hd_server_stats_t *st) { return hdt_server_stats(s->h, st); }

uint64_t du_server_pending(du_server_t *s, const uint8_t user[32]) {
  uint64_t n = UINT64_MAX;
  if (s->h == NULL || hd_server_pending(s->h, user, &n) != 0) return UINT64_MAX;
  return n;
}

uint64_t du_server_pending_total(du_server_t *s) {
  hd_server_stats_t st;
  if (du_server_stats(s, &st) != 0) return UINT64_MAX;
  return st.pending_total;
}


/* ---- a world: one server and its users' clients ---- */

int du_world_init(du_world_t *w, const char *tag, int nusers, uint64_t cap, int start) {
  char dir_tag[64];
  memset(w, 0, sizeof *w);
  if (nusers > DU_MAX_CLIENTS) return -1;
  hd_keypair_t skp;
  hd_keypair_generate(&skp);
  snprintf(dir_tag, sizeof dir_tag, "%s-server", tag);
  du_server_init(&w->s, "server", &skp, hdt_mkdtemp(dir_tag), cap);
  w->s_on = 1;
  if (w->s.dir == NULL) return -1;
  for (int i = 0; i < nusers; i++) {
    hd_keypair_t kp;
    char name[32];
    hd_keypair_generate(&kp);
    snprintf(name, sizeof name, "client%d", i + 1);
    snprintf(dir_tag, sizeof dir_tag, "%s-%s", tag, name);
    du_client_init(&w->c[i], name, i + 1, &kp, skp.public_key, hdt_mkdtemp(dir_tag), cap);
    w->nc++;
    if (w->c[i].dir == NULL) return -1;
    du_server_add_user(&w->s, kp.public_key, i + 1);
  }
  if ((start & DU_START_SERVER) && du_world_start_server(w) != 0) return -1;
  for (int i = 0; i < nusers && (start & DU_START_CLIENTS); i++) {
    if (du_client_start(&w->c[i]) != 0) return -1;
  }
  return 0;
}

int du_world_start_server(du_world_t *w) {
  int rc = du_server_start(&w->s);
  for (int i = 0; i < w->nc && rc == 0; i++) du_client_set_addr(&w->c[i], w->s.port);
  return rc;
}

void du_world_free(du_world_t *w) {
  for (int i = 0; i < w->nc; i++) du_client_stop(&w->c[i]);
  if (w->s_on) du_server_free(&w->s);
  for (int i = 0; i < w->nc; i++) du_client_free(&w->c[i]);
  memset(w, 0, sizeof *w);
}

/* du_all_done's checks: on the first that fails, says which and returns 0. */
#define DONE_STEP(cond)                                                                           \
  do {                                                                                            \
    if (!(cond)) {                                                                                \
      fprintf(stderr, "  %s/%s: not done: %s\n", s->name, c->name, #cond);                        \
      du_log_dump(12000);                                                                         \
      return 0;                                                                                   \
    }                                                                                             \
  } while (0)

int du_all_done(du_server_t *s, int ui, du_client_t *c, uint64_t n, int c_min, int c_max, int ms) {
  DONE_STEP(WAIT_FOR(du_client_total_ok(c) >= (long)n, ms));
  DONE_STEP(du_client_all_ok_once(c, 1, n));
  DONE_STEP(WAIT_FOR(du_server_pending_total(s) == 0, ms));
  DONE_STEP(WAIT_FOR(du_client_store_empty(c), ms));
  hdt_sleep_ms(100); /* whatever would run again has the time to */
  for (uint64_t q = 1; q <= n; q++) {
    int calls = du_server_calls(s, ui, q);
    if (calls < c_min || calls > c_max)
      fprintf(stderr, "  seq %" PRIu64 ": reported %d times\n", q, calls);
    DONE_STEP(calls >= c_min && calls <= c_max);
  }
  DONE_STEP(du_client_total_ok(c) == (long)n);
  DONE_STEP(du_client_clean(c));
  DONE_STEP(du_server_clean(s));
  return 1;
}
