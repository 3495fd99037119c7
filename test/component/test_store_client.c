/* The client store (store.h) on SQLite: high-water mark and duplicates, consumed events waiting
 * for confirmation, forgetting, paging, a change of the server's store id, reopen, locking and
 * migrations. Fresh folder under /tmp per test, removed after; every wait bounded. */
#include "harness.h"
#include "store_util.h"

#include <sqlite3.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#define WAIT_MS 20000

typedef struct fx {
  store_fx_t fx; /* folder <dir>/client, loop, options */
  hd__client_store_t *s;
  uint8_t id[HD_STORE_ID_BYTES]; /* the current server store (set_store) */
  int64_t store_no;              /* its number in the client store */
  /* completions */
  int done, failed, last_status;
  uint64_t values[256];
} fx_t;

static void on_result(void *data, int status, uint64_t value) {
  fx_t *f = data;
  if (status != 0) {
    f->failed++;
    f->last_status = status;
  }
  if (f->done < (int)HD__ARRAY_SIZE(f->values)) f->values[f->done] = value;
  f->done++;
}

/* Runs the loop until *counter reaches `want` or WAIT_MS passed; 0 if it got there. */
static int run_until(fx_t *f, const int *counter, int want) {
  return store_run_until(&f->fx.loop, counter, want, WAIT_MS);
}

/* Waits for the next completion and returns its value (UINT64_MAX on failure or timeout). */
static uint64_t next_value(fx_t *f) {
  int want = f->done + 1, failed = f->failed;
  if (run_until(f, &f->done, want) != 0 || f->failed != failed) return UINT64_MAX;
  return f->values[want - 1];
}

static int fx_open(fx_t *f) { return hd__client_store_open(&f->s, &f->fx.opts); }

/* Makes the server store whose id is `byte` x 16 the current one: what set_server_store_id
 * completed with (UINT64_MAX on failure); f->id and f->store_no follow. */
static uint64_t set_store(fx_t *f, uint8_t byte) {
  memset(f->id, byte, sizeof f->id);
  if (f->s->vt->set_server_store_id(f->s, f->id, on_result, f) != 0) return UINT64_MAX;
  uint64_t v = next_value(f);
  if (v != UINT64_MAX) f->store_no = (int64_t)(v & 0xffffffffu);
  return v;
}

/* A fresh folder, loop and store, open, with server store 0x11.. as the current one. */
static int fx_begin(fx_t *f) {
  memset(f, 0, sizeof *f);
  int rc = store_fx_init(&f->fx, "cstore", "client");
  if (rc == 0) rc = fx_open(f);
  if (rc == 0 && set_store(f, 0x11) != (1 | HD__STORE_ID_NEW)) rc = -1;
  return rc;
}

static int fx_close(fx_t *f) {
  if (f->s == NULL) return 0;
  int done = 0;
  int rc = f->s->vt->close(f->s, store_set_flag, &done);
  f->s = NULL;
  return rc != 0 ? rc : run_until(f, &done, 1);
}

static int fx_done(fx_t *f) {
  int rc = fx_close(f);
  if (store_fx_done(&f->fx) != 0) rc = -1;
  return rc;
}

/* 1 if the store counts `unhandled` and `consumed` events. */
static int counts_are(fx_t *f, uint64_t unhandled, uint64_t consumed) {
  uint64_t u = UINT64_MAX, c = UINT64_MAX;
  return f->s->vt->counts(f->s, &u, &c) == 0 && u == unhandled && c == consumed;
}

/* The store's high-water mark (UINT64_MAX if the call fails). */
static uint64_t high_water(fx_t *f) {
  uint64_t hw = UINT64_MAX;
  return f->s->vt->high_water(f->s, &hw) == 0 ? hw : UINT64_MAX;
}

/* Queues the consumption of event `seq` as receive() stored it, with `data`. */
static int consume(fx_t *f, uint64_t seq, const char *data, size_t len) {
  hd__store_event_t which = {.seq = seq, .created_ms = 1700000000000 + (int64_t)seq,
                             .store = f->store_no};
  return f->s->vt->mark_consumed(f->s, &which, data, len, on_result, f);
}

/* The creation time receive() gives event `seq` of generation `gen` (0 before any epoch change:
 * the time on_event checks; 1, 2...: events that got the number again afterwards). */
static int64_t created(uint64_t seq, int gen) { return 1700000000000 + (int64_t)seq + gen * 1000000; }

/* Inserts events first..last (payload "e<seq>", created at created(seq, gen)) as one received
 * batch; returns how many new. */
static uint64_t receive_gen(fx_t *f, uint64_t first, uint64_t last, int gen) {
  hd__store_event_t evs[128];
  char text[128][16];
  size_t n = 0;
  for (uint64_t seq = first; seq <= last && n < 128; seq++, n++) {
    snprintf(text[n], sizeof text[n], "e%llu", (unsigned long long)seq);
    evs[n] = (hd__store_event_t){.seq = seq, .created_ms = created(seq, gen),
                                 .payload = (const uint8_t *)text[n], .payload_len = strlen(text[n])};
  }
  if (f->s->vt->insert_received(f->s, f->id, evs, n, on_result, f) != 0) return UINT64_MAX;
  return next_value(f);
}

