/* Key parsing through the public API (include/hyperdown.h): hd_hex_decode on arbitrary strings
 * and lengths (it accepts exactly 2*len hex digits of either case, writes only its `len` bytes,
 * and hd_hex_encode gives them back), and the key pair constructors on arbitrary bytes: a seed
 * always makes a pair that verifies and that the other two forms rebuild; a secret key is
 * accepted exactly when its public half is its seed's; a scalar is accepted exactly when it is
 * clamped and the public key is scalar*G; a refusal is HD_EKEY. Public keys are checked, and the
 * topic key takes any name.
 *
 * Input: a byte that picks the call, then its bytes. */
#include "fuzz_util.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static void check_hex(fz_in_t *in) {
  size_t out_len = fz_u8(in) % 40;
  char *hex = malloc(in->n + 1);
  FZ_CHECK(hex != NULL);
  if (in->n) memcpy(hex, in->p, in->n);
  hex[in->n] = '\0';
  size_t len = strlen(hex);
  int valid = len == 2 * out_len;
  for (size_t i = 0; valid && i < len; i++) valid = hexval(hex[i]) >= 0;
  uint8_t *out = malloc(out_len ? out_len : 1); /* exactly its size: a write past it is ASan's */
  FZ_CHECK(out != NULL);
  int rc = hd_hex_decode(out, out_len, hex);
  FZ_CHECK(rc == (valid ? 0 : HD_EHEX));
  if (rc == 0) {
    char *back = malloc(2 * out_len + 1);
    FZ_CHECK(back != NULL);
    for (size_t i = 0; i < out_len; i++)
      FZ_CHECK(out[i] == (hexval(hex[2 * i]) << 4 | hexval(hex[2 * i + 1])));
    FZ_CHECK(hd_hex_encode(back, 2 * out_len + 1, out, out_len) == 0);
    for (size_t i = 0; i < len; i++) FZ_CHECK(hexval(back[i]) == hexval(hex[i]));
    FZ_CHECK(hd_hex_encode(back, 2 * out_len, out, out_len) == HD_EBUFSIZE);
    free(back);
  }
  free(out);
  free(hex);
}

static void check_pair_forms(const hd_keypair_t *kp) {
  hd_keypair_t again;
  uint8_t x_secret[32], x_public[32];
  FZ_CHECK(hd_keypair_verify(kp) == 0 && hd_publickey_check(kp->public_key) == 0);
  FZ_CHECK(hd_keypair_from_scalar(&again, kp->scalar, kp->public_key) == 0);
  FZ_CHECK(memcmp(&again, kp, sizeof again) == 0);
  FZ_CHECK(hd__keypair_to_x25519(kp, x_secret, x_public) == 0);
  uint8_t derived[32];
  FZ_CHECK(crypto_scalarmult_base(derived, x_secret) == 0 && memcmp(derived, x_public, 32) == 0);
}

static void check_seed(fz_in_t *in) {
  uint8_t sk[HD_SECRETKEY_BYTES];
  fz_copy(in, sk, HD_SEED_BYTES);
  hd_keypair_t kp, from_sk;
  FZ_CHECK(hd_keypair_from_seed(&kp, sk) == 0);
  check_pair_forms(&kp);
  /* libsodium's secret key is the seed and the public key */
  memcpy(sk + HD_SEED_BYTES, kp.public_key, HD_PUBLICKEY_BYTES);
  FZ_CHECK(hd_keypair_from_secret_key(&from_sk, sk) == 0);
  FZ_CHECK(memcmp(&from_sk, &kp, sizeof kp) == 0);
}

static void check_secret_key(fz_in_t *in) {
  uint8_t sk[HD_SECRETKEY_BYTES];
  fz_copy(in, sk, sizeof sk);
  hd_keypair_t kp, from_seed;
  FZ_CHECK(hd_keypair_from_seed(&from_seed, sk) == 0);
  int rc = hd_keypair_from_secret_key(&kp, sk);
  int match = memcmp(from_seed.public_key, sk + HD_SEED_BYTES, HD_PUBLICKEY_BYTES) == 0;
  FZ_CHECK(rc == (match ? 0 : HD_EKEY));
  if (rc == 0) FZ_CHECK(memcmp(&kp, &from_seed, sizeof kp) == 0);
}

/* `derive`: the public key is scalar*G (so only the clamping decides); else it is input bytes. */
static void check_scalar(fz_in_t *in, int derive) {
  uint8_t scalar[HD_SCALAR_BYTES], pk[HD_PUBLICKEY_BYTES];
  fz_copy(in, scalar, sizeof scalar);
  int on_curve = crypto_scalarmult_ed25519_base_noclamp(pk, scalar) == 0;
  int clamped = (scalar[0] & 7) == 0 && (scalar[31] & 0xc0) == 0x40;
  int match = derive && on_curve;
  if (!derive) {
    uint8_t given[HD_PUBLICKEY_BYTES];
    fz_copy(in, given, sizeof given);
    match = on_curve && memcmp(given, pk, sizeof pk) == 0;
    memcpy(pk, given, sizeof pk);
  }
  hd_keypair_t kp;
  memset(&kp, 0xaa, sizeof kp);
  hd_keypair_t untouched = kp;
  int rc = hd_keypair_from_scalar(&kp, scalar, pk);
  FZ_CHECK(rc == (clamped && match ? 0 : HD_EKEY));
  if (rc == 0) check_pair_forms(&kp);
  else FZ_CHECK(memcmp(&kp, &untouched, sizeof kp) == 0); /* a refusal writes nothing */
}

static void check_public_key(fz_in_t *in) {
  uint8_t pk[HD_PUBLICKEY_BYTES], x[32];
  fz_copy(in, pk, sizeof pk);
  int rc = hd_publickey_check(pk);
  FZ_CHECK(rc == (crypto_core_ed25519_is_valid_point(pk) == 1 ? 0 : HD_EKEY));
  FZ_CHECK(hd__ed25519_pk_to_x25519(pk, x) == rc);
}

static void check_topic(fz_in_t *in) {
  uint8_t key[HD_TOPIC_BYTES], again[HD_TOPIC_BYTES], tag[8];
  size_t len = in->n;
  char *name = malloc(len ? len : 1);
  FZ_CHECK(name != NULL);
  if (len) memcpy(name, in->p, len);
  int rc = hd_topic_key(key, name, len);
  FZ_CHECK(rc == (len ? 0 : HD_EINVAL));
  if (rc == 0) {
    FZ_CHECK(hd_topic_key(again, name, len) == 0 && memcmp(key, again, sizeof key) == 0);
    hd__topic_tag(key, tag);
  }
  free(name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_in_t in = {data, size};
  switch (fz_u8(&in) % 7) {
    case 0: check_hex(&in); break;
    case 1: check_seed(&in); break;
    case 2: check_secret_key(&in); break;
    case 3: check_scalar(&in, 1); break;
    case 4: check_scalar(&in, 0); break;
    case 5: check_public_key(&in); break;
    default: check_topic(&in); break;
  }
  return 0;
}
