/* Every message decoder of proto/wire.h on a type byte and an arbitrary body: hd__msg_check
 * agrees with the type's own decoder, a refusal is HD_EPROTO with a detail naming the message,
 * and a body that decodes re-encodes (with the type's encoder) to exactly the bytes it was read
 * from. Batch bodies also check the size and fit helpers, and EVENTS goes through the streaming
 * EVENTS writer under several limits: every message it cuts stays within the limit and the
 * messages decode back to the same entries. */
#include "fuzz_util.h"

#include <stdlib.h>
#include <string.h>

static void check_same(const hd__buf_t *got, uint8_t type, const uint8_t *body, size_t len) {
  hd__buf_t want;
  hd__buf_init(&want);
  fz_frame(&want, type, body, len);
  FZ_CHECK(got->len == want.len && memcmp(got->data, want.data, want.len) == 0);
  hd__buf_free(&want);
}

/* Splits whole messages in `b` (from `off`) into (type, body) and hands each over. */
static size_t walk(const hd__buf_t *b, size_t off, uint64_t max,
                   void (*fn)(void *ud, uint8_t type, const uint8_t *body, size_t len), void *ud) {
  size_t n = 0;
  while (off < b->len) {
    uint64_t l;
    int k = hd__varint_get(b->data + off, b->len - off, &l);
    FZ_CHECK(k > 0 && l >= 1 && l <= max && l <= b->len - off - (size_t)k);
    fn(ud, b->data[off + k], b->data + off + k + 1, (size_t)l - 1);
    off += (size_t)k + (size_t)l;
    n++;
  }
  return n;
}

typedef struct replay {
  const hd__entry_t *e; /* the entries the messages must hold, in order */
  size_t n, next;
} replay_t;

static void replay_one(void *ud, uint8_t type, const uint8_t *body, size_t len) {
  replay_t *r = ud;
  hd__entry_iter_t it;
  uint64_t count;
  hd__entry_t e;
  FZ_CHECK(type == HD__MSG_EVENTS);
  FZ_CHECK(hd__msg_entries_begin(&it, type, body, len, &count) == 0 && count > 0);
  while (hd__msg_entries_next(&it, &e)) {
    FZ_CHECK(r->next < r->n);
    const hd__entry_t *w = &r->e[r->next++];
    FZ_CHECK(e.seq == w->seq && e.created_ms == w->created_ms && e.len == w->len);
    FZ_CHECK(e.len == 0 || memcmp(e.data, w->data, e.len) == 0);
  }
}

/* The EVENTS writer with limit `max` and header guess `room` (0: its own guess). */
static void check_writer(const hd__entry_t *e, size_t n, uint64_t max, size_t room) {
  hd__buf_t out;
  hd__buf_init(&out);
  hd__events_writer_t w;
  hd__events_writer_init(&w, &out, max, room);
  int too_big = 0;
  for (size_t i = 0; i < n && !too_big; i++) {
    int rc = hd__events_writer_add(&w, e[i].seq, e[i].created_ms, e[i].data, e[i].len);
    if (rc == HD__EVENTS_FULL) {
      FZ_CHECK(hd__events_writer_finish(&w) == 1);
      rc = hd__events_writer_add(&w, e[i].seq, e[i].created_ms, e[i].data, e[i].len);
    }
    if (rc == HD_EMSGSIZE) {
      /* only an entry too big for any message within the limit: one of that entry alone (its
       * type, a count of one byte, the entry) */
      size_t es = hd__varint_len(e[i].seq) + hd__varint_len(e[i].created_ms) +
                  hd__varint_len(e[i].len) + e[i].len;
      FZ_CHECK(1 + 1 + es > max);
      too_big = 1;
      break;
    }
    FZ_CHECK(rc == 0);
  }
  FZ_CHECK(hd__events_writer_finish(&w) >= 0);
  if (!too_big) {
    replay_t r = {e, n, 0};
    walk(&out, 0, max, replay_one, &r);
    FZ_CHECK(r.next == n);
  }
  hd__buf_free(&out);
}