static uint64_t receive(fx_t *f, uint64_t first, uint64_t last) {
  return receive_gen(f, first, last, 0);
}

typedef struct listing {
  int count, bad;
  uint64_t seqs[1100];
  char data[64][16];
  uint32_t flags[64];
  int64_t orphan[64];
  uint32_t attempts[64];
  uint32_t kind[64];
} listing_t;

static int on_event(void *p, const hd__store_event_t *ev) {
  listing_t *l = p;
  char want[32];
  snprintf(want, sizeof want, "e%llu", (unsigned long long)ev->seq);
  if (ev->payload_len != strlen(want) || memcmp(ev->payload, want, ev->payload_len) != 0) l->bad++;
  if ((ev->created_ms - created(ev->seq, 0)) % 1000000 != 0) l->bad++;
  if (l->count < 64) {
    l->flags[l->count] = ev->flags;
    l->orphan[l->count] = ev->orphan;
    l->attempts[l->count] = ev->attempts;
    l->kind[l->count] = ev->kind;
    size_t n = ev->data_len < 15 ? ev->data_len : 15;
    if (n) memcpy(l->data[l->count], ev->data, n);
    l->data[l->count][n] = '\0';
  }
  if (l->count < 1100) l->seqs[l->count] = ev->seq;
  l->count++;
  return 0;
}

static void high_water_and_duplicates(void) {
  fx_t f;
  CHECK_OK(fx_begin(&f));
  CHECK(high_water(&f) == 0);
  CHECK(receive(&f, 1, 3) == 3);
  CHECK(high_water(&f) == 3);
  CHECK(receive(&f, 2, 5) == 2); /* 2 and 3 are held already */
  CHECK(receive(&f, 1, 5) == 0);
  CHECK(high_water(&f) == 5);
  listing_t l = {0};
  CHECK(f.s->vt->list_unhandled(f.s, 0, 0, 100, on_event, &l) == 5);
  CHECK(l.bad == 0);
  for (int i = 0; i < 5; i++) CHECK(l.seqs[i] == (uint64_t)i + 1);
  CHECK(counts_are(&f, 5, 0));
  CHECK_OK(fx_done(&f));
}

static void consume_and_forget(void) {
  fx_t f;
  CHECK_OK(fx_begin(&f));
  CHECK(receive(&f, 1, 4) == 4);
  CHECK_OK(consume(&f, 2, "ok2", 3));
  CHECK(next_value(&f) == 1);
  CHECK_OK(consume(&f, 2, "again", 5));
  CHECK(next_value(&f) == 0); /* consumed once; the first data stays */
  CHECK_OK(consume(&f, 1, NULL, 0));
  CHECK(next_value(&f) == 1);
  CHECK_OK(consume(&f, 42, "x", 1));
  CHECK(next_value(&f) == 0); /* not held */

  listing_t c = {0};
  CHECK(f.s->vt->list_consumed(f.s, 0, 100, on_event, &c) == 2);
  CHECK(c.bad == 0 && c.seqs[0] == 1 && c.seqs[1] == 2);
  CHECK(strcmp(c.data[0], "") == 0 && strcmp(c.data[1], "ok2") == 0);
  listing_t u = {0};
  CHECK(f.s->vt->list_unhandled(f.s, 0, 0, 100, on_event, &u) == 2);
  CHECK(u.seqs[0] == 3 && u.seqs[1] == 4);

  /* DONE for 1, 2 and for 3 (not consumed: kept, so a confused server cannot erase it) */
  uint64_t done[] = {1, 2, 3};
  CHECK_OK(f.s->vt->forget(f.s, f.id, done, 3, on_result, &f));
  CHECK(next_value(&f) == 2);
  listing_t c2 = {0};
  CHECK(f.s->vt->list_consumed(f.s, 0, 100, on_event, &c2) == 0);
  CHECK(counts_are(&f, 2, 0));
  /* a resend of a confirmed event is a duplicate: never handled twice */
  CHECK(receive(&f, 1, 2) == 0);
  CHECK_OK(fx_done(&f));
}

