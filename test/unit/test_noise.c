/* Noise (noise.c): round trips, the failures that matter to the wire protocol, and one
 * cacophony vector embedded here so that this program needs no files. */
#include "common.h"
#include "harness.h"
#include "noise.h"

#include <sodium.h>

typedef struct key {
  uint8_t secret[HD__NOISE_DHLEN], pub[HD__NOISE_DHLEN];
} xkey_t;

static void key_gen(xkey_t *k) {
  randombytes_buf(k->secret, sizeof k->secret);
  crypto_scalarmult_base(k->pub, k->secret);
}

static const uint8_t prologue[] = "hyperdown test";

/* An initiator/responder pair with fresh static keys. */
typedef struct pair {
  xkey_t is, rs;
  hd__handshake_t init, resp;
  uint8_t msg[1024], payload[1024];
  size_t msg_len, payload_len;
} pair_t;

static int pair_init(pair_t *p, hd__noise_pattern_t pattern) {
  key_gen(&p->is);
  key_gen(&p->rs);
  int rc = hd__handshake_init(&p->init, pattern, 1, prologue, sizeof prologue, p->is.secret,
                              p->rs.pub);
  if (rc != 0) return rc;
  return hd__handshake_init(&p->resp, pattern, 0, prologue, sizeof prologue, p->rs.secret, NULL);
}

/* Sends one handshake message from `from` to `to` and checks the payload arrives. */
static int pair_send(pair_t *p, hd__handshake_t *from, hd__handshake_t *to, const char *text) {
  size_t len = strlen(text);
  int rc = hd__handshake_write_message(from, (const uint8_t *)text, len, p->msg, sizeof p->msg,
                                       &p->msg_len);
  if (rc != 0) return rc;
  rc = hd__handshake_read_message(to, p->msg, p->msg_len, p->payload, sizeof p->payload,
                                  &p->payload_len);
  if (rc != 0) return rc;
  if (p->payload_len != len || memcmp(p->payload, text, len) != 0) return HD_ECORRUPT;
  return 0;
}

static int transport(hd__cipher_t *send, hd__cipher_t *recv, const char *text) {
  uint8_t ct[256], pt[256];
  size_t len = strlen(text);
  int rc = hd__cipher_encrypt(send, NULL, 0, (const uint8_t *)text, len, ct);
  if (rc != 0) return rc;
  if ((rc = hd__cipher_decrypt(recv, NULL, 0, ct, len + HD__NOISE_TAGLEN, pt)) != 0) return rc;
  return memcmp(pt, text, len) == 0 ? 0 : HD_ECORRUPT;
}

static void test_ik_round_trip(void) {
  pair_t p;
  hd__cipher_t is, ir, rs, rr;
  CHECK_OK(pair_init(&p, HD__NOISE_IK));
  CHECK(hd__handshake_my_turn(&p.init) && !hd__handshake_my_turn(&p.resp));
  CHECK(hd__handshake_remote_static(&p.resp) == NULL);
  CHECK_OK(pair_send(&p, &p.init, &p.resp, "hello from the client"));
  CHECK(p.msg_len == 32 + 48 + 21 + 16);
  /* IK: the responder knows who called after the first message */
  CHECK(memcmp(hd__handshake_remote_static(&p.resp), p.is.pub, 32) == 0);
  CHECK_OK(pair_send(&p, &p.resp, &p.init, "welcome"));
  CHECK(hd__handshake_is_done(&p.init) && hd__handshake_is_done(&p.resp));
  CHECK(!hd__handshake_my_turn(&p.init) && !hd__handshake_my_turn(&p.resp));
  CHECK(memcmp(hd__handshake_hash(&p.init), hd__handshake_hash(&p.resp), 64) == 0);
  CHECK_OK(hd__handshake_split(&p.init, &is, &ir));
  CHECK_OK(hd__handshake_split(&p.resp, &rs, &rr));
  CHECK(memcmp(hd__handshake_remote_static(&p.init), p.rs.pub, 32) == 0);
  CHECK_OK(transport(&is, &rr, "first"));
  CHECK_OK(transport(&is, &rr, "second"));
  CHECK_OK(transport(&rs, &ir, "reply"));
  CHECK(is.n == 2 && rr.n == 2 && rs.n == 1 && ir.n == 1);
  /* each direction has its own key: our own ciphertext does not decrypt with our recv */
  uint8_t ct[32], pt[16];
  CHECK_OK(hd__cipher_encrypt(&is, NULL, 0, (const uint8_t *)"x", 1, ct));
  CHECK_RC(hd__cipher_decrypt(&ir, NULL, 0, ct, 17, pt), HD_EAUTH);
  /* in place */
  memcpy(ct, "in place", 8);
  CHECK_OK(hd__cipher_encrypt(&rs, NULL, 0, ct, 8, ct));
  CHECK_OK(hd__cipher_decrypt(&ir, NULL, 0, ct, 24, ct));
  CHECK(memcmp(ct, "in place", 8) == 0);
  hd__cipher_wipe(&is);
  CHECK(!is.has_key);
  hd__handshake_wipe(&p.init);
  hd__handshake_wipe(&p.resp);
}

