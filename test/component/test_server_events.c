/* Server event delivery, driven by a raw client built from the internal API (transport_util.h):
 * durable adds, paged catch-up under a window, CONSUMED -> on_consumed -> DONE, idempotent
 * reports, failed completions, HD_EALREADY, PAUSE, restart on the same folder, a folder in use,
 * completions from another thread and after close, wrong-direction messages, backpressure, a
 * CONSUMED of the largest size worked through in slices while other users are served, RESUME
 * across epochs (EPOCH). Every wait is bounded. */
#include "harness.h"
#include "server_events.h"
#include "transport_util.h"

#define TOPIC "server-events-test"

/* ---- a raw client that reads records and messages ---- */
typedef struct rc {
  tu_raw_t r;
  hd__record_reader_t rr;
  hd__msg_reader_t mr;
  int closed;
  uint64_t received, last_seq, out_of_order, confirmed, credit_back;
  uint64_t max_in_flight, window;
  uint64_t done_seqs[64];
  size_t n_done;
  uint64_t pause;
  int epochs;                      /* EPOCH messages received */
  uint64_t epoch_floor, epoch_seen; /* the last one's */
  uint64_t received_at_epoch;      /* events received before it */
  int auto_consume; /* answer every event with CONSUMED, every DONE with CREDIT */
  hd__buf_t pending_out;
  uint8_t *done_map;  /* optional: DONE seqs in [map_base, map_base + map_len) seen, each once */
  uint64_t map_base, map_len, map_twice, map_outside;
  uint64_t got_seq[64];            /* the first events received: seq and payload */
  char got_payload[64][16];
  size_t n_got;
  uint64_t notices; /* NOTICES entries (this raw client announces no features: never any) */
  int got_bye;
  uint64_t bye_reason;
  char bye_text[HD__BYE_TEXT_MAX + 1];
} rc_t;

static int rc_msg(void *ctx, uint8_t type, const uint8_t *body, size_t len) {
  rc_t *c = ctx;
  hd__entry_iter_t it;
  uint64_t n, v;
  hd__entry_t e;
  if (type == HD__MSG_EVENTS && hd__msg_entries_begin(&it, type, body, len, &n) == 0) {
    hd__entry_t batch[512];
    size_t k = 0;
    while (hd__msg_entries_next(&it, &e)) {
      if (e.seq != c->last_seq + 1) c->out_of_order++;
      c->last_seq = e.seq;
      c->received++;
      if (c->n_got < 64) {
        size_t n_copy = e.len < 15 ? e.len : 15;
        memcpy(c->got_payload[c->n_got], e.data, n_copy);
        c->got_payload[c->n_got][n_copy] = '\0';
        c->got_seq[c->n_got++] = e.seq;
      }
      if (k < 512) batch[k++] = (hd__entry_t){e.seq, 0, (const uint8_t *)"ok", 2};
    }
    uint64_t in_flight = c->received - c->confirmed;
    if (in_flight > c->max_in_flight) c->max_in_flight = in_flight;
    if (c->auto_consume) hd__msg_encode_consumed(&c->pending_out, batch, k);
  } else if (type == HD__MSG_DONE && hd__msg_entries_begin(&it, type, body, len, &n) == 0) {
    while (hd__msg_entries_next(&it, &e)) {
      if (c->n_done < 64) c->done_seqs[c->n_done++] = e.seq;
      if (c->done_map == NULL) continue;
      if (e.seq < c->map_base || e.seq - c->map_base >= c->map_len) c->map_outside++;
      else if (c->done_map[e.seq - c->map_base]++) c->map_twice++;
    }
    c->confirmed += n;
    if (c->auto_consume) {
      hd__msg_encode_credit(&c->pending_out, n);
      c->credit_back += n;
    }
  } else if (type == HD__MSG_NOTICES && hd__msg_entries_begin(&it, type, body, len, &n) == 0) {
    c->notices += n;
  } else if (type == HD__MSG_PAUSE && hd__msg_decode_varint(type, body, len, &v) == 0) {
    c->pause = v;
  } else if (type == HD__MSG_EPOCH &&
             hd__msg_decode_epoch(body, len, &c->epoch_floor, &c->epoch_seen) == 0) {
    c->epochs++;
    c->received_at_epoch = c->received;
  } else if (type == HD__MSG_BYE) {
    const uint8_t *text;
    size_t text_len;
    if (hd__msg_decode_bye(body, len, &c->bye_reason, &text, &text_len) == 0) {
      memcpy(c->bye_text, text, text_len);
      c->bye_text[text_len] = '\0';
      c->got_bye = 1;
    }
    c->closed = 1;
  }
  return 0;
}

static int rc_connect_with(rc_t *c, int port, const hd_keypair_t *kp,
                           const uint8_t server_pk[32], uint64_t features) {
  memset(c, 0, sizeof *c);
  if (tu_raw_connect(&c->r, port) != 0) return -1;
  c->r.features = features;
  if (tu_raw_handshake(&c->r, kp, server_pk, TOPIC) != 0) return -1;
  hd__msg_reader_init(&c->mr, HD__DEFAULT_MAX_MESSAGE, rc_msg, c);
  return hd__record_reader_init(&c->rr, &c->r.rx, hd__record_to_msgs, &c->mr);
}

/* A client of the first release: it announces no features. */
static int rc_connect(rc_t *c, int port, const hd_keypair_t *kp, const uint8_t server_pk[32]) {
  return rc_connect_with(c, port, kp, server_pk, 0);
}

static void rc_free(rc_t *c) {
  close(c->r.fd);
  hd__record_reader_free(&c->rr);
  hd__msg_reader_free(&c->mr);
  hd__buf_free(&c->pending_out);
}

static int rc_send(rc_t *c, hd__buf_t *m) {
  int rc = tu_raw_send(&c->r, m, 0);
  hd__buf_free(m);
  return rc;
}

/* RESUME; `epoch` NULL: the version-1 message, without an epoch. */
static int rc_resume_epoch(rc_t *c, const uint8_t *store_id, uint64_t high, uint64_t window,
                           const uint8_t *epoch) {
  hd__resume_t r;
  memset(&r, 0, sizeof r);
  if (store_id) memcpy(r.store_id, store_id, 16);
  r.has_epoch = epoch != NULL;
  if (epoch) memcpy(r.epoch, epoch, 16);
  r.high_seq = high;
  r.window = window;
  c->window = window;
  hd__buf_t m = {0};
  hd__msg_encode_resume(&m, &r);
  return rc_send(c, &m);
}

static int rc_resume(rc_t *c, const uint8_t *store_id, uint64_t high, uint64_t window) {
  return rc_resume_epoch(c, store_id, high, window, NULL);
}

static int rc_consumed(rc_t *c, const uint64_t *seqs, const char *const *data, size_t n) {
  hd__entry_t e[16];
  for (size_t i = 0; i < n; i++) e[i] = (hd__entry_t){seqs[i], 0, (const uint8_t *)data[i], strlen(data[i])};
  hd__buf_t m = {0};
  hd__msg_encode_consumed(&m, e, n);
  return rc_send(c, &m);
}

/* FAILED: seqs[i] failed after attempts[i] handler calls, with reasons[i]. */
static int rc_failed(rc_t *c, const uint64_t *seqs, const uint64_t *attempts,
                     const char *const *reasons, size_t n) {
  hd__entry_t e[16];
  for (size_t i = 0; i < n; i++) {
    e[i] = (hd__entry_t){.seq = seqs[i], .attempts = attempts[i],
                         .data = (const uint8_t *)reasons[i], .len = strlen(reasons[i])};
  }
  hd__buf_t m = {0};
  hd__msg_encode_failed(&m, e, n);
  return rc_send(c, &m);
}

