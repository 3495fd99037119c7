/* The record reader (proto/record.h) on a stream of records sealed by a real transport cipher
 * (fz_cipher_pair), with garbage and flipped bits mixed in as the input says, fed in chunks cut
 * where the input says. It must never crash; what it hands over must be exactly the plaintext of
 * the intact records before the first damage (a forged record is never accepted), in order; a
 * clean stream must end with no error and the reader idle, a damaged one with HD_EAUTH or
 * HD_EPROTO or the reader still waiting; and a callback that fails stops it for good.
 *
 * Input: a byte for how many chunk sizes are read from the back, a byte for the record whose
 * callback fails (0: none), then operations until the input ends: seal a record of input bytes,
 * seal a large plaintext of one byte value (two records past 65519 bytes), append raw bytes,
 * flip bits in the last record. */
#include "fuzz_util.h"

#include <stdlib.h>
#include <string.h>

#define WIRE_MAX (256 * 1024) /* keeps one input's work bounded */
#define STOP_RC 4242
#define MAX_FLIPS 64

typedef struct expect {
  hd__buf_t pt;      /* the plaintext of every record sealed, in order */
  size_t good_pt;    /* ... of which this much is in records before the first damage */
  size_t delivered;
  int calls, stop_at;
} expect_t;

static int on_record(void *ctx, uint8_t *pt, size_t len) {
  expect_t *x = ctx;
  FZ_CHECK(len <= HD__RECORD_MAX_PLAINTEXT); /* an empty record is handed over too */
  /* only intact records' plaintext, in order */
  FZ_CHECK(x->delivered + len <= x->good_pt);
  FZ_CHECK(len == 0 || memcmp(pt, x->pt.data + x->delivered, len) == 0);
  x->delivered += len;
  return ++x->calls == x->stop_at ? STOP_RC : 0;
}

static int feed(void *ctx, uint8_t *chunk, size_t len) {
  return hd__record_reader_feed(ctx, chunk, len);
}

/* Where each sealed record ends, on the wire and in the plaintext. */
typedef struct records {
  size_t (*end)[2];
  size_t n, cap;
} records_t;

static void add_record(records_t *rs, size_t wire_end, size_t pt_end) {
  if (rs->n == rs->cap) {
    rs->cap = rs->cap ? 2 * rs->cap : 64;
    rs->end = realloc(rs->end, rs->cap * sizeof *rs->end);
    FZ_CHECK(rs->end != NULL);
  }
  rs->end[rs->n][0] = wire_end;
  rs->end[rs->n][1] = pt_end;
  rs->n++;
}

/* Appends `len` plaintext bytes to `wire` as records (an empty record too: a tag only). */
static void seal(hd__cipher_t *tx, const uint8_t *pt, size_t len, hd__buf_t *wire, expect_t *x,
                 records_t *rs) {
  size_t start = wire->len;
  if (len == 0) {
    uint8_t rec[HD__RECORD_HEADER + HD__RECORD_TAG];
    hd__put_u16be(rec, HD__RECORD_TAG);
    FZ_CHECK(hd__cipher_encrypt(tx, NULL, 0, rec, 0, rec + HD__RECORD_HEADER) == 0);
    FZ_CHECK(hd__buf_append(wire, rec, sizeof rec) == 0);
  } else {
    FZ_CHECK(hd__record_seal(tx, pt, len, wire) == 0);
    FZ_CHECK(wire->len - start == hd__record_sealed_size(len));
  }
  size_t pt_end = x->pt.len;
  for (size_t off = start; off < wire->len;) {
    size_t clen = hd__get_u16be(wire->data + off);
    FZ_CHECK(clen >= HD__RECORD_TAG && off + HD__RECORD_HEADER + clen <= wire->len);
    off += HD__RECORD_HEADER + clen;
    pt_end += clen - HD__RECORD_TAG;
    add_record(rs, off, pt_end);
  }
  FZ_CHECK(hd__buf_append(&x->pt, pt, len) == 0 && x->pt.len == pt_end);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_in_t in = {data, size};
  fz_in_t sizes = fz_tail(&in, fz_u8(&in) % 64);
  expect_t x;
  memset(&x, 0, sizeof x);
  x.stop_at = fz_u8(&in) % 8;
  hd__cipher_t tx, rx;
  fz_cipher_pair(&tx, &rx);
  hd__buf_t wire;
  hd__buf_init(&wire);
  records_t rs = {NULL, 0, 0};
  size_t damage = SIZE_MAX; /* wire offset of the first raw byte, then of any damage */
  uint8_t *big = NULL;
  size_t flips[MAX_FLIPS][2], n_flips = 0; /* offset, byte before */
  while (in.n > 0 && wire.len < WIRE_MAX) {
    uint8_t op = fz_u8(&in) % 4;
    size_t len;
    if (op == 0) {
      const uint8_t *pt = fz_take(&in, fz_u8(&in), &len);
      seal(&tx, pt, len, &wire, &x, &rs);
    } else if (op == 1) {
      len = fz_u16(&in);
      big = realloc(big, len ? len : 1);
      FZ_CHECK(big != NULL);
      memset(big, fz_u8(&in), len);
      seal(&tx, big, len, &wire, &x, &rs);
    } else if (op == 2) {
      const uint8_t *raw = fz_take(&in, fz_u8(&in) % 8 + 1, &len);
      if (len && wire.len < damage) damage = wire.len;
      FZ_CHECK(hd__buf_append(&wire, raw, len) == 0);
    } else if (rs.n > 0) { /* flip bits in the last record */
      size_t end = rs.end[rs.n - 1][0], pt_len = rs.end[rs.n - 1][1];
      if (rs.n > 1) pt_len -= rs.end[rs.n - 2][1];
      size_t start = end - HD__RECORD_HEADER - HD__RECORD_TAG - pt_len;
      size_t at = start + fz_u16(&in) % (end - start);
      if (n_flips < MAX_FLIPS) {
        flips[n_flips][0] = at;
        flips[n_flips++][1] = wire.data[at];
        wire.data[at] ^= fz_u8(&in) | 1;
      }
    }
  }
  /* flips of one byte may cancel out: a byte is damaged if it differs from before its first */
  for (size_t i = 0; i < n_flips; i++) {
    size_t at = flips[i][0], first = 0;
    while (flips[first][0] != at) first++;
    if (first == i && wire.data[at] != flips[i][1] && at < damage) damage = at;
  }
  free(big);
  /* the plaintext of the records that end before the damage */
  x.good_pt = 0;
  for (size_t i = 0; i < rs.n && rs.end[i][0] <= damage; i++) x.good_pt = rs.end[i][1];
  free(rs.end);

  hd__record_reader_t r;
  FZ_CHECK(hd__record_reader_init(&r, &rx, on_record, &x) == 0);
  int rc = fz_feed_chunks(wire.data, wire.len, &sizes, feed, &r);
  if (x.stop_at != 0 && x.calls == x.stop_at) {
    FZ_CHECK(rc == STOP_RC);
  } else if (damage == SIZE_MAX) {
    FZ_CHECK(rc == 0 && hd__record_reader_idle(&r) && x.delivered == x.pt.len);
  } else {
    FZ_CHECK(rc == 0 || rc == HD_EAUTH || rc == HD_EPROTO);
    FZ_CHECK(rc != 0 || !hd__record_reader_idle(&r));
    FZ_CHECK(x.delivered == x.good_pt);
  }
  hd__record_reader_free(&r);
  hd__buf_free(&wire);
  hd__buf_free(&x.pt);
  return 0;
}
