/* What the server and client handles share: option defaults and checks, the connection config
 * from an identity and a topic. */
#ifndef HD_HANDLE_H
#define HD_HANDLE_H

#include "conn.h"

#define HD__DEFAULT_HANDSHAKE_TIMEOUT_MS 10000
#define HD__DEFAULT_KEEPALIVE_MS 5000
#define HD__DEFAULT_RECONNECT_MIN_MS 100
#define HD__DEFAULT_RECONNECT_MAX_MS 5000

/* Checks an options struct's version field (HD_EINVAL for NULL or 0, HD_EVERSION for a version
 * newer than this library knows). */
int hd__check_options_version(const void *opts, unsigned int version, unsigned int known,
                              const char *what);

/* Fills the identity, topic and timeouts of `cfg` (zeros mean defaults). Checks the key pair
 * and the topic. */
int hd__conn_config_init(hd__conn_config_t *cfg, const hd_keypair_t *kp, const char *topic,
                         uint32_t handshake_timeout_ms, uint32_t keepalive_ms,
                         uint32_t idle_timeout_ms, uint32_t max_message_bytes);
void hd__conn_config_wipe(hd__conn_config_t *cfg);

#endif
