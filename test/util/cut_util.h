/* A delivery world on the fault VFS (fault_vfs.h), for the power-cut and I/O-fault system tests
 * (test_power_cut, test_io_fault): one server and one user's client, each store folder a domain
 * of the VFS, and a ledger of every add the test attempted. Payloads are "att<i>" (the i-th
 * attempt), so an event is followed by what was added, not by its sequence number, which a store
 * that rolled back gives again. The ledger records, per attempt: its add's outcome, the server's
 * WAL syncs when its acknowledgement was seen, how often the handler ran for it (and how often
 * marked possibly repeated), and the client's WAL syncs when the server first saw it reported
 * consumed. From that, after a cut of either store, cw_verify says what may have been lost or run
 * again and checks that nothing else was. */
#ifndef HD_CUT_UTIL_H
#define HD_CUT_UTIL_H

#include "delivery_util.h"
#include "fault_vfs.h"

#define CW_MAX_ATT 256

enum { CW_SERVER = 0, CW_CLIENT = 1 };

typedef struct cw_att {
  int tried;
  int add_rc;          /* the add's result (0: acknowledged) */
  uint64_t seq;        /* acknowledged: its number */
  long srv_wal_syncs;  /* the server's WAL syncs when the acknowledgement was seen */
  int may_be_lost;     /* NORMAL: acknowledged and no server WAL sync after it before a cut */
  int handled;         /* handler calls */
  int marked;          /* of which marked possibly repeated */
  int reported;        /* on_consumed calls */
  long cli_wal_syncs;  /* the client's WAL syncs at its first report */
  int consumed_durably; /* at a client cut: its consumption was durable: never handled again */
  int handled_at_cut;
} cw_att_t;

/* The bystander: a second user with no client, whose events an operator adds, deletes
 * (hd_server_delete_events / hd_server_delete_user), fails (the dead letters: the store's
 * fail_events, the write a client's FAILED makes), requeues and deletes as dead letters, while
 * the store may be cut. Its payloads are "by<i>" (the i-th add). Each event's history is kept as
 * the set of states it may be in after each operation (a failed operation may or may not have
 * happened), with the server's WAL syncs at its acknowledgement: after a cut, the event must be
 * in a state of the last operation that was durable or of one after it. */
#define CW_MAX_BY 128
#define CW_BY_HIST 16

/* Where a bystander event is (bits of a state set). */
enum { CW_BY_NONE = 1, CW_BY_HELD = 2, CW_BY_DEAD = 4 };

typedef struct cw_by {
  int add_rc;          /* the add's result (0: acknowledged) */
  uint64_t seq;        /* its number now (a requeue gives a new one; 0: not known) */
  int n_hist;
  unsigned char may[CW_BY_HIST];   /* the states it may be in after each operation */
  unsigned char acked[CW_BY_HIST]; /* the operation was acknowledged */
  long syncs[CW_BY_HIST];          /* the server's WAL syncs at its acknowledgement */
  int expiring;                    /* added with a time to live of 1 ms: the sweep may delete it
                                      at any time */
} cw_by_t;

typedef struct cw_figures {
  long cuts, cuts_server, cuts_client;
  long writes_dropped, writes_torn, files_removed;
  long adds_acked, adds_failed, events_verified, allowed_lost, rehandled, epochs_changed;
  long seqs_again; /* acknowledged with a number acknowledged before the cut */
  long by_deletes_acked, by_deleted_verified, by_kept_verified;
  long by_fails_acked, by_requeues_acked, by_dead_verified;
  long by_expired_gone; /* expiring adds not held any more (expired, or deleted) */
} cw_figures_t;

typedef struct cw {
  du_world_t w;
  int d[2];            /* the VFS domains of the server's and the client's folders */
  int normal;          /* both stores under synchronous=NORMAL */
  pthread_mutex_t mu;  /* the ledger: the handler and on_consumed write it */
  cw_att_t att[CW_MAX_ATT];
  int n_att;
  int client_cuts;     /* cuts of the client store in this world */
  int server_cuts;
  int bad_payloads;
  hd_keypair_t by_kp;  /* the bystander */
  cw_by_t by[CW_MAX_BY];
  int n_by;
  long by_cut_syncs;   /* NORMAL, after a cut of the server's store: its WAL syncs at the cut
                          (an operation acknowledged with as many may be lost); else -1 */
} cw_t;

/* Installs the VFS, makes the world (not started) with both stores under `normal`. 0 or -1. */
int cw_init(cw_t *cw, const char *tag, int normal);
void cw_free(cw_t *cw);
/* Starts the server and the client and waits until it is connected. 0 or an error. */
int cw_start_all(cw_t *cw);
int cw_stop(cw_t *cw, int side);
int cw_start(cw_t *cw, int side);
/* Adds attempt number cw->n_att and records it; returns the add's result. */
int cw_add(cw_t *cw);
/* The operator's step on the bystander, by `r`: 0-5 an add; 6-8 a delete of its oldest held
 * event; 9 of all its events; 10 its oldest held event reported failed (a dead letter); 11 every
 * dead letter requeued; 12 its oldest dead letter deleted; 13 an add that expires at once, so that
 * the server's expiry sweep (an expire op) is in the scenario. Recorded; returns the call's
 * result. Before a cut only: after one, a NORMAL store may give a lost number again, and an
 * operation by number would name another event. */
int cw_by_step(cw_t *cw, unsigned r);

/* 1 once every acknowledged attempt that may not be lost was handled, the server holds nothing
 * and the client's store is empty. */
int cw_settled(cw_t *cw);
/* The power cut of `side`'s store (now, if it did not happen yet), as a disk in `mode` keeps it:
 * the side is closed, its files reverted, reopened. Before that, records what the cut may lose
 * (NORMAL: acknowledged adds with no WAL sync after them) and which consumptions must never run
 * again. Adds the revert's figures to `fig`. 0, or an error (the reopen's). */
int cw_cut(cw_t *cw, int side, int mode, uint64_t seed, cw_figures_t *fig);
/* After cw_settled: every acknowledged attempt not allowed lost was handled; handled again only
 * as allowed (after a server cut: none under FULL, only marked possibly repeated under NORMAL;
 * after a client cut: only events whose consumption was not durable at the cut, i.e. not
 * reported under FULL, not reported and then covered by a WAL sync under NORMAL); payloads and
 * consumer data intact; the bystander's store holds every add acknowledged and not deleted, and
 * no event whose delete was acknowledged (NORMAL: unless a cut may have lost that add or that
 * delete). Adds to `fig`. 1 if all held (else prints why). */
int cw_verify(cw_t *cw, cw_figures_t *fig);

/* A count from the environment variable `name` (a positive integer), else `normal`, or `slow`
 * under valgrind. */
unsigned cw_env_count(const char *name, unsigned normal, unsigned slow);
/* HD_SEED, else `fallback`. */
uint64_t cw_seed(uint64_t fallback);

#endif
