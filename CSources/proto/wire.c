/* The message codec (docs/PROTOCOL.md, "Messages"). Encoders size a message exactly before
 * writing it, so the length prefix is minimal and every payload is copied once. Decoders check
 * the whole body before handing anything out, and check counts against the bytes present before
 * anyone may size an allocation from them. */
#include "wire.h"

#include "keys.h"

#include <stdlib.h>
#include <string.h>

/* ---- Encoding ------------------------------------------------------------------------------ */

const char *hd__msg_type_name(uint8_t type) {
  static const char *const names[] = {NULL,    "EVENTS", "CONSUMED", "DONE", "RESUME", "CREDIT",
                                      "PAUSE", "PING",   "PONG",     "BYE",  "EPOCH",
                                      "FAILED", "NOTICES"};
  return type < HD__ARRAY_SIZE(names) ? names[type] : NULL;
}

/* Reserves a whole message of `body_len` body bytes, writes its length prefix and type, and
 * returns where the body goes (NULL on failure, with the error recorded). */
static uint8_t *msg_begin(hd__buf_t *out, uint8_t type, size_t body_len) {
  uint64_t l = (uint64_t)body_len + 1;
  if (hd__buf_reserve(out, hd__varint_len(l) + (size_t)l) != 0) return NULL;
  uint8_t *p = out->data + out->len;
  p += hd__varint_put(p, l);
  *p++ = type;
  return p;
}

static int utf8_valid(const uint8_t *s, size_t n);

static void msg_end(hd__buf_t *out, const uint8_t *end) { out->len = (size_t)(end - out->data); }

static size_t event_size(const hd__entry_t *e) {
  return hd__varint_len(e->seq) + hd__varint_len(e->created_ms) + hd__varint_len(e->len) + e->len;
}

static size_t consumed_size(const hd__entry_t *e) {
  return hd__varint_len(e->seq) + hd__varint_len(e->len) + e->len;
}

static size_t failed_size(const hd__entry_t *e) {
  return hd__varint_len(e->seq) + hd__varint_len(e->attempts) + hd__varint_len(e->len) + e->len;
}

static size_t notice_size(const hd__entry_t *e) {
  return hd__varint_len(e->seq) + hd__varint_len(e->created_ms) +
         hd__varint_len(e->notice.kind) + hd__varint_len(e->notice.count) +
         hd__varint_len(e->notice.first_seq) + hd__varint_len(e->notice.last_seq);
}

/* Whole message size (prefix included) for a body of `body` bytes. */
static size_t framed(size_t body) { return hd__varint_len((uint64_t)body + 1) + body + 1; }

static size_t batch_body(const hd__entry_t *e, size_t n, size_t (*entry)(const hd__entry_t *)) {
  size_t body = hd__varint_len(n);
  for (size_t i = 0; i < n; i++) body += entry(&e[i]);
  return body;
}

/* How many leading entries fit a message of L <= max (L = type byte + body). */
static size_t batch_fit(const hd__entry_t *e, const uint64_t *seqs, size_t n, uint64_t max,
                        size_t (*entry)(const hd__entry_t *)) {
  uint64_t sum = 0;
  for (size_t i = 0; i < n; i++) {
    sum += e ? entry(&e[i]) : hd__varint_len(seqs[i]);
    if (1 + hd__varint_len(i + 1) + sum > max) return i;
  }
  return n;
}

size_t hd__msg_events_size(const hd__entry_t *e, size_t n) {
  return framed(batch_body(e, n, event_size));
}
size_t hd__msg_events_fit(const hd__entry_t *e, size_t n, uint64_t max_message_bytes) {
  return batch_fit(e, NULL, n, max_message_bytes, event_size);
}
size_t hd__msg_consumed_size(const hd__entry_t *e, size_t n) {
  return framed(batch_body(e, n, consumed_size));
}
size_t hd__msg_consumed_fit(const hd__entry_t *e, size_t n, uint64_t max_message_bytes) {
  return batch_fit(e, NULL, n, max_message_bytes, consumed_size);
}
size_t hd__msg_failed_fit(const hd__entry_t *e, size_t n, uint64_t max_message_bytes) {
  return batch_fit(e, NULL, n, max_message_bytes, failed_size);
}
size_t hd__msg_done_fit(const uint64_t *seqs, size_t n, uint64_t max_message_bytes) {
  return batch_fit(NULL, seqs, n, max_message_bytes, NULL);
}

size_t hd__events_header_size(uint64_t count, size_t body_bytes) {
  uint64_t l = 1 + hd__varint_len(count) + (uint64_t)body_bytes;
  return hd__varint_len(l) + 1 + hd__varint_len(count);
}

