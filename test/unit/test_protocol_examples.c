/* The golden bytes of docs/PROTOCOL.md: every block fenced as ```hex example NAME must be what the
 * codec produces from the values documented beside it, and must decode back to those values.
 * Run from the project root (the doc is found relative to the current directory). */
#include "harness.h"

#include "record.h"
#include "wire.h"

#define MAX_EXAMPLES 64

typedef struct example {
  char name[64];
  uint8_t bytes[256];
  size_t len;
} example_t;

static example_t examples[MAX_EXAMPLES];
static int n_examples = -1; /* -1: not loaded yet; -2: failed */

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int load(void) {
  if (n_examples != -1) return n_examples;
  n_examples = -2;
  FILE *f = fopen("docs/PROTOCOL.md", "r");
  if (f == NULL) {
    fprintf(stderr, "  cannot open docs/PROTOCOL.md (run from the project root)\n");
    return n_examples;
  }
  char line[512];
  int n = 0;
  example_t *cur = NULL;
  int hi = -1, ok = 1;
  while (fgets(line, sizeof line, f)) {
    if (cur == NULL) {
      char name[64];
      if (sscanf(line, "```hex example %63s", name) == 1) {
        if (n == MAX_EXAMPLES) { ok = 0; break; }
        cur = &examples[n++];
        memset(cur, 0, sizeof *cur);
        snprintf(cur->name, sizeof cur->name, "%s", name);
        hi = -1;
      }
      continue;
    }
    if (strncmp(line, "```", 3) == 0) {
      if (hi >= 0) ok = 0; /* odd number of digits */
      cur = NULL;
      continue;
    }
    for (char *p = line; *p; p++) {
      if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') continue;
      int d = hexval((unsigned char)*p);
      if (d < 0 || (hi >= 0 && cur->len == sizeof cur->bytes)) {
        fprintf(stderr, "  example %s: bad character '%c' or too long\n", cur->name, *p);
        ok = 0;
        break;
      }
      if (hi < 0) {
        hi = d;
      } else {
        cur->bytes[cur->len++] = (uint8_t)(hi << 4 | d);
        hi = -1;
      }
    }
  }
  fclose(f);
  if (cur != NULL) ok = 0; /* unterminated block */
  if (ok) n_examples = n;
  return n_examples;
}

static const example_t *example(const char *name) {
  if (load() < 0) return NULL;
  for (int i = 0; i < n_examples; i++) {
    if (strcmp(examples[i].name, name) == 0) {
      return &examples[i];
    }
  }
  fprintf(stderr, "  docs/PROTOCOL.md has no example \"%s\"\n", name);
  return NULL;
}

static int same(const example_t *ex, const hd__buf_t *b) {
  if (b->len == ex->len && memcmp(b->data, ex->bytes, ex->len) == 0) return 1;
  fprintf(stderr, "  example %s: codec wrote", ex->name);
  for (size_t i = 0; i < b->len; i++) fprintf(stderr, " %02x", b->data[i]);
  fprintf(stderr, "\n");
  return 0;
}

/* Splits an example message into type and body. */
static int frame(const example_t *ex, uint8_t *type, const uint8_t **body, size_t *len) {
  uint64_t l;
  int k = hd__varint_get(ex->bytes, ex->len, &l);
  if (k <= 0 || l < 1 || (size_t)k + l != ex->len) return -1;
  *type = ex->bytes[k];
  *body = ex->bytes + k + 1;
  *len = (size_t)l - 1;
  return 0;
}

/* 1 if the codec's message in `b` (its encoder returned `rc`) is the bytes of example `name`,
 * a message of `type` whose body is then *body, *len. Frees `b`. */
static int encodes_as(const char *name, int rc, hd__buf_t *b, uint8_t type, const uint8_t **body,
                      size_t *len) {
  const example_t *ex = example(name);
  int ok = ex != NULL && rc == 0 && same(ex, b);
  hd__buf_free(b);
  uint8_t t = 0;
  return ok && frame(ex, &t, body, len) == 0 && t == type;
}

