/* Hot path, crypto: the record layer and the Noise IK handshake, each beside its physical
 * reference measured in the same run (docs/benchmarks/hot-path.md).
 *
 *  - seal:  hd__record_seal (2-byte header + ChaChaPoly, straight into an hd__buf_t) vs
 *           crypto_aead_chacha20poly1305_ietf_encrypt on the same sizes, same buffer layout;
 *  - open:  hd__record_reader_feed over a read holding many whole records (decrypt in place,
 *           hand each plaintext to a callback) vs crypto_aead_chacha20poly1305_ietf_decrypt in
 *           place on the same records. Restoring the ciphertext between passes is not timed;
 *  - handshake: full IK (initiator and responder state, both messages, both splits, in memory)
 *           vs the X25519 work IK needs: 8 crypto_scalarmult (es, ss, ee, se on each side) and 2
 *           crypto_scalarmult_base (one ephemeral key per side). hd__handshake_init also derives
 *           the static public key (one more crypto_scalarmult_base per side): a second reference
 *           row counts those too, so that what the code does is visible beside what IK needs.
 *
 * Every loop is bounded in count and time (MB_SECONDS per measurement, MB_REPS reps). */
#include "micro.h"

#include "noise.h"
#include "record.h"
#include "wire.h"

#include <sodium.h>

static const size_t sizes[] = {64, 1024, 16384, 65536};
#define BATCH_BYTES (1u << 20) /* bytes of plaintext per timed pass */
#define MAX_PASSES 100000

static uint8_t key[32];

static void nonce_of(uint8_t nonce[12], uint64_t n) {
  memset(nonce, 0, 4);
  for (int i = 0; i < 8; i++) nonce[4 + i] = (uint8_t)(n >> (8 * i));
}

/* ---- seal ---------------------------------------------------------------------------------- */

/* MB/s of plaintext sealed by hd__record_seal, in passes of k messages until `secs` passed. */
static double run_seal(size_t size, size_t k, const uint8_t *pt, hd__buf_t *out, double secs) {
  hd__cipher_t c;
  memset(&c, 0, sizeof c);
  memcpy(c.k, key, 32);
  c.has_key = 1;
  double busy = 0;
  size_t bytes = 0;
  double t_end = mb_now() + secs;
  for (int pass = 0; pass < MAX_PASSES && (pass == 0 || mb_now() < t_end); pass++) {
    out->len = 0;
    double t0 = mb_now();
    for (size_t i = 0; i < k; i++) MB_CHECK(hd__record_seal(&c, pt, size, out) == 0, "seal");
    busy += mb_now() - t0;
    bytes += k * size;
  }
  return (double)bytes / busy / 1e6;
}

static double run_encrypt(size_t size, size_t k, const uint8_t *pt, uint8_t *out, double secs) {
  uint64_t n = 0;
  uint8_t nonce[12];
  double busy = 0;
  size_t bytes = 0;
  double t_end = mb_now() + secs;
  for (int pass = 0; pass < MAX_PASSES && (pass == 0 || mb_now() < t_end); pass++) {
    uint8_t *p = out;
    double t0 = mb_now();
    for (size_t i = 0; i < k; i++) {
      nonce_of(nonce, n++);
      crypto_aead_chacha20poly1305_ietf_encrypt(p + 2, NULL, pt, size, NULL, 0, NULL, nonce, key);
      p += size + 18;
    }
    busy += mb_now() - t0;
    bytes += k * size;
  }
  return (double)bytes / busy / 1e6;
}

/* ---- open ---------------------------------------------------------------------------------- */

static size_t opened_bytes;
static int on_record(void *ctx, uint8_t *pt, size_t len) {
  (void)ctx;
  (void)pt;
  opened_bytes += len;
  return 0;
}

/* `wire` holds k sealed records (nonces 0..k-1) of `size` bytes; `work` is scratch. */
static double run_open(size_t size, size_t k, const uint8_t *wire, size_t wire_len,
                       uint8_t *work, double secs) {
  hd__cipher_t c;
  memset(&c, 0, sizeof c);
  memcpy(c.k, key, 32);
  c.has_key = 1;
  hd__record_reader_t r;
  MB_CHECK(hd__record_reader_init(&r, &c, on_record, NULL) == 0, "reader init");
  double busy = 0;
  size_t bytes = 0;
  double t_end = mb_now() + secs;
  for (int pass = 0; pass < MAX_PASSES && (pass == 0 || mb_now() < t_end); pass++) {
    memcpy(work, wire, wire_len); /* not timed: feeding decrypts in place */
    r.cipher.n = 0;
    opened_bytes = 0;
    double t0 = mb_now();
    int rc = hd__record_reader_feed(&r, work, wire_len);
    busy += mb_now() - t0;
    MB_CHECK(rc == 0 && opened_bytes == k * size, "open: rc %d, %zu bytes", rc, opened_bytes);
    bytes += k * size;
  }
  hd__record_reader_free(&r);
  return (double)bytes / busy / 1e6;
}

