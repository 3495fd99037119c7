/* The record layer: sealing, opening in place, records cut by reads, splitting at 65519 bytes,
 * tampering, short records, and the whole receive pipeline (records -> messages). */
#include "harness.h"

#include "record.h"

/* A sending cipher and its receiving twin, keyed alike; `out` (if not NULL): an empty buffer. */
static void cipher_pair(hd__cipher_t *send, hd__cipher_t *recv, hd__buf_t *out) {
  if (out) hd__buf_init(out);
  memset(send, 0, sizeof *send);
  for (int i = 0; i < 32; i++) send->k[i] = (uint8_t)(i * 11 + 3);
  send->has_key = 1;
  *recv = *send;
}

/* Collects every plaintext handed over; optionally checks it lies in the fed buffer. */
typedef struct sink {
  hd__buf_t got;
  size_t calls;
  size_t stop_at;
  const uint8_t *in;
  size_t in_len;
  int outside;
} sink_t;

static int sink_cb(void *ctx, uint8_t *pt, size_t len) {
  sink_t *s = ctx;
  s->calls++;
  if (s->in && !(pt >= s->in && pt + len <= s->in + s->in_len)) s->outside++;
  if (hd__buf_append(&s->got, pt, len)) return HD_ENOMEM;
  return s->calls == s->stop_at ? 77 : 0;
}

static void pattern(uint8_t *p, size_t n, uint32_t seed) {
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1664525u + 1013904223u;
    p[i] = (uint8_t)(seed >> 24);
  }
}

static void seal_open_in_place(void) {
  hd__cipher_t tx, rx;
  hd__buf_t out;
  cipher_pair(&tx, &rx, &out);
  CHECK_OK(hd__record_seal(&tx, (const uint8_t *)"hello", 5, &out));
  CHECK_OK(hd__record_seal(&tx, (const uint8_t *)"world!", 6, &out));
  CHECK_OK(hd__record_seal(&tx, (const uint8_t *)"", 0, &out)); /* nothing to seal */
  CHECK(out.len == 2 + 16 + 5 + 2 + 16 + 6);
  CHECK(out.data[0] == 0 && out.data[1] == 21);
  CHECK(tx.n == 2);
  sink_t s = {0};
  s.in = out.data;
  s.in_len = out.len;
  hd__record_reader_t r;
  CHECK_OK(hd__record_reader_init(&r, &rx, sink_cb, &s));
  CHECK_OK(hd__record_reader_feed(&r, out.data, out.len));
  CHECK(s.calls == 2 && s.outside == 0); /* whole records are opened in the caller's buffer */
  CHECK(s.got.len == 11 && memcmp(s.got.data, "helloworld!", 11) == 0);
  CHECK(hd__record_reader_idle(&r) && r.rec == NULL);
  hd__record_reader_free(&r);
  hd__buf_free(&s.got);
  hd__buf_free(&out);
}

static void split_at_max_plaintext(void) {
  static uint8_t pt[150000];
  pattern(pt, sizeof pt, 1);
  hd__cipher_t tx, rx;
  hd__buf_t out;
  cipher_pair(&tx, &rx, &out);
  CHECK(hd__record_sealed_size(0) == 0);
  CHECK(hd__record_sealed_size(65519) == 65537);
  CHECK(hd__record_sealed_size(65520) == 65537 + 2 + 16 + 1);
  CHECK_OK(hd__record_seal(&tx, pt, sizeof pt, &out));
  CHECK(out.len == hd__record_sealed_size(sizeof pt));
  CHECK(tx.n == 3);
  CHECK(hd__get_u16be(out.data) == 65535);
  CHECK(hd__get_u16be(out.data + 65537) == 65535);
  CHECK(hd__get_u16be(out.data + 2 * 65537) == 150000 - 2 * 65519 + 16);
  sink_t s = {0};
  hd__record_reader_t r;
  CHECK_OK(hd__record_reader_init(&r, &rx, sink_cb, &s));
  /* byte by byte: every record is cut, collected in an exact-size buffer, freed after */
  for (size_t i = 0; i < out.len; i++) {
    CHECK_OK(hd__record_reader_feed(&r, out.data + i, 1));
    CHECK(r.rec == NULL || r.rec_len <= 65535);
  }
  CHECK(s.calls == 3 && s.got.len == sizeof pt && memcmp(s.got.data, pt, sizeof pt) == 0);
  CHECK(hd__record_reader_idle(&r) && r.rec == NULL);
  hd__record_reader_free(&r);
  hd__buf_free(&s.got);
  hd__buf_free(&out);
}