/* EVENTS, CONSUMED, DONE, FAILED, NOTICES. */
static void check_batch(uint8_t type, const uint8_t *body, size_t len, int checked) {
  hd__entry_iter_t it;
  uint64_t count;
  int rc = hd__msg_entries_begin(&it, type, body, len, &count);
  FZ_CHECK(rc == checked);
  if (rc != 0) return;
  FZ_CHECK(count <= len);
  hd__entry_t *e = malloc((count ? count : 1) * sizeof *e);
  uint64_t *seqs = malloc((count ? count : 1) * sizeof *seqs);
  FZ_CHECK(e != NULL && seqs != NULL);
  size_t n = 0;
  while (hd__msg_entries_next(&it, &e[n])) {
    FZ_CHECK(n < count);
    seqs[n] = e[n].seq;
    n++;
  }
  FZ_CHECK(n == count && hd__msg_entries_next(&it, &e[0]) == 0);
  hd__buf_t out;
  hd__buf_init(&out);
  uint64_t l = (uint64_t)len + 1;
  if (type == HD__MSG_EVENTS) {
    FZ_CHECK(hd__msg_encode_events(&out, e, n) == 0);
    FZ_CHECK(hd__msg_events_size(e, n) == out.len);
    FZ_CHECK(hd__msg_events_fit(e, n, l) == n && (n == 0 || hd__msg_events_fit(e, n, l - 1) < n));
    /* the writer under the message's own limit, tighter ones, and wrong header guesses */
    check_writer(e, n, l, 0);
    check_writer(e, n, l / 2 + 1, 0);
    check_writer(e, n, 24 + len % 40, 1);
    check_writer(e, n, UINT64_MAX, 2 * HD__VARINT_MAX + 1);
  } else if (type == HD__MSG_CONSUMED) {
    FZ_CHECK(hd__msg_encode_consumed(&out, e, n) == 0);
    FZ_CHECK(hd__msg_consumed_size(e, n) == out.len);
    FZ_CHECK(hd__msg_consumed_fit(e, n, l) == n &&
             (n == 0 || hd__msg_consumed_fit(e, n, l - 1) < n));
  } else if (type == HD__MSG_FAILED) {
    FZ_CHECK(hd__msg_encode_failed(&out, e, n) == 0);
    FZ_CHECK(hd__msg_failed_fit(e, n, l) == n && (n == 0 || hd__msg_failed_fit(e, n, l - 1) < n));
  } else if (type == HD__MSG_NOTICES) {
    FZ_CHECK(hd__msg_encode_notices(&out, e, n) == 0);
  } else {
    FZ_CHECK(type == HD__MSG_DONE);
    FZ_CHECK(hd__msg_encode_done(&out, seqs, n) == 0);
    FZ_CHECK(hd__msg_done_fit(seqs, n, l) == n && (n == 0 || hd__msg_done_fit(seqs, n, l - 1) < n));
  }
  check_same(&out, type, body, len);
  hd__buf_free(&out);
  free(e);
  free(seqs);
}

static int encode_varint_msg(hd__buf_t *out, uint8_t type, uint64_t v) {
  switch (type) {
    case HD__MSG_CREDIT: return hd__msg_encode_credit(out, v);
    case HD__MSG_PAUSE: return hd__msg_encode_pause(out, v);
    case HD__MSG_PING: return hd__msg_encode_ping(out, v);
    default: return hd__msg_encode_pong(out, v);
  }
}