void hd__events_writer_init(hd__events_writer_t *w, hd__buf_t *out, uint64_t max_message_bytes,
                            size_t header_room) {
  w->out = out;
  w->max = max_message_bytes;
  /* no hint: a message near the limit with one entry per ~100 bytes */
  w->room = header_room ? header_room
                        : hd__varint_len(max_message_bytes) + 1 +
                              hd__varint_len(max_message_bytes / 100 + 1);
  w->msg_start = SIZE_MAX;
  w->body_bytes = 0;
  w->count = 0;
}

int hd__events_writer_add_slow(hd__events_writer_t *w, uint64_t seq, uint64_t created_ms,
                               const uint8_t *payload, size_t len) {
  int open = w->msg_start != SIZE_MAX;
  /* the entry's size at most: its three varints at their longest */
  size_t most = 3 * HD__VARINT_MAX + len;
  if (1 + HD__VARINT_MAX + (open ? w->body_bytes : 0) + (uint64_t)most > w->max) {
    /* near the limit: the exact sizes decide */
    size_t es = hd__varint_len(seq) + hd__varint_len(created_ms) + hd__varint_len(len) + len;
    /* no message can hold it: one of this entry alone (type, a count of one byte, the entry) */
    if (1 + 1 + es > w->max) {
      return hd__error(HD_EMSGSIZE, "event %llu (%zu bytes) does not fit a message of at most "
                       "%llu bytes", (unsigned long long)seq, len, (unsigned long long)w->max);
    }
    if (open && 1 + hd__varint_len(w->count + 1) + w->body_bytes + es > w->max) {
      return HD__EVENTS_FULL;
    }
  }
  hd__buf_t *out = w->out;
  size_t need = (open ? 0 : w->room) + most;
  if (out->cap - out->len < need && hd__buf_reserve(out, need) != 0) return HD_ENOMEM;
  if (!open) {
    w->msg_start = out->len;
    out->len += w->room;
  }
  hd__events_writer_put(w, seq, created_ms, payload, len);
  return 0;
}

int hd__events_writer_finish(hd__events_writer_t *w) {
  if (w->msg_start == SIZE_MAX) return 0;
  hd__buf_t *out = w->out;
  size_t h = hd__events_header_size(w->count, w->body_bytes);
  if (h != w->room) {
    /* the guess was wrong: shift the entries so that the header sits right before them */
    if (h > w->room && hd__buf_reserve(out, h - w->room) != 0) return HD_ENOMEM;
    uint8_t *entries = out->data + w->msg_start + w->room;
    memmove(out->data + w->msg_start + h, entries, w->body_bytes);
    w->room = h; /* the next message likely has a header of this size too */
  }
  uint8_t *p = out->data + w->msg_start;
  p += hd__varint_put(p, 1 + hd__varint_len(w->count) + (uint64_t)w->body_bytes);
  *p++ = HD__MSG_EVENTS;
  hd__varint_put(p, w->count);
  out->len = w->msg_start + h + w->body_bytes;
  w->msg_start = SIZE_MAX;
  w->body_bytes = 0;
  w->count = 0;
  return 1;
}

int hd__msg_encode_events(hd__buf_t *out, const hd__entry_t *e, size_t n) {
  size_t body = 0;
  for (size_t i = 0; i < n; i++) body += event_size(&e[i]);
  hd__events_writer_t w;
  hd__events_writer_init(&w, out, UINT64_MAX, hd__events_header_size(n, body));
  size_t start = out->len;
  for (size_t i = 0; i < n; i++) {
    int rc = hd__events_writer_add(&w, e[i].seq, e[i].created_ms, e[i].data, e[i].len);
    if (rc != 0) {
      out->len = start;
      return rc == HD__EVENTS_FULL ? hd__error(HD_EINVAL, "EVENTS too large") : rc;
    }
  }
  if (n == 0) { /* the writer opens a message with its first entry; an empty one is just this */
    uint8_t *p = msg_begin(out, HD__MSG_EVENTS, 1);
    if (p == NULL) return HD_ENOMEM;
    *p++ = 0;
    msg_end(out, p);
    return 0;
  }
  hd__events_writer_finish(&w);
  return 0;
}

int hd__msg_encode_consumed(hd__buf_t *out, const hd__entry_t *e, size_t n) {
  uint8_t *p = msg_begin(out, HD__MSG_CONSUMED, batch_body(e, n, consumed_size));
  if (p == NULL) return HD_ENOMEM;
  p += hd__varint_put(p, n);
  for (size_t i = 0; i < n; i++) {
    p += hd__varint_put(p, e[i].seq);
    p += hd__varint_put(p, e[i].len);
    if (e[i].len) memcpy(p, e[i].data, e[i].len);
    p += e[i].len;
  }
  msg_end(out, p);
  return 0;
}

