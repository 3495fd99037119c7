/* The storage interfaces of the core: one for the server's per-user queues, one for the client's
 * received events. Each is a table of function pointers (a vtable) so that a second backend
 * (PostgreSQL over libpq, so that several servers can share one database: docs/STORAGE.md, "The
 * backend interface") can sit beside the embedded SQLite one (store_sqlite.h) without the server
 * or client code changing. docs/STORAGE.md explains the choices.
 *
 * Threads. A store is opened on the thread that runs its uv_loop_t and belongs to that loop:
 *   - writes are queued (submit is safe from any thread) and committed in groups on a thread of
 *     libuv's pool (store_writer.h): everything queued goes into one transaction with one commit
 *     (one fsync);
 *   - every write completes exactly once, on the loop thread, in submission order, through an
 *     hd__store_cb; a failure sets the loop thread's hd_last_error_message() before the call;
 *   - reads run synchronously on the loop thread against a read-only connection and see what is
 *     committed, i.e. exactly the writes whose completion has run or is about to run. They page
 *     (LIMIT), so no read ever loads a whole backlog. */
#ifndef HD_STORE_H
#define HD_STORE_H

#include "common.h"

#include <stdint.h>
#include <uv.h>

#define HD__STORE_DB_FILE "hyperdown.db"
#define HD__STORE_LOCK_FILE "hyperdown.lock"
/* Written (and fsynced with its folder) once the store's first commit is durable: the folder
 * holds a store, so a database found empty or unreadable there is damage, not a new store. */
#define HD__STORE_MARKER_FILE "hyperdown.store"
#define HD__STORE_DEFAULT_MAX_BATCH 8192u

typedef enum hd__store_backend { HD__STORE_SQLITE = 0 } hd__store_backend_t;

typedef struct hd__store_options {
  hd__store_backend_t backend;
  const char *folder;    /* created (mode 0700) if missing; locked while the store is open */
  uv_loop_t *loop;       /* completions run on this loop; open on its thread */
  int sync_normal;       /* 0: synchronous=FULL (an acknowledged write survives power loss);
                            1: NORMAL (survives a process crash; the last commits may be lost on
                            power loss). docs/STORAGE.md */
  uint32_t max_batch;    /* most writes per transaction; 0 = HD__STORE_DEFAULT_MAX_BATCH */
  uint64_t max_db_pages; /* a size quota in database pages (4096 bytes); writes past it fail with
                            HD_ENOSPC like a full disk. 0 = none */
  /* Server store: the per-user limits and the deduplication window (hd_server_options_t) */
  uint64_t max_events_per_user; /* 0: none */
  uint64_t max_bytes_per_user;  /* 0: none */
  int drop_oldest;              /* 1: an add past a limit drops the oldest unsent events */
  int64_t dedup_window_ms;      /* 0: 24 h */
  uint32_t dedup_keys_per_user; /* 0: 100000 */
} hd__store_options_t;

/* Completion of a queued write: `status` 0 or an HD_E* code, `value` what the write produced
 * (documented per operation: a sequence number, a count...). */
typedef void (*hd__store_cb)(void *cb_data, int status, uint64_t value);

/* One stored event as a read hands it out. The pointers are valid during the call only. */
typedef struct hd__store_event {
  uint64_t seq;
  int64_t created_ms;
  const uint8_t *payload;
  size_t payload_len;
  const uint8_t *data; /* client store, consumed events: the consumer's data (else NULL, 0) */
  size_t data_len;
  uint32_t flags;      /* client store: HD__STORE_EV_* */
  int64_t orphan;      /* client store, an orphan: its row (0: an event of the server's numbering) */
  int64_t store;       /* client store: the server store it came from, as the store numbers them
                          (its row: 1, 2... in the order first seen; 0 for an orphan) */
  uint32_t kind;       /* HD__STORE_KIND_*: a notice's payload is hd__notice_encode's */
  uint32_t attempts;   /* client store: handler calls counted so far */
} hd__store_event_t;

