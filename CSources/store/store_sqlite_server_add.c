/* The server store on SQLite: adds with a spec (hd__add_spec_t: expiry, deduplication and collapse
 * keys) under the per-user limits, many adds in one op (a fan-out of one payload, or
 * hd_server_add_events' items), and the sent mark (docs/QUEUES.md). An add's own
 * failure (a user at its limit) is the add's status, never the batch's: the other writes of the
 * batch commit. An add decides everything (duplicate? what it replaces? what it drops? does it
 * fit?) with reads before it writes anything, so a refused add leaves nothing behind.
 *
 * One add for one user, in order:
 *   1. dedup key: a row of the user's younger than the window answers with its seq, nothing
 *      stored (a differing payload digest says so: HD_ADD_CONFLICT);
 *   2. collapse key: the user's unsent event with the key (seq above max(users.sent_upto, the
 *      live session's mark)) is the one it replaces;
 *   3. limits: events (kind 0 only) and bytes after the replacement; past one, refuse
 *      (HD_ELIMIT) or drop the oldest unsent events, one DROPPED notice telling the client;
 *   4. writes: the replaced event, the dropped ones, the notice, the event, the key. */
#include "store_sqlite_server.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define DIGEST_BYTES 16

/* What the add of one payload asks for, the same for every user of a fan-out. */
typedef struct add_in {
  int64_t created_ms;
  int64_t expires_ms;
  const uint8_t *payload; /* inline (payload_no 0), else empty in the row */
  int64_t len;
  int64_t payload_no;     /* a fan-out's shared payload */
  const uint8_t *dedup_key;
  size_t dedup_len;
  const uint8_t *collapse_key;
  size_t collapse_len;
  uint8_t digest[DIGEST_BYTES]; /* of the payload, when there is a dedup key */
} add_in_t;

static const char *const sql_user_new = "INSERT INTO users(public_key, next_seq, pending)"
                                        "  VALUES(?1, 1, 0)";
static const char *const sql_event_add =
    "INSERT INTO events(user_no, seq, created_ms, payload, expires_ms, size, collapse_key,"
    "  payload_no) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
static const char *const sql_dedup_get =
    "SELECT seq, digest, at_ms FROM dedup WHERE user_no = ?1 AND key = ?2";
static const char *const sql_dedup_renew =
    "UPDATE dedup SET seq = ?3, digest = ?4, at_ms = ?5 WHERE user_no = ?1 AND key = ?2";
static const char *const sql_dedup_add =
    "INSERT INTO dedup(user_no, key, seq, digest, at_ms) VALUES(?1, ?2, ?3, ?4, ?5)";
/* the user's oldest keys (index dedup_user_age) */
static const char *const sql_dedup_evict =
    "DELETE FROM dedup WHERE user_no = ?1 AND key IN (SELECT key FROM dedup WHERE user_no = ?1"
    "  ORDER BY at_ms LIMIT ?2)";
/* Each collapse add removes the unsent one before it, and the sent mark only rises, so at most
 * one unsent event has a given key (index events_collapse). */
static const char *const sql_collapse_find =
    "SELECT seq, size FROM events WHERE user_no = ?1 AND collapse_key = ?2 AND seq > ?3"
    "  AND kind = 0 ORDER BY seq DESC LIMIT 1";
static const char *const sql_event_del = "DELETE FROM events WHERE user_no = ?1 AND seq = ?2";
static const char *const sql_notices =
    "SELECT count(*) FROM events WHERE user_no = ?1 AND kind = 1";
static const char *const sql_unsent_oldest =
    "SELECT seq, size FROM events WHERE user_no = ?1 AND seq > ?2 AND kind = 0 ORDER BY seq";
static const char *const sql_drop_range =
    "DELETE FROM events WHERE user_no = ?1 AND seq > ?2 AND seq <= ?3 AND kind = 0";
static const char *const sql_unsent_notices =
    "SELECT seq, payload FROM events WHERE user_no = ?1 AND seq > ?2 AND kind = 1"
    "  ORDER BY seq DESC";
static const char *const sql_notice_set =
    "UPDATE events SET payload = ?3 WHERE user_no = ?1 AND seq = ?2";
