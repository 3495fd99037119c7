/* The checked-key set of the server's add path: it grows with distinct users, keeps answering
 * for every key it holds, and never lets an invalid key through. */
#include "harness.h"
#include "key_cache.h"

static void test_distinct_keys_are_remembered_across_growth(void) {
  enum { N = 3000 };
  static hd_keypair_t kps[N];
  hd__key_cache_t c;
  CHECK_OK(hd__key_cache_init(&c));
  for (int i = 0; i < N; i++) {
    CHECK_OK(hd_keypair_generate(&kps[i]));
    CHECK_OK(hd__key_cache_check(&c, kps[i].public_key));
  }
  CHECK(c.count == N && c.cap >= 2 * N);
  for (int i = 0; i < N; i++) CHECK_OK(hd__key_cache_check(&c, kps[i].public_key));
  CHECK(c.count == N); /* hits add nothing */
  hd__key_cache_destroy(&c);
}

static void test_invalid_keys_never_pass(void) {
  uint8_t zero[32] = {0}, ones[32];
  memset(ones, 0xff, sizeof ones);
  hd__key_cache_t c;
  CHECK_OK(hd__key_cache_init(&c));
  for (int round = 0; round < 2; round++) {
    CHECK_RC(hd__key_cache_check(&c, zero), HD_EKEY);
    CHECK_RC(hd__key_cache_check(&c, ones), HD_EKEY);
  }
  CHECK(c.count == 0);
  hd__key_cache_destroy(&c);
}

#define TESTS(X)                                                                                  \
  X(test_distinct_keys_are_remembered_across_growth)                                              \
  X(test_invalid_keys_never_pass)
HD_TEST_MAIN(TESTS)
