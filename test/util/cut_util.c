/* cut_util.h: the ledger of attempted adds, the cut of a store, and what is checked after it. */
#include "cut_util.h"

#include "server.h"
#include "server_events.h"
#include "waiter.h"

#define CW_CAP 1024       /* seqs the recorders count (the ledger is what is checked) */
#define CW_WAIT_MS 5000

/* The world whose callbacks run now (the checks have no user pointer of their own). */
static cw_t *cw_cur;

static int att_of(const uint8_t *p, size_t n) {
  char buf[16];
  if (n < 4 || n >= sizeof buf || memcmp(p, "att", 3) != 0) return -1;
  memcpy(buf, p, n);
  buf[n] = '\0';
  char *end;
  long i = strtol(buf + 3, &end, 10);
  return *end == '\0' && i >= 0 && i < CW_MAX_ATT ? (int)i : -1;
}

/* The client's handler, under its recorder's lock. A call the recorder fails (fail_seq: so that
 * a handler call is counted in the client's store before it happens, mark_attempt, in the way of
 * the cut or the fault) is not a handling: the event is handed out again. */
static int cw_client_check(int tag, uint64_t seq, const uint8_t *p, size_t n) {
  cw_t *cw = cw_cur;
  du_client_t *c = &cw->w.c[0];
  int i = att_of(p, n);
  int failing = seq == c->fail_seq && c->failed_so_far < c->fail_times;
  pthread_mutex_lock(&cw->mu);
  int ok = i >= 0 && cw->att[i].tried;
  if (!ok) {
    cw->bad_payloads++;
  } else if (!failing) {
    cw->att[i].handled++;
    if (cw->w.c[0].repeated) cw->att[i].marked++;
  }
  pthread_mutex_unlock(&cw->mu);
  if (hdt_verbose()) du_log_line("test", "handled seq %" PRIu64 " att %d", seq, i);
  return ok;
}

/* on_consumed, per event, under the server recorder's lock. */
static int cw_server_check(int tag, uint64_t seq, const uint8_t *p, size_t n) {
  cw_t *cw = cw_cur;
  int i = att_of(p, n);
  fv_counts_t cc;
  fv_counts(cw->d[CW_CLIENT], &cc);
  pthread_mutex_lock(&cw->mu);
  int ok = i >= 0 && cw->att[i].tried;
  if (ok && cw->att[i].reported++ == 0) cw->att[i].cli_wal_syncs = cc.wal_syncs;
  if (!ok) cw->bad_payloads++;
  pthread_mutex_unlock(&cw->mu);
  return ok;
}

unsigned cw_env_count(const char *name, unsigned normal, unsigned slow) {
  const char *v = getenv(name);
  if (v != NULL && atoi(v) > 0) return (unsigned)atoi(v);
  return hdt_count(normal, slow);
}

uint64_t cw_seed(uint64_t fallback) {
  const char *v = getenv("HD_SEED");
  return v != NULL && v[0] != '\0' ? strtoull(v, NULL, 0) : fallback;
}

int cw_init(cw_t *cw, const char *tag, int normal) {
  memset(cw, 0, sizeof *cw);
  pthread_mutex_init(&cw->mu, NULL);
  cw->d[0] = cw->d[1] = -1;
  cw_cur = cw;
  if (fv_install() != 0 || du_world_init(&cw->w, tag, 1, CW_CAP, 0) != 0) return -1;
  cw->normal = normal;
  cw->w.s.sync_normal = normal;
  cw->w.c[0].sync_normal = normal;
  cw->w.s.check = cw_server_check;
  cw->w.c[0].check = cw_client_check;
  cw->w.c[0].fail_seq = 2; /* its first call fails: the next is counted (mark_attempt) first */
  cw->w.c[0].fail_times = 1;
  cw->w.c[0].reject_seq = 4; /* rejected: recorded failed (mark_failed), a dead letter */
  if (hd_keypair_generate(&cw->by_kp) != 0) return -1;
  cw->by_cut_syncs = -1;
  cw->d[CW_SERVER] = fv_domain(cw->w.s.dir);
  cw->d[CW_CLIENT] = fv_domain(cw->w.c[0].dir);
  return cw->d[0] >= 0 && cw->d[1] >= 0 ? 0 : -1;
}