static const char *const sql_payload_add = "INSERT INTO payloads(refs, payload) VALUES(0, ?1)";
static const char *const sql_payload_refs = "UPDATE payloads SET refs = ?2 WHERE no = ?1";
static const char *const sql_payload_del = "DELETE FROM payloads WHERE no = ?1";

static sqlite3_stmt *stmt(sq_server_t *s, const char *sql) {
  return hd__sqlite_stmt(&s->sql, s->sql.wdb, sql);
}

/* The user's row, created on its first add. */
static int ensure_user(sq_server_t *s, batch_user_t *u) {
  if (u->user_no != 0) return 0;
  sqlite3_stmt *st = stmt(s, sql_user_new);
  if (st == NULL) return hd_last_error_code();
  sqlite3_bind_blob(st, 1, u->pk, 32, SQLITE_STATIC);
  int err = hd__sqlite_step_done(st, "new user");
  if (err == 0) {
    u->user_no = sqlite3_last_insert_rowid(s->sql.wdb);
    hd__sqs_mark_dirty(s, u);
  }
  return err;
}

static int step_end(sqlite3_stmt *st, int rc, const char *what) {
  int err = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0
                                                  : hd__sqlite_error(rc, sqlite3_db_handle(st), what);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return err;
}

/* 1. A key seen within the window: *dup = 1 and r filled. *renew = 1: the row is older than the
 * window, the add goes on and takes it over. */
static int dedup_check(sq_server_t *s, batch_user_t *u, const add_in_t *in, int *dup, int *renew,
                       hd_add_result_t *r) {
  sqlite3_stmt *st = stmt(s, sql_dedup_get);
  if (st == NULL) return hd_last_error_code();
  sqlite3_bind_int64(st, 1, u->user_no);
  sqlite3_bind_blob(st, 2, in->dedup_key, (int)in->dedup_len, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    int64_t at = sqlite3_column_int64(st, 2);
    if (in->created_ms - at < s->dedup_window_ms) {
      *dup = 1;
      r->seq = (uint64_t)sqlite3_column_int64(st, 0);
      r->flags = HD_ADD_DUPLICATE;
      if (sqlite3_column_bytes(st, 1) != DIGEST_BYTES ||
          memcmp(sqlite3_column_blob(st, 1), in->digest, DIGEST_BYTES) != 0) {
        r->flags |= HD_ADD_CONFLICT;
      }
    } else {
      *renew = 1;
    }
  }
  return step_end(st, rc, "dedup lookup");
}

/* 4. The key of an add that was stored; the user's oldest go past the cap. */
static int dedup_record(sq_server_t *s, batch_user_t *u, const add_in_t *in, int renew,
                        uint64_t seq) {
  int err;
  sqlite3_stmt *st;
  if (!renew && u->dedup_keys >= s->dedup_keys_per_user) {
    st = stmt(s, sql_dedup_evict);
    if (st == NULL) return hd_last_error_code();
    sqlite3_bind_int64(st, 1, u->user_no);
    sqlite3_bind_int64(st, 2, u->dedup_keys - s->dedup_keys_per_user + 1);
    err = hd__sqlite_step_done(st, "dedup cap");
    if (err != 0) return err;
    u->dedup_keys -= sqlite3_changes(s->sql.wdb);
  }
  st = stmt(s, renew ? sql_dedup_renew : sql_dedup_add);
  if (st == NULL) return hd_last_error_code();
  sqlite3_bind_int64(st, 1, u->user_no);
  sqlite3_bind_blob(st, 2, in->dedup_key, (int)in->dedup_len, SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, (int64_t)seq);
  sqlite3_bind_blob(st, 4, in->digest, DIGEST_BYTES, SQLITE_STATIC);
  sqlite3_bind_int64(st, 5, in->created_ms);
  err = hd__sqlite_step_done(st, "dedup key");
  sqlite3_clear_bindings(st);
  if (err == 0 && !renew) u->dedup_keys++;
  return err;
}

