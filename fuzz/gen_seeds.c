/* Writes the seed corpora, DIR/<target>/<name>, from the codec's own encoders and the values of
 * docs/PROTOCOL.md's examples (the ones test/unit/test_protocol_examples.c checks), so that the
 * seeds stay true to the protocol: `make fuzz-seeds` rewrites fuzz/corpus, and `make fuzz` also
 * runs each target on a fresh copy in $(BUILD)/fuzz/seeds. Each seed is in its target's input
 * format (see the comment at the top of each target). Usage: gen_seeds DIR */
#include "fuzz_util.h"

#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *root;

#define LINGER 0x40 /* the stateful targets' flag: read on after PONG */

static void put(hd__buf_t *b, const void *p, size_t n) { FZ_CHECK(hd__buf_append(b, p, n) == 0); }
static void put_u8(hd__buf_t *b, uint8_t v) { put(b, &v, 1); }
static void put_u16(hd__buf_t *b, uint16_t v) {
  uint8_t x[2];
  hd__put_u16be(x, v);
  put(b, x, 2);
}

/* Writes `b` as seed `name` of `target` and empties it. */
static void save(const char *target, const char *name, hd__buf_t *b) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", root, target);
  FZ_CHECK(mkdir(path, 0755) == 0 || errno == EEXIST);
  snprintf(path, sizeof path, "%s/%s/%s", root, target, name);
  FILE *f = fopen(path, "wb");
  FZ_CHECK(f != NULL);
  FZ_CHECK(b->len == 0 || fwrite(b->data, 1, b->len, f) == b->len);
  FZ_CHECK(fclose(f) == 0);
  b->len = 0;
}

/* ---- the example messages of docs/PROTOCOL.md section 6, framed by their encoders ---- */

enum { EX_EVENTS, EX_CONSUMED, EX_DONE, EX_RESUME, EX_RESUME_FRESH, EX_CREDIT, EX_PAUSE, EX_PING,
       EX_PONG, EX_BYE, EX_BYE_ERROR, EX_EPOCH, EX_BYE_REPLACED, EX_FAILED, EX_NOTICES,
       N_EXAMPLES };
static const char *const ex_names[N_EXAMPLES] = {
    "events", "consumed", "done", "resume", "resume-fresh", "credit",
    "pause", "ping", "pong", "bye", "bye-error", "epoch", "bye-replaced", "failed", "notices"};

/* The FAILED and NOTICES examples' entries. */
static const hd__entry_t failed_ex[2] = {
    {.seq = 5, .attempts = 10, .data = (const uint8_t *)"timeout", .len = 7},
    {.seq = 300, .attempts = 1, .data = (const uint8_t *)"bad json", .len = 8}};
static const hd__entry_t notices_ex[2] = {
    {.seq = 42, .created_ms = 1700000000000ull, .notice = {1, 4, 38, 41}},
    {.seq = 45, .created_ms = 1700000000001ull, .notice = {3, 1, 7, 44}}};

