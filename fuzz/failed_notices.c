/* The messages and fields added to version 1 for the queue semantics (docs/PROTOCOL.md
 * "Features", FAILED, NOTICES): beyond what `messages` checks of every decoder, the rules of their
 * own, each fed from the input:
 *
 *   0  a FAILED body: a body that decodes has reasons of at most 1024 bytes that FAILED's encoder
 *      takes back (valid UTF-8), re-encodes to exactly its bytes, and hd__msg_failed_fit takes
 *      exactly its entries under its own L and one fewer under L - 1;
 *   1  a NOTICES body: a body that decodes re-encodes to its bytes, and each entry's last four
 *      varints are exactly hd__notice_encode of its notice (the stored payload), which decodes
 *      back;
 *   2  FAILED entries built from the input (seq, attempts, a reason of up to 1100 arbitrary
 *      bytes): the encoder refuses (HD_EINVAL, writing nothing) exactly the reasons the decoder
 *      refuses in a body built by hand from the same entries, and what it writes decodes back;
 *   3  arbitrary bytes to hd__notice_decode: accepted exactly when they are four minimal varints
 *      (they then re-encode to themselves), else HD_EPROTO;
 *   4  a HELLO (or, with the next byte odd, a WELCOME with an epoch) of fixed valid fields
 *      followed by the input's bytes: never refused; features are the value of the varint the
 *      bytes begin with when it is valid, else 0 (and a WELCOME cut before its epoch has none).
 *
 * Input: a selector byte, then what it feeds. */
#include "fuzz_util.h"

#include <stdlib.h>
#include <string.h>

/* Decodes the batch `type` body; *e (malloc'd, count entries) on success. */
static int decode(uint8_t type, const uint8_t *body, size_t len, hd__entry_t **e, size_t *n) {
  hd__entry_iter_t it;
  uint64_t count;
  int rc = hd__msg_entries_begin(&it, type, body, len, &count);
  FZ_CHECK(rc == hd__msg_check(type, body, len));
  if (rc != 0) {
    FZ_CHECK(rc == HD_EPROTO && strstr(hd_last_error_message(), hd__msg_type_name(type)));
    return rc;
  }
  FZ_CHECK(count <= len);
  *e = malloc((count ? count : 1) * sizeof **e);
  FZ_CHECK(*e != NULL);
  *n = 0;
  while (hd__msg_entries_next(&it, &(*e)[*n])) (*n)++;
  FZ_CHECK(*n == count);
  return 0;
}

/* `out` holds one message of `type` whose body is exactly `body`. */
static void check_framed(const hd__buf_t *out, uint8_t type, const uint8_t *body, size_t len) {
  hd__buf_t want;
  hd__buf_init(&want);
  fz_frame(&want, type, body, len);
  FZ_CHECK(out->len == want.len && memcmp(out->data, want.data, want.len) == 0);
  hd__buf_free(&want);
}

static void failed_body(const uint8_t *body, size_t len) {
  hd__entry_t *e;
  size_t n;
  if (decode(HD__MSG_FAILED, body, len, &e, &n) != 0) return;
  for (size_t i = 0; i < n; i++) {
    FZ_CHECK(e[i].len <= HD__REASON_MAX && e[i].created_ms == 0 && e[i].notice.kind == 0);
    FZ_CHECK(e[i].len == 0 || (e[i].data >= body && e[i].data + e[i].len <= body + len));
  }
  hd__buf_t out;
  hd__buf_init(&out);
  FZ_CHECK(hd__msg_encode_failed(&out, e, n) == 0);
  check_framed(&out, HD__MSG_FAILED, body, len);
  uint64_t l = (uint64_t)len + 1;
  FZ_CHECK(hd__msg_failed_fit(e, n, l) == n);
  FZ_CHECK(n == 0 || hd__msg_failed_fit(e, n, l - 1) < n);
  hd__buf_free(&out);
  free(e);
}

static void notices_body(const uint8_t *body, size_t len) {
  hd__entry_t *e;
  size_t n;
  if (decode(HD__MSG_NOTICES, body, len, &e, &n) != 0) return;
  /* walk the body again: after seq and created_unix_ms, the stored payload */
  const uint8_t *p = body, *end = body + len;
  uint64_t v;
  p += hd__varint_get(p, (size_t)(end - p), &v);
  for (size_t i = 0; i < n; i++) {
    FZ_CHECK(e[i].len == 0 && e[i].attempts == 0);
    for (int k = 0; k < 2; k++) p += hd__varint_get(p, (size_t)(end - p), &v);
    uint8_t stored[HD__NOTICE_MAX];
    size_t sl = hd__notice_encode(&e[i].notice, stored);
    FZ_CHECK(sl <= (size_t)(end - p) && memcmp(stored, p, sl) == 0);
    hd__notice_t back;
    FZ_CHECK(hd__notice_decode(p, sl, &back) == 0);
    FZ_CHECK(memcmp(&back, &e[i].notice, sizeof back) == 0);
    p += sl;
  }
  FZ_CHECK(p == end);
  hd__buf_t out;
  hd__buf_init(&out);
  FZ_CHECK(hd__msg_encode_notices(&out, e, n) == 0);
  check_framed(&out, HD__MSG_NOTICES, body, len);
  hd__buf_free(&out);
  free(e);
}