static void test_xx_round_trip(void) {
  pair_t p;
  hd__cipher_t is, ir, rs, rr;
  CHECK_OK(pair_init(&p, HD__NOISE_XX));
  CHECK_OK(pair_send(&p, &p.init, &p.resp, "e"));
  CHECK(p.msg_len == 32 + 1); /* no key yet: the payload is in the clear */
  CHECK(hd__handshake_remote_static(&p.init) == NULL);
  CHECK_OK(pair_send(&p, &p.resp, &p.init, "e, ee, s, es"));
  CHECK(memcmp(hd__handshake_remote_static(&p.init), p.rs.pub, 32) == 0);
  CHECK(hd__handshake_remote_static(&p.resp) == NULL);
  CHECK_OK(pair_send(&p, &p.init, &p.resp, "s, se"));
  CHECK(memcmp(hd__handshake_remote_static(&p.resp), p.is.pub, 32) == 0);
  CHECK(memcmp(hd__handshake_hash(&p.init), hd__handshake_hash(&p.resp), 64) == 0);
  CHECK_OK(hd__handshake_split(&p.init, &is, &ir));
  CHECK_OK(hd__handshake_split(&p.resp, &rs, &rr));
  CHECK_OK(transport(&is, &rr, "to the responder"));
  CHECK_OK(transport(&rs, &ir, "to the initiator"));
  /* empty payloads are fine */
  CHECK_OK(transport(&rs, &ir, ""));
}

static void test_ik_wrong_responder_key(void) {
  pair_t p;
  xkey_t other;
  key_gen(&other);
  CHECK_OK(pair_init(&p, HD__NOISE_IK));
  CHECK_OK(hd__handshake_init(&p.init, HD__NOISE_IK, 1, prologue, sizeof prologue, p.is.secret,
                              other.pub));
  CHECK_RC(pair_send(&p, &p.init, &p.resp, "hello"), HD_EAUTH);
  CHECK(hd_last_error_code() == HD_EAUTH);
  CHECK(hd__handshake_remote_static(&p.resp) == NULL);
}

static void test_prologue_mismatch(void) {
  pair_t p;
  CHECK_OK(pair_init(&p, HD__NOISE_IK));
  CHECK_OK(hd__handshake_init(&p.resp, HD__NOISE_IK, 0, (const uint8_t *)"other", 5,
                              p.rs.secret, NULL));
  CHECK_RC(pair_send(&p, &p.init, &p.resp, "hello"), HD_EAUTH);

  /* XX's first message has no key to catch it; the second one does */
  CHECK_OK(pair_init(&p, HD__NOISE_XX));
  CHECK_OK(hd__handshake_init(&p.resp, HD__NOISE_XX, 0, NULL, 0, p.rs.secret, NULL));
  CHECK_OK(pair_send(&p, &p.init, &p.resp, ""));
  CHECK_RC(pair_send(&p, &p.resp, &p.init, ""), HD_EAUTH);
}

