/* SQLite plumbing shared by the server and client stores: the folder and its lock, connections
 * with their pragmas, the schema version and migrations, the statement cache and the mapping of
 * SQLite's result codes to HD_E* codes. */
#ifndef HD_STORE_SQLITE_H
#define HD_STORE_SQLITE_H

#include "store.h"

#include <sqlite3.h>

/* Records an HD_E* code for a SQLite failure and returns it: FULL → ENOSPC, CORRUPT/NOTADB →
 * ECORRUPT, IOERR → EIO, BUSY/LOCKED → EBUSY, NOMEM → ENOMEM, anything else → ESTORE. The detail
 * names `what`, SQLite's message and the OS errno when there is one. */
int hd__sqlite_error(int rc, sqlite3 *db, const char *what);

/* Creates `folder` (0700) if missing and takes an exclusive lock on its lock file, held until
 * hd__sqlite_unlock(). HD_EBUSY (naming the holder's pid) if another open store holds it, in this
 * process or another. */
int hd__sqlite_lock_folder(const char *folder, int *fd_out);
void hd__sqlite_unlock(int fd);

/* Opens `folder`/hyperdown.db. The write connection gets WAL and the chosen synchronous level;
 * the read-only one is for the loop thread's paging reads. Each connection is used by one thread
 * at a time, so SQLite's per-connection mutex is off. */
int hd__sqlite_open_conn(const char *folder, int readonly, const hd__store_options_t *opts,
                         sqlite3 **out);
void hd__sqlite_close_conn(sqlite3 *db);

/* A schema: an application id that tells server and client databases apart, and the migration
 * from version i to i+1 at migrations[i]; the latest version is n_migrations. */
typedef struct hd__sqlite_schema {
  const char *kind; /* "server" or "client", for messages */
  int32_t application_id;
  const char *const *migrations;
  int n_migrations;
} hd__sqlite_schema_t;

/* Brings the database to the latest version in one transaction. HD_EVERSION for a version newer
 * than this release knows, HD_ESTORE for a database of another kind. */
int hd__sqlite_migrate(sqlite3 *db, const hd__sqlite_schema_t *schema);

/* The statement cache: every statement prepared once at open (SQLITE_PREPARE_PERSISTENT) and
 * reused; on failure everything prepared so far is finalized. */
int hd__sqlite_prepare_all(sqlite3 *db, const char *const *sql, sqlite3_stmt **out, size_t n);
void hd__sqlite_finalize_all(sqlite3_stmt **st, size_t n);

int hd__sqlite_exec(sqlite3 *db, const char *sql, const char *what);

/* Rolls back the open transaction, if SQLite has not already done so itself. */
void hd__sqlite_rollback(sqlite3 *db);

/* Steps a statement expected to finish (INSERT/UPDATE/DELETE) and resets it. */
int hd__sqlite_step_done(sqlite3_stmt *st, const char *what);

#endif