void cw_free(cw_t *cw) {
  du_world_free(&cw->w);
  for (int i = 0; i < 2; i++) {
    if (cw->d[i] >= 0) fv_domain_forget(cw->d[i]);
  }
  pthread_mutex_destroy(&cw->mu);
  cw_cur = NULL;
}

int cw_start(cw_t *cw, int side) {
  return side == CW_SERVER ? du_world_start_server(&cw->w) : du_client_start(&cw->w.c[0]);
}

int cw_stop(cw_t *cw, int side) {
  return side == CW_SERVER ? du_server_stop(&cw->w.s) : du_client_stop(&cw->w.c[0]);
}

int cw_start_all(cw_t *cw) {
  int rc = cw_start(cw, CW_SERVER);
  if (rc == 0) rc = cw_start(cw, CW_CLIENT);
  if (rc == 0 && !WAIT_FOR(du_client_is_connected(&cw->w.c[0]), CW_WAIT_MS)) rc = HD_ETIMEDOUT;
  return rc;
}

int cw_add(cw_t *cw) {
  if (cw->n_att >= CW_MAX_ATT) return HD_EINVAL;
  int i = cw->n_att++;
  char payload[16];
  int n = snprintf(payload, sizeof payload, "att%d", i);
  pthread_mutex_lock(&cw->mu);
  cw->att[i].tried = 1;
  pthread_mutex_unlock(&cw->mu);
  uint64_t seq = 0;
  int rc = cw->w.s.h != NULL ? hd_server_add_event_wait(cw->w.s.h, cw->w.c[0].kp.public_key,
                                                         payload, (size_t)n, &seq)
                             : HD_ECLOSED;
  fv_counts_t sc;
  fv_counts(cw->d[CW_SERVER], &sc);
  pthread_mutex_lock(&cw->mu);
  cw->att[i].add_rc = rc;
  cw->att[i].seq = rc == 0 ? seq : 0;
  cw->att[i].srv_wal_syncs = sc.wal_syncs;
  pthread_mutex_unlock(&cw->mu);
  return rc;
}

static long server_wal_syncs(cw_t *cw) {
  fv_counts_t sc;
  fv_counts(cw->d[CW_SERVER], &sc);
  return sc.wal_syncs;
}

/* The bystander's operations as maps of its states: where an event in `st` goes. */
enum { OP_ADD, OP_DELETE, OP_FAIL, OP_REQUEUE, OP_DELETE_DEAD };

static unsigned op_map(int op, unsigned st) {
  switch (op) {
    case OP_ADD: return st == CW_BY_NONE ? CW_BY_HELD : st;
    case OP_DELETE: return st == CW_BY_HELD ? CW_BY_NONE : st;
    case OP_FAIL: return st == CW_BY_HELD ? CW_BY_DEAD : st;
    case OP_REQUEUE: return st == CW_BY_DEAD ? CW_BY_HELD : st;
    default: return st == CW_BY_DEAD ? CW_BY_NONE : st; /* OP_DELETE_DEAD */
  }
}

/* The states an event may be in now. */
static unsigned by_now(const cw_by_t *b) { return b->n_hist ? b->may[b->n_hist - 1] : CW_BY_NONE; }

/* Records operation `op` (its result rc, the syncs at its answer) on event b: acknowledged, it
 * moved every state it may have been in; failed, it may or may not have. */
static void by_record(cw_by_t *b, int op, int rc, long syncs) {
  if (b->n_hist >= CW_BY_HIST) return; /* by_room kept this from happening */
  unsigned before = by_now(b), after = 0;
  for (unsigned st = 1; st <= CW_BY_DEAD; st <<= 1) {
    if (before & st) after |= op_map(op, st);
  }
  int i = b->n_hist++;
  b->may[i] = (unsigned char)(rc == 0 ? after : after | before);
  b->acked[i] = rc == 0;
  b->syncs[i] = syncs;
}

