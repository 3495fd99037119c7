/* The server store on SQLite: adds with a spec (hd__add_spec_t: expiry, deduplication and collapse
 * keys) under the per-user limits, and fan-out (docs/QUEUES.md). An add's own failure (a user at
 * its limit) is the add's status, never the batch's: the other writes of the batch commit. */
#include "store_sqlite_server.h"

#include <stdlib.h>
#include <string.h>

typedef struct add2_op {
  hd__wop_t base;
  uint8_t user[32];
  int64_t created_ms;
  int64_t expires_ms;
  hd__store_add_cb cb;
  void *cb_data;
  int status; /* the add's own failure (HD_ELIMIT), set by run: the batch goes on */
  hd_add_result_t result;
  size_t len;
  uint8_t payload[]; /* the one copy of the payload */
} add2_op_t;

static const char *const sql_event_add =
    "INSERT INTO events(user_no, seq, created_ms, payload, expires_ms, size)"
    "  VALUES(?1, ?2, ?3, ?4, ?5, ?6)";
static const char *const sql_user_new = "INSERT INTO users(public_key, next_seq, pending)"
                                        "  VALUES(?1, 1, 0)";

/* The user's row, created on its first add. */
static int ensure_user(sq_server_t *s, batch_user_t *u) {
  if (u->user_no != 0) return 0;
  sqlite3_stmt *st = hd__sqlite_stmt(&s->sql, s->sql.wdb, sql_user_new);
  if (st == NULL) return hd_last_error_code();
  sqlite3_bind_blob(st, 1, u->pk, 32, SQLITE_STATIC);
  int err = hd__sqlite_step_done(st, "new user");
  if (err == 0) u->user_no = sqlite3_last_insert_rowid(s->sql.wdb);
  return err;
}

static int run_add2(void *ctx, hd__wop_t *base) {
  sq_server_t *s = ctx;
  add2_op_t *op = (add2_op_t *)base;
  memset(&op->result, 0, sizeof op->result);
  op->status = 0;
  batch_user_t *u;
  int err = hd__sqs_batch_user(s, op->user, &u);
  if (err == 0) err = ensure_user(s, u);
  if (err != 0) return err;
  sqlite3_stmt *st = hd__sqlite_stmt(&s->sql, s->sql.wdb, sql_event_add);
  if (st == NULL) return hd_last_error_code();
  sqlite3_bind_int64(st, 1, u->user_no);
  sqlite3_bind_int64(st, 2, u->next_seq);
  sqlite3_bind_int64(st, 3, op->created_ms);
  sqlite3_bind_blob(st, 4, op->payload, (int)op->len, SQLITE_STATIC);
  sqlite3_bind_int64(st, 5, op->expires_ms);
  sqlite3_bind_int64(st, 6, (int64_t)op->len);
  err = hd__sqlite_step_done(st, "add event");
  sqlite3_clear_bindings(st); /* drop the pointer to the payload */
  if (err != 0) return err;
  op->result.seq = (uint64_t)u->next_seq++;
  u->pending++;
  u->bytes += (int64_t)op->len;
  hd__sqs_mark_dirty(s, u);
  return 0;
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
  if (user == NULL || spec == NULL || (payload == NULL && len != 0) || len > (size_t)INT32_MAX) {
    return hd__error(HD_EINVAL, "add event: no user or spec, or payload missing or too large");
  }
  add2_op_t *op = malloc(sizeof *op + len);
  if (op == NULL) return hd__error(HD_ENOMEM, "add event: %zu bytes", len);
  memcpy(op->user, user, 32);
  op->created_ms = created_ms;
  op->expires_ms = spec->expires_ms;
  op->cb = cb;
  op->cb_data = cb_data;
  op->len = len;
  if (len != 0) memcpy(op->payload, payload, len);
  return hd__writer_submit(&hd__sqs_from_iface(base)->sql.writer, &op->base, &add2_type, NULL,
                           NULL);
}
