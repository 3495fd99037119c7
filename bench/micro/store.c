/* Hot path, store append: events/s through the server store's add_event (store.h vtable, group
 * commit on libuv's thread pool, completions on a loop this program runs) and through the public
 * hd_server_add_event (completion callbacks, the server's own loop thread), beside a bare SQLite
 * insert loop with the SAME schema (checked: sqlite_master of both databases must match), the
 * same rows per transaction and the same durability (WAL, synchronous FULL or NORMAL, the
 * store's pragmas), one prepared statement reused. One user, payload 100 B unless --payload.
 *
 *   store [--sync full|normal|both] [--batches 1,10,100,1000,10000] [--payload B]
 *         [--users 1,100,1000,10000 | --users 0]
 *         [--seconds S] [--max-events N] [--dir FOLDER] [--paths bare,users,vtable,api]
 *
 * "users" adds a diagnostic reference: the bare loop plus, per transaction, the store's
 * read and update of the user's row (next_seq, pending).
 *
 * --users: a second sweep at sync FULL and batch 1000 in which the events go round-robin to U
 * distinct users (valid Ed25519 keys), bare loop included (same spread of user_no); "--users 0"
 * skips it. It shows the per-user costs (the batch's user lookups and updates; the public API's
 * key check, cached in a 256-slot direct-mapped cache).
 *
 * Batch size b: the bare loop commits every b rows; the vtable store is opened with
 * max_batch = b and kept 2b adds in flight (a full batch waits while one commits), so its
 * transactions hold b rows (the mean is printed); the public API cannot set max_batch (8192),
 * so it keeps 2b adds in flight and its batches form by themselves (mean printed).
 * Every run gets a fresh folder (removed afterwards) and is bounded by --seconds (default
 * MB_STORE_SECONDS or 1.0) and --max-events (default 3,000,000). MB_REPS reps, interleaved
 * bare / vtable / api, medians printed. */
#include "micro.h"

#include "store.h"
#include "store_writer.h"

#include <hyperdown.h>

#include <ftw.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

/* The server schema, version 1, copied from CSources/store/store_sqlite_server.c
 * (server_migrations[0]); same_schema() checks it against what the store creates. */
static const char *const schema_sql =
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;"
    "CREATE TABLE users(user_no INTEGER PRIMARY KEY, public_key BLOB NOT NULL UNIQUE,"
    "  next_seq INTEGER NOT NULL, pending INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE events(user_no INTEGER NOT NULL, seq INTEGER NOT NULL,"
    "  created_ms INTEGER NOT NULL, payload BLOB NOT NULL,"
    "  PRIMARY KEY(user_no, seq)) WITHOUT ROWID;"
    "INSERT INTO meta(key, value) VALUES('store_id', randomblob(16)), ('pause_ms', 0);";

typedef struct cfg {
  int syncs[2], n_syncs;
  long batches[16];
  int n_batches;
  size_t payload;
  double seconds;
  long max_events;
  char dir[1024];
  int do_bare, do_bare_users, do_vtable, do_api;
  long users_sweep[8]; /* sync FULL, batch 1000: events spread round-robin over U users */
  int n_users_sweep;
  long n_users_max;
} cfg_t;

static cfg_t C;
static uint8_t *payload_buf;
static char schema_checked;

