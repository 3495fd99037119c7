/* The SQLite store (store_sqlite.h): first the plumbing (folder and lock, connections and their
 * pragmas, migrations, statements, error mapping), then the store object built from it. */
#include "store_sqlite.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* SQLite's primary result codes that mean something of their own here; any other is ESTORE. */
static const struct {
  int sqlite, code;
} error_codes[] = {
    {SQLITE_FULL, HD_ENOSPC},   {SQLITE_CORRUPT, HD_ECORRUPT}, {SQLITE_NOTADB, HD_ECORRUPT},
    {SQLITE_IOERR, HD_EIO},     {SQLITE_CANTOPEN, HD_EIO},     {SQLITE_PERM, HD_EIO},
    {SQLITE_READONLY, HD_EIO},  {SQLITE_BUSY, HD_EBUSY},       {SQLITE_LOCKED, HD_EBUSY},
    {SQLITE_NOMEM, HD_ENOMEM},
};

int hd__sqlite_error(int rc, sqlite3 *db, const char *what) {
  int code = HD_ESTORE;
  for (size_t i = 0; i < HD__ARRAY_SIZE(error_codes); i++) {
    if (error_codes[i].sqlite == (rc & 0xff)) code = error_codes[i].code;
  }
  const char *msg = db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  int sys = db != NULL ? sqlite3_system_errno(db) : 0;
  if (sys != 0 && code != HD_ECORRUPT) {
    return hd__error(code, "%s: %s (sqlite %d, %s)", what, msg, rc, strerror(sys));
  }
  return hd__error(code, "%s: %s (sqlite %d)", what, msg, rc);
}

static int errno_code(int e) { return e == ENOSPC || e == EDQUOT ? HD_ENOSPC : HD_EIO; }

/* mkdir -p with mode 0700 for what it creates: the folder holds a user's private events. */
static int make_folder(const char *folder) {
  char path[PATH_MAX];
  size_t len = strlen(folder);
  if (len == 0 || len >= sizeof path) return hd__error(HD_EINVAL, "store folder name is empty or too long");
  memcpy(path, folder, len + 1);
  for (size_t i = 1; i <= len; i++) {
    if (path[i] != '/' && path[i] != '\0') continue;
    char c = path[i];
    path[i] = '\0';
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
      int e = errno;
      return hd__error(errno_code(e), "cannot create store folder %s: %s", path, strerror(e));
    }
    path[i] = c;
  }
  struct stat st;
  if (stat(folder, &st) != 0 || !S_ISDIR(st.st_mode)) {
    return hd__error(HD_EIO, "store folder %s is not a directory", folder);
  }
  return 0;
}

/* An exclusive lock that conflicts with any other open of the file, in this process too. OFD
 * locks (Linux) and flock() belong to the open file description; classic fcntl locks belong to
 * the process, so a second open in the same process would succeed and the first close would
 * silently drop the lock: not used. */
static int try_lock(int fd) {
#ifdef F_OFD_SETLK
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  if (fcntl(fd, F_OFD_SETLK, &fl) == 0) return 0;
  if (errno != EINVAL) return -1;
#endif
  return flock(fd, LOCK_EX | LOCK_NB);
}

/* The pid the lock file names (its last holder wrote it), or 0. */
static long holder_pid(int fd) {
  char buf[32] = {0};
  ssize_t got = pread(fd, buf, sizeof buf - 1, 0);
  return got > 0 ? strtol(buf, NULL, 10) : 0;
}

/* try_lock, waiting a moment when the holder is this process: a store of this process that has
 * just closed can still hold the lock through a child between its fork and its exec (the child
 * shares the open file description until exec closes it; Foundation's Process, posix_spawn and
 * any fork of a threaded program do this), so a close followed at once by an open of the same
 * folder would fail now and then. A store that really is open in this process still gets
 * HD_EBUSY, 250 ms later. */
static int try_lock_settling(int fd) {
  for (int waited_ms = 0;; waited_ms += 2) {
    if (try_lock(fd) == 0) return 0;
    int e = errno;
    if ((e != EAGAIN && e != EACCES && e != EWOULDBLOCK) || holder_pid(fd) != (long)getpid() ||
        waited_ms >= 250) {
      errno = e;
      return -1;
    }
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
  }
}