/* What a stored row is (both stores' `kind` column). */
enum { HD__STORE_KIND_EVENT = 0, HD__STORE_KIND_NOTICE = 1 };

/* The client store's event flags. */
enum {
  /* not held when it came again after an epoch change, at or below what the client may have
   * handled before: handed out marked possibly repeated */
  HD__STORE_EV_REPEATED = 1,
  /* received before the server's store lost it (docs/STORAGE.md "Orphans"): handled, never
   * reported */
  HD__STORE_EV_ORPHAN = 2,
  /* list_consumed: reported failed (its data is the reason), not consumed */
  HD__STORE_EV_FAILED = 4,
};

/* Called per event by the paging reads, in sequence order. Return 0 to go on, non-zero to stop. */
typedef int (*hd__store_event_fn)(void *fn_data, const hd__store_event_t *ev);

/* Client store, held_stores: a server store other than the current one that events are held
 * for: its id, how many of them are unhandled and how many consumed (their reports wait for a
 * connection to it). */
typedef void (*hd__store_held_fn)(void *fn_data, const uint8_t id[HD_STORE_ID_BYTES],
                                  uint64_t unhandled, uint64_t consumed);

/* Client store, set_server_store_id's value: the store's number (the low 32 bits) and these. */
#define HD__STORE_ID_CHANGED ((uint64_t)1 << 32) /* another store was the current one */
#define HD__STORE_ID_NEW ((uint64_t)1 << 33)     /* never seen before: its mark starts at 0 */

typedef struct hd__store_stats {
  uint64_t commits;     /* transactions committed (one fsync each at most) */
  uint64_t ops_done;    /* writes committed */
  uint64_t ops_failed;  /* writes completed with an error */
  uint64_t queued;      /* writes submitted and not yet completed */
} hd__store_stats_t;

/* ---------------------------------------------------------------------------------------------
 * Server store: per-user queues keyed by the user's Ed25519 public key.
 */
typedef struct hd__server_store hd__server_store_t;

/* What an add asks for beyond its payload (docs/QUEUES.md). */
typedef struct hd__add_spec {
  int64_t expires_ms;           /* not sent by then, the event expires (0: never) */
  const uint8_t *dedup_key;     /* optional, 1..HD_KEY_MAX_BYTES */
  size_t dedup_key_len;
  const uint8_t *collapse_key;  /* optional, 1..HD_KEY_MAX_BYTES */
  size_t collapse_key_len;
  uint64_t sent_upto;           /* the user's session has sent every event up to this number (a
                                   collapse leaves those alone) */
} hd__add_spec_t;

#define HD__STORE_EXPIRE_MORE ((uint64_t)1 << 32)
#define HD__STORE_EXPIRE_LEFT ((uint64_t)1 << 33)

/* One add of add_fanout: a user, a payload and a spec (its sent_upto is the user's). */
typedef struct hd__store_add {
  const uint8_t *user; /* 32 bytes */
  const void *payload; /* ignored when the op shares one payload */
  size_t len;
  hd__add_spec_t spec;
} hd__store_add_t;
/* Most adds of one add_fanout op (hyperdown.h: a fan-out's users, an add_events call's items). */
#define HD__STORE_ADDS_MAX                                                                        \
  (HD_FANOUT_MAX_USERS > HD_ADD_EVENTS_MAX ? HD_FANOUT_MAX_USERS : HD_ADD_EVENTS_MAX)

/* Completion of add_event2 and of each add of add_fanout: the add's own status (0, HD_ELIMIT)
 * and result. A failure of one add never fails the batch it is in. */
typedef void (*hd__store_add_cb)(void *cb_data, int status, const hd_add_result_t *result);
typedef void (*hd__store_fanout_cb)(void *cb_data, int status, const hd_fanout_result_t *results,
                                    size_t n);

/* One event a client reported failed. */
typedef struct hd__store_failed {
  uint64_t seq;
  uint32_t attempts;
  const char *reason; /* UTF-8, at most HD_REASON_MAX_BYTES */
  size_t reason_len;
} hd__store_failed_t;

