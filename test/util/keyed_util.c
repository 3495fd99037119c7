/* Adds with keys and fan-outs on the fault VFS: keyed_util.h. */
#include "keyed_util.h"

#include <sqlite3.h>

#define KU_STR2(x) #x
#define KU_STR(x) KU_STR2(x)

static char ku_name[32] = "keyed server"; /* the log callback's user_data starts with a name */

int ku_init(ku_t *k, const char *tag, int normal) {
  memset(k, 0, sizeof *k);
  k->d = -1;
  k->normal = normal;
  if (fv_install() != 0) return -1;
  k->dir = hdt_mkdtemp(tag);
  if (k->dir == NULL) return -1;
  k->d = fv_domain(k->dir);
  if (k->d < 0 || hd_keypair_generate(&k->kp) != 0 || hd_keypair_generate(&k->a) != 0 ||
      hd_keypair_generate(&k->b) != 0) {
    return -1;
  }
  for (int i = 0; i < KU_FAN; i++) {
    if (hd_keypair_generate(&k->f[i]) != 0) return -1;
  }
  if (hd_keypair_generate(&k->e[0]) != 0 || hd_keypair_generate(&k->e[1]) != 0) return -1;
  return 0;
}

int ku_start(ku_t *k) {
  hd_server_options_t o;
  hd_server_options_init(&o, HD_SERVER_OPTIONS_VERSION);
  o.keypair = &k->kp;
  o.topic = DU_TOPIC;
  o.listen = "127.0.0.1:0";
  o.data_dir = k->dir;
  o.sync_normal = k->normal;
  o.log = du_log_cb;
  o.user_data = ku_name;
  o.log_level = HD_LOG_WARN;
  int rc = hd_server_create(&k->h, &o);
  if (rc != 0) k->h = NULL;
  return rc;
}

void ku_stop(ku_t *k) {
  if (k->h != NULL) hd_server_close_wait(k->h);
  k->h = NULL;
}

static long wal_syncs(ku_t *k) {
  fv_counts_t c;
  fv_counts(k->d, &c);
  return c.wal_syncs;
}

static int expected(int rc) { return rc == 0 || rc == HD_EIO || rc == HD_ENOSPC; }

int ku_step(ku_t *k) {
  if (k->n >= KU_MAX || k->h == NULL) return HD_EINVAL;
  int i = k->n++;
  char text[16], key[8];
  hd_add_options_t o;
  hd_add_result_t r;
  /* A: dedup over KU_KEYS keys, one payload per key (a repeat is no conflict) */
  hd_add_options_init(&o, HD_ADD_OPTIONS_VERSION);
  snprintf(key, sizeof key, "d%d", i % KU_KEYS);
  snprintf(text, sizeof text, "a%d", i % KU_KEYS);
  o.dedup_key = (const uint8_t *)key;
  o.dedup_key_len = strlen(key);
  memset(&r, 0, sizeof r);
  ku_add_t *x = &k->dedup[i];
  x->rc = hd_server_add_event_v2_wait(k->h, k->a.public_key, text, strlen(text), &o, &r);
  x->seq = r.seq;
  x->flags = r.flags;
  x->syncs = wal_syncs(k);
  /* B: one collapse key: each add replaces the one before (nothing is sent: no client) */
  hd_add_options_init(&o, HD_ADD_OPTIONS_VERSION);
  o.collapse_key = (const uint8_t *)"c";
  o.collapse_key_len = 1;
  snprintf(text, sizeof text, "b%d", i);
  memset(&r, 0, sizeof r);
  x = &k->collapse[i];
  x->rc = hd_server_add_event_v2_wait(k->h, k->b.public_key, text, strlen(text), &o, &r);
  x->seq = r.seq;
  x->flags = r.flags;
  x->syncs = wal_syncs(k);
  /* the fan-out */
  uint8_t users[32 * KU_FAN];
  for (int u = 0; u < KU_FAN; u++) memcpy(users + 32 * u, k->f[u].public_key, 32);
  hd_fanout_result_t res[KU_FAN];
  snprintf(text, sizeof text, "f%d", i);
  x = &k->fan[i];
  x->rc = hd_server_add_fanout_wait(k->h, users, KU_FAN, text, strlen(text), NULL, res);
  for (int u = 0; x->rc == 0 && u < KU_FAN; u++) {
    if (res[u].status != 0) x->rc = res[u].status;
  }
  x->syncs = wal_syncs(k);
  /* add_events: E0, E1, E0 in one call */
  char e_text[3][16];
  hd_add_item_t items[3];
  for (int j = 0; j < 3; j++) {
    snprintf(e_text[j], sizeof e_text[j], "e%d.%d", i, j);
    items[j] = (hd_add_item_t){k->e[j % 2].public_key, e_text[j], strlen(e_text[j]), NULL};
  }
  hd_fanout_result_t eres[3];
  ku_add_t *y = &k->many[i];
  y->rc = hd_server_add_events_wait(k->h, items, 3, eres);
  for (int j = 0; y->rc == 0 && j < 3; j++) {
    if (eres[j].status != 0) y->rc = eres[j].status;
  }
  if (y->rc == 0 && eres[2].result.seq != eres[0].result.seq + 1) y->rc = HD_EINVAL; /* order */
  y->syncs = wal_syncs(k);
  int rcs[4] = {k->dedup[i].rc, k->collapse[i].rc, x->rc, y->rc};
  for (int j = 0; j < 4; j++) {
    if (!expected(rcs[j])) {
      fprintf(stderr, "  keyed step %d, add %d: %s (%s)\n", i, j, hd_err_name(rcs[j]),
              hd_last_error_message());
      return rcs[j];
    }
  }
  return 0;
}