/* Creates `folder` (0700) if missing and takes an exclusive lock on its lock file, held until
 * the fd is closed. HD_EBUSY (naming the holder's pid) if another open store holds it, in this
 * process or another. */
static int lock_folder(const char *folder, int *fd_out) {
  *fd_out = -1;
  int rc = make_folder(folder);
  if (rc != 0) return rc;
  char path[PATH_MAX];
  if (snprintf(path, sizeof path, "%s/%s", folder, HD__STORE_LOCK_FILE) >= (int)sizeof path) {
    return hd__error(HD_EINVAL, "store folder name too long");
  }
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    int e = errno;
    return hd__error(errno_code(e), "cannot open lock file %s: %s", path, strerror(e));
  }
  if (try_lock_settling(fd) != 0) {
    int e = errno;
    long pid = holder_pid(fd);
    close(fd);
    if (e == EAGAIN || e == EACCES || e == EWOULDBLOCK) {
      if (pid == (long)getpid()) {
        return hd__error(HD_EBUSY, "store folder %s is already open in this process", folder);
      }
      return hd__error(HD_EBUSY, "store folder %s is in use by another process (pid %ld)", folder,
                       pid);
    }
    return hd__error(HD_EIO, "cannot lock %s: %s", path, strerror(e));
  }
  /* the holder's pid, for the message another process shows; advisory only */
  char pid[32];
  int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
  if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
    /* not fatal: the lock is what matters */
  }
  *fd_out = fd;
  return 0;
}

int hd__sqlite_exec(sqlite3 *db, const char *sql, const char *what) {
  int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
  return rc == SQLITE_OK ? 0 : hd__sqlite_error(rc, db, what);
}

/* The first column of the first row of `sql` as an integer (pragmas). */
static int query_int(sqlite3 *db, const char *sql, int64_t *out) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      *out = sqlite3_column_int64(st, 0);
      rc = SQLITE_OK;
    }
  }
  int err = rc == SQLITE_OK ? 0 : hd__sqlite_error(rc, db, sql);
  sqlite3_finalize(st);
  return err;
}

static int set_wal(sqlite3 *db) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  int err = 0;
  if (rc != SQLITE_ROW) {
    err = hd__sqlite_error(rc, db, "cannot enable WAL");
  } else {
    const char *mode = (const char *)sqlite3_column_text(st, 0);
    if (mode == NULL || strcmp(mode, "wal") != 0) {
      err = hd__error(HD_ESTORE, "cannot enable WAL (journal mode stays %s)", mode ? mode : "?");
    }
  }
  sqlite3_finalize(st);
  return err;
}

/* Opens `folder`/hyperdown.db. The write connection gets WAL and the chosen synchronous level;
 * the read-only one is for the loop thread's paging reads. Each connection is used by one thread
 * at a time, so SQLite's per-connection mutex is off. */
