/* The server's event layer: what the server holds for its users and tells them. The transport
 * handle (server.c) knows events only through the calls below, the same calls the client's event
 * layer has (client_events.h): create, start, on open, on message, on close, close with a
 * callback, stats. The object owns the store, the users, the consumed batches, the deletes and
 * the counters. Loop thread only, except where a comment says otherwise.
 *
 *   server_events.c  the object: create/start/close, the user table, message dispatch, stats
 *   session.c        one user's connection: RESUME, CREDIT, paged pumping, backpressure
 *   consumed.c       CONSUMED reports, hd_consumed_t batches, grouped deletes, DONE
 *   failed.c         FAILED reports: events moved to the dead letters, DONE, on_dead_letter
 *   server_api.c     the public event calls (add_event, update_pause, pending, ...)
 *   server_add.c     every add's checks, call and completion; add_event_v2, fan-out
 *   server_add_events.c  many events at once (hd_server_add_events)
 *   admin.c          the admin calls: a user's events listed, deleted (some or all)
 *   dead_letters.c   the dead-letter calls: listed, counted, requeued, deleted
 *   expiry.c         the expiry sweep: bounded expire ops on a timer */
#ifndef HD_SERVER_EVENTS_H
#define HD_SERVER_EVENTS_H

#include "anchor.h"
#include "conn.h"
#include "key_cache.h"
#include "histogram.h"
#include "keymap.h"
#include "queue.h"
#include "store.h"

/* Stop filling a connection while this much is queued and unwritten; resume below half. */
#define HD__SRV_HIGH_WATER (1024u * 1024u)
#define HD__SRV_LOW_WATER (HD__SRV_HIGH_WATER / 2)
#define HD__SRV_DEFAULT_PAGE 4096u
/* Pages one pump may read before it yields to the rest of the loop (it goes on next turn). */
#define HD__SRV_PAGES_PER_TURN 8
/* Most reported events one loop turn works through for a session: a larger CONSUMED goes on in
 * the next turns (consumed.c), and a batch handed to on_consumed holds at most this many. */
#define HD__SRV_REPORT_SLICE 4096u
/* A delete that failed (a full disk) is tried again after this, doubling up to the maximum. */
#define HD__SRV_DEL_RETRY_MIN_MS 100u
#define HD__SRV_DEL_RETRY_MAX_MS 5000u
/* A payload must leave room for the EVENTS framing within the peer's message limit: an EVENTS
 * message with one event of n bytes is at most n + 64 (docs/PROTOCOL.md, "Message limits"). */
#define HD__SRV_PAYLOAD_SLACK 64
/* Most expired events one sweep transaction deletes (hd_server_options_t.expiry_batch). */
#define HD__SRV_EXPIRY_BATCH 1000u
#define HD__SRV_EXPIRY_BATCH_MAX (1u << 20) /* the store's bound on one expire op */
/* The sweep's wait after a short op while events with an expiry remain (expiry.c). */
#define HD__SRV_EXPIRY_PERIOD_MS 1000u
/* An add with an expiry has the sweep run this long after it is due, so that a burst of adds that
 * expire together costs one op and gives its user one notice. */
#define HD__SRV_EXPIRY_SLACK_MS 100u

typedef struct hd__server_events hd__server_events_t;
typedef struct hd__session hd__session_t;
typedef struct hd__report hd__report_t; /* consumed.c: a CONSUMED worked through in slices */

/* One user the server is busy with: connected, or with reported events in flight. Freed when
 * neither (hd__server_user_release). */
typedef struct hd__server_user {
  uint8_t pk[HD_PUBLICKEY_BYTES];
  hd__session_t *session;       /* the current connection's session, or NULL */
  uint64_t *inflight;           /* sorted seqs in a report, a batch or a delete not committed yet */
  size_t n_inflight, cap_inflight;
  uint64_t *del;                /* completed ok, waiting for this iteration's grouped delete */
  size_t n_del, cap_del;
  hd__queue_t del_node;         /* on ev->del_users while it has deletes to submit */
  /* Collapse adds in flight (server_add.c): while any, no session pushes this user's events, so
   * that nothing is sent between the add's snapshot of sent_max and its commit. */
  uint32_t holds;
  uint64_t sent_max;            /* the highest seq pushed to any session of the user (in order:
                                   every event up to it was sent); written to the store
                                   (set_sent) when a session ends */
} hd__server_user_t;