/* Called per dead letter by the paging reads, in sequence order; the pointers are valid during the
 * call. Return 0 to go on, non-zero to stop. */
typedef int (*hd__store_dead_fn)(void *fn_data, const hd_dead_letter_t *dl);
typedef struct hd__server_store_vtable {
  const char *backend_name;

  /* Queued writes (any thread). Return 0 once queued, HD_EINVAL or HD_ECLOSED otherwise; the
   * callback runs only if 0 was returned. */
  /* Stores an event; value = its sequence number (the user's next: from 1, never reused). The
   * payload is copied once, into the queued write. */
  int (*add_event)(hd__server_store_t *s, const uint8_t user[32], int64_t created_ms,
                   const void *payload, size_t len, hd__store_cb cb, void *cb_data);
  /* Deletes events of a user (consumed and confirmed); value = how many were still held. */
  int (*delete_events)(hd__server_store_t *s, const uint8_t user[32], const uint64_t *seqs,
                       size_t n, hd__store_cb cb, void *cb_data);
  /* Deletes every event of a user (an operator's purge: the user or its device was removed);
   * value = how many were held. The user's numbering goes on (never reused): a later add takes
   * the next number. Writes queued before it are deleted too, later ones are not. */
  int (*delete_user)(hd__server_store_t *s, const uint8_t user[32], hd__store_cb cb,
                     void *cb_data);
  /* The add with its spec (expiry, dedup and collapse keys) under the store's limits. */
  int (*add_event2)(hd__server_store_t *s, const uint8_t user[32], int64_t created_ms,
                    const void *payload, size_t len, const hd__add_spec_t *spec,
                    hd__store_add_cb cb, void *cb_data);
  /* n adds in one op, in order (a user's adds take its numbers in the order given), each as
   * add_event2 would make it; results[i] is adds[i]'s. With `shared` (a fan-out) every add's
   * payload is that one, stored once and referred to by each event; else each add's own, in its
   * row. Everything is copied before the call returns (one allocation; a payload or key that is
   * the previous add's, the same pointer and length, is copied once). n <= HD__STORE_ADDS_MAX. */
  int (*add_fanout)(hd__server_store_t *s, const hd__store_add_t *adds, size_t n,
                    int64_t created_ms, const void *shared, size_t shared_len,
                    hd__store_fanout_cb cb, void *cb_data);
  /* Moves the held events among f[0..n) into the user's dead letters with their attempts and
   * reasons; value = how many moved (the others were not held). */
  int (*fail_events)(hd__server_store_t *s, const uint8_t user[32], const hd__store_failed_t *f,
                     size_t n, hd__store_cb cb, void *cb_data);
  /* Requeues (as new events, each with a notice) or deletes the user's dead letters seqs[0..n)
   * (NULL, 0: all); value = how many. */
  int (*requeue_dead)(hd__server_store_t *s, const uint8_t user[32], const uint64_t *seqs,
                      size_t n, hd__store_cb cb, void *cb_data);
  int (*delete_dead)(hd__server_store_t *s, const uint8_t user[32], const uint64_t *seqs,
                     size_t n, hd__store_cb cb, void *cb_data);
  /* Deletes at most `limit` events whose expiry is at or before now_ms and that were not sent
   * (seq above the user's sent_upto: set_sent first for what a live session sent; a sent one
   * only loses its expiry), with one notice per user touched, and the dedup keys older than the
   * window (at most `limit` of them). value = events expired (the low 32 bits)
   * | HD__STORE_EXPIRE_MORE (a bound was reached: more may be due now)
   * | HD__STORE_EXPIRE_LEFT (events with an expiry remain, not due yet). Loop thread only (unlike
   * the other writes): it reads its cutoff, the limit-th due event, and the reads skip from now
   * on exactly what it deletes, every unsent due event up to that cutoff. */
  int (*expire)(hd__server_store_t *s, int64_t now_ms, uint32_t limit, hd__store_cb cb,
                void *cb_data);
  /* Records that the user's client was sent every event up to `sent_upto` (never lowers it). */
  int (*set_sent)(hd__server_store_t *s, const uint8_t user[32], uint64_t sent_upto,
                  hd__store_cb cb, void *cb_data);
  /* Stores the pause setting; value = the pause. pause() returns it once this completed. */
  int (*set_pause)(hd__server_store_t *s, uint32_t pause_ms, hd__store_cb cb, void *cb_data);
  /* Writes a consistent copy of the store to `path` (which must not exist), marked as a backup
   * so that the first open of the copy is known to be a restore (a new epoch); the store goes on
   * meanwhile. cb(cb_data, status, 0) on the loop thread; a close waits for it. */
  int (*backup)(hd__server_store_t *s, const char *path, hd__store_cb cb, void *cb_data);

  /* Reads (loop thread). Return a count >= 0 or an HD_E* code. */
  /* At most `limit` pending events of `user` with seq > after_seq, in order; returns how many
   * were passed to fn. */
  int (*read_pending)(hd__server_store_t *s, const uint8_t user[32], uint64_t after_seq,
                      uint32_t limit, hd__store_event_fn fn, void *fn_data);
  /* The events among seqs[0..n) that are still held, in the order given; returns how many. */
  int (*read_events)(hd__server_store_t *s, const uint8_t user[32], const uint64_t *seqs,
                     size_t n, hd__store_event_fn fn, void *fn_data);
  int (*pending_count)(hd__server_store_t *s, const uint8_t user[32], uint64_t *out);
  /* The user's dead letters numbered above after_seq, at most `limit`, in order. */
  int (*read_dead)(hd__server_store_t *s, const uint8_t user[32], uint64_t after_seq,
                   uint32_t limit, hd__store_dead_fn fn, void *fn_data);
  /* The dead letters among seqs[0..n), in the order given (for on_dead_letter). */
  int (*read_dead_seqs)(hd__server_store_t *s, const uint8_t user[32], const uint64_t *seqs,
                        size_t n, hd__store_dead_fn fn, void *fn_data);
  /* Dead letters held for `user` (NULL: all users). */
  int (*dead_count)(hd__server_store_t *s, const uint8_t user[32], uint64_t *out);
  /* As pending_users, for users holding dead letters. */
  int (*dead_users)(hd__server_store_t *s, uint64_t *cursor, uint32_t limit,
                    void (*fn)(void *fn_data, const uint8_t key[32], uint64_t dead),
                    void *fn_data);
  int (*pending_total)(hd__server_store_t *s, uint64_t *out);
  /* Users holding events with a user number above *cursor, in that order, at most `limit`:
   * fn(fn_data, key, pending) for each; *cursor advances past the last one. Returns how many. */
  int (*pending_users)(hd__server_store_t *s, uint64_t *cursor, uint32_t limit,
                       void (*fn)(void *fn_data, const uint8_t key[32], uint64_t pending),
                       void *fn_data);
  /* Epochs (docs/STORAGE.md): for a client of `user` that saw up to `high_seq` in `epoch` (all
   * zeros: before the store had epochs), *floor = the highest number at or below which what it
   * saw is still the store's (high_seq if nothing was lost since); *known = 0 if the store does
   * not know that epoch (then *floor = 0). */
  int (*resume_floor)(hd__server_store_t *s, const uint8_t user[32],
                      const uint8_t epoch[HD_STORE_ID_BYTES], uint64_t high_seq, uint64_t *floor,
                      int *known);
  uint32_t (*pause)(hd__server_store_t *s);
  void (*store_id)(hd__server_store_t *s, uint8_t out[HD_STORE_ID_BYTES]);
  /* The store's current epoch (changes when it may have lost its last commits). */
  void (*epoch)(hd__server_store_t *s, uint8_t out[HD_STORE_ID_BYTES]);
  /* Why the epoch changed at this open (a line for the log), or NULL if it did not. */
  const char *(*epoch_change)(hd__server_store_t *s);
  void (*stats)(hd__server_store_t *s, hd__store_stats_t *out);
  /* Tests: while held, writes queue up and nothing commits (group-commit tests). */
  void (*hold)(hd__server_store_t *s, int held);

  /* Stops accepting writes, commits everything queued (their callbacks run first), closes and
   * frees, then calls cb on the loop thread. HD_ECLOSED if already closing. */
  int (*close)(hd__server_store_t *s, hd_close_cb cb, void *cb_data);
} hd__server_store_vtable_t;

