/* The client's event layer (docs/ARCHITECTURE.md, docs/PROTOCOL.md section 7): what the client
 * holds in its store, the handler fed one event at a time, and what it tells the server (RESUME,
 * CONSUMED, CREDIT). The transport handle (client.c) knows events only through the calls below,
 * the same calls the server's event layer has (server_events.h). Loop thread only, except where
 * noted.
 *
 *   client_events.c   the object: create/start/close, receiving (EVENTS, DONE, PAUSE), flow
 *                     control, stats
 *   client_handler.c  handing events to on_event: pause, order, retry with backoff; recording
 *                     consumptions (again, with a backoff, after a failure)
 *   client_report.c   on connect: store id, RESUME, the consumed-but-unconfirmed report;
 *                     CONSUMED and CREDIT coalesced once per loop iteration
 *   event.c           hd_event_t and its any-thread completion */
#ifndef HD_CLIENT_EVENTS_H
#define HD_CLIENT_EVENTS_H

#include "conn.h"
#include "event.h"

typedef struct hd__client_events hd__client_events_t;
#include "store.h"

/* One EVENTS message whose insert is queued: store completions run in submission order, so a
 * FIFO ring is enough to match them (no allocation per message). */
typedef struct hd__insert_rec {
  uint64_t n;      /* events in the message */
  int notices;     /* a NOTICES message */
  uint64_t epoch;  /* the credit epoch (connection) it was received in */
} hd__insert_rec_t;

struct hd__client_events {
  hd__runtime_t *rt;
  hd__client_store_t *store;
  hd__anchor_t *anchor;        /* what events still with the application hold */
  hd_event_cb on_event;
  hd_event_cb on_notice;       /* options v2; NULL: notices are completed without a call */
  void *user_data;
  uint32_t window, retry_min_ms, retry_max_ms;
  uint32_t max_attempts;       /* handler calls per event; 0: unlimited */

  /* the connection that speaks the event protocol (NULL: none) */
  hd__conn_t *conn;
  int resumed;                 /* RESUME went out on `conn` */
  int sets_pending;            /* set_server_store_id writes queued, not completed */
  uint64_t last_seq;           /* highest seq received on `conn`: EVENTS must go above it */
  int awaiting_epoch;          /* RESUME carried an epoch other than WELCOME's: EPOCH comes first
                                  (1), is being applied (2), and no consumption is reported
                                  before it is (0 again) */
  uint64_t resume_high;        /* the high_seq RESUME carried */
  uint32_t pause_ms;
  uint8_t resume_id[HD_STORE_ID_BYTES]; /* the id RESUME carries: the one its high_seq is of
                                           (zeros: none) */
  int64_t store_no;            /* the client store's number for `conn`'s server store once
                                  recorded (0: none yet): only its consumptions go on `conn` */

  /* flow control: the server's credit is window - held at RESUME, plus what we grant */
  uint64_t epoch;              /* bumps at each RESUME */
  uint64_t grant;              /* credit owed, sent once per iteration */
  uint64_t credit_left;        /* events the server may still send on this connection: RESUME's
                                  window plus the credit sent, less the events received */
  hd__insert_rec_t *ins;
  size_t ins_cap, ins_head, ins_len;
  hd__store_event_t *scratch_ev; /* one EVENTS message's events, pointing into its body */
  size_t scratch_ev_cap;
  uint8_t *scratch_notice;     /* one NOTICES message's notices, encoded as the store keeps them */
  size_t scratch_notice_cap;
  uint64_t *scratch_seq;       /* one DONE message's seqs */
  size_t scratch_seq_cap;
  hd__entry_t *scratch_entry;  /* CONSUMED entries being encoded */
  size_t scratch_entry_cap;

  /* the handler (client_handler.c) */
  hd__queue_t ready;           /* hd_event_t read from the store, not handed out yet */
  int64_t fetched_store;       /* the last (store, seq) read from the store: the cursor of */
  uint64_t fetched;            /*   list_unhandled, which orders by store, then seq */
  int more;                    /* the store may hold unhandled events after the cursor */
  int64_t fetched_orphan;      /* the same for the orphans (handed out before the others) */
  int orphans_more;
  hd__queue_t marking;         /* hd_event_t completed ok, their consumption not committed yet */
  hd_event_t *current;         /* handed out (or its call being counted), not completed */
  /* Attempts (docs/QUEUES.md "Poison events"): the receive commits an event's first call, so the
   * first call of an event this process received and never handed out needs no write; any other
   * call is counted (mark_attempt) before it. Events of recv_store above recv_floor (its
   * high-water mark when it became the connection's store) were received by this process; the
   * handler goes in (store, seq) order, so those after (called_store, called_seq) were never
   * handed out. A mistake can only count a call too many, never one too few. */
  int64_t recv_store;
  uint64_t recv_floor;
  int64_t called_store;
  uint64_t called_seq;
  uv_timer_t timer;            /* the pause, or a failed event's backoff */
  int timer_armed;
  uint32_t backoff_ms;
  hd__deferred_t next_d;       /* hand out the next event after this iteration */
  /* completed events whose consumption could not be recorded (a full disk): kept, recorded
   * again after a backoff until it works; no event is handed out meanwhile */
  hd__queue_t unrecorded;      /* hd_event_t, waiting for the next try */
  size_t recording;            /* retried records submitted, not completed */
  int records_stuck;           /* a record failed and not all are recorded since */
  uv_timer_t record_timer;
  int record_timer_armed;
  uint32_t record_backoff_ms;
  uint64_t record_failures;    /* failed attempts in all (logged; not in the public stats) */