/* Entries from the input: count (0..7), then per entry seq, attempts and a reason whose length
 * is two bytes (0..1100, so that both sides of 1024 come up). */
static void failed_entries(fz_in_t *in) {
  hd__entry_t e[8];
  size_t n = fz_u8(in) % 8;
  for (size_t i = 0; i < n; i++) {
    memset(&e[i], 0, sizeof e[i]);
    e[i].seq = fz_u64(in);
    e[i].attempts = fz_u8(in) & 0x80 ? fz_u64(in) : fz_u8(in);
    e[i].data = fz_take(in, fz_u16(in) % 1101, &e[i].len);
  }
  /* the body built by hand, whatever the reasons hold */
  hd__buf_t body;
  hd__buf_init(&body);
  uint8_t v[HD__VARINT_MAX];
  FZ_CHECK(hd__buf_append(&body, v, hd__varint_put(v, n)) == 0);
  for (size_t i = 0; i < n; i++) {
    FZ_CHECK(hd__buf_append(&body, v, hd__varint_put(v, e[i].seq)) == 0);
    FZ_CHECK(hd__buf_append(&body, v, hd__varint_put(v, e[i].attempts)) == 0);
    FZ_CHECK(hd__buf_append(&body, v, hd__varint_put(v, e[i].len)) == 0);
    FZ_CHECK(e[i].len == 0 || hd__buf_append(&body, e[i].data, e[i].len) == 0);
  }
  int accepted = hd__msg_check(HD__MSG_FAILED, body.data, body.len);
  FZ_CHECK(accepted == 0 || accepted == HD_EPROTO);
  hd__buf_t out;
  hd__buf_init(&out);
  int rc = hd__msg_encode_failed(&out, e, n);
  if (accepted == 0) {
    FZ_CHECK(rc == 0);
    check_framed(&out, HD__MSG_FAILED, body.data, body.len);
  } else {
    FZ_CHECK(rc == HD_EINVAL && out.len == 0);
  }
  hd__buf_free(&out);
  hd__buf_free(&body);
}

/* Four minimal varints and nothing else, read independently of the codec's cursor. */
static void notice_payload(const uint8_t *p, size_t len) {
  hd__notice_t n;
  int rc = hd__notice_decode(p, len, &n);
  size_t off = 0;
  int fields = 0, ok = 1;
  uint64_t v;
  while (ok && fields < 4) {
    int k = hd__varint_get(p + off, len - off, &v);
    if (k <= 0) ok = 0;
    else off += (size_t)k, fields++;
  }
  ok = ok && off == len;
  FZ_CHECK(rc == (ok ? 0 : HD_EPROTO));
  if (rc == 0) {
    uint8_t back[HD__NOTICE_MAX];
    FZ_CHECK(hd__notice_encode(&n, back) == len && memcmp(back, p, len) == 0);
  }
}

static void handshake_tail(int welcome, const uint8_t *tail, size_t tn) {
  uint8_t buf[HD__WELCOME_MAX + 64];
  size_t base;
  if (welcome) {
    hd__welcome_t w = {.version = 1, .pause_ms = 1000, .max_message_bytes = 1048576,
                       .keepalive_ms = 5000, .has_epoch = 1};
    base = hd__welcome_encode(&w, buf) - HD_STORE_ID_BYTES; /* the epoch comes from the input */
  } else {
    hd__hello_t h = {.version = 1, .max_message_bytes = 1048576};
    base = hd__hello_encode(&h, buf);
  }
  if (tn > sizeof buf - base) tn = sizeof buf - base;
  uint8_t *p = malloc(base + tn); /* exactly its size: a read past it is ASan's */
  FZ_CHECK(p != NULL);
  memcpy(p, buf, base);
  if (tn) memcpy(p + base, tail, tn);
  uint64_t want = 0, v;
  size_t at = welcome ? HD_STORE_ID_BYTES : 0; /* where features begin in the tail */
  if (tn > at && hd__varint_get(tail + at, tn - at, &v) > 0) want = v;
  if (welcome) {
    hd__welcome_t d;
    FZ_CHECK(hd__welcome_decode(p, base + tn, &d) == 0);
    FZ_CHECK(d.has_epoch == (tn >= HD_STORE_ID_BYTES) && d.features == want);
    FZ_CHECK(!d.has_epoch || memcmp(d.epoch, tail, HD_STORE_ID_BYTES) == 0);
  } else {
    hd__hello_t d;
    FZ_CHECK(hd__hello_decode(p, base + tn, &d) == 0);
    FZ_CHECK(d.features == want && d.max_message_bytes == 1048576);
  }
  free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  fz_in_t in = {data + 1, size - 1};
  /* the body in a buffer of its own size, so that a read past it is ASan's */
  uint8_t *body = malloc(in.n ? in.n : 1);
  FZ_CHECK(body != NULL);
  if (in.n) memcpy(body, in.p, in.n);
  switch (data[0] % 5) {
    case 0: failed_body(body, in.n); break;
    case 1: notices_body(body, in.n); break;
    case 2: failed_entries(&in); break;
    case 3: notice_payload(body, in.n); break;
    default: handshake_tail(in.n && (body[0] & 1), in.n ? body + 1 : body, in.n ? in.n - 1 : 0);
  }
  free(body);
  return 0;
}