int hd__msg_encode_done(hd__buf_t *out, const uint64_t *seqs, size_t n) {
  size_t body = hd__varint_len(n);
  for (size_t i = 0; i < n; i++) body += hd__varint_len(seqs[i]);
  uint8_t *p = msg_begin(out, HD__MSG_DONE, body);
  if (p == NULL) return HD_ENOMEM;
  p += hd__varint_put(p, n);
  for (size_t i = 0; i < n; i++) p += hd__varint_put(p, seqs[i]);
  msg_end(out, p);
  return 0;
}

int hd__msg_encode_failed(hd__buf_t *out, const hd__entry_t *e, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (e[i].len > HD__REASON_MAX || (e[i].len && !utf8_valid(e[i].data, e[i].len)))
      return hd__error(HD_EINVAL, "FAILED: a reason is longer than %d bytes or not UTF-8",
                       HD__REASON_MAX);
  }
  uint8_t *p = msg_begin(out, HD__MSG_FAILED, batch_body(e, n, failed_size));
  if (p == NULL) return HD_ENOMEM;
  p += hd__varint_put(p, n);
  for (size_t i = 0; i < n; i++) {
    p += hd__varint_put(p, e[i].seq);
    p += hd__varint_put(p, e[i].attempts);
    p += hd__varint_put(p, e[i].len);
    if (e[i].len) memcpy(p, e[i].data, e[i].len);
    p += e[i].len;
  }
  msg_end(out, p);
  return 0;
}

int hd__msg_encode_notices(hd__buf_t *out, const hd__entry_t *e, size_t n) {
  uint8_t *p = msg_begin(out, HD__MSG_NOTICES, batch_body(e, n, notice_size));
  if (p == NULL) return HD_ENOMEM;
  p += hd__varint_put(p, n);
  for (size_t i = 0; i < n; i++) {
    p += hd__varint_put(p, e[i].seq);
    p += hd__varint_put(p, e[i].created_ms);
    p += hd__varint_put(p, e[i].notice.kind);
    p += hd__varint_put(p, e[i].notice.count);
    p += hd__varint_put(p, e[i].notice.first_seq);
    p += hd__varint_put(p, e[i].notice.last_seq);
  }
  msg_end(out, p);
  return 0;
}

int hd__msg_encode_resume(hd__buf_t *out, const hd__resume_t *r) {
  size_t body = HD_STORE_ID_BYTES + hd__varint_len(r->high_seq) + hd__varint_len(r->window) +
                (r->has_epoch ? HD_STORE_ID_BYTES : 0);
  uint8_t *p = msg_begin(out, HD__MSG_RESUME, body);
  if (p == NULL) return HD_ENOMEM;
  memcpy(p, r->store_id, HD_STORE_ID_BYTES);
  p += HD_STORE_ID_BYTES;
  p += hd__varint_put(p, r->high_seq);
  p += hd__varint_put(p, r->window);
  if (r->has_epoch) {
    memcpy(p, r->epoch, HD_STORE_ID_BYTES);
    p += HD_STORE_ID_BYTES;
  }
  msg_end(out, p);
  return 0;
}

int hd__msg_encode_epoch(hd__buf_t *out, uint64_t floor, uint64_t seen_upto) {
  uint8_t *p = msg_begin(out, HD__MSG_EPOCH, hd__varint_len(floor) + hd__varint_len(seen_upto));
  if (p == NULL) return HD_ENOMEM;
  p += hd__varint_put(p, floor);
  p += hd__varint_put(p, seen_upto);
  msg_end(out, p);
  return 0;
}

static int encode_varint_msg(hd__buf_t *out, uint8_t type, uint64_t v) {
  uint8_t *p = msg_begin(out, type, hd__varint_len(v));
  if (p == NULL) return HD_ENOMEM;
  msg_end(out, p + hd__varint_put(p, v));
  return 0;
}

int hd__msg_encode_credit(hd__buf_t *out, uint64_t granted) {
  return encode_varint_msg(out, HD__MSG_CREDIT, granted);
}
int hd__msg_encode_pause(hd__buf_t *out, uint64_t pause_ms) {
  return encode_varint_msg(out, HD__MSG_PAUSE, pause_ms);
}
int hd__msg_encode_ping(hd__buf_t *out, uint64_t nonce) {
  return encode_varint_msg(out, HD__MSG_PING, nonce);
}
int hd__msg_encode_pong(hd__buf_t *out, uint64_t nonce) {
  return encode_varint_msg(out, HD__MSG_PONG, nonce);
}

