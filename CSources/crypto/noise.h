/* Noise Protocol Framework (revision 34) for the 25519 / ChaChaPoly / BLAKE2b suite: cipher
 * states and handshake states as plain code with no I/O. Patterns: IK (client to server, as the
 * wire protocol uses) and XX. Built on libsodium. */
#ifndef HD_NOISE_H
#define HD_NOISE_H

#include <stddef.h>
#include <stdint.h>

#define HD__NOISE_DHLEN 32
#define HD__NOISE_KEYLEN 32
#define HD__NOISE_HASHLEN 64
#define HD__NOISE_TAGLEN 16
#define HD__NOISE_MAX_MESSAGE 65535

typedef struct hd__cipher {
  uint8_t k[HD__NOISE_KEYLEN];
  uint64_t n;
  int has_key;
} hd__cipher_t;

/* Encrypts `pt_len` bytes into `out` (pt_len + 16 bytes; `out` may equal `pt`). Without a key
 * it copies the plaintext. HD_EPROTO when the nonce is exhausted (2^64-1 is reserved). */
int hd__cipher_encrypt(hd__cipher_t *c, const uint8_t *ad, size_t ad_len, const uint8_t *pt,
                       size_t pt_len, uint8_t *out);
/* Decrypts `ct_len` bytes into `out` (ct_len - 16 bytes; `out` may equal `ct`). HD_EAUTH if
 * the tag does not verify (the nonce is then not advanced and `out` holds zeros, so in-place
 * decryption loses the ciphertext); HD_EPROTO if ct_len < 16 or the nonce is exhausted. */
int hd__cipher_decrypt(hd__cipher_t *c, const uint8_t *ad, size_t ad_len, const uint8_t *ct,
                       size_t ct_len, uint8_t *out);
void hd__cipher_wipe(hd__cipher_t *c);

typedef enum hd__noise_pattern { HD__NOISE_IK = 1, HD__NOISE_XX = 2 } hd__noise_pattern_t;

typedef struct hd__handshake {
  hd__noise_pattern_t pattern;
  int initiator;
  int step;                      /* index of the next message pattern */
  hd__cipher_t cs;
  uint8_t ck[HD__NOISE_HASHLEN];
  uint8_t h[HD__NOISE_HASHLEN];
  uint8_t s_secret[HD__NOISE_DHLEN], s_public[HD__NOISE_DHLEN];
  uint8_t e_secret[HD__NOISE_DHLEN], e_public[HD__NOISE_DHLEN];
  uint8_t rs[HD__NOISE_DHLEN], re[HD__NOISE_DHLEN];
  int has_e, has_rs, has_re, fixed_e;
  int split; /* hd__handshake_split ran: ck and the secrets are gone */
} hd__handshake_t;

/* Every handshake call below that fails leaves the state exactly as it was (it works on a copy),
 * so a forged or truncated message can be dropped and the right one read afterwards. */

/* The protocol name is derived from the pattern. `s_secret` (our X25519 static secret) is
 * required; `rs` (the responder's static public key) is required for an IK initiator and ignored
 * otherwise. Returns 0, HD_EINVAL or HD_EINIT (libsodium failed to initialise). */
int hd__handshake_init(hd__handshake_t *hs, hd__noise_pattern_t pattern, int initiator,
                       const uint8_t *prologue, size_t prologue_len,
                       const uint8_t s_secret[HD__NOISE_DHLEN], const uint8_t *rs);
/* Test vectors only: use this ephemeral secret instead of a random one. */
void hd__handshake_fix_ephemeral(hd__handshake_t *hs, const uint8_t e_secret[HD__NOISE_DHLEN]);
/* Writes the next handshake message with `payload` into `out` (which must not overlap
 * `payload`). HD_ESTATE if it is not our turn, HD_EBUFSIZE if `out_cap` is too small,
 * HD_EMSGSIZE past 65535 bytes, HD_EAUTH if a DH gives zero (a low-order key). */
int hd__handshake_write_message(hd__handshake_t *hs, const uint8_t *payload, size_t payload_len,
                                uint8_t *out, size_t out_cap, size_t *out_len);
/* Reads the next handshake message; the payload goes to `payload`. HD_EAUTH if a tag fails or
 * a DH gives zero, HD_EPROTO if the message is too short or over 65535 bytes, HD_ESTATE if it is
 * not the peer's turn, HD_EBUFSIZE if the payload does not fit in `payload_cap`. */
int hd__handshake_read_message(hd__handshake_t *hs, const uint8_t *msg, size_t msg_len,
                               uint8_t *payload, size_t payload_cap, size_t *payload_len);
/* The IK responder's first read with a choice of two static keys (a server's key rollover,
 * docs/OPERATIONS.md): reads `msg` as hd__handshake_read_message does with the key `hs` was
 * initialised with (on `prologue`), and when that fails authentication (HD_EAUTH) and
 * `next_secret` is given, again under `next_secret` in its place; *used_next says which key
 * read it. A failure leaves `hs` exactly as it was; both keys failing is HD_EAUTH. The second
 * try costs a responder one more DH, only for an initiator of the other key (or a forger). */
int hd__handshake_read_first_either(hd__handshake_t *hs, const uint8_t *prologue,
                                    size_t prologue_len,
                                    const uint8_t next_secret[HD__NOISE_DHLEN],
                                    const uint8_t *msg, size_t msg_len, uint8_t *payload,
                                    size_t payload_cap, size_t *payload_len, int *used_next);
int hd__handshake_is_done(const hd__handshake_t *hs);
/* 1 if the next message is ours to write. */
int hd__handshake_my_turn(const hd__handshake_t *hs);
/* After the last message: the transport ciphers for this side (initiator sends with the
 * first). Wipes the handshake's secrets (h and the public keys stay readable). HD_ESTATE before
 * the handshake is done or when called twice. */
int hd__handshake_split(hd__handshake_t *hs, hd__cipher_t *send, hd__cipher_t *recv);
/* The remote static key once known, else NULL. */
const uint8_t *hd__handshake_remote_static(const hd__handshake_t *hs);
/* The handshake hash h (HD__NOISE_HASHLEN bytes): channel binding. */
const uint8_t *hd__handshake_hash(const hd__handshake_t *hs);
void hd__handshake_wipe(hd__handshake_t *hs);

#endif