/* 2. The unsent event the add replaces: *seq (0: none) and its size. */
static int collapse_find(sq_server_t *s, batch_user_t *u, const add_in_t *in, int64_t sent,
                         int64_t *seq, int64_t *size) {
  sqlite3_stmt *st = stmt(s, sql_collapse_find);
  if (st == NULL) return hd_last_error_code();
  sqlite3_bind_int64(st, 1, u->user_no);
  sqlite3_bind_blob(st, 2, in->collapse_key, (int)in->collapse_len, SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, sent);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    *seq = sqlite3_column_int64(st, 0);
    *size = sqlite3_column_int64(st, 1);
  }
  return step_end(st, rc, "collapse lookup");
}

/* What the limits ask of an add: refuse it, or drop the unsent events first_seq..last_seq (kind 0,
 * `n` of them, `bytes` long). */
typedef struct room {
  int refuse;
  int64_t n, bytes, first_seq, last_seq;
} room_t;

static int count_notices(sq_server_t *s, batch_user_t *u, int64_t *out) {
  sqlite3_stmt *st = stmt(s, sql_notices);
  if (st == NULL) return hd_last_error_code();
  sqlite3_bind_int64(st, 1, u->user_no);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) *out = sqlite3_column_int64(st, 0);
  return step_end(st, rc, "count notices");
}

/* 3. `replaced` (0 or 1 event of `replaced_bytes`) leaves before the add. */
static int limits_check(sq_server_t *s, batch_user_t *u, const add_in_t *in, int64_t sent,
                        int64_t replaced_seq, int64_t replaced_bytes, room_t *room) {
  memset(room, 0, sizeof *room);
  int64_t max_n = (int64_t)(s->max_events_per_user > INT64_MAX ? INT64_MAX
                                                                : s->max_events_per_user);
  int64_t max_b = (int64_t)(s->max_bytes_per_user > INT64_MAX ? INT64_MAX
                                                               : s->max_bytes_per_user);
  int64_t replaced = replaced_seq != 0;
  int64_t need_n = 0, need_b = 0;
  /* pending counts notices too: an exact count of events only near the limit */
  if (max_n != 0 && u->pending - replaced + 1 > max_n) {
    int64_t notices = 0;
    int err = count_notices(s, u, &notices);
    if (err != 0) return err;
    int64_t events = u->pending - notices - replaced;
    if (events + 1 > max_n) need_n = events + 1 - max_n;
  }
  if (max_b != 0) {
    if (in->len > max_b) { /* no drop makes room for it */
      room->refuse = 1;
      return 0;
    }
    int64_t bytes = u->bytes - replaced_bytes;
    if (bytes + in->len > max_b) need_b = bytes + in->len - max_b;
  }
  if (need_n == 0 && need_b == 0) return 0;
  if (!s->drop_oldest) {
    room->refuse = 1;
    return 0;
  }
  sqlite3_stmt *st = stmt(s, sql_unsent_oldest);
  if (st == NULL) return hd_last_error_code();
  sqlite3_bind_int64(st, 1, u->user_no);
  sqlite3_bind_int64(st, 2, sent);
  int rc;
  while ((room->n < need_n || room->bytes < need_b) && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    int64_t seq = sqlite3_column_int64(st, 0);
    if (seq == replaced_seq) continue; /* goes anyway */
    if (room->n == 0) room->first_seq = seq;
    room->last_seq = seq;
    room->n++;
    room->bytes += sqlite3_column_int64(st, 1);
  }
  if (room->n >= need_n && room->bytes >= need_b) rc = SQLITE_DONE;
  else room->refuse = 1; /* not enough unsent events: nothing is dropped */
  return step_end(st, rc, "oldest unsent events");
}

static int delete_event(sq_server_t *s, batch_user_t *u, int64_t seq) {
  sqlite3_stmt *st = stmt(s, sql_event_del);
  if (st == NULL) return hd_last_error_code();
  sqlite3_bind_int64(st, 1, u->user_no);
  sqlite3_bind_int64(st, 2, seq);
  return hd__sqlite_step_done(st, "replace event");
}

/* The client hears of dropped events once per run of drops: an unsent DROPPED notice takes the new
 * ones in (count added, range widened, in its place), else a new one goes before the add. So a
 * user at its limit holds at most one unsent DROPPED notice, however many adds drop. */