static int open_conn(const char *folder, int readonly, const hd__store_options_t *opts,
                     sqlite3 **out) {
  *out = NULL;
  if (!sqlite3_threadsafe()) return hd__error(HD_ESTORE, "SQLite was built without threads");
  char path[PATH_MAX];
  if (snprintf(path, sizeof path, "%s/%s", folder, HD__STORE_DB_FILE) >= (int)sizeof path) {
    return hd__error(HD_EINVAL, "store folder name too long");
  }
  int flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE |
              (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  sqlite3 *db = NULL;
  int rc = sqlite3_open_v2(path, &db, flags, NULL);
  if (rc != SQLITE_OK) {
    int err = hd__sqlite_error(rc, db, path);
    sqlite3_close(db);
    return err;
  }
  /* the writer may wait for a foreign reader (a backup tool); the loop thread barely at all */
  sqlite3_busy_timeout(db, readonly ? 100 : 5000);
  int err = 0;
  if (readonly) {
    err = hd__sqlite_exec(db, "PRAGMA query_only=1; PRAGMA temp_store=MEMORY", "read connection");
  } else {
    err = set_wal(db);
    /* FULL while opening whatever the option says: what the open commits (the schema, the
     * store's first commit before its marker is written) must be durable before it is used;
     * set_sync() puts the configured level in force afterwards */
    char sql[160];
    snprintf(sql, sizeof sql,
             "PRAGMA synchronous=FULL; PRAGMA journal_size_limit=67108864; "
             "PRAGMA temp_store=MEMORY");
    if (err == 0) err = hd__sqlite_exec(db, sql, "write connection pragmas");
    if (err == 0 && opts->max_db_pages != 0) {
      snprintf(sql, sizeof sql, "PRAGMA max_page_count=%llu",
               (unsigned long long)opts->max_db_pages);
      err = hd__sqlite_exec(db, sql, "size quota");
    }
  }
  if (err != 0) {
    sqlite3_close(db);
    return err;
  }
  *out = db;
  return 0;
}

/* The synchronous level asked for, once the open's own commits are durable. */
static int set_sync(sqlite3 *db, const hd__store_options_t *opts) {
  return hd__sqlite_exec(db, opts->sync_normal ? "PRAGMA synchronous=NORMAL" : "PRAGMA synchronous=FULL",
                  "synchronous level");
}

/* Rolls back the open transaction, if SQLite has not already done so itself (after FULL or
 * IOERR it may have). */
static void rollback(sqlite3 *db) {
  if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
}

/* What to do about a folder that held a store and now holds none we can read. */
#define LOST_ADVICE                                                                               \
  "restore the folder from a backup (docs/OPERATIONS.md), or remove the folder to start an "     \
  "empty store"

/* Brings the database to the kind's latest schema version in one transaction. HD_EVERSION for a
 * version newer than this release knows, HD_ESTORE for a database of another kind, HD_ECORRUPT
 * for an empty database in a folder `marked` as holding a store (never created again there). */
static int migrate(hd__sqlite_store_t *s, const hd__store_options_t *opts, int marked) {
  sqlite3 *db = s->wdb;
  const hd__sqlite_kind_t *kind = s->kind;
  const char *folder = opts->folder;
  int err = hd__sqlite_exec(db, "BEGIN IMMEDIATE", "migration");
  if (err != 0) return err;
  int64_t app = 0, version = 0;
  err = query_int(db, "PRAGMA application_id", &app);
  if (err == 0) err = query_int(db, "PRAGMA user_version", &version);
  if (err == 0 && app != 0 && app != kind->application_id) {
    err = hd__error(HD_ESTORE, "the database is not a hyperdown %s store (application id %lld)",
                    kind->name, (long long)app);
  }
  if (err == 0 && version > kind->n_migrations) {
    err = hd__error(HD_EVERSION,
                    "the %s store has schema version %lld, newer than this release knows (%d): "
                    "open it with a newer hyperdown",
                    kind->name, (long long)version, kind->n_migrations);
  }
  if (err == 0 && marked && version == 0 && app == 0) {
    err = hd__error(HD_ECORRUPT,
                    "store folder %s held a %s store (its marker " HD__STORE_MARKER_FILE
                    " is there) but its database is empty: the events it held are lost or "
                    "elsewhere; " LOST_ADVICE,
                    folder, kind->name);
  }
  if (err == 0 && version < 0) {
    err = hd__error(HD_ECORRUPT, "the %s store has schema version %lld", kind->name,
                    (long long)version);
  }
  for (int64_t v = version; err == 0 && v < kind->n_migrations; v++) {
    char what[64];
    snprintf(what, sizeof what, "%s store migration to version %lld", kind->name,
             (long long)(v + 1));
    err = hd__sqlite_exec(db, kind->migrations[v], what);
  }
  if (err == 0 && (version != kind->n_migrations || app == 0)) {
    char sql[96];
    snprintf(sql, sizeof sql, "PRAGMA user_version=%d; PRAGMA application_id=%d",
             kind->n_migrations, (int)kind->application_id);
    err = hd__sqlite_exec(db, sql, "schema version");
  }
  if (err == 0 && kind->open_tx != NULL) err = kind->open_tx(s, opts);
  if (err == 0) return hd__sqlite_exec(db, "COMMIT", "migration commit");
  hd__error_state_t e;
  hd__error_save(&e); /* the rollback must not replace the detail */
  rollback(db);
  return hd__error_restore(&e);
}

static void finalize_all(sqlite3_stmt **st, size_t n) {
  for (size_t i = 0; i < n; i++) {
    sqlite3_finalize(st[i]);
    st[i] = NULL;
  }
}

/* Prepares every statement once (SQLITE_PREPARE_PERSISTENT: they are reused for the store's
 * life); on failure finalizes what was prepared. */
static int prepare_all(sqlite3 *db, const char *const *sql, sqlite3_stmt **out, size_t n) {
  memset(out, 0, n * sizeof *out);
  for (size_t i = 0; i < n; i++) {
    int rc = sqlite3_prepare_v3(db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &out[i], NULL);
    if (rc != SQLITE_OK) {
      int err = hd__sqlite_error(rc, db, sql[i]);
      finalize_all(out, n);
      return err;
    }
  }
  return 0;
}

/* The statement cache (hd__sqlite_stmt): open addressing on the SQL text's address. */
static size_t stmt_slot(const char *sql) {
  uintptr_t h = (uintptr_t)sql;
  return (size_t)((h ^ (h >> 13)) * 0x9E3779B97F4A7C15ull >> 40) & (HD__SQLITE_CACHED - 1);
}

sqlite3_stmt *hd__sqlite_stmt(hd__sqlite_store_t *s, sqlite3 *db, const char *sql) {
  hd__sqlite_cached_t *cache = db == s->wdb ? s->wcache : s->rcache;
  size_t i = stmt_slot(sql);
  for (size_t probes = 0; probes < HD__SQLITE_CACHED; probes++) {
    hd__sqlite_cached_t *c = &cache[(i + probes) & (HD__SQLITE_CACHED - 1)];
    if (c->sql == sql) return c->st;
    if (c->sql != NULL) continue;
    int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &c->st, NULL);
    if (rc != SQLITE_OK) {
      hd__sqlite_error(rc, db, sql);
      sqlite3_finalize(c->st);
      c->st = NULL;
      return NULL;
    }
    c->sql = sql;
    return c->st;
  }
  hd__error(HD_ESTORE, "store: more than %d cached statements", HD__SQLITE_CACHED);
  return NULL;
}

