/* The server store (store.h) on SQLite: sequence numbers, paging, group commit, durability
 * across reopen, folder locking, migrations, error mapping. Every test works in a fresh folder
 * under /tmp that it removes, and every wait on the loop is bounded. */
#include "harness.h"
#include "store_util.h"

#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 20000 /* generous: valgrind is slow; a passing test never waits this long */

/* ---- helpers ------------------------------------------------------------------------------ */

/* Completions: how many, their status, their values in completion order. */
typedef struct results {
  int done, failed, last_status;
  uint64_t values[12000];
  int wrong_thread;
  uv_thread_t loop_thread;
} results_t;

static void on_result(void *data, int status, uint64_t value) {
  results_t *r = data;
  uv_thread_t self = uv_thread_self();
  if (!uv_thread_equal(&self, &r->loop_thread)) r->wrong_thread++;
  if (status != 0) {
    r->failed++;
    r->last_status = status;
  }
  if (r->done < (int)HD__ARRAY_SIZE(r->values)) r->values[r->done] = value;
  r->done++;
}

static results_t *results_new(void) {
  results_t *r = calloc(1, sizeof *r);
  if (r != NULL) r->loop_thread = uv_thread_self();
  return r;
}

typedef struct fx {
  store_fx_t fx; /* folder <dir>/data, loop, options */
  hd__server_store_t *s;
  results_t *r;  /* the test's completions */
} fx_t;

static int fx_init(fx_t *f) {
  f->s = NULL;
  f->r = results_new();
  if (f->r == NULL) return -1;
  return store_fx_init(&f->fx, "store", "data");
}

static int fx_open(fx_t *f) { return hd__server_store_open(&f->s, &f->fx.opts); }

/* Runs the loop until *flag is set or WAIT_MS passed; 0 if the flag was set. */
static int run_until(fx_t *f, const int *flag) {
  return store_run_until(&f->fx.loop, flag, 1, WAIT_MS);
}

static int fx_close(fx_t *f) {
  if (f->s == NULL) return 0;
  int done = 0;
  int rc = f->s->vt->close(f->s, store_set_flag, &done);
  f->s = NULL;
  if (rc != 0) return rc;
  return run_until(f, &done);
}

/* Closes the store if open, checks the loop has nothing left, removes the folder. */
static int fx_done(fx_t *f) {
  int rc = fx_close(f);
  if (store_fx_done(&f->fx) != 0) rc = -1;
  free(f->r);
  f->r = NULL;
  return rc;
}

/* init and open */
static int fx_begin(fx_t *f) {
  int rc = fx_init(f);
  return rc != 0 ? rc : fx_open(f);
}

static void user_key(uint8_t out[32], int n) {
  memset(out, 0, 32);
  out[0] = (uint8_t)n;
  out[31] = 0xA5;
}

static int add(fx_t *f, int user, const char *text, results_t *r) {
  uint8_t pk[32];
  user_key(pk, user);
  return f->s->vt->add_event(f->s, pk, 1700000000000, text, strlen(text), on_result, r);
}

/* Waits until r counts `want` completions (and no more). */
static int wait_results(fx_t *f, results_t *r, int want) {
  return store_run_until(&f->fx.loop, &r->done, want, WAIT_MS) == 0 && r->done == want ? 0 : -1;
}

typedef struct page {
  int count;
  uint64_t first, last;
  int out_of_order;
  char last_payload[64];
} page_t;

static int on_event(void *data, const hd__store_event_t *ev) {
  page_t *p = data;
  if (p->count == 0) p->first = ev->seq;
  if (p->count > 0 && ev->seq <= p->last) p->out_of_order++;
  p->last = ev->seq;
  size_t n = ev->payload_len < sizeof p->last_payload - 1 ? ev->payload_len
                                                          : sizeof p->last_payload - 1;
  memcpy(p->last_payload, ev->payload, n);
  p->last_payload[n] = '\0';
  p->count++;
  return 0;
}

/* ---- tests -------------------------------------------------------------------------------- */