static int by_room(const cw_by_t *b) { return b->n_hist < CW_BY_HIST; }

/* The oldest event surely in state `st` with a known number and room in its history. */
static int by_oldest(cw_t *cw, unsigned st) {
  for (int i = 0; i < cw->n_by; i++) {
    const cw_by_t *b = &cw->by[i];
    if (by_now(b) == st && b->seq != 0 && by_room(b)) return i;
  }
  return -1;
}

static void by_wait_done(void *data, int status, uint64_t value) {
  hd__waiter_signal(data, status, value);
}

/* Reports the bystander's event `seq` failed straight to the server's store: the write a FAILED
 * from its client makes (failed.c), without a client (the bystander has none). */
static int by_fail(hd_server_t *h, const uint8_t *user, uint64_t seq) {
  hd__server_events_t *ev = hd__server_events_of(h);
  if (ev == NULL) return HD_ECLOSED;
  hd__waiter_t w;
  int rc = hd__waiter_init(&w);
  if (rc != 0) return rc;
  hd__store_failed_t f = {seq, 3, "poison", 6};
  rc = ev->store->vt->fail_events(ev->store, user, &f, 1, by_wait_done, &w);
  if (rc != 0) {
    hd__waiter_destroy(&w);
    return rc;
  }
  uint64_t moved = 0;
  return hd__waiter_wait(&w, &moved);
}

static int by_index(cw_t *cw, const uint8_t *p, size_t n);

/* After a requeue: the events' new numbers, from a listing (0 where unknown). */
static void by_renumber(cw_t *cw) {
  for (int i = 0; i < cw->n_by; i++) {
    if (by_now(&cw->by[i]) & CW_BY_HELD) cw->by[i].seq = 0;
  }
  hd_event_info_t ev[16];
  uint8_t buf[16 * 16];
  uint64_t cursor = 0;
  int n;
  while ((n = hd_server_list_events(cw->w.s.h, cw->by_kp.public_key, &cursor, ev, 16, buf,
                                    sizeof buf)) > 0) {
    for (int k = 0; k < n; k++) {
      int i = by_index(cw, ev[k].payload, ev[k].payload_len);
      if (i >= 0 && by_now(&cw->by[i]) == CW_BY_HELD) cw->by[i].seq = ev[k].seq;
    }
  }
}

int cw_by_step(cw_t *cw, unsigned r) {
  hd_server_t *h = cw->w.s.h;
  const uint8_t *user = cw->by_kp.public_key;
  if (h == NULL) return HD_ECLOSED;
  if (r > 13) return 0;
  if (r < 6 || r == 13) {
    if (cw->n_by >= CW_MAX_BY) return 0;
    int i = cw->n_by++;
    char payload[16];
    int n = snprintf(payload, sizeof payload, "by%d", i);
    cw_by_t *b = &cw->by[i];
    if (r == 13) {
      hd_add_options_t ao;
      hd_add_options_init(&ao, HD_ADD_OPTIONS_VERSION);
      ao.ttl_ms = 1;
      hd_add_result_t res = {0};
      b->expiring = 1;
      b->add_rc = hd_server_add_event_v2_wait(h, user, payload, (size_t)n, &ao, &res);
      b->seq = res.seq;
    } else {
      b->add_rc = hd_server_add_event_wait(h, user, payload, (size_t)n, &b->seq);
    }
    if (b->add_rc != 0) b->seq = 0;
    by_record(b, OP_ADD, b->add_rc, server_wal_syncs(cw));
    return b->add_rc;
  }
  int rc, op, one = -1;
  uint64_t count = 0;
  if (r < 9 || r == 10) {
    op = r == 10 ? OP_FAIL : OP_DELETE;
    if ((one = by_oldest(cw, CW_BY_HELD)) < 0) return 0;
    rc = op == OP_FAIL ? by_fail(h, user, cw->by[one].seq)
                       : hd_server_delete_events_wait(h, user, &cw->by[one].seq, 1, &count);
  } else if (r == 12) {
    op = OP_DELETE_DEAD;
    if ((one = by_oldest(cw, CW_BY_DEAD)) < 0) return 0;
    rc = hd_server_delete_dead_letters_wait(h, user, &cw->by[one].seq, 1, &count);
  } else {
    /* 9: every held event; 11: every dead letter (each needs room for the operation) */
    op = r == 9 ? OP_DELETE : OP_REQUEUE;
    for (int i = 0; i < cw->n_by; i++) {
      if (!by_room(&cw->by[i])) return 0;
    }
    rc = op == OP_DELETE ? hd_server_delete_user_wait(h, user, &count)
                         : hd_server_requeue_dead_letters_wait(h, user, NULL, 0, &count);
  }
  long syncs = server_wal_syncs(cw);
  for (int i = 0; i < cw->n_by; i++) {
    if (one < 0 || i == one) by_record(&cw->by[i], op, rc, syncs);
  }
  if (op == OP_REQUEUE) by_renumber(cw);
  return rc;
}