/* The single-value messages: RESUME, CREDIT/PAUSE/PING/PONG, BYE. Returns the decoder's rc. */
static int check_single(uint8_t type, const uint8_t *body, size_t len) {
  hd__buf_t out;
  hd__buf_init(&out);
  int rc;
  if (type == HD__MSG_RESUME) {
    hd__resume_t r;
    if ((rc = hd__msg_decode_resume(body, len, &r)) == 0)
      FZ_CHECK(hd__msg_encode_resume(&out, &r) == 0);
  } else if (type == HD__MSG_EPOCH) {
    uint64_t floor, seen_upto;
    if ((rc = hd__msg_decode_epoch(body, len, &floor, &seen_upto)) == 0)
      FZ_CHECK(hd__msg_encode_epoch(&out, floor, seen_upto) == 0);
  } else if (type == HD__MSG_BYE) {
    uint64_t reason;
    const uint8_t *text;
    size_t tl;
    if ((rc = hd__msg_decode_bye(body, len, &reason, &text, &tl)) == 0)
      FZ_CHECK(hd__msg_encode_bye(&out, reason, (const char *)text, tl) == 0);
  } else {
    uint64_t v;
    if ((rc = hd__msg_decode_varint(type, body, len, &v)) == 0)
      FZ_CHECK(encode_varint_msg(&out, type, v) == 0);
  }
  if (rc == 0) check_same(&out, type, body, len);
  hd__buf_free(&out);
  return rc;
}

/* BYE's encoder takes the body as text: it refuses exactly what the decoder would refuse. */
static void check_bye_text(const uint8_t *text, size_t len) {
  hd__buf_t out;
  hd__buf_init(&out);
  int rc = hd__msg_encode_bye(&out, 9, (const char *)text, len);
  FZ_CHECK(rc == 0 || rc == HD_EINVAL);
  if (rc == 0) {
    uint64_t l, reason;
    const uint8_t *back;
    size_t bl;
    int k = hd__varint_get(out.data, out.len, &l);
    FZ_CHECK(k > 0 && out.data[k] == HD__MSG_BYE);
    FZ_CHECK(hd__msg_decode_bye(out.data + k + 1, (size_t)l - 1, &reason, &back, &bl) == 0);
    FZ_CHECK(reason == 9 && bl == len && (len == 0 || memcmp(back, text, len) == 0));
  } else if (len <= HD__BYE_TEXT_MAX) {
    /* refused as text: the same bytes in a body must be refused by the decoder */
    hd__buf_t body;
    hd__buf_init(&body);
    uint8_t head[1 + HD__VARINT_MAX];
    size_t h = 1 + hd__varint_put(head + 1, len);
    head[0] = 9;
    FZ_CHECK(hd__buf_append(&body, head, h) == 0 && hd__buf_append(&body, text, len) == 0);
    uint64_t reason;
    const uint8_t *back;
    size_t bl;
    FZ_CHECK(hd__msg_decode_bye(body.data, body.len, &reason, &back, &bl) == HD_EPROTO);
    hd__buf_free(&body);
  }
  hd__buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  uint8_t type = data[0];
  /* the body in a buffer of its own size, so that a read past it is ASan's */
  size_t len = size - 1;
  uint8_t *body = malloc(len ? len : 1);
  FZ_CHECK(body != NULL);
  if (len) memcpy(body, data + 1, len);
  const char *name = hd__msg_type_name(type);
  int checked = hd__msg_check(type, body, len);
  FZ_CHECK(checked == 0 || checked == HD_EPROTO);
  if (checked != 0 && name != NULL) FZ_CHECK(strstr(hd_last_error_message(), name) != NULL);
  if (name == NULL) {
    FZ_CHECK(checked == HD_EPROTO);
  } else if (hd__msg_is_batch(type)) {
    check_batch(type, body, len, checked);
  } else {
    FZ_CHECK(check_single(type, body, len) == checked);
  }
  /* the decoders refuse the types they are not for */
  hd__entry_iter_t it;
  uint64_t v;
  if (!hd__msg_is_batch(type))
    FZ_CHECK(hd__msg_entries_begin(&it, type, body, len, &v) == HD_EINVAL);
  if (type < HD__MSG_CREDIT || type > HD__MSG_PONG)
    FZ_CHECK(hd__msg_decode_varint(type, body, len, &v) == HD_EINVAL);
  check_bye_text(body, len);
  free(body);
  return 0;
}