static int64_t now_ms(void) { return (int64_t)(mb_now() * 1000); }

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *f) {
  (void)sb, (void)flag, (void)f;
  remove(p);
  return 0;
}
static void rm_rf(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static void make_run_dir(char *out, size_t cap, const char *what) {
  static int seq;
  snprintf(out, cap, "%s/%s-%d", C.dir, what, seq++);
  rm_rf(out);
  MB_CHECK(mkdir(out, 0700) == 0, "mkdir %s", out);
}

/* ---- bare SQLite ---------------------------------------------------------------------------- */

static void exec_ok(sqlite3 *db, const char *sql) {
  char *err = NULL;
  MB_CHECK(sqlite3_exec(db, sql, NULL, NULL, &err) == SQLITE_OK, "%s: %s", sql, err);
}

static char *schema_of(const char *db_path) {
  sqlite3 *db;
  MB_CHECK(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK, "open");
  sqlite3_stmt *st;
  MB_CHECK(sqlite3_prepare_v2(db,
                              "SELECT group_concat(type || ' ' || name || ': ' || "
                              "coalesce(sql, ''), char(10)) FROM (SELECT * FROM sqlite_master "
                              "ORDER BY type, name)",
                              -1, &st, NULL) == SQLITE_OK,
           "prepare");
  MB_CHECK(sqlite3_step(st) == SQLITE_ROW, "schema row");
  char *s = strdup((const char *)sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  sqlite3_close(db);
  return s;
}

/* events/s of the bare loop: BEGIN IMMEDIATE, b x (bind, step, reset), COMMIT. With `users`,
 * each transaction also does what the store does once per batch per user besides the inserts
 * (read the user's row, write next_seq and pending back): a diagnostic reference. */
static double run_bare(int sync_normal, long b, int users, long n_users, char *db_path_out,
                       size_t cap) {
  char dir[1200], path[1300];
  make_run_dir(dir, sizeof dir, "bare");
  snprintf(path, sizeof path, "%s/hyperdown.db", dir);
  sqlite3 *db;
  MB_CHECK(sqlite3_open_v2(path, &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           NULL) == SQLITE_OK,
           "open %s", path);
  sqlite3_busy_timeout(db, 5000);
  exec_ok(db, "PRAGMA journal_mode=WAL");
  exec_ok(db, sync_normal ? "PRAGMA synchronous=NORMAL" : "PRAGMA synchronous=FULL");
  exec_ok(db, "PRAGMA journal_size_limit=67108864; PRAGMA temp_store=MEMORY");
  exec_ok(db, "BEGIN IMMEDIATE");
  exec_ok(db, schema_sql);
  exec_ok(db, "COMMIT");
  sqlite3_stmt *ins, *begin, *commit;
  MB_CHECK(sqlite3_prepare_v3(db,
                              "INSERT INTO events(user_no, seq, created_ms, payload) "
                              "VALUES(?1, ?2, ?3, ?4)",
                              -1, SQLITE_PREPARE_PERSISTENT, &ins, NULL) == SQLITE_OK,
           "prepare");
  MB_CHECK(sqlite3_prepare_v3(db, "BEGIN IMMEDIATE", -1, SQLITE_PREPARE_PERSISTENT, &begin,
                              NULL) == SQLITE_OK, "prepare");
  MB_CHECK(sqlite3_prepare_v3(db, "COMMIT", -1, SQLITE_PREPARE_PERSISTENT, &commit, NULL) ==
               SQLITE_OK, "prepare");
  sqlite3_stmt *uget, *uset;
  static const uint8_t pk[32] = {7};
  exec_ok(db, "INSERT INTO users(user_no, public_key, next_seq, pending) VALUES(1, x'07', 1, 0)");
  MB_CHECK(sqlite3_prepare_v3(db, "SELECT user_no, next_seq, pending FROM users WHERE "
                              "public_key = ?1", -1, SQLITE_PREPARE_PERSISTENT, &uget, NULL) ==
               SQLITE_OK, "prepare");
  MB_CHECK(sqlite3_prepare_v3(db, "UPDATE users SET next_seq = ?2, pending = ?3 WHERE "
                              "user_no = ?1", -1, SQLITE_PREPARE_PERSISTENT, &uset, NULL) ==
               SQLITE_OK, "prepare");
  long n = 0;
  double t0 = mb_now(), t_end = t0 + C.seconds;
  while (n < C.max_events && mb_now() < t_end) {
    MB_CHECK(sqlite3_step(begin) == SQLITE_DONE, "begin");
    sqlite3_reset(begin);
    if (users) {
      sqlite3_bind_blob(uget, 1, pk, 1, SQLITE_STATIC);
      MB_CHECK(sqlite3_step(uget) == SQLITE_ROW, "user");
      sqlite3_reset(uget);
      sqlite3_bind_int64(uset, 1, 1);
      sqlite3_bind_int64(uset, 2, n + b + 1);
      sqlite3_bind_int64(uset, 3, n + b);
      MB_CHECK(sqlite3_step(uset) == SQLITE_DONE, "update user");
      sqlite3_reset(uset);
    }
    for (long i = 0; i < b; i++) {
      sqlite3_bind_int64(ins, 1, n % n_users + 1); /* round-robin over the users */
      sqlite3_bind_int64(ins, 2, n / n_users + 1);
      n++;
      sqlite3_bind_int64(ins, 3, now_ms());
      sqlite3_bind_blob(ins, 4, payload_buf, (int)C.payload, SQLITE_STATIC);
      MB_CHECK(sqlite3_step(ins) == SQLITE_DONE, "insert: %s", sqlite3_errmsg(db));
      sqlite3_reset(ins);
    }
    MB_CHECK(sqlite3_step(commit) == SQLITE_DONE, "commit: %s", sqlite3_errmsg(db));
    sqlite3_reset(commit);
  }
  double rate = (double)n / (mb_now() - t0);
  sqlite3_finalize(ins);
  sqlite3_finalize(uget);
  sqlite3_finalize(uset);
  sqlite3_finalize(begin);
  sqlite3_finalize(commit);
  sqlite3_close(db);
  if (db_path_out) snprintf(db_path_out, cap, "%s", path);
  else rm_rf(dir);
  return rate;
}

/* ---- the store through its vtable ----------------------------------------------------------- */

static uint8_t (*user_keys)[32]; /* valid Ed25519 public keys, C.n_users_max of them */

typedef struct vrun {
  hd__server_store_t *s;
  long n_users;
  long inflight, submitted, completed, limit;
  int stop, done;
  double t_end, t_last;
} vrun_t;

static void v_submit(vrun_t *v);

static void v_added(void *data, int status, uint64_t value) {
  vrun_t *v = data;
  v->completed++;
  v->inflight--;
  MB_CHECK(status == 0 && (v->n_users > 1 || value == (uint64_t)v->completed), "add: %d %s, seq %llu", status,
           hd_last_error_message(), (unsigned long long)value);
  if (!v->stop && (v->submitted >= C.max_events || mb_now() >= v->t_end)) v->stop = 1;
  if (!v->stop) v_submit(v);
  if (v->stop && v->inflight == 0) {
    v->t_last = mb_now();
    v->done = 1;
  }
}

static void v_submit(vrun_t *v) {
  while (v->inflight < v->limit && v->submitted < C.max_events) {
    const uint8_t *user = user_keys[v->submitted % v->n_users];
    int rc = v->s->vt->add_event(v->s, user, now_ms(), payload_buf, C.payload, v_added, v);
    MB_CHECK(rc == 0, "add_event: %s", hd_last_error_message());
    v->inflight++;
    v->submitted++;
  }
}

static double run_vtable(int sync_normal, long b, long n_users, double *mean_batch,
                         const char *bare_db) {
  char dir[1200];
  make_run_dir(dir, sizeof dir, "vtable");
  uv_loop_t loop;
  MB_CHECK(uv_loop_init(&loop) == 0, "loop");
  hd__store_options_t o;
  memset(&o, 0, sizeof o);
  o.folder = dir;
  o.loop = &loop;
  o.sync_normal = sync_normal;
  o.max_batch = (uint32_t)b;
  vrun_t v;
  memset(&v, 0, sizeof v);
  MB_CHECK(hd__server_store_open(&v.s, &o) == 0, "store open: %s", hd_last_error_message());
  v.n_users = n_users;
  v.limit = 2 * b;
  double t0 = mb_now();
  v.t_end = t0 + C.seconds;
  v_submit(&v);
  hd__store_run_until(&loop, &v.done);
  double rate = (double)v.completed / (v.t_last - t0);
  hd__store_stats_t st;
  v.s->vt->stats(v.s, &st);
  *mean_batch = st.commits ? (double)st.ops_done / (double)st.commits : 0;
  hd__server_store_close_wait(v.s);
  MB_CHECK(uv_loop_close(&loop) == 0, "loop close");
  if (bare_db != NULL) { /* once: the bare loop's schema is the store's */
    char path[1300];
    snprintf(path, sizeof path, "%s/hyperdown.db", dir);
    char *a = schema_of(path), *bb = schema_of(bare_db);
    MB_CHECK(strcmp(a, bb) == 0, "schemas differ:\n--- store\n%s\n--- bare\n%s", a, bb);
    fprintf(stderr, "store: schema of the bare loop == schema of the store:\n%s\n", a);
    free(a);
    free(bb);
  }
  rm_rf(dir);
  return rate;
}

/* ---- the public API: hd_server_add_event ---------------------------------------------------- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static long a_inflight, a_done, a_failed;
static double a_last;

static void a_added(void *data, int status, uint64_t seq) {
  (void)data, (void)seq;
  pthread_mutex_lock(&mu);
  a_inflight--;
  a_done++;
  if (status != 0) a_failed++;
  a_last = mb_now();
  pthread_cond_signal(&cv);
  pthread_mutex_unlock(&mu);
}

static double run_api(int sync_normal, long b, long n_users, double *mean_batch) {
  char dir[1200];
  make_run_dir(dir, sizeof dir, "api");
  hd_keypair_t skp;
  MB_CHECK(hd_keypair_generate(&skp) == 0, "keys");
  hd_server_options_t o = HD_SERVER_OPTIONS_INIT;
  o.keypair = &skp;
  o.topic = "bench-micro";
  o.listen = "127.0.0.1:0";
  o.data_dir = dir;
  o.sync_normal = sync_normal;
  hd_server_t *s = NULL;
  MB_CHECK(hd_server_create(&s, &o) == 0, "server: %s", hd_last_error_message());
  a_inflight = a_done = a_failed = 0;
  long limit = 2 * b, submitted = 0;
  double t0 = mb_now(), t_end = t0 + C.seconds;
  while (submitted < C.max_events && (submitted % 64 != 0 || mb_now() < t_end)) {
    pthread_mutex_lock(&mu);
    while (a_inflight >= limit) pthread_cond_wait(&cv, &mu);
    a_inflight++;
    pthread_mutex_unlock(&mu);
    int rc = hd_server_add_event(s, user_keys[submitted % n_users], payload_buf, C.payload,
                                 a_added, NULL);
    MB_CHECK(rc == 0, "hd_server_add_event: %s", hd_last_error_message());
    submitted++;
  }
  pthread_mutex_lock(&mu);
  while (a_done < submitted) pthread_cond_wait(&cv, &mu);
  double t1 = a_last;
  long failed = a_failed;
  pthread_mutex_unlock(&mu);
  MB_CHECK(failed == 0, "%ld adds failed", failed);
  hd_server_stats_t st = {HD_SERVER_STATS_VERSION, 0, 0, 0, 0, 0, 0, 0};
  hd_server_stats(s, &st);
  /* commits also count the store's creation; adds are the rest */
  *mean_batch = st.commits ? (double)submitted / (double)st.commits : 0;
  MB_CHECK(hd_server_close_wait(s) == 0, "close");
  rm_rf(dir);
  return (double)submitted / (t1 - t0);
}

/* ---- main ----------------------------------------------------------------------------------- */

static void parse(int argc, char **argv) {
  C.syncs[0] = 0, C.syncs[1] = 1, C.n_syncs = 2;
  long dflt[] = {1, 10, 100, 1000, 10000};
  memcpy(C.batches, dflt, sizeof dflt);
  C.n_batches = 5;
  C.payload = 100;
  long du[] = {1, 100, 1000, 10000};
  memcpy(C.users_sweep, du, sizeof du);
  C.n_users_sweep = 4;
  C.seconds = getenv("MB_STORE_SECONDS") ? atof(getenv("MB_STORE_SECONDS")) : 1.0;
  C.max_events = 3000000;
  C.do_bare = C.do_bare_users = C.do_vtable = C.do_api = 1;
  const char *dir = getenv("MB_DIR");
  C.dir[0] = 0;
  if (dir) snprintf(C.dir, sizeof C.dir, "%s", dir);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    MB_CHECK(v != NULL, "%s needs a value", a);
    i++;
    if (!strcmp(a, "--sync")) {
      C.n_syncs = 0;
      if (!strcmp(v, "full") || !strcmp(v, "both")) C.syncs[C.n_syncs++] = 0;
      if (!strcmp(v, "normal") || !strcmp(v, "both")) C.syncs[C.n_syncs++] = 1;
      MB_CHECK(C.n_syncs > 0, "--sync full|normal|both");
    } else if (!strcmp(a, "--batches")) {
      C.n_batches = 0;
      for (char *s = strdup(v), *t = strtok(s, ","); t && C.n_batches < 16; t = strtok(NULL, ","))
        C.batches[C.n_batches++] = atol(t);
    } else if (!strcmp(a, "--users")) {
      C.n_users_sweep = 0;
      for (char *s = strdup(v), *t = strtok(s, ","); t && C.n_users_sweep < 8;
           t = strtok(NULL, ","))
        if (atol(t) > 0) C.users_sweep[C.n_users_sweep++] = atol(t);
    } else if (!strcmp(a, "--payload")) {
      C.payload = (size_t)atol(v);
    } else if (!strcmp(a, "--seconds")) {
      C.seconds = atof(v);
    } else if (!strcmp(a, "--max-events")) {
      C.max_events = atol(v);
    } else if (!strcmp(a, "--dir")) {
      snprintf(C.dir, sizeof C.dir, "%s", v);
    } else if (!strcmp(a, "--paths")) {
      C.do_bare = strstr(v, "bare") != NULL;
      C.do_bare_users = strstr(v, "users") != NULL;
      C.do_vtable = strstr(v, "vtable") != NULL;
      C.do_api = strstr(v, "api") != NULL;
    } else {
      MB_CHECK(0, "unknown option %s", a);
    }
  }
  MB_CHECK(C.payload >= 1 && C.seconds > 0 && C.max_events > 0, "bad option");
}