static void test_tampered_handshake(void) {
  pair_t p;
  uint8_t bad[1024];
  CHECK_OK(pair_init(&p, HD__NOISE_IK));
  CHECK_OK(hd__handshake_write_message(&p.init, (const uint8_t *)"hi", 2, p.msg, sizeof p.msg,
                                       &p.msg_len));
  /* every byte matters: the ephemeral key, the encrypted static key, the payload and its tag */
  for (size_t i = 0; i < p.msg_len; i++) {
    memcpy(bad, p.msg, p.msg_len);
    bad[i] ^= 0x01;
    CHECK_RC(hd__handshake_read_message(&p.resp, bad, p.msg_len, p.payload, sizeof p.payload,
                                        &p.payload_len),
             HD_EAUTH);
  }
  /* failures left the responder untouched: the genuine message still goes through */
  CHECK(p.resp.step == 0 && !p.resp.has_rs && !p.resp.cs.has_key);
  CHECK_OK(hd__handshake_read_message(&p.resp, p.msg, p.msg_len, p.payload, sizeof p.payload,
                                      &p.payload_len));
  CHECK(p.payload_len == 2 && memcmp(p.payload, "hi", 2) == 0);
  CHECK_OK(pair_send(&p, &p.resp, &p.init, "ok"));
  CHECK(hd__handshake_is_done(&p.init) && hd__handshake_is_done(&p.resp));
}

static void test_tampered_transport(void) {
  pair_t p;
  hd__cipher_t is, ir, rs, rr;
  uint8_t ct[64], bad[64], pt[64];
  CHECK_OK(pair_init(&p, HD__NOISE_IK));
  CHECK_OK(pair_send(&p, &p.init, &p.resp, ""));
  CHECK_OK(pair_send(&p, &p.resp, &p.init, ""));
  CHECK_OK(hd__handshake_split(&p.init, &is, &ir));
  CHECK_OK(hd__handshake_split(&p.resp, &rs, &rr));
  CHECK_OK(hd__cipher_encrypt(&is, (const uint8_t *)"ad", 2, (const uint8_t *)"payload", 7, ct));
  for (size_t i = 0; i < 7 + 16; i++) {
    memcpy(bad, ct, sizeof bad);
    bad[i] ^= 0x80;
    CHECK_RC(hd__cipher_decrypt(&rr, (const uint8_t *)"ad", 2, bad, 23, pt), HD_EAUTH);
    CHECK(rr.n == 0);
  }
  /* wrong associated data */
  CHECK_RC(hd__cipher_decrypt(&rr, (const uint8_t *)"AD", 2, ct, 23, pt), HD_EAUTH);
  CHECK(rr.n == 0);
  CHECK_OK(hd__cipher_decrypt(&rr, (const uint8_t *)"ad", 2, ct, 23, pt));
  CHECK(rr.n == 1 && memcmp(pt, "payload", 7) == 0);
  /* a replay fails: the nonce moved on */
  CHECK_RC(hd__cipher_decrypt(&rr, (const uint8_t *)"ad", 2, ct, 23, pt), HD_EAUTH);
}