static int notice_dropped(sq_server_t *s, batch_user_t *u, int64_t sent, const room_t *room,
                          int64_t created_ms) {
  hd__notice_t n = {HD_NOTICE_DROPPED, (uint64_t)room->n, (uint64_t)room->first_seq,
                    (uint64_t)room->last_seq};
  sqlite3_stmt *st = stmt(s, sql_unsent_notices);
  if (st == NULL) return hd_last_error_code();
  sqlite3_bind_int64(st, 1, u->user_no);
  sqlite3_bind_int64(st, 2, sent);
  int rc;
  int64_t at = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    hd__notice_t old;
    if (hd__notice_decode(sqlite3_column_blob(st, 1), (size_t)sqlite3_column_bytes(st, 1),
                          &old) != 0 || old.kind != HD_NOTICE_DROPPED) {
      continue;
    }
    at = sqlite3_column_int64(st, 0);
    n.count += old.count;
    if (old.first_seq < n.first_seq) n.first_seq = old.first_seq;
    if (old.last_seq > n.last_seq) n.last_seq = old.last_seq;
    break;
  }
  int err = step_end(st, rc, "unsent notices");
  if (err != 0) return err;
  if (at == 0) return hd__sqs_add_notice(s, u, &n, created_ms, NULL);
  uint8_t body[HD__NOTICE_MAX];
  size_t len = hd__notice_encode(&n, body);
  st = stmt(s, sql_notice_set);
  if (st == NULL) return hd_last_error_code();
  sqlite3_bind_int64(st, 1, u->user_no);
  sqlite3_bind_int64(st, 2, at);
  sqlite3_bind_blob(st, 3, body, (int)len, SQLITE_STATIC);
  err = hd__sqlite_step_done(st, "update notice");
  sqlite3_clear_bindings(st);
  return err;
}

static int drop(sq_server_t *s, batch_user_t *u, int64_t sent, const room_t *room,
                int64_t created_ms) {
  sqlite3_stmt *st = stmt(s, sql_drop_range);
  if (st == NULL) return hd_last_error_code();
  sqlite3_bind_int64(st, 1, u->user_no);
  sqlite3_bind_int64(st, 2, sent);
  sqlite3_bind_int64(st, 3, room->last_seq);
  int err = hd__sqlite_step_done(st, "drop oldest");
  if (err != 0) return err;
  u->pending -= room->n;
  u->bytes -= room->bytes;
  hd__sqs_mark_dirty(s, u);
  return notice_dropped(s, u, sent, room, created_ms);
}

static int insert_event(sq_server_t *s, batch_user_t *u, const add_in_t *in) {
  sqlite3_stmt *st = stmt(s, sql_event_add);
  if (st == NULL) return hd_last_error_code();
  sqlite3_bind_int64(st, 1, u->user_no);
  sqlite3_bind_int64(st, 2, u->next_seq);
  sqlite3_bind_int64(st, 3, in->created_ms);
  if (in->payload_no != 0) {
    sqlite3_bind_zeroblob(st, 4, 0);
    sqlite3_bind_int64(st, 8, in->payload_no);
  } else {
    sqlite3_bind_blob(st, 4, in->payload, (int)in->len, SQLITE_STATIC);
    sqlite3_bind_null(st, 8);
  }
  sqlite3_bind_int64(st, 5, in->expires_ms);
  sqlite3_bind_int64(st, 6, in->len);
  if (in->collapse_key != NULL) {
    sqlite3_bind_blob(st, 7, in->collapse_key, (int)in->collapse_len, SQLITE_STATIC);
  } else {
    sqlite3_bind_null(st, 7);
  }
  int err = hd__sqlite_step_done(st, "add event");
  sqlite3_clear_bindings(st); /* drop the pointers to the payload and the key */
  return err;
}

/* One user's add. Returns an error that fails the batch; the add's own failure is *status
 * (HD_ELIMIT) with nothing written. *stored: 1 if a row was added (a duplicate adds none). */
