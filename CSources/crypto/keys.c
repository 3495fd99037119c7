/* Identities: Ed25519 key pairs in their three accepted forms, checked; their X25519 mapping for
 * Noise; hex helpers; the topic key and tag. */
#include "keys.h"

#include <sodium.h>
#include <string.h>

#include "common.h"

static const char topic_context[] = "hyperdown/1 topic";
static const char topic_tag_message[] = "hyperdown topic tag";

/* The clamping RFC 8032 applies to the first half of SHA-512(seed). */
static void clamp(uint8_t s[32]) {
  s[0] &= 248;
  s[31] &= 127;
  s[31] |= 64;
}

int hd_keypair_verify(const hd_keypair_t *kp) {
  uint8_t derived[32];
  if (kp == NULL) return hd__error(HD_EINVAL, "key pair is NULL");
  if (hd_init() != 0) return HD_EINIT;
  /* A scalar that is not clamped is not an Ed25519 secret scalar, and would map to an X25519
   * key other than the public key's Montgomery form. */
  if ((kp->scalar[0] & 7) != 0 || (kp->scalar[31] & 0xc0) != 0x40) {
    return hd__error(HD_EKEY, "secret scalar is not clamped: not an Ed25519 secret scalar");
  }
  if (crypto_scalarmult_ed25519_base_noclamp(derived, kp->scalar) != 0 ||
      sodium_memcmp(derived, kp->public_key, 32) != 0) {
    sodium_memzero(derived, sizeof derived);
    return hd__error(HD_EKEY, "public key is not scalar*G: the key pair does not belong together");
  }
  return 0;
}

int hd_publickey_check(const uint8_t public_key[HD_PUBLICKEY_BYTES]) {
  uint8_t x[32];
  if (public_key == NULL) return hd__error(HD_EINVAL, "public key is NULL");
  return hd__ed25519_pk_to_x25519(public_key, x);
}

int hd_keypair_from_scalar(hd_keypair_t *out, const uint8_t scalar[HD_SCALAR_BYTES],
                           const uint8_t public_key[HD_PUBLICKEY_BYTES]) {
  hd_keypair_t kp;
  int rc;
  if (out == NULL || scalar == NULL || public_key == NULL) {
    return hd__error(HD_EINVAL, "key pair, scalar and public key must not be NULL");
  }
  memcpy(kp.scalar, scalar, 32);
  memcpy(kp.public_key, public_key, 32);
  rc = hd_keypair_verify(&kp);
  if (rc == 0) *out = kp;
  sodium_memzero(&kp, sizeof kp);
  return rc;
}

int hd_keypair_from_seed(hd_keypair_t *out, const uint8_t seed[HD_SEED_BYTES]) {
  uint8_t hash[64];
  hd_keypair_t kp;
  int rc;
  if (out == NULL || seed == NULL) return hd__error(HD_EINVAL, "key pair and seed must not be NULL");
  if (hd_init() != 0) return HD_EINIT;
  crypto_hash_sha512(hash, seed, 32);
  memcpy(kp.scalar, hash, 32);
  clamp(kp.scalar);
  sodium_memzero(hash, sizeof hash);
  if (crypto_scalarmult_ed25519_base_noclamp(kp.public_key, kp.scalar) != 0) {
    sodium_memzero(&kp, sizeof kp);
    return hd__error(HD_EKEY, "seed gives no valid key pair");
  }
  rc = hd_keypair_verify(&kp);
  if (rc == 0) *out = kp;
  sodium_memzero(&kp, sizeof kp);
  return rc;
}

int hd_keypair_from_secret_key(hd_keypair_t *out, const uint8_t secret_key[HD_SECRETKEY_BYTES]) {
  hd_keypair_t kp;
  int rc;
  if (out == NULL || secret_key == NULL) {
    return hd__error(HD_EINVAL, "key pair and secret key must not be NULL");
  }
  rc = hd_keypair_from_seed(&kp, secret_key);
  if (rc != 0) return rc;
  if (sodium_memcmp(kp.public_key, secret_key + 32, 32) != 0) {
    sodium_memzero(&kp, sizeof kp);
    return hd__error(HD_EKEY, "secret key's public half does not match its seed");
  }
  *out = kp;
  sodium_memzero(&kp, sizeof kp);
  return 0;
}