struct hd__server_store {
  const hd__server_store_vtable_t *vt;
  uv_loop_t *loop;
};

/* ---------------------------------------------------------------------------------------------
 * Client store: the events one user received from its server, until the server confirms them.
 */
typedef struct hd__client_store hd__client_store_t;
typedef struct hd__client_store_vtable {
  const char *backend_name;

  /* Queued writes (any thread), as for the server store. The writes that come from a
   * connection (insert_received, forget, rewind) name its server store's id and change nothing
   * (value 0) unless that store is the current one when they run: nothing of one server store
   * is ever filed under, or taken from, another's. */
  /* Stores received events that are above the high-water mark (the highest sequence ever
   * received from this server store) and raises the mark; value = how many were new. */
  int (*insert_received)(hd__client_store_t *s, const uint8_t store_id[HD_STORE_ID_BYTES],
                         const hd__store_event_t *evs, size_t n, hd__store_cb cb, void *cb_data);
  /* Counts one more handler call of `which` before the call (a relaxed write: a crash of the
   * process keeps it); value = the attempts now. */
  int (*mark_attempt)(hd__client_store_t *s, const hd__store_event_t *which, hd__store_cb cb,
                      void *cb_data);
  /* Records that the handler failed `which` for good (state 2, the reason kept for FAILED) after
   * `attempts` calls; value as mark_consumed's. */
  int (*mark_failed)(hd__client_store_t *s, const hd__store_event_t *which, uint32_t attempts,
                     const char *reason, size_t len, hd__store_cb cb, void *cb_data);
  /* Records that the handler consumed the event `which` (as a read handed it out: its store,
   * seq, created_ms and orphan), with its data for the server; value = 1 if the event was held
   * and not yet consumed (report it, to its own server store only), 2 if it was an orphan, now
   * forgotten (nothing to report: the event also became one if an epoch change moved it while it
   * was out), else 0. */
  int (*mark_consumed)(hd__client_store_t *s, const hd__store_event_t *which, const void *data,
                       size_t len, hd__store_cb cb, void *cb_data);
  /* The server confirmed (DONE): forgets these consumed events; value = how many. */
  int (*forget)(hd__client_store_t *s, const uint8_t store_id[HD_STORE_ID_BYTES],
                const uint64_t *seqs, size_t n, hd__store_cb cb, void *cb_data);
  /* Records the server's store id seen at connect: it becomes the current store. Events held
   * for another one stay, under that store (docs/STORAGE.md); a store seen for the first time
   * starts with a high-water mark of 0. value = the store's number | HD__STORE_ID_CHANGED (if
   * another store was the current one) | HD__STORE_ID_NEW (first sight). */
  int (*set_server_store_id)(hd__client_store_t *s, const uint8_t id[HD_STORE_ID_BYTES],
                             hd__store_cb cb, void *cb_data);
  /* Drops every event held for the server store `id` and forgets the store (an operator's
   * call); value = how many events. Fails with HD_ENOTFOUND (nothing held for it, never seen)
   * or HD_EBUSY (it is the current store) without failing other writes. */
  int (*purge_store)(hd__client_store_t *s, const uint8_t id[HD_STORE_ID_BYTES], hd__store_cb cb,
                     void *cb_data);
  /* The server's store changed epoch (its EPOCH message): held events above `floor` are not the
   * store's any more: consumed ones are dropped, unhandled ones become orphans; the high-water
   * mark becomes 0, `seen_upto` is kept for the inserts that follow and `epoch` is remembered.
   * value = orphaned | dropped << 32. */
  int (*rewind)(hd__client_store_t *s, const uint8_t store_id[HD_STORE_ID_BYTES], uint64_t floor,
                uint64_t seen_upto, const uint8_t epoch[HD_STORE_ID_BYTES], hd__store_cb cb,
                void *cb_data);

  /* Reads (loop thread). The current server store's unless said otherwise. */
  int (*high_water)(hd__client_store_t *s, uint64_t *out);
  /* 0 and the id, or HD_ENOTFOUND if no server was seen yet. */
  int (*server_store_id)(hd__client_store_t *s, uint8_t out[HD_STORE_ID_BYTES]);
  /* The epoch of the server's store that the high-water mark belongs to (all zeros: none). */
  int (*server_epoch)(hd__client_store_t *s, uint8_t out[HD_STORE_ID_BYTES]);
  /* Received, not yet consumed events of every server store after (after_store, after_seq),
   * ordered by (store, seq): a store seen earlier comes first; at most `limit`. */
  int (*list_unhandled)(hd__client_store_t *s, int64_t after_store, uint64_t after_seq,
                        uint32_t limit, hd__store_event_fn fn, void *fn_data);
  /* Orphans with a row above `after`, oldest first, at most `limit` (flags ORPHAN, `orphan`). */
  int (*list_orphans)(hd__client_store_t *s, int64_t after, uint32_t limit,
                      hd__store_event_fn fn, void *fn_data);
  /* Consumed events the server has not confirmed, with their data, in order. */
  int (*list_consumed)(hd__client_store_t *s, uint64_t after_seq, uint32_t limit,
                       hd__store_event_fn fn, void *fn_data);
  /* The other server stores that events are held for, the oldest first: fn per store; returns
   * how many. */
  int (*held_stores)(hd__client_store_t *s, hd__store_held_fn fn, void *fn_data);
  /* the current server store's (RESUME's window), and unhandled counts the orphans too */
  int (*counts)(hd__client_store_t *s, uint64_t *unhandled, uint64_t *consumed);
  void (*stats)(hd__client_store_t *s, hd__store_stats_t *out);
  void (*hold)(hd__client_store_t *s, int held);

  int (*close)(hd__client_store_t *s, hd_close_cb cb, void *cb_data);
  /* Tests: from the next batch on, a size quota as hd__store_options_t.max_db_pages (0: none;
   * never below the size the store has), so that a write that needs more space fails with
   * HD_ENOSPC as on a full disk. A queued write like the others (value 0). */
  int (*set_quota)(hd__client_store_t *s, uint64_t max_db_pages, hd__store_cb cb, void *cb_data);
} hd__client_store_vtable_t;

