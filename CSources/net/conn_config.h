/* The connection config (hd__conn_config_t, conn.h) of a handle, from its identity, topic and
 * timeouts: what every connection of the handle shares. */
#ifndef HD_CONN_CONFIG_H
#define HD_CONN_CONFIG_H

#include "conn.h"

#define HD__DEFAULT_HANDSHAKE_TIMEOUT_MS 10000
#define HD__DEFAULT_KEEPALIVE_MS 5000

/* Fills the identity, topic and timeouts of `cfg` (zeros mean defaults). Checks the key pair
 * and the topic. */
int hd__conn_config_init(hd__conn_config_t *cfg, const hd_keypair_t *kp, const char *topic,
                         uint32_t handshake_timeout_ms, uint32_t keepalive_ms,
                         uint32_t idle_timeout_ms, uint32_t max_message_bytes);
/* Server: a second identity it answers to (key rollover); checks the pair. */
int hd__conn_config_next_key(hd__conn_config_t *cfg, const hd_keypair_t *next);
void hd__conn_config_wipe(hd__conn_config_t *cfg);

#endif
