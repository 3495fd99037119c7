/* Noise Protocol Framework, revision 34, for Noise_{IK,XX}_25519_ChaChaPoly_BLAKE2b.
 *
 * Every handshake call works on a copy of the state and commits it only on success, so a failed
 * call (a forged message, a buffer too small) leaves the handshake exactly as it was. Nothing
 * here allocates; every secret that passes through the stack is wiped before returning. */
#include "noise.h"

#include "common.h"

#include <sodium.h>
#include <string.h>

#define BLOCKLEN 128

/* ---------------------------------------------------------------------------------------------
 * Cipher state (ChaChaPoly).
 */

/* The spec's 96-bit nonce for ChaChaPoly: 32 zero bits, then the counter little-endian. */
static void make_nonce(uint8_t nonce[12], uint64_t n) {
  memset(nonce, 0, 4);
  for (int i = 0; i < 8; i++) nonce[4 + i] = (uint8_t)(n >> (8 * i));
}

int hd__cipher_encrypt(hd__cipher_t *c, const uint8_t *ad, size_t ad_len, const uint8_t *pt,
                       size_t pt_len, uint8_t *out) {
  if (!c->has_key) {
    if (pt_len > 0 && out != pt) memmove(out, pt, pt_len);
    return 0;
  }
  /* 2^64-1 is reserved by the spec for rekey; reaching it means the session is worn out. */
  if (c->n == UINT64_MAX) return hd__error(HD_EPROTO, "noise: nonce exhausted");
  if (pt_len > crypto_aead_chacha20poly1305_ietf_MESSAGEBYTES_MAX)
    return hd__error(HD_EMSGSIZE, "noise: plaintext of %zu bytes is too large", pt_len);
  uint8_t nonce[12];
  make_nonce(nonce, c->n);
  crypto_aead_chacha20poly1305_ietf_encrypt(out, NULL, pt, pt_len, ad, ad_len, NULL, nonce,
                                            c->k);
  c->n++;
  return 0;
}

int hd__cipher_decrypt(hd__cipher_t *c, const uint8_t *ad, size_t ad_len, const uint8_t *ct,
                       size_t ct_len, uint8_t *out) {
  if (!c->has_key) {
    if (ct_len > 0 && out != ct) memmove(out, ct, ct_len);
    return 0;
  }
  if (ct_len < HD__NOISE_TAGLEN)
    return hd__error(HD_EPROTO, "noise: ciphertext of %zu bytes is shorter than a tag", ct_len);
  if (c->n == UINT64_MAX) return hd__error(HD_EPROTO, "noise: nonce exhausted");
  uint8_t nonce[12];
  make_nonce(nonce, c->n);
  /* libsodium checks the tag before it writes anything but zeros, so a forgery never leaks
   * unauthenticated plaintext; the nonce only moves on success so a forgery costs nothing. */
  if (crypto_aead_chacha20poly1305_ietf_decrypt(out, NULL, NULL, ct, ct_len, ad, ad_len, nonce,
                                                c->k) != 0)
    return hd__error(HD_EAUTH, "noise: message authentication failed");
  c->n++;
  return 0;
}

void hd__cipher_wipe(hd__cipher_t *c) { sodium_memzero(c, sizeof *c); }

static void cipher_init(hd__cipher_t *c, const uint8_t k[HD__NOISE_KEYLEN]) {
  memcpy(c->k, k, HD__NOISE_KEYLEN);
  c->n = 0;
  c->has_key = 1;
}

/* ---------------------------------------------------------------------------------------------
 * Hash functions: BLAKE2b, HMAC, HKDF.
 */

/* HASH(a || b) */
static void hash2(uint8_t out[HD__NOISE_HASHLEN], const uint8_t *a, size_t a_len, const uint8_t *b,
                  size_t b_len) {
  crypto_generichash_blake2b_state st;
  crypto_generichash_blake2b_init(&st, NULL, 0, HD__NOISE_HASHLEN);
  crypto_generichash_blake2b_update(&st, a, a_len);
  crypto_generichash_blake2b_update(&st, b, b_len);
  crypto_generichash_blake2b_final(&st, out, HD__NOISE_HASHLEN);
  sodium_memzero(&st, sizeof st);
}