static int add_for_user(sq_server_t *s, const uint8_t pk[32], const add_in_t *in,
                        uint64_t spec_sent, int *status, hd_add_result_t *r, int *stored) {
  memset(r, 0, sizeof *r);
  *status = 0;
  *stored = 0;
  batch_user_t *u;
  int err = hd__sqs_batch_user(s, pk, &u);
  if (err == 0) err = ensure_user(s, u);
  if (err != 0) return err;
  int64_t sent = u->sent_upto;
  if (spec_sent <= INT64_MAX && (int64_t)spec_sent > sent) sent = (int64_t)spec_sent;
  int dup = 0, renew = 0;
  if (in->dedup_key != NULL) {
    err = dedup_check(s, u, in, &dup, &renew, r);
    if (err != 0 || dup) return err;
  }
  int64_t replaced = 0, replaced_size = 0;
  if (in->collapse_key != NULL) {
    err = collapse_find(s, u, in, sent, &replaced, &replaced_size);
    if (err != 0) return err;
  }
  room_t room;
  err = limits_check(s, u, in, sent, replaced, replaced_size, &room);
  if (err != 0) return err;
  if (room.refuse) {
    *status = HD_ELIMIT;
    return 0;
  }
  if (replaced != 0) {
    err = delete_event(s, u, replaced);
    if (err != 0) return err;
    u->pending--;
    u->bytes -= replaced_size;
    r->flags |= HD_ADD_REPLACED;
    r->replaced_seq = (uint64_t)replaced;
  }
  if (room.n != 0) {
    err = drop(s, u, sent, &room, in->created_ms);
    if (err != 0) return err;
    r->flags |= HD_ADD_DROPPED;
    r->dropped = (uint64_t)room.n;
  }
  err = insert_event(s, u, in);
  if (err != 0) return err;
  r->seq = (uint64_t)u->next_seq++;
  u->pending++;
  u->bytes += in->len;
  hd__sqs_mark_dirty(s, u);
  *stored = 1;
  return in->dedup_key != NULL ? dedup_record(s, u, in, renew, r->seq) : 0;
}

static void add_in_keys(add_in_t *in, const uint8_t *dedup, size_t dedup_len,
                        const uint8_t *collapse, size_t collapse_len) {
  in->dedup_key = dedup_len != 0 ? dedup : NULL;
  in->dedup_len = dedup_len;
  in->collapse_key = collapse_len != 0 ? collapse : NULL;
  in->collapse_len = collapse_len;
  if (in->dedup_key != NULL) {
    crypto_generichash(in->digest, DIGEST_BYTES, in->payload, (unsigned long long)in->len, NULL,
                       0);
  }
}

static int spec_check(const hd__add_spec_t *spec, const char *what) {
  if (spec == NULL) return hd__error(HD_EINVAL, "%s: no spec", what);
  if ((spec->dedup_key == NULL) != (spec->dedup_key_len == 0) ||
      spec->dedup_key_len > HD_KEY_MAX_BYTES ||
      (spec->collapse_key == NULL) != (spec->collapse_key_len == 0) ||
      spec->collapse_key_len > HD_KEY_MAX_BYTES) {
    return hd__error(HD_EINVAL, "%s: a key of 1 to %d bytes, or none", what, HD_KEY_MAX_BYTES);
  }
  return 0;
}

/* ---- add_event2 ------------------------------------------------------------------------------ */

typedef struct add2_op {
  hd__wop_t base;
  uint8_t user[32];
  int64_t created_ms;
  int64_t expires_ms;
  uint64_t sent_upto;
  hd__store_add_cb cb;
  void *cb_data;
  int status; /* the add's own failure (HD_ELIMIT), set by run: the batch goes on */
  hd_add_result_t result;
  size_t dedup_len, collapse_len, len;
  uint8_t *dedup_key, *collapse_key; /* into data, after the payload */
  uint8_t data[];                    /* the payload, then the keys: one copy of each */
} add2_op_t;

static int run_add2(void *ctx, hd__wop_t *base) {
  add2_op_t *op = (add2_op_t *)base;
  add_in_t in = {.created_ms = op->created_ms, .expires_ms = op->expires_ms,
                 .payload = op->data, .len = (int64_t)op->len};
  add_in_keys(&in, op->dedup_key, op->dedup_len, op->collapse_key, op->collapse_len);
  int stored;
  return add_for_user(ctx, op->user, &in, op->sent_upto, &op->status, &op->result, &stored);
}