static void test_truncated(void) {
  pair_t p;
  hd__cipher_t is, ir, rs, rr;
  uint8_t ct[64], pt[64];
  CHECK_OK(pair_init(&p, HD__NOISE_IK));
  CHECK_OK(hd__handshake_write_message(&p.init, NULL, 0, p.msg, sizeof p.msg, &p.msg_len));
  CHECK(p.msg_len == 32 + 48 + 16);
  for (size_t len = 0; len < p.msg_len; len++)
    CHECK_RC(hd__handshake_read_message(&p.resp, p.msg, len, p.payload, sizeof p.payload, NULL),
             HD_EPROTO);
  CHECK_OK(hd__handshake_read_message(&p.resp, p.msg, p.msg_len, NULL, 0, NULL));
  CHECK_OK(hd__handshake_write_message(&p.resp, NULL, 0, p.msg, sizeof p.msg, &p.msg_len));
  CHECK(p.msg_len == 32 + 16);
  CHECK_RC(hd__handshake_read_message(&p.init, p.msg, 47, NULL, 0, NULL), HD_EPROTO);
  CHECK_OK(hd__handshake_read_message(&p.init, p.msg, 48, NULL, 0, NULL));
  CHECK_OK(hd__handshake_split(&p.init, &is, &ir));
  CHECK_OK(hd__handshake_split(&p.resp, &rs, &rr));
  CHECK_OK(hd__cipher_encrypt(&is, NULL, 0, (const uint8_t *)"abc", 3, ct));
  for (size_t len = 0; len < 16; len++)
    CHECK_RC(hd__cipher_decrypt(&rr, NULL, 0, ct, len, pt), HD_EPROTO);
  /* long enough for a tag but cut: the tag fails */
  CHECK_RC(hd__cipher_decrypt(&rr, NULL, 0, ct, 18, pt), HD_EAUTH);
  CHECK_OK(hd__cipher_decrypt(&rr, NULL, 0, ct, 19, pt));
  CHECK(memcmp(pt, "abc", 3) == 0);
}

static void test_out_of_turn(void) {
  pair_t p;
  hd__cipher_t s, r;
  CHECK_OK(pair_init(&p, HD__NOISE_XX));
  CHECK_RC(hd__handshake_write_message(&p.resp, NULL, 0, p.msg, sizeof p.msg, &p.msg_len),
           HD_ESTATE);
  CHECK_RC(hd__handshake_read_message(&p.init, p.msg, 32, p.payload, sizeof p.payload, NULL),
           HD_ESTATE);
  CHECK_OK(pair_send(&p, &p.init, &p.resp, ""));
  CHECK_RC(hd__handshake_write_message(&p.init, NULL, 0, p.msg, sizeof p.msg, &p.msg_len),
           HD_ESTATE);
  CHECK_OK(pair_send(&p, &p.resp, &p.init, ""));
  CHECK_OK(pair_send(&p, &p.init, &p.resp, ""));
  /* done: nobody writes or reads handshake messages any more */
  CHECK_RC(hd__handshake_write_message(&p.init, NULL, 0, p.msg, sizeof p.msg, &p.msg_len),
           HD_ESTATE);
  CHECK_RC(hd__handshake_write_message(&p.resp, NULL, 0, p.msg, sizeof p.msg, &p.msg_len),
           HD_ESTATE);
  CHECK_RC(hd__handshake_read_message(&p.resp, p.msg, p.msg_len, p.payload, sizeof p.payload,
                                      NULL),
           HD_ESTATE);
  CHECK_OK(hd__handshake_split(&p.init, &s, &r));
  CHECK_RC(hd__handshake_split(&p.init, &s, &r), HD_ESTATE);
  /* an uninitialised (zeroed) state refuses everything */
  hd__handshake_t zero;
  memset(&zero, 0, sizeof zero);
  CHECK_RC(hd__handshake_write_message(&zero, NULL, 0, p.msg, sizeof p.msg, NULL), HD_ESTATE);
  CHECK_RC(hd__handshake_split(&zero, &s, &r), HD_ESTATE);
}

static void test_buffer_too_small(void) {
  pair_t p;
  uint8_t payload[100] = {0};
  CHECK_OK(pair_init(&p, HD__NOISE_IK));
  size_t need = 32 + 48 + sizeof payload + 16;
  CHECK_RC(hd__handshake_write_message(&p.init, payload, sizeof payload, p.msg, need - 1,
                                       &p.msg_len),
           HD_EBUFSIZE);
  CHECK(p.init.step == 0 && !p.init.has_e);
  CHECK_OK(hd__handshake_write_message(&p.init, payload, sizeof payload, p.msg, need,
                                       &p.msg_len));
  CHECK(p.msg_len == need);
  CHECK_RC(hd__handshake_read_message(&p.resp, p.msg, p.msg_len, p.payload, sizeof payload - 1,
                                      &p.payload_len),
           HD_EBUFSIZE);
  CHECK_OK(hd__handshake_read_message(&p.resp, p.msg, p.msg_len, p.payload, sizeof payload,
                                      &p.payload_len));
  CHECK(p.payload_len == sizeof payload);
}