static void open_creates_folder(void) {
  fx_t f;
  CHECK(fx_init(&f) == 0);
  snprintf(f.fx.folder, sizeof f.fx.folder, "%s/a/b/c", f.fx.dir); /* parents missing too */
  CHECK_OK(fx_open(&f));
  struct stat st;
  CHECK(stat(f.fx.folder, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
  uint8_t id[HD_STORE_ID_BYTES], zero[HD_STORE_ID_BYTES] = {0};
  f.s->vt->store_id(f.s, id);
  CHECK(memcmp(id, zero, sizeof id) != 0);
  CHECK(f.s->vt->pause(f.s) == 0);
  CHECK(strcmp(f.s->vt->backend_name, "sqlite") == 0);
  uint64_t total = 99;
  CHECK_OK(f.s->vt->pending_total(f.s, &total));
  CHECK(total == 0);
  CHECK_OK(fx_done(&f));
}

static void sequence_never_reused(void) {
  fx_t f;
  CHECK_OK(fx_begin(&f));
  results_t *r = f.r;
  for (int i = 0; i < 5; i++) CHECK_OK(add(&f, 1, "a", r));
  for (int i = 0; i < 3; i++) CHECK_OK(add(&f, 2, "b", r));
  CHECK(wait_results(&f, r, 8) == 0);
  CHECK(r->failed == 0 && r->wrong_thread == 0);
  for (int i = 0; i < 5; i++) CHECK(r->values[i] == (uint64_t)i + 1);
  for (int i = 0; i < 3; i++) CHECK(r->values[5 + i] == (uint64_t)i + 1);

  uint8_t a[32], b[32];
  user_key(a, 1);
  user_key(b, 2);
  uint64_t del[] = {4, 5, 5, 77};
  CHECK_OK(f.s->vt->delete_events(f.s, a, del, 4, on_result, r));
  CHECK_OK(f.s->vt->delete_events(f.s, a, del, 1, on_result, r)); /* 4 again: gone already */
  uint8_t stranger[32];
  user_key(stranger, 9);
  CHECK_OK(f.s->vt->delete_events(f.s, stranger, del, 2, on_result, r));
  CHECK(wait_results(&f, r, 11) == 0);
  CHECK(r->values[8] == 2 && r->values[9] == 0 && r->values[10] == 0);
  uint64_t n;
  CHECK_OK(f.s->vt->pending_count(f.s, a, &n));
  CHECK(n == 3);
  CHECK_OK(f.s->vt->pending_count(f.s, stranger, &n));
  CHECK(n == 0);

  /* reopen: the deleted 4 and 5 stay used */
  CHECK_OK(fx_close(&f));
  CHECK_OK(fx_open(&f));
  CHECK_OK(add(&f, 1, "a6", r));
  CHECK_OK(add(&f, 2, "b4", r));
  CHECK(wait_results(&f, r, 13) == 0);
  CHECK(r->values[11] == 6 && r->values[12] == 4);
  /* delete everything of user 1: the next number still goes on */
  uint64_t all[] = {1, 2, 3, 6};
  CHECK_OK(f.s->vt->delete_events(f.s, a, all, 4, on_result, r));
  CHECK(wait_results(&f, r, 14) == 0);
  CHECK(r->values[13] == 4);
  CHECK_OK(fx_close(&f));
  CHECK_OK(fx_open(&f));
  CHECK_OK(add(&f, 1, "a7", r));
  CHECK(wait_results(&f, r, 15) == 0);
  CHECK(r->values[14] == 7 && r->failed == 0);
  uint64_t total;
  CHECK_OK(f.s->vt->pending_total(f.s, &total));
  CHECK(total == 1 + 4);
  CHECK_OK(fx_done(&f));
}

/* An operator's purge of one user: only that user's events go, queued adds before it with them,
 * later ones stay; the numbering goes on after it, also across a reopen. */
static void delete_user_purges_one_user(void) {
  fx_t f;
  CHECK_OK(fx_begin(&f));
  results_t *r = f.r;
  uint8_t a[32], b[32], stranger[32];
  user_key(a, 1);
  user_key(b, 2);
  user_key(stranger, 9);
  for (int i = 0; i < 4; i++) CHECK_OK(add(&f, 1, "a", r));
  for (int i = 0; i < 2; i++) CHECK_OK(add(&f, 2, "b", r));
  CHECK(wait_results(&f, r, 6) == 0);
  f.s->vt->hold(f.s, 1); /* one batch: an add before the purge goes with it, one after stays */
  CHECK_OK(add(&f, 1, "a5", r));
  CHECK_OK(f.s->vt->delete_user(f.s, a, on_result, r));
  CHECK_OK(add(&f, 1, "a6", r));
  CHECK_OK(f.s->vt->delete_user(f.s, stranger, on_result, r));
  f.s->vt->hold(f.s, 0);
  CHECK(wait_results(&f, r, 10) == 0);
  CHECK(r->failed == 0 && r->wrong_thread == 0);
  CHECK(r->values[6] == 5 && r->values[7] == 5 && r->values[8] == 6 && r->values[9] == 0);
  uint64_t n = 0;
  CHECK_OK(f.s->vt->pending_count(f.s, a, &n));
  CHECK(n == 1);
  CHECK_OK(f.s->vt->pending_count(f.s, b, &n));
  CHECK(n == 2);
  page_t p = {0};
  CHECK(f.s->vt->read_pending(f.s, a, 0, 100, on_event, &p) == 1);
  CHECK(p.first == 6 && strcmp(p.last_payload, "a6") == 0);
  CHECK_OK(fx_close(&f));
  CHECK_OK(fx_open(&f));
  CHECK_OK(f.s->vt->delete_user(f.s, a, on_result, r));
  CHECK_OK(add(&f, 1, "a7", r));
  CHECK(wait_results(&f, r, 12) == 0);
  CHECK(r->values[10] == 1 && r->values[11] == 7 && r->failed == 0);
  uint64_t total = 0;
  CHECK_OK(f.s->vt->pending_total(f.s, &total));
  CHECK(total == 1 + 2);
  CHECK(f.s->vt->delete_user(f.s, NULL, on_result, r) == HD_EINVAL);
  CHECK_OK(fx_done(&f));
}

static void paging_fifo(void) {
  fx_t f;
  CHECK_OK(fx_begin(&f));
  results_t *r = f.r;
  char text[32];
  for (int i = 1; i <= 10000; i++) {
    snprintf(text, sizeof text, "event %d", i);
    CHECK_OK(add(&f, 1, text, r));
    if (i % 1000 == 0) CHECK_OK(add(&f, 2, "other user", r)); /* interleaved, not paged */
  }
  CHECK(wait_results(&f, r, 10010) == 0);
  CHECK(r->failed == 0);
  uint8_t a[32];
  user_key(a, 1);
  uint64_t n;
  CHECK_OK(f.s->vt->pending_count(f.s, a, &n));
  CHECK(n == 10000);

  /* read-only paging: 100 pages of 100, in order, each starting where the last ended */
  uint64_t after = 0;
  int pages = 0;
  for (;;) {
    page_t p = {0};
    int got = f.s->vt->read_pending(f.s, a, after, 100, on_event, &p);
    CHECK(got >= 0 && got == p.count && got <= 100 && p.out_of_order == 0);
    if (got == 0) break;
    CHECK(p.first == after + 1 && p.last == after + (uint64_t)got);
    snprintf(text, sizeof text, "event %llu", (unsigned long long)p.last);
    CHECK(strcmp(p.last_payload, text) == 0);
    after = p.last;
    pages++;
  }
  CHECK(pages == 100 && after == 10000);

  /* consume as a server does: page from the start, delete the page, page again */
  int drained = 0, rounds = 0;
  while (rounds++ < 200) {
    page_t p = {0};
    uint64_t seqs[100];
    int got = f.s->vt->read_pending(f.s, a, 0, 100, on_event, &p);
    CHECK(got >= 0);
    if (got == 0) break;
    for (int i = 0; i < got; i++) seqs[i] = p.first + (uint64_t)i;
    int before = r->done;
    CHECK_OK(f.s->vt->delete_events(f.s, a, seqs, (size_t)got, on_result, r));
    CHECK(wait_results(&f, r, before + 1) == 0);
    CHECK(r->values[before] == (uint64_t)got);
    drained += got;
  }
  CHECK(drained == 10000);
  CHECK_OK(f.s->vt->pending_count(f.s, a, &n));
  CHECK(n == 0);
  uint64_t total;
  CHECK_OK(f.s->vt->pending_total(f.s, &total));
  CHECK(total == 10);
  CHECK_OK(fx_done(&f));
}

/* Threads that submit adds straight to the store (submission is thread-safe). */
typedef struct submitter {
  fx_t *f;
  results_t *r;
  int user, count, errors;
} submitter_t;

static void submit_thread(void *arg) {
  submitter_t *t = arg;
  for (int i = 0; i < t->count; i++) {
    if (add(t->f, t->user, "concurrent", t->r) != 0) t->errors++;
  }
}

/* Four threads submit 250 adds each, with the writer held (all of them in one commit) or racing
 * the writer while the loop runs (some commits); every user gets 1..250 exactly once. */
static void group_commit(int held) {
  fx_t f;
  CHECK_OK(fx_begin(&f));
  results_t *r = f.r;
  if (held) f.s->vt->hold(f.s, 1);
  submitter_t t[4];
  uv_thread_t th[4];
  for (int i = 0; i < 4; i++) {
    t[i] = (submitter_t){&f, r, i + 1, 250, 0};
    CHECK(uv_thread_create(&th[i], submit_thread, &t[i]) == 0);
  }
  hd__store_stats_t st;
  if (held) {
    for (int i = 0; i < 4; i++) uv_thread_join(&th[i]);
    f.s->vt->stats(f.s, &st);
    CHECK(st.queued == 1000 && st.commits == 0);
    f.s->vt->hold(f.s, 0);
  }
  CHECK(wait_results(&f, r, 1000) == 0);
  if (!held) {
    for (int i = 0; i < 4; i++) uv_thread_join(&th[i]);
  }
  for (int i = 0; i < 4; i++) CHECK(t[i].errors == 0);
  CHECK(r->failed == 0 && r->wrong_thread == 0);
  f.s->vt->stats(f.s, &st);
  if (held) {
    CHECK(st.commits == 1 && st.ops_done == 1000 && st.queued == 0);
  } else {
    CHECK(st.ops_done == 1000 && st.commits >= 1 && st.commits < 1000);
    if (hdt_verbose()) printf("  1000 concurrent adds: %llu commits\n", (unsigned long long)st.commits);
  }
  for (int u = 1; u <= 4; u++) {
    uint8_t pk[32];
    user_key(pk, u);
    page_t p = {0};
    CHECK(f.s->vt->read_pending(f.s, pk, 0, 1000, on_event, &p) == 250);
    CHECK(p.first == 1 && p.last == 250 && p.out_of_order == 0);
  }
  CHECK_OK(fx_done(&f));
}

static void group_commit_held(void) { group_commit(1); }
static void group_commit_concurrent(void) { group_commit(0); }

/* Mixed writes complete in submission order; each exactly once. */
typedef struct order {
  int seen[64];
  int n, all;
} order_t;

typedef struct tag {
  order_t *o;
  int id;
} tag_t;

static void on_tagged(void *data, int status, uint64_t value) {
  tag_t *t = data;
  t->o->seen[t->o->n++] = status == 0 ? t->id : -t->id;
  if (t->o->n == 40) t->o->all = 1;
}

static void completion_order(void) {
  fx_t f;
  CHECK_OK(fx_begin(&f));
  order_t o = {{0}, 0, 0};
  tag_t tags[40];
  uint8_t pk[32];
  user_key(pk, 1);
  uint64_t seq1 = 1;
  f.s->vt->hold(f.s, 1); /* make the first batch mixed, then release mid-way */
  for (int i = 0; i < 40; i++) {
    tags[i] = (tag_t){&o, i + 1};
    if (i == 20) f.s->vt->hold(f.s, 0);
    if (i % 7 == 3) {
      CHECK_OK(f.s->vt->delete_events(f.s, pk, &seq1, 1, on_tagged, &tags[i]));
    } else if (i % 11 == 5) {
      CHECK_OK(f.s->vt->set_pause(f.s, (uint32_t)i, on_tagged, &tags[i]));
    } else {
      CHECK_OK(f.s->vt->add_event(f.s, pk, 0, "x", 1, on_tagged, &tags[i]));
    }
  }
  CHECK(run_until(&f, &o.all) == 0);
  CHECK(o.n == 40);
  for (int i = 0; i < 40; i++) CHECK(o.seen[i] == i + 1);
  CHECK(f.s->vt->pause(f.s) == 27); /* the last set_pause submitted: i = 27 */
  CHECK_OK(fx_done(&f));
}

static void reopen_keeps_everything(void) {
  fx_t f;
  CHECK_OK(fx_begin(&f));
  uint8_t id1[HD_STORE_ID_BYTES], id2[HD_STORE_ID_BYTES];
  f.s->vt->store_id(f.s, id1);
  results_t *r = f.r;
  CHECK_OK(f.s->vt->set_pause(f.s, 1234, on_result, r));
  CHECK_OK(add(&f, 3, "kept", r));
  CHECK(wait_results(&f, r, 2) == 0);
  CHECK(r->failed == 0 && r->values[0] == 1234 && f.s->vt->pause(f.s) == 1234);
  CHECK_OK(fx_close(&f));
  f.fx.opts.sync_normal = 1; /* the durability level is per open, not stored */
  CHECK_OK(fx_open(&f));
  f.s->vt->store_id(f.s, id2);
  CHECK(memcmp(id1, id2, sizeof id1) == 0);
  CHECK(f.s->vt->pause(f.s) == 1234);
  uint8_t pk[32];
  user_key(pk, 3);
  page_t p = {0};
  CHECK(f.s->vt->read_pending(f.s, pk, 0, 10, on_event, &p) == 1);
  CHECK(strcmp(p.last_payload, "kept") == 0);
  CHECK_OK(fx_close(&f));
  /* the WAL was checkpointed into the database by the last close */
  char wal[200];
  snprintf(wal, sizeof wal, "%s/hyperdown.db-wal", f.fx.folder);
  CHECK(access(wal, F_OK) != 0);

  /* another folder: another store id */
  fx_t g;
  CHECK_OK(fx_begin(&g));
  g.s->vt->store_id(g.s, id2);
  CHECK(memcmp(id1, id2, sizeof id1) != 0);
  CHECK_OK(fx_done(&g));
  CHECK_OK(fx_done(&f));
}

static void close_flushes_queue(void) {
  fx_t f;
  CHECK_OK(fx_begin(&f));
  results_t *r = f.r;
  f.s->vt->hold(f.s, 1);
  for (int i = 0; i < 100; i++) CHECK_OK(add(&f, 1, "queued", r));
  int done = 0;
  hd__server_store_t *s = f.s;
  CHECK_OK(s->vt->close(s, store_set_flag, &done));
  CHECK(s->vt->close(s, store_set_flag, &done) == HD_ECLOSED);
  CHECK(add(&f, 1, "late", r) == HD_ECLOSED);
  f.s = NULL;
  CHECK(run_until(&f, &done) == 0);
  CHECK(r->done == 100 && r->failed == 0); /* all completed before the close callback */
  CHECK_OK(fx_open(&f));
  uint64_t total;
  CHECK_OK(f.s->vt->pending_total(f.s, &total));
  CHECK(total == 100);
  /* the blocking close */
  hd__server_store_close_wait(f.s);
  f.s = NULL;
  CHECK_OK(fx_done(&f));
}

/* A store closed while a child of this process sits between its fork and its exec (it shares
 * the lock's open file description until then: Foundation's Process does this in the Swift
 * tests, while other tests run) opens again at once: the open waits for the child instead of
 * refusing the folder as "already open in this process". */
static void reopen_while_a_child_shares_the_lock(void) {
  fx_t f;
  CHECK_OK(fx_begin(&f));
  fflush(NULL);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) { /* a child that has not exec'd yet: it only waits */
    struct timespec ts = {0, 100 * 1000000L};
    nanosleep(&ts, NULL);
    _exit(0);
  }
  CHECK_OK(fx_close(&f));
  CHECK_OK(fx_open(&f)); /* HD_EBUSY "already open in this process" before */
  int status = 0;
  CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status));
  CHECK_OK(fx_done(&f));
}