static void add2_done(void *ctx, hd__wop_t *base, int status) {
  (void)ctx;
  add2_op_t *op = (add2_op_t *)base;
  if (status == 0) status = op->status;
  if (op->cb != NULL) op->cb(op->cb_data, status, status == 0 ? &op->result : NULL);
  free(op);
}

static const hd__wop_type_t add2_type = {run_add2, add2_done, 0};

int hd__sqs_add_event2(hd__server_store_t *base, const uint8_t user[32], int64_t created_ms,
                       const void *payload, size_t len, const hd__add_spec_t *spec,
                       hd__store_add_cb cb, void *cb_data) {
  int err = spec_check(spec, "add event");
  if (err != 0) return err;
  if (user == NULL || (payload == NULL && len != 0) || len > (size_t)INT32_MAX) {
    return hd__error(HD_EINVAL, "add event: no user, or payload missing or too large");
  }
  size_t extra = len + spec->dedup_key_len + spec->collapse_key_len;
  add2_op_t *op = malloc(sizeof *op + extra);
  if (op == NULL) return hd__error(HD_ENOMEM, "add event: %zu bytes", len);
  memcpy(op->user, user, 32);
  op->created_ms = created_ms;
  op->expires_ms = spec->expires_ms;
  op->sent_upto = spec->sent_upto;
  op->cb = cb;
  op->cb_data = cb_data;
  op->len = len;
  op->dedup_len = spec->dedup_key_len;
  op->collapse_len = spec->collapse_key_len;
  op->dedup_key = op->data + len;
  op->collapse_key = op->dedup_key + op->dedup_len;
  if (len != 0) memcpy(op->data, payload, len);
  if (op->dedup_len != 0) memcpy(op->dedup_key, spec->dedup_key, op->dedup_len);
  if (op->collapse_len != 0) memcpy(op->collapse_key, spec->collapse_key, op->collapse_len);
  return hd__writer_submit(&hd__sqs_from_iface(base)->sql.writer, &op->base, &add2_type, NULL,
                           NULL);
}

/* ---- add_fanout: n adds in one op ------------------------------------------------------------ */

/* One add as the op holds it: its payload and keys are ranges of the op's bytes. */
typedef struct add_slot {
  uint8_t user[32];
  int64_t expires_ms;
  uint64_t sent_upto;
  size_t payload_off, len, dedup_off, dedup_len, collapse_off, collapse_len;
} add_slot_t;

typedef struct fanout_op {
  hd__wop_t base;
  size_t n;
  int64_t created_ms;
  int shared;                  /* one payload for all (bytes[0..shared_len)), stored once */
  size_t shared_len;
  hd__store_fanout_cb cb;
  void *cb_data;
  hd_fanout_result_t *results; /* n */
  add_slot_t *slots;           /* n */
  uint8_t *bytes;              /* the payloads and keys */
  uint64_t data[];             /* results, slots, bytes (8-aligned first) */
} fanout_op_t;

static int payload_stmt(sq_server_t *s, const char *sql, int64_t no, int64_t v) {
  sqlite3_stmt *st = stmt(s, sql);
  if (st == NULL) return hd_last_error_code();
  sqlite3_bind_int64(st, 1, no);
  if (sql == sql_payload_refs) sqlite3_bind_int64(st, 2, v);
  return hd__sqlite_step_done(st, "shared payload");
}