int main(int argc, char **argv) {
  parse(argc, argv);
  int own_dir = 0;
  if (!C.dir[0]) {
    snprintf(C.dir, sizeof C.dir, "/tmp/hd-micro-store-XXXXXX");
    MB_CHECK(mkdtemp(C.dir) != NULL, "mkdtemp");
    own_dir = 1;
  } else {
    mkdir(C.dir, 0700);
  }
  payload_buf = malloc(C.payload);
  for (size_t i = 0; i < C.payload; i++) payload_buf[i] = (uint8_t)('a' + i % 26);
  C.n_users_max = 1;
  for (int i = 0; i < C.n_users_sweep; i++)
    if (C.users_sweep[i] > C.n_users_max) C.n_users_max = C.users_sweep[i];
  user_keys = malloc((size_t)C.n_users_max * 32);
  for (long i = 0; i < C.n_users_max; i++) {
    hd_keypair_t kp;
    MB_CHECK(hd_keypair_generate(&kp) == 0, "user key");
    memcpy(user_keys[i], kp.public_key, 32);
  }
  int reps = mb_reps();
  for (int si = 0; si < C.n_syncs; si++) {
    int sn = C.syncs[si];
    for (int bi = 0; bi < C.n_batches; bi++) {
      long b = C.batches[bi];
      double bare[MB_MAX_REPS] = {0}, vt[MB_MAX_REPS] = {0}, api[MB_MAX_REPS] = {0},
             vb[MB_MAX_REPS] = {0}, ab[MB_MAX_REPS] = {0}, bu[MB_MAX_REPS] = {0};
      for (int r = 0; r < reps; r++) {
        char bare_db[1300];
        int check = !schema_checked && C.do_bare && C.do_vtable;
        if (C.do_bare) bare[r] = run_bare(sn, b, 0, 1, check ? bare_db : NULL, sizeof bare_db);
        if (C.do_bare_users) bu[r] = run_bare(sn, b, 1, 1, NULL, 0);
        if (C.do_vtable) vt[r] = run_vtable(sn, b, 1, &vb[r], check ? bare_db : NULL);
        if (check) {
          char *slash = strrchr(bare_db, '/');
          *slash = 0;
          rm_rf(bare_db);
          schema_checked = 1;
        }
        if (C.do_api) api[r] = run_api(sn, b, 1, &ab[r]);
        fprintf(stderr, "store: sync %s batch %ld rep %d: bare %.0f, vtable %.0f (%.1f/commit), "
                        "api %.0f (%.1f/commit), bare+users %.0f events/s\n",
                sn ? "NORMAL" : "FULL", b, r + 1, bare[r], vt[r], vb[r], api[r], ab[r], bu[r]);
      }
      char param[32], note[160];
      snprintf(param, sizeof param, "sync=%s", sn ? "NORMAL" : "FULL");
      if (C.do_bare)
        mb_row("store", "bare_sqlite", param, b, "events/s", bare, NULL, NULL, reps, 1,
               "BEGIN IMMEDIATE + b inserts + COMMIT, statement reused");
      if (C.do_bare_users)
        mb_row("store", "bare_sqlite_users", param, b, "events/s", bu,
               C.do_bare ? "bare_sqlite" : NULL, C.do_bare ? bare : NULL, reps, 1,
               "diagnostic: the bare loop + the store's per-batch users read/update");
      if (C.do_vtable) {
        snprintf(note, sizeof note, "max_batch=b; 2b in flight; %.1f rows/commit (median)",
                 mb_median(vb, reps));
        mb_row("store", "vtable_add_event", param, b, "events/s", vt,
               C.do_bare ? "bare_sqlite" : NULL, C.do_bare ? bare : NULL, reps, 1, note);
      }
      if (C.do_api) {
        snprintf(note, sizeof note, "2b in flight; max_batch 8192; %.1f rows/commit (median)",
                 mb_median(ab, reps));
        mb_row("store", "api_add_event", param, b, "events/s", api,
               C.do_bare ? "bare_sqlite" : NULL, C.do_bare ? bare : NULL, reps, 1, note);
      }
    }
  }
  for (int ui = 0; ui < C.n_users_sweep; ui++) {
    long u = C.users_sweep[ui], b = 1000;
    double bare[MB_MAX_REPS] = {0}, vt[MB_MAX_REPS] = {0}, api[MB_MAX_REPS] = {0},
           vb[MB_MAX_REPS] = {0}, ab[MB_MAX_REPS] = {0};
    for (int r = 0; r < reps; r++) {
      if (C.do_bare) bare[r] = run_bare(0, b, 0, u, NULL, 0);
      if (C.do_vtable) vt[r] = run_vtable(0, b, u, &vb[r], NULL);
      if (C.do_api) api[r] = run_api(0, b, u, &ab[r]);
      fprintf(stderr, "store: sync FULL batch %ld, %ld users, rep %d: bare %.0f, vtable %.0f, "
                      "api %.0f events/s\n", b, u, r + 1, bare[r], vt[r], api[r]);
    }
    char param[48];
    snprintf(param, sizeof param, "sync=FULL users=%ld", u);
    if (C.do_bare)
      mb_row("store_users", "bare_sqlite", param, b, "events/s", bare, NULL, NULL, reps, 1,
             "inserts round-robin over the users' ranges");
    if (C.do_vtable)
      mb_row("store_users", "vtable_add_event", param, b, "events/s", vt,
             C.do_bare ? "bare_sqlite" : NULL, C.do_bare ? bare : NULL, reps, 1,
             "max_batch=1000; 2000 in flight");
    if (C.do_api)
      mb_row("store_users", "api_add_event", param, b, "events/s", api,
             C.do_bare ? "bare_sqlite" : NULL, C.do_bare ? bare : NULL, reps, 1,
             "2000 in flight; one adding thread");
  }
  free(user_keys);
  if (own_dir) rm_rf(C.dir);
  free(payload_buf);
  return 0;
}