/* Reads that end right after a record's 2-byte header (the header whole in one read, or cut in
 * two): no byte of the record has come, so nothing is collected and no buffer is held (the
 * reader once copied those zero bytes from a NULL buffer, undefined behaviour that UBSan
 * reports); the next read brings the rest and the record opens. Each row: the reads before
 * the last, 0-terminated. */
static void open_after_reads(const size_t *reads, hd__buf_t *out, hd__record_reader_t *r,
                             sink_t *s) {
  size_t off = 0;
  for (; *reads; off += *reads++) {
    CHECK_OK(hd__record_reader_feed(r, out->data + off, *reads));
    CHECK(s->calls == 0 && r->rec == NULL && !hd__record_reader_idle(r));
  }
  CHECK_OK(hd__record_reader_feed(r, out->data + off, out->len - off));
  CHECK(s->calls == 1 && s->got.len == 16 && memcmp(s->got.data, "after the header", 16) == 0);
  CHECK(hd__record_reader_idle(r) && r->rec == NULL);
}

static void read_ends_after_header_row(const size_t *reads) {
  hd__cipher_t tx, rx;
  hd__buf_t out;
  cipher_pair(&tx, &rx, &out);
  sink_t s = {0};
  hd__record_reader_t r;
  CHECK_OK(hd__record_seal(&tx, (const uint8_t *)"after the header", 16, &out));
  CHECK_OK(hd__record_reader_init(&r, &rx, sink_cb, &s));
  open_after_reads(reads, &out, &r, &s);
  hd__record_reader_free(&r);
  hd__buf_free(&s.got);
  hd__buf_free(&out);
}

static const size_t header_whole[] = {2, 0}, header_cut[] = {1, 1, 0};
static void read_ends_after_header(void) { read_ends_after_header_row(header_whole); }
static void read_ends_after_cut_header(void) { read_ends_after_header_row(header_cut); }

/* Messages that span records and records that hold many messages, fed to the whole pipeline
 * in chunks of random sizes (fixed seeds), with an empty record thrown in. */
static int msg_cb(void *ctx, uint8_t type, const uint8_t *body, size_t len) {
  hd__buf_t *got = ctx;
  uint8_t h[HD__VARINT_MAX + 1];
  size_t n = hd__varint_put(h, len + 1);
  h[n++] = type;
  if (hd__buf_append(got, h, n) || hd__buf_append(got, body, len)) return HD_ENOMEM;
  return 0;
}

static void pipeline_random_chunks(void) {
  static uint8_t payload[100000];
  pattern(payload, sizeof payload, 2);
  hd__buf_t plain, wire;
  hd__buf_init(&plain);
  hd__buf_init(&wire);
  uint32_t x = 99;
  for (int i = 0; i < 400; i++) {
    x = x * 1103515245u + 12345u;
    size_t len = (x >> 8) % (i % 50 == 0 ? sizeof payload : 300);
    hd__entry_t e = {(uint64_t)i + 1, 1700000000000ull, payload + (x % 100), len > 99900 ? 99900 : len};
    if (i % 3 == 0) CHECK_OK(hd__msg_encode_events(&plain, &e, 1));
    else if (i % 3 == 1) CHECK_OK(hd__msg_encode_consumed(&plain, &e, 1));
    else CHECK_OK(hd__msg_encode_pong(&plain, x));
  }
  hd__cipher_t tx, rx;
  cipher_pair(&tx, &rx, NULL);
  /* cut the plaintext into records of random sizes: 1 byte up to the maximum */
  size_t off = 0;
  while (off < plain.len) {
    x = x * 1103515245u + 12345u;
    size_t n = (x >> 4) % 3 == 0 ? 1 + (x >> 8) % 7 : 1 + (x >> 8) % HD__RECORD_MAX_PLAINTEXT;
    if (n > plain.len - off) n = plain.len - off;
    CHECK_OK(hd__record_seal(&tx, plain.data + off, n, &wire));
    off += n;
    if (off > plain.len / 2 && off - n <= plain.len / 2) {
      /* an empty record in the middle: allowed, delivers nothing */
      uint8_t rec[2 + 16];
      hd__put_u16be(rec, 16);
      CHECK_OK(hd__cipher_encrypt(&tx, NULL, 0, rec + 2, 0, rec + 2));
      CHECK_OK(hd__buf_append(&wire, rec, sizeof rec));
    }
  }
  uint8_t *copy = malloc(wire.len);
  CHECK(copy != NULL);
  static const size_t maxes[] = {1, 5, 100, 4096, 65536, 200000};
  for (size_t m = 0; m < HD__ARRAY_SIZE(maxes); m++) {
    memcpy(copy, wire.data, wire.len); /* decrypting in place consumes the input */
    hd__buf_t got;
    hd__buf_init(&got);
    hd__msg_reader_t mr;
    hd__record_reader_t rr;
    hd__msg_reader_init(&mr, 1 << 20, msg_cb, &got);
    CHECK_OK(hd__record_reader_init(&rr, &rx, hd__record_to_msgs, &mr));
    uint32_t y = 1000 + (uint32_t)m;
    int rc = 0;
    for (size_t o = 0; o < wire.len && rc == 0;) {
      y ^= y << 13, y ^= y >> 17, y ^= y << 5;
      size_t n = maxes[m] == 1 ? 1 : 1 + y % maxes[m];
      if (n > wire.len - o) n = wire.len - o;
      rc = hd__record_reader_feed(&rr, copy + o, n);
      o += n;
    }
    int same = got.len == plain.len && memcmp(got.data, plain.data, plain.len) == 0;
    int idle = hd__record_reader_idle(&rr) && hd__msg_reader_idle(&mr);
    hd__record_reader_free(&rr);
    hd__msg_reader_free(&mr);
    hd__buf_free(&got);
    if (rc || !same || !idle) free(copy);
    CHECK_OK(rc);
    CHECK(same && idle);
  }
  free(copy);
  hd__buf_free(&plain);
  hd__buf_free(&wire);
}

