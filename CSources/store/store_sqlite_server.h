/* The server store on SQLite, inside: what its files share (store_sqlite_server.c: the store,
 * its schema, adds and deletes, epochs; the queue semantics in files of their own, each with its
 * statements through hd__sqlite_stmt). Not an interface of the store: store.h is. */
#ifndef HD_STORE_SQLITE_SERVER_H
#define HD_STORE_SQLITE_SERVER_H

#include "store_sqlite.h"
#include "store_writer.h"
#include "wire.h"

#include <stdatomic.h>

/* A user touched by the current batch. Valid while gen == the batch's generation, so starting a
 * batch invalidates the whole table without clearing it. */
typedef struct batch_user {
  uint8_t pk[32];
  uint64_t gen;
  int64_t user_no; /* 0: not in the database (yet) */
  int64_t next_seq;
  int64_t pending;
  int64_t next_seq_before; /* as committed: the user's floor if this batch starts an epoch's */
  int64_t seq_epoch;       /* the epoch of the row's last write (0: no row) */
  int64_t bytes;           /* payload bytes of its events (notices aside) */
  int64_t sent_upto;       /* its client was sent every event up to this number */
  int64_t dedup_keys;      /* its rows in dedup */
  int64_t dead;            /* its rows in dead_letters */
  int dirty;
} batch_user_t;

typedef struct sq_server {
  hd__sqlite_store_t sql; /* first: the writer's ctx and the allocation */
  hd__server_store_t iface;
  uint8_t store_id[HD_STORE_ID_BYTES];
  uint32_t pause_ms;
  int64_t epoch_no;                    /* the current epoch, its number and id */
  uint8_t epoch_id[HD_STORE_ID_BYTES];
  char epoch_note[512];                /* what changed the epoch at this open ("": nothing) */
  /* writer (pool thread): the batch's users */
  batch_user_t *users;
  size_t users_cap; /* a power of two, at least twice the batch's ops */
  size_t *dirty;
  size_t n_dirty;
  uint64_t gen;
  /* the adds' limits and deduplication (hd__store_options_t, defaults applied at open) */
  uint64_t max_events_per_user, max_bytes_per_user; /* 0: none */
  int drop_oldest;
  int64_t dedup_window_ms;
  int64_t dedup_keys_per_user;
  /* Sent tracking after a run that ended without a clean close (meta 'open' found at open):
   * every user's sent_upto is raised to next_seq - 1 by the run's first batch that touches a
   * user (kind_open_tx writes nothing under FULL, so that an open works on a full disk). */
  _Atomic int raise_sent; /* read by the loop thread's reads (s_read_pending) */
  int raise_in_batch;
  /* meta 'open' is in the database (or written by the current batch) */
  int open_flag, open_flag_in_batch;
  /* Loop thread: the cutoff of the latest expire submitted, (expires_ms, user_no, seq): reads
   * skip the due events at or below it, which that expire deletes (expiry), whatever the clock
   * does meanwhile. */
  int64_t horizon_ms, horizon_user, horizon_seq;
} sq_server_t;

/* The server store from its interface (from its SQLite base, the writer's ctx: a cast). */
static inline sq_server_t *hd__sqs_from_iface(hd__server_store_t *iface) {
  return hd__container_of(iface, sq_server_t, iface);
}

/* Writer (pool thread). The batch's entry for `pk`, loaded from the database on its first use in
 * the batch (user_no 0: not in the database yet). */
int hd__sqs_batch_user(sq_server_t *s, const uint8_t pk[32], batch_user_t **out);
/* Writer. Makes room in the batch's table for `more` users beyond those it holds (a fan-out
 * touches many users in one op); entries move, so pointers from hd__sqs_batch_user are stale. */
int hd__sqs_batch_reserve(sq_server_t *s, size_t more);
/* The entry changed: its users row is written before COMMIT. */
void hd__sqs_mark_dirty(sq_server_t *s, batch_user_t *u);
/* Writer. Appends a notice to the user's stream (a row of kind 1 with the user's next number,
 * counted in pending, not in bytes); *seq (optional) its number. The user must have a row. */
int hd__sqs_add_notice(sq_server_t *s, batch_user_t *u, const hd__notice_t *n, int64_t created_ms,
                       uint64_t *seq);
/* Steps a statement with RETURNING of at most one row: *a and *b its two columns (left as they
 * were if no row), then reset. */
int hd__sqs_step_returning(sqlite3_stmt *st, int64_t *a, int64_t *b, const char *what);
/* The vtable's operations that live in files of their own (store_sqlite_server_*.c). */
int hd__sqs_add_event2(hd__server_store_t *s, const uint8_t user[32], int64_t created_ms,
                       const void *payload, size_t len, const hd__add_spec_t *spec,
                       hd__store_add_cb cb, void *cb_data);
int hd__sqs_add_fanout(hd__server_store_t *s, const hd__store_add_t *adds, size_t n,
                       int64_t created_ms, const void *shared, size_t shared_len,
                       hd__store_fanout_cb cb, void *cb_data);
int hd__sqs_set_sent(hd__server_store_t *s, const uint8_t user[32], uint64_t sent_upto,
                     hd__store_cb cb, void *cb_data);
/* store_sqlite_server_dead.c: dead letters */
int hd__sqs_fail_events(hd__server_store_t *s, const uint8_t user[32], const hd__store_failed_t *f,
                        size_t n, hd__store_cb cb, void *cb_data);
int hd__sqs_requeue_dead(hd__server_store_t *s, const uint8_t user[32], const uint64_t *seqs,
                         size_t n, hd__store_cb cb, void *cb_data);
int hd__sqs_delete_dead(hd__server_store_t *s, const uint8_t user[32], const uint64_t *seqs,
                        size_t n, hd__store_cb cb, void *cb_data);
int hd__sqs_read_dead(hd__server_store_t *s, const uint8_t user[32], uint64_t after_seq,
                      uint32_t limit, hd__store_dead_fn fn, void *fn_data);
int hd__sqs_read_dead_seqs(hd__server_store_t *s, const uint8_t user[32], const uint64_t *seqs,
                           size_t n, hd__store_dead_fn fn, void *fn_data);
int hd__sqs_dead_count(hd__server_store_t *s, const uint8_t user[32], uint64_t *out);
int hd__sqs_dead_users(hd__server_store_t *s, uint64_t *cursor, uint32_t limit,
                       void (*fn)(void *fn_data, const uint8_t key[32], uint64_t dead),
                       void *fn_data);

int hd__sqs_expire(hd__server_store_t *s, int64_t now_ms, uint32_t limit, hd__store_cb cb,
                   void *cb_data);

/* Unix time in ms (the stores' clock for created, expiry and dead-letter times). */
int64_t hd__sqs_now_ms(void);

#endif
