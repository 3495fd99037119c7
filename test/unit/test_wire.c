/* The message codec: varints, every message type, malformed bodies, the stream reader,
 * HELLO/WELCOME, the preamble and the rejection frame. */
#include "harness.h"

#include "wire.h"


/* Hex digits (whitespace ignored) into `out`; returns the byte count. */
static size_t unhex(uint8_t *out, const char *s) {
  size_t n = 0;
  int hi = -1;
  for (; *s; s++) {
    int d;
    if (*s >= '0' && *s <= '9') d = *s - '0';
    else if (*s >= 'a' && *s <= 'f') d = *s - 'a' + 10;
    else continue;
    if (hi < 0) {
      hi = d;
    } else {
      out[n++] = (uint8_t)(hi << 4 | d);
      hi = -1;
    }
  }
  return n;
}

static int detail_has(const char *needle) { return strstr(hd_last_error_message(), needle) != NULL; }

/* Splits the one message in `b` into type and body (checking the length prefix). */
static int frame(const hd__buf_t *b, uint8_t *type, const uint8_t **body, size_t *len) {
  uint64_t l;
  int k = hd__varint_get(b->data, b->len, &l);
  if (k <= 0 || l < 1 || (size_t)k + l != b->len) return -1;
  *type = b->data[k];
  *body = b->data + k + 1;
  *len = (size_t)l - 1;
  return 0;
}

static void varint_edges(void) {
  static const struct { uint64_t v; const char *hex; } ok[] = {
      {0, "00"}, {1, "01"}, {127, "7f"}, {128, "80 01"}, {300, "ac 02"}, {16383, "ff 7f"},
      {16384, "80 80 01"}, {(uint64_t)1 << 63, "80 80 80 80 80 80 80 80 80 01"},
      {UINT64_MAX, "ff ff ff ff ff ff ff ff ff 01"}};
  for (size_t i = 0; i < HD__ARRAY_SIZE(ok); i++) {
    uint8_t want[16], got[16];
    size_t n = unhex(want, ok[i].hex);
    CHECK(hd__varint_len(ok[i].v) == n);
    CHECK(hd__varint_put(got, ok[i].v) == n);
    CHECK(memcmp(got, want, n) == 0);
    uint64_t v = 12345;
    CHECK(hd__varint_get(want, n, &v) == (int)n);
    CHECK(v == ok[i].v);
    /* one byte short is "need more", never a wrong value */
    CHECK(hd__varint_get(want, n - 1, &v) == HD__VARINT_SHORT);
  }
  static const char *const bad[] = {
      "80 00",                             /* overlong zero */
      "ff 00",                             /* overlong 127 */
      "80 80 80 80 80 80 80 80 80 00",     /* overlong at the 10th byte */
      "ff ff ff ff ff ff ff ff ff 02",     /* overflow at the 10th byte */
      "ff ff ff ff ff ff ff ff ff 7f",     /* overflow at the 10th byte */
      "ff ff ff ff ff ff ff ff ff 81 00",  /* 11 bytes */
      "80 80 80 80 80 80 80 80 80 80 01"}; /* 11 bytes */
  for (size_t i = 0; i < HD__ARRAY_SIZE(bad); i++) {
    uint8_t b[16];
    uint64_t v;
    size_t n = unhex(b, bad[i]);
    CHECK(hd__varint_get(b, n, &v) == HD__VARINT_BAD);
  }
  uint64_t v;
  CHECK(hd__varint_get((const uint8_t *)"", 0, &v) == HD__VARINT_SHORT);
}

static void buf_basics(void) {
  hd__buf_t b;
  hd__buf_init(&b);
  CHECK_OK(hd__buf_append(&b, "abc", 3));
  CHECK_OK(hd__buf_append(&b, "defg", 4));
  CHECK(b.len == 7 && memcmp(b.data, "abcdefg", 7) == 0);
  hd__buf_consume(&b, 2);
  CHECK(b.len == 5 && memcmp(b.data, "cdefg", 5) == 0);
  /* once grown, the hot path encodes without allocating: same memory, same capacity */
  hd__buf_consume(&b, b.len);
  for (int i = 0; i < 100; i++) CHECK_OK(hd__msg_encode_ping(&b, (uint64_t)i));
  uint8_t *data = b.data;
  size_t cap = b.cap;
  for (int round = 0; round < 10; round++) {
    b.len = 0;
    for (int i = 0; i < 100; i++) CHECK_OK(hd__msg_encode_ping(&b, (uint64_t)i));
  }
  CHECK(b.data == data && b.cap == cap);
  hd__buf_trim(&b, 4096); /* not empty: kept */
  CHECK(b.data != NULL);
  b.len = 0;
  hd__buf_trim(&b, 0);
  CHECK(b.data == NULL && b.cap == 0);
  hd__buf_free(&b);
}

static void type_names(void) {
  CHECK(strcmp(hd__msg_type_name(HD__MSG_EVENTS), "EVENTS") == 0);
  CHECK(strcmp(hd__msg_type_name(HD__MSG_BYE), "BYE") == 0);
  CHECK(strcmp(hd__msg_type_name(HD__MSG_EPOCH), "EPOCH") == 0);
  CHECK(hd__msg_type_name(0) == NULL);
  CHECK(strcmp(hd__msg_type_name(HD__MSG_FAILED), "FAILED") == 0);
  CHECK(strcmp(hd__msg_type_name(HD__MSG_NOTICES), "NOTICES") == 0);
  CHECK(hd__msg_type_name(13) == NULL);
  CHECK(hd__msg_type_name(0xff) == NULL);
  const uint8_t body[1] = {0};
  CHECK_RC(hd__msg_check(0x00, body, 1), HD_EPROTO);
  CHECK(detail_has("unknown message type 0x00"));
  CHECK_RC(hd__msg_check(0x0b, body, 0), HD_EPROTO);
  CHECK_RC(hd__msg_check(0xff, body, 1), HD_EPROTO);
  CHECK(detail_has("0xff"));
}