/* Reads for up to `ms`; returns at the first batch of bytes. */
static void rc_poll(rc_t *c, int ms) {
  struct pollfd pf = {c->r.fd, POLLIN, 0};
  if (!c->closed && poll(&pf, 1, ms) > 0) {
    uint8_t buf[65536];
    ssize_t n = recv(c->r.fd, buf, sizeof buf, 0);
    if (n <= 0) c->closed = 1;
    else if (hd__record_reader_feed(&c->rr, buf, (size_t)n) != 0) c->closed = 1;
  }
  if (c->pending_out.len && !c->closed) rc_send(c, &c->pending_out);
}

#define RC_UNTIL(c, cond, ms)                                                                     \
  ({                                                                                              \
    uint64_t dl_ = hdt_now_ms() + (uint64_t)(ms) * hdt_slow();                                    \
    while (!(cond) && !(c)->closed && hdt_now_ms() < dl_) rc_poll((c), 5);                        \
    (cond);                                                                                       \
  })

/* ---- the server under test ---- */
typedef struct fx {
  hd_keypair_t skp, ukp;
  char dir[32];
  hd_server_t *s;
  int port;
  tu_peer_t p;
  pthread_mutex_t mu;
  hd_consumed_t *batches[16];
  atomic_int n_batches;
  atomic_int adds_done;
} fx_t;

static void on_consumed_keep(void *ud, const uint8_t user[32], hd_consumed_t *b) {
  fx_t *f = (fx_t *)(void *)((char *)ud - offsetof(fx_t, p)); /* user_data is &f->p */
  (void)user;
  int i = atomic_load(&f->n_batches);
  if (i < 16) f->batches[i] = b;
  atomic_fetch_add(&f->n_batches, 1);
}

/* on_dead_letter's calls (the server's loop thread; read under the lock). */
static struct {
  pthread_mutex_t mu;
  int calls, on_loop_thread;
  uint8_t user[32];
  uint64_t seq;
  uint32_t attempts;
  int64_t dead_ms;
  char payload[16], reason[32];
} dead_seen = {PTHREAD_MUTEX_INITIALIZER};

static void on_dead_letter(void *ud, const uint8_t user[32], const hd_dead_letter_t *dl) {
  (void)ud;
  pthread_mutex_lock(&dead_seen.mu);
  dead_seen.calls++;
  memcpy(dead_seen.user, user, 32);
  dead_seen.seq = dl->seq;
  dead_seen.attempts = dl->attempts;
  dead_seen.dead_ms = dl->dead_ms;
  snprintf(dead_seen.payload, sizeof dead_seen.payload, "%.*s", (int)dl->payload_len,
           (const char *)dl->payload);
  snprintf(dead_seen.reason, sizeof dead_seen.reason, "%.*s", (int)dl->reason_len, dl->reason);
  pthread_mutex_unlock(&dead_seen.mu);
}

static int dead_calls(void) {
  pthread_mutex_lock(&dead_seen.mu);
  int n = dead_seen.calls;
  pthread_mutex_unlock(&dead_seen.mu);
  return n;
}

static int fx_start(fx_t *f, int keep_batches, uint32_t page) {
  hd_server_options_t so = tu_server_options(&f->skp, TOPIC, "127.0.0.1:0", &f->p);
  so.on_dead_letter = on_dead_letter;
  so.data_dir = f->dir;
  so.page_events = page;
  if (keep_batches) so.on_consumed = on_consumed_keep;
  atomic_store(&f->n_batches, 0);
  if (hd_server_create(&f->s, &so) != 0) return -1;
  f->port = hd_server_port(f->s);
  return 0;
}

static int fx_init(fx_t *f, int keep_batches, uint32_t page) {
  memset(f, 0, sizeof *f);
  hd_keypair_generate(&f->skp);
  hd_keypair_generate(&f->ukp);
  tu_peer_init(&f->p);
  tu_log_clear();
  snprintf(f->dir, sizeof f->dir, "/tmp/hd-se-XXXXXX");
  if (mkdtemp(f->dir) == NULL) return -1;
  return fx_start(f, keep_batches, page);
}

static void fx_done(fx_t *f) {
  if (f->s) hd_server_close_wait(f->s);
  f->s = NULL;
  hdt_rmrf(f->dir);
}

/* The user's pending count (UINT64_MAX if the call fails). */
static uint64_t fx_pending(fx_t *f) {
  uint64_t n = 0;
  return hd_server_pending(f->s, f->ukp.public_key, &n) == 0 ? n : UINT64_MAX;
}

/* The user dials the server under test and completes the handshake (RESUME not sent yet). */
static int fx_connect(fx_t *f, rc_t *c) {
  return rc_connect(c, f->port, &f->ukp, f->skp.public_key);
}

static void count_add(void *data, int status, uint64_t seq) {
  (void)seq;
  if (status == 0) atomic_fetch_add(&((fx_t *)data)->adds_done, 1);
}

static int add_many(fx_t *f, int n, size_t len) {
  uint8_t payload[2048];
  memset(payload, 'x', sizeof payload);
  atomic_store(&f->adds_done, 0);
  for (int i = 0; i < n; i++) {
    if (hd_server_add_event(f->s, f->ukp.public_key, payload, len, count_add, f) != 0) return -1;
  }
  return WAIT_FOR(atomic_load(&f->adds_done) == n, 20000) ? 0 : -1;
}

/* The user connects, resumes from nothing with a window of 10, receives the `n` events added
 * before and reports the first `k` consumed with data[i]: the batch on_consumed kept, or NULL. */
static hd_consumed_t *fx_first_report(fx_t *f, rc_t *c, uint64_t n, const char *const *data,
                                      size_t k) {
  static const uint64_t seqs[] = {1, 2, 3, 4};
  if (fx_connect(f, c) != 0 || rc_resume(c, NULL, 0, 10) != 0) return NULL;
  if (!RC_UNTIL(c, c->received == n, 5000) || rc_consumed(c, seqs, data, k) != 0) return NULL;
  return WAIT_FOR(atomic_load(&f->n_batches) == 1, 5000) ? f->batches[0] : NULL;
}

/* ---- tests ---- */

static void add_durable(void) {
  fx_t f;
  CHECK(fx_init(&f, 0, 0) == 0);
  uint64_t seq = 0;
  for (uint64_t i = 1; i <= 10; i++) {
    CHECK_OK(hd_server_add_event_wait(f.s, f.ukp.public_key, "e", 1, &seq));
    CHECK(seq == i);
  }
  uint8_t bad[32];
  memset(bad, 0, sizeof bad);
  bad[0] = 2; /* not on the curve */
  CHECK_RC(hd_server_add_event(f.s, bad, "e", 1, NULL, NULL), HD_EKEY);
  CHECK_RC(hd_server_add_event(f.s, f.ukp.public_key, "", 0, NULL, NULL), HD_EINVAL);
  static uint8_t big[1024 * 1024];
  CHECK_RC(hd_server_add_event(f.s, f.ukp.public_key, big, sizeof big - 63, NULL, NULL), HD_EINVAL);
  CHECK_OK(hd_server_add_event_wait(f.s, f.ukp.public_key, big, sizeof big - 64, &seq));
  CHECK(seq == 11);
  CHECK(fx_pending(&f) == 11);
  hd_server_stats_t st;
  CHECK_OK(hdt_server_stats(f.s, &st));
  CHECK(st.events_added == 11 && st.pending_total == 11 && st.commits >= 1);
  fx_done(&f);
}