static double run_decrypt(size_t size, size_t k, const uint8_t *wire, size_t wire_len,
                          uint8_t *work, double secs) {
  uint8_t nonce[12];
  double busy = 0;
  size_t bytes = 0;
  double t_end = mb_now() + secs;
  for (int pass = 0; pass < MAX_PASSES && (pass == 0 || mb_now() < t_end); pass++) {
    memcpy(work, wire, wire_len);
    double t0 = mb_now();
    uint8_t *p = work;
    for (size_t i = 0; i < k; i++) {
      nonce_of(nonce, i);
      int rc = crypto_aead_chacha20poly1305_ietf_decrypt(p + 2, NULL, NULL, p + 2, size + 16,
                                                         NULL, 0, nonce, key);
      MB_CHECK(rc == 0, "decrypt");
      p += size + 18;
    }
    busy += mb_now() - t0;
    bytes += k * size;
  }
  return (double)bytes / busy / 1e6;
}

static void bench_records(int reps, double secs) {
  for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
    size_t size = sizes[si], k = BATCH_BYTES / size;
    uint8_t *pt = malloc(size);
    randombytes_buf(pt, size);
    hd__buf_t out;
    hd__buf_init(&out);
    size_t sealed = hd__record_sealed_size(size); /* 64 KiB takes two records (max 65519) */
    MB_CHECK(hd__buf_reserve(&out, k * sealed) == 0, "reserve");
    uint8_t *raw = malloc(k * (size + 18)); /* one AEAD per message, a 2-byte gap before each */
    /* the wire image the reader opens: k records sealed with nonces 0..k-1 */
    hd__cipher_t c;
    memset(&c, 0, sizeof c);
    memcpy(c.k, key, 32);
    c.has_key = 1;
    hd__buf_t wire;
    hd__buf_init(&wire);
    for (size_t i = 0; i < k; i++) MB_CHECK(hd__record_seal(&c, pt, size, &wire) == 0, "seal");
    MB_CHECK(wire.len == k * sealed, "wire length");
    uint8_t *work = malloc(wire.len > k * (size + 18) ? wire.len : k * (size + 18));
    run_encrypt(size, k, pt, raw, 0); /* one pass: the reference's ciphertexts, nonces 0..k-1 */

    double seal[MB_MAX_REPS], enc[MB_MAX_REPS], open[MB_MAX_REPS], dec[MB_MAX_REPS];
    run_seal(size, k, pt, &out, secs / 4); /* warm up */
    run_encrypt(size, k, pt, work, secs / 4);
    for (int r = 0; r < reps; r++) {
      enc[r] = run_encrypt(size, k, pt, work, secs);
      seal[r] = run_seal(size, k, pt, &out, secs);
      dec[r] = run_decrypt(size, k, raw, k * (size + 18), work, secs);
      open[r] = run_open(size, k, wire.data, wire.len, work, secs);
    }
    char param[32];
    snprintf(param, sizeof param, "%zu_per_pass", k);
    mb_row("record", "seal", param, (long)size, "MB/s", seal, "chacha20poly1305_ietf_encrypt",
           enc, reps, 1, "plaintext MB/s; hd__record_seal (header+tag into hd__buf_t)");
    mb_row("record", "open", param, (long)size, "MB/s", open, "chacha20poly1305_ietf_decrypt",
           dec, reps, 1, "plaintext MB/s; hd__record_reader_feed (in place + callback)");
    free(pt);
    free(raw);
    free(work);
    hd__buf_free(&out);
    hd__buf_free(&wire);
  }
}

/* ---- handshake ----------------------------------------------------------------------------- */

static uint8_t srv_secret[32], srv_public[32], cli_secret[32];