static void unhandled_paging(void) {
  fx_t f;
  CHECK_OK(fx_begin(&f));
  for (uint64_t first = 1; first <= 1000; first += 100) {
    CHECK(receive(&f, first, first + 99) == 100);
  }
  /* consume every tenth: the unhandled pages skip them, the consumed listing has them */
  for (uint64_t seq = 10; seq <= 1000; seq += 10) {
    CHECK_OK(consume(&f, seq, "d", 1));
  }
  CHECK(run_until(&f, &f.done, 10 + 100) == 0 && f.failed == 0);
  uint64_t after = 0;
  int total = 0, pages = 0;
  for (;;) {
    listing_t l = {0};
    int got = f.s->vt->list_unhandled(f.s, f.store_no, after, 100, on_event, &l);
    CHECK(got >= 0 && got <= 100 && l.bad == 0);
    if (got == 0) break;
    for (int i = 0; i < got; i++) CHECK(l.seqs[i] % 10 != 0 && l.seqs[i] > after);
    for (int i = 1; i < got; i++) CHECK(l.seqs[i] > l.seqs[i - 1]);
    after = l.seqs[got - 1];
    total += got;
    pages++;
  }
  CHECK(total == 900 && pages == 9);
  listing_t c = {0};
  CHECK(f.s->vt->list_consumed(f.s, 500, 1000, on_event, &c) == 50);
  CHECK(c.seqs[0] == 510 && c.seqs[49] == 1000);
  CHECK_OK(fx_done(&f));
}

typedef struct held_rows {
  int n;
  uint8_t first[HD_STORE_ID_BYTES];
  uint64_t unhandled, consumed;
} held_rows_t;

static void on_held(void *data, const uint8_t id[HD_STORE_ID_BYTES], uint64_t unhandled,
                    uint64_t consumed) {
  held_rows_t *h = data;
  if (h->n++ == 0) {
    memcpy(h->first, id, HD_STORE_ID_BYTES);
    h->unhandled = unhandled;
    h->consumed = consumed;
  }
}

/* Purges the server store `byte` x 16: the callback's status, or its value if it succeeded. */
static int64_t purge(fx_t *f, uint8_t byte) {
  uint8_t id[HD_STORE_ID_BYTES];
  memset(id, byte, sizeof id);
  int want = f->done + 1, failed = f->failed;
  if (f->s->vt->purge_store(f->s, id, on_result, f) != 0 || run_until(f, &f->done, want) != 0) {
    return INT64_MIN;
  }
  return f->failed != failed ? f->last_status : (int64_t)f->values[want - 1];
}

/* Another server store (a new store id): what is held for the old one stays, under it: its
 * unhandled events are listed before the new store's, its consumptions are not the new store's
 * to list or to forget, nothing of the new store's connection is filed under it; back to the old
 * store, its mark and its consumptions are there again; a purge drops another store's events. */
static void store_id_change(void) {
  fx_t f;
  CHECK_OK(fx_begin(&f));
  CHECK(set_store(&f, 0x11) == 1); /* the same store: nothing changes */
  uint8_t a[HD_STORE_ID_BYTES], got[HD_STORE_ID_BYTES];
  memcpy(a, f.id, sizeof a);
  CHECK(receive(&f, 1, 8) == 8);
  CHECK_OK(consume(&f, 1, "d", 1));
  CHECK(next_value(&f) == 1);
  CHECK(high_water(&f) == 8);

  CHECK(set_store(&f, 0xBB) == (2 | HD__STORE_ID_CHANGED | HD__STORE_ID_NEW));
  CHECK(high_water(&f) == 0);
  CHECK_OK(f.s->vt->server_store_id(f.s, got));
  CHECK(got[0] == 0xBB);
  CHECK(counts_are(&f, 0, 0)); /* the current store's */
  held_rows_t h = {0};
  CHECK(f.s->vt->held_stores(f.s, on_held, &h) == 1);
  CHECK(h.n == 1 && memcmp(h.first, a, sizeof a) == 0 && h.unhandled == 7 && h.consumed == 1);
  /* the new store's numbers start at 1 again and are not taken for duplicates */
  CHECK(receive(&f, 1, 3) == 3);
  listing_t u = {0}, c = {0};
  CHECK(f.s->vt->list_unhandled(f.s, 0, 0, 100, on_event, &u) == 10);
  CHECK(u.seqs[0] == 2 && u.seqs[6] == 8 && u.seqs[7] == 1 && u.seqs[9] == 3);
  CHECK(f.s->vt->list_consumed(f.s, 0, 100, on_event, &c) == 0);
  /* nothing of the old store is the new one's: a DONE, events, an epoch under the old id */
  uint64_t one = 1;
  CHECK_OK(f.s->vt->forget(f.s, a, &one, 1, on_result, &f));
  CHECK(next_value(&f) == 0);
  hd__store_event_t ev = {.seq = 9, .created_ms = 1, .payload = (const uint8_t *)"x",
                          .payload_len = 1};
  CHECK_OK(f.s->vt->insert_received(f.s, a, &ev, 1, on_result, &f));
  CHECK(next_value(&f) == 0);
  CHECK_OK(f.s->vt->rewind(f.s, a, 0, 0, a, on_result, &f));
  CHECK(next_value(&f) == 0);
  /* an old store's event handled now: consumed under its own store */
  hd__store_event_t two = {.seq = 2, .created_ms = created(2, 0), .store = 1};
  CHECK_OK(f.s->vt->mark_consumed(f.s, &two, "d2", 2, on_result, &f));
  CHECK(next_value(&f) == 1);

  /* back to the old store: its mark, and its consumptions to report */
  CHECK(set_store(&f, 0x11) == (1 | HD__STORE_ID_CHANGED));
  CHECK(high_water(&f) == 8);
  listing_t c2 = {0};
  CHECK(f.s->vt->list_consumed(f.s, 0, 100, on_event, &c2) == 2);
  CHECK(c2.seqs[0] == 1 && c2.seqs[1] == 2 && strcmp(c2.data[1], "d2") == 0);
  uint64_t both[] = {1, 2};
  CHECK_OK(f.s->vt->forget(f.s, a, both, 2, on_result, &f));
  CHECK(next_value(&f) == 2);
  CHECK(counts_are(&f, 6, 0));
  h = (held_rows_t){0};
  CHECK(f.s->vt->held_stores(f.s, on_held, &h) == 1 && h.unhandled == 3 && h.first[0] == 0xBB);

  /* purges: not the current store, not one never seen; another one's events go, durably */
  CHECK(purge(&f, 0x11) == HD_EBUSY);
  CHECK(purge(&f, 0x77) == HD_ENOTFOUND);
  CHECK(purge(&f, 0xBB) == 3);
  CHECK(f.s->vt->held_stores(f.s, on_held, &h) == 0);
  CHECK_OK(fx_close(&f));
  CHECK_OK(fx_open(&f));
  CHECK(f.s->vt->held_stores(f.s, on_held, &h) == 0);
  CHECK(counts_are(&f, 6, 0) && high_water(&f) == 8);
  CHECK(set_store(&f, 0xBB) == (2 | HD__STORE_ID_CHANGED | HD__STORE_ID_NEW)); /* forgotten */
  CHECK_OK(fx_done(&f));
}

