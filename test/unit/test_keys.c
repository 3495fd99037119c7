/* Key pairs in their three forms, the original example's keys, hex, topic keys, errors. */
#include <sodium.h>

#include "harness.h"
#include "hyperdown.h"
#include "keys.h"
#include "testutil.h"

static void test_original_example_keys_verify(void) {
  for (int i = 0; i < 3; i++) {
    uint8_t scalar[32], pk[32], xs[32], xp[32], xp2[32];
    hd_keypair_t kp;
    CHECK_OK(hd_hex_decode(scalar, 32, hdt_example_keys[i][0]));
    CHECK_OK(hd_hex_decode(pk, 32, hdt_example_keys[i][1]));
    CHECK_OK(hd_keypair_from_scalar(&kp, scalar, pk));
    CHECK(memcmp(kp.public_key, pk, 32) == 0);
    /* The Noise static key: X25519(scalar) must be the Montgomery form of the public key. */
    CHECK_OK(hd__keypair_to_x25519(&kp, xs, xp));
    CHECK(crypto_scalarmult_base(xp2, xs) == 0);
    CHECK(memcmp(xp, xp2, 32) == 0);
  }
}

static void test_scalar_pair_that_does_not_verify(void) {
  uint8_t scalar[32], pk[32];
  hd_keypair_t kp;
  memset(&kp, 0xaa, sizeof kp);
  CHECK_OK(hd_hex_decode(scalar, 32, hdt_example_keys[0][0]));
  CHECK_OK(hd_hex_decode(pk, 32, hdt_example_keys[1][1]));
  CHECK_RC(hd_keypair_from_scalar(&kp, scalar, pk), HD_EKEY);
  CHECK(hd_last_error_code() == HD_EKEY);
  CHECK(strstr(hd_last_error_message(), "does not belong") != NULL);
  CHECK(kp.public_key[0] == 0xaa); /* untouched on failure */
  scalar[0] |= 1;                  /* no longer clamped */
  CHECK_RC(hd_keypair_from_scalar(&kp, scalar, pk), HD_EKEY);
  CHECK(strstr(hd_last_error_message(), "clamped") != NULL);
}

static void test_seed_and_secret_key_forms_agree_with_libsodium(void) {
  uint8_t seed[32], pk[32], sk[64];
  hd_keypair_t a, b;
  for (int i = 0; i < 32; i++) seed[i] = (uint8_t)(i * 7 + 1);
  CHECK(crypto_sign_seed_keypair(pk, sk, seed) == 0);
  CHECK_OK(hd_keypair_from_seed(&a, seed));
  CHECK(memcmp(a.public_key, pk, 32) == 0);
  CHECK_OK(hd_keypair_from_secret_key(&b, sk));
  CHECK(memcmp(&a, &b, sizeof a) == 0);
  /* libsodium's own mapping of the secret key gives the same X25519 secret. */
  uint8_t xs_sodium[32], xs[32], xp[32];
  CHECK(crypto_sign_ed25519_sk_to_curve25519(xs_sodium, sk) == 0);
  CHECK_OK(hd__keypair_to_x25519(&a, xs, xp));
  CHECK(memcmp(xs, xs_sodium, 32) == 0);
  sk[40] ^= 1; /* public half no longer matches the seed */
  CHECK_RC(hd_keypair_from_secret_key(&b, sk), HD_EKEY);
}

static void test_generate_gives_distinct_verified_pairs(void) {
  hd_keypair_t a, b;
  CHECK_OK(hd_keypair_generate(&a));
  CHECK_OK(hd_keypair_generate(&b));
  CHECK_OK(hd_keypair_verify(&a));
  CHECK(memcmp(a.public_key, b.public_key, 32) != 0);
  hd_keypair_wipe(&a);
  for (int i = 0; i < 32; i++) CHECK(a.scalar[i] == 0);
  CHECK_RC(hd_keypair_verify(&a), HD_EKEY);
}