/* HMAC-BLAKE2b per RFC 2104 as Noise requires: libsodium's keyed BLAKE2b is a different MAC and
 * would not interoperate. The data is d1 || d2 so that HKDF needs no scratch concatenation.
 * Keys here are always HASHLEN bytes, shorter than the block, so they are only zero-padded. */
static void hmac(uint8_t out[HD__NOISE_HASHLEN], const uint8_t key[HD__NOISE_HASHLEN],
                 const uint8_t *d1, size_t d1_len, const uint8_t *d2, size_t d2_len) {
  uint8_t pad[BLOCKLEN], inner[HD__NOISE_HASHLEN];
  crypto_generichash_blake2b_state st;

  memset(pad, 0x36, sizeof pad);
  for (int i = 0; i < HD__NOISE_HASHLEN; i++) pad[i] ^= key[i];
  crypto_generichash_blake2b_init(&st, NULL, 0, HD__NOISE_HASHLEN);
  crypto_generichash_blake2b_update(&st, pad, sizeof pad);
  crypto_generichash_blake2b_update(&st, d1, d1_len);
  if (d2_len > 0) crypto_generichash_blake2b_update(&st, d2, d2_len);
  crypto_generichash_blake2b_final(&st, inner, sizeof inner);

  memset(pad, 0x5c, sizeof pad);
  for (int i = 0; i < HD__NOISE_HASHLEN; i++) pad[i] ^= key[i];
  hash2(out, pad, sizeof pad, inner, sizeof inner);

  sodium_memzero(pad, sizeof pad);
  sodium_memzero(inner, sizeof inner);
  sodium_memzero(&st, sizeof st);
}

/* HKDF(ck, ikm) with two outputs (the spec's third output is only for PSKs). */
static void hkdf2(const uint8_t ck[HD__NOISE_HASHLEN], const uint8_t *ikm, size_t ikm_len,
                  uint8_t out1[HD__NOISE_HASHLEN], uint8_t out2[HD__NOISE_HASHLEN]) {
  static const uint8_t one = 1, two = 2;
  uint8_t temp_key[HD__NOISE_HASHLEN];
  hmac(temp_key, ck, ikm, ikm_len, NULL, 0);
  hmac(out1, temp_key, &one, 1, NULL, 0);
  hmac(out2, temp_key, out1, HD__NOISE_HASHLEN, &two, 1);
  sodium_memzero(temp_key, sizeof temp_key);
}

/* ---------------------------------------------------------------------------------------------
 * Symmetric state (ck, h and cs live in the handshake struct).
 */

static void mix_hash(hd__handshake_t *hs, const uint8_t *data, size_t len) {
  hash2(hs->h, hs->h, HD__NOISE_HASHLEN, data, len);
}

static void mix_key(hd__handshake_t *hs, const uint8_t *ikm, size_t ikm_len) {
  uint8_t ck[HD__NOISE_HASHLEN], k[HD__NOISE_HASHLEN];
  hkdf2(hs->ck, ikm, ikm_len, ck, k);
  memcpy(hs->ck, ck, sizeof ck);
  cipher_init(&hs->cs, k); /* HASHLEN 64: the key is the first 32 bytes */
  sodium_memzero(ck, sizeof ck);
  sodium_memzero(k, sizeof k);
}

static int encrypt_and_hash(hd__handshake_t *hs, const uint8_t *pt, size_t len, uint8_t *out) {
  int rc = hd__cipher_encrypt(&hs->cs, hs->h, HD__NOISE_HASHLEN, pt, len, out);
  if (rc != 0) return rc;
  mix_hash(hs, out, len + (hs->cs.has_key ? HD__NOISE_TAGLEN : 0));
  return 0;
}