int cw_settled(cw_t *cw) {
  pthread_mutex_lock(&cw->mu);
  int missing = 0;
  for (int i = 0; i < cw->n_att; i++) {
    const cw_att_t *a = &cw->att[i];
    if (a->add_rc == 0 && !a->may_be_lost && a->handled == 0) missing++;
  }
  pthread_mutex_unlock(&cw->mu);
  uint64_t pending = 1; /* the client's user's: the bystander's stay */
  return missing == 0 && cw->w.s.h != NULL && cw->w.c[0].h != NULL &&
         hd_server_pending(cw->w.s.h, cw->w.c[0].kp.public_key, &pending) == 0 && pending == 0 &&
         du_client_store_empty(&cw->w.c[0]);
}

/* What the cut of `side` may lose or must keep, decided as it happens (both sides stopped
 * writing to that store: every later write of it fails). */
static void cw_mark_cut(cw_t *cw, int side) {
  fv_counts_t c;
  fv_counts(cw->d[side], &c);
  pthread_mutex_lock(&cw->mu);
  for (int i = 0; i < cw->n_att; i++) {
    cw_att_t *a = &cw->att[i];
    if (side == CW_SERVER && cw->normal && a->add_rc == 0 && a->srv_wal_syncs == c.wal_syncs) {
      a->may_be_lost = 1;
    }
    /* under FULL a consumption is reported only once its commit was synced; under NORMAL once
     * a later WAL sync covered it */
    if (side == CW_CLIENT && a->reported > 0 && (!cw->normal || c.wal_syncs > a->cli_wal_syncs)) {
      a->consumed_durably = 1;
      a->handled_at_cut = a->handled;
    }
  }
  pthread_mutex_unlock(&cw->mu);
  if (side == CW_SERVER && cw->normal) cw->by_cut_syncs = c.wal_syncs;
}

int cw_cut(cw_t *cw, int side, int mode, uint64_t seed, cw_figures_t *fig) {
  int d = cw->d[side];
  fv_cut_now(d); /* if it did not happen yet: from here nothing reaches the disk */
  cw_stop(cw, side); /* fails where the store could not write: expected */
  /* a client's reports sent before it stopped reach on_consumed before its connection ends */
  du_server_t *s = &cw->w.s;
  if (side == CW_CLIENT && s->h != NULL) {
    WAIT_FOR(atomic_load(&s->peers_disconnected) >= atomic_load(&s->peers_connected), 2000);
  }
  cw_mark_cut(cw, side);
  fv_revert_report_t rep;
  if (fv_revert(d, mode, seed, &rep) != 0) {
    fprintf(stderr, "  cannot revert the %s store's files\n", side == CW_SERVER ? "server" : "client");
    return HD_EIO;
  }
  fig->cuts++;
  if (side == CW_SERVER) fig->cuts_server++, cw->server_cuts++;
  else fig->cuts_client++, cw->client_cuts++;
  fig->writes_dropped += rep.writes_dropped;
  fig->writes_torn += rep.writes_torn;
  fig->files_removed += rep.files_removed;
  int rc = cw_start(cw, side);
  if (rc != 0) {
    fprintf(stderr, "  the %s store does not open after the cut: %s (%s)\n",
            side == CW_SERVER ? "server" : "client", hd_err_name(rc), hd_last_error_message());
  }
  return rc;
}

