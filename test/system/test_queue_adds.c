/* Adds with options and fan-out through the public API (hyperdown.h "Queue semantics"):
 * hd_server_add_event_v2_wait with dedup and collapse keys under the per-user limits, the stats
 * they count, hd_server_add_fanout_wait (invalid keys and users over their limit fail alone), and
 * collapse with a live client: an event its session pushed is never replaced, also after the
 * server restarted; hd_server_add_events(_wait): many users' items in one commit, a user's in
 * item order, failures alone (limit, key) or whole (an invalid item: HD_EINVAL, nothing queued),
 * HD_ETHREAD on the loop, pushed to connected clients. Servers on 127.0.0.1 port 0, folders
 * under /tmp, every wait bounded. */
#include "harness.h"
#include "delivery_util.h"

static const hd_add_options_t *keys(hd_add_options_t *o, const char *dedup, const char *collapse) {
  hd_add_options_init(o, HD_ADD_OPTIONS_VERSION);
  if (dedup != NULL) {
    o->dedup_key = (const uint8_t *)dedup;
    o->dedup_key_len = strlen(dedup);
  }
  if (collapse != NULL) {
    o->collapse_key = (const uint8_t *)collapse;
    o->collapse_key_len = strlen(collapse);
  }
  return o;
}

typedef struct srv {
  hd_keypair_t kp;
  char *dir;
  hd_server_t *h;
} srv_t;

static int srv_start(srv_t *s, uint64_t max_pending, int overflow) {
  if (s->dir == NULL) {
    hd_keypair_generate(&s->kp);
    s->dir = hdt_mkdtemp("queue-adds");
    if (s->dir == NULL) return -1;
  }
  hd_server_options_t o;
  hd_server_options_init(&o, HD_SERVER_OPTIONS_VERSION);
  o.keypair = &s->kp;
  o.topic = DU_TOPIC;
  o.listen = "127.0.0.1:0";
  o.data_dir = s->dir;
  o.max_pending_per_user = max_pending;
  o.overflow = overflow;
  return hd_server_create(&s->h, &o);
}

static void srv_free(srv_t *s) {
  if (s->h != NULL) hd_server_close_wait(s->h);
  s->h = NULL;
  if (s->dir != NULL) hdt_rmrf(s->dir);
  free(s->dir);
  s->dir = NULL;
}

static int add(srv_t *s, const hd_keypair_t *user, const char *text, const char *dedup,
               const char *collapse, hd_add_result_t *r) {
  hd_add_options_t o;
  memset(r, 0, sizeof *r);
  return hd_server_add_event_v2_wait(s->h, user->public_key, text, strlen(text),
                                     keys(&o, dedup, collapse), r);
}

/* Dedup, collapse and a limit (on a plain add too) through the server, and the stats v3
 * counters; a v2 stats struct gets none of them. */
static void adds_with_options_body(srv_t *s) {
  hd_keypair_t u1, u2;
  hd_keypair_generate(&u1);
  hd_keypair_generate(&u2);
  CHECK_OK(srv_start(s, 2, HD_OVERFLOW_REJECT));
  hd_add_result_t r;
  CHECK_OK(add(s, &u1, "a", "k", NULL, &r));
  CHECK(r.seq == 1 && r.flags == 0);
  CHECK_OK(add(s, &u1, "a", "k", NULL, &r));
  CHECK(r.seq == 1 && r.flags == HD_ADD_DUPLICATE);
  CHECK_OK(add(s, &u1, "b", NULL, NULL, &r));
  CHECK(r.seq == 2);
  CHECK_RC(add(s, &u1, "c", NULL, NULL, &r), HD_ELIMIT);
  uint64_t seq = 99; /* a plain add is limited too */
  CHECK_RC(hd_server_add_event_wait(s->h, u1.public_key, "d", 1, &seq), HD_ELIMIT);
  CHECK_OK(add(s, &u2, "x", NULL, "ck", &r));
  CHECK_OK(add(s, &u2, "y", NULL, "ck", &r));
  CHECK(r.seq == 2 && r.flags == HD_ADD_REPLACED && r.replaced_seq == 1);
  uint64_t n = 0;
  CHECK_OK(hd_server_pending(s->h, u2.public_key, &n));
  CHECK(n == 1);
  hd_server_stats_t st;
  CHECK_OK(hdt_server_stats(s->h, &st));
  CHECK(st.events_added == 4 && st.adds_duplicate == 1 && st.events_replaced == 1);
  CHECK(st.adds_limited == 2 && st.events_dropped == 0);
  hd_server_stats_t v2;
  memset(&v2, 0xAB, sizeof v2);
  v2.version = 2;
  CHECK_OK(hd_server_stats(s->h, &v2));
  CHECK(v2.events_added == 4 && v2.adds_duplicate == 0xABABABABABABABABull);
  hd_add_options_t o;
  uint8_t long_key[HD_KEY_MAX_BYTES + 1] = {0};
  keys(&o, NULL, NULL);
  o.dedup_key = long_key;
  o.dedup_key_len = sizeof long_key;
  CHECK_RC(hd_server_add_event_v2_wait(s->h, u1.public_key, "z", 1, &o, NULL), HD_EINVAL);
}