static void finalize_cached(hd__sqlite_cached_t *cache) {
  for (size_t i = 0; i < HD__SQLITE_CACHED; i++) {
    sqlite3_finalize(cache[i].st);
    cache[i].st = NULL;
    cache[i].sql = NULL;
  }
}

int hd__sqlite_step_done(sqlite3_stmt *st, const char *what) {
  int rc = sqlite3_step(st);
  int err = rc == SQLITE_DONE ? 0 : hd__sqlite_error(rc, sqlite3_db_handle(st), what);
  sqlite3_reset(st);
  return err;
}

int hd__sqlite_read_events(sqlite3_stmt *st, hd__store_event_fn fn, void *fn_data,
                           const char *what) {
  int columns = sqlite3_column_count(st);
  int count = 0, rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    hd__store_event_t ev = {.seq = (uint64_t)sqlite3_column_int64(st, 0),
                            .created_ms = sqlite3_column_int64(st, 1),
                            .payload = sqlite3_column_blob(st, 2),
                            .payload_len = (size_t)sqlite3_column_bytes(st, 2)};
    if (columns > 3) {
      ev.data = sqlite3_column_blob(st, 3);
      ev.data_len = (size_t)sqlite3_column_bytes(st, 3);
    }
    if (columns > 4) ev.flags = (uint32_t)sqlite3_column_int(st, 4);
    if (columns > 5) ev.orphan = sqlite3_column_int64(st, 5);
    if (columns > 6) ev.store = sqlite3_column_int64(st, 6);
    if (columns > 7) ev.kind = (uint32_t)sqlite3_column_int(st, 7);
    if (columns > 8) ev.attempts = (uint32_t)sqlite3_column_int(st, 8);
    count++;
    if (fn(fn_data, &ev) != 0) {
      rc = SQLITE_DONE;
      break;
    }
  }
  int err = rc == SQLITE_DONE ? count : hd__sqlite_error(rc, sqlite3_db_handle(st), what);
  sqlite3_reset(st);
  return err;
}

