/* Hot path, message codec (wire.h): ns per event to encode one EVENTS message of N events, to
 * decode it (hd__msg_entries_begin validates the whole body, then hd__msg_entries_next walks it),
 * and to cut it from a decrypted stream and decode it (hd__msg_reader_feed + the same decode in
 * the callback, the receive path). Payloads of 100 B and 1 KiB; N = 1, 10, 100, 1000.
 *
 * Physical references, same run: encoding must copy every payload once, so its reference is
 * memcpy of the N payloads (from N separate buffers, like rows) into one buffer; decoding is
 * zero-copy, and its reference is one memcpy of the whole message (reading its bytes once).
 * Ratio = reference ns / codec ns (1.0 = as fast as the copy; decode may exceed 1 since it
 * does not touch payload bytes). Loops bounded in count and time. */
#include "micro.h"

#include "wire.h"

#include <stdint.h>

static const size_t payloads[] = {100, 1024};
static const size_t counts[] = {1, 10, 100, 1000};
#define TARGET_EVENTS_PER_PASS 20000 /* events per timed pass (a pass repeats the message) */
#define MAX_PASSES 1000000

static volatile uint64_t sink;

typedef struct fixture {
  size_t n, plen;
  hd__entry_t *e;
  uint8_t *store;   /* n payloads, each in its own 64-byte aligned slot */
  hd__buf_t msg;    /* the encoded message */
  const uint8_t *body;
  size_t body_len;
  uint8_t *scratch; /* reference copy target */
} fixture_t;

static void fixture_init(fixture_t *f, size_t n, size_t plen) {
  memset(f, 0, sizeof *f);
  f->n = n;
  f->plen = plen;
  size_t slot = (plen + 63) & ~(size_t)63;
  f->store = aligned_alloc(64, n * slot);
  for (size_t i = 0; i < n * slot; i++) f->store[i] = (uint8_t)(i * 131 + 7);
  f->e = calloc(n, sizeof *f->e);
  for (size_t i = 0; i < n; i++) {
    f->e[i].seq = 1000000 + i;             /* a busy user's sequence numbers: 3-byte varints */
    f->e[i].created_ms = 1764000000000ull + i; /* epoch ms: 6-byte varints */
    f->e[i].data = f->store + i * slot;
    f->e[i].len = plen;
  }
  hd__buf_init(&f->msg);
  MB_CHECK(hd__msg_encode_events(&f->msg, f->e, n) == 0, "encode");
  uint64_t l;
  int k = hd__varint_get(f->msg.data, f->msg.len, &l);
  MB_CHECK(k > 0 && f->msg.data[k] == HD__MSG_EVENTS && (size_t)k + l == f->msg.len, "frame");
  f->body = f->msg.data + k + 1;
  f->body_len = (size_t)l - 1;
  f->scratch = aligned_alloc(64, (f->msg.len + 63) & ~(size_t)63);
}

static void fixture_free(fixture_t *f) {
  free(f->store);
  free(f->e);
  free(f->scratch);
  hd__buf_free(&f->msg);
}

static size_t reps_per_pass(const fixture_t *f) {
  size_t r = TARGET_EVENTS_PER_PASS / f->n;
  return r ? r : 1;
}

/* Each runner returns ns per event. */
static double run_encode(fixture_t *f, hd__buf_t *out, double secs) {
  size_t rpp = reps_per_pass(f), events = 0;
  double busy = 0, t_end = mb_now() + secs;
  for (int pass = 0; pass < MAX_PASSES && (pass == 0 || mb_now() < t_end); pass++) {
    double t0 = mb_now();
    for (size_t r = 0; r < rpp; r++) {
      out->len = 0;
      MB_CHECK(hd__msg_encode_events(out, f->e, f->n) == 0, "encode");
    }
    busy += mb_now() - t0;
    sink += out->data[out->len - 1];
    events += rpp * f->n;
  }
  return busy * 1e9 / (double)events;
}

static double run_copy_payloads(fixture_t *f, double secs) {
  size_t rpp = reps_per_pass(f), events = 0;
  double busy = 0, t_end = mb_now() + secs;
  for (int pass = 0; pass < MAX_PASSES && (pass == 0 || mb_now() < t_end); pass++) {
    double t0 = mb_now();
    for (size_t r = 0; r < rpp; r++) {
      uint8_t *p = f->scratch;
      for (size_t i = 0; i < f->n; i++) {
        memcpy(p, f->e[i].data, f->e[i].len);
        p += f->e[i].len;
      }
      __asm__ volatile("" : : "r"(f->scratch) : "memory");
    }
    busy += mb_now() - t0;
    events += rpp * f->n;
  }
  return busy * 1e9 / (double)events;
}