static void adds_with_options(void) {
  srv_t s = {0};
  adds_with_options_body(&s);
  srv_free(&s);
}

/* Drop-oldest through the server: the add goes in, the oldest goes, a notice takes its place in
 * the count; events_dropped counts it. */
static void drop_oldest_body(srv_t *s) {
  hd_keypair_t u;
  hd_keypair_generate(&u);
  CHECK_OK(srv_start(s, 2, HD_OVERFLOW_DROP_OLDEST));
  hd_add_result_t r;
  CHECK_OK(add(s, &u, "1", NULL, NULL, &r));
  CHECK_OK(add(s, &u, "2", NULL, NULL, &r));
  CHECK_OK(add(s, &u, "3", NULL, NULL, &r));
  CHECK(r.flags == HD_ADD_DROPPED && r.dropped == 1 && r.seq == 4); /* 3: the notice */
  uint64_t n = 0;
  CHECK_OK(hd_server_pending(s->h, u.public_key, &n));
  CHECK(n == 3);
  hd_server_stats_t st;
  CHECK_OK(hdt_server_stats(s->h, &st));
  CHECK(st.events_dropped == 1 && st.adds_limited == 0 && st.events_added == 3);
}

static void drop_oldest(void) {
  srv_t s = {0};
  drop_oldest_body(&s);
  srv_free(&s);
}

/* 1000 users in one call: each gets the event, an invalid key fails alone (HD_EKEY), a user at
 * its limit fails alone (HD_ELIMIT); bad calls fail whole. */
#define FAN 1000
static void fanout_body(srv_t *s, hd_keypair_t *kps, uint8_t *users, hd_fanout_result_t *res) {
  CHECK_OK(srv_start(s, 1, HD_OVERFLOW_REJECT));
  for (int i = 0; i < FAN; i++) {
    CHECK_OK(hd_keypair_generate(&kps[i]));
    memcpy(users + 32 * i, kps[i].public_key, 32);
  }
  memset(users + 32 * FAN, 0, 32); /* not a valid key */
  hd_add_result_t r;
  CHECK_OK(add(s, &kps[10], "full", NULL, NULL, &r));
  hd_server_stats_t st0, st1;
  CHECK_OK(hdt_server_stats(s->h, &st0));
  CHECK_OK(hd_server_add_fanout_wait(s->h, users, FAN + 1, "news", 4, NULL, res));
  CHECK_OK(hdt_server_stats(s->h, &st1));
  for (int i = 0; i < FAN; i++) {
    CHECK(res[i].status == (i == 10 ? HD_ELIMIT : 0));
    if (i != 10) CHECK(res[i].result.seq == 1);
  }
  CHECK(res[FAN].status == HD_EKEY);
  CHECK(st1.events_added == st0.events_added + FAN - 1 && st1.adds_limited == 1);
  CHECK(st1.commits == st0.commits + 1);
  uint64_t n = 0;
  CHECK_OK(hd_server_pending(s->h, kps[500].public_key, &n));
  CHECK(n == 1);
  CHECK_RC(hd_server_add_fanout_wait(s->h, users, 0, "news", 4, NULL, res), HD_EINVAL);
  CHECK_RC(hd_server_add_fanout_wait(s->h, users, HD_FANOUT_MAX_USERS + 1, "news", 4, NULL, res),
           HD_EINVAL);
  CHECK_RC(hd_server_add_fanout_wait(s->h, users, 2, NULL, 0, NULL, res), HD_EINVAL);
}

