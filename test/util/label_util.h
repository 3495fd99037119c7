/* Recorders for the system tests where a sequence number does not name one event: a store that
 * gives numbers again after a rollback (test_rollback), two server stores whose numbers collide
 * (test_store_replaced). delivery_util's recorders take (user, seq) for an event's identity,
 * which those cases break; these tell events apart by their payload, "<label>#<seq>", with one
 * of two labels ("old"/"new", "A"/"B"). One recording server and one recording client, public
 * API only; the test owns the world around them (folders, restarts). Compiled once
 * (label_util.c) into the test helper library. */
#ifndef HD_LABEL_UTIL_H
#define HD_LABEL_UTIL_H

#include "delivery_util.h"

#define LU_MAXN 128 /* seqs 1..LU_MAXN-1 are recorded */

typedef struct lu_cli lu_cli_t;

typedef struct lu_srv {
  char name[32]; /* first: the log callback prints it */
  const char *const *labels;  /* the two labels */
  hd_keypair_t kp;
  char *dir;
  int port, sync_normal;
  int label;                  /* 0 or 1: reports of the other label's events are `bad`; -1: any */
  hd_server_t *h;
  pthread_mutex_t mu;
  int hold;                   /* keep the batches (freed unconfirmed when it stops) */
  hd_consumed_t *held[256];
  int nheld;
  int reports[2][LU_MAXN];    /* on_consumed calls per event since the server started */
  int premature;              /* a report of an event the client has not handled */
  int bad;                    /* data not "ack <payload>", an unreadable event, another label's */
  lu_cli_t *client;
} lu_srv_t;

struct lu_cli {
  char name[32];
  const char *const *labels;
  hd_keypair_t kp;
  char *dir;
  hd_client_t *h;
  pthread_mutex_t mu;
  uint64_t hold_from;         /* events with seq >= this are kept, not completed (0: none) */
  hd_event_t *held[64];
  int nheld;
  int ok[2][LU_MAXN];         /* completed ok, per event */
  int marked[2][LU_MAXN];     /* of those, handed out marked possibly repeated */
  int order[256];             /* label * LU_MAXN + seq, in the order completed */
  int norder;
  int unmarked_repeats;       /* an event completed ok again without the mark */
  int bad;                    /* unreadable payload, or seq and payload disagree */
};

/* A server and its one client, in a fresh folder <tmp>/server and <tmp>/client. */
typedef struct lu_world {
  lu_srv_t s;
  lu_cli_t c;
  char *tmp;                  /* /tmp/hd-<tag>-XXXXXX, removed by lu_world_free */
} lu_world_t;

/* Zeroes `w`; names, labels, locks, folders (not created), fresh keys. Nothing started. 0 or -1. */
int lu_world_init(lu_world_t *w, const char *tag, const char *const labels[2]);
/* Stops both, removes the folder, frees. */
void lu_world_free(lu_world_t *w);
/* Creates the server on s->dir, on port 0 the first time, then on the same port. 0 or the
 * create's error. */
int lu_srv_start(lu_srv_t *s);
/* Closes the server; the batches it held are then completed, which only frees them. */
int lu_srv_stop(lu_srv_t *s);
/* Creates the client on c->dir, dialing the server's port. */
int lu_cli_start(lu_cli_t *c, const lu_srv_t *s);
/* Closes the client; what its handler kept is then completed, which only frees it. */
int lu_cli_stop(lu_cli_t *c);
/* Stops holding; what the handler kept is handled now. */
void lu_cli_release(lu_cli_t *c);
int lu_held_count(lu_cli_t *c);

/* Adds label#first..label#last for the client's user; each must get its number as its seq. */
int lu_add(lu_srv_t *s, const lu_cli_t *c, int label, int first, int last);
int lu_ok_count(lu_cli_t *c, int label, int n);
/* 1 once label#first..label#last were each completed ok at least `times` times. */
int lu_handled(lu_cli_t *c, int label, int first, int last, int times);
int lu_reports(lu_srv_t *s, int label, int n);
uint64_t lu_pending(lu_srv_t *s);     /* UINT64_MAX if closed or failed */
uint64_t lu_high_water(lu_cli_t *c);  /* UINT64_MAX if closed or failed */
/* 1 if the client holds nothing (unhandled or consumed), for any server store. */
int lu_client_store_empty(lu_cli_t *c);

#endif