static uint64_t decode_body(const uint8_t *body, size_t len, size_t want) {
  hd__entry_iter_t it;
  uint64_t count, acc = 0;
  MB_CHECK(hd__msg_entries_begin(&it, HD__MSG_EVENTS, body, len, &count) == 0 && count == want,
           "decode");
  hd__entry_t e;
  while (hd__msg_entries_next(&it, &e)) acc += e.seq + e.len + e.data[0];
  return acc;
}

static double run_decode(fixture_t *f, double secs) {
  size_t rpp = reps_per_pass(f), events = 0;
  double busy = 0, t_end = mb_now() + secs;
  uint64_t acc = 0;
  for (int pass = 0; pass < MAX_PASSES && (pass == 0 || mb_now() < t_end); pass++) {
    double t0 = mb_now();
    for (size_t r = 0; r < rpp; r++) acc += decode_body(f->body, f->body_len, f->n);
    busy += mb_now() - t0;
    events += rpp * f->n;
  }
  sink += acc;
  return busy * 1e9 / (double)events;
}

typedef struct rd_ctx {
  size_t want;
  uint64_t acc;
  size_t msgs;
} rd_ctx_t;

static int on_msg(void *ctx, uint8_t type, const uint8_t *body, size_t len) {
  rd_ctx_t *c = ctx;
  MB_CHECK(type == HD__MSG_EVENTS, "type");
  c->acc += decode_body(body, len, c->want);
  c->msgs++;
  return 0;
}

static double run_read_decode(fixture_t *f, double secs) {
  size_t rpp = reps_per_pass(f), events = 0;
  double busy = 0, t_end = mb_now() + secs;
  rd_ctx_t c = {f->n, 0, 0};
  hd__msg_reader_t r;
  hd__msg_reader_init(&r, 4u << 20, on_msg, &c);
  for (int pass = 0; pass < MAX_PASSES && (pass == 0 || mb_now() < t_end); pass++) {
    double t0 = mb_now();
    for (size_t k = 0; k < rpp; k++)
      MB_CHECK(hd__msg_reader_feed(&r, f->msg.data, f->msg.len) == 0, "feed");
    busy += mb_now() - t0;
    events += rpp * f->n;
  }
  MB_CHECK(c.msgs * f->n == events, "messages");
  hd__msg_reader_free(&r);
  sink += c.acc;
  return busy * 1e9 / (double)events;
}

static double run_copy_message(fixture_t *f, double secs) {
  size_t rpp = reps_per_pass(f), events = 0;
  double busy = 0, t_end = mb_now() + secs;
  for (int pass = 0; pass < MAX_PASSES && (pass == 0 || mb_now() < t_end); pass++) {
    double t0 = mb_now();
    for (size_t r = 0; r < rpp; r++) {
      memcpy(f->scratch, f->msg.data, f->msg.len);
      __asm__ volatile("" : : "r"(f->scratch) : "memory");
    }
    busy += mb_now() - t0;
    events += rpp * f->n;
  }
  return busy * 1e9 / (double)events;
}

int main(void) {
  int reps = mb_reps();
  double secs = mb_seconds(0.3) / 2;
  for (size_t pi = 0; pi < sizeof payloads / sizeof payloads[0]; pi++) {
    for (size_t ni = 0; ni < sizeof counts / sizeof counts[0]; ni++) {
      fixture_t f;
      fixture_init(&f, counts[ni], payloads[pi]);
      hd__buf_t out;
      hd__buf_init(&out);
      double enc[MB_MAX_REPS], cpy[MB_MAX_REPS], dec[MB_MAX_REPS], rdd[MB_MAX_REPS],
          cpm[MB_MAX_REPS];
      run_encode(&f, &out, secs / 4); /* warm up; grows `out` once */
      for (int r = 0; r < reps; r++) {
        cpy[r] = run_copy_payloads(&f, secs);
        enc[r] = run_encode(&f, &out, secs);
        cpm[r] = run_copy_message(&f, secs);
        dec[r] = run_decode(&f, secs);
        rdd[r] = run_read_decode(&f, secs);
      }
      char param[32];
      snprintf(param, sizeof param, "n=%zu", f.n);
      mb_row("codec", "encode", param, (long)f.plen, "ns/event", enc, "memcpy_payloads", cpy,
             reps, 0, "hd__msg_encode_events into a reused hd__buf_t");
      mb_row("codec", "decode", param, (long)f.plen, "ns/event", dec, "memcpy_message", cpm, reps,
             0, "hd__msg_entries_begin (validates) + next");
      mb_row("codec", "read_decode", param, (long)f.plen, "ns/event", rdd, "memcpy_message", cpm,
             reps, 0, "hd__msg_reader_feed + decode in the callback");
      hd__buf_free(&out);
      fixture_free(&f);
    }
  }
  return 0;
}