static void fanout(void) {
  srv_t s = {0};
  hd_keypair_t *kps = calloc(FAN, sizeof *kps);
  uint8_t *users = calloc(FAN + 1, 32);
  hd_fanout_result_t *res = calloc(FAN + 1, sizeof *res);
  if (kps != NULL && users != NULL && res != NULL) fanout_body(&s, kps, users, res);
  else CHECK(0);
  srv_free(&s);
  free(kps);
  free(users);
  free(res);
}

/* hd_server_list_events shows a fan-out's payload (read through R_PAGE). */
static void fanout_listed_body(srv_t *s) {
  hd_keypair_t a, b;
  hd_keypair_generate(&a);
  hd_keypair_generate(&b);
  CHECK_OK(srv_start(s, 0, HD_OVERFLOW_REJECT));
  uint8_t users[64];
  memcpy(users, a.public_key, 32);
  memcpy(users + 32, b.public_key, 32);
  CHECK_OK(hd_server_add_fanout_wait(s->h, users, 2, "shared", 6, NULL, NULL));
  hd_event_info_t ev[4];
  uint8_t buf[64];
  uint64_t cursor = 0;
  CHECK(hd_server_list_events(s->h, b.public_key, &cursor, ev, 4, buf, sizeof buf) == 1);
  CHECK(ev[0].seq == 1 && ev[0].payload_len == 6 && memcmp(ev[0].payload, "shared", 6) == 0);
}

static void fanout_listed(void) {
  srv_t s = {0};
  fanout_listed_body(&s);
  srv_free(&s);
}

/* A collapse never replaces what the user's session pushed: the client holds event 1 (its
 * handler keeps it), the next add with the key is a new event, delivered too. The mark is
 * written when the session ends, so after a clean restart of the server the next add leaves
 * event 2 alone as well; a user that was never connected gets its event replaced. */
static int add_du(hd_server_t *h, const uint8_t *user, int tag, uint64_t seq, const char *ck,
                  hd_add_result_t *r) {
  uint8_t p[64];
  size_t n = du_payload(p, sizeof p, tag, seq, 0);
  hd_add_options_t o;
  return hd_server_add_event_v2_wait(h, user, p, n, keys(&o, NULL, ck), r);
}

static void collapse_live_body(du_world_t *w) {
  CHECK_OK(du_world_init(w, "queue-adds", 2, 16, DU_START_SERVER));
  du_client_t *c = &w->c[0];
  c->mode = DU_HOLD;
  CHECK_OK(du_client_start(c));
  DCHECK(WAIT_FOR(du_client_is_connected(c), 5000));
  hd_add_result_t r;
  CHECK_OK(add_du(w->s.h, c->kp.public_key, 1, 1, "k", &r));
  DCHECK(WAIT_FOR(du_client_calls(c, 1) == 1, 5000));
  CHECK_OK(add_du(w->s.h, c->kp.public_key, 1, 2, "k", &r));
  CHECK(r.seq == 2 && r.flags == 0);
  hd_server_stats_t st; /* sent too (the handler gets it once it gave back event 1) */
  DCHECK(WAIT_FOR(du_server_stats(&w->s, &st) == 0 && st.events_delivered == 2, 5000));
  /* user 2 has no client: replaced */
  CHECK_OK(add_du(w->s.h, w->c[1].kp.public_key, 2, 1, "k", &r));
  CHECK_OK(add_du(w->s.h, w->c[1].kp.public_key, 2, 2, "k", &r));
  CHECK(r.seq == 2 && r.flags == HD_ADD_REPLACED && r.replaced_seq == 1);
  CHECK_OK(du_client_stop(c)); /* 1 and 2 stay pending: the handler never completed them */
  CHECK_OK(du_server_stop(&w->s));
  CHECK_OK(du_server_start(&w->s));
  CHECK_OK(add_du(w->s.h, c->kp.public_key, 1, 3, "k", &r));
  CHECK(r.seq == 3 && r.flags == 0);
  CHECK(du_server_pending(&w->s, c->kp.public_key) == 3);
}
DU_WORLD_TEST(collapse_with_live_client, collapse_live_body)

/* ---- many events at once (hd_server_add_events) -------------------------------------------- */

static hd_add_item_t item(const hd_keypair_t *user, const char *text, const hd_add_options_t *o) {
  hd_add_item_t it = {user->public_key, text, strlen(text), o};
  return it;
}