static void catchup_window(void) {
  fx_t f;
  CHECK(fx_init(&f, 0, 64) == 0);
  CHECK(add_many(&f, 5000, 100) == 0);
  rc_t c;
  CHECK(fx_connect(&f, &c) == 0);
  c.auto_consume = 1;
  CHECK(rc_resume(&c, NULL, 0, 100) == 0);
  CHECK(RC_UNTIL(&c, c.confirmed == 5000, 30000));
  CHECK(c.received == 5000 && c.out_of_order == 0);
  CHECK(c.max_in_flight <= 100); /* the window is never exceeded */
  CHECK(fx_pending(&f) == 0);
  hd_server_stats_t st;
  CHECK_OK(hdt_server_stats(f.s, &st));
  CHECK(st.events_delivered == 5000 && st.events_confirmed == 5000 && st.connected_users == 1);
  CHECK(tu_log_has("catch-up starts") && tu_log_has("catch-up done"));
  /* an event added now is pushed at once */
  CHECK(add_many(&f, 1, 10) == 0);
  CHECK(RC_UNTIL(&c, c.confirmed == 5001, 5000));
  rc_free(&c);
  fx_done(&f);
}

static void *complete_thread(void *arg) {
  hd_consumed_complete_all(arg, 1);
  return NULL;
}

static void consumed_flow(void) {
  fx_t f;
  CHECK(fx_init(&f, 1, 0) == 0);
  CHECK(add_many(&f, 3, 5) == 0);
  rc_t c;
  const char *const data[] = {"d1", "d2"};
  hd_consumed_t *b = fx_first_report(&f, &c, 3, data, 2);
  CHECK(b != NULL);
  CHECK(hd_consumed_count(b) == 2);
  hd_event_info_t e;
  CHECK_OK(hd_consumed_event(b, 1, &e));
  CHECK(e.seq == 2 && e.data_len == 2 && memcmp(e.data, "d2", 2) == 0);
  CHECK(e.payload_len == 5 && memcmp(e.payload, "xxxxx", 5) == 0 && e.created_ms > 0);
  CHECK_RC(hd_consumed_event(b, 2, &e), HD_EINVAL);
  /* a duplicate report while the batch is with the application is ignored */
  uint64_t one[] = {1};
  CHECK(rc_consumed(&c, one, data, 1) == 0);
  hdt_sleep_ms(50);
  CHECK(atomic_load(&f.n_batches) == 1);
  CHECK_OK(hd_consumed_complete(b, 0, 1));
  CHECK_RC(hd_consumed_complete(b, 0, 1), HD_EALREADY);
  CHECK_OK(hd_consumed_complete(b, 1, 0)); /* failure: event 2 stays; the batch is freed */
  CHECK(RC_UNTIL(&c, c.n_done == 1, 5000));
  CHECK(c.done_seqs[0] == 1);
  CHECK(fx_pending(&f) == 2);
  /* reported again after the failure: a new batch, completed from another thread */
  uint64_t two[] = {2};
  CHECK(rc_consumed(&c, two, data + 1, 1) == 0);
  CHECK(WAIT_FOR(atomic_load(&f.n_batches) == 2, 5000));
  pthread_t t;
  pthread_create(&t, NULL, complete_thread, f.batches[1]);
  pthread_join(t, NULL);
  CHECK(RC_UNTIL(&c, c.n_done == 2, 5000));
  CHECK(c.done_seqs[1] == 2);
  /* reports of events not held: DONE at once, no callback */
  uint64_t gone[] = {1, 999};
  CHECK(rc_consumed(&c, gone, data, 2) == 0);
  CHECK(RC_UNTIL(&c, c.n_done == 4, 5000));
  CHECK(atomic_load(&f.n_batches) == 2);
  hd_server_stats_t st;
  CHECK_OK(hdt_server_stats(f.s, &st));
  CHECK(st.events_confirmed == 2 && st.pending_total == 1 && st.events_consumed == 6);
  rc_free(&c);
  fx_done(&f);
}

static void pause_and_restart(void) {
  fx_t f;
  CHECK(fx_init(&f, 0, 0) == 0);
  CHECK(add_many(&f, 3, 5) == 0);
  rc_t c;
  CHECK(fx_connect(&f, &c) == 0);
  uint8_t store_id[16];
  memcpy(store_id, c.r.welcome.store_id, 16);
  CHECK(c.r.welcome.pause_ms == 0);
  CHECK(rc_resume(&c, NULL, 3, 10) == 0);
  CHECK_OK(hd_server_update_pause(f.s, 1500, NULL, NULL));
  CHECK(RC_UNTIL(&c, c.pause == 1500, 5000));
  CHECK(c.received == 0); /* high_seq 3: nothing to send */
  rc_free(&c);
  CHECK_OK(hd_server_close_wait(f.s));
  /* the same folder again: same store, pause kept, numbers go on */
  CHECK(fx_start(&f, 0, 0) == 0);
  uint64_t seq = 0;
  CHECK_OK(hd_server_add_event_wait(f.s, f.ukp.public_key, "n", 1, &seq));
  CHECK(seq == 4);
  CHECK(fx_connect(&f, &c) == 0);
  CHECK(memcmp(c.r.welcome.store_id, store_id, 16) == 0 && c.r.welcome.pause_ms == 1500);
  CHECK(rc_resume(&c, store_id, 2, 10) == 0);
  c.last_seq = 2;
  CHECK(RC_UNTIL(&c, c.received == 2, 5000));
  CHECK(c.last_seq == 4 && c.out_of_order == 0);
  rc_free(&c);
  /* a client that knew another store gets everything */
  uint8_t other[16];
  memset(other, 7, sizeof other);
  CHECK(fx_connect(&f, &c) == 0);
  CHECK(rc_resume(&c, other, 3, 10) == 0);
  CHECK(RC_UNTIL(&c, c.received == 4, 5000));
  rc_free(&c);
  fx_done(&f);
}

static void folder_in_use(void) {
  fx_t f;
  CHECK(fx_init(&f, 0, 0) == 0);
  hd_server_options_t so = tu_server_options(&f.skp, TOPIC, "127.0.0.1:0", &f.p);
  so.data_dir = f.dir;
  hd_server_t *s2 = NULL;
  CHECK_RC(hd_server_create(&s2, &so), HD_EBUSY);
  CHECK(s2 == NULL && atomic_load(&f.p.destroyed) == 0);
  so.data_dir = NULL;
  CHECK_RC(hd_server_create(&s2, &so), HD_EINVAL);
  CHECK(strstr(hd_last_error_message(), "data_dir") != NULL);
  fx_done(&f);
}

static void batch_after_close(void) {
  fx_t f;
  CHECK(fx_init(&f, 1, 0) == 0);
  CHECK(add_many(&f, 2, 5) == 0);
  rc_t c;
  const char *const data[] = {"a", "b"};
  hd_consumed_t *b = fx_first_report(&f, &c, 2, data, 2);
  CHECK(b != NULL);
  CHECK_OK(hd_consumed_complete(b, 0, 0)); /* claimed before close, applied */
  CHECK_OK(hd_server_close_wait(f.s));
  f.s = NULL;
  hd_event_info_t e;
  CHECK_OK(hd_consumed_event(b, 1, &e)); /* still readable */
  CHECK(e.seq == 2 && memcmp(e.data, "b", 1) == 0);
  CHECK_RC(hd_consumed_complete(b, 0, 1), HD_EALREADY);
  CHECK_OK(hd_consumed_complete(b, 1, 1)); /* frees it */
  rc_free(&c);
  /* the event completed after close was not deleted: still pending */
  CHECK(fx_start(&f, 0, 0) == 0);
  CHECK(fx_pending(&f) == 2);
  fx_done(&f);
}

