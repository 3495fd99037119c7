/* Adds with keys and fan-outs on the fault VFS (fault_vfs.h), for the power-cut and I/O-fault
 * system tests: a server (no client) whose store is a domain of the VFS, three kinds of add per
 * step (a dedup add over five keys for user A, a collapse add of one key for user B, a fan-out to
 * KU_FAN users, and an hd_server_add_events call of three items: E0, E1, E0) and a ledger of
 * their outcomes, and the checks after a cut:
 *
 *  - always: the store is consistent: users.pending, bytes and dedup_keys match the rows, every
 *    shared payload's refs match the events that name it, and a fan-out is held by all of its
 *    users or by none (its transaction is one), and so is an add_events call (E0 holds twice what
 *    E1 holds, its two items of each call next to each other in item order);
 *  - what must be durable (FULL: every acknowledged add; NORMAL: those with a WAL sync after
 *    their acknowledgement): a repeat of a dedup key is answered with the first add's number, B
 *    holds one event (the latest collapse, or one after it whose acknowledgement was not seen),
 *    each fan-out user holds at least the acknowledged fan-outs, E1 at least the acknowledged
 *    add_events calls. */
#ifndef HD_KEYED_UTIL_H
#define HD_KEYED_UTIL_H

#include "delivery_util.h"
#include "fault_vfs.h"

#define KU_FAN 6
#define KU_MAX 64
#define KU_KEYS 5

typedef struct ku_add {
  int rc;            /* 0: acknowledged; else the call's error */
  uint64_t seq;
  uint32_t flags;
  long syncs;        /* the store's WAL syncs when the acknowledgement was seen */
} ku_add_t;

typedef struct ku {
  char *dir;         /* the server's data_dir, a domain of the VFS */
  int d, normal;
  hd_keypair_t kp, a, b, f[KU_FAN], e[2];
  hd_server_t *h;
  ku_add_t dedup[KU_MAX], collapse[KU_MAX], fan[KU_MAX], many[KU_MAX];
  int n;             /* steps done */
  long syncs_at_cut; /* the WAL syncs when the cut came (NORMAL: what came after is lost) */
} ku_t;

/* Installs the VFS and makes the folder and keys; the server is not started. 0 or -1. */
int ku_init(ku_t *k, const char *tag, int normal);
int ku_start(ku_t *k);
void ku_stop(ku_t *k);
/* One step (its four add calls). 0, or the first error that is not HD_EIO or HD_ENOSPC. */
int ku_step(ku_t *k);
/* A power cut now: the server closes, its files are reverted as `mode` keeps them, it starts
 * again. 0 or the start's error. */
int ku_cut(ku_t *k, int mode, uint64_t seed);
/* The checks above (the server running); the store's consistency is read after a stop. 1 if all
 * held, else 0 after printing why. */
int ku_verify(ku_t *k);
void ku_free(ku_t *k);

#endif