static void tamper(void) {
  hd__cipher_t tx, rx;
  hd__buf_t out;
  cipher_pair(&tx, &rx, &out);
  CHECK_OK(hd__record_seal(&tx, (const uint8_t *)"attack at dawn", 14, &out));
  size_t len = out.len;
  uint8_t *orig = malloc(len), *b = malloc(len);
  CHECK(orig && b);
  memcpy(orig, out.data, len);
  hd__buf_free(&out);
  int bad = 0;
  /* flip each bit of the ciphertext and the tag: always refused, nothing delivered */
  for (size_t i = 2; i < len && !bad; i++) {
    for (int bit = 0; bit < 8 && !bad; bit++) {
      memcpy(b, orig, len);
      b[i] ^= (uint8_t)(1 << bit);
      sink_t s = {0};
      hd__record_reader_t r;
      hd__record_reader_init(&r, &rx, sink_cb, &s);
      int rc = hd__record_reader_feed(&r, b, len);
      bad = rc != HD_EAUTH || s.calls != 0 || !strstr(hd_last_error_message(), "record failed authentication");
      /* sticky: the genuine record afterwards is refused too */
      memcpy(b, orig, len);
      bad = bad || hd__record_reader_feed(&r, b, len) != HD_EAUTH || s.calls != 0;
      hd__record_reader_free(&r);
    }
  }
  /* a changed length: shorter or longer than the real record */
  memcpy(b, orig, len);
  b[1] = (uint8_t)(b[1] - 1);
  sink_t s = {0};
  hd__record_reader_t r;
  hd__record_reader_init(&r, &rx, sink_cb, &s);
  int rc = hd__record_reader_feed(&r, b, len);
  hd__record_reader_free(&r);
  free(orig);
  free(b);
  CHECK(!bad);
  CHECK_RC(rc, HD_EAUTH);
}