int ku_cut(ku_t *k, int mode, uint64_t seed) {
  k->syncs_at_cut = wal_syncs(k);
  fv_cut_now(k->d);
  ku_stop(k); /* fails where the store could not write: expected */
  fv_revert_report_t rep;
  if (fv_revert(k->d, mode, seed, &rep) != 0) return HD_EIO;
  return ku_start(k);
}

/* Acknowledged, and (NORMAL) a WAL sync came after it before the cut. */
static int durable(const ku_t *k, const ku_add_t *x) {
  return x->rc == 0 && (!k->normal || k->syncs_at_cut > x->syncs);
}

static int64_t sql_count(const char *dir, const char *sql) {
  char path[300];
  snprintf(path, sizeof path, "%s/hyperdown.db", dir);
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  int64_t v = -1;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
      sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
    v = sqlite3_column_int64(st, 0);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

static const char *const consistency[] = {
    "SELECT count(*) FROM users u WHERE pending !="
    "  (SELECT count(*) FROM events e WHERE e.user_no = u.user_no)",
    "SELECT count(*) FROM users u WHERE bytes != (SELECT coalesce(sum(size), 0) FROM events e"
    "  WHERE e.user_no = u.user_no AND kind = 0)",
    "SELECT count(*) FROM users u WHERE dedup_keys !="
    "  (SELECT count(*) FROM dedup d WHERE d.user_no = u.user_no)",
    "SELECT count(*) FROM payloads p WHERE refs !="
    "  (SELECT count(*) FROM events e WHERE e.payload_no = p.no)",
    "SELECT count(*) FROM events WHERE payload_no IS NOT NULL AND"
    "  payload_no NOT IN (SELECT no FROM payloads)",
    "SELECT count(*) FROM payloads WHERE refs != " KU_STR(KU_FAN),
};

/* add_events: E1 holds at least the calls that must have lasted, at most the tried ones; E0 holds
 * twice as many, each call's two items next to each other (e<i>.0 then e<i>.2), calls in order. */
static int check_many(ku_t *k) {
  uint64_t lasting = 0, tried = (uint64_t)k->n, held[2] = {0, 0};
  for (int i = 0; i < k->n; i++) lasting += durable(k, &k->many[i]);
  for (int u = 0; u < 2; u++) {
    if (hd_server_pending(k->h, k->e[u].public_key, &held[u]) != 0) held[u] = UINT64_MAX;
  }
  if (held[1] < lasting || held[1] > tried || held[0] != 2 * held[1]) {
    fprintf(stderr, "  add_events: E0 holds %llu, E1 %llu (lasting %llu, tried %llu)\n",
            (unsigned long long)held[0], (unsigned long long)held[1],
            (unsigned long long)lasting, (unsigned long long)tried);
    return 0;
  }
  hd_event_info_t ev[2 * KU_MAX];
  static uint8_t buf[16 * 2 * KU_MAX];
  uint64_t cursor = 0;
  int n = hd_server_list_events(k->h, k->e[0].public_key, &cursor, ev, 2 * KU_MAX, buf,
                                sizeof buf);
  int prev = -1;
  for (int j = 0; j + 1 < n; j += 2) {
    int c0 = -1, c2 = -1, i0 = -1, i2 = -1;
    char t0[16], t2[16];
    snprintf(t0, sizeof t0, "%.*s", (int)ev[j].payload_len, (const char *)ev[j].payload);
    snprintf(t2, sizeof t2, "%.*s", (int)ev[j + 1].payload_len, (const char *)ev[j + 1].payload);
    if (sscanf(t0, "e%d.%d", &c0, &i0) != 2 || sscanf(t2, "e%d.%d", &c2, &i2) != 2 || c0 != c2 ||
        i0 != 0 || i2 != 2 || c0 <= prev || ev[j + 1].seq != ev[j].seq + 1) {
      fprintf(stderr, "  add_events: E0's events %d and %d are %s and %s\n", j, j + 1, t0, t2);
      return 0;
    }
    prev = c0;
  }
  if (n < 0 || (uint64_t)n != held[0]) {
    fprintf(stderr, "  add_events: E0 lists %d of its %llu events\n", n,
            (unsigned long long)held[0]);
    return 0;
  }
  return 1;
}

static int check_api(ku_t *k) {
  int ok = 1;
  /* dedup: the first acknowledged add of each key that must have lasted */
  for (int key = 0; key < KU_KEYS; key++) {
    const ku_add_t *first = NULL;
    for (int i = key; i < k->n && first == NULL; i += KU_KEYS) {
      if (k->dedup[i].rc == 0) first = &k->dedup[i];
    }
    if (first == NULL || !durable(k, first)) continue;
    char text[16], name[8];
    snprintf(text, sizeof text, "a%d", key);
    snprintf(name, sizeof name, "d%d", key);
    hd_add_options_t o;
    hd_add_options_init(&o, HD_ADD_OPTIONS_VERSION);
    o.dedup_key = (const uint8_t *)name;
    o.dedup_key_len = strlen(name);
    hd_add_result_t r = {0};
    int rc = hd_server_add_event_v2_wait(k->h, k->a.public_key, text, strlen(text), &o, &r);
    if (rc != 0 || r.flags != HD_ADD_DUPLICATE || r.seq != first->seq) {
      fprintf(stderr, "  key %s: rc %d, flags %u, seq %llu; its first add had %llu\n", name, rc,
              r.flags, (unsigned long long)r.seq, (unsigned long long)first->seq);
      ok = 0;
    }
  }
  /* collapse: B holds at most one event; the latest that must have lasted, or a later one */
  int last = -1;
  for (int i = 0; i < k->n; i++) {
    if (k->collapse[i].rc == 0) last = i;
  }
  hd_event_info_t ev[4];
  uint8_t buf[64];
  uint64_t cursor = 0;
  int n = hd_server_list_events(k->h, k->b.public_key, &cursor, ev, 4, buf, sizeof buf);
  if (n < 0 || n > 1) {
    fprintf(stderr, "  B holds %d events (collapse: at most one)\n", n);
    ok = 0;
  } else if (last >= 0 && durable(k, &k->collapse[last]) &&
             (n != 1 || ev[0].seq < k->collapse[last].seq)) {
    fprintf(stderr, "  B lost its acknowledged collapse add %llu\n",
            (unsigned long long)k->collapse[last].seq);
    ok = 0;
  }
  /* fan-out: every user holds at least the ones that must have lasted, at most the tried ones */
  uint64_t lasting = 0, tried = (uint64_t)k->n, first_count = UINT64_MAX;
  for (int i = 0; i < k->n; i++) lasting += durable(k, &k->fan[i]);
  for (int u = 0; u < KU_FAN; u++) {
    uint64_t p = 0;
    int rc = hd_server_pending(k->h, k->f[u].public_key, &p);
    if (u == 0) first_count = p;
    if (rc != 0 || p < lasting || p > tried || p != first_count) {
      fprintf(stderr, "  fan-out user %d holds %llu (lasting %llu, tried %llu, user 0 %llu)\n",
              u, (unsigned long long)p, (unsigned long long)lasting, (unsigned long long)tried,
              (unsigned long long)first_count);
      ok = 0;
    }
  }
  return check_many(k) && ok;
}

int ku_verify(ku_t *k) {
  int ok = k->h != NULL && check_api(k);
  ku_stop(k);
  for (size_t i = 0; i < sizeof consistency / sizeof consistency[0]; i++) {
    int64_t bad = sql_count(k->dir, consistency[i]);
    if (bad != 0) {
      fprintf(stderr, "  inconsistent store (%lld): %s\n", (long long)bad, consistency[i]);
      ok = 0;
    }
  }
  return ok;
}

void ku_free(ku_t *k) {
  ku_stop(k);
  if (k->d >= 0) fv_domain_forget(k->d);
  if (k->dir != NULL) hdt_rmrf(k->dir);
  free(k->dir);
  k->dir = NULL;
  k->d = -1;
}