/* ---- the marker ------------------------------------------------------------------------------- */

/* 1 if `folder` has its marker, 0 if not; HD_EIO if that cannot be told. */
static int marker_exists(const char *folder) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/%s", folder, HD__STORE_MARKER_FILE);
  struct stat st;
  if (stat(path, &st) == 0) return 1;
  int e = errno;
  return e == ENOENT ? 0 : hd__error(HD_EIO, "cannot look for %s: %s", path, strerror(e));
}

static int fsync_path(const char *path, int flags) {
  int fd = open(path, flags | O_CLOEXEC);
  if (fd < 0) return -1;
  int rc = fsync(fd);
  close(fd);
  return rc;
}

/* Writes the marker and makes it durable with its folder entry. Called once the store's first
 * commit is durable: a crash before it leaves a folder that opens (as the store it holds, or as
 * a new one if nothing was committed), never one that is refused for ever. */
static int write_marker(const char *folder, const char *kind_name) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/%s", folder, HD__STORE_MARKER_FILE);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int ok = fd >= 0;
  if (ok) {
    char text[64];
    int n = snprintf(text, sizeof text, "hyperdown %s store\n", kind_name);
    ok = write(fd, text, (size_t)n) == n && fsync(fd) == 0;
  }
  int e = errno;
  if (fd >= 0) close(fd);
  if (ok && fsync_path(folder, O_RDONLY | O_DIRECTORY) != 0) {
    ok = 0;
    e = errno;
  }
  return ok ? 0 : hd__error(errno_code(e), "cannot write the store marker %s: %s", path,
                            strerror(e));
}

/* ---- the store object ------------------------------------------------------------------------ */

static const char *const tx_sql[2] = {"BEGIN IMMEDIATE", "COMMIT"};

/* The writer's hooks: the transaction is the store's, the rest the kind's. */
static int hook_begin(void *ctx, size_t n_ops, int relaxed) {
  hd__sqlite_store_t *s = ctx;
  int err = s->kind->begin != NULL ? s->kind->begin(s, n_ops, relaxed) : 0;
  return err != 0 ? err : hd__sqlite_step_done(s->tx[0], "begin");
}

static int hook_before_commit(void *ctx) {
  hd__sqlite_store_t *s = ctx;
  return s->kind->before_commit != NULL ? s->kind->before_commit(s) : 0;
}

static int hook_commit(void *ctx) {
  hd__sqlite_store_t *s = ctx;
  return hd__sqlite_step_done(s->tx[1], "commit");
}

static void hook_rollback(void *ctx) {
  hd__sqlite_store_t *s = ctx;
  rollback(s->wdb);
  if (s->kind->rollback != NULL) s->kind->rollback(s);
}

static void hook_after_commit(void *ctx) {
  hd__sqlite_store_t *s = ctx;
  if (s->kind->after_commit != NULL) s->kind->after_commit(s);
}

static void close_write_side(hd__sqlite_store_t *s) {
  finalize_all(s->tx, HD__ARRAY_SIZE(s->tx));
  finalize_all(s->w, s->kind->n_write);
  finalize_cached(s->wcache);
  sqlite3_close(s->wdb); /* the last connection: checkpoints and removes the WAL */
  s->wdb = NULL;
}

/* the writer's last work, on the pool: the write connection is the writer's to close */
static void hook_thread_exit(void *ctx) {
  hd__sqlite_store_t *s = ctx;
  if (s->kind->closing != NULL && s->writer.sticky.code == 0) s->kind->closing(s);
  close_write_side(s);
}

static const hd__writer_hooks_t writer_hooks = {hook_begin,        hook_before_commit,
                                                hook_commit,       hook_rollback,
                                                hook_after_commit, hook_thread_exit};

