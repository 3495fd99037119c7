/* A client's way through its server addresses (docs/OPERATIONS.md, "Addresses"): the list as
 * given, in turn; a name is resolved when its turn comes, without blocking the loop (libuv's
 * getaddrinfo runs on libuv's pool), and every address it resolves to is tried in turn. A
 * numeric address never meets the resolver. Loop thread only, except init. */
#ifndef HD_DIALER_H
#define HD_DIALER_H

#include "addr.h"
#include "runtime.h"

#include <uv.h>

/* Addresses kept of one name (a name with more is rare; the first ones are the resolver's
 * preferred). */
#define HD__DIALER_MAX_RESOLVED 16

typedef struct hd__dialer hd__dialer_t;
/* A resolution finished: `status` 0 and the address to dial, or HD_EADDR (the detail says why)
 * and NULL, or HD_ECANCELED after hd__dialer_cancel. */
typedef void (*hd__dialer_cb)(hd__dialer_t *d, int status, const struct sockaddr *addr);

struct hd__dialer {
  hd__runtime_t *rt;
  hd__addr_spec_t *specs;
  size_t n;
  size_t entry;                 /* the list entry being tried */
  struct sockaddr_storage resolved[HD__DIALER_MAX_RESOLVED];
  size_t n_resolved;            /* 0: the entry is not resolved yet */
  size_t next;                  /* the entry's address being tried */
  uv_getaddrinfo_t req;
  int resolving;
  hd__dialer_cb cb;
  void *owner;
};

/* Checks and copies `texts[0..n)` (n >= 1). HD_EINVAL for an empty list, HD_EADDR naming the
 * first malformed entry and its position. Any thread (before the loop runs). */
int hd__dialer_init(hd__dialer_t *d, hd__runtime_t *rt, const char *const *texts, size_t n,
                    hd__dialer_cb cb, void *owner);
void hd__dialer_free(hd__dialer_t *d);

/* The address to dial now: 0 and *addr, or 1: the entry's name is being resolved and `cb` gets
 * the address (or the failure) later; a negative code if the resolution could not start. */
int hd__dialer_next(hd__dialer_t *d, const struct sockaddr **addr);
/* The attempt at the current address failed. Returns 0 when the current entry has another
 * address (dial it at once: one name's addresses are one attempt), 1 when the dialer moved on
 * to the next entry (the list wraps round; the name is resolved again when its turn comes). */
int hd__dialer_failed(hd__dialer_t *d);
/* The current entry's host as given (a name or a numeric address), for logs. */
const char *hd__dialer_entry_text(const hd__dialer_t *d);
/* Cancels a resolution in flight (its callback still runs, with HD_ECANCELED or its result);
 * 1 while one is in flight, 0 when none is. */
int hd__dialer_cancel(hd__dialer_t *d);

#endif