/* A store of schema version 2 (written here by SQL as version 2 wrote it) is brought to version
 * 3: everything it held becomes the remembered server store's, with its mark, epoch and
 * seen_upto; the orphans stay. */
static void migration_from_version_2(void) {
  fx_t f;
  memset(&f, 0, sizeof f);
  CHECK_OK(store_fx_init(&f.fx, "cstore", "client"));
  char path[320];
  CHECK(mkdir(f.fx.folder, 0700) == 0);
  snprintf(path, sizeof path, "%s/hyperdown.db", f.fx.folder);
  sqlite3 *db = NULL;
  CHECK(sqlite3_open(path, &db) == SQLITE_OK);
  static const char v2[] =
      "PRAGMA journal_mode=WAL;"
      "CREATE TABLE meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;"
      "CREATE TABLE events(seq INTEGER PRIMARY KEY, created_ms INTEGER NOT NULL,"
      "  payload BLOB NOT NULL, state INTEGER NOT NULL DEFAULT 0, data BLOB);"
      "CREATE INDEX events_consumed ON events(seq) WHERE state = 1;"
      "ALTER TABLE events ADD COLUMN repeated INTEGER NOT NULL DEFAULT 0;"
      "CREATE TABLE orphans(id INTEGER PRIMARY KEY, seq INTEGER NOT NULL,"
      "  created_ms INTEGER NOT NULL, payload BLOB NOT NULL);"
      "INSERT INTO meta VALUES('high_water', 6), ('server_store_id', zeroblob(16)),"
      "  ('server_epoch', X'e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1'), ('seen_upto', 5);"
      "UPDATE meta SET value = X'5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a' WHERE key = 'server_store_id';"
      "INSERT INTO events VALUES(1, 1700000000001, 'e1', 1, 'd1', 0),"
      "  (2, 1700000000002, 'e2', 1, 'd2', 0), (4, 1700000000004, 'e4', 0, NULL, 1),"
      "  (6, 1700000000006, 'e6', 0, NULL, 0);"
      "INSERT INTO orphans(seq, created_ms, payload) VALUES(9, 1700000000009, 'e9');"
      "PRAGMA application_id=0x4844636c; PRAGMA user_version=2;";
  CHECK(sqlite3_exec(db, v2, NULL, NULL, NULL) == SQLITE_OK);
  sqlite3_close(db);

  CHECK_OK(fx_open(&f));
  uint8_t got[HD_STORE_ID_BYTES];
  CHECK_OK(f.s->vt->server_store_id(f.s, got));
  CHECK(got[0] == 0x5A && got[15] == 0x5A);
  CHECK_OK(f.s->vt->server_epoch(f.s, got));
  CHECK(got[0] == 0xE1 && got[15] == 0xE1);
  CHECK(high_water(&f) == 6);
  CHECK(counts_are(&f, 2 + 1, 2));
  listing_t c = {0}, u = {0}, o = {0};
  CHECK(f.s->vt->list_consumed(f.s, 0, 100, on_event, &c) == 2);
  CHECK(c.bad == 0 && c.seqs[1] == 2 && strcmp(c.data[1], "d2") == 0);
  CHECK(f.s->vt->list_unhandled(f.s, 0, 0, 100, on_event, &u) == 2);
  CHECK(u.seqs[0] == 4 && u.flags[0] == HD__STORE_EV_REPEATED && u.seqs[1] == 6 && u.flags[1] == 0);
  CHECK(f.s->vt->list_orphans(f.s, 0, 100, on_event, &o) == 1 && o.seqs[0] == 9);
  CHECK(set_store(&f, 0x5A) == 1); /* the remembered store: no change */
  CHECK(receive(&f, 5, 7) == 1);   /* at or below the mark: held or confirmed */
  listing_t u2 = {0};
  CHECK(f.s->vt->list_unhandled(f.s, 0, 0, 100, on_event, &u2) == 3);
  CHECK(u2.seqs[2] == 7 && u2.flags[2] == 0);
  CHECK_OK(fx_close(&f));
  CHECK(sqlite3_open(path, &db) == SQLITE_OK);
  sqlite3_stmt *st = NULL;
  CHECK(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK);
  CHECK(sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 4);
  sqlite3_finalize(st);
  sqlite3_close(db);
  CHECK_OK(fx_done(&f));
}