static int run_fanout(void *ctx, hd__wop_t *base) {
  sq_server_t *s = ctx;
  fanout_op_t *op = (fanout_op_t *)base;
  if (op->n == 0) return 0;
  int err = hd__sqs_batch_reserve(s, op->n);
  if (err != 0) return err;
  int64_t payload_no = 0;
  if (op->shared) {
    sqlite3_stmt *st = stmt(s, sql_payload_add);
    if (st == NULL) return hd_last_error_code();
    sqlite3_bind_blob(st, 1, op->bytes, (int)op->shared_len, SQLITE_STATIC);
    err = hd__sqlite_step_done(st, "fan-out payload");
    sqlite3_clear_bindings(st);
    if (err != 0) return err;
    payload_no = sqlite3_last_insert_rowid(s->sql.wdb);
  }
  int64_t refs = 0;
  const uint8_t *digested = NULL; /* the payload in.digest is of (adds that share one share it) */
  size_t digested_len = 0;
  add_in_t in = {.created_ms = op->created_ms, .payload_no = payload_no};
  for (size_t i = 0; i < op->n; i++) {
    const add_slot_t *a = &op->slots[i];
    in.expires_ms = a->expires_ms;
    in.payload = op->bytes + a->payload_off;
    in.len = (int64_t)a->len;
    in.dedup_key = a->dedup_len != 0 ? op->bytes + a->dedup_off : NULL;
    in.dedup_len = a->dedup_len;
    in.collapse_key = a->collapse_len != 0 ? op->bytes + a->collapse_off : NULL;
    in.collapse_len = a->collapse_len;
    if (in.dedup_key != NULL && (in.payload != digested || a->len != digested_len)) {
      crypto_generichash(in.digest, DIGEST_BYTES, in.payload, (unsigned long long)in.len, NULL,
                         0);
      digested = in.payload;
      digested_len = a->len;
    }
    int stored;
    err = add_for_user(s, a->user, &in, a->sent_upto, &op->results[i].status,
                       &op->results[i].result, &stored);
    if (err != 0) return err;
    refs += stored;
  }
  if (!op->shared) return 0;
  /* every user a duplicate or refused: no event refers to it */
  return refs != 0 ? payload_stmt(s, sql_payload_refs, payload_no, refs)
                   : payload_stmt(s, sql_payload_del, payload_no, 0);
}

static void fanout_done(void *ctx, hd__wop_t *base, int status) {
  (void)ctx;
  fanout_op_t *op = (fanout_op_t *)base;
  if (op->cb != NULL) {
    op->cb(op->cb_data, status, status == 0 ? op->results : NULL, status == 0 ? op->n : 0);
  }
  free(op);
}

static const hd__wop_type_t fanout_type = {run_fanout, fanout_done, 0};

/* Where a range of `len` bytes at `p` goes in the op's bytes: the previous add's range if it is
 * the same pointer and length (a fan-out's key, a payload given twice in a row), else the next
 * free one. *size grows by what is new; *copy says whether to copy. */
static size_t place(const void *p, size_t len, const void *prev_p, size_t prev_len,
                    size_t prev_off, size_t *size, int *copy) {
  *copy = 0;
  if (len == 0) return 0;
  if (p == prev_p && len == prev_len) return prev_off;
  size_t off = *size;
  *size += len;
  *copy = 1;
  return off;
}

/* The slots' ranges and the bytes they need (bytes NULL: sizes only, else copies too). */
static size_t lay_out(const hd__store_add_t *adds, size_t n, const void *shared,
                      size_t shared_len, add_slot_t *slots, uint8_t *bytes) {
  size_t size = shared != NULL ? shared_len : 0;
  if (bytes != NULL && shared_len != 0) memcpy(bytes, shared, shared_len);
  add_slot_t prev;
  memset(&prev, 0, sizeof prev);
  const hd__store_add_t *pa = NULL;
  for (size_t i = 0; i < n; i++) {
    const hd__store_add_t *a = &adds[i];
    add_slot_t sl;
    memset(&sl, 0, sizeof sl);
    int copy;
    sl.expires_ms = a->spec.expires_ms;
    sl.sent_upto = a->spec.sent_upto;
    if (shared != NULL) {
      sl.len = shared_len;
    } else {
      sl.len = a->len;
      sl.payload_off = place(a->payload, a->len, pa ? pa->payload : NULL, prev.len,
                             prev.payload_off, &size, &copy);
      if (copy && bytes != NULL) memcpy(bytes + sl.payload_off, a->payload, a->len);
    }
    sl.dedup_len = a->spec.dedup_key_len;
    sl.dedup_off = place(a->spec.dedup_key, sl.dedup_len, pa ? pa->spec.dedup_key : NULL,
                         prev.dedup_len, prev.dedup_off, &size, &copy);
    if (copy && bytes != NULL) memcpy(bytes + sl.dedup_off, a->spec.dedup_key, sl.dedup_len);
    sl.collapse_len = a->spec.collapse_key_len;
    sl.collapse_off = place(a->spec.collapse_key, sl.collapse_len,
                            pa ? pa->spec.collapse_key : NULL, prev.collapse_len,
                            prev.collapse_off, &size, &copy);
    if (copy && bytes != NULL) {
      memcpy(bytes + sl.collapse_off, a->spec.collapse_key, sl.collapse_len);
    }
    if (slots != NULL) {
      memcpy(sl.user, a->user, 32);
      slots[i] = sl;
    }
    prev = sl;
    pa = a;
  }
  return size;
}