/* The payloads of `user`'s held events in order, joined by ','. */
static int listed(srv_t *s, const hd_keypair_t *user, char *out, size_t cap) {
  hd_event_info_t ev[16];
  uint8_t buf[512];
  uint64_t cursor = 0;
  int n = hd_server_list_events(s->h, user->public_key, &cursor, ev, 16, buf, sizeof buf);
  size_t at = 0;
  out[0] = '\0';
  for (int i = 0; i < n && at < cap; i++) {
    at += (size_t)snprintf(out + at, cap - at, "%s%.*s", i ? "," : "", (int)ev[i].payload_len,
                           (const char *)ev[i].payload);
  }
  return n;
}

/* Many users in one call (one commit); one user's several items take its numbers in item order,
 * after what it held; a user at its limit fails alone (HD_ELIMIT) and so does a key that is no
 * Ed25519 key (HD_EKEY); a dedup repeat inside the call answers with the call's own first add; a
 * collapse inside the call replaces the call's own earlier add; the stats count each item. */
#define MANY 300
static void add_events_body(srv_t *s, hd_keypair_t *kps, hd_add_item_t *items,
                            hd_fanout_result_t *res) {
  CHECK_OK(srv_start(s, 4, HD_OVERFLOW_REJECT));
  for (int i = 0; i < MANY; i++) CHECK_OK(hd_keypair_generate(&kps[i]));
  hd_keypair_t *a = &kps[0], *lim = &kps[1], *d = &kps[2], *c = &kps[3];
  hd_add_result_t r;
  CHECK_OK(add(s, a, "a0", NULL, NULL, &r));
  CHECK_OK(add(s, lim, "l0", NULL, NULL, &r));
  CHECK_OK(add(s, lim, "l1", NULL, NULL, &r));
  CHECK_OK(add(s, lim, "l2", NULL, NULL, &r));
  hd_keypair_t bad;
  memset(&bad, 0, sizeof bad);
  hd_add_options_t od, oc;
  keys(&od, "once", NULL);
  keys(&oc, NULL, "ck");
  size_t n = 0;
  items[n++] = item(a, "a1", NULL);
  items[n++] = item(lim, "l3", NULL); /* its fourth: fits */
  items[n++] = item(d, "d1", &od);
  items[n++] = item(a, "a2", NULL);
  items[n++] = item(lim, "l4", NULL); /* its fifth: past the limit of 4 */
  items[n++] = item(d, "d1", &od);    /* a repeat of the call's own add */
  items[n++] = item(c, "c1", &oc);
  items[n++] = item(&bad, "x", NULL);
  items[n++] = item(c, "c2", &oc);    /* replaces c1 */
  items[n++] = item(a, "a3", NULL);
  for (int i = 4; i < MANY; i++) items[n++] = item(&kps[i], "news", NULL);
  hd_server_stats_t st0, st1;
  CHECK_OK(hdt_server_stats(s->h, &st0));
  CHECK_OK(hd_server_add_events_wait(s->h, items, n, res));
  CHECK_OK(hdt_server_stats(s->h, &st1));
  CHECK(st1.commits == st0.commits + 1);
  CHECK(res[0].status == 0 && res[0].result.seq == 2);
  CHECK(res[3].status == 0 && res[3].result.seq == 3);
  CHECK(res[9].status == 0 && res[9].result.seq == 4);
  CHECK(res[1].status == 0 && res[1].result.seq == 4);
  CHECK(res[4].status == HD_ELIMIT);
  CHECK(res[2].status == 0 && res[2].result.seq == 1 && res[2].result.flags == 0);
  CHECK(res[5].status == 0 && res[5].result.seq == 1 && res[5].result.flags == HD_ADD_DUPLICATE);
  CHECK(res[6].result.seq == 1 && res[8].result.seq == 2);
  CHECK(res[8].result.flags == HD_ADD_REPLACED && res[8].result.replaced_seq == 1);
  CHECK(res[7].status == HD_EKEY);
  for (size_t i = 10; i < n; i++) CHECK(res[i].status == 0 && res[i].result.seq == 1);
  char text[128];
  CHECK(listed(s, a, text, sizeof text) == 4 && strcmp(text, "a0,a1,a2,a3") == 0);
  CHECK(listed(s, lim, text, sizeof text) == 4 && strcmp(text, "l0,l1,l2,l3") == 0);
  CHECK(listed(s, c, text, sizeof text) == 1 && strcmp(text, "c2") == 0);
  CHECK(listed(s, &kps[MANY - 1], text, sizeof text) == 1 && strcmp(text, "news") == 0);
  /* stored: a1-a3, l3, d1, c1, c2, the others'; c2 replaced c1 */
  CHECK(st1.events_added == st0.events_added + 3 + 1 + 1 + 2 + (MANY - 4));
  CHECK(st1.adds_limited == st0.adds_limited + 1 && st1.adds_duplicate == st0.adds_duplicate + 1);
  CHECK(st1.events_replaced == st0.events_replaced + 1);
  /* every item's user invalid: each fails alone, the call succeeds with nothing stored */
  hd_add_item_t none[2] = {item(&bad, "x", NULL), item(&bad, "y", NULL)};
  res[0].status = res[1].status = 0;
  CHECK_OK(hd_server_add_events_wait(s->h, none, 2, res));
  CHECK(res[0].status == HD_EKEY && res[1].status == HD_EKEY);
  CHECK_OK(hdt_server_stats(s->h, &st0));
  CHECK(st0.events_added == st1.events_added);
}