int hd__msg_encode_bye(hd__buf_t *out, uint64_t reason, const char *text, size_t text_len) {
  if (text_len > HD__BYE_TEXT_MAX)
    return hd__error(HD_EINVAL, "BYE text of %zu bytes exceeds %d", text_len, HD__BYE_TEXT_MAX);
  if (text_len && (text == NULL || !utf8_valid((const uint8_t *)text, text_len)))
    return hd__error(HD_EINVAL, "BYE text is not valid UTF-8");
  uint8_t *p = msg_begin(out, HD__MSG_BYE, hd__varint_len(reason) + hd__varint_len(text_len) + text_len);
  if (p == NULL) return HD_ENOMEM;
  p += hd__varint_put(p, reason);
  p += hd__varint_put(p, text_len);
  if (text_len) memcpy(p, text, text_len);
  msg_end(out, p + text_len);
  return 0;
}

/* ---- Decoding ------------------------------------------------------------------------------ */

/* A read position in a body; `msg` names the message in error details. */
typedef struct cursor {
  const uint8_t *p;
  const uint8_t *end;
  const char *msg;
} cursor_t;

static size_t cur_left(const cursor_t *c) { return (size_t)(c->end - c->p); }

static int cur_varint(cursor_t *c, uint64_t *v, const char *field) {
  int n = hd__varint_get(c->p, cur_left(c), v);
  if (n == HD__VARINT_SHORT) return hd__error(HD_EPROTO, "%s: %s is truncated", c->msg, field);
  if (n < 0)
    return hd__error(HD_EPROTO, "%s: %s is not a minimal varint of at most 64 bits", c->msg, field);
  c->p += n;
  return 0;
}

/* A varint length followed by that many bytes, which must lie inside the body. */
static int cur_bytes(cursor_t *c, const uint8_t **data, size_t *len, const char *field) {
  uint64_t l;
  int rc = cur_varint(c, &l, field);
  if (rc) return rc;
  if (l > cur_left(c))
    return hd__error(HD_EPROTO, "%s: %s length %llu exceeds the %zu bytes left in the body",
                     c->msg, field, (unsigned long long)l, cur_left(c));
  *data = c->p;
  *len = (size_t)l;
  c->p += l;
  return 0;
}

static int cur_end(const cursor_t *c) {
  if (c->p != c->end)
    return hd__error(HD_EPROTO, "%s: %zu trailing bytes after the body", c->msg, cur_left(c));
  return 0;
}

/* The fewest bytes one entry can take: every varint is at least one byte. */
static size_t entry_min_bytes(uint8_t type) {
  switch (type) {
    case HD__MSG_EVENTS: case HD__MSG_FAILED: return 3;
    case HD__MSG_CONSUMED: return 2;
    case HD__MSG_NOTICES: return 6;
    default: return 1;
  }
}

/* Reads one entry (errors name the field; after validation it cannot fail). */
static int entry_read(cursor_t *c, uint8_t type, hd__entry_t *e) {
  int rc;
  e->created_ms = 0;
  e->data = NULL;
  e->len = 0;
  e->attempts = 0;
  memset(&e->notice, 0, sizeof e->notice);
  if ((rc = cur_varint(c, &e->seq, "entry seq"))) return rc;
  if ((type == HD__MSG_EVENTS || type == HD__MSG_NOTICES) &&
      (rc = cur_varint(c, &e->created_ms, "entry created_unix_ms")))
    return rc;
  if (type == HD__MSG_NOTICES) {
    if ((rc = cur_varint(c, &e->notice.kind, "notice kind")) ||
        (rc = cur_varint(c, &e->notice.count, "notice count")) ||
        (rc = cur_varint(c, &e->notice.first_seq, "notice first_seq")) ||
        (rc = cur_varint(c, &e->notice.last_seq, "notice last_seq")))
      return rc;
    return 0;
  }
  if (type == HD__MSG_FAILED) {
    if ((rc = cur_varint(c, &e->attempts, "entry attempts"))) return rc;
    if ((rc = cur_bytes(c, &e->data, &e->len, "reason"))) return rc;
    if (e->len > HD__REASON_MAX)
      return hd__error(HD_EPROTO, "%s: reason of %zu bytes exceeds %d", c->msg, e->len,
                       HD__REASON_MAX);
    if (!utf8_valid(e->data, e->len))
      return hd__error(HD_EPROTO, "%s: reason is not valid UTF-8", c->msg);
    return 0;
  }
  if (type != HD__MSG_DONE &&
      (rc = cur_bytes(c, &e->data, &e->len, type == HD__MSG_EVENTS ? "payload" : "data")))
    return rc;
  return 0;
}

