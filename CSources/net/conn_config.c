/* The connection config of a handle (conn_config.h). */
#include "conn_config.h"

#include "keys.h"

#include <sodium.h>
#include <string.h>

int hd__conn_config_init(hd__conn_config_t *cfg, const hd_keypair_t *kp, const char *topic,
                         uint32_t handshake_timeout_ms, uint32_t keepalive_ms,
                         uint32_t idle_timeout_ms, uint32_t max_message_bytes) {
  memset(cfg, 0, sizeof *cfg);
  if (kp == NULL) return hd__error(HD_EINVAL, "no key pair given");
  int rc = hd_keypair_verify(kp);
  if (rc != 0) return rc;
  if (topic == NULL || topic[0] == '\0') {
    return hd__error(HD_EINVAL, "the topic (folder name) must not be empty");
  }
  memcpy(cfg->public_key, kp->public_key, HD_PUBLICKEY_BYTES);
  rc = hd__keypair_to_x25519(kp, cfg->x_secret, cfg->x_public);
  if (rc == 0) rc = hd_topic_key(cfg->topic_key, topic, strlen(topic));
  if (rc != 0) {
    hd__conn_config_wipe(cfg);
    return rc;
  }
  cfg->handshake_timeout_ms =
      handshake_timeout_ms ? handshake_timeout_ms : HD__DEFAULT_HANDSHAKE_TIMEOUT_MS;
  cfg->keepalive_ms = keepalive_ms ? keepalive_ms : HD__DEFAULT_KEEPALIVE_MS;
  cfg->idle_timeout_ms = idle_timeout_ms ? idle_timeout_ms : 3 * cfg->keepalive_ms;
  cfg->max_message_bytes = max_message_bytes ? max_message_bytes : HD__DEFAULT_MAX_MESSAGE;
  cfg->features = HD__FEATURES_ALL;
  return 0;
}

int hd__conn_config_next_key(hd__conn_config_t *cfg, const hd_keypair_t *next) {
  int rc = hd_keypair_verify(next);
  if (rc != 0) return hd__error(rc, "next_keypair: %s", hd_last_error_message());
  if (sodium_memcmp(next->public_key, cfg->public_key, HD_PUBLICKEY_BYTES) == 0) {
    return hd__error(HD_EINVAL, "next_keypair is the server's keypair: a rollover needs a new key");
  }
  uint8_t x_public[32];
  rc = hd__keypair_to_x25519(next, cfg->next_x_secret, x_public);
  if (rc != 0) return rc;
  cfg->has_next_key = 1;
  return 0;
}

void hd__conn_config_wipe(hd__conn_config_t *cfg) {
  sodium_memzero(cfg->x_secret, 32);
  sodium_memzero(cfg->next_x_secret, 32);
}
