/* Handshakes per address per second (rate.c): counters in a fixed table indexed by a keyed hash
 * of the address (an IPv6 address by its /64, the least a host gets), cleared every second. The
 * memory is fixed whatever the number of addresses; two addresses that share a slot share its
 * budget, and the random key keeps anyone from choosing addresses that collide with another's. */
#ifndef HD_RATE_H
#define HD_RATE_H

#include "common.h"

#include <sodium.h>
#include <sys/socket.h>

#define HD__RATE_SLOTS 4096

typedef struct hd__rate {
  uint8_t key[crypto_shorthash_KEYBYTES];
  uint64_t second;                 /* the second the counts belong to */
  uint16_t count[HD__RATE_SLOTS];
} hd__rate_t;

void hd__rate_init(hd__rate_t *r);
/* 1 (and counts it) if one more handshake from `addr` at `now_ms` stays within `limit` per
 * second, else 0. */
int hd__rate_take(hd__rate_t *r, const struct sockaddr *addr, uint64_t now_ms, uint32_t limit);

#endif