int hd__msg_entries_begin(hd__entry_iter_t *it, uint8_t type, const uint8_t *body, size_t len,
                          uint64_t *count) {
  if (!hd__msg_is_batch(type)) return hd__error(HD_EINVAL, "message type %u has no entries", type);
  cursor_t c = {body, body + len, hd__msg_type_name(type)};
  uint64_t n;
  int rc = cur_varint(&c, &n, "count");
  if (rc) return rc;
  /* Before anything trusts the count: it cannot exceed what the remaining bytes can hold. */
  if (n > cur_left(&c) / entry_min_bytes(type))
    return hd__error(HD_EPROTO, "%s: count %llu cannot fit in the %zu bytes left in the body",
                     c.msg, (unsigned long long)n, cur_left(&c));
  const uint8_t *first = c.p;
  for (uint64_t i = 0; i < n; i++) {
    hd__entry_t e;
    if ((rc = entry_read(&c, type, &e))) return rc;
  }
  if ((rc = cur_end(&c))) return rc;
  it->p = first;
  it->end = body + len;
  it->left = n;
  it->type = type;
  if (count) *count = n;
  return 0;
}

int hd__msg_entries_next(hd__entry_iter_t *it, hd__entry_t *e) {
  if (it->left == 0) return 0;
  cursor_t c = {it->p, it->end, NULL};
  (void)entry_read(&c, it->type, e); /* validated by begin */
  it->p = c.p;
  it->left--;
  return 1;
}

int hd__msg_decode_resume(const uint8_t *body, size_t len, hd__resume_t *r) {
  cursor_t c = {body, body + len, "RESUME"};
  int rc;
  memset(r, 0, sizeof *r);
  if (len < HD_STORE_ID_BYTES)
    return hd__error(HD_EPROTO, "RESUME: store id is truncated (%zu of 16 bytes)", len);
  memcpy(r->store_id, c.p, HD_STORE_ID_BYTES);
  c.p += HD_STORE_ID_BYTES;
  if ((rc = cur_varint(&c, &r->high_seq, "high_seq"))) return rc;
  if ((rc = cur_varint(&c, &r->window, "window"))) return rc;
  r->has_epoch = cur_left(&c) == HD_STORE_ID_BYTES;
  if (r->has_epoch) {
    memcpy(r->epoch, c.p, HD_STORE_ID_BYTES);
    c.p += HD_STORE_ID_BYTES;
  }
  return cur_end(&c);
}

int hd__msg_decode_epoch(const uint8_t *body, size_t len, uint64_t *floor, uint64_t *seen_upto) {
  cursor_t c = {body, body + len, "EPOCH"};
  int rc;
  if ((rc = cur_varint(&c, floor, "floor"))) return rc;
  if ((rc = cur_varint(&c, seen_upto, "seen_upto"))) return rc;
  return cur_end(&c);
}

int hd__msg_decode_varint(uint8_t type, const uint8_t *body, size_t len, uint64_t *v) {
  static const char *const field[] = {"granted", "pause_ms", "nonce", "nonce"};
  if (type < HD__MSG_CREDIT || type > HD__MSG_PONG)
    return hd__error(HD_EINVAL, "message type %u is not a one-varint message", type);
  cursor_t c = {body, body + len, hd__msg_type_name(type)};
  int rc = cur_varint(&c, v, field[type - HD__MSG_CREDIT]);
  return rc ? rc : cur_end(&c);
}

