/* What the files of the server share (not an interface for anyone else): the handle's struct,
 * the per-user record, the per-connection session, and the calls between
 *   server.c           the handle: listener, connections, create, close
 *   server_session.c   sessions: RESUME, CREDIT, paged pumping of pending events, backpressure
 *   server_consumed.c  CONSUMED reports, hd_consumed_t batches, grouped deletes, DONE
 *   server_api.c       the public event calls: add_event, update_pause, stats and counts
 * Everything here runs on the loop thread unless a comment says otherwise. */
#ifndef HD_SERVER_IMPL_H
#define HD_SERVER_IMPL_H

#include "peers.h"
#include "key_cache.h"
#include "server.h"
#include "store.h"

#include <stdatomic.h>

/* Stop filling a connection while this much is queued and unwritten; resume below half. */
#define HD__SRV_HIGH_WATER (1024u * 1024u)
#define HD__SRV_LOW_WATER (HD__SRV_HIGH_WATER / 2)
#define HD__SRV_DEFAULT_PAGE 4096u
/* Pages one pump may read before it yields to the rest of the loop (it goes on next turn). */
#define HD__SRV_PAGES_PER_TURN 8
/* A payload must leave room for the EVENTS framing within the peer's message limit. */
#define HD__SRV_PAYLOAD_SLACK 64

typedef struct hd__session hd__session_t;

/* What outlives the handle: consumed batches the application has not completed when the server
 * finished point here. `alive` (under mu) says whether `rt` may still receive tasks. */
typedef struct hd__srv_shared {
  uv_mutex_t mu;
  atomic_int refs; /* the server + each live batch */
  int alive;
  hd__runtime_t *rt;
} hd__srv_shared_t;

void hd__srv_shared_unref(hd__srv_shared_t *sh);

/* One user the server is busy with: connected, or with reported events in flight. Freed when
 * neither (hd__srv_user_maybe_free). */
typedef struct hd__srv_user {
  uint8_t pk[HD_PUBLICKEY_BYTES];
  hd__session_t *session;       /* the current connection's session, or NULL */
  uint64_t *inflight;           /* sorted seqs in a batch or in a delete not committed yet */
  size_t n_inflight, cap_inflight;
  uint64_t *del;                /* completed ok, waiting for this iteration's grouped delete */
  size_t n_del, cap_del;
  struct hd__srv_user *del_next;
  int del_queued;
} hd__srv_user_t;

struct hd__session {
  hd_server_t *s;
  hd__conn_t *conn;
  hd__srv_user_t *user;
  int resumed;
  uint64_t credit;       /* events the client still accepts */
  uint64_t sent_upto;    /* the highest seq sent on this connection */
  hd__deferred_t pump;   /* coalesced: one pump per session per loop iteration */
  int blocked;           /* stopped by the write backlog; the drain hook restarts it */
  int catching_up;       /* since RESUME, until a page comes back short */
  uint64_t catchup_sent;
  uint64_t catchup_start_ms;
};

struct hd_server {
  hd__runtime_t *rt;
  hd__conn_config_t cfg;
  uv_tcp_t listener;
  int port;
  char listen_text[HD__ADDR_STRLEN];

  void *user_data;
  hd_destroy_cb destroy;
  hd_peer_cb on_peer_connected;
  hd_peer_closed_cb on_peer_disconnected;
  hd_consumed_cb on_consumed;

  hd__conn_t *conns;  /* every live connection, handshaking or open */
  size_t nconns;
  hd__peers_t peers;  /* authenticated peers: public key -> connection */
  hd__peers_t users;  /* public key -> hd__srv_user_t */

  hd__server_message_hook hook; /* guarded by rt->mu: set from any thread */
  void *hook_ud;

  hd__server_store_t *store;
  hd__srv_shared_t *shared;
  hd__key_cache_t key_cache; /* users whose key passed the check (add_event, any thread) */
  uint32_t page_events;
  size_t max_payload;

  /* counters (loop thread; read through the blocking calls) */
  uint64_t n_added, n_delivered, n_consumed, n_confirmed;

  /* CONSUMED scratch, reused: grows to the largest report and stays */
  uint64_t *scr_seqs;      /* 2 x scr_cap: candidates, then the ones not held any more */
  hd__entry_t *scr_entries; /* the candidates' entries (data points into the message) */
  size_t *scr_plen;         /* the candidates' payload sizes; SIZE_MAX: not held */
  size_t scr_cap;

  hd__srv_user_t *del_head;      /* users with ok completions to delete at the iteration's end */
  hd__deferred_t del_flush;
  struct hd_consumed *batches;   /* live batches (handed to the application) */

  int closing;
  int listener_open;
  int store_closing;
  hd__closer_t closer;
};

/* server.c */
hd__srv_user_t *hd__srv_user_get(hd_server_t *s, const uint8_t pk[HD_PUBLICKEY_BYTES], int create);
void hd__srv_user_maybe_free(hd_server_t *s, hd__srv_user_t *u);
/* 1 if the handle can no longer take work (any thread). */
int hd__srv_closed(hd_server_t *s);

/* server_session.c */
void hd__session_open(hd_server_t *s, hd__conn_t *c, const uint8_t pk[HD_PUBLICKEY_BYTES]);
void hd__session_close(hd_server_t *s, hd__conn_t *c);
void hd__session_message(hd_server_t *s, hd__conn_t *c, uint8_t type, const uint8_t *body,
                         size_t len);
void hd__session_drained(hd__conn_t *c);
/* An event of `pk` was committed: wake its session's pump if it is connected. */
void hd__session_wake(hd_server_t *s, const uint8_t pk[HD_PUBLICKEY_BYTES]);

/* server_consumed.c */
void hd__consumed_report(hd_server_t *s, hd__session_t *ss, const uint8_t *body, size_t len);
/* Before the store closes: submit the deletes gathered this iteration. */
void hd__consumed_flush(hd_server_t *s);
/* At the very end: batches still with the application only wait to be freed. */
void hd__consumed_orphan_all(hd_server_t *s);
/* Sends DONE for `seqs` on the user's connection, if any (split under the peer's limit). */
void hd__send_done(hd_server_t *s, hd__srv_user_t *u, const uint64_t *seqs, size_t n);

#endif