int hd_keypair_generate(hd_keypair_t *out) {
  uint8_t seed[32];
  int rc;
  if (out == NULL) return hd__error(HD_EINVAL, "key pair is NULL");
  if (hd_init() != 0) return HD_EINIT;
  randombytes_buf(seed, sizeof seed);
  rc = hd_keypair_from_seed(out, seed);
  sodium_memzero(seed, sizeof seed);
  return rc;
}

void hd_keypair_wipe(hd_keypair_t *kp) {
  if (kp != NULL) sodium_memzero(kp->scalar, sizeof kp->scalar);
}

int hd__keypair_to_x25519(const hd_keypair_t *kp, uint8_t x_secret[32], uint8_t x_public[32]) {
  int rc = hd_keypair_verify(kp);
  if (rc != 0) return rc;
  rc = hd__ed25519_pk_to_x25519(kp->public_key, x_public);
  if (rc != 0) return rc;
  /* X25519 clamps its scalar the way Ed25519 does, so the Ed25519 scalar is the X25519 secret. */
  memcpy(x_secret, kp->scalar, 32);
  return 0;
}

int hd__ed25519_pk_to_x25519(const uint8_t ed_public[32], uint8_t x_public[32]) {
  if (hd_init() != 0) return HD_EINIT;
  if (crypto_core_ed25519_is_valid_point(ed_public) != 1 ||
      crypto_sign_ed25519_pk_to_curve25519(x_public, ed_public) != 0) {
    return hd__error(HD_EKEY, "not a valid Ed25519 public key (small order or not on the curve)");
  }
  return 0;
}

int hd_topic_key(uint8_t out[HD_TOPIC_BYTES], const char *name, size_t name_len) {
  crypto_generichash_state st;
  if (out == NULL || name == NULL) return hd__error(HD_EINVAL, "topic key and name must not be NULL");
  if (name_len == 0) return hd__error(HD_EINVAL, "topic name (folderName) is empty");
  if (hd_init() != 0) return HD_EINIT;
  crypto_generichash_init(&st, NULL, 0, HD_TOPIC_BYTES);
  crypto_generichash_update(&st, (const uint8_t *)topic_context, sizeof topic_context - 1);
  crypto_generichash_update(&st, (const uint8_t *)name, name_len);
  crypto_generichash_final(&st, out, HD_TOPIC_BYTES);
  return 0;
}

void hd__topic_tag(const uint8_t topic_key[HD_TOPIC_BYTES], uint8_t tag[8]) {
  crypto_generichash(tag, 8, (const uint8_t *)topic_tag_message, sizeof topic_tag_message - 1,
                     topic_key, HD_TOPIC_BYTES);
}

int hd_hex_encode(char *out, size_t out_size, const uint8_t *bytes, size_t len) {
  if (out == NULL || (bytes == NULL && len > 0)) return hd__error(HD_EINVAL, "NULL buffer");
  if (len > (SIZE_MAX - 1) / 2 || out_size < 2 * len + 1) {
    return hd__error(HD_EBUFSIZE, "hex of %zu bytes needs %zu bytes of output", len, 2 * len + 1);
  }
  sodium_bin2hex(out, out_size, bytes, len);
  return 0;
}

int hd_hex_decode(uint8_t *out, size_t out_len, const char *hex) {
  size_t hex_len, got = 0;
  if (out == NULL || hex == NULL) return hd__error(HD_EINVAL, "NULL buffer");
  hex_len = strlen(hex);
  if (hex_len != 2 * out_len) {
    return hd__error(HD_EHEX, "expected %zu hex digits, got %zu", 2 * out_len, hex_len);
  }
  for (size_t i = 0; i < hex_len; i++) {
    char ch = hex[i];
    if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F'))) {
      return hd__error(HD_EHEX, "not a hex digit at position %zu", i);
    }
  }
  if (sodium_hex2bin(out, out_len, hex, hex_len, NULL, &got, NULL) != 0 || got != out_len) {
    return hd__error(HD_EHEX, "hex did not decode to %zu bytes", out_len);
  }
  return 0;
}