/* The child of busy_folder: opens the folder its parent holds; exit 0 if refused with EBUSY. */
static const char *program_path; /* argv[0]: /proc/self/exe is valgrind itself under valgrind */

/* glibc hands constructors main's arguments */
__attribute__((constructor)) static void busy_child(int argc, char **argv) {
  program_path = argc > 0 ? argv[0] : NULL;
  const char *folder = getenv("HD_STORE_BUSY_CHILD");
  if (folder == NULL) return;
  uv_loop_t loop;
  int code = 3;
  if (uv_loop_init(&loop) == 0) {
    hd__store_options_t o = {0};
    o.folder = folder;
    o.loop = &loop;
    hd__server_store_t *s = NULL;
    int rc = hd__server_store_open(&s, &o);
    code = rc == HD_EBUSY && strstr(hd_last_error_message(), "another process") != NULL ? 0 : 1;
    if (code != 0) fprintf(stderr, "child: %d %s\n", rc, hd_last_error_message());
    uv_loop_close(&loop);
  }
  _exit(code);
}

static void busy_folder(void) {
  fx_t f;
  CHECK_OK(fx_begin(&f));
  /* the same process */
  hd__server_store_t *second = NULL;
  CHECK(hd__server_store_open(&second, &f.fx.opts) == HD_EBUSY);
  CHECK(second == NULL && strstr(hd_last_error_message(), "already open") != NULL);
  /* another process: a forked child that execs this program (busy_child below), so that it
   * starts clean instead of inheriting this process's heap and threads */
  fflush(NULL);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    setenv("HD_STORE_BUSY_CHILD", f.fx.folder, 1);
    if (program_path != NULL) execl(program_path, program_path, (char *)NULL);
    _exit(4);
  }
  int status = 0;
  pid_t got = 0;
  for (int i = 0; i < 2000 && got == 0; i++) {
    got = waitpid(pid, &status, WNOHANG);
    if (got == 0) usleep(5000);
  }
  if (got == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  CHECK(got == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
  /* the store still works, and once closed the folder opens again */
  results_t *r = f.r;
  CHECK_OK(add(&f, 1, "still fine", r));
  CHECK(wait_results(&f, r, 1) == 0 && r->failed == 0);
  CHECK_OK(fx_close(&f));
  CHECK_OK(fx_open(&f));
  CHECK_OK(fx_done(&f));
}

static int sql_file(const char *folder, const char *sql) {
  char path[200];
  snprintf(path, sizeof path, "%s/hyperdown.db", folder);
  sqlite3 *db = NULL;
  int rc = sqlite3_open(path, &db);
  if (rc == SQLITE_OK) rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
  sqlite3_close(db);
  return rc;
}

static int user_version(const char *folder) {
  char path[200];
  snprintf(path, sizeof path, "%s/hyperdown.db", folder);
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  int v = -1;
  if (sqlite3_open(path, &db) == SQLITE_OK &&
      sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW) {
    v = sqlite3_column_int(st, 0);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

static void migration_from_zero(void) {
  fx_t f;
  CHECK(fx_init(&f) == 0);
  CHECK(mkdir(f.fx.folder, 0700) == 0);
  CHECK(sql_file(f.fx.folder, "PRAGMA user_version=0") == SQLITE_OK);
  CHECK(user_version(f.fx.folder) == 0);
  CHECK_OK(fx_open(&f));
  results_t *r = f.r;
  CHECK_OK(add(&f, 1, "after migration", r));
  CHECK(wait_results(&f, r, 1) == 0 && r->failed == 0 && r->values[0] == 1);
  CHECK_OK(fx_close(&f));
  CHECK(user_version(f.fx.folder) == 3);
  CHECK_OK(fx_done(&f));
}

static void migration_future_refused(void) {
  fx_t f;
  CHECK(fx_init(&f) == 0);
  CHECK(mkdir(f.fx.folder, 0700) == 0);
  CHECK(sql_file(f.fx.folder, "PRAGMA user_version=99") == SQLITE_OK);
  CHECK(fx_open(&f) == HD_EVERSION);
  CHECK(strstr(hd_last_error_message(), "newer") != NULL);
  CHECK(fx_open(&f) == HD_EVERSION); /* the failed open released the lock */
  CHECK(user_version(f.fx.folder) == 99);   /* and changed nothing */
  CHECK_OK(fx_done(&f));
}

static void wrong_kind_refused(void) {
  fx_t f;
  CHECK(fx_init(&f) == 0);
  hd__client_store_t *c = NULL;
  CHECK_OK(hd__client_store_open(&c, &f.fx.opts));
  hd__client_store_close_wait(c);
  CHECK(fx_open(&f) == HD_ESTORE);
  CHECK(strstr(hd_last_error_message(), "not a hyperdown server store") != NULL);
  CHECK_OK(fx_done(&f));
}

static void corrupt_refused(void) {
  fx_t f;
  CHECK(fx_init(&f) == 0);
  CHECK(mkdir(f.fx.folder, 0700) == 0);
  char path[200];
  snprintf(path, sizeof path, "%s/hyperdown.db", f.fx.folder);
  FILE *fp = fopen(path, "wb");
  CHECK(fp != NULL);
  for (int i = 0; i < 512; i++) fputs("not a database ", fp);
  fclose(fp);
  CHECK(fx_open(&f) == HD_ECORRUPT);
  CHECK(fx_open(&f) == HD_ECORRUPT);
  CHECK_OK(fx_done(&f));
}

static void disk_full(void) {
  fx_t f;
  CHECK(fx_init(&f) == 0);
  f.fx.opts.max_db_pages = 40; /* a quota hits SQLITE_FULL exactly as a full disk does */
  CHECK_OK(fx_open(&f));
  results_t *r = f.r;
  char big[1500];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  int acknowledged = 0;
  for (int i = 0; i < 1000 && r->failed == 0; i++) {
    CHECK_OK(add(&f, 1, big, r));
    CHECK(wait_results(&f, r, i + 1) == 0);
    if (r->failed == 0) acknowledged++;
  }
  CHECK(r->failed == 1 && r->last_status == HD_ENOSPC);
  CHECK(acknowledged > 10);
  /* the loop thread's detail says why, and the store goes on answering */
  CHECK(strstr(hd_last_error_message(), "full") != NULL);
  CHECK_OK(add(&f, 1, big, r));
  CHECK(wait_results(&f, r, acknowledged + 2) == 0 && r->last_status == HD_ENOSPC);
  CHECK_OK(fx_close(&f));
  /* everything acknowledged is there, nothing else; numbers go on after the last durable one */
  f.fx.opts.max_db_pages = 0;
  CHECK_OK(fx_open(&f));
  uint8_t pk[32];
  user_key(pk, 1);
  uint64_t n;
  CHECK_OK(f.s->vt->pending_count(f.s, pk, &n));
  CHECK(n == (uint64_t)acknowledged);
  page_t p = {0};
  CHECK(f.s->vt->read_pending(f.s, pk, 0, 2000, on_event, &p) == acknowledged);
  CHECK(p.last == (uint64_t)acknowledged);
  int before = r->done;
  CHECK_OK(add(&f, 1, "small", r));
  CHECK(wait_results(&f, r, before + 1) == 0 && r->values[before] == (uint64_t)acknowledged + 1);
  CHECK_OK(fx_done(&f));
}

static void bad_arguments(void) {
  fx_t f;
  CHECK(fx_init(&f) == 0);
  hd__server_store_t *s = NULL;
  hd__store_options_t none = {0};
  CHECK(hd__server_store_open(&s, &none) == HD_EINVAL);
  CHECK(hd__server_store_open(&s, NULL) == HD_EINVAL);
  CHECK_OK(fx_open(&f));
  CHECK(f.s->vt->add_event(f.s, NULL, 0, "x", 1, NULL, NULL) == HD_EINVAL);
  uint8_t pk[32];
  user_key(pk, 1);
  CHECK(f.s->vt->add_event(f.s, pk, 0, NULL, 5, NULL, NULL) == HD_EINVAL);
  /* no callback is allowed (fire and forget) */
  CHECK_OK(f.s->vt->add_event(f.s, pk, 0, "x", 1, NULL, NULL));
  CHECK_OK(fx_done(&f));
}

/* ---- a folder that held a store (docs/STORAGE.md "The store marker") ------------------------ */

#define MARKER "hyperdown.store"

/* A store in f's folder with one event of user 1, closed: its marker is there. */
static int stored_one(fx_t *f) {
  if (fx_open(f) != 0 || add(f, 1, "acknowledged", f->r) != 0) return -1;
  if (wait_results(f, f->r, 1) != 0 || f->r->failed != 0) return -1;
  return fx_close(f);
}

/* The refusal says what happened and what to do. */
static int refused_with_advice(fx_t *f) {
  int rc = fx_open(f);
  const char *msg = hd_last_error_message();
  if (hdt_verbose()) fprintf(stderr, "  refused: %s\n", msg);
  if (rc != HD_ECORRUPT || strstr(msg, "backup") == NULL || strstr(msg, "remove") == NULL) {
    fprintf(stderr, "  open: %d %s\n", rc, msg);
    return 0;
  }
  return 1;
}

/* Removes the marker, opens the store and counts what it holds: 0 or -1. */
static int open_unmarked(fx_t *f, uint64_t *total) {
  char path[300];
  snprintf(path, sizeof path, "%s/%s", f->fx.folder, MARKER);
  if (unlink(path) != 0 || fx_open(f) != 0) return -1;
  return f->s->vt->pending_total(f->s, total) == 0 ? 0 : -1;
}

/* The database is empty (lost to a crash or a truncating tool): refused, not a fresh store; once
 * the marker is removed (the operator's choice), an empty store opens. */
static void lost_database_refused(void) {
  fx_t f;
  CHECK_OK(fx_init(&f));
  CHECK_OK(stored_one(&f));
  CHECK(store_write_file(f.fx.folder, "hyperdown.db", "", 0) == 0);
  CHECK(refused_with_advice(&f));
  CHECK(refused_with_advice(&f)); /* the refusal changed nothing */
  uint64_t total = 1;
  CHECK(open_unmarked(&f, &total) == 0 && total == 0);
  CHECK_OK(fx_close(&f));
  CHECK(store_file_exists(f.fx.folder, MARKER)); /* the new store has its own */
  CHECK_OK(fx_done(&f));
}

/* Garbage where the database was: refused with the same advice. */
static void garbage_database_refused(void) {
  fx_t f;
  CHECK_OK(fx_init(&f));
  CHECK_OK(stored_one(&f));
  char junk[8192];
  for (size_t i = 0; i < sizeof junk; i++) junk[i] = (char)(i * 7 + 3);
  CHECK(store_write_file(f.fx.folder, "hyperdown.db", junk, sizeof junk) == 0);
  CHECK(refused_with_advice(&f));
  CHECK_OK(fx_done(&f));
}

/* A crash left the committed pages only in the WAL, and the WAL is garbage: SQLite sees an empty
 * database, which must not open as a fresh store. The folder is copied while the store is open
 * (nothing checkpointed yet), the WAL replaced by garbage. */
static void garbage_wal_refused(void) {
  fx_t f;
  CHECK_OK(fx_begin(&f));
  CHECK_OK(add(&f, 1, "acknowledged", f.r));
  CHECK(wait_results(&f, f.r, 1) == 0 && f.r->failed == 0);
  char copy[sizeof f.fx.folder];
  snprintf(copy, sizeof copy, "%s/copy", f.fx.dir);
  CHECK(store_copy_file(f.fx.folder, copy, "hyperdown.db") == 0);
  int marked = store_copy_file(f.fx.folder, copy, MARKER) == 0;
  char junk[4096 + 32];
  for (size_t i = 0; i < sizeof junk; i++) junk[i] = (char)(i * 13 + 1);
  CHECK(store_write_file(copy, "hyperdown.db-wal", junk, sizeof junk) == 0);
  CHECK_OK(fx_close(&f));
  snprintf(f.fx.folder, sizeof f.fx.folder, "%s", copy);
  CHECK(refused_with_advice(&f));
  CHECK(marked); /* the marker was written once the store's first commit was durable */
  CHECK_OK(fx_done(&f));
}

/* A crash while the store was being created (before its first commit, so before the marker) must
 * not leave a folder that never opens; a crash after the first commit and before the marker
 * leaves a valid store that opens and gets its marker. */
static void interrupted_creation_opens(void) {
  fx_t f;
  CHECK_OK(fx_init(&f));
  CHECK(mkdir(f.fx.folder, 0700) == 0);
  CHECK(store_write_file(f.fx.folder, "hyperdown.db", "", 0) == 0);
  CHECK(store_write_file(f.fx.folder, "hyperdown.lock", "12345\n", 6) == 0);
  CHECK_OK(fx_open(&f));
  CHECK_OK(add(&f, 1, "first", f.r));
  CHECK(wait_results(&f, f.r, 1) == 0 && f.r->failed == 0);
  CHECK_OK(fx_close(&f));
  uint64_t total = 0;
  CHECK(open_unmarked(&f, &total) == 0 && total == 1);
  CHECK(store_file_exists(f.fx.folder, MARKER));
  CHECK_OK(fx_done(&f));
}

/* ---- epochs and backups (docs/STORAGE.md "Epochs", "Backups") ----------------------------- */

/* Adds `n` events for `user` and waits for them; 0 or -1. */
static int add_n(fx_t *f, int user, int n) {
  int before = f->r->done;
  for (int i = 0; i < n; i++) {
    if (add(f, user, "event", f->r) != 0) return -1;
  }
  return wait_results(f, f->r, before + n) == 0 && f->r->failed == 0 ? 0 : -1;
}

static void on_backup(void *data, int status, uint64_t value) {
  (void)value;
  int *st = data;
  *st = status == 0 ? 1 : status;
}

/* A backup of the open store into <dir>/<name>; 0 once it completed with success. */
static int backup_to(fx_t *f, const char *name, char *path, size_t cap) {
  snprintf(path, cap, "%s/%s", f->fx.dir, name);
  int st = 0;
  if (f->s->vt->backup(f->s, path, on_backup, &st) != 0) return -1;
  if (store_run_until(&f->fx.loop, &st, 1, WAIT_MS) != 0 && st == 0) return -1;
  if (st != 1) fprintf(stderr, "  backup: %d %s\n", st, hd_last_error_message());
  return st == 1 ? 0 : -1;
}

/* Closes f's store and opens a fresh folder <dir>/<name> holding the file `backup` as its
 * database (what docs/OPERATIONS.md says to do for a restore). */
static int restore_from(fx_t *f, const char *backup, const char *name) {
  if (fx_close(f) != 0) return -1;
  snprintf(f->fx.folder, sizeof f->fx.folder, "%s/%s", f->fx.dir, name);
  char db[300];
  snprintf(db, sizeof db, "%s/hyperdown.db", f->fx.folder);
  if (mkdir(f->fx.folder, 0700) != 0 || hdt_copy_file(backup, db) != 0) return -1;
  return fx_open(f);
}

/* The floor the store gives a client of `user` that saw `high` in `epoch`; -1 if unknown. */
static int64_t floor_for(fx_t *f, int user, const uint8_t epoch[16], uint64_t high) {
  uint8_t pk[32];
  user_key(pk, user);
  uint64_t fl = 99999;
  int known = -1;
  if (f->s->vt->resume_floor(f->s, pk, epoch, high, &fl, &known) != 0) return -2;
  return known ? (int64_t)fl : -1;
}

/* 1 if the epoch changed at this open for a reason mentioning `why` (NULL: it did not change). */
static int changed_for(fx_t *f, const char *why) {
  const char *note = f->s->vt->epoch_change(f->s);
  return why == NULL ? note == NULL : note != NULL && strstr(note, why) != NULL;
}

/* 1 if the store, closed and opened again, is still in epoch `e`, unchanged. */
static int reopen_keeps(fx_t *f, const uint8_t e[16]) {
  uint8_t now[16];
  if (fx_close(f) != 0 || fx_open(f) != 0) return 0;
  f->s->vt->epoch(f->s, now);
  return memcmp(now, e, 16) == 0 && changed_for(f, NULL);
}

/* The files of f's open store copied into <dir>/<name>, as a power loss would leave them. */
static int crash_copy(fx_t *f, const char *name, char *out, size_t cap) {
  snprintf(out, cap, "%s/%s", f->fx.dir, name);
  return store_copy_file(f->fx.folder, out, "hyperdown.db") == 0 &&
                 store_copy_file(f->fx.folder, out, "hyperdown.db-wal") == 0 &&
                 store_copy_file(f->fx.folder, out, MARKER) == 0
             ? 0
             : -1;
}

/* A clean close and a reopen keep the epoch, whatever the synchronous level; so does an unclean
 * end under FULL (nothing committed can be lost); an unclean end under NORMAL starts a new one. */
static void epoch_changes_only_when_commits_may_be_lost(void) {
  fx_t f;
  uint8_t e1[16], e2[16];
  char normal[sizeof f.fx.folder], full[sizeof f.fx.folder];
  CHECK_OK(fx_begin(&f));
  f.s->vt->epoch(f.s, e1);
  CHECK(changed_for(&f, NULL));
  f.fx.opts.sync_normal = 1;
  CHECK(reopen_keeps(&f, e1));
  CHECK_OK(add_n(&f, 1, 3));
  CHECK(crash_copy(&f, "crashed-normal", normal, sizeof normal) == 0);
  f.fx.opts.sync_normal = 0;
  CHECK(reopen_keeps(&f, e1)); /* the original, closed cleanly */
  CHECK_OK(add_n(&f, 1, 1));
  CHECK(crash_copy(&f, "crashed-full", full, sizeof full) == 0);
  CHECK_OK(fx_close(&f));
  snprintf(f.fx.folder, sizeof f.fx.folder, "%s", full);
  CHECK(reopen_keeps(&f, e1));
  CHECK_OK(fx_close(&f));
  snprintf(f.fx.folder, sizeof f.fx.folder, "%s", normal);
  CHECK_OK(fx_open(&f));
  f.s->vt->epoch(f.s, e2);
  CHECK(memcmp(e1, e2, 16) != 0 && changed_for(&f, "synchronous=NORMAL"));
  CHECK(floor_for(&f, 1, e1, 3) == 3); /* these files lost nothing: the floor is all of it */
  CHECK(floor_for(&f, 1, e2, 3) == 3);
  CHECK(reopen_keeps(&f, e2)); /* the next open, after a clean close, keeps the new epoch */
  CHECK_OK(fx_done(&f));
}

/* A backup while the store works; the store restored from it has the same id, the events of
 * the backup's moment, and a new epoch; a client that saw past the backup gets the backup's
 * number as its floor, a user the backup did not know 0, an unknown epoch "unknown". */
static void backup_restores_with_a_new_epoch(void) {
  fx_t f;
  uint8_t id1[16], id2[16], e1[16], e2[16], unknown[16], zero[16] = {0};
  memset(unknown, 0x5a, sizeof unknown);
  CHECK_OK(fx_begin(&f));
  f.s->vt->store_id(f.s, id1);
  f.s->vt->epoch(f.s, e1);
  CHECK_OK(add_n(&f, 1, 3));
  char path[300];
  f.s->vt->hold(f.s, 1); /* writes pile up while it copies: it does not wait for them */
  CHECK_OK(add(&f, 1, "not in the backup", f.r));
  CHECK(backup_to(&f, "backup.db", path, sizeof path) == 0);
  f.s->vt->hold(f.s, 0);
  CHECK(wait_results(&f, f.r, 4) == 0);
  CHECK_OK(add_n(&f, 1, 1));
  CHECK_OK(add_n(&f, 2, 2)); /* user 2 is born after the backup */
  char again[300];
  snprintf(again, sizeof again, "%s/backup.db", f.fx.dir);
  CHECK(f.s->vt->backup(f.s, again, on_backup, NULL) == HD_EINVAL); /* never over a file */
  CHECK(restore_from(&f, path, "restored") == 0);
  f.s->vt->store_id(f.s, id2);
  f.s->vt->epoch(f.s, e2);
  CHECK(memcmp(id1, id2, 16) == 0 && memcmp(e1, e2, 16) != 0);
  CHECK(changed_for(&f, "restored from a backup"));
  uint8_t pk[32];
  user_key(pk, 1);
  uint64_t n = 0;
  CHECK_OK(f.s->vt->pending_count(f.s, pk, &n));
  CHECK(n == 3);
  CHECK(floor_for(&f, 1, e1, 5) == 3);   /* saw 5: only 1..3 are still what it saw */
  CHECK(floor_for(&f, 1, e1, 2) == 2);   /* saw 2: nothing it saw was lost */
  CHECK(floor_for(&f, 1, zero, 5) == 3); /* no epoch yet: the store's first */
  CHECK(floor_for(&f, 1, e2, 5) == 5);   /* the current epoch */
  CHECK(floor_for(&f, 2, e1, 2) == 0);   /* unknown to the backup: every number is new */
  CHECK(floor_for(&f, 1, unknown, 5) == -1);
  CHECK_OK(add_n(&f, 1, 2)); /* numbering goes on from the backup: 4 and 5 again */
  CHECK(f.r->values[f.r->done - 1] == 5);
  CHECK(floor_for(&f, 1, e1, 5) == 3);  /* after the user's first write: from its floor row */
  CHECK(reopen_keeps(&f, e2));          /* the mark was for the first open only */
  CHECK_OK(fx_done(&f));
}

/* Two restores: a client's floor is the lowest over every change after its epoch. */
static void floors_over_two_restores(void) {
  fx_t f;
  uint8_t a[16], b[16], c[16];
  char b1[300], b2[300];
  CHECK_OK(fx_begin(&f));
  f.s->vt->epoch(f.s, a);
  CHECK_OK(add_n(&f, 1, 10));
  CHECK(backup_to(&f, "b1.db", b1, sizeof b1) == 0);
  CHECK_OK(add_n(&f, 1, 10)); /* 11..20, lost by the first restore */
  CHECK(restore_from(&f, b1, "r1") == 0);
  f.s->vt->epoch(f.s, b);
  CHECK_OK(add_n(&f, 1, 5)); /* 11..15 of epoch b */
  CHECK(backup_to(&f, "b2.db", b2, sizeof b2) == 0);
  CHECK_OK(add_n(&f, 1, 3)); /* 16..18, lost by the second */
  CHECK(restore_from(&f, b2, "r2") == 0);
  f.s->vt->epoch(f.s, c);
  CHECK(memcmp(a, b, 16) != 0 && memcmp(b, c, 16) != 0 && memcmp(a, c, 16) != 0);
  CHECK(floor_for(&f, 1, a, 20) == 10);
  CHECK(floor_for(&f, 1, b, 18) == 15);
  CHECK(floor_for(&f, 1, b, 12) == 12);
  CHECK(floor_for(&f, 1, c, 15) == 15);
  CHECK_OK(add_n(&f, 1, 1));
  CHECK(f.r->values[f.r->done - 1] == 16);
  CHECK(floor_for(&f, 1, a, 20) == 10);
  CHECK(floor_for(&f, 1, b, 18) == 15);
  CHECK_OK(fx_done(&f));
}

/* A store no process has open is backed up from its folder; an open one is not (EBUSY), nor a
 * folder without a store (ENOTFOUND). A close waits for a backup on the pool. */
static void backup_folder_and_close(void) {
  fx_t f;
  CHECK_OK(fx_begin(&f));
  CHECK_OK(add_n(&f, 1, 2));
  char path[300];
  snprintf(path, sizeof path, "%s/offline.db", f.fx.dir);
  CHECK(hd__server_store_backup_folder(f.fx.folder, path) == HD_EBUSY);
  int st = 0, closed = 0;
  snprintf(path, sizeof path, "%s/at-close.db", f.fx.dir);
  CHECK_OK(f.s->vt->backup(f.s, path, on_backup, &st));
  CHECK_OK(f.s->vt->close(f.s, store_set_flag, &closed));
  f.s = NULL;
  CHECK(store_run_until(&f.fx.loop, &closed, 1, WAIT_MS) == 0);
  CHECK(st == 1); /* the backup completed before the close did */
  snprintf(path, sizeof path, "%s/offline.db", f.fx.dir);
  CHECK_OK(hd__server_store_backup_folder(f.fx.folder, path));
  CHECK(hd__server_store_backup_folder(f.fx.dir, path) == HD_ENOTFOUND);
  CHECK(restore_from(&f, path, "from-offline") == 0);
  CHECK(changed_for(&f, "restored"));
  uint64_t total = 0;
  CHECK_OK(f.s->vt->pending_total(f.s, &total));
  CHECK(total == 2);
  CHECK_OK(fx_done(&f));
}

#define TESTS(X)                                                                                  \
  X(open_creates_folder)                                                                          \
  X(sequence_never_reused)                                                                        \
  X(delete_user_purges_one_user)                                                                  \
  X(paging_fifo)                                                                                  \
  X(group_commit_held)                                                                            \
  X(group_commit_concurrent)                                                                      \
  X(completion_order)                                                                             \
  X(reopen_keeps_everything)                                                                      \
  X(close_flushes_queue)                                                                          \
  X(busy_folder)                                                                                  \
  X(reopen_while_a_child_shares_the_lock)                                                         \
  X(migration_from_zero)                                                                          \
  X(migration_future_refused)                                                                     \
  X(wrong_kind_refused)                                                                           \
  X(corrupt_refused)                                                                              \
  X(disk_full)                                                                                    \
  X(bad_arguments)                                                                                \
  X(lost_database_refused)                                                                        \
  X(garbage_database_refused)                                                                     \
  X(garbage_wal_refused)                                                                          \
  X(interrupted_creation_opens)                                                                   \
  X(epoch_changes_only_when_commits_may_be_lost)                                                  \
  X(backup_restores_with_a_new_epoch)                                                             \
  X(floors_over_two_restores)                                                                     \
  X(backup_folder_and_close)
HD_TEST_MAIN(TESTS)
