/* A minimal test harness: each test program defines TESTS(X) and gets a main() that runs them,
 * prints one line per failure and a closing "N passed, N failed" line (", N skipped" added when a
 * test skipped); exit 1 on any failure. */
#ifndef HD_TEST_HARNESS_H
#define HD_TEST_HARNESS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hd_test_failed_checks;
static int hd_test_skips;

/* Skips the test, saying why (something it needs is not there: never a way around a failure):
 * prints "SKIP <why>" and returns; the test counts as skipped, not passed. */
#define SKIP(...)                                                                                 \
  do {                                                                                            \
    printf("  SKIP ");                                                                            \
    printf(__VA_ARGS__);                                                                          \
    printf("\n");                                                                                 \
    hd_test_skips++;                                                                              \
    return;                                                                                       \
  } while (0)

#define CHECK(cond)                                                                               \
  do {                                                                                            \
    if (!(cond)) {                                                                                \
      fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);                  \
      hd_test_failed_checks++;                                                                    \
      return;                                                                                     \
    }                                                                                             \
  } while (0)

/* Checks that an hd_* call returned `want`; prints the error name and detail otherwise. */
#define CHECK_RC(call, want)                                                                      \
  do {                                                                                            \
    int hd_rc_ = (call);                                                                          \
    if (hd_rc_ != (want)) {                                                                       \
      fprintf(stderr, "  %s:%d: %s returned %d (%s: %s), wanted %d\n", __FILE__, __LINE__,        \
              #call, hd_rc_, hd_err_name(hd_rc_), hd_last_error_message(), (int)(want));          \
      hd_test_failed_checks++;                                                                    \
      return;                                                                                     \
    }                                                                                             \
  } while (0)

#define CHECK_OK(call) CHECK_RC(call, 0)

#define HD_TEST_DECLARE(name) static void name(void);
#define HD_TEST_ENTRY(name) {#name, name},

#define HD_TEST_MAIN(TESTS)                                                                       \
  TESTS(HD_TEST_DECLARE)                                                                          \
  int main(int argc, char **argv) {                                                               \
    static const struct { const char *name; void (*fn)(void); } all[] = {TESTS(HD_TEST_ENTRY)};   \
    int passed = 0, failed = 0, skipped = 0;                                                      \
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {                                   \
      if (argc > 1 && strcmp(argv[1], all[i].name) != 0) continue;                                \
      int before = hd_test_failed_checks, skips = hd_test_skips;                                  \
      all[i].fn();                                                                                \
      if (hd_test_failed_checks == before && hd_test_skips != skips) {                            \
        skipped++;                                                                                \
      } else if (hd_test_failed_checks == before) {                                               \
        passed++;                                                                                 \
      } else {                                                                                    \
        failed++;                                                                                 \
        fprintf(stderr, "FAIL %s\n", all[i].name);                                                \
      }                                                                                           \
    }                                                                                             \
    if (skipped) printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);           \
    else printf("%d passed, %d failed\n", passed, failed);                                        \
    return failed ? 1 : 0;                                                                        \
  }

#endif