static int decrypt_and_hash(hd__handshake_t *hs, const uint8_t *ct, size_t len, uint8_t *out) {
  /* h must absorb the ciphertext, which `out` may overwrite, while the old h is still the AD. */
  uint8_t h[HD__NOISE_HASHLEN];
  hash2(h, hs->h, HD__NOISE_HASHLEN, ct, len);
  int rc = hd__cipher_decrypt(&hs->cs, hs->h, HD__NOISE_HASHLEN, ct, len, out);
  if (rc == 0) memcpy(hs->h, h, sizeof h);
  return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Patterns.
 */

enum token { T_END = 0, T_E, T_S, T_EE, T_ES, T_SE, T_SS };

#define MAX_TOKENS 5
#define MAX_MESSAGES 3

typedef struct pattern_def {
  const char *protocol_name;
  int n_messages;
  int responder_static_premessage; /* <- s ... */
  enum token msgs[MAX_MESSAGES][MAX_TOKENS];
} pattern_def_t;

static const pattern_def_t pattern_ik = {
    "Noise_IK_25519_ChaChaPoly_BLAKE2b",
    2,
    1,
    {{T_E, T_ES, T_S, T_SS, T_END}, {T_E, T_EE, T_SE, T_END}},
};

static const pattern_def_t pattern_xx = {
    "Noise_XX_25519_ChaChaPoly_BLAKE2b",
    3,
    0,
    {{T_E, T_END}, {T_E, T_EE, T_S, T_ES, T_END}, {T_S, T_SE, T_END}},
};

static const pattern_def_t *pattern_get(hd__noise_pattern_t p) {
  switch (p) {
    case HD__NOISE_IK:
      return &pattern_ik;
    case HD__NOISE_XX:
      return &pattern_xx;
    default:
      return NULL;
  }
}

/* The libsodium X25519 already fails on an all-zero result (a low-order peer key), which is
 * exactly the check we want: such a DH contributes no secret, so the peer is not authentic. */
static int dh(uint8_t out[HD__NOISE_DHLEN], const uint8_t secret[HD__NOISE_DHLEN],
              const uint8_t pub[HD__NOISE_DHLEN]) {
  if (crypto_scalarmult(out, secret, pub) != 0 || sodium_is_zero(out, HD__NOISE_DHLEN)) {
    sodium_memzero(out, HD__NOISE_DHLEN);
    return hd__error(HD_EAUTH, "noise: DH with a low-order public key");
  }
  return 0;
}

static int mix_dh(hd__handshake_t *hs, enum token t) {
  const uint8_t *secret, *pub;
  int have;
  /* es: the initiator's e with the responder's s; se the other way round. */
  switch (t) {
    case T_EE:
      secret = hs->e_secret, pub = hs->re, have = hs->has_e && hs->has_re;
      break;
    case T_ES:
      if (hs->initiator)
        secret = hs->e_secret, pub = hs->rs, have = hs->has_e && hs->has_rs;
      else
        secret = hs->s_secret, pub = hs->re, have = hs->has_re;
      break;
    case T_SE:
      if (hs->initiator)
        secret = hs->s_secret, pub = hs->re, have = hs->has_re;
      else
        secret = hs->e_secret, pub = hs->rs, have = hs->has_e && hs->has_rs;
      break;
    case T_SS:
      secret = hs->s_secret, pub = hs->rs, have = hs->has_rs;
      break;
    default:
      return hd__error(HD_ESTATE, "noise: bad token");
  }
  if (!have) return hd__error(HD_ESTATE, "noise: DH before its keys are known");
  uint8_t shared[HD__NOISE_DHLEN];
  int rc = dh(shared, secret, pub);
  if (rc == 0) mix_key(hs, shared, sizeof shared);
  sodium_memzero(shared, sizeof shared);
  return rc;
}

/* Size of the tokens of `msg` plus the payload's tag, given whether a key is set at its start:
 * known before anything is written, so size errors never leave half a message behind. */
static size_t message_overhead(const enum token *msg, int has_key) {
  size_t n = 0;
  for (; *msg != T_END; msg++) {
    if (*msg == T_E)
      n += HD__NOISE_DHLEN;
    else if (*msg == T_S)
      n += HD__NOISE_DHLEN + (has_key ? HD__NOISE_TAGLEN : 0);
    else
      has_key = 1;
  }
  return n + (has_key ? HD__NOISE_TAGLEN : 0);
}

/* ---------------------------------------------------------------------------------------------
 * Handshake state.
 */

int hd__handshake_init(hd__handshake_t *hs, hd__noise_pattern_t pattern, int initiator,
                       const uint8_t *prologue, size_t prologue_len,
                       const uint8_t s_secret[HD__NOISE_DHLEN], const uint8_t *rs) {
  int rc = hd_init();
  if (rc != 0) return rc;
  if (hs == NULL) return hd__error(HD_EINVAL, "noise: no handshake state");
  memset(hs, 0, sizeof *hs);
  const pattern_def_t *def = pattern_get(pattern);
  if (def == NULL) return hd__error(HD_EINVAL, "noise: unknown pattern %d", (int)pattern);
  if (s_secret == NULL) return hd__error(HD_EINVAL, "noise: a static key is required");
  if (prologue == NULL && prologue_len > 0) return hd__error(HD_EINVAL, "noise: no prologue");
  int need_rs = def->responder_static_premessage && initiator;
  if (need_rs && rs == NULL)
    return hd__error(HD_EINVAL, "noise: the IK initiator needs the responder's static key");

  hs->pattern = pattern;
  hs->initiator = initiator ? 1 : 0;
  memcpy(hs->s_secret, s_secret, HD__NOISE_DHLEN);
  crypto_scalarmult_base(hs->s_public, hs->s_secret);

  /* Both names fit in HASHLEN, so h is the name zero-padded (the spec hashes longer names). */
  size_t name_len = strlen(def->protocol_name);
  if (name_len <= HD__NOISE_HASHLEN)
    memcpy(hs->h, def->protocol_name, name_len);
  else
    crypto_generichash_blake2b(hs->h, HD__NOISE_HASHLEN, (const uint8_t *)def->protocol_name,
                               name_len, NULL, 0);
  memcpy(hs->ck, hs->h, HD__NOISE_HASHLEN);
  mix_hash(hs, prologue, prologue_len);

  if (def->responder_static_premessage) {
    if (initiator) {
      memcpy(hs->rs, rs, HD__NOISE_DHLEN);
      hs->has_rs = 1;
      mix_hash(hs, hs->rs, HD__NOISE_DHLEN);
    } else {
      mix_hash(hs, hs->s_public, HD__NOISE_DHLEN);
    }
  }
  return 0;
}

void hd__handshake_fix_ephemeral(hd__handshake_t *hs, const uint8_t e_secret[HD__NOISE_DHLEN]) {
  memcpy(hs->e_secret, e_secret, HD__NOISE_DHLEN);
  hs->fixed_e = 1;
}

int hd__handshake_is_done(const hd__handshake_t *hs) {
  const pattern_def_t *def = pattern_get(hs->pattern);
  return def != NULL && hs->step >= def->n_messages;
}

int hd__handshake_my_turn(const hd__handshake_t *hs) {
  if (pattern_get(hs->pattern) == NULL || hd__handshake_is_done(hs)) return 0;
  return (hs->step % 2 == 0) == (hs->initiator != 0);
}

static int write_tokens(hd__handshake_t *hs, const enum token *msg, const uint8_t *payload,
                        size_t payload_len, uint8_t *out, size_t *out_len) {
  size_t off = 0;
  int rc;
  for (; *msg != T_END; msg++) {
    switch (*msg) {
      case T_E:
        if (!hs->fixed_e) randombytes_buf(hs->e_secret, HD__NOISE_DHLEN);
        crypto_scalarmult_base(hs->e_public, hs->e_secret);
        hs->has_e = 1;
        memcpy(out + off, hs->e_public, HD__NOISE_DHLEN);
        mix_hash(hs, hs->e_public, HD__NOISE_DHLEN);
        off += HD__NOISE_DHLEN;
        break;
      case T_S:
        if ((rc = encrypt_and_hash(hs, hs->s_public, HD__NOISE_DHLEN, out + off)) != 0) return rc;
        off += HD__NOISE_DHLEN + (hs->cs.has_key ? HD__NOISE_TAGLEN : 0);
        break;
      default:
        if ((rc = mix_dh(hs, *msg)) != 0) return rc;
    }
  }
  if ((rc = encrypt_and_hash(hs, payload, payload_len, out + off)) != 0) return rc;
  *out_len = off + payload_len + (hs->cs.has_key ? HD__NOISE_TAGLEN : 0);
  return 0;
}

int hd__handshake_write_message(hd__handshake_t *hs, const uint8_t *payload, size_t payload_len,
                                uint8_t *out, size_t out_cap, size_t *out_len) {
  const pattern_def_t *def = pattern_get(hs->pattern);
  if (def == NULL) return hd__error(HD_ESTATE, "noise: handshake not initialised");
  if (hd__handshake_is_done(hs)) return hd__error(HD_ESTATE, "noise: handshake already done");
  if (!hd__handshake_my_turn(hs)) return hd__error(HD_ESTATE, "noise: not our turn to write");
  if (payload == NULL && payload_len > 0) return hd__error(HD_EINVAL, "noise: no payload");
  const enum token *msg = def->msgs[hs->step];
  size_t overhead = message_overhead(msg, hs->cs.has_key);
  if (payload_len > HD__NOISE_MAX_MESSAGE - overhead)
    return hd__error(HD_EMSGSIZE, "noise: handshake message would exceed %d bytes",
                     HD__NOISE_MAX_MESSAGE);
  if (out == NULL || out_cap < overhead + payload_len)
    return hd__error(HD_EBUFSIZE, "noise: handshake message needs %zu bytes, buffer has %zu",
                     overhead + payload_len, out_cap);

  hd__handshake_t next = *hs;
  size_t len = 0;
  int rc = write_tokens(&next, msg, payload, payload_len, out, &len);
  if (rc == 0) {
    next.step++;
    *hs = next;
    if (out_len != NULL) *out_len = len;
  }
  sodium_memzero(&next, sizeof next);
  return rc;
}

static int read_tokens(hd__handshake_t *hs, const enum token *msg, const uint8_t *in,
                       size_t in_len, uint8_t *payload) {
  size_t off = 0, len;
  int rc;
  for (; *msg != T_END; msg++) {
    switch (*msg) {
      case T_E:
        memcpy(hs->re, in + off, HD__NOISE_DHLEN);
        hs->has_re = 1;
        mix_hash(hs, hs->re, HD__NOISE_DHLEN);
        off += HD__NOISE_DHLEN;
        break;
      case T_S:
        len = HD__NOISE_DHLEN + (hs->cs.has_key ? HD__NOISE_TAGLEN : 0);
        if ((rc = decrypt_and_hash(hs, in + off, len, hs->rs)) != 0) return rc;
        hs->has_rs = 1;
        off += len;
        break;
      default:
        if ((rc = mix_dh(hs, *msg)) != 0) return rc;
    }
  }
  return decrypt_and_hash(hs, in + off, in_len - off, payload);
}

int hd__handshake_read_message(hd__handshake_t *hs, const uint8_t *msg, size_t msg_len,
                               uint8_t *payload, size_t payload_cap, size_t *payload_len) {
  const pattern_def_t *def = pattern_get(hs->pattern);
  if (def == NULL) return hd__error(HD_ESTATE, "noise: handshake not initialised");
  if (hd__handshake_is_done(hs)) return hd__error(HD_ESTATE, "noise: handshake already done");
  if (hd__handshake_my_turn(hs)) return hd__error(HD_ESTATE, "noise: not the peer's turn");
  if (msg == NULL && msg_len > 0) return hd__error(HD_EINVAL, "noise: no message");
  if (msg_len > HD__NOISE_MAX_MESSAGE)
    return hd__error(HD_EPROTO, "noise: handshake message of %zu bytes is too long", msg_len);
  const enum token *tokens = def->msgs[hs->step];
  size_t overhead = message_overhead(tokens, hs->cs.has_key);
  if (msg_len < overhead)
    return hd__error(HD_EPROTO, "noise: handshake message of %zu bytes, at least %zu expected",
                     msg_len, overhead);
  size_t plen = msg_len - overhead;
  if (plen > 0 && (payload == NULL || payload_cap < plen))
    return hd__error(HD_EBUFSIZE, "noise: payload needs %zu bytes, buffer has %zu", plen,
                     payload_cap);

  hd__handshake_t next = *hs;
  int rc = read_tokens(&next, tokens, msg, msg_len, payload);
  if (rc == 0) {
    next.step++;
    *hs = next;
    if (payload_len != NULL) *payload_len = plen;
  }
  sodium_memzero(&next, sizeof next);
  return rc;
}

int hd__handshake_split(hd__handshake_t *hs, hd__cipher_t *send, hd__cipher_t *recv) {
  if (!hd__handshake_is_done(hs)) return hd__error(HD_ESTATE, "noise: handshake not done");
  if (hs->split) return hd__error(HD_ESTATE, "noise: handshake already split");
  uint8_t k1[HD__NOISE_HASHLEN], k2[HD__NOISE_HASHLEN];
  hkdf2(hs->ck, NULL, 0, k1, k2);
  cipher_init(send, hs->initiator ? k1 : k2);
  cipher_init(recv, hs->initiator ? k2 : k1);
  sodium_memzero(k1, sizeof k1);
  sodium_memzero(k2, sizeof k2);
  /* h and the public keys stay: callers still need the channel binding and the peer's key. */
  sodium_memzero(hs->ck, sizeof hs->ck);
  hd__cipher_wipe(&hs->cs);
  sodium_memzero(hs->s_secret, sizeof hs->s_secret);
  sodium_memzero(hs->e_secret, sizeof hs->e_secret);
  hs->split = 1;
  return 0;
}

const uint8_t *hd__handshake_remote_static(const hd__handshake_t *hs) {
  return hs->has_rs ? hs->rs : NULL;
}

const uint8_t *hd__handshake_hash(const hd__handshake_t *hs) { return hs->h; }

void hd__handshake_wipe(hd__handshake_t *hs) { sodium_memzero(hs, sizeof *hs); }

int hd__handshake_read_first_either(hd__handshake_t *hs, const uint8_t *prologue,
                                    size_t prologue_len,
                                    const uint8_t next_secret[HD__NOISE_DHLEN],
                                    const uint8_t *msg, size_t msg_len, uint8_t *payload,
                                    size_t payload_cap, size_t *payload_len, int *used_next) {
  *used_next = 0;
  int rc = hd__handshake_read_message(hs, msg, msg_len, payload, payload_cap, payload_len);
  if (rc != HD_EAUTH || next_secret == NULL) return rc;
  if (hs->pattern != HD__NOISE_IK || hs->initiator || hs->step != 0) {
    return hd__error(HD_ESTATE, "noise: a second static key is for the IK responder's first "
                     "message only");
  }
  hd__handshake_t alt;
  /* the responder's static key is in h from the start (IK's "<- s"): a fresh state under the
   * other key, the same in every other way */
  int arc = hd__handshake_init(&alt, HD__NOISE_IK, 0, prologue, prologue_len, next_secret, NULL);
  if (arc == 0 && hs->fixed_e) hd__handshake_fix_ephemeral(&alt, hs->e_secret);
  if (arc == 0) arc = hd__handshake_read_message(&alt, msg, msg_len, payload, payload_cap,
                                                 payload_len);
  if (arc == 0) {
    *hs = alt;
    *used_next = 1;
  }
  sodium_memzero(&alt, sizeof alt);
  /* a message neither key reads is the first key's failure: the detail stays its own */
  return arc == 0 ? 0 : hd__error(HD_EAUTH, "noise: message 1 authenticates under neither "
                                  "static key");
}
