/* hd_server_metrics (metrics.h): the counters read on the loop thread the way hd_server_stats
 * reads them, rendered in the Prometheus text exposition format 0.0.4 (docs/OPERATIONS.md,
 * "Metrics and health", has the table of names). Every family gets # HELP and # TYPE before its
 * samples; counters end in _total and count since create (they start again at 0 with the
 * process, as Prometheus expects of a counter); no sample has a timestamp (the scrape's time is
 * right). */
#include "metrics.h"

#include "options.h"
#include "server.h"
#include "server_events.h"

#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- The snapshot (loop thread) ------------------------------------------------------------- */

static void count_user(void *ctx, const uint8_t key[32], uint64_t pending) {
  (void)key;
  (void)pending;
  (*(uint64_t *)ctx)++;
}

/* Users with pending events: a walk over the store's users a page at a time, like the pending
 * total's sum over the same table (one pass per scrape). */
static int users_pending(hd__server_store_t *store, uint64_t *out) {
  enum { PAGE = 4096 };
  uint64_t cursor = 0;
  *out = 0;
  for (;;) {
    int n = store->vt->pending_users(store, &cursor, PAGE, count_user, out);
    if (n < 0) return n;
    if (n < PAGE) return 0;
  }
}

int hd__metrics_read(hd_server_t *server, hd__metrics_t *out) {
  memset(out, 0, sizeof *out);
  hd__server_events_t *ev = hd__server_events_of(server);
  if (ev == NULL || ev->closing) return hd__error(HD_ECLOSED, "the server is closing");
  out->st.version = HD_SERVER_STATS_VERSION;
  int rc = hd__server_events_stats(ev, &out->st);
  if (rc == 0) rc = users_pending(ev->store, &out->users_pending);
  if (rc != 0) return rc;
  hd__server_conns_t conns;
  hd__server_conns(server, &conns);
  out->st.connected_users = conns.open;
  out->handshaking = conns.handshaking;
  out->handshakes_current_key = conns.handshakes_current_key;
  out->handshakes_next_key = conns.handshakes_next_key;
  out->has_next_key = conns.has_next_key;
  out->epoch_resumes = ev->n_epoch_resumes;
  out->rollbacks = ev->n_rollbacks;
  out->add_durable = ev->add_durable;
  return 0;
}

/* ---- The text (any thread) ------------------------------------------------------------------ */

/* snprintf over a whole text: writes while there is room, counts on past it. */
typedef struct text {
  char *buf;
  size_t cap, len;
} text_t;

static void put(text_t *t, const char *fmt, ...) HD__PRINTF(2, 3);
static void put(text_t *t, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = t->len < t->cap ? vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap)
                          : vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n > 0) t->len += (size_t)n;
}

/* Nanoseconds as decimal seconds, exactly ("0.0005", "2.5", "10"): no binary float between the
 * bucket bounds and the text, so that le values compare as the histogram's bounds do. */
static void put_seconds(text_t *t, uint64_t ns) {
  char frac[16];
  snprintf(frac, sizeof frac, "%09" PRIu64, ns % 1000000000u);
  size_t n = strlen(frac);
  while (n > 0 && frac[n - 1] == '0') frac[--n] = '\0';
  if (n == 0) put(t, "%" PRIu64, ns / 1000000000u);
  else put(t, "%" PRIu64 ".%s", ns / 1000000000u, frac);
}

static void family(text_t *t, const char *name, const char *type, const char *help) {
  put(t, "# HELP hyperdown_%s %s\n# TYPE hyperdown_%s %s\n", name, help, name, type);
}

static void counter(text_t *t, const char *name, const char *help, uint64_t v) {
  family(t, name, "counter", help);
  put(t, "hyperdown_%s %" PRIu64 "\n", name, v);
}

static void gauge(text_t *t, const char *name, const char *help, uint64_t v) {
  family(t, name, "gauge", help);
  put(t, "hyperdown_%s %" PRIu64 "\n", name, v);
}

static void histogram(text_t *t, const char *name, const char *help, const hd__histogram_t *h) {
  family(t, name, "histogram", help);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < HD__HISTOGRAM_BUCKETS; i++) {
    cumulative += h->counts[i];
    put(t, "hyperdown_%s_bucket{le=\"", name);
    put_seconds(t, hd__histogram_bounds_ns[i]);
    put(t, "\"} %" PRIu64 "\n", cumulative);
  }
  /* +Inf is every observation: the count, whatever the buckets add up to */
  put(t, "hyperdown_%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, h->count);
  put(t, "hyperdown_%s_sum ", name);
  put_seconds(t, h->sum_ns);
  put(t, "\nhyperdown_%s_count %" PRIu64 "\n", name, h->count);
}