struct hd__session {
  hd__server_events_t *ev;
  hd__conn_t *conn;
  hd__server_user_t *user;
  int resumed;
  uint64_t credit;       /* events the client still accepts */
  uint64_t sent_upto;    /* the highest seq sent on this connection */
  hd__deferred_t pump;   /* coalesced: one pump per session per loop iteration */
  int blocked;           /* stopped by the write backlog; the drain hook restarts it */
  int catching_up;       /* since RESUME, until a page comes back short */
  uint64_t catchup_sent;
  uint64_t catchup_start_ms;
  size_t events_room;    /* the EVENTS writer's header guess, kept from page to page */
  hd__report_t *reports; /* CONSUMED still being worked through, oldest first (consumed.c) */
  uint64_t sent_recorded; /* the store knows the client was sent up to this (expiry.c) */
  hd__queue_t sent_node;  /* on ev->sent_sessions while sent_upto is above it */
};

struct hd__server_events {
  hd__runtime_t *rt;
  hd__server_store_t *store;
  hd__welcome_t *welcome;     /* the transport's WELCOME: store id and pause come from here */
  hd__anchor_t *anchor;       /* what batches still with the application hold */
  hd_consumed_cb on_consumed;
  void *user_data;
  uint32_t page_events;
  size_t max_payload;         /* max_event_bytes: the largest event hd_server_add_event takes */
  uint64_t default_ttl_ms;    /* options v4 (docs/QUEUES.md); 0: events do not expire */
  hd_dead_letter_cb on_dead_letter;
  uint32_t expiry_batch;
  int limited;                /* per-user limits set: every add goes through add_event2 */
  hd__key_cache_t key_cache;  /* users whose key passed the check (add, any thread) */
  hd__keymap_t users;         /* public key -> hd__server_user_t */

  /* counters (loop thread; read through hd__runtime_call) */
  uint64_t n_added, n_delivered, n_consumed, n_confirmed;
  uint64_t n_too_large;       /* events above a client's limit (session.c): its connection closed */
  uint64_t n_duplicate, n_replaced, n_dropped, n_limited; /* adds with options (server_add.c) */
  uint64_t n_dead, n_requeued; /* events moved to the dead letters, and given back (stats v3) */
  uint64_t n_expired;         /* expiry.c */
  hd__histogram_t add_durable; /* from an add's call to its commit (server_add.c; rendered by
                                  hd_server_metrics) */
  uint64_t n_rollbacks, n_epoch_resumes; /* RESUMEs answered with EPOCH: that cut the client's
                                            view, all of them (session.c) */

  /* CONSUMED scratch, reused: grows to the largest report and stays */
  uint64_t *scr_seqs;         /* 2 x scr_cap: candidates, then the ones not held any more */
  hd__entry_t *scr_entries;   /* the candidates' entries (data points into the message) */
  size_t *scr_plen;           /* the candidates' payload sizes; SIZE_MAX: not held */
  size_t scr_cap;
  uint64_t *scr_failed;       /* a batch's failed completions, leaving the in-flight set */
  size_t scr_failed_cap;

  hd__queue_t del_users;      /* users with ok completions to delete at the iteration's end */
  hd__deferred_t del_flush;
  hd__queue_t del_retry;      /* deletes that failed (a full disk), submitted again on the timer */
  uv_timer_t del_timer;       /* armed while del_retry is not empty */
  uint32_t del_backoff_ms;    /* the next retry's delay: doubles up to HD__SRV_DEL_RETRY_MAX_MS */
  int pending_closes;         /* close: the store and the timers */
  uv_timer_t expiry_timer;    /* the sweep (expiry.c) */
  uint64_t expiry_due;        /* uv_now at which it fires, while armed */
  int expiry_busy;            /* an expire op is in the store's queue */
  hd__queue_t sent_sessions;  /* sessions that sent since their last set_sent */
  hd__queue_t batches;        /* live batches (handed to the application) */

  int closing;                /* close was called: the store is closing or closed */
  void (*closed_cb)(void *arg);
  void *closed_arg;
};

/* Opens the store (on the creating thread, before the loop runs or on the caller loop's thread)
 * and fills `welcome`'s store id and pause. HD_EBUSY: the folder is in use. On error nothing is
 * left behind. */
int hd__server_events_create(hd__server_events_t **out, hd__runtime_t *rt,
                             const hd_server_options_t *opts, hd__welcome_t *welcome);