struct hd__client_store {
  const hd__client_store_vtable_t *vt;
  uv_loop_t *loop;
};

/* Opening is synchronous, on the loop thread (it locks the folder, creates or migrates the
 * schema). HD_EBUSY: the folder is in use; HD_EVERSION: written by a newer release;
 * HD_ECORRUPT: not a readable database, or an empty one in a folder whose marker says it held a
 * store (the detail says what to do). */
int hd__server_store_open(hd__server_store_t **out, const hd__store_options_t *opts);
int hd__client_store_open(hd__client_store_t **out, const hd__store_options_t *opts);

/* Closes and runs the loop until the close finished: for the loop's own thread when the loop is
 * not running (start-up failures, shutdown, tests). Another thread waits on the close cb. */
void hd__server_store_close_wait(hd__server_store_t *s);
void hd__client_store_close_wait(hd__client_store_t *s);

/* Any thread, blocking: a backup (as vt->backup) of the server store in `folder`, which no
 * process may have open (HD_EBUSY: back it up through the server that has it). HD_ENOTFOUND: no
 * store there. */
int hd__server_store_backup_folder(const char *folder, const char *path);

/* Backends. */
int hd__sqlite_server_store_backup_folder(const char *folder, const char *path);
int hd__sqlite_server_store_open(hd__server_store_t **out, const hd__store_options_t *opts);
int hd__sqlite_client_store_open(hd__client_store_t **out, const hd__store_options_t *opts);

#endif