static void roundtrip_batches(void) {
  static uint8_t big[70000];
  for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i * 7);
  hd__entry_t ev[4] = {{1, 1700000000000ull, (const uint8_t *)"hello", 5},
                       {2, 0, NULL, 0},
                       {UINT64_MAX, UINT64_MAX, big, sizeof big},
                       {300, 5, (const uint8_t *)"x", 1}};
  for (int type = HD__MSG_EVENTS; type <= HD__MSG_DONE; type++) {
    for (size_t n = 0; n <= 4; n++) {
      hd__buf_t b;
      hd__buf_init(&b);
      uint64_t seqs[4];
      for (size_t i = 0; i < n; i++) seqs[i] = ev[i].seq;
      if (type == HD__MSG_EVENTS) {
        CHECK_OK(hd__msg_encode_events(&b, ev, n));
        CHECK(b.len == hd__msg_events_size(ev, n));
      } else if (type == HD__MSG_CONSUMED) {
        CHECK_OK(hd__msg_encode_consumed(&b, ev, n));
        CHECK(b.len == hd__msg_consumed_size(ev, n));
      } else {
        CHECK_OK(hd__msg_encode_done(&b, seqs, n));
      }
      uint8_t t;
      const uint8_t *body;
      size_t len;
      CHECK(frame(&b, &t, &body, &len) == 0);
      CHECK(t == type);
      CHECK_OK(hd__msg_check(t, body, len));
      hd__entry_iter_t it;
      uint64_t count = 99;
      CHECK_OK(hd__msg_entries_begin(&it, t, body, len, &count));
      CHECK(count == n);
      hd__entry_t e;
      for (size_t i = 0; i < n; i++) {
        CHECK(hd__msg_entries_next(&it, &e) == 1);
        CHECK(e.seq == ev[i].seq);
        CHECK(e.created_ms == (type == HD__MSG_EVENTS ? ev[i].created_ms : 0));
        size_t want_len = type == HD__MSG_DONE ? 0 : ev[i].len;
        CHECK(e.len == want_len);
        CHECK(want_len == 0 || memcmp(e.data, ev[i].data, want_len) == 0);
        /* zero copy: the view points into the body */
        CHECK(want_len == 0 || (e.data >= body && e.data + e.len <= body + len));
      }
      CHECK(hd__msg_entries_next(&it, &e) == 0);
      CHECK(hd__msg_entries_next(&it, &e) == 0);
      hd__buf_free(&b);
    }
  }
}

/* FAILED and NOTICES: each set of entries round-trips through the encoder, hd__msg_check and the
 * iterator (reasons pointing into the body); every cut of the message's body and one byte more
 * are refused; the fit helper takes exactly the entries that fit. */
static void check_new_batch(uint8_t type, const hd__entry_t *e, size_t n) {
  hd__buf_t b;
  hd__buf_init(&b);
  CHECK_OK(type == HD__MSG_FAILED ? hd__msg_encode_failed(&b, e, n)
                                  : hd__msg_encode_notices(&b, e, n));
  uint8_t t;
  const uint8_t *body;
  size_t len;
  CHECK(frame(&b, &t, &body, &len) == 0);
  CHECK(t == type);
  CHECK_OK(hd__msg_check(t, body, len));
  hd__entry_iter_t it;
  uint64_t count = 99;
  CHECK_OK(hd__msg_entries_begin(&it, t, body, len, &count));
  CHECK(count == n);
  hd__entry_t d;
  for (size_t i = 0; i < n; i++) {
    CHECK(hd__msg_entries_next(&it, &d) == 1);
    CHECK(d.seq == e[i].seq);
    if (type == HD__MSG_FAILED) {
      CHECK(d.attempts == e[i].attempts && d.created_ms == 0);
      CHECK(d.len == e[i].len && (d.len == 0 || memcmp(d.data, e[i].data, d.len) == 0));
      CHECK(d.len == 0 || (d.data >= body && d.data + d.len <= body + len));
      CHECK(d.notice.kind == 0 && d.notice.count == 0 && d.notice.last_seq == 0);
    } else {
      CHECK(d.created_ms == e[i].created_ms && d.attempts == 0 && d.len == 0);
      CHECK(memcmp(&d.notice, &e[i].notice, sizeof d.notice) == 0);
    }
  }
  CHECK(hd__msg_entries_next(&it, &d) == 0);
  /* every cut is refused (a prefix never holds the count's entries), and a byte more too */
  uint8_t *copy = malloc(len + 1);
  CHECK(copy != NULL);
  memcpy(copy, body, len);
  for (size_t cut = 0; cut < len; cut++) CHECK_RC(hd__msg_check(t, copy, cut), HD_EPROTO);
  copy[len] = 0;
  CHECK_RC(hd__msg_check(t, copy, len + 1), HD_EPROTO);
  CHECK(detail_has("trailing"));
  free(copy);
  if (type == HD__MSG_FAILED) {
    uint64_t l = b.len - hd__varint_len(b.len - 1); /* L: type and body */
    CHECK(l == len + 1);
    CHECK(hd__msg_failed_fit(e, n, l) == n);
    CHECK(n == 0 || hd__msg_failed_fit(e, n, l - 1) == n - 1);
  }
  hd__buf_free(&b);
}

static void roundtrip_failed(void) {
  /* the longest reason, in characters of two, three and four bytes */
  static char longest[HD__REASON_MAX];
  size_t k = 0;
  while (k + 9 <= sizeof longest) {
    memcpy(longest + k, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9); /* é € 😀 */
    k += 9;
  }
  while (k < sizeof longest) longest[k++] = 'x';
  hd__entry_t f[4] = {{.seq = 1, .attempts = 0},
                      {.seq = 300, .attempts = 10, .data = (const uint8_t *)"timeout", .len = 7},
                      {.seq = UINT64_MAX, .attempts = UINT64_MAX, .data = (const uint8_t *)longest,
                       .len = sizeof longest},
                      {.seq = 2, .attempts = 1, .data = (const uint8_t *)"", .len = 0}};
  for (size_t n = 0; n <= 4; n++) check_new_batch(HD__MSG_FAILED, f, n);
  /* the encoder refuses what the decoder would refuse, and writes nothing then */
  hd__buf_t b;
  hd__buf_init(&b);
  hd__entry_t bad[2] = {f[1], {.seq = 3, .attempts = 1, .data = (const uint8_t *)longest,
                               .len = sizeof longest + 1}};
  static char over[HD__REASON_MAX + 1];
  memset(over, 'a', sizeof over);
  bad[1].data = (const uint8_t *)over;
  CHECK_RC(hd__msg_encode_failed(&b, bad, 2), HD_EINVAL);
  CHECK(b.len == 0);
  static const char *const invalid[] = {"\xc3\x28", "\xc0\x80", "\xed\xa0\x80",
                                        "\xf4\x90\x80\x80", "\xe2\x82", "\xff"};
  for (size_t i = 0; i < HD__ARRAY_SIZE(invalid); i++) {
    bad[1].data = (const uint8_t *)invalid[i];
    bad[1].len = strlen(invalid[i]);
    CHECK_RC(hd__msg_encode_failed(&b, bad, 2), HD_EINVAL);
    CHECK(b.len == 0);
  }
  hd__buf_free(&b);
}

static void roundtrip_notices(void) {
  hd__entry_t n[4] = {
      {.seq = 42, .created_ms = 1700000000000ull, .notice = {1, 4, 38, 41}},
      {.seq = 45, .created_ms = 1700000000001ull, .notice = {3, 1, 7, 44}},
      {.seq = UINT64_MAX, .created_ms = UINT64_MAX,
       .notice = {UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX}},
      /* a kind this release does not know, and a range the codec does not judge */
      {.seq = 1, .created_ms = 0, .notice = {99, 0, 9, 2}}};
  for (size_t k = 0; k <= 4; k++) check_new_batch(HD__MSG_NOTICES, n, k);
}