/* The loop is about to run: says what the store holds. */
void hd__server_events_start(hd__server_events_t *ev);
/* A peer authenticated on `c` (c->remote_pk): its session opens. */
void hd__server_events_on_open(hd__server_events_t *ev, hd__conn_t *c);
void hd__server_events_on_message(hd__server_events_t *ev, hd__conn_t *c, uint8_t type,
                                  const uint8_t *body, size_t len);
/* The connection wrote what it had queued (its backlog shrank). */
void hd__server_events_on_drain(hd__server_events_t *ev, hd__conn_t *c);
void hd__server_events_on_close(hd__server_events_t *ev, hd__conn_t *c);
/* Once every connection is gone: submits the gathered deletes, commits everything queued and
 * closes the store; batches still with the application are orphaned; then `cb(arg)` and `ev`
 * is freed. Before the loop runs (a failed create) the loop must be run for it to finish. */
void hd__server_events_close(hd__server_events_t *ev, void (*cb)(void *arg), void *arg);
/* Fills every field of `out` but connected_users (the transport's). */
int hd__server_events_stats(hd__server_events_t *ev, hd_server_stats_t *out);

/* server_events.c: the user table */
hd__server_user_t *hd__server_user_get(hd__server_events_t *ev,
                                       const uint8_t pk[HD_PUBLICKEY_BYTES], int create);
/* Frees the user if nothing refers to it any more (no session, nothing in flight). */
void hd__server_user_release(hd__server_events_t *ev, hd__server_user_t *u);

/* session.c */
void hd__session_open(hd__server_events_t *ev, hd__conn_t *c);
void hd__session_close(hd__server_events_t *ev, hd__conn_t *c);
void hd__session_message(hd__server_events_t *ev, hd__conn_t *c, uint8_t type,
                         const uint8_t *body, size_t len);
void hd__session_drained(hd__conn_t *c);
/* An event of `pk` was committed: wake its session's pump if it is connected. */
void hd__session_wake(hd__server_events_t *ev, const uint8_t pk[HD_PUBLICKEY_BYTES]);
/* Queues PAUSE on the session's connection. */
void hd__session_push_pause(hd__session_t *ss, uint32_t pause_ms);

/* session.c: a hold ended (server_add.c): the user's session may push again. */
void hd__session_unhold(hd__server_events_t *ev, hd__server_user_t *u);

/* server_add.c: the store's spec of an add with `opts` (NULL: none) at `now` (ms), the server's
 * default time to live applied; HD_EINVAL for a bad key, HD_EVERSION for a newer options struct. */
int hd__server_add_spec(hd__server_events_t *ev, const hd_add_options_t *opts, int64_t now,
                        hd__add_spec_t *spec);

/* server_add.c: the checks every add makes of its call (any thread): server and `user` (one
 * user, or a fan-out's array; for add_events the items) given, the server not closing, and
 * hd__server_payload_check; *ev the event layer. HD_EINVAL, HD_ECLOSED. */
int hd__server_add_check(hd_server_t *server, const void *user, const void *payload, size_t len,
                         hd__server_events_t **ev);
/* A payload of 1 to max_event_bytes bytes, else HD_EINVAL. */
int hd__server_payload_check(const hd__server_events_t *ev, const void *payload, size_t len);
/* HD_EKEY (detail set) if `user` is not a valid Ed25519 public key. */
int hd__server_key_check(hd__server_events_t *ev, const uint8_t user[HD_PUBLICKEY_BYTES]);

/* Which callback an add call answers with. */
enum { HD__ADD_REPLY_SEQ, HD__ADD_REPLY_RESULT, HD__ADD_REPLY_MANY };

/* The callback an add call answers with, as `reply` says. */
typedef union hd__add_reply_cb {
  hd_add_cb seq;
  hd_add_result_cb result;
  hd_fanout_cb many;
} hd__add_reply_cb_t;

/* An add call in flight, from the call (any thread) to its one completion (loop thread), for
 * every kind of add: hd_server_add_event (one add, hd_add_cb), _v2 (hd_add_result_cb), _fanout
 * and _events (n adds, hd_fanout_cb). The completion counts each add's outcome, lets go of the
 * holds, records the add-to-durable time, answers, wakes the users' sessions and tells the
 * expiry sweep. One allocation (hd__add_call_new). */