/* 1 if the `n` bytes at `p` are the bytes of example `name`; *ex: the example. */
static int bytes_are(const char *name, const uint8_t *p, size_t n, const example_t **ex) {
  *ex = example(name);
  return *ex != NULL && (*ex)->len == n && memcmp((*ex)->bytes, p, n) == 0;
}

static const uint8_t store_0_15[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
static const uint8_t epoch_16_31[16] = {16, 17, 18, 19, 20, 21, 22, 23,
                                        24, 25, 26, 27, 28, 29, 30, 31};

/* ---- batch messages ------------------------------------------------------------------------ */

static void check_batch(const char *name, uint8_t type, const hd__entry_t *want, size_t n,
                        const uint64_t *seqs) {
  hd__buf_t b;
  hd__buf_init(&b);
  int rc = type == HD__MSG_EVENTS     ? hd__msg_encode_events(&b, want, n)
           : type == HD__MSG_CONSUMED ? hd__msg_encode_consumed(&b, want, n)
           : type == HD__MSG_FAILED   ? hd__msg_encode_failed(&b, want, n)
           : type == HD__MSG_NOTICES  ? hd__msg_encode_notices(&b, want, n)
                                      : hd__msg_encode_done(&b, seqs, n);
  const uint8_t *body;
  size_t len;
  CHECK(encodes_as(name, rc, &b, type, &body, &len));
  hd__entry_iter_t it;
  uint64_t count;
  CHECK_OK(hd__msg_entries_begin(&it, type, body, len, &count));
  CHECK(count == n);
  hd__entry_t e;
  for (size_t i = 0; i < n; i++) {
    CHECK(hd__msg_entries_next(&it, &e) == 1);
    CHECK(e.seq == (seqs ? seqs[i] : want[i].seq));
    if (type == HD__MSG_DONE) continue;
    int timed = type == HD__MSG_EVENTS || type == HD__MSG_NOTICES;
    CHECK(e.created_ms == (timed ? want[i].created_ms : 0));
    CHECK(e.attempts == want[i].attempts);
    CHECK(memcmp(&e.notice, &want[i].notice, sizeof e.notice) == 0);
    CHECK(e.len == want[i].len && (e.len == 0 || memcmp(e.data, want[i].data, e.len) == 0));
  }
  CHECK(hd__msg_entries_next(&it, &e) == 0);
}

static void ex_events(void) {
  hd__entry_t ev[2] = {{.seq = 1, .created_ms = 1700000000000ull, .data = (const uint8_t *)"hello", .len = 5},
                       {.seq = 2, .created_ms = 1700000000001ull, .data = (const uint8_t *)"", .len = 0}};
  check_batch("events", HD__MSG_EVENTS, ev, 2, NULL);
}

static void ex_consumed(void) {
  hd__entry_t c[1] = {{1, 0, (const uint8_t *)"ok", 2}};
  check_batch("consumed", HD__MSG_CONSUMED, c, 1, NULL);
}

static void ex_done(void) {
  static const uint64_t seqs[3] = {1, 2, 300};
  check_batch("done", HD__MSG_DONE, NULL, 3, seqs);
}

static void ex_failed(void) {
  hd__entry_t f[2] = {{.seq = 5, .attempts = 10, .data = (const uint8_t *)"timeout", .len = 7},
                      {.seq = 300, .attempts = 1, .data = (const uint8_t *)"bad json", .len = 8}};
  check_batch("failed", HD__MSG_FAILED, f, 2, NULL);
}

static void ex_notices(void) {
  hd__entry_t n[2] = {{.seq = 42, .created_ms = 1700000000000ull,
                       .notice = {.kind = 1, .count = 4, .first_seq = 38, .last_seq = 41}},
                      {.seq = 45, .created_ms = 1700000000001ull,
                       .notice = {.kind = 3, .count = 1, .first_seq = 7, .last_seq = 44}}};
  check_batch("notices", HD__MSG_NOTICES, n, 2, NULL);
  /* the four varints after the time are the stored notice's payload, as the doc says */
  const example_t *ex = example("notices");
  CHECK(ex != NULL);
  uint8_t p[HD__NOTICE_MAX];
  size_t k = hd__notice_encode(&n[0].notice, p);
  CHECK(k == 4 && memcmp(ex->bytes + 3 + 7, p, k) == 0);
}

/* ---- single-value messages ----------------------------------------------------------------- */

static void check_resume(const char *name, const hd__resume_t *want) {
  hd__buf_t b;
  hd__buf_init(&b);
  const uint8_t *body;
  size_t len;
  hd__resume_t r;
  CHECK(encodes_as(name, hd__msg_encode_resume(&b, want), &b, HD__MSG_RESUME, &body, &len));
  CHECK_OK(hd__msg_decode_resume(body, len, &r));
  CHECK(memcmp(r.store_id, want->store_id, 16) == 0);
  CHECK(r.high_seq == want->high_seq && r.window == want->window);
  CHECK(r.has_epoch == want->has_epoch && memcmp(r.epoch, want->epoch, 16) == 0);
}

static void ex_resume(void) {
  hd__resume_t r = {.high_seq = 41, .window = 1000};
  memcpy(r.store_id, store_0_15, 16);
  check_resume("resume", &r);
}

static void ex_resume_fresh(void) {
  hd__resume_t r = {.high_seq = 0, .window = 256};
  check_resume("resume-fresh", &r);
}

static void ex_resume_epoch(void) {
  hd__resume_t r = {.high_seq = 100, .window = 1000, .has_epoch = 1};
  memcpy(r.store_id, store_0_15, 16);
  memcpy(r.epoch, epoch_16_31, 16);
  check_resume("resume-epoch", &r);
}

static void check_epoch_msg(const char *name, uint64_t floor, uint64_t seen_upto) {
  hd__buf_t b;
  hd__buf_init(&b);
  const uint8_t *body;
  size_t len;
  uint64_t f, u;
  CHECK(encodes_as(name, hd__msg_encode_epoch(&b, floor, seen_upto), &b, HD__MSG_EPOCH, &body,
                   &len));
  CHECK_OK(hd__msg_decode_epoch(body, len, &f, &u));
  CHECK(f == floor && u == seen_upto);
}

static void ex_epoch(void) { check_epoch_msg("epoch", 90, 90); }
static void ex_epoch_unknown(void) { check_epoch_msg("epoch-unknown", 0, 100); }

static void check_varint_msg(const char *name, uint8_t type, uint64_t value) {
  hd__buf_t b;
  hd__buf_init(&b);
  int rc = type == HD__MSG_CREDIT  ? hd__msg_encode_credit(&b, value)
           : type == HD__MSG_PAUSE ? hd__msg_encode_pause(&b, value)
           : type == HD__MSG_PING  ? hd__msg_encode_ping(&b, value)
                                   : hd__msg_encode_pong(&b, value);
  const uint8_t *body;
  size_t len;
  uint64_t v;
  CHECK(encodes_as(name, rc, &b, type, &body, &len));
  CHECK_OK(hd__msg_decode_varint(type, body, len, &v));
  CHECK(v == value);
}

static void ex_credit(void) { check_varint_msg("credit", HD__MSG_CREDIT, 500); }
static void ex_pause(void) { check_varint_msg("pause", HD__MSG_PAUSE, 1500); }
static void ex_ping(void) { check_varint_msg("ping", HD__MSG_PING, 7); }
static void ex_pong(void) { check_varint_msg("pong", HD__MSG_PONG, 7); }

static void check_bye(const char *name, uint64_t reason, const char *text) {
  hd__buf_t b;
  hd__buf_init(&b);
  const uint8_t *body, *tx;
  size_t len, tl;
  uint64_t r;
  int rc = hd__msg_encode_bye(&b, reason, text, strlen(text));
  CHECK(encodes_as(name, rc, &b, HD__MSG_BYE, &body, &len));
  CHECK_OK(hd__msg_decode_bye(body, len, &r, &tx, &tl));
  CHECK(r == reason && tl == strlen(text) && memcmp(tx, text, tl) == 0);
}

static void ex_bye(void) { check_bye("bye", 0, "bye"); }
static void ex_bye_error(void) { check_bye("bye-error", (uint64_t)-HD_EPROTO, "bad frame"); }
static void ex_bye_replaced(void) { check_bye("bye-replaced", (uint64_t)-HD_EREPLACED, "replaced"); }

/* ---- handshake ----------------------------------------------------------------------------- */

static void check_hello(const char *name, uint64_t features) {
  hd__hello_t h = {.version = 1, .max_message_bytes = 1048576, .features = features}, d;
  for (int i = 0; i < 32; i++) h.public_key[i] = (uint8_t)(0xa0 + i);
  uint8_t buf[HD__HELLO_MAX];
  const example_t *ex;
  CHECK(bytes_are(name, buf, hd__hello_encode(&h, buf), &ex));
  CHECK_OK(hd__hello_decode(ex->bytes, ex->len, &d));
  CHECK(memcmp(&d, &h, sizeof h) == 0);
}

static void ex_hello(void) { check_hello("hello", 0); }
static void ex_hello_features(void) {
  check_hello("hello-features", HD__FEATURE_FAILED | HD__FEATURE_NOTICES);
}

static void check_welcome(const char *name, int has_epoch, uint64_t features) {
  hd__welcome_t w = {.version = 1, .pause_ms = 1000, .max_message_bytes = 1048576,
                     .keepalive_ms = 5000, .has_epoch = has_epoch, .features = features}, d;
  memcpy(w.store_id, store_0_15, 16);
  if (has_epoch) memcpy(w.epoch, epoch_16_31, 16);
  uint8_t buf[HD__WELCOME_MAX];
  const example_t *ex;
  CHECK(bytes_are(name, buf, hd__welcome_encode(&w, buf), &ex));
  CHECK_OK(hd__welcome_decode(ex->bytes, ex->len, &d));
  CHECK(memcmp(&d, &w, sizeof w) == 0);
}

static void ex_welcome(void) { check_welcome("welcome", 0, 0); }
static void ex_welcome_epoch(void) { check_welcome("welcome-epoch", 1, 0); }
static void ex_welcome_features(void) {
  check_welcome("welcome-features", 1, HD__FEATURE_FAILED | HD__FEATURE_NOTICES);
}

static void ex_topic_key_and_preamble(void) {
  uint8_t key[HD_TOPIC_BYTES], pre[HD__PREAMBLE_BYTES];
  const example_t *k, *p;
  CHECK_OK(hd_topic_key(key, "topic", 5));
  CHECK(bytes_are("topic-key", key, sizeof key, &k));
  hd__preamble_encode(pre, key);
  CHECK(bytes_are("preamble", pre, sizeof pre, &p));
  CHECK_OK(hd__preamble_check(p->bytes, key));
}

static void ex_reject(void) {
  uint8_t r[HD__REJECT_BYTES];
  const example_t *ex;
  hd__reject_encode(r, HD__REJECT_TOPIC);
  CHECK(bytes_are("reject", r, sizeof r, &ex));
  CHECK(ex->bytes[0] == 0 && ex->bytes[1] == 0);
  CHECK(hd__reject_error(ex->bytes[2]) == HD_ETOPIC);
  hd__reject_encode(r, hd__reject_reason_for(HD_EMSGSIZE));
  CHECK(bytes_are("reject-msgsize", r, sizeof r, &ex));
  CHECK(hd__reject_error(ex->bytes[2]) == HD_EMSGSIZE);
}

/* ---- records: all-zero key, nonces 0 and 1 -------------------------------------------------- */

static int record_msg_cb(void *ctx, uint8_t type, const uint8_t *body, size_t len) {
  uint64_t *got = ctx, v;
  if (hd__msg_decode_varint(type, body, len, &v)) return -1;
  got[got[0]++ + 1] = (uint64_t)type << 32 | v;
  return 0;
}

static void ex_records(void) {
  const example_t *r1 = example("record"), *r2 = example("record-2");
  CHECK(r1 != NULL && r2 != NULL);
  hd__cipher_t tx = {{0}, 0, 1}, rx = tx;
  hd__buf_t plain, out;
  hd__buf_init(&plain);
  hd__buf_init(&out);
  int ok = hd__msg_encode_ping(&plain, 7) == 0 && hd__record_seal(&tx, plain.data, plain.len, &out) == 0 &&
           out.len == r1->len && memcmp(out.data, r1->bytes, r1->len) == 0;
  plain.len = out.len = 0;
  ok = ok && hd__msg_encode_pong(&plain, 7) == 0 && hd__record_seal(&tx, plain.data, plain.len, &out) == 0 &&
       out.len == r2->len && memcmp(out.data, r2->bytes, r2->len) == 0;
  hd__buf_free(&plain);
  hd__buf_free(&out);
  CHECK(ok);
  /* and back: both records through the receive pipeline give PING 7 then PONG 7 */
  uint8_t wire[64];
  memcpy(wire, r1->bytes, r1->len);
  memcpy(wire + r1->len, r2->bytes, r2->len);
  uint64_t got[3] = {0};
  hd__msg_reader_t mr;
  hd__record_reader_t rr;
  hd__msg_reader_init(&mr, 0, record_msg_cb, got);
  CHECK_OK(hd__record_reader_init(&rr, &rx, hd__record_to_msgs, &mr));
  int rc = hd__record_reader_feed(&rr, wire, r1->len + r2->len);
  hd__record_reader_free(&rr);
  hd__msg_reader_free(&mr);
  CHECK_OK(rc);
  CHECK(got[0] == 2);
  CHECK(got[1] == ((uint64_t)HD__MSG_PING << 32 | 7) && got[2] == ((uint64_t)HD__MSG_PONG << 32 | 7));
}

/* Every example in the doc is one that a test above checks (no stale or unchecked bytes), and
 * every checked example is in the doc (example() fails otherwise). */
static void ex_all_checked(void) {
  static const char *const checked[] = {
      "events",   "consumed", "done",         "resume",       "resume-fresh",
      "credit",   "pause",    "ping",         "pong",         "bye",
      "bye-error", "bye-replaced", "hello",   "welcome",      "topic-key",    "preamble",
      "reject",   "reject-msgsize", "record",   "record-2",     "welcome-epoch", "resume-epoch",
      "epoch",    "epoch-unknown", "hello-features", "welcome-features", "failed", "notices"};
  CHECK(load() > 0);
  CHECK(n_examples == (int)HD__ARRAY_SIZE(checked));
  for (int i = 0; i < n_examples; i++) {
    int known = 0;
    for (size_t j = 0; j < HD__ARRAY_SIZE(checked); j++)
      known |= strcmp(examples[i].name, checked[j]) == 0;
    if (!known) fprintf(stderr, "  example %s is not checked\n", examples[i].name);
    CHECK(known);
  }
}

#define TESTS(X)                                                                                  \
  X(ex_events) X(ex_consumed) X(ex_done) X(ex_resume) X(ex_resume_fresh) X(ex_credit) X(ex_pause) \
  X(ex_ping) X(ex_pong) X(ex_bye) X(ex_bye_error) X(ex_bye_replaced) X(ex_hello) X(ex_welcome)    \
  X(ex_welcome_epoch) X(ex_resume_epoch) X(ex_epoch) X(ex_epoch_unknown)                          \
  X(ex_hello_features) X(ex_welcome_features) X(ex_failed) X(ex_notices)                         \
  X(ex_topic_key_and_preamble) X(ex_reject) X(ex_records) X(ex_all_checked)
HD_TEST_MAIN(TESTS)