static void reopen_keeps_everything(void) {
  fx_t f;
  CHECK_OK(fx_begin(&f));
  uint8_t a[HD_STORE_ID_BYTES], got[HD_STORE_ID_BYTES];
  memset(a, 0x5A, sizeof a);
  CHECK(set_store(&f, 0x5A) == (2 | HD__STORE_ID_NEW | HD__STORE_ID_CHANGED));
  CHECK(receive(&f, 1, 6) == 6);
  CHECK_OK(consume(&f, 1, "data1", 5));
  CHECK(next_value(&f) == 1);
  uint64_t one = 1;
  CHECK_OK(consume(&f, 2, "data2", 5));
  CHECK_OK(f.s->vt->forget(f.s, f.id, &one, 1, on_result, &f));
  CHECK(run_until(&f, &f.done, f.done + 2) == 0 && f.failed == 0);
  CHECK_OK(fx_close(&f));
  f.fx.opts.sync_normal = 1;
  CHECK_OK(fx_open(&f));
  CHECK(high_water(&f) == 6);
  CHECK_OK(f.s->vt->server_store_id(f.s, got));
  CHECK(memcmp(got, a, sizeof a) == 0);
  listing_t c = {0};
  CHECK(f.s->vt->list_consumed(f.s, 0, 10, on_event, &c) == 1);
  CHECK(c.seqs[0] == 2 && strcmp(c.data[0], "data2") == 0);
  listing_t u = {0};
  CHECK(f.s->vt->list_unhandled(f.s, 0, 0, 10, on_event, &u) == 4);
  CHECK(u.seqs[0] == 3 && u.seqs[3] == 6);
  CHECK(receive(&f, 1, 7) == 1);
  CHECK_OK(fx_done(&f));
}

static void group_commit(void) {
  fx_t f;
  CHECK_OK(fx_begin(&f));
  CHECK(receive(&f, 1, 100) == 100);
  f.s->vt->hold(f.s, 1);
  for (uint64_t seq = 1; seq <= 100; seq++) {
    CHECK_OK(consume(&f, seq, "d", 1));
  }
  f.s->vt->hold(f.s, 0);
  CHECK(run_until(&f, &f.done, 101) == 0 && f.failed == 0);
  hd__store_stats_t st;
  f.s->vt->stats(f.s, &st);
  CHECK(st.commits == 3 && st.ops_done == 102 && st.queued == 0); /* with fx_begin's store id */
  CHECK_OK(fx_done(&f));
}

static void busy_and_versions(void) {
  fx_t f;
  CHECK_OK(fx_begin(&f));
  hd__client_store_t *second = NULL;
  CHECK(hd__client_store_open(&second, &f.fx.opts) == HD_EBUSY);
  /* a server store cannot open a client's folder either while it is open */
  hd__server_store_t *srv = NULL;
  CHECK(hd__server_store_open(&srv, &f.fx.opts) == HD_EBUSY);
  CHECK_OK(fx_close(&f));

  /* a future schema version is refused, and a database at version 0 is brought up to date */
  char path[320];
  snprintf(path, sizeof path, "%s/hyperdown.db", f.fx.folder);
  sqlite3 *db = NULL;
  CHECK(sqlite3_open(path, &db) == SQLITE_OK);
  CHECK(sqlite3_exec(db, "PRAGMA user_version=7", NULL, NULL, NULL) == SQLITE_OK);
  sqlite3_close(db);
  CHECK(fx_open(&f) == HD_EVERSION);
  CHECK(strstr(hd_last_error_message(), "client store has schema version 7") != NULL);

  char fresh[100];
  snprintf(fresh, sizeof fresh, "%s/fresh", f.fx.dir);
  CHECK(mkdir(fresh, 0700) == 0);
  snprintf(path, sizeof path, "%s/hyperdown.db", fresh);
  CHECK(sqlite3_open(path, &db) == SQLITE_OK);
  CHECK(sqlite3_exec(db, "PRAGMA user_version=0", NULL, NULL, NULL) == SQLITE_OK);
  sqlite3_close(db);
  f.fx.opts.folder = fresh;
  CHECK_OK(fx_open(&f));
  CHECK(set_store(&f, 0x11) == (1 | HD__STORE_ID_NEW));
  CHECK(receive(&f, 1, 1) == 1);
  CHECK_OK(fx_done(&f));
}