/* A stored notice's payload: four minimal varints, nothing else. */
static void notice_payload(void) {
  const hd__notice_t cases[] = {{0, 0, 0, 0}, {1, 4, 38, 41}, {3, 1, 7, 44}, {99, 0, 9, 2},
                                {UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX}};
  uint8_t p[HD__NOTICE_MAX + 1];
  for (size_t i = 0; i < HD__ARRAY_SIZE(cases); i++) {
    size_t n = hd__notice_encode(&cases[i], p);
    size_t want = hd__varint_len(cases[i].kind) + hd__varint_len(cases[i].count) +
                  hd__varint_len(cases[i].first_seq) + hd__varint_len(cases[i].last_seq);
    CHECK(n == want && n <= HD__NOTICE_MAX);
    hd__notice_t d;
    CHECK_OK(hd__notice_decode(p, n, &d));
    CHECK(memcmp(&d, &cases[i], sizeof d) == 0);
    for (size_t cut = 0; cut < n; cut++) CHECK_RC(hd__notice_decode(p, cut, &d), HD_EPROTO);
    p[n] = 0;
    CHECK_RC(hd__notice_decode(p, n + 1, &d), HD_EPROTO);
    CHECK(detail_has("trailing"));
  }
  hd__notice_t all = {UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX}, d;
  CHECK(hd__notice_encode(&all, p) == HD__NOTICE_MAX);
  uint8_t golden[4];
  CHECK(unhex(golden, "01 04 26 29") == 4);
  CHECK_OK(hd__notice_decode(golden, 4, &d));
  CHECK(d.kind == 1 && d.count == 4 && d.first_seq == 38 && d.last_seq == 41);
  CHECK(unhex(golden, "01 80 00 26") == 4); /* non-minimal count */
  CHECK_RC(hd__notice_decode(golden, 4, &d), HD_EPROTO);
  CHECK(detail_has("count is not a minimal"));
}