  /* consumption reports: committed consumed events to put in CONSUMED, and failed ones (dead)
   * to put in FAILED (client_report.c) */
  hd__queue_t reports;         /* hd_event_t */
  hd__deferred_t flush_d;
  hd__entry_t *scratch_failed; /* FAILED entries being encoded */
  size_t scratch_failed_cap;
  int failed_kept_warned;      /* this connection's server takes no FAILED: told once */

  uint64_t received, handled, failed, confirmed, notices, dead;
  /* epochs (client_report.c): EPOCHs applied, those that cut what the client had seen, and what
   * they cost */
  uint64_t epoch_resumes, rollbacks, repeated, orphaned, dropped;

  int closing;
  int pending_closes;          /* the two timers and the store */
  void (*closed_cb)(void *arg);
  void *closed_arg;
};

/* Opens the store (create time, before the loop runs or on the caller loop's thread). HD_EBUSY:
 * the folder is in use. On error nothing is left behind. */
int hd__client_events_create(hd__client_events_t **out, hd__runtime_t *rt,
                             const hd_client_options_t *opts);
/* Starts handing out what the store already holds (no server needed). */
void hd__client_events_start(hd__client_events_t *ev);
/* The connection opened (c->welcome holds what the server said). */
void hd__client_events_on_open(hd__client_events_t *ev, hd__conn_t *c);
void hd__client_events_on_message(hd__client_events_t *ev, hd__conn_t *c, uint8_t type,
                                  const uint8_t *body, size_t len);
void hd__client_events_on_close(hd__client_events_t *ev, hd__conn_t *c);
/* Stops the handler, commits the queued writes, closes the store; then `cb(arg)` and frees
 * `ev`. Before the loop runs (a failed create) the loop must be run for it to finish. */
void hd__client_events_close(hd__client_events_t *ev, void (*cb)(void *arg), void *arg);
int hd__client_events_stats(hd__client_events_t *ev, hd_client_stats_t *out);
int hd__client_events_rollback_stats(hd__client_events_t *ev, hd_rollback_stats_t *out);
/* The server stores other than the current one that events are held for: up to `cap` of them
 * into the arrays (each optional), and the totals over all; returns how many stores (may exceed
 * cap) or an HD_E* code. hd_client_held_stores and the log of a change of store. */
typedef struct hd__held_list {
  uint8_t *ids;                /* cap x HD_STORE_ID_BYTES */
  uint64_t *unhandled, *consumed;
  size_t cap, n;
  uint64_t total_unhandled, total_consumed;
} hd__held_list_t;
int hd__client_events_held_stores(hd__client_events_t *ev, hd__held_list_t *l);
/* hd_client_purge_store on the loop (hyperdown.h). */
int hd__client_events_purge_store(hd__client_events_t *ev, const uint8_t id[HD_STORE_ID_BYTES],
                                  hd_done_cb cb, void *cb_data);

/* Shared between the files above. */
void hd__client_handler_arrived(hd__client_events_t *ev);   /* new events are in the store */
/* The store applied an epoch change, another server store became the current one or one was
 * purged: read everything unhandled again (orphans first). */
void hd__client_handler_rewound(hd__client_events_t *ev);
void hd__client_handler_stop(hd__client_events_t *ev);
void hd__client_handler_init(hd__client_events_t *ev);
void hd__client_handler_start(hd__client_events_t *ev);    /* hand out what the store holds */
/* A completion reached the loop while the client is open (event.c). */
void hd__client_handler_completed(hd__client_events_t *ev, hd_event_t *e);
void hd__client_report_init(hd__client_events_t *ev);
void hd__client_report_open(hd__client_events_t *ev, hd__conn_t *c);
void hd__client_report_consumed(hd__client_events_t *ev, hd_event_t *e); /* committed */
void hd__client_report_flush_later(hd__client_events_t *ev);
void hd__client_report_drop(hd__client_events_t *ev);
/* EPOCH from the server (docs/PROTOCOL.md "Epochs"): 0, or the code to close the connection with. */
int hd__client_report_epoch(hd__client_events_t *ev, const uint8_t *body, size_t len);

#endif