static void test_split_before_done(void) {
  pair_t p;
  hd__cipher_t s, r;
  CHECK_OK(pair_init(&p, HD__NOISE_IK));
  CHECK_RC(hd__handshake_split(&p.init, &s, &r), HD_ESTATE);
  CHECK_OK(pair_send(&p, &p.init, &p.resp, ""));
  CHECK_RC(hd__handshake_split(&p.init, &s, &r), HD_ESTATE);
  CHECK_RC(hd__handshake_split(&p.resp, &s, &r), HD_ESTATE);
}

static void test_bad_arguments(void) {
  hd__handshake_t hs;
  xkey_t k;
  key_gen(&k);
  CHECK_RC(hd__handshake_init(&hs, HD__NOISE_IK, 1, NULL, 0, k.secret, NULL), HD_EINVAL);
  CHECK_RC(hd__handshake_init(&hs, (hd__noise_pattern_t)7, 0, NULL, 0, k.secret, NULL),
           HD_EINVAL);
  CHECK_RC(hd__handshake_init(&hs, HD__NOISE_XX, 0, NULL, 0, NULL, NULL), HD_EINVAL);
  CHECK_RC(hd__handshake_init(&hs, HD__NOISE_XX, 0, NULL, 3, k.secret, NULL), HD_EINVAL);
  /* the responder of IK and both XX sides need no remote key */
  CHECK_OK(hd__handshake_init(&hs, HD__NOISE_IK, 0, NULL, 0, k.secret, NULL));
  CHECK_OK(hd__handshake_init(&hs, HD__NOISE_XX, 1, NULL, 0, k.secret, NULL));
}

static void test_low_order_key(void) {
  /* an all-zero "public key" makes every DH zero: refused, and nothing changed */
  static const uint8_t zero[32];
  hd__handshake_t hs;
  xkey_t k;
  uint8_t msg[256];
  size_t len;
  key_gen(&k);
  CHECK_OK(hd__handshake_init(&hs, HD__NOISE_IK, 1, NULL, 0, k.secret, zero));
  CHECK_RC(hd__handshake_write_message(&hs, NULL, 0, msg, sizeof msg, &len), HD_EAUTH);
  CHECK(hs.step == 0 && !hs.cs.has_key);

  /* a responder that receives a zero ephemeral key */
  CHECK_OK(hd__handshake_init(&hs, HD__NOISE_IK, 0, NULL, 0, k.secret, NULL));
  memset(msg, 0, sizeof msg);
  CHECK_RC(hd__handshake_read_message(&hs, msg, 96, NULL, 0, NULL), HD_EAUTH);
}

static void test_limits(void) {
  static uint8_t big[HD__NOISE_MAX_MESSAGE + 64];
  pair_t p;
  CHECK_OK(pair_init(&p, HD__NOISE_XX));
  /* XX message 1 carries 32 bytes before the payload: 65503 bytes of payload fit, no more */
  static uint8_t out[HD__NOISE_MAX_MESSAGE + 64];
  CHECK_RC(hd__handshake_write_message(&p.init, big, HD__NOISE_MAX_MESSAGE - 31, out,
                                       sizeof out, NULL),
           HD_EMSGSIZE);
  size_t len;
  CHECK_OK(hd__handshake_write_message(&p.init, big, HD__NOISE_MAX_MESSAGE - 32, out, sizeof out,
                                       &len));
  CHECK(len == HD__NOISE_MAX_MESSAGE);
  CHECK_RC(hd__handshake_read_message(&p.resp, big, HD__NOISE_MAX_MESSAGE + 1, big, sizeof big,
                                      NULL),
           HD_EPROTO);

  /* the last nonce is reserved */
  hd__cipher_t c = {{1}, UINT64_MAX - 1, 1}, d = c;
  uint8_t ct[32], pt[16];
  CHECK_OK(hd__cipher_encrypt(&c, NULL, 0, (const uint8_t *)"x", 1, ct));
  CHECK_RC(hd__cipher_encrypt(&c, NULL, 0, (const uint8_t *)"x", 1, ct), HD_EPROTO);
  CHECK_OK(hd__cipher_decrypt(&d, NULL, 0, ct, 17, pt));
  CHECK_RC(hd__cipher_decrypt(&d, NULL, 0, ct, 17, pt), HD_EPROTO);
}

