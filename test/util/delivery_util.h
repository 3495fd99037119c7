/* Helpers shared by the event-delivery system tests (test_delivery, test_restart, test_crash,
 * test_many_clients, test_bad_input). They use the public header only: what they check is what a
 * C caller of libhyperdown can see. Compiled once (delivery_util.c) into the test helper library.
 *
 *  - a log capture shared by every handle, dumped on a failed DCHECK for the evidence;
 *  - a recording client handler (du_client_t) and a recording server consumption callback
 *    (du_server_t) that count every call per (user, seq), check payloads and data, and complete
 *    at once, later (held by the test), from another thread, or with failure on demand;
 *  - a world: one recording server and up to DU_MAX_CLIENTS recording clients, each its user.
 * Waits, folders, keys and child processes are testutil.h's.
 *
 * Payload convention: "user<U>#<seq>" (padded on demand); the client completes with the data
 * "ack user<U>#<seq>"; both sides check what they get against that. A test adds a user's events
 * from one thread, so the i-th add of a fresh user gets sequence number i. */
#ifndef HD_DELIVERY_UTIL_H
#define HD_DELIVERY_UTIL_H

#include <hyperdown.h>

#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define DU_TOPIC "topic" /* the original example's folderName */

/* ---- log capture: every handle logs here; DCHECK dumps the tail when it fails ---- */