static void one_handshake(void) {
  hd__handshake_t ini, rsp;
  static const uint8_t prologue[16] = "hyperdown bench";
  uint8_t hello[HD__HELLO_MAX] = {0}, welcome[HD__WELCOME_MAX] = {0};
  uint8_t m1[256], m2[256], pl[256];
  size_t m1_len, m2_len, pl_len;
  MB_CHECK(hd__handshake_init(&ini, HD__NOISE_IK, 1, prologue, sizeof prologue, cli_secret,
                              srv_public) == 0, "init i");
  MB_CHECK(hd__handshake_init(&rsp, HD__NOISE_IK, 0, prologue, sizeof prologue, srv_secret,
                              NULL) == 0, "init r");
  MB_CHECK(hd__handshake_write_message(&ini, hello, 34, m1, sizeof m1, &m1_len) == 0, "m1");
  MB_CHECK(hd__handshake_read_message(&rsp, m1, m1_len, pl, sizeof pl, &pl_len) == 0, "r m1");
  MB_CHECK(hd__handshake_write_message(&rsp, welcome, 26, m2, sizeof m2, &m2_len) == 0, "m2");
  MB_CHECK(hd__handshake_read_message(&ini, m2, m2_len, pl, sizeof pl, &pl_len) == 0, "r m2");
  hd__cipher_t is, ir, rs, rr;
  MB_CHECK(hd__handshake_split(&ini, &is, &ir) == 0 && hd__handshake_split(&rsp, &rs, &rr) == 0,
           "split");
  MB_CHECK(memcmp(is.k, rr.k, 32) == 0 && memcmp(ir.k, rs.k, 32) == 0, "keys differ");
  hd__handshake_wipe(&ini);
  hd__handshake_wipe(&rsp);
}

#define HS_MAX 200000

/* handshakes/s */
static double run_handshakes(double secs) {
  double t0 = mb_now(), t_end = t0 + secs;
  long n = 0;
  while (n < HS_MAX && (n % 16 != 0 || mb_now() < t_end)) {
    one_handshake();
    n++;
  }
  return (double)n / (mb_now() - t0);
}

/* "handshakes"/s of the X25519 work alone: n_dh scalarmult + n_base scalarmult_base each. */
static volatile uint8_t sink;
static double run_x25519(int n_dh, int n_base, double secs) {
  uint8_t e_sec[32], e_pub[32], out[32];
  randombytes_buf(e_sec, 32);
  crypto_scalarmult_base(e_pub, e_sec);
  double t0 = mb_now(), t_end = t0 + secs;
  long n = 0;
  while (n < HS_MAX && (n % 16 != 0 || mb_now() < t_end)) {
    for (int i = 0; i < n_base; i++) {
      e_sec[0] ^= (uint8_t)i; /* a fresh scalar each time, as an ephemeral key is */
      crypto_scalarmult_base(out, e_sec);
    }
    for (int i = 0; i < n_dh; i++) {
      MB_CHECK(crypto_scalarmult(out, e_sec, i % 2 ? e_pub : srv_public) == 0, "dh");
      sink ^= out[0];
    }
    n++;
  }
  return (double)n / (mb_now() - t0);
}

static void bench_handshakes(int reps, double secs) {
  randombytes_buf(srv_secret, 32);
  randombytes_buf(cli_secret, 32);
  crypto_scalarmult_base(srv_public, srv_secret);
  double hs[MB_MAX_REPS], need[MB_MAX_REPS], does[MB_MAX_REPS];
  run_handshakes(secs / 4);
  for (int r = 0; r < reps; r++) {
    need[r] = run_x25519(8, 2, secs);
    does[r] = run_x25519(8, 4, secs);
    hs[r] = run_handshakes(secs);
  }
  mb_row("handshake", "ik_full", "initiator+responder", 0, "handshakes/s", hs,
         "x25519_8dh_2base", need, reps, 1,
         "IK needs 4 DH per side + 1 ephemeral keygen per side");
  mb_row("handshake", "ik_full", "initiator+responder", 0, "handshakes/s", hs,
         "x25519_8dh_4base", does, reps, 1,
         "what hd__handshake_* calls: also scalarmult_base of the static key in each init");
}

int main(int argc, char **argv) {
  MB_CHECK(sodium_init() >= 0, "sodium");
  randombytes_buf(key, sizeof key);
  int reps = mb_reps();
  double secs = mb_seconds(0.3);
  const char *what = argc > 1 ? argv[1] : "all";
  if (!strcmp(what, "all") || !strcmp(what, "record")) bench_records(reps, secs);
  if (!strcmp(what, "all") || !strcmp(what, "handshake")) bench_handshakes(reps, secs);
  return 0;
}