/* The IK vector of test/vectors/noise/cacophony-25519-chachapoly-blake2b.json. */
static int hex(uint8_t *out, size_t cap, const char *s, size_t *len) {
  size_t n = strlen(s) / 2;
  if (n > cap) return -1;
  if (sodium_hex2bin(out, cap, s, strlen(s), NULL, len, NULL) != 0 || *len != n) return -1;
  return 0;
}

static void test_cacophony_ik(void) {
  static const char *const payloads[] = {
      "4c756477696720766f6e204d69736573", "4d757272617920526f746862617264",
      "462e20412e20486179656b", "4361726c204d656e676572", "4a65616e2d426170746973746520536179",
      "457567656e2042f6686d20766f6e2042617765726b"};
  static const char *const ciphertexts[] = {
      ("ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c7944ba83a447b38c83e327ad9369"
       "29812f624884847b7831e95e197b2f797088efdd2f88f1db7e1fb0e99c64419097af91cee64e470f4b6fcd92"
       "98ce0b56fe20f86e13bf70439c538e3602a7127af71a29cc"),
      ("95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f1448088439f069b267a06b3de3ecb1043"
       "bcb098e9af91d9c64748d998c7b47890871571"),
      "cd54383060e7a28434cca27fb1cc524cfbabeb18181589df219d07",
      "a856d3bf0246bfc476c655009cd1ed677b8dcc5b349ae8ef2a05f2",
      "49063084b2c51f098337cb8a13739ac848f907e67cfb2cc8a8b60586467aa02fc7",
      "8b9709d23b47e4639df7678d7a21741eba4ef1e9c60383001c7435549c20f9d56f30e935d3"};
  uint8_t prol[9], is[32], ie[32], irs[32], rs[32], re[32], h[64], pl[64], ct[256], out[256];
  size_t n, pl_len, ct_len, out_len;
  CHECK(hex(prol, sizeof prol, "4a6f686e2047616c74", &n) == 0);
  CHECK(hex(is, 32, "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1", &n) == 0);
  CHECK(hex(ie, 32, "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a", &n) == 0);
  CHECK(hex(irs, 32, "31e0303fd6418d2f8c0e78b91f22e8caed0fbe48656dcf4767e4834f701b8f62", &n) == 0);
  CHECK(hex(rs, 32, "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893", &n) == 0);
  CHECK(hex(re, 32, "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b", &n) == 0);
  CHECK(hex(h, 64,
            "1c8fa891cb414fedba6daa7c6f4ae0a6d98e5f9768cc9cecd27e805614943ee9c8a1b27fbfb76dc197255c"
            "8aa69f6b4285c423840b8bedf45e652ca64f797d81",
            &n) == 0);

  hd__handshake_t side[2];
  hd__cipher_t send[2], recv[2];
  CHECK_OK(hd__handshake_init(&side[0], HD__NOISE_IK, 1, prol, sizeof prol, is, irs));
  CHECK_OK(hd__handshake_init(&side[1], HD__NOISE_IK, 0, prol, sizeof prol, rs, NULL));
  hd__handshake_fix_ephemeral(&side[0], ie);
  hd__handshake_fix_ephemeral(&side[1], re);
  for (int i = 0; i < 6; i++) {
    int s = i % 2, d = 1 - s;
    CHECK(hex(pl, sizeof pl, payloads[i], &pl_len) == 0);
    CHECK(hex(ct, sizeof ct, ciphertexts[i], &ct_len) == 0);
    if (i < 2) {
      CHECK_OK(hd__handshake_write_message(&side[s], pl, pl_len, out, sizeof out, &out_len));
      CHECK(out_len == ct_len && memcmp(out, ct, ct_len) == 0);
      CHECK_OK(hd__handshake_read_message(&side[d], ct, ct_len, out, sizeof out, &out_len));
      if (i == 1) {
        CHECK(memcmp(hd__handshake_hash(&side[0]), h, 64) == 0);
        CHECK(memcmp(hd__handshake_hash(&side[1]), h, 64) == 0);
        CHECK_OK(hd__handshake_split(&side[0], &send[0], &recv[0]));
        CHECK_OK(hd__handshake_split(&side[1], &send[1], &recv[1]));
      }
    } else {
      CHECK(ct_len == pl_len + 16);
      CHECK_OK(hd__cipher_encrypt(&send[s], NULL, 0, pl, pl_len, out));
      CHECK(memcmp(out, ct, ct_len) == 0);
      CHECK_OK(hd__cipher_decrypt(&recv[d], NULL, 0, ct, ct_len, out));
      out_len = pl_len;
    }
    CHECK(out_len == pl_len && memcmp(out, pl, pl_len) == 0);
  }
}

