/* The record layer (docs/PROTOCOL.md, "Records"): after the handshake every byte on the socket
 * is a record, a 2-byte big-endian length and a ChaChaPoly ciphertext (Noise transport message,
 * empty AD) of at most 65519 plaintext bytes. The plaintexts, concatenated, carry the message
 * stream that wire.h's hd__msg_reader cuts into messages. */
#ifndef HD_RECORD_H
#define HD_RECORD_H

#include "noise.h"
#include "wire.h"

#define HD__RECORD_HEADER 2
#define HD__RECORD_TAG HD__NOISE_TAGLEN
#define HD__RECORD_MAX 65535 /* length field: ciphertext bytes */
#define HD__RECORD_MAX_PLAINTEXT (HD__RECORD_MAX - HD__RECORD_TAG) /* 65519 */

/* The bytes that sealing `pt_len` plaintext bytes appends (headers and tags included). */
size_t hd__record_sealed_size(size_t pt_len);

/* Encrypts `pt` as one or more records (split every 65519 bytes) appended to `out`, writing the
 * ciphertext straight into `out`. `pt` must not point into `out`. Nothing is appended for an
 * empty plaintext. 0, HD_ENOMEM, HD_EINVAL (cipher has no key) or the cipher's error (nonce
 * exhausted); on error `out` is left as it was. */
int hd__record_seal(hd__cipher_t *c, const uint8_t *pt, size_t pt_len, hd__buf_t *out);

/* Receives one record's plaintext (also an empty one: it proves the sender holds the key);
 * valid only during the call. Non-zero stops the feed. */
typedef int (*hd__record_cb)(void *ctx, uint8_t *pt, size_t len);

/* Opens records from raw socket bytes. Complete records are decrypted in place, in the caller's
 * buffer; a record cut by a read boundary is collected in a buffer of exactly its length (at most
 * 65535 bytes) that is freed once the record is open, so an idle reader holds no heap memory. */
typedef struct hd__record_reader {
  hd__cipher_t cipher; /* the receiving transport cipher (copied in, wiped by free) */
  hd__record_cb cb;
  void *ctx;
  int error;           /* sticky: once set, every feed returns it */
  uint8_t head[HD__RECORD_HEADER];
  uint8_t head_len;
  uint8_t *rec;        /* the record being collected */
  size_t rec_len, rec_have, rec_cap;
} hd__record_reader_t;

/* `recv` must have a key (HD_EINVAL otherwise). */
int hd__record_reader_init(hd__record_reader_t *r, const hd__cipher_t *recv, hd__record_cb cb,
                           void *ctx);
/* Feeds socket bytes; `data` is modified (decrypted in place). 0 when every complete record was
 * opened and handed over; HD_EPROTO ("record shorter than its tag"), HD_EAUTH ("record failed
 * authentication"), HD_ENOMEM, or the callback's non-zero value. */
int hd__record_reader_feed(hd__record_reader_t *r, uint8_t *data, size_t n);
/* 1 if no record is half received. */
int hd__record_reader_idle(const hd__record_reader_t *r);
void hd__record_reader_free(hd__record_reader_t *r);

/* An hd__record_cb that feeds a hd__msg_reader_t passed as `ctx`: the usual receive pipeline is
 * hd__record_reader_init(&rr, &recv, hd__record_to_msgs, &msg_reader). */
int hd__record_to_msgs(void *msg_reader, uint8_t *pt, size_t len);

#endif