size_t hd__metrics_render(const hd__metrics_t *m, char *buf, size_t cap) {
  text_t t = {buf, cap, 0};
  if (cap > 0) buf[0] = '\0';
  const hd_server_stats_t *s = &m->st;
  counter(&t, "events_added_total", "Events added and committed (durable) since the server "
          "started.", s->events_added);
  counter(&t, "events_delivered_total", "Events sent to clients (a resend after a reconnect "
          "counts again).", s->events_delivered);
  counter(&t, "events_consumed_total", "Events clients reported consumed.",
          s->events_consumed);
  counter(&t, "events_confirmed_total", "Events completed ok by the application, deleted and "
          "confirmed to their client.", s->events_confirmed);
  counter(&t, "events_failed_total", "Events moved to the dead letters (failed or rejected by "
          "their client).", s->events_dead);
  counter(&t, "events_expired_total", "Events deleted unsent after their time to live.",
          s->events_expired);
  counter(&t, "events_requeued_total", "Dead letters given back to their users.",
          s->events_requeued);
  counter(&t, "events_replaced_total", "Unsent events replaced by a newer one with their "
          "collapse key.", s->events_replaced);
  counter(&t, "events_dropped_total", "Unsent events dropped to make room (overflow "
          "drop-oldest).", s->events_dropped);
  counter(&t, "events_too_large_total", "Events larger than their client's message limit "
          "(that connection closed).", s->events_too_large);
  counter(&t, "adds_duplicate_total", "Adds answered with an earlier add's number "
          "(deduplication key).", s->adds_duplicate);
  counter(&t, "adds_limited_total", "Adds refused at a per-user limit.", s->adds_limited);
  counter(&t, "store_commits_total", "Store transactions committed (one fsync each at most).",
          s->commits);
  counter(&t, "resumes_epoch_total", "Client resumes answered with a new store epoch.",
          m->epoch_resumes);
  counter(&t, "resumes_rolled_back_total", "Client resumes of clients that had seen numbers "
          "the store lost.", m->rollbacks);
  /* key rollover (docs/OPERATIONS.md): the old key may go once its series stops moving */
  family(&t, "handshakes_total", "counter", "Client handshakes authenticated, by the server key "
         "the client dialed (current, or next during a key rollover).");
  put(&t, "hyperdown_handshakes_total{key=\"current\"} %" PRIu64 "\n", m->handshakes_current_key);
  if (m->has_next_key) {
    put(&t, "hyperdown_handshakes_total{key=\"next\"} %" PRIu64 "\n", m->handshakes_next_key);
  }
  gauge(&t, "events_pending", "Events held in the store (not yet confirmed).",
        s->pending_total);
  gauge(&t, "users_pending", "Users holding at least one pending event.", m->users_pending);
  gauge(&t, "connections", "Authenticated client connections (connected users).",
        s->connected_users);
  gauge(&t, "connections_handshaking", "Connections accepted and not authenticated yet.",
        m->handshaking);
  gauge(&t, "dead_letters", "Dead letters held in the store.", s->dead_letters);
  histogram(&t, "add_durable_seconds", "Time from an add's call to its commit, in seconds.",
            &m->add_durable);
  return t.len;
}

/* ---- The public call ------------------------------------------------------------------------ */

typedef struct metrics_call {
  hd_server_t *s;
  hd__metrics_t m;
} metrics_call_t;

static int read_on_loop(void *arg) {
  metrics_call_t *c = arg;
  return hd__metrics_read(c->s, &c->m);
}

int hd_server_metrics(hd_server_t *server, char *buf, size_t cap) {
  if (server == NULL) return hd__error(HD_EINVAL, "server is NULL");
  if (buf == NULL && cap != 0) return hd__error(HD_EINVAL, "buf is NULL with a capacity");
  metrics_call_t c = {.s = server};
  int rc = hd__runtime_call(hd__server_runtime(server), read_on_loop, &c);
  if (rc != 0) return rc;
  size_t len = hd__metrics_render(&c.m, buf, cap);
  /* the text is a few kilobytes: never near INT_MAX */
  return len > INT_MAX ? hd__error(HD_ENOMEM, "metrics text too long") : (int)len;
}