static void close_read_side(hd__sqlite_store_t *s) {
  finalize_all(s->r, s->kind->n_read);
  finalize_cached(s->rcache);
  sqlite3_close(s->rdb);
  s->rdb = NULL;
}

static void free_store(hd__sqlite_store_t *s) {
  close_read_side(s);
  close_write_side(s); /* already done by the writer's last work unless it never ran */
  if (s->lock_fd >= 0) close(s->lock_fd); /* closing the description releases the lock */
  if (s->kind->release != NULL) s->kind->release(s);
  free(s->folder);
  free(s);
}

static void on_writer_closed(void *ctx) {
  hd__sqlite_store_t *s = ctx;
  s->writer_closed = 1;
  if (s->backups > 0) return; /* the last backup's completion finishes the close */
  hd_close_cb cb = s->close_cb;
  void *data = s->close_data;
  free_store(s);
  if (cb != NULL) cb(data);
}

int hd__sqlite_store_open(hd__sqlite_store_t **out, const hd__sqlite_kind_t *kind,
                          const hd__store_options_t *opts) {
  *out = NULL;
  if (kind->n_write > HD__SQLITE_MAX_STATEMENTS || kind->n_read > HD__SQLITE_MAX_STATEMENTS) {
    return hd__error(HD_EINVAL, "%s store: more statements than HD__SQLITE_MAX_STATEMENTS",
                     kind->name);
  }
  hd__sqlite_store_t *s = calloc(1, kind->size);
  if (s == NULL) return hd__error(HD_ENOMEM, "%s store", kind->name);
  s->kind = kind;
  s->lock_fd = -1;
  s->folder = strdup(opts->folder);
  int err = s->folder != NULL ? lock_folder(opts->folder, &s->lock_fd)
                              : hd__error(HD_ENOMEM, "%s store", kind->name);
  int marked = err == 0 ? marker_exists(opts->folder) : 0;
  if (marked < 0) err = marked;
  if (err == 0) err = open_conn(opts->folder, 0, opts, &s->wdb);
  if (err == 0) err = migrate(s, opts, marked);
  if (err == 0 && !marked) err = write_marker(opts->folder, kind->name);
  if (err == 0) err = prepare_all(s->wdb, tx_sql, s->tx, HD__ARRAY_SIZE(s->tx));
  if (err == 0) err = prepare_all(s->wdb, kind->write_sql, s->w, kind->n_write);
  if (err == 0) err = open_conn(opts->folder, 1, opts, &s->rdb);
  if (err == 0) err = prepare_all(s->rdb, kind->read_sql, s->r, kind->n_read);
  if (err == 0 && kind->opened != NULL) err = kind->opened(s, opts);
  if (err == 0) err = set_sync(s->wdb, opts);
  if (err == 0) {
    err = hd__writer_start(&s->writer, opts->loop, opts->max_batch, s, &writer_hooks,
                           on_writer_closed);
  }
  if (err == HD_ECORRUPT && strstr(hd_last_error_message(), LOST_ADVICE) == NULL) {
    err = hd__error(HD_ECORRUPT, "store folder %s: %s; " LOST_ADVICE, opts->folder,
                    hd_last_error_message());
  }
  if (err != 0) {
    hd__error_state_t e;
    hd__error_save(&e); /* closing must not replace the detail */
    free_store(s);
    return hd__error_restore(&e);
  }
  *out = s;
  return 0;
}

int hd__sqlite_store_close(hd__sqlite_store_t *s, hd_close_cb cb, void *cb_data) {
  if (s->closing) return hd__error(HD_ECLOSED, "store is already closing");
  s->closing = 1;
  s->close_cb = cb;
  s->close_data = cb_data;
  /* the read side first, so that the writer's connection is the last one and its close
   * checkpoints the WAL into the database */
  close_read_side(s);
  hd__writer_stop(&s->writer);
  return 0;
}

/* ---- backups -------------------------------------------------------------------------------- */