static void wrong_direction(void) {
  fx_t f;
  CHECK(fx_init(&f, 0, 0) == 0);
  rc_t c;
  CHECK(fx_connect(&f, &c) == 0);
  hd__buf_t m = {0};
  hd__msg_encode_credit(&m, 5); /* before RESUME */
  CHECK(rc_send(&c, &m) == 0);
  CHECK(tu_wait_closed(c.r.fd, 3000));
  rc_free(&c);
  CHECK(WAIT_FOR(tu_log_has("before RESUME"), 3000));
  CHECK(fx_connect(&f, &c) == 0);
  CHECK(rc_resume(&c, NULL, 0, 10) == 0);
  uint64_t one = 1;
  hd__msg_encode_done(&m, &one, 1);
  CHECK(rc_send(&c, &m) == 0);
  CHECK(tu_wait_closed(c.r.fd, 3000));
  rc_free(&c);
  CHECK(WAIT_FOR(tu_log_has("wrong direction") && atomic_load(&f.p.disconnected) == 2, 3000));
  CHECK(atomic_load(&f.p.last_status) == HD_EPROTO);
  fx_done(&f);
}

/* A protocol error of the client is told before the close: BYE with HD_EPROTO's code and a text
 * naming the fault. One row per fault. */
enum { BYE_CREDIT_FIRST, BYE_RESUME_TWICE, BYE_DONE_FROM_CLIENT, BYE_BAD_CONSUMED,
       BYE_FAILED_UNANNOUNCED };
static const struct {
  int resume_first;
  const char *text;
} bye_rows[] = {
    [BYE_CREDIT_FIRST] = {0, "CREDIT before RESUME"},
    [BYE_RESUME_TWICE] = {1, "RESUME a second time"},
    [BYE_DONE_FROM_CLIENT] = {1, "DONE from a client (wrong direction)"},
    [BYE_BAD_CONSUMED] = {1, "CONSUMED: count 5 cannot fit"},
    /* a client that did not announce HD__FEATURE_FAILED does not speak FAILED */
    [BYE_FAILED_UNANNOUNCED] = {1, "FAILED without the feature announced"},
};

static void bye_run(int row) {
  fx_t f;
  CHECK(fx_init(&f, 0, 0) == 0);
  rc_t c;
  CHECK(fx_connect(&f, &c) == 0);
  if (bye_rows[row].resume_first) CHECK(rc_resume(&c, NULL, 0, 10) == 0);
  hd__buf_t m = {0};
  uint64_t one = 1;
  static const uint8_t bad_consumed[] = {0x02, HD__MSG_CONSUMED, 0x05}; /* 5 entries in 0 bytes */
  switch (row) {
    case BYE_CREDIT_FIRST: hd__msg_encode_credit(&m, 5); break;
    case BYE_RESUME_TWICE: hd__msg_encode_resume(&m, &(hd__resume_t){.window = 10}); break;
    case BYE_DONE_FROM_CLIENT: hd__msg_encode_done(&m, &one, 1); break;
    case BYE_BAD_CONSUMED: hd__buf_append(&m, bad_consumed, sizeof bad_consumed); break;
    case BYE_FAILED_UNANNOUNCED:
      hd__msg_encode_failed(&m, &(hd__entry_t){.seq = 1, .attempts = 1, .data = (const uint8_t *)"x", .len = 1}, 1);
      break;
  }
  CHECK(rc_send(&c, &m) == 0);
  CHECK(RC_UNTIL(&c, c.got_bye, 3000));
  fprintf(stderr, "  BYE %llu \"%s\"\n", (unsigned long long)c.bye_reason, c.bye_text);
  CHECK(c.bye_reason == (uint64_t)-HD_EPROTO);
  CHECK(strstr(c.bye_text, bye_rows[row].text) != NULL);
  CHECK(tu_wait_closed(c.r.fd, 3000));
  rc_free(&c);
  CHECK(WAIT_FOR(atomic_load(&f.p.disconnected) == 1, 3000));
  CHECK(atomic_load(&f.p.last_status) == HD_EPROTO);
  fx_done(&f);
}

static void bye_credit_before_resume(void) { bye_run(BYE_CREDIT_FIRST); }
static void bye_resume_twice(void) { bye_run(BYE_RESUME_TWICE); }
static void bye_done_from_client(void) { bye_run(BYE_DONE_FROM_CLIENT); }
static void bye_bad_consumed(void) { bye_run(BYE_BAD_CONSUMED); }
static void bye_failed_unannounced(void) { bye_run(BYE_FAILED_UNANNOUNCED); }

/* A client that does not read: the server stops near the high-water mark, then goes on. */
static void backpressure(void) {
  fx_t f;
  CHECK(fx_init(&f, 0, 0) == 0);
  CHECK(add_many(&f, 20000, 1000) == 0);
  rc_t c;
  CHECK(fx_connect(&f, &c) == 0);
  CHECK(rc_resume(&c, NULL, 0, 1000000) == 0);
  hdt_sleep_ms(300 * hdt_slow());
  hd_server_stats_t st;
  CHECK_OK(hdt_server_stats(f.s, &st));
  CHECK(st.events_delivered > 0 && st.events_delivered < 20000);
  CHECK(RC_UNTIL(&c, c.received == 20000, 30000));
  CHECK(c.out_of_order == 0);
  rc_free(&c);
  fx_done(&f);
}

/* One CONSUMED of the largest size (1 MiB: 262143 entries of 4 bytes), seqs in descending order,
 * from a user the server holds nothing for. */
#define HUGE_FIRST 16384u /* the smallest seq of 3 varint bytes */
#define HUGE_COUNT 262143u

static int send_huge_report(rc_t *a) {
  hd__entry_t *e = malloc(HUGE_COUNT * sizeof *e);
  if (e == NULL) return -1;
  for (size_t i = 0; i < HUGE_COUNT; i++) {
    e[i] = (hd__entry_t){HUGE_FIRST + HUGE_COUNT - 1 - i, 0, NULL, 0};
  }
  hd__buf_t m = {0};
  int rc = hd__msg_encode_consumed(&m, e, HUGE_COUNT);
  free(e);
  if (rc != 0 || m.len != 3 + HD__DEFAULT_MAX_MESSAGE) { /* L itself takes 3 bytes */
    hd__buf_free(&m);
    return -1;
  }
  return rc_send(a, &m);
}

/* While the server works through the huge report of `a`, user `b` (auto-consuming) makes round
 * trips: an event added, sent, reported consumed, confirmed. Returns the slowest, in ms, once
 * `a` has its DONEs (or after 60 s). */
static uint64_t round_trips_meanwhile(fx_t *f, rc_t *a, rc_t *b, int *trips) {
  uint64_t worst = 0, end = hdt_now_ms() + 60000u * hdt_slow();
  *trips = 0;
  while ((a->confirmed < HUGE_COUNT || *trips == 0) && hdt_now_ms() < end && !a->closed &&
         !b->closed) {
    uint64_t t0 = hdt_now_ms(), want = b->confirmed + 1;
    if (hd_server_add_event(f->s, f->ukp.public_key, "rt", 2, NULL, NULL) != 0) return UINT64_MAX;
    while (b->confirmed < want && !b->closed && hdt_now_ms() < end) {
      rc_poll(b, 1);
      rc_poll(a, 0);
    }
    uint64_t took = hdt_now_ms() - t0;
    if (took > worst) worst = took;
    (*trips)++;
  }
  return worst;
}