static void short_and_truncated(void) {
  hd__cipher_t tx, rx;
  cipher_pair(&tx, &rx, NULL);
  sink_t s = {0};
  hd__record_reader_t r;
  static const uint8_t lens[][2] = {{0, 0}, {0, 1}, {0, 15}};
  for (size_t i = 0; i < HD__ARRAY_SIZE(lens); i++) {
    uint8_t b[40] = {0};
    memcpy(b, lens[i], 2);
    CHECK_OK(hd__record_reader_init(&r, &rx, sink_cb, &s));
    CHECK_RC(hd__record_reader_feed(&r, b, sizeof b), HD_EPROTO);
    CHECK(strstr(hd_last_error_message(), "record shorter than its tag") != NULL);
    CHECK_RC(hd__record_reader_feed(&r, b, sizeof b), HD_EPROTO); /* sticky */
    hd__record_reader_free(&r);
  }
  /* the short length cut between two reads */
  CHECK_OK(hd__record_reader_init(&r, &rx, sink_cb, &s));
  CHECK_OK(hd__record_reader_feed(&r, (uint8_t[]){0}, 1));
  CHECK(!hd__record_reader_idle(&r));
  CHECK_RC(hd__record_reader_feed(&r, (uint8_t[]){15}, 1), HD_EPROTO);
  hd__record_reader_free(&r);
  /* a stream that ends inside a record: not idle; free releases the partial buffer */
  hd__buf_t out;
  hd__buf_init(&out);
  CHECK_OK(hd__record_seal(&tx, (const uint8_t *)"0123456789", 10, &out));
  CHECK_OK(hd__record_reader_init(&r, &rx, sink_cb, &s));
  CHECK_OK(hd__record_reader_feed(&r, out.data, out.len - 1));
  CHECK(!hd__record_reader_idle(&r) && r.rec != NULL && r.rec_len == 26 && s.calls == 0);
  hd__record_reader_free(&r);
  CHECK(r.rec == NULL);
  hd__buf_free(&out);
  /* a record that is not there at all */
  CHECK_OK(hd__record_reader_init(&r, &rx, sink_cb, &s));
  CHECK_OK(hd__record_reader_feed(&r, NULL, 0));
  CHECK(hd__record_reader_idle(&r));
  hd__record_reader_free(&r);
  hd__buf_free(&s.got);
}

static void callback_stops(void) {
  hd__cipher_t tx, rx;
  hd__buf_t out;
  cipher_pair(&tx, &rx, &out);
  for (int i = 0; i < 4; i++) CHECK_OK(hd__record_seal(&tx, (const uint8_t *)"abc", 3, &out));
  sink_t s = {0};
  s.stop_at = 2;
  hd__record_reader_t r;
  CHECK_OK(hd__record_reader_init(&r, &rx, sink_cb, &s));
  CHECK(hd__record_reader_feed(&r, out.data, out.len) == 77);
  CHECK(s.calls == 2);
  CHECK(hd__record_reader_feed(&r, out.data, out.len) == 77);
  CHECK(s.calls == 2);
  hd__record_reader_free(&r);
  hd__buf_free(&s.got);
  hd__buf_free(&out);
  /* an error from the message layer comes back through the record reader */
  hd__cipher_t tx2, rx2;
  cipher_pair(&tx2, &rx2, &out);
  CHECK_OK(hd__record_seal(&tx2, (const uint8_t *)"\x00", 1, &out));
  hd__buf_t got;
  hd__buf_init(&got);
  hd__msg_reader_t mr;
  hd__msg_reader_init(&mr, 0, msg_cb, &got);
  CHECK_OK(hd__record_reader_init(&r, &rx2, hd__record_to_msgs, &mr));
  CHECK_RC(hd__record_reader_feed(&r, out.data, out.len), HD_EPROTO);
  hd__record_reader_free(&r);
  hd__msg_reader_free(&mr);
  hd__buf_free(&got);
  hd__buf_free(&out);
}

static void needs_a_key(void) {
  hd__cipher_t none = {{0}, 0, 0};
  hd__buf_t out;
  hd__buf_init(&out);
  CHECK_RC(hd__record_seal(&none, (const uint8_t *)"x", 1, &out), HD_EINVAL);
  CHECK(out.len == 0);
  hd__record_reader_t r;
  CHECK_RC(hd__record_reader_init(&r, &none, sink_cb, NULL), HD_EINVAL);
  hd__buf_free(&out);
  /* a worn-out cipher fails the seal and leaves the buffer as it was */
  hd__cipher_t tx, rx;
  cipher_pair(&tx, &rx, NULL);
  tx.n = UINT64_MAX;
  CHECK_OK(hd__buf_append(&out, "keep", 4));
  CHECK_RC(hd__record_seal(&tx, (const uint8_t *)"x", 1, &out), HD_EPROTO);
  CHECK(out.len == 4);
  hd__buf_free(&out);
  CHECK(sizeof(hd__record_reader_t) <= 128);
}

#define TESTS(X)                                                                                  \
  X(seal_open_in_place) X(split_at_max_plaintext) X(read_ends_after_header)                       \
  X(read_ends_after_cut_header) X(pipeline_random_chunks) X(tamper) X(short_and_truncated)        \
  X(callback_stops) X(needs_a_key)
HD_TEST_MAIN(TESTS)