int hd__sqs_add_fanout(hd__server_store_t *base, const hd__store_add_t *adds, size_t n,
                       int64_t created_ms, const void *shared, size_t shared_len,
                       hd__store_fanout_cb cb, void *cb_data) {
  if ((adds == NULL && n != 0) || n > HD__STORE_ADDS_MAX ||
      (shared == NULL && shared_len != 0) || shared_len > (size_t)INT32_MAX) {
    return hd__error(HD_EINVAL, "fan-out: adds missing or more than %d, or payload missing or "
                     "too large", HD__STORE_ADDS_MAX);
  }
  for (size_t i = 0; i < n; i++) {
    const hd__store_add_t *a = &adds[i];
    int err = spec_check(&a->spec, "fan-out");
    if (err != 0) return err;
    if (a->user == NULL ||
        (shared == NULL && ((a->payload == NULL && a->len != 0) || a->len > (size_t)INT32_MAX))) {
      return hd__error(HD_EINVAL, "fan-out: add %zu has no user, or its payload is missing or "
                       "too large", i);
    }
  }
  size_t head = n * (sizeof(hd_fanout_result_t) + sizeof(add_slot_t));
  size_t size = lay_out(adds, n, shared, shared_len, NULL, NULL);
  fanout_op_t *op = malloc(sizeof *op + head + size);
  if (op == NULL) return hd__error(HD_ENOMEM, "fan-out: %zu adds, %zu bytes", n, size);
  op->results = (hd_fanout_result_t *)op->data;
  op->slots = (add_slot_t *)(op->results + n);
  op->bytes = (uint8_t *)(op->slots + n);
  lay_out(adds, n, shared, shared_len, op->slots, op->bytes);
  memset(op->results, 0, n * sizeof *op->results);
  op->n = n;
  op->created_ms = created_ms;
  op->shared = shared != NULL;
  op->shared_len = shared_len;
  op->cb = cb;
  op->cb_data = cb_data;
  return hd__writer_submit(&hd__sqs_from_iface(base)->sql.writer, &op->base, &fanout_type, NULL,
                           NULL);
}

/* ---- set_sent -------------------------------------------------------------------------------- */

typedef struct sent_op {
  hd__wop_t base;
  uint8_t user[32];
  uint64_t sent_upto;
} sent_op_t;

/* Through the batch's entry: its users row is written once before COMMIT, never lowered. */
static int run_set_sent(void *ctx, hd__wop_t *base) {
  sq_server_t *s = ctx;
  sent_op_t *op = (sent_op_t *)base;
  base->value = 0;
  batch_user_t *u;
  int err = hd__sqs_batch_user(s, op->user, &u);
  if (err != 0 || u->user_no == 0) return err; /* never added to: nothing was sent */
  int64_t v = op->sent_upto > INT64_MAX ? INT64_MAX : (int64_t)op->sent_upto;
  if (v > u->next_seq - 1) v = u->next_seq - 1; /* a client's claim cannot pass the numbering */
  if (v > u->sent_upto) {
    u->sent_upto = v;
    hd__sqs_mark_dirty(s, u);
  }
  base->value = (uint64_t)u->sent_upto;
  return 0;
}

static const hd__wop_type_t set_sent_type = {run_set_sent, hd__wop_done, 0};

int hd__sqs_set_sent(hd__server_store_t *base, const uint8_t user[32], uint64_t sent_upto,
                     hd__store_cb cb, void *cb_data) {
  if (user == NULL) return hd__error(HD_EINVAL, "set sent: no user");
  sent_op_t *op = malloc(sizeof *op);
  if (op == NULL) return hd__error(HD_ENOMEM, "set sent");
  memcpy(op->user, user, 32);
  op->sent_upto = sent_upto;
  return hd__writer_submit(&hd__sqs_from_iface(base)->sql.writer, &op->base, &set_sent_type, cb,
                           cb_data);
}
