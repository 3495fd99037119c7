/* cut_util.h: the ledger of attempted adds, the cut of a store, and what is checked after it. */
#include "cut_util.h"

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
  if (hd_keypair_generate(&cw->by_kp) != 0) return -1;
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

int cw_by_step(cw_t *cw, unsigned r) {
  hd_server_t *h = cw->w.s.h;
  const uint8_t *user = cw->by_kp.public_key;
  if (h == NULL) return HD_ECLOSED;
  if (r < 6) {
    if (cw->n_by >= CW_MAX_BY) return 0;
    int i = cw->n_by++;
    char payload[16];
    int n = snprintf(payload, sizeof payload, "by%d", i);
    cw_by_t *b = &cw->by[i];
    b->add_rc = hd_server_add_event_wait(h, user, payload, (size_t)n, &b->seq);
    b->add_syncs = server_wal_syncs(cw);
    return b->add_rc;
  }
  int from = 0, to = 0; /* the events the delete names: [from, to) */
  for (from = 0; from < cw->n_by; from++) {
    if (cw->by[from].add_rc == 0 && !cw->by[from].del_tried) break;
  }
  if (from == cw->n_by) return 0;
  int rc;
  uint64_t count = 0;
  if (r < 9) {
    to = from + 1;
    rc = hd_server_delete_events_wait(h, user, &cw->by[from].seq, 1, &count);
  } else {
    to = cw->n_by;
    rc = hd_server_delete_user_wait(h, user, &count);
  }
  long syncs = server_wal_syncs(cw);
  for (int i = from; i < to; i++) {
    cw_by_t *b = &cw->by[i];
    if (b->add_rc != 0 || b->del_tried) continue;
    b->del_tried = 1;
    b->del_rc = rc;
    b->del_syncs = syncs;
  }
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
  for (int i = 0; side == CW_SERVER && cw->normal && i < cw->n_by; i++) {
    cw_by_t *b = &cw->by[i];
    if (b->add_rc == 0 && b->add_syncs == c.wal_syncs) b->add_may_be_lost = 1;
    if (b->del_tried && b->del_rc == 0 && b->del_syncs == c.wal_syncs) b->del_may_be_lost = 1;
  }
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

/* The bystander's events the store holds, by their add's index: present[i] (payloads that were
 * never added count in *bad). 0 or the listing's error. */
static int by_present(cw_t *cw, int *present, int *bad) {
  hd_event_info_t ev[16];
  uint8_t buf[16 * 16];
  uint64_t cursor = 0;
  int n;
  while ((n = hd_server_list_events(cw->w.s.h, cw->by_kp.public_key, &cursor, ev, 16, buf,
                                    sizeof buf)) > 0) {
    for (int k = 0; k < n; k++) {
      char text[16];
      size_t len = ev[k].payload_len < sizeof text - 1 ? ev[k].payload_len : sizeof text - 1;
      memcpy(text, ev[k].payload, len);
      text[len] = '\0';
      char *end;
      long i = strncmp(text, "by", 2) == 0 ? strtol(text + 2, &end, 10) : -1;
      if (i < 0 || i >= cw->n_by || *end != '\0') (*bad)++;
      else present[i]++;
    }
  }
  return n;
}

/* Every acknowledged add of the bystander not deleted is there, once; no acknowledged delete came
 * undone; NORMAL: except what the cut may have lost. */
static int by_verify(cw_t *cw, cw_figures_t *fig) {
  if (cw->n_by == 0) return 1;
  int present[CW_MAX_BY] = {0}, bad = 0, ok = 1;
  int rc = cw->w.s.h != NULL ? by_present(cw, present, &bad) : HD_ECLOSED;
  if (rc < 0) {
    fprintf(stderr, "  listing the bystander's events failed: %s (%s)\n", hd_err_name(rc),
            hd_last_error_message());
    return 0;
  }
  if (bad) fprintf(stderr, "  the bystander holds %d events that were never added\n", bad);
  ok = bad == 0;
  for (int i = 0; i < cw->n_by; i++) {
    const cw_by_t *b = &cw->by[i];
    int deleted = b->del_tried && b->del_rc == 0;
    fig->by_deletes_acked += deleted;
    if (present[i] > 1) {
      fprintf(stderr, "  by%d is held %d times\n", i, present[i]);
      ok = 0;
    }
    if (deleted && present[i] && !b->del_may_be_lost) {
      fprintf(stderr, "  by%d (seq %" PRIu64 ") is held again after its delete was "
              "acknowledged\n", i, b->seq);
      ok = 0;
    } else if (deleted && !present[i]) {
      fig->by_deleted_verified++;
    }
    if (b->add_rc == 0 && !b->del_tried && !present[i] && !b->add_may_be_lost) {
      fprintf(stderr, "  by%d (seq %" PRIu64 ") was acknowledged, never deleted, and is gone\n",
              i, b->seq);
      ok = 0;
    } else if (b->add_rc == 0 && !b->del_tried && present[i]) {
      fig->by_kept_verified++;
    }
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