/* A responder with two static keys (a key rollover): message 1 to either key is read, under the
 * key it was sent to, and the handshake completes; one to neither fails and changes nothing. */
static void test_ik_responder_two_keys(void) {
  for (int dialed = 0; dialed < 3; dialed++) { /* 0: the current key, 1: the next, 2: neither */
    pair_t p;
    xkey_t next, stranger;
    key_gen(&next);
    key_gen(&stranger);
    CHECK_OK(pair_init(&p, HD__NOISE_IK));
    const uint8_t *to = dialed == 0 ? p.rs.pub : dialed == 1 ? next.pub : stranger.pub;
    CHECK_OK(hd__handshake_init(&p.init, HD__NOISE_IK, 1, prologue, sizeof prologue, p.is.secret,
                                to));
    CHECK_OK(hd__handshake_write_message(&p.init, (const uint8_t *)"hello", 5, p.msg,
                                         sizeof p.msg, &p.msg_len));
    hd__handshake_t before = p.resp;
    int used_next = -1;
    int rc = hd__handshake_read_first_either(&p.resp, prologue, sizeof prologue, next.secret,
                                             p.msg, p.msg_len, p.payload, sizeof p.payload,
                                             &p.payload_len, &used_next);
    if (dialed == 2) {
      CHECK(rc == HD_EAUTH && used_next == 0);
      CHECK(memcmp(&before, &p.resp, sizeof before) == 0);
      continue;
    }
    CHECK_OK(rc);
    CHECK(used_next == dialed);
    CHECK(p.payload_len == 5 && memcmp(p.payload, "hello", 5) == 0);
    CHECK_OK(pair_send(&p, &p.resp, &p.init, "welcome"));
    CHECK(memcmp(hd__handshake_remote_static(&p.resp), p.is.pub, 32) == 0);
    hd__cipher_t c[4];
    CHECK_OK(hd__handshake_split(&p.init, &c[0], &c[1]));
    CHECK_OK(hd__handshake_split(&p.resp, &c[2], &c[3]));
    CHECK_OK(transport(&c[0], &c[3], "to the responder"));
    CHECK_OK(transport(&c[2], &c[1], "to the initiator"));
  }
}

#define TESTS(X)                                                                                  \
  X(test_ik_round_trip)                                                                           \
  X(test_ik_responder_two_keys)                                                                   \
  X(test_xx_round_trip)                                                                           \
  X(test_ik_wrong_responder_key)                                                                  \
  X(test_prologue_mismatch)                                                                       \
  X(test_tampered_handshake)                                                                      \
  X(test_tampered_transport)                                                                      \
  X(test_truncated)                                                                               \
  X(test_out_of_turn)                                                                             \
  X(test_buffer_too_small)                                                                        \
  X(test_split_before_done)                                                                       \
  X(test_bad_arguments)                                                                           \
  X(test_low_order_key)                                                                           \
  X(test_limits)                                                                                  \
  X(test_cacophony_ik)

HD_TEST_MAIN(TESTS)