static void test_public_key_check(void) {
  uint8_t pk[32] = {0};
  CHECK_RC(hd_publickey_check(pk), HD_EKEY); /* identity point: small order */
  CHECK_OK(hd_hex_decode(pk, 32, hdt_example_keys[2][1]));
  CHECK_OK(hd_publickey_check(pk));
}

static void test_hex(void) {
  uint8_t bytes[4] = {0x00, 0xab, 0x10, 0xff}, back[4];
  char hex[9];
  CHECK_OK(hd_hex_encode(hex, sizeof hex, bytes, 4));
  CHECK(strcmp(hex, "00ab10ff") == 0);
  CHECK_OK(hd_hex_decode(back, 4, "00AB10fF"));
  CHECK(memcmp(back, bytes, 4) == 0);
  CHECK_RC(hd_hex_encode(hex, 8, bytes, 4), HD_EBUFSIZE);
  CHECK_RC(hd_hex_decode(back, 4, "00ab10f"), HD_EHEX);
  CHECK_RC(hd_hex_decode(back, 4, "00ab10fg"), HD_EHEX);
  CHECK(strstr(hd_last_error_message(), "position 7") != NULL);
  CHECK_RC(hd_hex_decode(back, 4, "00ab10ff00"), HD_EHEX);
}

static void test_topic_key(void) {
  uint8_t a[32], b[32], c[32], expect[32];
  crypto_generichash_state st;
  CHECK_OK(hd_topic_key(a, "topic", 5));
  CHECK_OK(hd_topic_key(b, "topic", 5));
  CHECK_OK(hd_topic_key(c, "topic2", 6));
  CHECK(memcmp(a, b, 32) == 0);
  CHECK(memcmp(a, c, 32) != 0);
  crypto_generichash_init(&st, NULL, 0, 32);
  crypto_generichash_update(&st, (const uint8_t *)"hyperdown/1 topictopic", 22);
  crypto_generichash_final(&st, expect, 32);
  CHECK(memcmp(a, expect, 32) == 0);
  CHECK_RC(hd_topic_key(a, "", 0), HD_EINVAL);
}

static void test_errors_and_versions(void) {
  CHECK(strcmp(hd_err_name(HD_EAUTH), "EAUTH") == 0);
  CHECK(strcmp(hd_strerror(HD_ETOPIC), "peer is on another topic") == 0);
  CHECK(strcmp(hd_err_name(12345), "UNKNOWN") == 0);
  CHECK(strcmp(hd_err_name(0), "OK") == 0);
  for (int code = -1; code >= HD_ERRNO_MIN; code--) CHECK(strcmp(hd_err_name(code), "UNKNOWN") != 0);
  CHECK_OK(HD_CHECK_VERSION());
  CHECK(hd_version() == HD_VERSION_HEX);
  CHECK(strcmp(hd_version_string(), HD_VERSION_STRING) == 0);
  CHECK_RC(hd_check_version(HD_ABI_VERSION + 1, HD_VERSION_HEX), HD_EVERSION);
  CHECK_RC(hd_check_version(HD_ABI_VERSION, HD_VERSION_HEX + 1), HD_EVERSION);
  CHECK(hd_publickey_bytes() == HD_PUBLICKEY_BYTES && hd_keypair_size() == sizeof(hd_keypair_t));
  hd_clear_error();
  CHECK(hd_last_error_code() == 0 && hd_last_error_message()[0] == '\0');
}

#define TESTS(X)                                                                                  \
  X(test_original_example_keys_verify)                                                            \
  X(test_scalar_pair_that_does_not_verify)                                                        \
  X(test_seed_and_secret_key_forms_agree_with_libsodium)                                          \
  X(test_generate_gives_distinct_verified_pairs)                                                  \
  X(test_public_key_check)                                                                        \
  X(test_hex)                                                                                     \
  X(test_topic_key)                                                                               \
  X(test_errors_and_versions)
HD_TEST_MAIN(TESTS)