/* ---- epochs (docs/STORAGE.md "The client's side of epochs") ------------------------------- */

/* 1 if a listing holds exactly the seqs of `want` (0-terminated), with `flags` each. */
static int listed(const listing_t *l, const uint64_t *want, uint32_t flags) {
  int n = 0;
  for (; want[n] != 0; n++) {
    if (n >= l->count || l->seqs[n] != want[n] || l->flags[n] != flags) return 0;
  }
  return n == l->count && l->bad == 0;
}

/* Queues the consumption of `seq` as a read of generation `gen` handed it out (orphan: its row). */
static uint64_t consume_as(fx_t *f, uint64_t seq, int gen, int64_t orphan) {
  hd__store_event_t which = {.seq = seq, .created_ms = created(seq, gen), .orphan = orphan,
                             .store = f->store_no};
  if (f->s->vt->mark_consumed(f->s, &which, "d", 1, on_result, f) != 0) return UINT64_MAX;
  return next_value(f);
}

/* The server's store lost what it had given above 6: held events at or below 6 stay; consumed
 * ones above are dropped (never reported), unhandled ones become orphans (handed out, never
 * reported); the mark starts again at 0; what comes again at or below seen_upto that is not
 * held is marked repeated; what the handler had out when its event became an orphan is
 * completed as the orphan, never as the new event that got its number. */
static void rewind_keeps_the_floor(void) {
  fx_t f;
  CHECK_OK(fx_begin(&f));
  uint8_t e[HD_STORE_ID_BYTES], got[HD_STORE_ID_BYTES], zero[HD_STORE_ID_BYTES] = {0};
  memset(e, 0xE1, sizeof e);
  CHECK_OK(f.s->vt->server_epoch(f.s, got));
  CHECK(memcmp(got, zero, sizeof got) == 0);
  CHECK(receive(&f, 1, 10) == 10);
  uint64_t two = 2;
  CHECK(consume_as(&f, 2, 0, 0) == 1);
  /* 2: handled, confirmed, forgotten */
  CHECK_OK(f.s->vt->forget(f.s, f.id, &two, 1, on_result, &f));
  CHECK(next_value(&f) == 1);
  CHECK(consume_as(&f, 3, 0, 0) == 1);
  CHECK(consume_as(&f, 8, 0, 0) == 1);
  CHECK_OK(f.s->vt->rewind(f.s, f.id, 6, 6, e, on_result, &f));
  CHECK(next_value(&f) == (3 | (uint64_t)1 << 32)); /* 7, 9, 10 orphaned; 8 dropped */
  CHECK(high_water(&f) == 0);
  CHECK_OK(f.s->vt->server_epoch(f.s, got));
  CHECK(memcmp(got, e, sizeof got) == 0);
  CHECK(counts_are(&f, 4 + 3, 1));
  listing_t u = {0}, o = {0}, c = {0};
  CHECK(f.s->vt->list_unhandled(f.s, 0, 0, 100, on_event, &u) == 4);
  CHECK(listed(&u, (const uint64_t[]){1, 4, 5, 6, 0}, 0));
  CHECK(f.s->vt->list_orphans(f.s, 0, 100, on_event, &o) == 3);
  CHECK(listed(&o, (const uint64_t[]){7, 9, 10, 0}, HD__STORE_EV_ORPHAN));
  CHECK(o.orphan[0] > 0 && o.orphan[1] > o.orphan[0] && o.orphan[2] > o.orphan[1]);
  CHECK(f.s->vt->list_consumed(f.s, 0, 100, on_event, &c) == 1 && c.seqs[0] == 3);

  /* the server sends every pending event again, then new ones under the numbers above 6 */
  CHECK(receive(&f, 1, 6) == 1); /* only 2 is not held: brought back by the loss */
  CHECK(receive_gen(&f, 7, 12, 1) == 6);
  CHECK(high_water(&f) == 12);
  listing_t u2 = {0};
  CHECK(f.s->vt->list_unhandled(f.s, 0, 0, 100, on_event, &u2) == 11);
  CHECK(u2.seqs[1] == 2 && u2.flags[1] == HD__STORE_EV_REPEATED);
  CHECK(u2.flags[0] == 0 && u2.flags[2] == 0 && u2.seqs[5] == 7 && u2.flags[5] == 0);

  CHECK(consume_as(&f, 9, 0, o.orphan[1]) == 2);   /* an orphan: forgotten, nothing to report */
  CHECK(consume_as(&f, 10, 0, 0) == 2); /* it was out when it became one: still the orphan */
  CHECK(consume_as(&f, 9, 0, 0) == 0);  /* ... and the new 9 is not taken for it */
  CHECK(consume_as(&f, 9, 1, 0) == 1);  /* the new 9 itself */
  listing_t o2 = {0};
  CHECK(f.s->vt->list_orphans(f.s, 0, 100, on_event, &o2) == 1 && o2.seqs[0] == 7);
  CHECK(counts_are(&f, 10 + 1, 2));

  /* kept across a reopen: seen_upto, the epoch, the orphans */
  CHECK_OK(fx_close(&f));
  CHECK_OK(fx_open(&f));
  CHECK_OK(f.s->vt->server_epoch(f.s, got));
  CHECK(memcmp(got, e, sizeof got) == 0);
  CHECK(counts_are(&f, 11, 2));

  /* another server store: the orphans stay (they are handed out, never reported), the epoch and
   * seen_upto are the old store's and the new one has none */
  CHECK(set_store(&f, 0xBB) == (2 | HD__STORE_ID_CHANGED | HD__STORE_ID_NEW));
  CHECK(counts_are(&f, 1, 0));
  CHECK_OK(f.s->vt->server_epoch(f.s, got));
  CHECK(memcmp(got, zero, sizeof got) == 0);
  CHECK(receive(&f, 1, 2) == 2);
  listing_t u3 = {0};
  CHECK(f.s->vt->list_unhandled(f.s, f.store_no, 0, 100, on_event, &u3) == 2);
  CHECK(listed(&u3, (const uint64_t[]){1, 2, 0}, 0)); /* nothing is marked for the new store */
  CHECK(set_store(&f, 0x11) == (1 | HD__STORE_ID_CHANGED));
  CHECK_OK(f.s->vt->server_epoch(f.s, got));
  CHECK(memcmp(got, e, sizeof got) == 0);
  CHECK_OK(fx_done(&f));
}