static void add_events(void) {
  srv_t s = {0};
  hd_keypair_t *kps = calloc(MANY, sizeof *kps);
  hd_add_item_t *items = calloc(MANY + 8, sizeof *items);
  hd_fanout_result_t *res = calloc(MANY + 8, sizeof *res);
  if (kps != NULL && items != NULL && res != NULL) add_events_body(&s, kps, items, res);
  else CHECK(0);
  srv_free(&s);
  free(kps);
  free(items);
  free(res);
}

/* An invalid item fails the call whole with HD_EINVAL before anything is queued (no commit, no
 * event), whichever item it is; so do a count of 0 or above the most, and NULL items. */
static void add_events_invalid_body(srv_t *s) {
  hd_keypair_t u;
  hd_keypair_generate(&u);
  CHECK_OK(srv_start(s, 0, HD_OVERFLOW_REJECT));
  hd_add_options_t good, long_key, newer;
  keys(&good, "k", NULL);
  uint8_t key[HD_KEY_MAX_BYTES + 1] = {0};
  keys(&long_key, NULL, NULL);
  long_key.collapse_key = key;
  long_key.collapse_key_len = sizeof key;
  keys(&newer, NULL, NULL);
  newer.version = HD_ADD_OPTIONS_VERSION + 1;
  static uint8_t big[2 * 1024 * 1024];
  hd_add_item_t items[3] = {item(&u, "ok", &good), item(&u, "ok", NULL), item(&u, "ok", NULL)};
  hd_add_item_t bad[6] = {
      {NULL, "p", 1, NULL}, {u.public_key, NULL, 1, NULL}, {u.public_key, "p", 0, NULL},
      {u.public_key, big, sizeof big, NULL}, item(&u, "p", &long_key), item(&u, "p", &newer)};
  int want[6] = {HD_EINVAL, HD_EINVAL, HD_EINVAL, HD_EINVAL, HD_EINVAL, HD_EVERSION};
  hd_keypair_t other;
  hd_keypair_generate(&other);
  hd_add_item_t first = item(&other, "first", NULL); /* the store's first commit is behind us */
  CHECK_OK(hd_server_add_events_wait(s->h, &first, 1, NULL));
  hd_server_stats_t st0, st1;
  CHECK_OK(hdt_server_stats(s->h, &st0));
  for (int b = 0; b < 6; b++) {
    items[2] = bad[b];
    CHECK_RC(hd_server_add_events(s->h, items, 3, NULL, NULL), want[b]);
    CHECK(strstr(hd_last_error_message(), "item 2") != NULL);
    CHECK_RC(hd_server_add_events_wait(s->h, items, 3, NULL), want[b]);
  }
  CHECK_RC(hd_server_add_events_wait(s->h, items, 0, NULL), HD_EINVAL);
  CHECK_RC(hd_server_add_events_wait(s->h, items, HD_ADD_EVENTS_MAX + 1, NULL), HD_EINVAL);
  CHECK_RC(hd_server_add_events_wait(s->h, NULL, 1, NULL), HD_EINVAL);
  CHECK_RC(hd_server_add_events_wait(NULL, items, 1, NULL), HD_EINVAL);
  CHECK(hd_add_events_max() == HD_ADD_EVENTS_MAX);
  hdt_sleep_ms(50); /* anything queued would have committed */
  CHECK_OK(hdt_server_stats(s->h, &st1));
  CHECK(st1.commits == st0.commits && st1.events_added == st0.events_added);
  uint64_t n = 99;
  CHECK_OK(hd_server_pending(s->h, u.public_key, &n));
  CHECK(n == 0);
}