static void huge_report_run(fx_t *f, rc_t *a, rc_t *b) {
  hd_keypair_t akp;
  hd_keypair_generate(&akp);
  CHECK(rc_connect(a, f->port, &akp, f->skp.public_key) == 0);
  a->done_map = calloc(HUGE_COUNT, 1);
  a->map_base = HUGE_FIRST;
  a->map_len = HUGE_COUNT;
  CHECK(a->done_map != NULL);
  CHECK(rc_resume(a, NULL, 0, 10) == 0);
  CHECK(fx_connect(f, b) == 0);
  b->auto_consume = 1;
  CHECK(rc_resume(b, NULL, 0, 10) == 0);
  CHECK(send_huge_report(a) == 0);
  int trips;
  uint64_t worst = round_trips_meanwhile(f, a, b, &trips);
  fprintf(stderr, "  huge report: %d round trips meanwhile, the slowest %llu ms\n", trips,
          (unsigned long long)worst);
  CHECK(trips >= 1 && worst < 1000u * hdt_slow());
  /* the report is answered all the same: DONE for every seq once, nothing else */
  CHECK(RC_UNTIL(a, a->confirmed == HUGE_COUNT, 30000));
  CHECK(a->map_twice == 0 && a->map_outside == 0 && !a->closed);
  hd_server_stats_t st;
  CHECK_OK(hdt_server_stats(f->s, &st));
  CHECK(st.events_consumed == HUGE_COUNT + (uint64_t)trips);
  /* a client that leaves in the middle of its report: the rest is dropped, the others go on */
  rc_free(a);
  free(a->done_map); /* rc_connect starts from zeros */
  CHECK(rc_connect(a, f->port, &akp, f->skp.public_key) == 0);
  CHECK(rc_resume(a, NULL, 0, 10) == 0);
  CHECK(send_huge_report(a) == 0);
  rc_free(a);
  a->r.fd = -1;
  uint64_t want = b->confirmed + 1;
  CHECK_OK(hd_server_add_event(f->s, f->ukp.public_key, "rt", 2, NULL, NULL));
  CHECK(RC_UNTIL(b, b->confirmed == want, 5000));
  CHECK(WAIT_FOR(atomic_load(&f->p.disconnected) == 2, 5000));
}

/* A report larger than a slice: batches of at most a slice each, in seq order; a repeat within
 * the message is dropped (its first data kept); what the server does not hold is answered DONE. */
#define SLICED (HD__SRV_REPORT_SLICE + 100)

static void report_sliced(void) {
  fx_t f;
  CHECK(fx_init(&f, 1, 0) == 0);
  CHECK(add_many(&f, SLICED, 5) == 0);
  rc_t c;
  CHECK(fx_connect(&f, &c) == 0);
  CHECK(rc_resume(&c, NULL, SLICED, 10) == 0); /* holds them all: nothing is sent */
  static hd__entry_t e[SLICED + 2];
  static char data[SLICED + 1][16];
  for (size_t i = 0; i < SLICED; i++) { /* descending */
    uint64_t seq = SLICED - i;
    snprintf(data[seq], sizeof data[seq], "d%llu", (unsigned long long)seq);
    e[i] = (hd__entry_t){seq, 0, (const uint8_t *)data[seq], strlen(data[seq])};
  }
  e[SLICED] = (hd__entry_t){1, 0, (const uint8_t *)"repeat", 6};
  e[SLICED + 1] = (hd__entry_t){SLICED + 5, 0, (const uint8_t *)"gone", 4};
  hd__buf_t m = {0};
  CHECK(hd__msg_encode_consumed(&m, e, SLICED + 2) == 0);
  CHECK(rc_send(&c, &m) == 0);
  CHECK(RC_UNTIL(&c, c.n_done == 1, 5000) && c.done_seqs[0] == SLICED + 5);
  CHECK(WAIT_FOR(atomic_load(&f.n_batches) == 2, 5000));
  hd_consumed_t *b0 = f.batches[0], *b1 = f.batches[1];
  CHECK(hd_consumed_count(b0) == HD__SRV_REPORT_SLICE && hd_consumed_count(b1) == 100);
  hd_event_info_t info;
  for (size_t i = 0; i < SLICED; i++) {
    hd_consumed_t *b = i < HD__SRV_REPORT_SLICE ? b0 : b1;
    CHECK_OK(hd_consumed_event(b, i < HD__SRV_REPORT_SLICE ? i : i - HD__SRV_REPORT_SLICE, &info));
    CHECK(info.seq == i + 1 && info.payload_len == 5);
    CHECK(info.data_len == strlen(data[i + 1]));
    CHECK(memcmp(info.data, data[i + 1], info.data_len) == 0);
  }
  CHECK_OK(hd_consumed_complete_all(b0, 1));
  CHECK_OK(hd_consumed_complete_all(b1, 1));
  CHECK(RC_UNTIL(&c, c.confirmed == SLICED + 1, 10000));
  CHECK(fx_pending(&f) == 0);
  hd_server_stats_t st;
  CHECK_OK(hdt_server_stats(f.s, &st));
  CHECK(st.events_consumed == SLICED + 2 && st.events_confirmed == SLICED);
  rc_free(&c);
  fx_done(&f);
}

static void huge_report_bounded(void) {
  fx_t f;
  CHECK(fx_init(&f, 0, 0) == 0);
  rc_t a, b;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  a.r.fd = b.r.fd = -1;
  huge_report_run(&f, &a, &b);
  free(a.done_map);
  if (a.r.fd >= 0) rc_free(&a);
  if (b.r.fd >= 0) rc_free(&b);
  fx_done(&f);
}

/* The server's rollback counters (UINT64_MAX if the call fails): what `field` picks. */
static uint64_t fx_rollbacks(fx_t *f, int epoch_resumes) {
  hd_rollback_stats_t st = {.version = HD_ROLLBACK_STATS_VERSION};
  if (hd_server_rollback_stats(f->s, &st) != 0) return UINT64_MAX;
  return epoch_resumes ? st.epoch_resumes : st.rollbacks;
}

/* The user connects and resumes (epoch NULL: the version-1 RESUME); the connection is in c. */
static int fx_resume(fx_t *f, rc_t *c, uint64_t high, const uint8_t *epoch) {
  if (fx_connect(f, c) != 0) return -1;
  c->last_seq = 0;
  return rc_resume_epoch(c, c->r.welcome.store_id, high, 10, epoch);
}

/* WELCOME carries the store's epoch. A RESUME in that epoch, or without one (a client that
 * predates epochs), is served from high_seq, with no EPOCH. Any other epoch gets EPOCH first,
 * then everything pending from seq 1: an epoch the store does not know vouches for nothing
 * (floor 0, seen_upto high_seq: counted and logged as a rollback); the all-zero epoch (a client
 * that last resumed before the store had epochs) is the store's first, here nothing was lost.
 * An epoch cut short is a protocol error. */