static void roundtrip_singles(void) {
  hd__buf_t b;
  hd__buf_init(&b);
  uint8_t t;
  const uint8_t *body;
  size_t len;
  hd__resume_t r = {.high_seq = 41, .window = 1000}, r2;
  for (int i = 0; i < 16; i++) r.store_id[i] = (uint8_t)(0xf0 + i);
  CHECK_OK(hd__msg_encode_resume(&b, &r));
  CHECK(frame(&b, &t, &body, &len) == 0 && t == HD__MSG_RESUME);
  CHECK_OK(hd__msg_decode_resume(body, len, &r2));
  CHECK(memcmp(&r, &r2, sizeof r) == 0);
  /* with the epoch (to a server that advertised one): 16 more bytes */
  size_t plain = len;
  r.has_epoch = 1;
  for (int i = 0; i < 16; i++) r.epoch[i] = (uint8_t)(0x30 + i);
  b.len = 0;
  CHECK_OK(hd__msg_encode_resume(&b, &r));
  CHECK(frame(&b, &t, &body, &len) == 0 && t == HD__MSG_RESUME && len == plain + 16);
  CHECK_OK(hd__msg_decode_resume(body, len, &r2));
  CHECK(memcmp(&r, &r2, sizeof r) == 0);

  static const uint64_t floors[][2] = {{0, 0}, {90, 90}, {0, 100}, {UINT64_MAX, 1}};
  for (size_t i = 0; i < HD__ARRAY_SIZE(floors); i++) {
    b.len = 0;
    CHECK_OK(hd__msg_encode_epoch(&b, floors[i][0], floors[i][1]));
    CHECK(frame(&b, &t, &body, &len) == 0 && t == HD__MSG_EPOCH);
    uint64_t fl, su;
    CHECK_OK(hd__msg_decode_epoch(body, len, &fl, &su));
    CHECK(fl == floors[i][0] && su == floors[i][1]);
    CHECK_OK(hd__msg_check(t, body, len));
  }

  static const uint64_t values[] = {0, 1, 127, 128, 1500, UINT64_MAX};
  int (*const enc[])(hd__buf_t *, uint64_t) = {hd__msg_encode_credit, hd__msg_encode_pause,
                                               hd__msg_encode_ping, hd__msg_encode_pong};
  for (int k = 0; k < 4; k++) {
    for (size_t i = 0; i < HD__ARRAY_SIZE(values); i++) {
      b.len = 0;
      CHECK_OK(enc[k](&b, values[i]));
      CHECK(frame(&b, &t, &body, &len) == 0 && t == HD__MSG_CREDIT + k);
      uint64_t v;
      CHECK_OK(hd__msg_decode_varint(t, body, len, &v));
      CHECK(v == values[i]);
    }
  }
  uint64_t v;
  CHECK_RC(hd__msg_decode_varint(HD__MSG_BYE, body, len, &v), HD_EINVAL);

  static char text[HD__BYE_TEXT_MAX + 1];
  memset(text, 'a', sizeof text);
  const char *texts[] = {"", "bye", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", text};
  size_t lens[] = {0, 3, 14, HD__BYE_TEXT_MAX};
  for (int i = 0; i < 4; i++) {
    b.len = 0;
    CHECK_OK(hd__msg_encode_bye(&b, (uint64_t)(9 + i), texts[i], lens[i]));
    CHECK(frame(&b, &t, &body, &len) == 0 && t == HD__MSG_BYE);
    uint64_t reason;
    const uint8_t *tx;
    size_t tl;
    CHECK_OK(hd__msg_decode_bye(body, len, &reason, &tx, &tl));
    CHECK(reason == (uint64_t)(9 + i) && tl == lens[i] && memcmp(tx, texts[i], tl) == 0);
  }
  CHECK_RC(hd__msg_encode_bye(&b, 0, text, HD__BYE_TEXT_MAX + 1), HD_EINVAL);
  CHECK_RC(hd__msg_encode_bye(&b, 0, "\xff", 1), HD_EINVAL);
  hd__buf_free(&b);
}

/* `hex` is a body of `type`; it must be refused with HD_EPROTO and a detail naming the message
 * and containing `fault`. */
static int refused(uint8_t type, const char *hex, const char *fault) {
  uint8_t b[600];
  size_t n = unhex(b, hex);
  hd_clear_error();
  int rc = hd__msg_check(type, b, n);
  const char *d = hd_last_error_message();
  if (rc != HD_EPROTO || strstr(d, hd__msg_type_name(type)) == NULL || strstr(d, fault) == NULL) {
    fprintf(stderr, "  body %s of %s: rc %d detail \"%s\" (wanted \"%s\")\n", hex,
            hd__msg_type_name(type), rc, d, fault);
    return 0;
  }
  return 1;
}

/* Malformed bodies: each must be refused (refused()); a test runs the rows of its types. */
static const struct malformed {
  uint8_t type;
  const char *hex, *fault;
} malformed[] = {
    {HD__MSG_EVENTS, "", "count is truncated"},
    {HD__MSG_EVENTS, "80 00", "count is not a minimal varint"},
    {HD__MSG_EVENTS, "02 01 01 00", "count 2 cannot fit"},
    /* lying counts: huge, never used to size anything */
    {HD__MSG_EVENTS, "ff ff ff ff ff ff ff ff ff 01 01 01 00", "cannot fit"},
    {HD__MSG_EVENTS, "80 80 80 80 01 01 01 00", "cannot fit"},
    {HD__MSG_EVENTS, "01 01 01 05 61 62", "payload length 5 exceeds"},
    {HD__MSG_EVENTS, "01 01 01 ff ff ff ff ff ff ff ff ff 01", "exceeds"},
    {HD__MSG_EVENTS, "01 01 01 00 00", "1 trailing bytes"},
    {HD__MSG_EVENTS, "00 00", "trailing"},
    {HD__MSG_EVENTS, "01 81 00 01 00", "seq is not a minimal"},
    {HD__MSG_EVENTS, "01 01 80 80 00", "created_unix_ms is not a minimal"},
    {HD__MSG_EVENTS, "01 01 01 81", "payload is truncated"},
    {HD__MSG_EVENTS, "02 01 01 00 02 01 81", "payload is truncated"},
    {HD__MSG_CONSUMED, "", "count is truncated"},
    {HD__MSG_CONSUMED, "02 01 00 01", "count 2 cannot fit"},
    {HD__MSG_CONSUMED, "ff ff ff ff 0f 01 00", "cannot fit"},
    {HD__MSG_CONSUMED, "01 01 03 61 62", "data length 3 exceeds"},
    {HD__MSG_CONSUMED, "01 01 00 07", "trailing"},
    {HD__MSG_CONSUMED, "01 80 00 00", "seq is not a minimal"},
    {HD__MSG_DONE, "", "count is truncated"},
    {HD__MSG_DONE, "03 01 02", "count 3 cannot fit"},
    {HD__MSG_DONE, "ff ff ff ff ff ff ff ff ff 01", "cannot fit"},
    {HD__MSG_DONE, "02 01 82", "seq is truncated"},
    {HD__MSG_DONE, "01 01 01", "trailing"},
    {HD__MSG_DONE, "01 ff ff ff ff ff ff ff ff ff 02", "seq is not a minimal"},
    {HD__MSG_FAILED, "", "count is truncated"},
    {HD__MSG_FAILED, "01 01", "count 1 cannot fit"},
    {HD__MSG_FAILED, "02 01 01 00", "count 2 cannot fit"},
    {HD__MSG_FAILED, "ff ff ff ff ff ff ff ff ff 01 01 01 00", "cannot fit"},
    {HD__MSG_FAILED, "01 80 00 01 00", "seq is not a minimal"},
    {HD__MSG_FAILED, "01 01 80 00 00", "attempts is not a minimal"},
    {HD__MSG_FAILED, "01 01 01 ff ff ff ff ff ff ff ff ff 02", "reason is not a minimal"},
    {HD__MSG_FAILED, "01 01 01 05 61 62", "reason length 5 exceeds"},
    {HD__MSG_FAILED, "01 01 01 01 61 62", "1 trailing bytes"},
    {HD__MSG_FAILED, "02 01 01 00 02 01 81", "reason is truncated"},
    {HD__MSG_FAILED, "01 01 01 02 c3 28", "reason is not valid UTF-8"},
    {HD__MSG_FAILED, "01 01 01 02 c0 80", "reason is not valid UTF-8"},    /* overlong NUL */
    {HD__MSG_FAILED, "01 01 01 03 ed a0 80", "reason is not valid UTF-8"}, /* surrogate */
    {HD__MSG_FAILED, "01 01 01 02 e2 82", "reason is not valid UTF-8"},    /* cut sequence */
    {HD__MSG_NOTICES, "", "count is truncated"},
    {HD__MSG_NOTICES, "01 01 01 01 01 01", "count 1 cannot fit"},
    {HD__MSG_NOTICES, "02 01 01 01 01 01 01 01", "count 2 cannot fit"},
    {HD__MSG_NOTICES, "80 80 80 80 01 01 01 01 01 01 01", "cannot fit"},
    {HD__MSG_NOTICES, "01 81 00 01 01 01 01 01", "seq is not a minimal"},
    {HD__MSG_NOTICES, "01 01 80 00 01 01 01 01", "created_unix_ms is not a minimal"},
    {HD__MSG_NOTICES, "01 01 01 80 00 01 01 01", "notice kind is not a minimal"},
    {HD__MSG_NOTICES, "01 01 01 01 80 00 01 01", "notice count is not a minimal"},
    {HD__MSG_NOTICES, "01 01 01 01 01 80 00 01", "notice first_seq is not a minimal"},
    {HD__MSG_NOTICES, "01 01 01 01 01 01 81", "notice last_seq is truncated"},
    {HD__MSG_NOTICES, "01 01 01 01 01 01 01 00", "1 trailing bytes"},
    {HD__MSG_RESUME, "00 01 02", "store id is truncated"},
    {HD__MSG_RESUME, "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00", "high_seq is truncated"},
    {HD__MSG_RESUME, "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 05", "window is truncated"},
    {HD__MSG_RESUME, "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 05 06 07", "trailing"},
    {HD__MSG_RESUME, "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 80 00 01", "high_seq is not"},
    /* the epoch is 16 bytes or nothing */
    {HD__MSG_RESUME, "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 05 06"
                     " 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f", "15 trailing bytes"},
    {HD__MSG_RESUME, "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 05 06"
                     " 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10 11", "17 trailing bytes"},
    {HD__MSG_EPOCH, "", "floor is truncated"},
    {HD__MSG_EPOCH, "5a", "seen_upto is truncated"},
    {HD__MSG_EPOCH, "5a 5a 00", "1 trailing bytes"},
    {HD__MSG_EPOCH, "80 00 5a", "floor is not a minimal"},
    {HD__MSG_EPOCH, "5a ff ff ff ff ff ff ff ff ff 02", "seen_upto is not a minimal"},
    {HD__MSG_BYE, "", "reason is truncated"},
    {HD__MSG_BYE, "00", "text is truncated"},
    {HD__MSG_BYE, "00 03 61 62", "text length 3 exceeds"},
    {HD__MSG_BYE, "00 01 61 62", "trailing"},
    {HD__MSG_BYE, "00 02 c3 28", "not valid UTF-8"},
    {HD__MSG_BYE, "00 02 c0 80", "not valid UTF-8"},       /* overlong NUL */
    {HD__MSG_BYE, "00 03 ed a0 80", "not valid UTF-8"},    /* surrogate */
    {HD__MSG_BYE, "00 04 f4 90 80 80", "not valid UTF-8"}, /* past U+10FFFF */
    {HD__MSG_BYE, "00 02 e2 82", "not valid UTF-8"},       /* cut sequence */
};

/* Every row of `malformed` whose type is in the mask (bit `type`) is refused. */
static void check_malformed(uint32_t types) {
  int rows = 0;
  for (size_t i = 0; i < HD__ARRAY_SIZE(malformed); i++) {
    const struct malformed *m = &malformed[i];
    if (!(types & (1u << m->type))) continue;
    CHECK(refused(m->type, m->hex, m->fault));
    rows++;
  }
  CHECK(rows > 0);
}

static void malformed_events(void) { check_malformed(1u << HD__MSG_EVENTS); }

static void malformed_consumed_done(void) {
  check_malformed(1u << HD__MSG_CONSUMED | 1u << HD__MSG_DONE);
  /* begin on a non-batch type is a caller error */
  hd__entry_iter_t it;
  CHECK_RC(hd__msg_entries_begin(&it, HD__MSG_PING, (const uint8_t *)"\x01", 1, NULL), HD_EINVAL);
}

static void malformed_failed_notices(void) {
  check_malformed(1u << HD__MSG_FAILED | 1u << HD__MSG_NOTICES);
  /* a reason of 1024 bytes is the most there may be: 1025 all present is refused */
  static uint8_t body[1 + 1 + 1 + 2 + HD__REASON_MAX + 1];
  size_t n = 0;
  body[n++] = 1, body[n++] = 1, body[n++] = 1;
  n += hd__varint_put(body + n, HD__REASON_MAX);
  memset(body + n, 'a', HD__REASON_MAX);
  CHECK_OK(hd__msg_check(HD__MSG_FAILED, body, n + HD__REASON_MAX));
  n = 3 + hd__varint_put(body + 3, HD__REASON_MAX + 1);
  memset(body + n, 'a', HD__REASON_MAX + 1);
  CHECK_RC(hd__msg_check(HD__MSG_FAILED, body, n + HD__REASON_MAX + 1), HD_EPROTO);
  CHECK(detail_has("FAILED") && detail_has("reason of 1025 bytes exceeds 1024"));
}

static void malformed_singles(void) {
  check_malformed(1u << HD__MSG_RESUME | 1u << HD__MSG_BYE | 1u << HD__MSG_EPOCH);
  for (uint8_t t = HD__MSG_CREDIT; t <= HD__MSG_PONG; t++) {
    CHECK(refused(t, "", "is truncated"));
    CHECK(refused(t, "01 02", "1 trailing bytes"));
    CHECK(refused(t, "80 00", "not a minimal"));
    CHECK(refused(t, "ff ff ff ff ff ff ff ff ff 02", "not a minimal varint of at most 64 bits"));
  }
  /* 257 bytes of text: over the limit even though it is all present */
  char hex[1000] = "00 81 02";
  for (int i = 0; i < 257; i++) strcat(hex, " 61");
  CHECK(refused(HD__MSG_BYE, hex, "exceeds 256"));
}

static void batch_fit(void) {
  hd__entry_t ev[3] = {{1, 2, (const uint8_t *)"aaaa", 4}, {2, 3, (const uint8_t *)"bb", 2},
                       {3, 4, (const uint8_t *)"c", 1}};
  /* sizes: L = 1 (type) + 1 (count) + entries of 7, 5, 4 bytes */
  size_t whole = hd__msg_events_size(ev, 3);
  CHECK(whole == 1 + 1 + 1 + 7 + 5 + 4);
  CHECK(hd__msg_events_fit(ev, 3, 18) == 3);
  CHECK(hd__msg_events_fit(ev, 3, 17) == 2);
  CHECK(hd__msg_events_fit(ev, 3, 9) == 1);
  CHECK(hd__msg_events_fit(ev, 3, 8) == 0);
  CHECK(hd__msg_consumed_fit(ev, 3, 1 + 1 + 6 + 4 + 3) == 3);
  CHECK(hd__msg_consumed_fit(ev, 3, 1 + 1 + 6 + 4 + 2) == 2);
  /* DONE: the count varint grows from 1 to 2 bytes at 128 entries */
  static uint64_t seqs[200];
  for (int i = 0; i < 200; i++) seqs[i] = 1;
  CHECK(hd__msg_done_fit(seqs, 200, 1 + 1 + 127) == 127);
  CHECK(hd__msg_done_fit(seqs, 200, 1 + 2 + 128) == 128);
  CHECK(hd__msg_done_fit(seqs, 200, 1 + 1 + 128) == 127);
  CHECK(hd__msg_done_fit(seqs, 200, 1000) == 200);
  /* FAILED: entries of 7, 5 and 4 bytes (seq, attempts, reason length, reason) */
  CHECK(hd__msg_failed_fit(ev, 3, 1 + 1 + 7 + 5 + 4) == 3);
  CHECK(hd__msg_failed_fit(ev, 3, 1 + 1 + 7 + 5 + 3) == 2);
  CHECK(hd__msg_failed_fit(ev, 3, 1 + 1 + 7) == 1);
  CHECK(hd__msg_failed_fit(ev, 3, 1 + 1 + 6) == 0);
  CHECK(hd__msg_failed_fit(ev, 0, 0) == 0);
  static hd__entry_t small[200];
  for (int i = 0; i < 200; i++) small[i] = (hd__entry_t){.seq = 1, .attempts = 1};
  CHECK(hd__msg_failed_fit(small, 200, 1 + 1 + 127 * 3) == 127);
  CHECK(hd__msg_failed_fit(small, 200, 1 + 2 + 128 * 3) == 128);
  CHECK(hd__msg_failed_fit(small, 200, 1 + 1 + 128 * 3) == 127);
  CHECK(hd__msg_failed_fit(small, 200, UINT64_MAX) == 200);
}

static void hello_welcome(void) {
  hd__hello_t h = {1, {0}, 1048576}, h2;
  for (int i = 0; i < 32; i++) h.public_key[i] = (uint8_t)(i * 3);
  uint8_t buf[HD__WELCOME_MAX + 8];
  size_t n = hd__hello_encode(&h, buf);
  CHECK(n == 1 + 32 + 3);
  CHECK_OK(hd__hello_decode(buf, n, &h2));
  CHECK(memcmp(&h, &h2, sizeof h) == 0);
  /* trailing bytes are room for extensions */
  buf[n] = 0xee;
  buf[n + 1] = 0xff;
  CHECK_OK(hd__hello_decode(buf, n + 2, &h2));
  CHECK(memcmp(&h, &h2, sizeof h) == 0);
  for (size_t cut = 0; cut < n; cut++) CHECK_RC(hd__hello_decode(buf, cut, &h2), HD_EPROTO);
  hd__hello_t hmax = {UINT64_MAX, {0}, UINT64_MAX, UINT64_MAX};
  CHECK(hd__hello_encode(&hmax, buf) == HD__HELLO_MAX);
  /* another version: only the version is read, whatever follows */
  CHECK_OK(hd__hello_decode((const uint8_t *)"\x02\x01", 2, &h2));
  CHECK(h2.version == 2);

  hd__welcome_t w = {.version = 1, .pause_ms = 1000, .max_message_bytes = 1048576,
                     .keepalive_ms = 5000}, w2;
  for (int i = 0; i < 16; i++) w.store_id[i] = (uint8_t)(200 + i);
  n = hd__welcome_encode(&w, buf);
  CHECK(n == 1 + 16 + 2 + 3 + 2);
  CHECK_OK(hd__welcome_decode(buf, n, &w2));
  CHECK(memcmp(&w, &w2, sizeof w) == 0);
  buf[n] = 0x80; /* trailing garbage, even an unfinished varint, is ignored */
  CHECK_OK(hd__welcome_decode(buf, n + 1, &w2));
  CHECK(memcmp(&w, &w2, sizeof w) == 0);
  for (size_t cut = 0; cut < n; cut++) CHECK_RC(hd__welcome_decode(buf, cut, &w2), HD_EPROTO);
  hd__welcome_t wmax = {UINT64_MAX, {0}, UINT64_MAX, UINT64_MAX, UINT64_MAX, 1, {0}, UINT64_MAX};
  CHECK(hd__welcome_encode(&wmax, buf) == HD__WELCOME_MAX);
  /* the epoch: 16 bytes after keepalive_ms; fewer are ignored as before, more too */
  w.has_epoch = 1;
  for (int i = 0; i < 16; i++) w.epoch[i] = (uint8_t)(0x40 + i);
  n = hd__welcome_encode(&w, buf);
  CHECK(n == 1 + 16 + 2 + 3 + 2 + 16);
  CHECK_OK(hd__welcome_decode(buf, n, &w2));
  CHECK(memcmp(&w, &w2, sizeof w) == 0);
  buf[n] = 0x80;
  CHECK_OK(hd__welcome_decode(buf, n + 1, &w2));
  CHECK(memcmp(&w, &w2, sizeof w) == 0);
  CHECK_OK(hd__welcome_decode(buf, n - 1, &w2));
  CHECK(w2.has_epoch == 0 && w2.keepalive_ms == 5000);
  CHECK_OK(hd__welcome_decode((const uint8_t *)"\x07", 1, &w2));
  CHECK(w2.version == 7);
  CHECK_RC(hd__welcome_decode((const uint8_t *)"\x80\x00", 2, &w2), HD_EPROTO);
}

/* The features varint: after max_message_bytes in HELLO, after the epoch in WELCOME; absent or
 * malformed it reads as 0, and what follows it is ignored. */
static void handshake_features(void) {
  uint8_t buf[HD__WELCOME_MAX + 16], old[HD__WELCOME_MAX];
  hd__hello_t h = {.version = 1, .max_message_bytes = 1048576}, d;
  for (int i = 0; i < 32; i++) h.public_key[i] = (uint8_t)(i + 1);
  size_t n0 = hd__hello_encode(&h, old); /* the previous release's HELLO: features 0 */
  CHECK(n0 == 1 + 32 + 3);
  CHECK_OK(hd__hello_decode(old, n0, &d));
  CHECK(d.features == 0);
  const uint64_t values[] = {HD__FEATURE_FAILED, HD__FEATURE_NOTICES, HD__FEATURES_ALL, 1u << 20,
                             UINT64_MAX};
  for (size_t i = 0; i < HD__ARRAY_SIZE(values); i++) {
    h.features = values[i];
    size_t n = hd__hello_encode(&h, buf);
    CHECK(n == n0 + hd__varint_len(values[i]));
    CHECK(memcmp(buf, old, n0) == 0); /* what a peer of the previous release reads */
    CHECK_OK(hd__hello_decode(buf, n, &d));
    CHECK(memcmp(&d, &h, sizeof h) == 0);
    buf[n] = 0x80; /* a later field, even unfinished, is ignored */
    CHECK_OK(hd__hello_decode(buf, n + 1, &d));
    CHECK(d.features == values[i]);
    for (size_t cut = n0; cut < n; cut++) { /* a features varint cut short: none */
      CHECK_OK(hd__hello_decode(buf, cut, &d));
      CHECK(d.features == 0 && d.max_message_bytes == 1048576);
    }
  }
  /* malformed features are ignored, not refused: non-minimal, past 64 bits, cut short */
  static const char *const bad[] = {"80 00", "83 00", "ff ff ff ff ff ff ff ff ff 02", "80",
                                    "ff ff ff ff ff ff ff ff ff 81 01"};
  for (size_t i = 0; i < HD__ARRAY_SIZE(bad); i++) {
    memcpy(buf, old, n0);
    size_t n = n0 + unhex(buf + n0, bad[i]);
    d.features = 77;
    CHECK_OK(hd__hello_decode(buf, n, &d));
    CHECK(d.features == 0 && d.max_message_bytes == 1048576);
  }
  /* a features byte 00 (never sent: 0 is left out) reads as 0 */
  memcpy(buf, old, n0);
  buf[n0] = 0;
  CHECK_OK(hd__hello_decode(buf, n0 + 1, &d));
  CHECK(d.features == 0);

  hd__welcome_t w = {.version = 1, .pause_ms = 1000, .max_message_bytes = 1048576,
                     .keepalive_ms = 5000, .features = HD__FEATURES_ALL}, wd;
  for (int i = 0; i < 16; i++) w.store_id[i] = (uint8_t)i;
  /* without an epoch there is no features field: the encoder leaves it out */
  size_t n = hd__welcome_encode(&w, buf);
  CHECK(n == 1 + 16 + 2 + 3 + 2);
  CHECK_OK(hd__welcome_decode(buf, n, &wd));
  CHECK(wd.features == 0 && wd.has_epoch == 0);
  w.has_epoch = 1;
  for (int i = 0; i < 16; i++) w.epoch[i] = (uint8_t)(0x10 + i);
  w.features = 0;
  size_t e0 = hd__welcome_encode(&w, old); /* the previous release's WELCOME with an epoch */
  CHECK(e0 == n + 16);
  for (size_t i = 0; i < HD__ARRAY_SIZE(values); i++) {
    w.features = values[i];
    n = hd__welcome_encode(&w, buf);
    CHECK(n == e0 + hd__varint_len(values[i]) && memcmp(buf, old, e0) == 0);
    CHECK_OK(hd__welcome_decode(buf, n, &wd));
    CHECK(memcmp(&wd, &w, sizeof w) == 0);
    buf[n] = 0xff;
    CHECK_OK(hd__welcome_decode(buf, n + 1, &wd));
    CHECK(wd.features == values[i]);
    for (size_t cut = e0; cut < n; cut++) {
      CHECK_OK(hd__welcome_decode(buf, cut, &wd));
      CHECK(wd.features == 0 && wd.has_epoch == 1 && memcmp(wd.epoch, w.epoch, 16) == 0);
    }
  }
  /* fewer than 16 bytes after keepalive_ms: no epoch, hence no features, whatever they hold */
  for (size_t cut = e0 - 16; cut < e0; cut++) {
    CHECK_OK(hd__welcome_decode(buf, cut, &wd));
    CHECK(wd.has_epoch == 0 && wd.features == 0);
  }
  for (size_t i = 0; i < HD__ARRAY_SIZE(bad); i++) {
    memcpy(buf, old, e0);
    n = e0 + unhex(buf + e0, bad[i]);
    wd.features = 77;
    CHECK_OK(hd__welcome_decode(buf, n, &wd));
    CHECK(wd.features == 0 && wd.has_epoch == 1);
  }
}

static void preamble_and_reject(void) {
  uint8_t key[32], other[32], p[HD__PREAMBLE_BYTES], q[HD__PREAMBLE_BYTES];
  CHECK_OK(hd_topic_key(key, "folder", 6));
  CHECK_OK(hd_topic_key(other, "folder2", 7));
  hd__preamble_encode(p, key);
  CHECK(memcmp(p, "HYDN\x01\x00\x00\x00", 8) == 0);
  CHECK_OK(hd__preamble_check(p, key));
  CHECK_RC(hd__preamble_check(p, other), HD_ETOPIC);
  memcpy(q, p, sizeof p);
  q[0] = 'G';
  CHECK_RC(hd__preamble_check(q, key), HD_EPROTO);
  CHECK(detail_has("magic"));
  memcpy(q, p, sizeof p);
  q[4] = 2;
  q[5] = 0xff; /* version first: another version may use the flags */
  CHECK_RC(hd__preamble_check(q, key), HD_EVERSION);
  memcpy(q, p, sizeof p);
  q[5] = 1;
  CHECK_RC(hd__preamble_check(q, key), HD_EPROTO);
  memcpy(q, p, sizeof p);
  q[7] = 1;
  CHECK_RC(hd__preamble_check(q, key), HD_EPROTO);
  memcpy(q, p, sizeof p);
  q[15] ^= 1;
  CHECK_RC(hd__preamble_check(q, key), HD_ETOPIC);

  uint8_t r[HD__REJECT_BYTES];
  hd__reject_encode(r, HD__REJECT_TOPIC);
  CHECK(r[0] == 0 && r[1] == 0 && r[2] == 2);
  CHECK(hd__reject_reason_for(HD_EVERSION) == HD__REJECT_VERSION);
  CHECK(hd__reject_reason_for(HD_ETOPIC) == HD__REJECT_TOPIC);
  CHECK(hd__reject_reason_for(HD_EAUTH) == HD__REJECT_AUTH);
  CHECK(hd__reject_reason_for(HD_EKEY) == HD__REJECT_IDENTITY);
  CHECK(hd__reject_reason_for(HD_EPROTO) == HD__REJECT_MALFORMED);
  CHECK(hd__reject_error(1) == HD_EVERSION);
  CHECK(hd__reject_error(2) == HD_ETOPIC);
  CHECK(hd__reject_error(3) == HD_EAUTH);
  CHECK(hd__reject_error(4) == HD_EAUTH && detail_has("identity"));
  CHECK(hd__reject_error(5) == HD_EPROTO);
  CHECK(hd__reject_reason_for(HD_EMSGSIZE) == HD__REJECT_MSGSIZE && HD__REJECT_MSGSIZE == 7);
  CHECK(hd__reject_error(7) == HD_EMSGSIZE && detail_has("max_message_bytes"));
  CHECK(hd__reject_error(8) == HD_EPROTO && detail_has("unknown reason 8"));
  CHECK(hd__reject_error(0) == HD_EPROTO && detail_has("unknown reason 0"));
  CHECK(hd__reject_error(200) == HD_EPROTO);
}

/* ---- stream reader ------------------------------------------------------------------------- */

typedef struct sink {
  hd__buf_t got;       /* every message received, re-encoded as type + body, back to back */
  size_t count;
  size_t stop_at;      /* return 42 on this message (1-based); 0 = never */
  const uint8_t *chunk; /* when set: whole messages must point into it */
  size_t chunk_len;
  int copied;          /* messages not pointing into `chunk` */
} sink_t;

static int sink_cb(void *ctx, uint8_t type, const uint8_t *body, size_t len) {
  sink_t *s = ctx;
  s->count++;
  if (s->chunk && !(body > s->chunk && body + len <= s->chunk + s->chunk_len)) s->copied++;
  uint8_t hdr[HD__VARINT_MAX + 1];
  size_t h = hd__varint_put(hdr, len + 1);
  hdr[h++] = type;
  if (hd__buf_append(&s->got, hdr, h) || hd__buf_append(&s->got, body, len)) return HD_ENOMEM;
  return s->count == s->stop_at ? 42 : 0;
}

/* A stream of messages of many sizes and types; `sizes` of 0..~9000 bytes. */
static void make_stream(hd__buf_t *b, int n) {
  static uint8_t payload[9000];
  for (size_t i = 0; i < sizeof payload; i++) payload[i] = (uint8_t)(i ^ (i >> 8));
  uint32_t x = 12345;
  for (int i = 0; i < n; i++) {
    x = x * 1103515245u + 12345u;
    size_t len = (x >> 8) % (i % 10 == 0 ? 9000 : 200);
    hd__entry_t e = {(uint64_t)i + 1, 1700000000000ull + (uint64_t)i, payload, len};
    uint64_t seq = (uint64_t)i;
    switch (i % 4) {
      case 0: (void)hd__msg_encode_events(b, &e, 1); break;
      case 1: (void)hd__msg_encode_ping(b, (uint64_t)x << 20); break;
      case 2: (void)hd__msg_encode_consumed(b, &e, 1); break;
      default: (void)hd__msg_encode_done(b, &seq, 1); break;
    }
  }
}

static void reader_whole_chunk_in_place(void) {
  hd__buf_t in;
  hd__buf_init(&in);
  make_stream(&in, 50);
  sink_t s = {0};
  s.chunk = in.data;
  s.chunk_len = in.len;
  hd__msg_reader_t r;
  hd__msg_reader_init(&r, 0, sink_cb, &s);
  CHECK(r.max_message_bytes == HD__DEFAULT_MAX_MESSAGE);
  CHECK_OK(hd__msg_reader_feed(&r, in.data, in.len));
  CHECK(s.count == 50 && s.copied == 0 && r.msg == NULL);
  CHECK(s.got.len == in.len && memcmp(s.got.data, in.data, in.len) == 0);
  CHECK(hd__msg_reader_idle(&r));
  hd__msg_reader_free(&r);
  hd__buf_free(&s.got);
  hd__buf_free(&in);
}

/* Feeds `in` in chunks of sizes drawn from `seed` (1 = byte by byte) and checks everything
 * arrives whole and in order. */
static int feed_chunks(const hd__buf_t *in, uint32_t seed, size_t max_chunk) {
  sink_t s = {0};
  hd__msg_reader_t r;
  hd__msg_reader_init(&r, 1 << 20, sink_cb, &s);
  uint32_t x = seed;
  int ok = 1;
  for (size_t off = 0; off < in->len && ok;) {
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    size_t n = max_chunk == 1 ? 1 : 1 + x % max_chunk;
    if (n > in->len - off) n = in->len - off;
    ok = hd__msg_reader_feed(&r, in->data + off, n) == 0;
    off += n;
  }
  ok = ok && hd__msg_reader_idle(&r) && s.got.len == in->len &&
       memcmp(s.got.data, in->data, in->len) == 0 && r.msg_cap <= HD__MSG_KEEP;
  hd__msg_reader_free(&r);
  hd__buf_free(&s.got);
  return ok;
}

static void reader_byte_by_byte(void) {
  hd__buf_t in;
  hd__buf_init(&in);
  make_stream(&in, 200);
  CHECK(feed_chunks(&in, 1, 1));
  hd__buf_free(&in);
}

static void reader_random_chunks(void) {
  hd__buf_t in;
  hd__buf_init(&in);
  make_stream(&in, 300);
  static const size_t maxes[] = {2, 3, 7, 64, 1000, 20000, 100000};
  for (uint32_t seed = 1; seed <= 20; seed++)
    for (size_t m = 0; m < HD__ARRAY_SIZE(maxes); m++) CHECK(feed_chunks(&in, seed * 7919, maxes[m]));
  hd__buf_free(&in);
}

static void reader_limits(void) {
  sink_t s = {0};
  hd__msg_reader_t r;
  uint8_t b[32];
  /* exactly the limit passes; one more is refused before any allocation */
  hd__msg_reader_init(&r, 1000, sink_cb, &s);
  size_t n = hd__varint_put(b, 1000);
  CHECK_OK(hd__msg_reader_feed(&r, b, n));
  CHECK(r.msg != NULL && r.msg_cap == 1000);
  hd__msg_reader_free(&r);

  hd__msg_reader_init(&r, 1000, sink_cb, &s);
  n = hd__varint_put(b, 1001);
  CHECK_RC(hd__msg_reader_feed(&r, b, n), HD_EMSGSIZE);
  CHECK(r.msg == NULL && detail_has("1001") && detail_has("1000"));
  CHECK_RC(hd__msg_reader_feed(&r, (const uint8_t *)"\x02\x07\x07", 3), HD_EMSGSIZE); /* sticky */
  hd__msg_reader_free(&r);

  /* a lying length of 2^63, split across chunks, with no limit to speak of: still refused */
  hd__msg_reader_init(&r, 1 << 20, sink_cb, &s);
  n = hd__varint_put(b, (uint64_t)1 << 63);
  for (size_t i = 0; i + 1 < n; i++) CHECK_OK(hd__msg_reader_feed(&r, b + i, 1));
  CHECK(!hd__msg_reader_idle(&r));
  CHECK_RC(hd__msg_reader_feed(&r, b + n - 1, 1), HD_EMSGSIZE);
  CHECK(r.msg == NULL);
  hd__msg_reader_free(&r);

  hd__msg_reader_init(&r, 0, sink_cb, &s);
  CHECK_RC(hd__msg_reader_feed(&r, (const uint8_t *)"\x00", 1), HD_EPROTO);
  CHECK(detail_has("length 0"));
  hd__msg_reader_free(&r);

  hd__msg_reader_init(&r, 0, sink_cb, &s);
  CHECK_RC(hd__msg_reader_feed(&r, (const uint8_t *)"\x82\x00\x07", 3), HD_EPROTO);
  hd__msg_reader_free(&r);
  /* the same overlong prefix cut between chunks */
  hd__msg_reader_init(&r, 0, sink_cb, &s);
  CHECK_OK(hd__msg_reader_feed(&r, (const uint8_t *)"\x82", 1));
  CHECK_RC(hd__msg_reader_feed(&r, (const uint8_t *)"\x00", 1), HD_EPROTO);
  hd__msg_reader_free(&r);
  /* 11-byte prefix cut anywhere */
  hd__msg_reader_init(&r, 0, sink_cb, &s);
  memset(b, 0xff, 11);
  CHECK_OK(hd__msg_reader_feed(&r, b, 5));
  CHECK_RC(hd__msg_reader_feed(&r, b + 5, 6), HD_EPROTO);
  hd__msg_reader_free(&r);
  CHECK(s.count == 0);
  hd__buf_free(&s.got);
}

static void reader_callback_stops(void) {
  hd__buf_t in;
  hd__buf_init(&in);
  for (int i = 0; i < 5; i++) CHECK_OK(hd__msg_encode_ping(&in, (uint64_t)i));
  sink_t s = {0};
  s.stop_at = 2;
  hd__msg_reader_t r;
  hd__msg_reader_init(&r, 0, sink_cb, &s);
  CHECK(hd__msg_reader_feed(&r, in.data, in.len) == 42);
  CHECK(s.count == 2);
  CHECK(hd__msg_reader_feed(&r, in.data, in.len) == 42);
  CHECK(s.count == 2);
  hd__msg_reader_free(&r);
  /* the same when the stopping message was assembled from pieces */
  hd__buf_free(&s.got);
  memset(&s, 0, sizeof s);
  s.stop_at = 1;
  hd__msg_reader_init(&r, 0, sink_cb, &s);
  CHECK_OK(hd__msg_reader_feed(&r, in.data, 2));
  CHECK(hd__msg_reader_feed(&r, in.data + 2, in.len - 2) == 42);
  CHECK(s.count == 1);
  hd__msg_reader_free(&r);
  hd__buf_free(&s.got);
  hd__buf_free(&in);
}

static void reader_memory(void) {
  /* a spanning message up to 4 KiB leaves its buffer for reuse; a bigger one is freed */
  static uint8_t payload[10000];
  hd__entry_t e = {1, 1, payload, 100};
  hd__buf_t in;
  hd__buf_init(&in);
  CHECK_OK(hd__msg_encode_events(&in, &e, 1));
  sink_t s = {0};
  hd__msg_reader_t r;
  hd__msg_reader_init(&r, 0, sink_cb, &s);
  CHECK_OK(hd__msg_reader_feed(&r, in.data, 10));
  CHECK(r.msg_cap == in.len - 1); /* exact size: all but the 1-byte length prefix */
  CHECK_OK(hd__msg_reader_feed(&r, in.data + 10, in.len - 10));
  CHECK(r.msg != NULL && r.msg_cap <= HD__MSG_KEEP && hd__msg_reader_idle(&r));
  in.len = 0;
  e.len = sizeof payload;
  CHECK_OK(hd__msg_encode_events(&in, &e, 1));
  CHECK_OK(hd__msg_reader_feed(&r, in.data, 10));
  CHECK(r.msg_cap == in.len - 2); /* 2-byte prefix */
  CHECK_OK(hd__msg_reader_feed(&r, in.data + 10, in.len - 10));
  CHECK(r.msg == NULL && r.msg_cap == 0 && s.count == 2);
  CHECK(sizeof(hd__msg_reader_t) <= 96);
  hd__msg_reader_free(&r);
  hd__buf_free(&s.got);
  hd__buf_free(&in);
}

#define TESTS(X)                                                                                  \
  X(varint_edges) X(buf_basics) X(type_names) X(roundtrip_batches) X(roundtrip_singles)           \
  X(malformed_events) X(malformed_consumed_done) X(malformed_singles) X(batch_fit)                \
  X(roundtrip_failed) X(roundtrip_notices) X(notice_payload) X(malformed_failed_notices)          \
  X(handshake_features) X(hello_welcome) X(preamble_and_reject) X(reader_whole_chunk_in_place) X(reader_byte_by_byte)   \
  X(reader_random_chunks) X(reader_limits) X(reader_callback_stops) X(reader_memory)
HD_TEST_MAIN(TESTS)