/* The copy as SQLite's backup API leaves it, then marked, made one file and durable. */
static int copy_into(const hd__sqlite_kind_t *kind, sqlite3 *src, const char *tmp) {
  sqlite3 *dst = NULL;
  int rc = sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                          SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE, NULL);
  int err = rc == SQLITE_OK ? 0 : hd__sqlite_error(rc, dst, tmp);
  if (err == 0) {
    /* one step for the whole database: one read transaction on the source, so the copy is the
     * database as of one commit; the store's writer goes on meanwhile (WAL) */
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    if (b == NULL) {
      err = hd__sqlite_error(sqlite3_errcode(dst), dst, "backup");
    } else {
      rc = sqlite3_backup_step(b, -1);
      int fin = sqlite3_backup_finish(b);
      if (rc != SQLITE_DONE) err = hd__sqlite_error(rc, dst, "backup copy");
      else if (fin != SQLITE_OK) err = hd__sqlite_error(fin, dst, "backup copy");
    }
  }
  /* one file (no WAL beside it) whose mark is committed with an fsync */
  if (err == 0) err = hd__sqlite_exec(dst, "PRAGMA journal_mode=DELETE", "backup journal mode");
  if (err == 0) err = hd__sqlite_exec(dst, "PRAGMA synchronous=FULL", "backup synchronous");
  if (err == 0) err = hd__sqlite_exec(dst, "BEGIN IMMEDIATE", "backup mark");
  if (err == 0) err = hd__sqlite_exec(dst, kind->backup_mark_sql, "backup mark");
  if (err == 0) err = hd__sqlite_exec(dst, "COMMIT", "backup mark");
  hd__error_state_t e;
  hd__error_save(&e);
  if (sqlite3_close(dst) != SQLITE_OK && err == 0) {
    return hd__error(HD_ESTORE, "closing the backup copy %s", tmp);
  }
  return err != 0 ? hd__error_restore(&e) : 0;
}

/* The folder a path is in (for fsyncing a rename). */
static void parent_of(const char *path, char *out, size_t cap) {
  const char *slash = strrchr(path, '/');
  if (slash == NULL) snprintf(out, cap, ".");
  else if (slash == path) snprintf(out, cap, "/");
  else snprintf(out, cap, "%.*s", (int)(slash - path), path);
}

int hd__sqlite_backup_file(const hd__sqlite_kind_t *kind, const char *folder, const char *path) {
  if (kind->backup_mark_sql == NULL) {
    return hd__error(HD_EINVAL, "a %s store has no backups", kind->name);
  }
  char db_path[PATH_MAX], tmp[PATH_MAX];
  if (snprintf(db_path, sizeof db_path, "%s/%s", folder, HD__STORE_DB_FILE) >= (int)sizeof db_path ||
      snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid()) >= (int)sizeof tmp) {
    return hd__error(HD_EINVAL, "backup path too long");
  }
  struct stat st;
  if (stat(path, &st) == 0) {
    return hd__error(HD_EINVAL, "backup: %s exists already (a backup is never written over a file)",
                     path);
  }
  sqlite3 *src = NULL;
  /* read-write without create: a store that no process has open may have a WAL to recover */
  int rc = sqlite3_open_v2(db_path, &src, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX |
                                              SQLITE_OPEN_EXRESCODE, NULL);
  int err = rc == SQLITE_OK ? 0 : hd__sqlite_error(rc, src, db_path);
  int64_t app = 0;
  if (err == 0) {
    sqlite3_busy_timeout(src, 5000);
    err = query_int(src, "PRAGMA application_id", &app);
  }
  if (err == 0 && app != kind->application_id) {
    err = hd__error(HD_ESTORE, "backup: %s is not a hyperdown %s store", db_path, kind->name);
  }
  unlink(tmp);
  /* the copy holds the users' events: readable by the owner only, as the store's folder is */
  int fd = err == 0 ? open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600) : -1;
  if (err == 0 && fd < 0) {
    err = hd__error(errno_code(errno), "backup: cannot create %s: %s", tmp, strerror(errno));
  }
  if (fd >= 0) close(fd);
  if (err == 0) err = copy_into(kind, src, tmp);
  hd__error_state_t e;
  hd__error_save(&e);
  sqlite3_close(src);
  hd__error_restore(&e);
  if (err == 0 && fsync_path(tmp, O_RDONLY) != 0) {
    err = hd__error(errno_code(errno), "backup: fsync %s: %s", tmp, strerror(errno));
  }
  /* a rename that replaces nothing (a file that appeared meanwhile is kept); a file system
   * without hard links gets a plain rename */
  if (err == 0 && link(tmp, path) != 0 && (errno == EEXIST || rename(tmp, path) != 0)) {
    err = hd__error(errno == EEXIST ? HD_EINVAL : errno_code(errno),
                    "backup: cannot create %s: %s", path, strerror(errno));
  }
  unlink(tmp);
  char dir[PATH_MAX];
  parent_of(path, dir, sizeof dir);
  if (err == 0 && fsync_path(dir, O_RDONLY | O_DIRECTORY) != 0) {
    err = hd__error(errno_code(errno), "backup: fsync %s: %s", dir, strerror(errno));
  }
  return err;
}