/* An epoch the store could not place (floor 0, seen_upto = the mark): nothing held is vouched
 * for, and what comes again is marked possibly repeated up to the old mark. */
static void rewind_from_nothing(void) {
  fx_t f;
  CHECK_OK(fx_begin(&f));
  uint8_t e[HD_STORE_ID_BYTES];
  memset(e, 0xE2, sizeof e);
  CHECK(receive(&f, 1, 5) == 5);
  CHECK(consume_as(&f, 1, 0, 0) == 1);
  CHECK_OK(f.s->vt->rewind(f.s, f.id, 0, 5, e, on_result, &f));
  CHECK(next_value(&f) == (4 | (uint64_t)1 << 32));
  CHECK(counts_are(&f, 4, 0));
  CHECK(receive(&f, 1, 7) == 7);
  listing_t u = {0};
  CHECK(f.s->vt->list_unhandled(f.s, 0, 0, 100, on_event, &u) == 7);
  CHECK(listed(&u, (const uint64_t[]){1, 2, 3, 4, 5, 0}, HD__STORE_EV_REPEATED) == 0);
  for (int i = 0; i < 5; i++) CHECK(u.flags[i] == HD__STORE_EV_REPEATED);
  CHECK(u.flags[5] == 0 && u.flags[6] == 0);
  CHECK_OK(fx_done(&f));
}

/* ---- poison events: attempts counted before each handler call, an event failed for good ---- */

/* The event `seq` as receive() stored it, in the current store (orphan: its orphans row). */
static hd__store_event_t which_event(fx_t *f, uint64_t seq, int64_t orphan) {
  return (hd__store_event_t){.seq = seq, .created_ms = created(seq, 0),
                             .store = orphan ? 0 : f->store_no, .orphan = orphan};
}

static uint64_t mark_attempt(fx_t *f, uint64_t seq, int64_t orphan) {
  hd__store_event_t w = which_event(f, seq, orphan);
  if (f->s->vt->mark_attempt(f->s, &w, on_result, f) != 0) return UINT64_MAX;
  return next_value(f);
}

static uint64_t mark_failed(fx_t *f, uint64_t seq, int64_t orphan, uint32_t attempts,
                            const char *reason) {
  hd__store_event_t w = which_event(f, seq, orphan);
  if (f->s->vt->mark_failed(f->s, &w, attempts, reason, strlen(reason), on_result, f) != 0) {
    return UINT64_MAX;
  }
  return next_value(f);
}

/* The receive counts the first call; mark_attempt each later one; mark_failed keeps the reason
 * and the count for list_consumed (flag FAILED) until DONE forgets it; all of it across a
 * reopen. */
