/* Internal key helpers: the Ed25519 identity mapped to the X25519 keys Noise uses. */
#ifndef HD_KEYS_H
#define HD_KEYS_H

#include "hyperdown.h"

/* The Noise static key pair of an identity: the secret is the clamped scalar itself, the public
 * key the Ed25519 public key mapped to Montgomery form. */
int hd__keypair_to_x25519(const hd_keypair_t *kp, uint8_t x_secret[32], uint8_t x_public[32]);
/* An Ed25519 public key mapped to X25519 (HD_EKEY if it is not a valid point). */
int hd__ed25519_pk_to_x25519(const uint8_t ed_public[32], uint8_t x_public[32]);
/* The 8-byte topic tag sent in the preamble: keyed BLAKE2b (docs/PROTOCOL.md). */
void hd__topic_tag(const uint8_t topic_key[HD_TOPIC_BYTES], uint8_t tag[8]);

#endif