int hd__sqlite_backup_folder(const hd__sqlite_kind_t *kind, const char *folder, const char *path) {
  struct stat st;
  if (folder == NULL || path == NULL) return hd__error(HD_EINVAL, "backup: no folder or path");
  char db_path[PATH_MAX];
  snprintf(db_path, sizeof db_path, "%s/%s", folder, HD__STORE_DB_FILE);
  if (stat(folder, &st) != 0 || !S_ISDIR(st.st_mode) || stat(db_path, &st) != 0 ||
      st.st_size == 0) {
    return hd__error(HD_ENOTFOUND, "backup: no %s store in %s", kind->name, folder);
  }
  int fd;
  int err = lock_folder(folder, &fd); /* no server may open it while it is copied */
  if (err != 0) return err;
  err = hd__sqlite_backup_file(kind, folder, path);
  close(fd);
  return err;
}

typedef struct backup_work {
  uv_work_t req;
  hd__sqlite_store_t *s;
  char *path;
  hd__store_cb cb;
  void *cb_data;
  int status;
  hd__error_state_t error;
} backup_work_t;

static void backup_run(uv_work_t *req) {
  backup_work_t *w = req->data;
  w->status = hd__sqlite_backup_file(w->s->kind, w->s->folder, w->path);
  if (w->status != 0) hd__error_save(&w->error);
}

static void backup_done(uv_work_t *req, int status) {
  backup_work_t *w = req->data;
  hd__sqlite_store_t *s = w->s;
  int rc = status == UV_ECANCELED ? hd__error(HD_ECANCELED, "backup cancelled") : w->status;
  if (rc != 0 && status != UV_ECANCELED) hd__error_restore(&w->error);
  if (w->cb != NULL) w->cb(w->cb_data, rc, 0);
  free(w->path);
  free(w);
  if (--s->backups == 0 && s->writer_closed) on_writer_closed(s);
}

int hd__sqlite_store_backup(hd__sqlite_store_t *s, const char *path, hd__store_cb cb,
                            void *cb_data) {
  if (s->closing) return hd__error(HD_ECLOSED, "store is closing");
  if (s->kind->backup_mark_sql == NULL) {
    return hd__error(HD_EINVAL, "a %s store has no backups", s->kind->name);
  }
  if (path == NULL || path[0] == '\0') return hd__error(HD_EINVAL, "backup: no path");
  struct stat st;
  if (stat(path, &st) == 0) { /* told at once; the copy checks again before it writes */
    return hd__error(HD_EINVAL, "backup: %s exists already (a backup is never written over a file)",
                     path);
  }
  backup_work_t *w = calloc(1, sizeof *w);
  char *p = strdup(path);
  if (w == NULL || p == NULL) {
    free(w);
    free(p);
    return hd__error(HD_ENOMEM, "backup");
  }
  w->req.data = w;
  w->s = s;
  w->path = p;
  w->cb = cb;
  w->cb_data = cb_data;
  int rc = uv_queue_work(s->writer.loop, &w->req, backup_run, backup_done);
  if (rc != 0) {
    free(p);
    free(w);
    return hd__error_from_uv(rc, "backup");
  }
  s->backups++;
  return 0;
}