static void add_events_invalid(void) {
  srv_t s = {0};
  add_events_invalid_body(&s);
  srv_free(&s);
}

/* The blocking form on the server's loop thread (in a callback) would wait for itself:
 * HD_ETHREAD, and nothing added; the callback form works there and answers once. */
typedef struct on_loop {
  hd_server_t *h;
  const hd_add_item_t *items;
  atomic_int wait_rc, inner_status, inner_calls, outer_calls;
  hd_fanout_result_t inner[2];
} on_loop_t;

static void inner_done(void *data, int status, const hd_fanout_result_t *r, size_t n) {
  on_loop_t *x = data;
  if (status == 0 && n == 2) memcpy(x->inner, r, sizeof x->inner);
  atomic_store(&x->inner_status, status);
  atomic_fetch_add(&x->inner_calls, 1);
}

static void outer_done(void *data, int status, const hd_fanout_result_t *r, size_t n) {
  on_loop_t *x = data;
  (void)status;
  (void)r;
  (void)n;
  atomic_store(&x->wait_rc, hd_server_add_events_wait(x->h, x->items, 2, NULL));
  hd_server_add_events(x->h, x->items, 2, inner_done, x);
  atomic_fetch_add(&x->outer_calls, 1);
}

static void add_events_threads_body(srv_t *s) {
  hd_keypair_t u;
  hd_keypair_generate(&u);
  CHECK_OK(srv_start(s, 0, HD_OVERFLOW_REJECT));
  hd_add_item_t items[2] = {item(&u, "first", NULL), item(&u, "second", NULL)};
  static on_loop_t x;
  memset(&x, 0, sizeof x);
  x.h = s->h;
  x.items = items;
  atomic_store(&x.inner_status, 1);
  CHECK_OK(hd_server_add_events(s->h, items, 1, outer_done, &x));
  CHECK(WAIT_FOR(atomic_load(&x.inner_calls) == 1, 5000));
  CHECK(atomic_load(&x.outer_calls) == 1 && atomic_load(&x.wait_rc) == HD_ETHREAD);
  CHECK(atomic_load(&x.inner_status) == 0);
  CHECK(x.inner[0].result.seq == 2 && x.inner[1].result.seq == 3);
  uint64_t n = 0;
  CHECK_OK(hd_server_pending(s->h, u.public_key, &n));
  CHECK(n == 3); /* first (alone), then first and second: the blocking call added nothing */
}

static void add_events_threads(void) {
  srv_t s = {0};
  add_events_threads_body(&s);
  srv_free(&s);
}

/* Pushed to online users after the commit, in order: three connected clients get their items of
 * one call, each user its own numbers 1..3, each handled once. */
static void add_events_live_body(du_world_t *w) {
  CHECK_OK(du_world_init(w, "queue-adds-many", 3, 16, DU_START_SERVER | DU_START_CLIENTS));
  for (int i = 0; i < 3; i++) DCHECK(WAIT_FOR(du_client_is_connected(&w->c[i]), 5000));
  uint8_t p[9][64];
  hd_add_item_t items[9];
  for (int k = 0; k < 9; k++) { /* round robin over the users: 1, 2, 3, 1, 2, 3... */
    int ui = k % 3;
    size_t len = du_payload(p[k], sizeof p[k], ui + 1, (uint64_t)(k / 3 + 1), 0);
    items[k] = (hd_add_item_t){w->c[ui].kp.public_key, p[k], len, NULL};
  }
  hd_fanout_result_t res[9];
  CHECK_OK(hd_server_add_events_wait(w->s.h, items, 9, res));
  for (int k = 0; k < 9; k++) {
    CHECK(res[k].status == 0 && res[k].result.seq == (uint64_t)(k / 3 + 1));
  }
  for (int i = 0; i < 3; i++) DCHECK(du_all_done(&w->s, i, &w->c[i], 3, 1, 1, 10000));
}
DU_WORLD_TEST(add_events_live, add_events_live_body)

#define TESTS(X)                                                                                  \
  X(adds_with_options)                                                                            \
  X(drop_oldest)                                                                                  \
  X(fanout)                                                                                       \
  X(fanout_listed)                                                                                \
  X(collapse_with_live_client)                                                                    \
  X(add_events)                                                                                   \
  X(add_events_invalid)                                                                           \
  X(add_events_threads)                                                                           \
  X(add_events_live)
HD_TEST_MAIN(TESTS)
