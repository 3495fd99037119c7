/* The expiry sweep (docs/QUEUES.md "Expiry"): a timer on the loop that has the store delete the
 * events whose time to live ran out before they were sent, a bounded op at a time (expiry_batch
 * events per transaction, on the store's writer, so the loop never waits for it). A full op
 * means more may be due: the next goes at once, after the loop's other work of this turn. A short
 * one waits a period while events with an expiry remain, and the sweep sleeps when none do until
 * an add with a time to live wakes it. It starts with the server, so what expired while it was
 * down goes at once (the store finds due rows by its index).
 *
 * Sent events are the client's and never expire. The store knows what the users' clients were
 * sent up to their last session's end (users.sent_upto); what a live session sent since is
 * recorded (set_sent) right before each expire op is submitted, in the same queue, so the op sees
 * it. An event a session sends later cannot be among the op's: from its submission on, the
 * pump's reads skip every event the op may delete. */
#include "server_events.h"
#include "clock.h"


static void sweep(uv_timer_t *t);

/* Runs the sweep in `ms` unless it runs sooner already. */
static void arm(hd__server_events_t *ev, uint64_t ms) {
  if (ev->closing || ev->expiry_busy) return;
  uint64_t due = uv_now(ev->rt->loop) + ms;
  if (uv_is_active((uv_handle_t *)&ev->expiry_timer) && ev->expiry_due <= due) return;
  ev->expiry_due = due;
  uv_timer_start(&ev->expiry_timer, sweep, ms, 0);
}

/* The live sessions' sends since they were last recorded, queued before the expire. 0, or the
 * code of a record that could not be queued (then no expire may go this turn). */
static int record_sent(hd__server_events_t *ev) {
  hd__queue_t *q;
  while ((q = hd__queue_pop(&ev->sent_sessions)) != NULL) {
    hd__session_t *ss = hd__container_of(q, hd__session_t, sent_node);
    if (ss->sent_upto <= ss->sent_recorded) continue;
    int rc = ev->store->vt->set_sent(ev->store, ss->user->pk, ss->sent_upto, NULL, NULL);
    if (rc != 0) {
      hd__queue_insert_head(&ev->sent_sessions, &ss->sent_node);
      return rc;
    }
    ss->sent_recorded = ss->sent_upto;
  }
  return 0;
}

static void wake_one(void *value, void *ctx) {
  hd__server_user_t *u = value;
  if (u->session != NULL) hd__session_wake(ctx, u->pk);
}

static void swept(void *data, int status, uint64_t value) {
  hd__server_events_t *ev = data;
  ev->expiry_busy = 0;
  if (ev->closing) return;
  if (status != 0) {
    /* the store's trouble (a full disk...) shows in the other writes too: try again later */
    hd__log(ev->rt, HD_LOG_WARN, "expiry sweep failed (%s: %s): tried again in %u ms",
            hd_err_name(status), hd_last_error_message(), HD__SRV_EXPIRY_PERIOD_MS);
    arm(ev, HD__SRV_EXPIRY_PERIOD_MS);
    return;
  }
  uint64_t expired = value & UINT32_MAX;
  ev->n_expired += expired;
  if (expired > 0) {
    hd__log(ev->rt, HD_LOG_DEBUG, "expired %llu unsent events", (unsigned long long)expired);
    /* their users got a notice: a connected one is told now, not at its next event */
    hd__keymap_each(&ev->users, wake_one, ev);
  }
  if (value & HD__STORE_EXPIRE_MORE) arm(ev, 0);
  else if (value & HD__STORE_EXPIRE_LEFT) arm(ev, HD__SRV_EXPIRY_PERIOD_MS);
}

static void sweep(uv_timer_t *t) {
  hd__server_events_t *ev = t->data;
  if (ev->closing || ev->expiry_busy) return;
  int rc = record_sent(ev);
  if (rc == 0) rc = ev->store->vt->expire(ev->store, hd__wall_ms(), ev->expiry_batch, swept, ev);
  if (rc != 0) {
    hd__log(ev->rt, HD_LOG_WARN, "expiry sweep not started (%s: %s): tried again in %u ms",
            hd_err_name(rc), hd_last_error_message(), HD__SRV_EXPIRY_PERIOD_MS);
    arm(ev, HD__SRV_EXPIRY_PERIOD_MS);
    return;
  }
  ev->expiry_busy = 1;
}

void hd__expiry_init(hd__server_events_t *ev) {
  hd__queue_init(&ev->sent_sessions);
  uv_timer_init(ev->rt->loop, &ev->expiry_timer);
  ev->expiry_timer.data = ev;
}

void hd__expiry_start(hd__server_events_t *ev) { arm(ev, 0); }

void hd__expiry_added(hd__server_events_t *ev, int64_t expires_ms) {
  int64_t in = expires_ms - hd__wall_ms();
  if (in < 0) in = 0;
  uint64_t ms = (uint64_t)in + HD__SRV_EXPIRY_SLACK_MS;
  arm(ev, ms < HD__SRV_EXPIRY_PERIOD_MS ? ms : HD__SRV_EXPIRY_PERIOD_MS);
}

void hd__expiry_sent(hd__server_events_t *ev, hd__session_t *ss) {
  if (!hd__queue_linked(&ss->sent_node)) hd__queue_insert_tail(&ev->sent_sessions, &ss->sent_node);
}

/* What the session sent is recorded by its end (session.c, from the user's sent_max); here it
 * only leaves the sweep's list. */
void hd__expiry_session_close(hd__server_events_t *ev, hd__session_t *ss) {
  (void)ev;
  if (hd__queue_linked(&ss->sent_node)) hd__queue_remove(&ss->sent_node);
}

void hd__expiry_close(hd__server_events_t *ev, uv_close_cb closed) {
  uv_close((uv_handle_t *)&ev->expiry_timer, closed);
}