/* The bystander's event with payload p, or -1. */
static int by_index(cw_t *cw, const uint8_t *p, size_t n) {
  char text[16];
  if (n >= sizeof text) return -1;
  memcpy(text, p, n);
  text[n] = '\0';
  char *end;
  long i = strncmp(text, "by", 2) == 0 ? strtol(text + 2, &end, 10) : -1;
  return i >= 0 && i < cw->n_by && *end == '\0' ? (int)i : -1;
}

/* The bystander's events the store holds, by their add's index: held[i] and dead[i] (payloads
 * that were never added count in *bad; the notices of requeues are skipped). 0 or the listing's
 * error. */
static int by_present(cw_t *cw, int *held, int *dead, int *bad) {
  hd_event_info_t ev[16];
  hd_dead_letter_t dl[16];
  uint8_t buf[16 * 32];
  uint64_t cursor = 0;
  int n;
  while ((n = hd_server_list_events(cw->w.s.h, cw->by_kp.public_key, &cursor, ev, 16, buf,
                                    sizeof buf)) > 0) {
    for (int k = 0; k < n; k++) {
      int i = by_index(cw, ev[k].payload, ev[k].payload_len);
      hd__notice_t notice;
      if (i >= 0) held[i]++;
      else if (hd__notice_decode(ev[k].payload, ev[k].payload_len, &notice) != 0) (*bad)++;
    }
  }
  if (n < 0) return n;
  cursor = 0;
  while ((n = hd_server_list_dead_letters(cw->w.s.h, cw->by_kp.public_key, &cursor, dl, 16, buf,
                                          sizeof buf)) > 0) {
    for (int k = 0; k < n; k++) {
      int i = by_index(cw, dl[k].payload, dl[k].payload_len);
      if (i >= 0) dead[i]++;
      else (*bad)++;
    }
  }
  return n;
}

/* The states event b may be in after the cut: those after its last operation that stays (every
 * acknowledged one under FULL; under NORMAL one acknowledged after a WAL sync that the cut kept)
 * and after each one since, which the cut may have lost. */
static unsigned by_allowed(const cw_t *cw, const cw_by_t *b) {
  int from = -1;
  for (int i = 0; i < b->n_hist; i++) {
    if (b->acked[i] && (cw->by_cut_syncs < 0 || b->syncs[i] < cw->by_cut_syncs)) from = i;
  }
  unsigned may = from < 0 ? CW_BY_NONE : 0;
  for (int i = from < 0 ? 0 : from; i < b->n_hist; i++) may |= b->may[i];
  return may;
}

static const char *by_state_name(unsigned st) {
  return st == CW_BY_HELD ? "held" : st == CW_BY_DEAD ? "a dead letter" : "gone";
}

/* Every bystander event is where its acknowledged operations left it, once; NORMAL: or where an
 * operation the cut may have lost had not taken it yet. */