static void resume_epochs(void) {
  fx_t f;
  CHECK(fx_init(&f, 0, 0) == 0);
  CHECK(add_many(&f, 3, 5) == 0);
  rc_t c;
  CHECK(fx_connect(&f, &c) == 0);
  CHECK(c.r.welcome.has_epoch);
  uint8_t epoch[16], other[16], zero[16] = {0};
  memcpy(epoch, c.r.welcome.epoch, 16);
  memset(other, 0x77, sizeof other);
  rc_free(&c);

  CHECK(fx_resume(&f, &c, 2, epoch) == 0);
  CHECK(RC_UNTIL(&c, c.received == 1, 5000));
  CHECK(c.last_seq == 3 && c.epochs == 0);
  rc_free(&c);
  CHECK(fx_resume(&f, &c, 2, NULL) == 0);
  CHECK(RC_UNTIL(&c, c.received == 1, 5000));
  CHECK(c.last_seq == 3 && c.epochs == 0);
  rc_free(&c);
  CHECK(fx_rollbacks(&f, 1) == 0);

  CHECK(fx_resume(&f, &c, 3, other) == 0);
  CHECK(RC_UNTIL(&c, c.received == 3, 5000));
  CHECK(c.epochs == 1 && c.received_at_epoch == 0 && c.out_of_order == 0);
  CHECK(c.epoch_floor == 0 && c.epoch_seen == 3);
  rc_free(&c);
  CHECK(fx_rollbacks(&f, 0) == 1 && fx_rollbacks(&f, 1) == 1);
  CHECK(tu_log_has("rolled back") && tu_log_has("does not know"));

  CHECK(fx_resume(&f, &c, 3, zero) == 0);
  CHECK(RC_UNTIL(&c, c.received == 3, 5000));
  CHECK(c.epochs == 1 && c.epoch_floor == 3 && c.epoch_seen == 3);
  rc_free(&c);
  CHECK(fx_rollbacks(&f, 0) == 1 && fx_rollbacks(&f, 1) == 2);

  /* RESUME with 5 bytes of an epoch */
  CHECK(fx_connect(&f, &c) == 0);
  hd__buf_t m = {0};
  uint8_t body[16 + 2 + 5] = {0};
  body[16] = 0;  /* high_seq */
  body[17] = 10; /* window */
  CHECK(hd__buf_append(&m, (const uint8_t[]){1 + sizeof body, HD__MSG_RESUME}, 2) == 0);
  CHECK(hd__buf_append(&m, body, sizeof body) == 0);
  CHECK(rc_send(&c, &m) == 0);
  CHECK(tu_wait_closed(c.r.fd, 3000));
  CHECK(WAIT_FOR(tu_log_has("RESUME: 5 trailing bytes"), 3000));
  rc_free(&c);
  fx_done(&f);
}

/* The admin calls: pages of a user's pending events with their payloads, deletes of some and of
 * all of them while they are in flight to the connected client, which stays connected: its
 * reports of deleted events are answered DONE without on_consumed, a batch made before the delete
 * completes as usual, and the numbering goes on. */
static void admin_list_and_delete(void) {
  fx_t f;
  CHECK(fx_init(&f, 1, 0) == 0);
  static const char *const text[] = {"a", "bb", "ccc", "dddd", "eeeee", "ffffff"};
  for (int i = 0; i < 6; i++) {
    uint64_t seq = 0;
    CHECK_OK(hd_server_add_event_wait(f.s, f.ukp.public_key, text[i], strlen(text[i]), &seq));
    CHECK(seq == (uint64_t)i + 1);
  }
  hd_event_info_t ev[8];
  uint8_t buf[64];
  uint64_t cursor = 0;
  CHECK(hd_server_list_events(f.s, f.ukp.public_key, &cursor, ev, 4, buf, sizeof buf) == 4);
  CHECK(cursor == 4 && ev[0].seq == 1 && ev[3].seq == 4 && ev[3].created_ms > 0);
  CHECK(ev[2].payload_len == 3 && memcmp(ev[2].payload, "ccc", 3) == 0 && ev[2].data == NULL);
  CHECK(hd_server_list_events(f.s, f.ukp.public_key, &cursor, ev, 8, buf, sizeof buf) == 2);
  CHECK(cursor == 6 && ev[1].payload_len == 6 && memcmp(ev[1].payload, "ffffff", 6) == 0);
  CHECK(hd_server_list_events(f.s, f.ukp.public_key, &cursor, ev, 8, buf, sizeof buf) == 0);
  CHECK(cursor == 6);
  /* a page ends at the first payload that does not fit; none fitting is an error */
  cursor = 1;
  CHECK(hd_server_list_events(f.s, f.ukp.public_key, &cursor, ev, 8, buf, 6) == 2);
  CHECK(cursor == 3 && memcmp(ev[1].payload, "ccc", 3) == 0);
  CHECK_RC(hd_server_list_events(f.s, f.ukp.public_key, &cursor, ev, 8, buf, 3), HD_EBUFSIZE);
  CHECK(cursor == 3 && strstr(hd_last_error_message(), "event 4's payload has 4 bytes") != NULL);
  CHECK(hd_server_list_events(f.s, f.ukp.public_key, &cursor, ev, 8, NULL, 0) == 3);
  CHECK(ev[0].seq == 4 && ev[0].payload == NULL && ev[0].payload_len == 4);
  CHECK_RC(hd_server_list_events(f.s, NULL, &cursor, ev, 8, NULL, 0), HD_EINVAL);
  CHECK_RC(hd_server_list_events(f.s, f.ukp.public_key, &cursor, ev, 8, NULL, 4), HD_EINVAL);
  uint8_t stranger[32] = {9};
  cursor = 0;
  CHECK(hd_server_list_events(f.s, stranger, &cursor, ev, 8, buf, sizeof buf) == 0);

  /* all six in flight to the client; event 1 reported and with the application */
  rc_t c;
  const char *const data[] = {"d1", "d2"};
  hd_consumed_t *b = fx_first_report(&f, &c, 6, data, 1);
  CHECK(b != NULL);
  uint64_t seqs[] = {1, 2, 77}, n = 99;
  CHECK_OK(hd_server_delete_events_wait(f.s, f.ukp.public_key, seqs, 3, &n));
  CHECK(n == 2 && fx_pending(&f) == 4);
  CHECK_OK(hd_server_delete_events_wait(f.s, f.ukp.public_key, NULL, 0, &n));
  CHECK(n == 0);
  uint64_t two[] = {2};
  CHECK(rc_consumed(&c, two, data + 1, 1) == 0);
  CHECK(RC_UNTIL(&c, c.n_done == 1, 5000));
  CHECK(c.done_seqs[0] == 2 && atomic_load(&f.n_batches) == 1);
  CHECK_OK(hd_consumed_complete(b, 0, 1));
  CHECK(RC_UNTIL(&c, c.n_done == 2, 5000));
  CHECK(c.done_seqs[1] == 1);
  /* every event of the user; the client stays, and gets the next event numbered on */
  CHECK_OK(hd_server_delete_user_wait(f.s, f.ukp.public_key, &n));
  CHECK(n == 4 && fx_pending(&f) == 0);
  CHECK_OK(hd_server_delete_user_wait(f.s, stranger, &n));
  CHECK(n == 0);
  uint64_t seq = 0;
  CHECK_OK(hd_server_add_event_wait(f.s, f.ukp.public_key, "g", 1, &seq));
  CHECK(seq == 7);
  CHECK(RC_UNTIL(&c, c.received == 7, 5000));
  CHECK(!c.closed && c.out_of_order == 0);
  uint64_t three[] = {3};
  CHECK(rc_consumed(&c, three, data, 1) == 0);
  CHECK(RC_UNTIL(&c, c.n_done == 3, 5000));
  CHECK(c.done_seqs[2] == 3 && atomic_load(&f.n_batches) == 1);
  cursor = 0;
  CHECK(hd_server_list_events(f.s, f.ukp.public_key, &cursor, ev, 8, buf, sizeof buf) == 1);
  CHECK(ev[0].seq == 7 && cursor == 7);
  /* the asynchronous form; bad arguments */
  atomic_store(&f.adds_done, 0);
  uint64_t seven[] = {7};
  CHECK_OK(hd_server_delete_events(f.s, f.ukp.public_key, seven, 1, count_add, &f));
  CHECK(WAIT_FOR(atomic_load(&f.adds_done) == 1, 5000) && fx_pending(&f) == 0);
  CHECK_RC(hd_server_delete_events(f.s, NULL, seven, 1, NULL, NULL), HD_EINVAL);
  CHECK_RC(hd_server_delete_events(f.s, f.ukp.public_key, NULL, 1, NULL, NULL), HD_EINVAL);
  CHECK_RC(hd_server_delete_user(NULL, f.ukp.public_key, NULL, NULL), HD_EINVAL);
  hd_server_stats_t st;
  CHECK_OK(hdt_server_stats(f.s, &st));
  CHECK(st.pending_total == 0 && st.connected_users == 1);
  rc_free(&c);
  fx_done(&f);
}