typedef struct hd__add_call {
  hd__server_events_t *ev;
  uint64_t start_ns; /* uv_hrtime() at the call (add_durable) */
  int reply;         /* HD__ADD_REPLY_* */
  hd__add_reply_cb_t cb;
  void *cb_data;
  int held;                    /* the users of its collapse adds are held (server_add.c) */
  size_t n;                    /* the caller's adds */
  size_t m;                    /* those handed to the store (a user whose key is no Ed25519
                                  key is not: HD_EKEY in its result) */
  hd_fanout_result_t *results; /* n, in the caller's order */
  size_t *map;                 /* m: adds[i] is the caller's add map[i] */
  hd__store_add_t *adds;       /* m; once submitted only user and spec (expires_ms,
                                  collapse_key_len) are read: the pointers were the caller's */
  uint8_t *users;              /* m x 32: the copies adds[i].user points to */
} hd__add_call_t;

/* A call for up to `n` adds answering `reply`, its results zeroed; NULL (HD_ENOMEM set) */
hd__add_call_t *hd__add_call_new(hd__server_events_t *ev, size_t n, int reply, void *cb_data);
/* The next add handed to the store: the caller's add `i`, for `user` (copied), with `spec`.
 * Its payload is set by the caller (ignored when the submit shares one). */
hd__store_add_t *hd__add_call_push(hd__add_call_t *c, size_t i, const uint8_t *user,
                                   const hd__add_spec_t *spec);
/* One add for `user` (hd_server_add_event: opts NULL, reply HD__ADD_REPLY_SEQ; _v2:
 * HD__ADD_REPLY_RESULT): the checks, the call, its submit. */
int hd__server_add_one(hd_server_t *server, const uint8_t user[HD_PUBLICKEY_BYTES],
                       const void *payload, size_t len, const hd_add_options_t *opts, int reply,
                       hd__add_reply_cb_t cb, void *cb_data);
/* Hands the call's adds to the store (any thread; the users of collapse adds are held first,
 * on the loop). shared: one payload for every add (a fan-out), else NULL. On failure `c` is
 * freed and its callback never runs. */
int hd__add_call_submit(hd__add_call_t *c, int64_t now_ms, const void *shared,
                        size_t shared_len);

/* expiry.c. init after the store opened; start with the server; close as the store closes. */
void hd__expiry_init(hd__server_events_t *ev);
void hd__expiry_start(hd__server_events_t *ev);
void hd__expiry_close(hd__server_events_t *ev, uv_close_cb closed);
/* An add with an expiry committed: the sweep runs by then (or within its period). */
void hd__expiry_added(hd__server_events_t *ev, int64_t expires_ms);
/* The session sent events: recorded before the next expire op. */
void hd__expiry_sent(hd__server_events_t *ev, hd__session_t *ss);
void hd__expiry_session_close(hd__server_events_t *ev, hd__session_t *ss);

/* consumed.c */
void hd__consumed_report(hd__server_events_t *ev, hd__session_t *ss, const uint8_t *body,
                         size_t len);
/* The session closes: reports not worked through are dropped (the client reports them again). */
void hd__consumed_session_close(hd__server_events_t *ev, hd__session_t *ss);
/* Before the store closes: submit the deletes gathered this iteration. */
void hd__consumed_flush(hd__server_events_t *ev);
/* The timer that submits failed deletes again (after the store opened). */
void hd__consumed_init(hd__server_events_t *ev);
/* At close: deletes waiting to be tried again are dropped (the client reports those events again
 * at its next connection); the timer closes, then `closed(h)`. */
void hd__consumed_close(hd__server_events_t *ev, uv_close_cb closed);
/* A notice the pump skips (its client cannot take NOTICES): deleted like a confirmed event. */
void hd__consumed_drop_notice(hd__server_events_t *ev, hd__server_user_t *u, uint64_t seq);
/* At the very end: batches still with the application only wait to be freed. */
void hd__consumed_orphan_all(hd__server_events_t *ev);
/* The user's in-flight set (sorted seqs; add and remove take ascending, distinct seqs). */
int hd__inflight_add(hd__server_user_t *u, const uint64_t *seqs, size_t n);
void hd__inflight_remove(hd__server_user_t *u, const uint64_t *seqs, size_t n);
int hd__inflight_has(const hd__server_user_t *u, uint64_t seq);
/* DONE for `seqs` on the user's connection, if it has one. */
void hd__consumed_send_done(hd__server_user_t *u, const uint64_t *seqs, size_t n);

/* failed.c: FAILED from a client that announced HD__FEATURE_FAILED */
void hd__failed_report(hd__server_events_t *ev, hd__session_t *ss, const uint8_t *body,
                       size_t len);

#endif