static int by_verify(cw_t *cw, cw_figures_t *fig) {
  if (cw->n_by == 0) return 1;
  int held[CW_MAX_BY] = {0}, dead[CW_MAX_BY] = {0}, bad = 0, ok = 1;
  int rc = cw->w.s.h != NULL ? by_present(cw, held, dead, &bad) : HD_ECLOSED;
  if (rc < 0) {
    fprintf(stderr, "  listing the bystander's events failed: %s (%s)\n", hd_err_name(rc),
            hd_last_error_message());
    return 0;
  }
  if (bad) fprintf(stderr, "  the bystander holds %d events that were never added\n", bad);
  ok = bad == 0;
  for (int i = 0; i < cw->n_by; i++) {
    const cw_by_t *b = &cw->by[i];
    for (int k = 1; k < b->n_hist; k++) { /* what was acknowledged, by the map that moved it */
      if (!b->acked[k] || b->may[k] == b->may[k - 1]) continue;
      if (b->may[k] == CW_BY_DEAD) fig->by_fails_acked++;
      else if (b->may[k] == CW_BY_HELD) fig->by_requeues_acked++;
      else if (b->may[k] == CW_BY_NONE) fig->by_deletes_acked++;
    }
    if (held[i] + dead[i] > 1) {
      fprintf(stderr, "  by%d is held %d times and a dead letter %d times\n", i, held[i], dead[i]);
      ok = 0;
      continue;
    }
    unsigned seen = held[i] ? CW_BY_HELD : dead[i] ? CW_BY_DEAD : CW_BY_NONE;
    unsigned may = by_allowed(cw, b);
    if (b->expiring) may |= CW_BY_NONE; /* the sweep may have deleted it */
    if (!(may & seen)) {
      fprintf(stderr, "  by%d (seq %" PRIu64 ") is %s after the cut; its acknowledged operations "
              "leave it %s%s%s\n", i, b->seq, by_state_name(seen),
              may & CW_BY_HELD ? "held " : "", may & CW_BY_DEAD ? "dead " : "",
              may & CW_BY_NONE ? "gone" : "");
      ok = 0;
    } else if (may == seen && b->n_hist > 1 && b->acked[b->n_hist - 1]) {
      if (seen == CW_BY_NONE) fig->by_deleted_verified++;
      else if (seen == CW_BY_DEAD) fig->by_dead_verified++;
      else fig->by_kept_verified++;
    } else if (may == seen && seen == CW_BY_HELD) {
      fig->by_kept_verified++;
    }
    if (b->expiring && b->add_rc == 0 && seen == CW_BY_NONE) fig->by_expired_gone++;
  }
  return ok;
}

int cw_verify(cw_t *cw, cw_figures_t *fig) {
  int ok = by_verify(cw, fig);
  long extra_unmarked = 0;
  pthread_mutex_lock(&cw->mu);
  for (int i = 0; i < cw->n_att; i++) {
    const cw_att_t *a = &cw->att[i];
    if (a->add_rc == 0) fig->adds_acked++;
    else fig->adds_failed++;
    if (a->add_rc == 0 && a->handled == 0) {
      if (!a->may_be_lost) {
        fprintf(stderr, "  att%d (seq %" PRIu64 ") was acknowledged and never handled\n", i, a->seq);
        ok = 0;
      } else {
        fig->allowed_lost++;
      }
    }
    if (a->handled > 0) fig->events_verified++;
    int extra = a->handled > 1 ? a->handled - 1 : 0;
    fig->rehandled += extra;
    if (a->consumed_durably && a->handled > a->handled_at_cut) {
      fprintf(stderr, "  att%d was handled again after its consumption was durable\n", i);
      ok = 0;
    }
    /* a server store that rolled back hands an event it brought back out marked */
    if (extra > a->marked) extra_unmarked += extra - a->marked;
  }
  int bad = cw->bad_payloads;
  pthread_mutex_unlock(&cw->mu);
  /* without a cut of the client's store, the handler runs again only for an event a rolled
   * back server store brought back, marked; after one, for events whose consumption was not
   * durable (checked above), as many as the handler completed before their records committed */
  if (extra_unmarked > 0 && cw->client_cuts == 0) {
    fprintf(stderr, "  %ld unmarked repeated handler runs without a cut of the client's store\n",
            extra_unmarked);
    ok = 0;
  }
  if (bad != 0) {
    fprintf(stderr, "  %d events with a payload that was never added\n", bad);
    ok = 0;
  }
  du_server_t *s = &cw->w.s;
  pthread_mutex_lock(&s->mu);
  int data = s->data_errors + s->payload_errors + s->unknown_user;
  pthread_mutex_unlock(&s->mu);
  if (data != 0) {
    fprintf(stderr, "  the server saw %d reports with wrong data: %s\n", data, s->first_error);
    ok = 0;
  }
  if (!ok) du_log_dump(8000);
  return ok;
}