/* The user connects announcing FAILED, resumes from nothing with a window of 10 and receives the
 * `n` events added before. */
static int fx_connect_failed(fx_t *f, rc_t *c, uint64_t n) {
  if (rc_connect_with(c, f->port, &f->ukp, f->skp.public_key, HD__FEATURE_FAILED) != 0 ||
      rc_resume(c, NULL, 0, 10) != 0) {
    return -1;
  }
  return RC_UNTIL(c, c->received == n, 5000) ? 0 : -1;
}

/* FAILED (docs/QUEUES.md "Dead letters"): the event moves to the dead letters with its attempts
 * and reason, DONE follows, on_dead_letter runs once (never on_consumed), a repeat of the report
 * is answered DONE without a second callback, a seq in a consumed batch is not failed meanwhile,
 * and later events flow. */
static void failed_body(fx_t *f, rc_t *c) {
  CHECK(add_many(f, 3, 5) == 0);
  pthread_mutex_lock(&dead_seen.mu);
  dead_seen.calls = 0;
  pthread_mutex_unlock(&dead_seen.mu);
  CHECK(fx_connect_failed(f, c, 3) == 0);
  int64_t t0 = (int64_t)time(NULL) * 1000 - 1000;
  uint64_t two = 2, ten = 10;
  const char *const boom[] = {"boom"};
  CHECK(rc_failed(c, &two, &ten, boom, 1) == 0);
  CHECK(RC_UNTIL(c, c->n_done == 1, 5000));
  CHECK(c->done_seqs[0] == 2);
  CHECK(WAIT_FOR(dead_calls() == 1, 5000));
  pthread_mutex_lock(&dead_seen.mu);
  int same_user = memcmp(dead_seen.user, f->ukp.public_key, 32) == 0;
  int fields = dead_seen.seq == 2 && dead_seen.attempts == 10 && dead_seen.dead_ms >= t0 &&
               strcmp(dead_seen.payload, "xxxxx") == 0 && strcmp(dead_seen.reason, "boom") == 0;
  pthread_mutex_unlock(&dead_seen.mu);
  CHECK(same_user && fields);
  CHECK(atomic_load(&f->n_batches) == 0 && fx_pending(f) == 2);
  uint64_t n = 0;
  CHECK_OK(hd_server_dead_letter_count(f->s, f->ukp.public_key, &n));
  CHECK(n == 1);
  CHECK_OK(hd_server_dead_letter_count(f->s, NULL, &n));
  CHECK(n == 1);
  hd_dead_letter_t dl[4];
  uint8_t buf[64];
  uint64_t cursor = 0;
  CHECK(hd_server_list_dead_letters(f->s, f->ukp.public_key, &cursor, dl, 4, buf, sizeof buf) == 1);
  CHECK(cursor == 2 && dl[0].seq == 2 && dl[0].attempts == 10 && dl[0].created_ms > 0);
  CHECK(dl[0].payload_len == 5 && memcmp(dl[0].payload, "xxxxx", 5) == 0);
  CHECK(dl[0].reason_len == 4 && memcmp(dl[0].reason, "boom", 4) == 0);
  CHECK(hd_server_list_dead_letters(f->s, f->ukp.public_key, &cursor, dl, 4, buf, sizeof buf) == 0);
  cursor = 0;
  CHECK_RC(hd_server_list_dead_letters(f->s, f->ukp.public_key, &cursor, dl, 4, buf, 8),
           HD_EBUFSIZE); /* 5 + 4 bytes */
  CHECK(hd_server_list_dead_letters(f->s, f->ukp.public_key, &cursor, dl, 4, NULL, 0) == 1);
  CHECK(dl[0].payload == NULL && dl[0].payload_len == 5 && dl[0].reason_len == 4);
  uint8_t keys[2 * 32];
  uint64_t counts[2];
  cursor = 0;
  CHECK(hd_server_dead_letter_users(f->s, &cursor, keys, counts, 2) == 1);
  CHECK(memcmp(keys, f->ukp.public_key, 32) == 0 && counts[0] == 1);
  CHECK(hd_server_dead_letter_users(f->s, &cursor, keys, counts, 2) == 0);
  /* the report again (a DONE lost with a connection): DONE, no second dead letter or callback */
  CHECK(rc_failed(c, &two, &ten, boom, 1) == 0);
  CHECK(RC_UNTIL(c, c->n_done == 2, 5000));
  CHECK(c->done_seqs[1] == 2);
  /* event 3 in a consumed batch: a FAILED of it meanwhile is skipped; the batch decides */
  uint64_t three = 3;
  const char *const data[] = {"d3"};
  CHECK(rc_consumed(c, &three, data, 1) == 0);
  CHECK(WAIT_FOR(atomic_load(&f->n_batches) == 1, 5000));
  CHECK(rc_failed(c, &three, &ten, boom, 1) == 0);
  hdt_sleep_ms(50);
  CHECK(c->n_done == 2 && fx_pending(f) == 2);
  CHECK_OK(hd_consumed_complete_all(f->batches[0], 1));
  CHECK(RC_UNTIL(c, c->n_done == 3, 5000));
  CHECK(c->done_seqs[2] == 3 && fx_pending(f) == 1);
  CHECK(dead_calls() == 1);
  /* later events flow; event 1 is consumed as usual */
  CHECK(add_many(f, 1, 5) == 0);
  CHECK(RC_UNTIL(c, c->received == 4, 5000));
  CHECK(c->last_seq == 4 && !c->closed);
  uint64_t one = 1;
  CHECK(rc_consumed(c, &one, data, 1) == 0);
  CHECK(WAIT_FOR(atomic_load(&f->n_batches) == 2, 5000));
  CHECK_OK(hd_consumed_complete_all(f->batches[1], 1));
  CHECK(RC_UNTIL(c, c->n_done == 4, 5000));
  hd_server_stats_t st;
  CHECK_OK(hdt_server_stats(f->s, &st));
  CHECK(st.events_dead == 1 && st.dead_letters == 1 && st.events_requeued == 0);
  CHECK(st.events_confirmed == 2 && st.pending_total == 1);
  /* a caller built against stats version 2 gets nothing past its struct */
  hd_server_stats_t v2;
  memset(&v2, 0xAB, sizeof v2);
  v2.version = 2;
  CHECK_OK(hd_server_stats(f->s, &v2));
  CHECK(v2.events_added == st.events_added && v2.events_too_large == 0);
  CHECK(v2.events_expired == 0xABABABABABABABABull && v2.dead_letters == 0xABABABABABABABABull);
  CHECK(dead_calls() == 1);
}