/* Appends "<ms> <who> <text>" to the capture (and to stderr with HD_TEST_VERBOSE). */
void du_log_line(const char *who, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The log callback of every handle: its user_data starts with its name (char[32]). */
void du_log_cb(void *ud, hd_log_level_t level, const char *msg);
/* Prints the last `max` bytes of the captured log to stderr (the evidence of a failure). */
void du_log_dump(size_t max);
/* How many captured lines (of the handle named `who`; NULL: any) contain `needle`. */
int du_log_count(const char *who, const char *needle);

/* CHECK that also dumps the log tail when it fails. */
#define DCHECK(cond)                                                                              \
  do {                                                                                            \
    if (!(cond)) {                                                                                \
      du_log_dump(12000);                                                                         \
      CHECK(cond);                                                                                \
    }                                                                                             \
  } while (0)

/* ---- payloads ---- */

/* "user<U>#<seq>", then `pad` bytes of a pattern (total returned; buf must hold it). */
size_t du_payload(uint8_t *buf, size_t cap, int user, uint64_t seq, size_t pad);
/* 1 if `p` is du_payload(user, seq, any pad). */
int du_payload_ok(const uint8_t *p, size_t n, int user, uint64_t seq);
/* The client's completion data for (user, seq): "ack user<U>#<seq>". */
size_t du_ack(char *buf, size_t cap, int user, uint64_t seq);
/* Adds `n` events for `user` (payloads du_payload(tag, first..)) and waits for each; returns 0 or
 * the first error. `first` is the seq the first one must get (0: do not check). */
int du_add_events(hd_server_t *s, const uint8_t user[32], int tag, uint64_t first, int n,
                  size_t pad);

/* ---- the recording client ---- */

enum {
  DU_OK = 0,     /* complete ok inside the handler */
  DU_HOLD = 1,   /* keep the event; the test completes it (du_client_release) */
  DU_THREAD = 2, /* a worker thread completes it ok a moment later */
};

#define DU_MAX_HELD 256
#define DU_QCAP 4096

/* What a recorder holds for the test, oldest first: events with their seq (client), batches
 * with their user index (server). Under the recorder's lock. */
typedef struct du_held {
  void *item[DU_MAX_HELD];
  uint64_t tag[DU_MAX_HELD];
  int n;
} du_held_t;

typedef struct du_client {
  char name[32];            /* first: the log callback prints it */
  int tag;                  /* the user number in payloads */
  hd_keypair_t kp;
  uint8_t server_pk[32];
  char addr[64];
  char *dir;                /* data_dir (owned) */
  hd_client_t *h;           /* the open handle or NULL */
  uint32_t window;          /* option passed through (0 = default) */
  int sync_normal;          /* option passed through */
  int repeated;             /* during `check`: hd_event_possibly_repeated of the event */
  /* a payload checker other than du_payload_ok (returns 1 if good) */
  int (*check)(int tag, uint64_t seq, const uint8_t *p, size_t n);

  pthread_mutex_t mu;
  pthread_cond_t cv;
  int mode;
  uint64_t fail_seq;        /* the first `fail_times` calls for this seq complete with failure */
  int fail_times, failed_so_far;
  uint64_t reject_seq;      /* every call for this seq rejects the event (hd_event_reject) */
  uint64_t cap;             /* seqs 1..cap-1 are recorded */
  int *calls;               /* handler calls per seq */
  int *oks;                 /* ok completions per seq */
  uint64_t last_call, last_ok;
  long total_calls, total_ok, total_failed;
  int order_errors;         /* a call for a lower seq than the previous call */
  int payload_errors;       /* wrong payload for the seq (or another user's event) */
  int rehandled;            /* a call for a seq already completed ok */
  int out_of_range;
  int complete_errors;      /* hd_event_complete returned an error */
  char first_error[256];    /* the first error seen, as evidence */
  du_held_t held;            /* DU_HOLD: events held (tag: seq) */
  /* DU_THREAD */
  pthread_t worker;
  int worker_on, worker_stop;
  hd_event_t *q[DU_QCAP];
  uint64_t q_seq[DU_QCAP];
  size_t q_head, q_len;

  atomic_int connected, disconnected;
  atomic_int last_status;
} du_client_t;

/* The handler: records, checks, then completes as c->mode says. */
void du_on_event(void *ud, hd_event_t *ev);
/* `cap`: the highest seq recorded + 1. `dir`: taken over (freed by du_client_free). */
void du_client_init(du_client_t *c, const char *name, int tag, const hd_keypair_t *kp,
                    const uint8_t server_pk[32], char *dir, uint64_t cap);
void du_client_set_addr(du_client_t *c, int port);
/* The options du_client_start creates the handle with. */
void du_client_fill_options(du_client_t *c, hd_client_options_t *o);
/* Creates the handle (the worker thread too in DU_THREAD mode). 0 or the create's error. */
int du_client_start(du_client_t *c);
/* Completes every held event (oldest first) with `ok`. Returns how many. */
int du_client_release(du_client_t *c, int ok);
int du_client_nheld(du_client_t *c);
/* Closes the handle (if open) and waits. Events still held are then completed, which after the
 * close only frees them (docs/threading.md "Completions"): they are handed out again next time. */
int du_client_stop(du_client_t *c);
/* Stops, frees the records, removes and frees the folder. */
void du_client_free(du_client_t *c);

/* Reads of the records under the lock. */
int du_client_calls(du_client_t *c, uint64_t seq);
int du_client_oks(du_client_t *c, uint64_t seq);
long du_client_total_ok(du_client_t *c);
long du_client_total_calls(du_client_t *c);
/* 1 if every seq in [from, to] was completed ok exactly once. */
int du_client_all_ok_once(du_client_t *c, uint64_t from, uint64_t to);
/* 1 if every seq in [from, to] was completed ok at least once. */
int du_client_all_ok(du_client_t *c, uint64_t from, uint64_t to);
/* 0 errors of any kind recorded (prints the first one otherwise). */
int du_client_clean(du_client_t *c);
int du_client_stats(du_client_t *c, hd_client_stats_t *st);
/* 1 when the client's store holds nothing: no unhandled, no consumed-unconfirmed event. */
int du_client_store_empty(du_client_t *c);
int du_client_is_connected(du_client_t *c);

/* ---- the recording server ---- */

enum {
  DU_SRV_OK = 0,        /* complete every event ok inside on_consumed, one by one */
  DU_SRV_HOLD = 1,      /* keep the batches; the test completes them (du_server_release) */
  DU_SRV_FAIL_ONCE = 2, /* the first report of (fail_tag, fail_seq) completes with failure */
};

#define DU_MAX_USERS 8

typedef struct du_server {
  char name[32];            /* first: the log callback prints it */
  hd_keypair_t kp;
  char *dir;                /* data_dir (owned) */
  int port;                 /* 0 until the first start; restarts reuse it */
  hd_server_t *h;
  int sync_normal;
  int (*check)(int tag, uint64_t seq, const uint8_t *p, size_t n);

  pthread_mutex_t mu;
  int mode;
  int fail_tag;
  uint64_t fail_seq;
  int fail_done;
  int nusers;
  uint8_t keys[DU_MAX_USERS][32];
  int tags[DU_MAX_USERS];
  uint64_t cap;
  int *calls[DU_MAX_USERS]; /* on_consumed reports per (user, seq) */
  int *oks[DU_MAX_USERS];   /* completed ok per (user, seq) */
  long total_calls, batches;
  int unknown_user, data_errors, payload_errors, after_ok, order_errors, complete_errors;
  char first_error[256];
  du_held_t held;            /* DU_SRV_HOLD: batches held (tag: user index) */
  atomic_int peers_connected, peers_disconnected;
} du_server_t;

/* `cap`: the highest seq recorded + 1. `dir`: taken over (freed by du_server_free). */
void du_server_init(du_server_t *s, const char *name, const hd_keypair_t *kp, char *dir,
                    uint64_t cap);
/* Registers a user whose reports are recorded; tag = its number in payloads. */
void du_server_add_user(du_server_t *s, const uint8_t key[32], int tag);
/* The options du_server_start creates the handle with (`listen` holds the address). */
void du_server_fill_options(du_server_t *s, hd_server_options_t *o, char *listen,
                            size_t listen_size);
/* Creates the server: on port 0 the first time, then again on the port the OS gave it (so that
 * clients redial the same address); retries a few times if that port is briefly busy. */
int du_server_start(du_server_t *s);
/* Takes the oldest held batch out of the server's hands (NULL: none); *user_index its user. */
hd_consumed_t *du_server_take(du_server_t *s, int *user_index);
/* Records that event `i` of batch `b` of user `user_index` is about to be completed ok. */
void du_server_record_ok(du_server_t *s, int user_index, hd_consumed_t *b, size_t i);
/* Completes every held batch with `ok`. Returns how many batches. */
int du_server_release(du_server_t *s, int ok);
int du_server_nheld(du_server_t *s);
/* Closes the handle (if open) and waits. Batches still held are then completed, which after the
 * close only frees them (their events stay stored; the client reports them again). */
int du_server_stop(du_server_t *s);
/* Stops, frees the records, removes and frees the folder. */
void du_server_free(du_server_t *s);

int du_server_calls(du_server_t *s, int user_index, uint64_t seq);
long du_server_total_calls(du_server_t *s);
/* 1 if every seq in [from, to] of user `ui` was reported exactly `times` times. */
int du_server_calls_are(du_server_t *s, int ui, uint64_t from, uint64_t to, int times);
/* 0 errors of any kind recorded (prints the first one otherwise). */
int du_server_clean(du_server_t *s);
int du_server_stats(du_server_t *s, hd_server_stats_t *st);
/* The user's pending count, UINT64_MAX when the server is closed or the call fails. */
uint64_t du_server_pending(du_server_t *s, const uint8_t user[32]);
uint64_t du_server_pending_total(du_server_t *s);

/* ---- a world: one server and its users' clients ---- */

#define DU_MAX_CLIENTS 4

typedef struct du_world {
  du_server_t s;
  du_client_t c[DU_MAX_CLIENTS]; /* c[i]: user i, tag i + 1 */
  int nc;                        /* clients initialised */
  int s_on;                      /* server initialised */
} du_world_t;

enum { DU_START_SERVER = 1, DU_START_CLIENTS = 2 };

/* A recording server and `nusers` users with fresh keys, each registered with the server and
 * given its recording client (folders /tmp/hd-<tag>-...; seqs below `cap` recorded). `start`:
 * DU_START_SERVER and DU_START_CLIENTS (which needs the server). 0 or -1. */
int du_world_init(du_world_t *w, const char *tag, int nusers, uint64_t cap, int start);
/* Starts the server and points every client at its address. 0 or the create's error. */
int du_world_start_server(du_world_t *w);
/* Closes the clients, then the server; frees everything; zeroes the world. */
void du_world_free(du_world_t *w);

/* Defines the test `name`: body(&world, ...) on a zeroed world, freed afterwards whatever failed.
 * A CHECK that fails returns from `body`, so the freeing still runs. */
#define DU_WORLD_TEST(name, body, ...)                                                            \
  static void name(void) {                                                                        \
    static du_world_t name##_w;                                                                   \
    memset(&name##_w, 0, sizeof name##_w);                                                        \
    body(&name##_w, ##__VA_ARGS__);                                                               \
    du_world_free(&name##_w);                                                                     \
  }

/* Waits until user `ui`'s client `c` completed 1..n ok exactly once each (n in all), the store
 * of the server has nothing pending and the client's is empty; then, 100 ms later, checks that
 * the server reported each of 1..n between c_min and c_max times and that neither recorder saw
 * an error. Each wait is bounded by `ms` (scaled). 1 if all held; otherwise 0, after printing
 * what did not and the log tail. */
int du_all_done(du_server_t *s, int ui, du_client_t *c, uint64_t n, int c_min, int c_max, int ms);

#endif