/* Strict UTF-8 (RFC 3629): no overlongs, no surrogates, nothing past U+10FFFF. */
static int utf8_valid(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t b = s[i];
    size_t k;
    uint32_t cp, min;
    if (b < 0x80) {
      i++;
      continue;
    } else if ((b & 0xe0) == 0xc0) {
      k = 1, cp = b & 0x1f, min = 0x80;
    } else if ((b & 0xf0) == 0xe0) {
      k = 2, cp = b & 0x0f, min = 0x800;
    } else if ((b & 0xf8) == 0xf0) {
      k = 3, cp = b & 0x07, min = 0x10000;
    } else {
      return 0;
    }
    if (n - i - 1 < k) return 0;
    for (size_t j = 1; j <= k; j++) {
      if ((s[i + j] & 0xc0) != 0x80) return 0;
      cp = (cp << 6) | (s[i + j] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    i += k + 1;
  }
  return 1;
}

int hd__msg_decode_bye(const uint8_t *body, size_t len, uint64_t *reason, const uint8_t **text,
                       size_t *text_len) {
  cursor_t c = {body, body + len, "BYE"};
  int rc;
  if ((rc = cur_varint(&c, reason, "reason"))) return rc;
  if ((rc = cur_bytes(&c, text, text_len, "text"))) return rc;
  if (*text_len > HD__BYE_TEXT_MAX)
    return hd__error(HD_EPROTO, "BYE: text of %zu bytes exceeds %d", *text_len, HD__BYE_TEXT_MAX);
  if (!utf8_valid(*text, *text_len)) return hd__error(HD_EPROTO, "BYE: text is not valid UTF-8");
  return cur_end(&c);
}

int hd__msg_check(uint8_t type, const uint8_t *body, size_t len) {
  hd__entry_iter_t it;
  hd__resume_t r;
  uint64_t v;
  const uint8_t *t;
  size_t tl;
  switch (type) {
    case HD__MSG_EVENTS:
    case HD__MSG_CONSUMED:
    case HD__MSG_DONE:
    case HD__MSG_FAILED:
    case HD__MSG_NOTICES:
      return hd__msg_entries_begin(&it, type, body, len, NULL);
    case HD__MSG_RESUME:
      return hd__msg_decode_resume(body, len, &r);
    case HD__MSG_CREDIT:
    case HD__MSG_PAUSE:
    case HD__MSG_PING:
    case HD__MSG_PONG:
      return hd__msg_decode_varint(type, body, len, &v);
    case HD__MSG_BYE:
      return hd__msg_decode_bye(body, len, &v, &t, &tl);
    case HD__MSG_EPOCH:
      return hd__msg_decode_epoch(body, len, &v, &v);
    default:
      return hd__error(HD_EPROTO, "unknown message type 0x%02x (%zu body bytes)", type, len);
  }
}

/* ---- Handshake payloads -------------------------------------------------------------------- */

/* Both payloads: a varint version, then a fixed-size id (the client's key, the server's store
 * id), then varints. */
static uint8_t *put_head(uint8_t *p, uint64_t version, const uint8_t *id, size_t id_len) {
  p += hd__varint_put(p, version);
  memcpy(p, id, id_len);
  return p + id_len;
}

size_t hd__hello_encode(const hd__hello_t *h, uint8_t *out) {
  uint8_t *p = put_head(out, h->version, h->public_key, HD_PUBLICKEY_BYTES);
  p += hd__varint_put(p, h->max_message_bytes);
  if (h->features != 0) p += hd__varint_put(p, h->features);
  return (size_t)(p - out);
}

size_t hd__welcome_encode(const hd__welcome_t *w, uint8_t *out) {
  uint8_t *p = put_head(out, w->version, w->store_id, HD_STORE_ID_BYTES);
  p += hd__varint_put(p, w->pause_ms);
  p += hd__varint_put(p, w->max_message_bytes);
  p += hd__varint_put(p, w->keepalive_ms);
  if (w->has_epoch) {
    memcpy(p, w->epoch, HD_STORE_ID_BYTES);
    p += HD_STORE_ID_BYTES;
    if (w->features != 0) p += hd__varint_put(p, w->features);
  }
  return (size_t)(p - out);
}

/* Fixed-size raw bytes inside a handshake payload. */
static int cur_raw(cursor_t *c, uint8_t *out, size_t n, const char *field) {
  if (cur_left(c) < n)
    return hd__error(HD_EPROTO, "%s: %s is truncated (%zu of %zu bytes)", c->msg, field,
                     cur_left(c), n);
  memcpy(out, c->p, n);
  c->p += n;
  return 0;
}

int hd__hello_decode(const uint8_t *p, size_t len, hd__hello_t *h) {
  cursor_t c = {p, p + len, "HELLO"};
  int rc;
  memset(h, 0, sizeof *h);
  if ((rc = cur_varint(&c, &h->version, "version"))) return rc;
  if (h->version != HD_PROTOCOL_VERSION) return 0; /* the rest is another version's layout */
  if ((rc = cur_raw(&c, h->public_key, HD_PUBLICKEY_BYTES, "public key"))) return rc;
  if ((rc = cur_varint(&c, &h->max_message_bytes, "max_message_bytes"))) return rc;
  /* an earlier release sends nothing more; a later one's further bytes are ignored */
  if (cur_left(&c) != 0 && hd__varint_get(c.p, cur_left(&c), &h->features) <= 0) h->features = 0;
  return 0;
}

int hd__welcome_decode(const uint8_t *p, size_t len, hd__welcome_t *w) {
  cursor_t c = {p, p + len, "WELCOME"};
  int rc;
  memset(w, 0, sizeof *w);
  if ((rc = cur_varint(&c, &w->version, "version"))) return rc;
  if (w->version != HD_PROTOCOL_VERSION) return 0;
  if ((rc = cur_raw(&c, w->store_id, HD_STORE_ID_BYTES, "store id"))) return rc;
  if ((rc = cur_varint(&c, &w->pause_ms, "pause_ms"))) return rc;
  if ((rc = cur_varint(&c, &w->max_message_bytes, "max_message_bytes"))) return rc;
  if ((rc = cur_varint(&c, &w->keepalive_ms, "keepalive_ms"))) return rc;
  /* fewer bytes than an epoch: a server without epochs, and bytes ignored as before */
  if (cur_left(&c) < HD_STORE_ID_BYTES) return 0;
  memcpy(w->epoch, c.p, HD_STORE_ID_BYTES);
  w->has_epoch = 1;
  c.p += HD_STORE_ID_BYTES;
  if (cur_left(&c) != 0 && hd__varint_get(c.p, cur_left(&c), &w->features) <= 0) w->features = 0;
  return 0; /* what follows is a later extension's */
}

size_t hd__notice_encode(const hd__notice_t *n, uint8_t out[HD__NOTICE_MAX]) {
  uint8_t *p = out;
  p += hd__varint_put(p, n->kind);
  p += hd__varint_put(p, n->count);
  p += hd__varint_put(p, n->first_seq);
  p += hd__varint_put(p, n->last_seq);
  return (size_t)(p - out);
}

int hd__notice_decode(const uint8_t *p, size_t len, hd__notice_t *n) {
  cursor_t c = {p, p + len, "notice"};
  int rc;
  if ((rc = cur_varint(&c, &n->kind, "kind")) || (rc = cur_varint(&c, &n->count, "count")) ||
      (rc = cur_varint(&c, &n->first_seq, "first_seq")) ||
      (rc = cur_varint(&c, &n->last_seq, "last_seq")))
    return rc;
  return cur_end(&c);
}

/* ---- Preamble and rejection ---------------------------------------------------------------- */

static const uint8_t magic[4] = {'H', 'Y', 'D', 'N'};

void hd__preamble_encode(uint8_t out[HD__PREAMBLE_BYTES], const uint8_t topic_key[HD_TOPIC_BYTES]) {
  memcpy(out, magic, 4);
  out[4] = HD_PROTOCOL_VERSION;
  out[5] = 0; /* flags */
  out[6] = out[7] = 0;
  hd__topic_tag(topic_key, out + 8);
}

int hd__preamble_check(const uint8_t in[HD__PREAMBLE_BYTES],
                       const uint8_t topic_key[HD_TOPIC_BYTES]) {
  if (memcmp(in, magic, 4) != 0)
    return hd__error(HD_EPROTO, "preamble: bad magic %02x %02x %02x %02x (not a Hyperdown peer)",
                     in[0], in[1], in[2], in[3]);
  /* The version comes before the flags: another version may define them. */
  if (in[4] != HD_PROTOCOL_VERSION)
    return hd__error(HD_EVERSION, "preamble: protocol version %u, this side speaks %d", in[4],
                     HD_PROTOCOL_VERSION);
  if (in[5] != 0 || in[6] != 0 || in[7] != 0)
    return hd__error(HD_EPROTO, "preamble: flags or reserved bytes are not zero");
  uint8_t tag[8];
  hd__topic_tag(topic_key, tag);
  if (memcmp(in + 8, tag, 8) != 0)
    return hd__error(HD_ETOPIC, "preamble: topic tag does not match (peer is on another topic)");
  return 0;
}

void hd__reject_encode(uint8_t out[HD__REJECT_BYTES], uint8_t reason) {
  out[0] = out[1] = 0; /* a handshake message is never empty, so length 0 marks a rejection */
  out[2] = reason;
}

uint8_t hd__reject_reason_for(int code) {
  switch (code) {
    case HD_EVERSION: return HD__REJECT_VERSION;
    case HD_ETOPIC: return HD__REJECT_TOPIC;
    case HD_EAUTH: return HD__REJECT_AUTH;
    case HD_EKEY: return HD__REJECT_IDENTITY;
    case HD_EMSGSIZE: return HD__REJECT_MSGSIZE;
    default: return HD__REJECT_MALFORMED;
  }
}

int hd__reject_error(uint8_t reason) {
  switch (reason) {
    case HD__REJECT_VERSION:
      return hd__error(HD_EVERSION, "server rejected the handshake: protocol version unsupported");
    case HD__REJECT_TOPIC:
      return hd__error(HD_ETOPIC, "server rejected the handshake: topic mismatch");
    case HD__REJECT_AUTH:
      return hd__error(HD_EAUTH, "server rejected the handshake: authentication failed "
                                 "(wrong server public key, or tampering)");
    case HD__REJECT_IDENTITY:
      return hd__error(HD_EAUTH, "server rejected the handshake: the HELLO identity does not "
                                 "match the Noise static key");
    case HD__REJECT_MALFORMED:
      return hd__error(HD_EPROTO, "server rejected the handshake: malformed");
    case HD__REJECT_REFUSED:
      return hd__error(HD_EAUTH, "server refused the handshake: it does not admit this client's "
                                 "key");
    case HD__REJECT_MSGSIZE:
      return hd__error(HD_EMSGSIZE, "server refused the handshake: its events can be larger than "
                                    "this client's max_message_bytes");
    default:
      return hd__error(HD_EPROTO, "server rejected the handshake with unknown reason %u", reason);
  }
}

/* ---- Message stream reader ----------------------------------------------------------------- */

void hd__msg_reader_init(hd__msg_reader_t *r, uint64_t max_message_bytes, hd__msg_cb cb,
                         void *ctx) {
  memset(r, 0, sizeof *r);
  r->max_message_bytes = max_message_bytes ? max_message_bytes : HD__DEFAULT_MAX_MESSAGE;
  r->cb = cb;
  r->ctx = ctx;
}

void hd__msg_reader_free(hd__msg_reader_t *r) {
  free(r->msg);
  r->msg = NULL;
  r->msg_cap = r->msg_len = r->msg_have = 0;
  r->head_len = 0;
}

int hd__msg_reader_idle(const hd__msg_reader_t *r) { return r->head_len == 0 && r->msg_len == 0; }

static int fail(hd__msg_reader_t *r, int rc) {
  r->error = rc;
  return rc;
}

static int deliver(hd__msg_reader_t *r, const uint8_t *m, size_t l) {
  int rc = r->cb(r->ctx, m[0], m + 1, l - 1);
  return rc ? fail(r, rc) : 0;
}

static int check_length(hd__msg_reader_t *r, uint64_t l) {
  if (l == 0)
    return fail(r, hd__error(HD_EPROTO, "message length 0 (a message holds at least its type)"));
  if (l > r->max_message_bytes || l > SIZE_MAX)
    return fail(r, hd__error(HD_EMSGSIZE, "message of %llu bytes exceeds the limit of %llu",
                             (unsigned long long)l, (unsigned long long)r->max_message_bytes));
  return 0;
}

static int bad_prefix(hd__msg_reader_t *r) {
  return fail(r, hd__error(HD_EPROTO, "message length is not a minimal varint of at most 64 bits"));
}

/* A message of `l` bytes of which only `n` (< l) are here: collect it. */
static int start_partial(hd__msg_reader_t *r, size_t l, const uint8_t *p, size_t n) {
  if (l > r->msg_cap) {
    free(r->msg);
    r->msg_cap = 0;
    r->msg = malloc(l); /* exact size, and only after check_length */
    if (r->msg == NULL)
      return fail(r, hd__error(HD_ENOMEM, "out of memory for a message of %zu bytes", l));
    r->msg_cap = l;
  }
  if (n) memcpy(r->msg, p, n);
  r->msg_len = l;
  r->msg_have = n;
  return 0;
}

int hd__msg_reader_feed(hd__msg_reader_t *r, const uint8_t *p, size_t n) {
  if (r->error) return r->error;
  const uint8_t *end = p + n;
  int rc;
  while (p < end) {
    if (r->msg_len) { /* continue a message that spans chunks */
      size_t take = r->msg_len - r->msg_have;
      if (take > (size_t)(end - p)) take = (size_t)(end - p);
      memcpy(r->msg + r->msg_have, p, take);
      p += take;
      r->msg_have += take;
      if (r->msg_have < r->msg_len) return 0;
      size_t l = r->msg_len;
      r->msg_len = r->msg_have = 0;
      rc = deliver(r, r->msg, l);
      if (r->msg_cap > HD__MSG_KEEP) { /* big buffers do not outlive their message */
        free(r->msg);
        r->msg = NULL;
        r->msg_cap = 0;
      }
      if (rc) return rc;
      continue;
    }
    uint64_t l;
    if (r->head_len) { /* a length prefix cut by the previous chunk: one byte at a time */
      r->head[r->head_len++] = *p++;
      int k = hd__varint_get(r->head, r->head_len, &l);
      if (k == HD__VARINT_SHORT) continue;
      if (k < 0) return bad_prefix(r);
      r->head_len = 0;
    } else {
      int k = hd__varint_get(p, (size_t)(end - p), &l);
      if (k == HD__VARINT_SHORT) { /* fewer than 10 bytes left, all with the high bit */
        r->head_len = (uint8_t)(end - p);
        memcpy(r->head, p, r->head_len);
        return 0;
      }
      if (k < 0) return bad_prefix(r);
      p += k;
    }
    if ((rc = check_length(r, l))) return rc;
    if (l <= (uint64_t)(end - p)) { /* whole message in this chunk: no copy */
      if ((rc = deliver(r, p, (size_t)l))) return rc;
      p += l;
    } else {
      if ((rc = start_partial(r, (size_t)l, p, (size_t)(end - p)))) return rc;
      return 0;
    }
  }
  return 0;
}

int hd__utf8_valid(const uint8_t *s, size_t n) { return utf8_valid(s, n); }
