/* The record layer: sealing plaintext into records, and opening records from socket reads with
 * at most one copy (only for a record that a read boundary cuts in two). */
#include "record.h"

#include <stdlib.h>
#include <string.h>

size_t hd__record_sealed_size(size_t pt_len) {
  size_t full = pt_len / HD__RECORD_MAX_PLAINTEXT, rest = pt_len % HD__RECORD_MAX_PLAINTEXT;
  return full * (HD__RECORD_HEADER + HD__RECORD_MAX) +
         (rest ? HD__RECORD_HEADER + HD__RECORD_TAG + rest : 0);
}

int hd__record_seal(hd__cipher_t *c, const uint8_t *pt, size_t pt_len, hd__buf_t *out) {
  if (!c->has_key) return hd__error(HD_EINVAL, "record: sealing needs a transport cipher");
  int rc = hd__buf_reserve(out, hd__record_sealed_size(pt_len));
  if (rc) return rc;
  size_t start = out->len;
  uint8_t *p = out->data + out->len;
  while (pt_len > 0) {
    size_t n = pt_len < HD__RECORD_MAX_PLAINTEXT ? pt_len : HD__RECORD_MAX_PLAINTEXT;
    hd__put_u16be(p, (uint16_t)(n + HD__RECORD_TAG));
    if ((rc = hd__cipher_encrypt(c, NULL, 0, pt, n, p + HD__RECORD_HEADER))) {
      out->len = start; /* records already sealed are dropped; the session is dead anyway */
      return rc;
    }
    p += HD__RECORD_HEADER + n + HD__RECORD_TAG;
    pt += n;
    pt_len -= n;
  }
  out->len = (size_t)(p - out->data);
  return 0;
}

int hd__record_reader_init(hd__record_reader_t *r, const hd__cipher_t *recv, hd__record_cb cb,
                           void *ctx) {
  memset(r, 0, sizeof *r);
  if (!recv->has_key) return hd__error(HD_EINVAL, "record: opening needs a transport cipher");
  r->cipher = *recv;
  r->cb = cb;
  r->ctx = ctx;
  return 0;
}

void hd__record_reader_free(hd__record_reader_t *r) {
  free(r->rec);
  r->rec = NULL;
  r->rec_len = r->rec_have = 0;
  r->head_len = 0;
  hd__cipher_wipe(&r->cipher);
}

int hd__record_reader_idle(const hd__record_reader_t *r) {
  return r->head_len == 0 && r->rec_len == 0;
}

static int fail(hd__record_reader_t *r, int rc) {
  r->error = rc;
  return rc;
}

static int check_length(hd__record_reader_t *r, size_t len) {
  if (len < HD__RECORD_TAG)
    return fail(r, hd__error(HD_EPROTO, "record shorter than its tag (%zu bytes)", len));
  return 0;
}

/* Decrypts the `len`-byte ciphertext at `ct` in place and hands the plaintext over. */
static int open_record(hd__record_reader_t *r, uint8_t *ct, size_t len) {
  int rc = hd__cipher_decrypt(&r->cipher, NULL, 0, ct, len, ct);
  if (rc == HD_EAUTH)
    return fail(r, hd__error(HD_EAUTH, "record failed authentication (%zu bytes, record %llu)",
                             len, (unsigned long long)r->cipher.n));
  if (rc) return fail(r, rc);
  size_t n = len - HD__RECORD_TAG;
  if ((rc = r->cb(r->ctx, ct, n))) return fail(r, rc);
  return 0;
}

/* The buffer of a cut record grows with the bytes that actually arrived (never past the record's
 * length), so a peer that announces 65535 bytes and sends a few costs a few KiB, not 64. */
static int grow_record(hd__record_reader_t *r, size_t need) {
  if (need <= r->rec_cap) return 0;
  size_t cap = r->rec_cap ? r->rec_cap * 2 : 4096;
  if (cap < need) cap = need;
  if (cap > r->rec_len) cap = r->rec_len;
  uint8_t *grown = realloc(r->rec, cap);
  if (grown == NULL)
    return fail(r, hd__error(HD_ENOMEM, "out of memory for a record of %zu bytes", r->rec_len));
  r->rec = grown;
  r->rec_cap = cap;
  return 0;
}

int hd__record_reader_feed(hd__record_reader_t *r, uint8_t *data, size_t n) {
  if (r->error) return r->error;
  uint8_t *p = data, *end = data + n;
  int rc;
  while (p < end) {
    if (r->rec_len) { /* continue a record cut by a read boundary */
      size_t take = r->rec_len - r->rec_have;
      if (take > (size_t)(end - p)) take = (size_t)(end - p);
      if ((rc = grow_record(r, r->rec_have + take))) return rc;
      memcpy(r->rec + r->rec_have, p, take);
      p += take;
      r->rec_have += take;
      if (r->rec_have < r->rec_len) return 0;
      rc = open_record(r, r->rec, r->rec_len);
      free(r->rec); /* an idle connection keeps no record buffer */
      r->rec = NULL;
      r->rec_len = r->rec_have = r->rec_cap = 0;
      if (rc) return rc;
      continue;
    }
    size_t len;
    if (r->head_len == 1) {
      r->head[1] = *p++;
      r->head_len = 0;
      len = hd__get_u16be(r->head);
    } else if (end - p < HD__RECORD_HEADER) {
      r->head[0] = *p;
      r->head_len = 1;
      return 0;
    } else {
      len = hd__get_u16be(p);
      p += HD__RECORD_HEADER;
    }
    if ((rc = check_length(r, len))) return rc;
    if (len <= (size_t)(end - p)) { /* whole record here: open it in the caller's buffer */
      if ((rc = open_record(r, p, len))) return rc;
      p += len;
    } else {
      r->rec_len = len;
      r->rec_have = (size_t)(end - p);
      if (r->rec_have == 0) return 0; /* the read ended with the header: no buffer, no copy yet */
      if ((rc = grow_record(r, r->rec_have))) return rc;
      memcpy(r->rec, p, r->rec_have);
      return 0;
    }
  }
  return 0;
}

int hd__record_to_msgs(void *msg_reader, uint8_t *pt, size_t len) {
  return hd__msg_reader_feed((hd__msg_reader_t *)msg_reader, pt, len);
}