static const uint8_t store_0_15[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

/* Appends example `i`, framed, to `out`. */
static void example(int i, hd__buf_t *out) {
  static const hd__entry_t events[2] = {{1, 1700000000000ull, (const uint8_t *)"hello", 5},
                                        {2, 1700000000001ull, (const uint8_t *)"", 0}};
  static const hd__entry_t consumed[1] = {{1, 0, (const uint8_t *)"ok", 2}};
  static const uint64_t done[3] = {1, 2, 300};
  hd__resume_t resume = {{0}, 41, 1000}, fresh = {{0}, 0, 256};
  memcpy(resume.store_id, store_0_15, 16);
  int rc = -1;
  switch (i) {
    case EX_EVENTS: rc = hd__msg_encode_events(out, events, 2); break;
    case EX_CONSUMED: rc = hd__msg_encode_consumed(out, consumed, 1); break;
    case EX_DONE: rc = hd__msg_encode_done(out, done, 3); break;
    case EX_RESUME: rc = hd__msg_encode_resume(out, &resume); break;
    case EX_RESUME_FRESH: rc = hd__msg_encode_resume(out, &fresh); break;
    case EX_CREDIT: rc = hd__msg_encode_credit(out, 500); break;
    case EX_PAUSE: rc = hd__msg_encode_pause(out, 1500); break;
    case EX_PING: rc = hd__msg_encode_ping(out, 7); break;
    case EX_PONG: rc = hd__msg_encode_pong(out, 7); break;
    case EX_BYE: rc = hd__msg_encode_bye(out, 0, "bye", 3); break;
    case EX_BYE_ERROR: rc = hd__msg_encode_bye(out, 9, "bad frame", 9); break;
    case EX_EPOCH: rc = hd__msg_encode_epoch(out, 90, 100); break;
    case EX_BYE_REPLACED: rc = hd__msg_encode_bye(out, 29, "replaced", 8); break;
    case EX_FAILED: rc = hd__msg_encode_failed(out, failed_ex, 2); break;
    case EX_NOTICES: rc = hd__msg_encode_notices(out, notices_ex, 2); break;
  }
  FZ_CHECK(rc == 0);
}

/* Appends the framed messages of `framed` to `out` in the stateful targets' format. */
static void as_messages(const hd__buf_t *framed, hd__buf_t *out) {
  for (size_t off = 0; off < framed->len;) {
    uint64_t l;
    int k = hd__varint_get(framed->data + off, framed->len - off, &l);
    FZ_CHECK(k > 0 && l >= 1);
    fz_message_put(out, framed->data[off + k], framed->data + off + k + 1, (size_t)l - 1);
    off += (size_t)k + (size_t)l;
  }
}

/* A seed of a stateful target: flags, then examples and other framed messages in its format. */
typedef struct session_row {
  const char *name;
  uint8_t flags;
  int ex[4];
  size_t n;
} session_row_t;

static void session_seed(const char *target, const session_row_t *row, const hd__buf_t *more) {
  hd__buf_t framed, seed;
  hd__buf_init(&framed);
  hd__buf_init(&seed);
  for (size_t i = 0; i < row->n; i++) example(row->ex[i], &framed);
  if (more != NULL) put(&framed, more->data, more->len);
  put_u8(&seed, row->flags);
  as_messages(&framed, &seed);
  save(target, row->name, &seed);
  hd__buf_free(&framed);
  hd__buf_free(&seed);
}

static void session_seeds(const char *target, const session_row_t *rows, size_t n) {
  for (size_t i = 0; i < n; i++) session_seed(target, &rows[i], NULL);
}

/* ---- handshake payloads ---- */

static size_t hello_example(uint8_t *out) {
  hd__hello_t h = {HD_PROTOCOL_VERSION, {0}, 1048576};
  for (int i = 0; i < 32; i++) h.public_key[i] = (uint8_t)(0xa0 + i);
  return hd__hello_encode(&h, out);
}

static size_t welcome_example(uint8_t *out) {
  hd__welcome_t w = {HD_PROTOCOL_VERSION, {0}, 1000, 1048576, 5000};
  memcpy(w.store_id, store_0_15, 16);
  return hd__welcome_encode(&w, out);
}

/* The hello-features and welcome-features examples. */
static size_t hello_features_example(uint8_t *out) {
  hd__hello_t h = {HD_PROTOCOL_VERSION, {0}, 1048576, HD__FEATURES_ALL};
  for (int i = 0; i < 32; i++) h.public_key[i] = (uint8_t)(0xa0 + i);
  return hd__hello_encode(&h, out);
}

static size_t welcome_features_example(uint8_t *out) {
  hd__welcome_t w = {HD_PROTOCOL_VERSION, {0}, 1000, 1048576, 5000, 1, {0}, HD__FEATURES_ALL};
  memcpy(w.store_id, store_0_15, 16);
  for (int i = 0; i < 16; i++) w.epoch[i] = (uint8_t)(0x10 + i);
  return hd__welcome_encode(&w, out);
}

/* Handshake message 1 of the fuzz user to the fuzz server (fixed ephemeral), framed. */
static void message1_limit(hd__buf_t *out, uint64_t max_message);

static void message1(hd__buf_t *out) { message1_limit(out, HD__DEFAULT_MAX_MESSAGE); }

/* The same with HELLO advertising `max_message` (below the server's largest event: rejection 7). */
static void message1_limit(hd__buf_t *out, uint64_t max_message) {
  uint8_t xs[32], xp[32], srv[32], e[32], msg[512], hello[HD__HELLO_MAX];
  FZ_CHECK(hd__keypair_to_x25519(fz_keypair(1), xs, xp) == 0);
  FZ_CHECK(hd__ed25519_pk_to_x25519(fz_keypair(0)->public_key, srv) == 0);
  hd__handshake_t hs;
  FZ_CHECK(hd__handshake_init(&hs, HD__NOISE_IK, 1, fz_prologue(), FZ_PROLOGUE_LEN, xs, srv) == 0);
  memset(e, 0x5e, sizeof e);
  hd__handshake_fix_ephemeral(&hs, e);
  hd__hello_t h = {HD_PROTOCOL_VERSION, {0}, max_message};
  memcpy(h.public_key, fz_keypair(1)->public_key, 32);
  size_t hl = hd__hello_encode(&h, hello), ml = 0;
  FZ_CHECK(hd__handshake_write_message(&hs, hello, hl, msg, sizeof msg, &ml) == 0);
  put_u16(out, (uint16_t)ml);
  put(out, msg, ml);
}

/* ---- per target ---- */

static void varint_seeds(void) {
  static const uint64_t values[] = {0, 127, 128, 300, 1048576, UINT64_MAX};
  hd__buf_t b;
  hd__buf_init(&b);
  for (size_t i = 0; i < HD__ARRAY_SIZE(values); i++) {
    uint8_t v[HD__VARINT_MAX];
    put(&b, v, hd__varint_put(v, values[i]));
    char name[32];
    snprintf(name, sizeof name, "value-%zu", i);
    save("varint", name, &b);
  }
  put(&b, "\x80\x00", 2); /* the non-minimal spelling of 0 the section names */
  save("varint", "non-minimal", &b);
  hd__buf_free(&b);
}

static void messages_seeds(void) {
  hd__buf_t framed, seed;
  hd__buf_init(&framed);
  hd__buf_init(&seed);
  for (int i = 0; i < N_EXAMPLES; i++) {
    example(i, &framed);
    as_messages(&framed, &seed);
    /* the messages target reads a type byte and the body: no length byte */
    FZ_CHECK(seed.len >= 2);
    memmove(seed.data + 1, seed.data + 2, seed.len - 2);
    seed.len--;
    save("messages", ex_names[i], &seed);
    framed.len = 0;
  }
  hd__buf_free(&framed);
  hd__buf_free(&seed);
}

static void msg_reader_seeds(void) {
  hd__buf_t b;
  hd__buf_init(&b);
  /* every example in one stream: the default limit, no stop, one chunk */
  put(&b, "\x09\x00\x00", 3);
  for (int i = 0; i < N_EXAMPLES; i++) example(i, &b);
  save("msg_reader", "all-examples", &b);
  /* the same cut in small chunks (sizes from the back), limit 16, stop at the third message */
  put(&b, "\x03\x03\x06", 3);
  for (int i = 0; i < N_EXAMPLES; i++) example(i, &b);
  put(&b, "\x01\x02\x05\x03\x01\x07", 6);
  save("msg_reader", "examples-in-chunks", &b);
  hd__buf_free(&b);
}

static void record_reader_seeds(void) {
  hd__buf_t b, m;
  hd__buf_init(&b);
  hd__buf_init(&m);
  example(EX_PING, &m);
  example(EX_PONG, &m);
  /* the two example records: seal ping, seal pong */
  put(&b, "\x00\x00", 2);
  put_u8(&b, 0);
  put_u8(&b, 3);
  put(&b, m.data, 3);
  put_u8(&b, 0);
  put_u8(&b, 3);
  put(&b, m.data + 3, 3);
  save("record_reader", "ping-pong", &b);
  /* a plaintext of 65535 bytes (two records), an empty record, a flipped tag, in chunks */
  put(&b, "\x04\x00", 2);
  put(&b, "\x01\xff\xff\x78", 4);
  put(&b, "\x00\x00", 2);
  put(&b, "\x00\x03", 2);
  put(&b, m.data, 3);
  put(&b, "\x03\x00\x10\x01", 4);
  put(&b, "\xff\x7f\x05\x02", 4); /* chunk sizes, the last byte first: 3, 6, 32, the rest */
  save("record_reader", "big-empty-flip", &b);
  /* garbage between records */
  put(&b, "\x00\x00", 2);
  put(&b, "\x00\x03", 2);
  put(&b, m.data, 3);
  put(&b, "\x02\x01\x00\x10", 4);
  put(&b, "\x00\x03", 2);
  put(&b, m.data + 3, 3);
  save("record_reader", "garbage", &b);
  hd__buf_free(&b);
  hd__buf_free(&m);
}

static void hello_welcome_seeds(void) {
  hd__buf_t b;
  hd__buf_init(&b);
  uint8_t p[HD__HELLO_MAX + HD__WELCOME_MAX];
  put_u8(&b, 0);
  put(&b, p, hello_example(p));
  save("hello_welcome", "hello", &b);
  put_u8(&b, 1);
  put(&b, p, welcome_example(p));
  save("hello_welcome", "welcome", &b);
  put_u8(&b, 0);
  put(&b, p, hello_features_example(p));
  save("hello_welcome", "hello-features", &b);
  put_u8(&b, 1);
  put(&b, p, welcome_features_example(p));
  save("hello_welcome", "welcome-features", &b);
  put_u8(&b, 2);
  hd__preamble_encode(p, fz_prologue() + FZ_PROLOGUE_LEN - HD_TOPIC_BYTES);
  put(&b, p, HD__PREAMBLE_BYTES);
  save("hello_welcome", "preamble", &b);
  uint8_t topic_key[HD_TOPIC_BYTES]; /* the section's example: another topic here */
  FZ_CHECK(hd_topic_key(topic_key, "topic", 5) == 0);
  put_u8(&b, 2);
  hd__preamble_encode(p, topic_key);
  put(&b, p, HD__PREAMBLE_BYTES);
  save("hello_welcome", "preamble-other-topic", &b);
  put_u8(&b, 3);
  hd__reject_encode(p, HD__REJECT_TOPIC);
  put(&b, p + 2, 1);
  save("hello_welcome", "reject", &b);
  hd__buf_free(&b);
}

/* fz_handshake_run's input: a pattern byte (bit 0: XX; bits 1-2: the responder's second key,
 * fuzz_util.c); per message a payload (length byte, bytes) and,
 * for a message the tested side reads, how it arrives (0: intact). */
static void handshake_seeds(const char *target, int tested_initiator) {
  hd__buf_t b;
  hd__buf_init(&b);
  uint8_t hello[HD__HELLO_MAX], welcome[HD__WELCOME_MAX];
  size_t hl = hello_example(hello), wl = welcome_example(welcome);
  for (int how = 0; how < 3; how++) {
    put_u8(&b, 0); /* IK */
    for (int i = 0; i < 2; i++) {
      put_u8(&b, (uint8_t)(i == 0 ? hl : wl));
      put(&b, i == 0 ? hello : welcome, i == 0 ? hl : wl);
      if ((i == 0) != (tested_initiator != 0)) { /* the tested side reads this one */
        put_u8(&b, (uint8_t)how);
        if (how == 1) put(&b, "\x00\x30" "0123456789abcdef0123456789abcdef0123456789abcdef", 50);
        if (how == 2) put(&b, "\x00\x00\x20\x01", 4); /* one flip: byte 32, bit 0 */
      }
    }
    static const char *const names[3] = {"ik-intact", "ik-replaced", "ik-flipped"};
    save(target, names[how], &b);
  }
  if (!tested_initiator) {
    /* the responder with a second key (rollover): the initiator dials the next one (pattern
     * byte 2), or the current one with a decoy next (4); message 1 flipped, then intact */
    for (int mode = 1; mode <= 2; mode++) {
      put_u8(&b, (uint8_t)(mode << 1));
      put_u8(&b, (uint8_t)hl);
      put(&b, hello, hl);
      put_u8(&b, 2);
      put(&b, "\x00\x00\x20\x01", 4);
      put_u8(&b, (uint8_t)wl);
      put(&b, welcome, wl);
      save(target, mode == 1 ? "ik-next-key" : "ik-decoy-next", &b);
    }
  }
  put_u8(&b, 1); /* XX, every message intact, empty payloads */
  for (int i = 0; i < 3; i++) {
    put_u8(&b, 0);
    if ((i % 2 == 0) != (tested_initiator != 0)) put_u8(&b, 0);
  }
  save(target, "xx-intact", &b);
  hd__buf_free(&b);
}

static void keys_seeds(void) {
  hd__buf_t b;
  hd__buf_init(&b);
  uint8_t scalar[32], pk[32];
  FZ_CHECK(hd_hex_decode(scalar, 32, hdt_example_keys[0][0]) == 0);
  FZ_CHECK(hd_hex_decode(pk, 32, hdt_example_keys[0][1]) == 0);
  put(&b, "\x00\x20", 2);
  put(&b, hdt_example_keys[0][1], 64);
  save("keys", "hex", &b);
  put_u8(&b, 1);
  put(&b, "seed seed seed seed seed seed 32", 32);
  save("keys", "seed", &b);
  hd_keypair_t kp;
  uint8_t seed[32];
  memset(seed, 7, sizeof seed);
  FZ_CHECK(hd_keypair_from_seed(&kp, seed) == 0);
  put_u8(&b, 2);
  put(&b, seed, 32);
  put(&b, kp.public_key, 32);
  save("keys", "secret-key", &b);
  put_u8(&b, 3);
  put(&b, scalar, 32);
  save("keys", "scalar", &b);
  put_u8(&b, 4);
  put(&b, scalar, 32);
  put(&b, pk, 32);
  save("keys", "scalar-and-public-key", &b);
  put_u8(&b, 5);
  put(&b, pk, 32);
  save("keys", "public-key", &b);
  put_u8(&b, 6);
  put(&b, "topic", 5);
  save("keys", "topic", &b);
  hd__buf_free(&b);
}

/* failed_notices: a selector byte, then what it feeds (see the target). */
static void failed_notices_seeds(void) {
  static const char *const t = "failed_notices";
  hd__buf_t b, m;
  hd__buf_init(&b);
  hd__buf_init(&m);
  for (int i = 0; i < 2; i++) { /* the example bodies, without length and type */
    example(i == 0 ? EX_FAILED : EX_NOTICES, &m);
    put_u8(&b, (uint8_t)i);
    put(&b, m.data + 2, m.len - 2);
    save(t, i == 0 ? "failed" : "notices", &b);
    m.len = 0;
  }
  /* entries: two, the second with a reason of 1025 bytes (refused), then of 1024 (taken) */
  for (int over = 0; over < 2; over++) {
    put_u8(&b, 2);
    put_u8(&b, 2);
    put(&b, "\0\0\0\0\0\0\0\x05\x00\x0a\x00\x07" "timeout", 19);
    put(&b, "\0\0\0\0\0\0\x01\x2c\x00\x01", 10);
    put_u16(&b, (uint16_t)(HD__REASON_MAX + !over));
    for (int i = 0; i < HD__REASON_MAX + !over; i++) put_u8(&b, (uint8_t)('a' + i % 26));
    save(t, over ? "entries-longest-reason" : "entries-reason-too-long", &b);
  }
  put_u8(&b, 2);
  put(&b, "\x01\0\0\0\0\0\0\0\x01\x00\x01\x00\x02\xc3\x28", 15); /* not UTF-8 */
  save(t, "entries-not-utf8", &b);
  uint8_t p[HD__NOTICE_MAX];
  put_u8(&b, 3);
  put(&b, p, hd__notice_encode(&notices_ex[0].notice, p));
  save(t, "notice-payload", &b);
  put(&b, "\x04\x00\x03", 3); /* HELLO, features 3 */
  save(t, "hello-features", &b);
  put(&b, "\x04\x01", 2); /* WELCOME: the epoch, features 3 */
  put(&b, store_0_15, 16);
  put_u8(&b, 3);
  save(t, "welcome-features", &b);
  put(&b, "\x04\x00\x80\x00", 4); /* non-minimal features: none */
  save(t, "hello-features-non-minimal", &b);
  hd__buf_free(&b);
  hd__buf_free(&m);
}

static void server_session_seeds(void) {
  static const char *const t = "server_session";
  static const session_row_t rows[] = {
      {"resume", LINGER, {EX_RESUME_FRESH}, 1},
      {"resume-credit", 0, {EX_RESUME, EX_CREDIT}, 2},
      {"resume-consumed", 2 | LINGER, {EX_RESUME_FRESH, EX_CONSUMED, EX_PING}, 3},
      {"bye", 0, {EX_RESUME_FRESH, EX_BYE}, 2},
      {"bye-error", 0, {EX_RESUME_FRESH, EX_BYE_ERROR}, 2},
      {"credit-before-resume", 0, {EX_CREDIT, EX_RESUME_FRESH}, 2},
      {"resume-twice", 0, {EX_RESUME_FRESH, EX_RESUME}, 2},
      {"wrong-direction", 0, {EX_RESUME_FRESH, EX_EVENTS, EX_DONE, EX_PAUSE}, 4},
      /* 0x80: the raw client announces the features */
      {"failed", 0x80 | LINGER, {EX_RESUME_FRESH, EX_FAILED}, 2},
      {"failed-not-agreed", LINGER, {EX_RESUME_FRESH, EX_FAILED}, 2},
      {"notices-from-client", 0x80, {EX_RESUME_FRESH, EX_NOTICES}, 2},
  };
  session_seeds(t, rows, HD__ARRAY_SIZE(rows));
  /* FAILED of held events (1..3) and one the server never had, then CONSUMED of the same */
  {
    hd__buf_t more;
    hd__buf_init(&more);
    hd__entry_t f[4] = {{.seq = 1, .attempts = 10, .data = (const uint8_t *)"timeout", .len = 7},
                        {.seq = 2, .attempts = 1},
                        {.seq = 3, .attempts = 3, .data = (const uint8_t *)"\xc3\xa9", .len = 2},
                        {.seq = 300, .attempts = 1, .data = (const uint8_t *)"x", .len = 1}};
    FZ_CHECK(hd__msg_encode_failed(&more, f, 4) == 0);
    FZ_CHECK(hd__msg_encode_consumed(&more, f, 4) == 0);
    static const session_row_t held = {"failed-held-and-not", 0x80 | LINGER, {EX_RESUME_FRESH}, 1};
    session_seed(t, &held, &more);
    hd__buf_free(&more);
  }
  /* CONSUMED of held events (1..3), one the server never had, and 300 */
  hd__buf_t more, seed;
  hd__buf_init(&more);
  hd__buf_init(&seed);
  hd__entry_t c[4] = {{1, 0, (const uint8_t *)"a", 1}, {2, 0, NULL, 0},
                      {3, 0, (const uint8_t *)"ok", 2}, {300, 0, (const uint8_t *)"x", 1}};
  FZ_CHECK(hd__msg_encode_consumed(&more, c, 4) == 0);
  static const session_row_t held = {"consumed-held-and-not", LINGER, {EX_RESUME_FRESH}, 1};
  session_seed(t, &held, &more);
  hd__buf_free(&more);
  /* raw: a valid preamble (flag 2) and a genuine handshake message 1, then nothing */
  put_u8(&seed, 3);
  message1(&seed);
  save(t, "raw-handshake", &seed);
  put_u8(&seed, 3);
  message1_limit(&seed, 65536);
  save(t, "raw-handshake-small-limit", &seed);
  /* raw: the preamble of another topic; then a zero-length handshake message */
  uint8_t topic_key[HD_TOPIC_BYTES], pre[HD__PREAMBLE_BYTES];
  FZ_CHECK(hd_topic_key(topic_key, "topic", 5) == 0);
  hd__preamble_encode(pre, topic_key);
  put_u8(&seed, 1);
  put(&seed, pre, sizeof pre);
  save(t, "raw-other-topic", &seed);
  put(&seed, "\x03\x00\x00", 3);
  save(t, "raw-empty-handshake-message", &seed);
  hd__buf_free(&seed);
}

static void client_session_seeds(void) {
  static const char *const t = "client_session";
  static const session_row_t rows[] = {
      {"events", 0, {EX_EVENTS}, 1},
      {"events-done-pause", 2 | LINGER, {EX_EVENTS, EX_DONE, EX_PAUSE}, 3},
      {"control", 0, {EX_PING, EX_PONG, EX_BYE}, 3},
      {"bye-error", 0, {EX_BYE_ERROR}, 1},
      {"bye-replaced", 0, {EX_BYE_REPLACED}, 1},
      {"wrong-direction", 0, {EX_CONSUMED, EX_RESUME, EX_CREDIT}, 3},
      /* 0x80: WELCOME with an epoch and the features */
      {"notices", 0x80 | LINGER, {EX_NOTICES}, 1},
      {"events-notices-done", 0x80 | 2 | LINGER, {EX_EVENTS, EX_NOTICES, EX_DONE}, 3},
      {"epoch-notices", 0x80 | LINGER, {EX_EPOCH, EX_EVENTS, EX_NOTICES}, 3},
      {"notices-not-agreed", LINGER, {EX_EVENTS, EX_NOTICES}, 2},
      {"failed-from-server", 0x80, {EX_FAILED}, 1},
  };
  session_seeds(t, rows, HD__ARRAY_SIZE(rows));
  /* the whole window (16) in one message, then one more; the server's limit at 16 bytes */
  hd__buf_t more, seed;
  hd__buf_init(&more);
  hd__buf_init(&seed);
  hd__entry_t e[17];
  for (int i = 0; i < 17; i++)
    e[i] = (hd__entry_t){(uint64_t)i + 1, 1700000000000ull, (const uint8_t *)"ev", 2};
  FZ_CHECK(hd__msg_encode_events(&more, e, 16) == 0);
  static const session_row_t window = {"window", LINGER, {0}, 0};
  static const session_row_t small = {"window-small-limit", 1 << 2 | LINGER, {0}, 0};
  session_seed(t, &window, &more);
  session_seed(t, &small, &more);
  FZ_CHECK(hd__msg_encode_events(&more, e + 16, 1) == 0);
  static const session_row_t beyond = {"beyond-window", 2, {0}, 0};
  session_seed(t, &beyond, &more);
  hd__buf_free(&more);
  /* raw answers instead of handshake message 2: rejections, and a message too short */
  put(&seed, "\x01\x00\x00\x02", 4);
  save(t, "raw-reject-topic", &seed);
  put(&seed, "\x01\x00\x00\x07", 4);
  save(t, "raw-reject-msgsize", &seed);
  put(&seed, "\x01\x00\x00\x08", 4);
  save(t, "raw-reject-unknown", &seed);
  put(&seed, "\x01\x00\x05" "abcde", 8);
  save(t, "raw-short-message", &seed);
  hd__buf_free(&seed);
}

/* The metrics responder's requests (http_request): what Prometheus, curl and a probe send, and
 * the refusals' shapes. Plain text: no encoder to take them from. */
static void http_request_seeds(void) {
  static const struct { const char *name, *text; } seeds[] = {
      {"get-metrics", "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9100\r\nUser-Agent: "
                      "Prometheus/2.53.0\r\nAccept: text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n"
                      "Accept-Encoding: gzip\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n"},
      {"get-healthz-1.0", "GET /healthz HTTP/1.0\r\n\r\n"},
      {"get-readyz-query", "GET /readyz?verbose=1 HTTP/1.1\r\nhost: x\r\n\r\n"},
      {"post-metrics", "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"},
      {"half", "GET /metr"},
      {"no-host", "GET /metrics HTTP/1.1\r\nAccept: */*\r\n\r\n"},
      {"folded", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n"},
      {"bare-lf", "GET / HTTP/1.1\nHost: x\n\n"},
  };
  hd__buf_t b;
  hd__buf_init(&b);
  for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
    put(&b, seeds[i].text, strlen(seeds[i].text));
    save("http_request", seeds[i].name, &b);
  }
  hd__buf_free(&b);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s DIR (writes DIR/<target>/<seed>)\n", argv[0]);
    return 2;
  }
  root = argv[1];
  FZ_CHECK(mkdir(root, 0755) == 0 || errno == EEXIST);
  FZ_CHECK(hd_init() == 0);
  varint_seeds();
  messages_seeds();
  msg_reader_seeds();
  record_reader_seeds();
  hello_welcome_seeds();
  handshake_seeds("handshake_responder", 0);
  handshake_seeds("handshake_initiator", 1);
  keys_seeds();
  server_session_seeds();
  client_session_seeds();
  failed_notices_seeds();
  http_request_seeds();
  return 0;
}