static void attempts_and_failed(void) {
  fx_t f;
  CHECK_OK(fx_begin(&f));
  CHECK(receive(&f, 1, 4) == 4);
  listing_t u = {0};
  CHECK(f.s->vt->list_unhandled(f.s, 0, 0, 100, on_event, &u) == 4);
  for (int i = 0; i < 4; i++) CHECK(u.attempts[i] == 1 && u.kind[i] == 0);
  CHECK(mark_attempt(&f, 2, 0) == 2);
  CHECK(mark_attempt(&f, 2, 0) == 3);
  CHECK(mark_attempt(&f, 42, 0) == 0); /* not held */
  hd__store_event_t other = which_event(&f, 3, 0);
  other.created_ms++; /* another event under that number is never counted for it */
  CHECK_OK(f.s->vt->mark_attempt(f.s, &other, on_result, &f));
  CHECK(next_value(&f) == 0);
  CHECK(mark_failed(&f, 2, 0, 3, "boom") == 1);
  CHECK(mark_failed(&f, 2, 0, 3, "again") == 0); /* failed once; the first reason stays */
  CHECK(mark_attempt(&f, 2, 0) == 0);           /* not unhandled any more */
  CHECK(consume_as(&f, 2, 0, 0) == 0);          /* nor consumable */
  CHECK(consume_as(&f, 1, 0, 0) == 1);
  CHECK(mark_failed(&f, 1, 0, 1, "late") == 0); /* consumed: stays consumed */
  CHECK(counts_are(&f, 2, 2));

  for (int round = 0; round < 2; round++) {
    listing_t c = {0}, v = {0};
    CHECK(f.s->vt->list_consumed(f.s, 0, 100, on_event, &c) == 2);
    CHECK(c.seqs[0] == 1 && c.flags[0] == 0);
    CHECK(c.seqs[1] == 2 && c.flags[1] == HD__STORE_EV_FAILED && c.attempts[1] == 3);
    CHECK(strcmp(c.data[1], "boom") == 0);
    CHECK(f.s->vt->list_unhandled(f.s, 0, 0, 100, on_event, &v) == 2);
    CHECK(v.seqs[0] == 3 && v.seqs[1] == 4 && v.attempts[0] == 1);
    if (round == 0) {
      CHECK_OK(fx_close(&f));
      CHECK_OK(fx_open(&f));
    }
  }
  CHECK(mark_attempt(&f, 3, 0) == 2); /* counted on from what the last run left */
  CHECK(mark_failed(&f, 4, 0, 7, "more than counted") == 1);
  uint64_t done[] = {1, 2, 4};
  CHECK_OK(f.s->vt->forget(f.s, f.id, done, 3, on_result, &f));
  CHECK(next_value(&f) == 3);
  listing_t c = {0};
  CHECK(f.s->vt->list_consumed(f.s, 0, 100, on_event, &c) == 0);
  CHECK(counts_are(&f, 1, 0));
  CHECK_OK(fx_done(&f));
}

/* An orphan has no count in the store (its calls are counted in memory); failing it forgets it,
 * with nothing to report (value 2). A received event's kind is kept. */
static void failed_orphan_and_kind(void) {
  fx_t f;
  CHECK_OK(fx_begin(&f));
  hd__store_event_t ev = {.seq = 1, .created_ms = created(1, 0), .payload = (const uint8_t *)"e1",
                          .payload_len = 2, .kind = HD__STORE_KIND_NOTICE};
  CHECK_OK(f.s->vt->insert_received(f.s, f.id, &ev, 1, on_result, &f));
  CHECK(next_value(&f) == 1);
  CHECK(receive(&f, 2, 3) == 2);
  listing_t u = {0};
  CHECK(f.s->vt->list_unhandled(f.s, 0, 0, 100, on_event, &u) == 3);
  CHECK(u.kind[0] == HD__STORE_KIND_NOTICE && u.kind[1] == 0 && u.attempts[0] == 1);
  uint8_t e[HD_STORE_ID_BYTES];
  memset(e, 0xE2, sizeof e);
  CHECK_OK(f.s->vt->rewind(f.s, f.id, 1, 1, e, on_result, &f));
  CHECK(next_value(&f) == 2); /* 2 and 3 orphaned */
  listing_t o = {0};
  CHECK(f.s->vt->list_orphans(f.s, 0, 100, on_event, &o) == 2);
  CHECK(mark_attempt(&f, 2, o.orphan[0]) == 0);
  CHECK(mark_failed(&f, 2, o.orphan[0], 5, "poison orphan") == 2);
  CHECK(mark_failed(&f, 2, o.orphan[0], 5, "poison orphan") == 0);
  listing_t o2 = {0};
  CHECK(f.s->vt->list_orphans(f.s, 0, 100, on_event, &o2) == 1 && o2.seqs[0] == 3);
  CHECK_OK(fx_done(&f));
}

#define TESTS(X)                                                                                  \
  X(high_water_and_duplicates)                                                                    \
  X(consume_and_forget)                                                                           \
  X(unhandled_paging)                                                                             \
  X(store_id_change)                                                                              \
  X(migration_from_version_2)                                                                     \
  X(reopen_keeps_everything)                                                                      \
  X(group_commit)                                                                                 \
  X(busy_and_versions)                                                                            \
  X(rewind_keeps_the_floor)                                                                       \
  X(rewind_from_nothing)                                                                          \
  X(attempts_and_failed)                                                                          \
  X(failed_orphan_and_kind)
HD_TEST_MAIN(TESTS)