static void failed_to_dead_letter(void) {
  fx_t f;
  CHECK(fx_init(&f, 1, 0) == 0);
  rc_t c;
  memset(&c, 0, sizeof c);
  c.r.fd = -1;
  failed_body(&f, &c);
  if (c.r.fd >= 0) rc_free(&c);
  fx_done(&f);
}

/* A dead letter outlives a restart of the server; requeued, it comes back to the connected
 * client as a new event with the user's next number (after the notice that says so); deleted,
 * it is gone. */
static void requeue_body(fx_t *f, rc_t *c) {
  CHECK(add_many(f, 3, 5) == 0);
  CHECK(fx_connect_failed(f, c, 3) == 0);
  uint64_t seqs[] = {1, 2}, attempts[] = {3, 4};
  const char *const why[] = {"bad", "worse"};
  CHECK(rc_failed(c, seqs, attempts, why, 2) == 0);
  CHECK(RC_UNTIL(c, c->n_done == 2, 5000));
  rc_free(c);
  memset(c, 0, sizeof *c);
  c->r.fd = -1;
  hd_server_close_wait(f->s);
  f->s = NULL;
  CHECK(fx_start(f, 1, 0) == 0);
  uint64_t n = 0;
  CHECK_OK(hd_server_dead_letter_count(f->s, f->ukp.public_key, &n));
  CHECK(n == 2);
  hd_dead_letter_t dl[4];
  uint8_t buf[64];
  uint64_t cursor = 0;
  CHECK(hd_server_list_dead_letters(f->s, f->ukp.public_key, &cursor, dl, 4, buf, sizeof buf) == 2);
  CHECK(dl[1].seq == 2 && dl[1].attempts == 4 && memcmp(dl[1].reason, "worse", 5) == 0);
  /* the client is back, having seen up to 3 */
  CHECK(rc_connect_with(c, f->port, &f->ukp, f->skp.public_key, HD__FEATURE_FAILED) == 0);
  CHECK(rc_resume(c, c->r.welcome.store_id, 3, 10) == 0);
  CHECK_OK(hd_server_requeue_dead_letters_wait(f->s, f->ukp.public_key, &seqs[1], 1, &n));
  CHECK(n == 1);
  /* notice 4 {REQUEUED, 1, 2, 5} (not sent: this client takes no notices), then dead letter 2
   * as event 5 */
  CHECK(RC_UNTIL(c, c->n_got >= 1 && c->got_seq[c->n_got - 1] == 5, 5000));
  CHECK(strcmp(c->got_payload[c->n_got - 1], "xxxxx") == 0);
  CHECK_OK(hd_server_requeue_dead_letters_wait(f->s, f->ukp.public_key, &seqs[1], 1, &n));
  CHECK(n == 0); /* not a dead letter any more */
  /* 3 and 5: the notice went to a client that did not announce NOTICES, so it was dropped */
  CHECK(WAIT_FOR(fx_pending(f) == 2, 5000));
  /* the requeued event is consumed as any other */
  uint64_t five = 5;
  const char *const data[] = {"d5"};
  CHECK(rc_consumed(c, &five, data, 1) == 0);
  CHECK(WAIT_FOR(atomic_load(&f->n_batches) == 1, 5000));
  CHECK_OK(hd_consumed_complete_all(f->batches[0], 1));
  /* DONE 5 (after DONE 4 of the dropped notice, a number this client never saw: ignored) */
  CHECK(RC_UNTIL(c, c->n_done >= 1 && c->done_seqs[c->n_done - 1] == 5, 5000));
  /* dead letter 1: deleted for good */
  CHECK_OK(hd_server_delete_dead_letters_wait(f->s, f->ukp.public_key, NULL, 0, &n));
  CHECK(n == 1);
  CHECK_OK(hd_server_dead_letter_count(f->s, NULL, &n));
  CHECK(n == 0);
  hd_server_stats_t st;
  CHECK_OK(hdt_server_stats(f->s, &st));
  CHECK(st.events_requeued == 1 && st.dead_letters == 0 && st.events_dead == 0);
  CHECK_RC(hd_server_requeue_dead_letters(f->s, NULL, NULL, 0, NULL, NULL), HD_EINVAL);
  CHECK_RC(hd_server_delete_dead_letters(f->s, f->ukp.public_key, NULL, 1, NULL, NULL),
           HD_EINVAL);
  CHECK_RC(hd_server_dead_letter_count(f->s, NULL, NULL), HD_EINVAL);
}

static void dead_letter_restart_and_requeue(void) {
  fx_t f;
  CHECK(fx_init(&f, 1, 0) == 0);
  rc_t c;
  memset(&c, 0, sizeof c);
  c.r.fd = -1;
  requeue_body(&f, &c);
  if (c.r.fd >= 0) rc_free(&c);
  fx_done(&f);
}

static uint64_t fx_expired(fx_t *f) {
  hd_server_stats_t st;
  return hdt_server_stats(f->s, &st) == 0 ? st.events_expired : UINT64_MAX;
}

/* A client of an earlier release (no NOTICES in its HELLO, as this raw client) never gets a
 * notice: the pump skips it and deletes it as confirmed, without credit, and the events after it
 * flow; the server ends with nothing pending. */
static void notices_skipped_for_old_client(void) {
  fx_t f;
  CHECK(fx_init(&f, 0, 0) == 0);
  hd_add_options_t ao;
  CHECK_OK(hd_add_options_init(&ao, HD_ADD_OPTIONS_VERSION));
  ao.ttl_ms = 50;
  hd_add_result_t r;
  CHECK_OK(hd_server_add_event_v2_wait(f.s, f.ukp.public_key, "old", 3, &ao, &r));
  CHECK(r.seq == 1);
  CHECK(WAIT_FOR(fx_expired(&f) == 1, 5000));
  CHECK(fx_pending(&f) == 1); /* its notice */
  CHECK(add_many(&f, 2, 5) == 0);
  rc_t c;
  CHECK(fx_connect(&f, &c) == 0);
  c.auto_consume = 1;
  c.last_seq = 2; /* the expired event and the notice are never sent: 3 comes first */
  CHECK(rc_resume(&c, NULL, 0, 2) == 0); /* a window of exactly the two events */
  CHECK(RC_UNTIL(&c, c.received == 2 && fx_pending(&f) == 0, 5000));
  CHECK(c.out_of_order == 0 && c.last_seq == 4 && c.notices == 0);
  hd_server_stats_t st;
  CHECK_OK(hdt_server_stats(f.s, &st));
  CHECK(st.events_expired == 1 && st.events_delivered == 2);
  CHECK(WAIT_FOR(hdt_server_stats(f.s, &st) == 0 && st.events_confirmed == 3, 5000));
  rc_free(&c);
  fx_done(&f);
}

#define TESTS(X)                                                                                  \
  X(add_durable)                                                                                  \
  X(catchup_window)                                                                               \
  X(consumed_flow)                                                                                \
  X(pause_and_restart)                                                                            \
  X(folder_in_use)                                                                                \
  X(batch_after_close)                                                                            \
  X(wrong_direction)                                                                              \
  X(bye_credit_before_resume)                                                                     \
  X(bye_resume_twice)                                                                             \
  X(bye_done_from_client)                                                                         \
  X(bye_bad_consumed)                                                                             \
  X(bye_failed_unannounced)                                                                       \
  X(backpressure)                                                                                 \
  X(huge_report_bounded)                                                                          \
  X(report_sliced)                                                                                \
  X(resume_epochs)                                                                                \
  X(admin_list_and_delete)                                                                        \
  X(failed_to_dead_letter)                                                                        \
  X(dead_letter_restart_and_requeue)                                                              \
  X(notices_skipped_for_old_client)
HD_TEST_MAIN(TESTS)
