/* The message stream reader (hd__msg_reader, proto/wire.h) fed an arbitrary stream in chunks cut
 * where the input says, under a limit the input picks: it must hand over exactly the messages a
 * one-pass reading of the whole stream finds, in order, stop with that reading's error
 * (HD_EPROTO for a bad or zero length, HD_EMSGSIZE above the limit), stop at once when its
 * callback says so, and be idle at the end exactly when the stream ends between messages.
 *
 * Input: a byte for the limit, a byte for the message at which the callback stops (0: never),
 * a byte for how many chunk sizes are read from the back; the rest is the stream. */
#include "fuzz_util.h"

#include <stdlib.h>
#include <string.h>

typedef struct expect {
  const uint8_t *stream;
  size_t n;
  uint64_t max;
  size_t off;    /* where the next expected message starts */
  size_t got;    /* messages handed over */
  size_t stop_at; /* the callback fails on this message (1-based; 0: never) */
} expect_t;

#define STOP_RC 12345

/* One-pass reading of the stream from `off`: the next message's length prefix size and L; 0 if
 * the stream ends inside the prefix; an error code if it is bad. */
static int next_message(const expect_t *x, size_t off, int *k, uint64_t *l) {
  *k = hd__varint_get(x->stream + off, x->n - off, l);
  if (*k == HD__VARINT_SHORT) return 0;
  if (*k < 0 || *l == 0) return HD_EPROTO;
  if (*l > x->max) return HD_EMSGSIZE;
  return 1;
}

static int on_msg(void *ctx, uint8_t type, const uint8_t *body, size_t len) {
  expect_t *x = ctx;
  int k;
  uint64_t l;
  FZ_CHECK(next_message(x, x->off, &k, &l) == 1);
  FZ_CHECK(l == len + 1 && l <= x->n - x->off - (size_t)k);
  const uint8_t *m = x->stream + x->off + k;
  FZ_CHECK(type == m[0] && (len == 0 || memcmp(body, m + 1, len) == 0));
  x->off += (size_t)k + (size_t)l;
  x->got++;
  return x->got == x->stop_at ? STOP_RC : 0;
}

static int feed(void *ctx, uint8_t *chunk, size_t len) {
  return hd__msg_reader_feed(ctx, chunk, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_in_t in = {data, size};
  static const uint64_t limits[] = {1, 2, 3, 16, 127, 128, 300, 4096, 70000, 0};
  uint64_t max = limits[fz_u8(&in) % HD__ARRAY_SIZE(limits)];
  size_t stop_at = fz_u8(&in) % 8;
  fz_in_t sizes = fz_tail(&in, fz_u8(&in) % 32);

  expect_t x = {in.p, in.n, max ? max : HD__DEFAULT_MAX_MESSAGE, 0, 0, stop_at};
  hd__msg_reader_t r;
  hd__msg_reader_init(&r, max, on_msg, &x);
  int rc = fz_feed_chunks(in.p, in.n, &sizes, feed, &r);

  /* what the one-pass reading says after the messages handed over */
  int k;
  uint64_t l;
  int next = x.off < x.n ? next_message(&x, x.off, &k, &l) : 0;
  if (x.stop_at != 0 && x.got == x.stop_at) {
    FZ_CHECK(rc == STOP_RC);
  } else if (next < 0) {
    FZ_CHECK(rc == next);
  } else {
    FZ_CHECK(rc == 0);
    /* the rest is a message cut short (or a cut prefix): the reader holds it */
    FZ_CHECK(hd__msg_reader_idle(&r) == (x.off == x.n));
    FZ_CHECK(next == 0 || (size_t)k + l > x.n - x.off);
  }
  FZ_CHECK(hd__msg_reader_feed(&r, (const uint8_t *)"", 0) == rc); /* sticky */
  hd__msg_reader_free(&r);
  return 0;
}
