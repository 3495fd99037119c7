/* The base layer's mechanisms that every other layer builds on: the intrusive queue, growable
 * arrays, the key map, and the thread's error detail (save/restore, a detail that quotes
 * itself). */
#include "harness.h"

#include "array.h"
#include "common.h"
#include "keymap.h"
#include "queue.h"

#include <stdint.h>

typedef struct item {
  int value;
  hd__queue_t node;
} item_t;

static int values(hd__queue_t *head, int *out, int cap) {
  int n = 0;
  hd__queue_t *q;
  hd__queue_foreach(q, head) {
    if (n < cap) out[n] = hd__container_of(q, item_t, node)->value;
    n++;
  }
  return n;
}

static void test_queue_keeps_order_and_removes_in_place(void) {
  hd__queue_t head;
  hd__queue_init(&head);
  CHECK(hd__queue_empty(&head) && hd__queue_first(&head) == NULL && hd__queue_pop(&head) == NULL);
  item_t it[5];
  for (int i = 0; i < 5; i++) {
    it[i].value = i;
    hd__queue_init(&it[i].node);
    CHECK(!hd__queue_linked(&it[i].node));
  }
  hd__queue_insert_tail(&head, &it[1].node);
  hd__queue_insert_tail(&head, &it[2].node);
  hd__queue_insert_head(&head, &it[0].node);
  hd__queue_insert_tail(&head, &it[3].node);
  int v[8];
  CHECK(values(&head, v, 8) == 4 && v[0] == 0 && v[1] == 1 && v[2] == 2 && v[3] == 3);
  hd__queue_remove(&it[2].node); /* from the middle, O(1) */
  CHECK(!hd__queue_linked(&it[2].node) && hd__queue_linked(&it[1].node));
  CHECK(values(&head, v, 8) == 3 && v[0] == 0 && v[1] == 1 && v[2] == 3);
  /* removing while iterating, the safe way */
  hd__queue_t *q, *n;
  hd__queue_foreach_safe(q, n, &head) {
    if (hd__container_of(q, item_t, node)->value == 1) hd__queue_remove(q);
  }
  CHECK(values(&head, v, 8) == 2 && v[0] == 0 && v[1] == 3);
  CHECK(hd__container_of(hd__queue_pop(&head), item_t, node)->value == 0);
  CHECK(hd__container_of(hd__queue_first(&head), item_t, node)->value == 3);
}

static void test_queue_move_appends_everything(void) {
  hd__queue_t a, b;
  hd__queue_init(&a);
  hd__queue_init(&b);
  item_t it[4];
  for (int i = 0; i < 4; i++) {
    it[i].value = i;
    hd__queue_insert_tail(i < 2 ? &a : &b, &it[i].node);
  }
  hd__queue_move(&b, &a);
  int v[8];
  CHECK(hd__queue_empty(&b));
  CHECK(values(&a, v, 8) == 4 && v[0] == 0 && v[1] == 1 && v[2] == 2 && v[3] == 3);
  hd__queue_move(&b, &a); /* an empty source changes nothing */
  CHECK(values(&a, v, 8) == 4);
  hd__queue_move(&a, &b);
  CHECK(hd__queue_empty(&a) && values(&b, v, 8) == 4 && v[3] == 3);
}

static void test_array_reserve_grows_and_keeps(void) {
  uint64_t *p = NULL;
  size_t cap = 0;
  CHECK_OK(hd__array_reserve((void **)&p, &cap, 1, sizeof *p));
  CHECK(cap >= 1 && p != NULL);
  for (size_t i = 0; i < 1000; i++) {
    CHECK_OK(hd__array_reserve((void **)&p, &cap, i + 1, sizeof *p));
    p[i] = i * 7;
  }
  CHECK(cap >= 1000);
  for (size_t i = 0; i < 1000; i++) CHECK(p[i] == i * 7);
  size_t before = cap;
  CHECK_OK(hd__array_reserve((void **)&p, &cap, 10, sizeof *p)); /* never shrinks */
  CHECK(cap == before);
  /* an impossible size fails with a detail and leaves the array as it was */
  CHECK_RC(hd__array_reserve((void **)&p, &cap, SIZE_MAX / 4, sizeof *p), HD_ENOMEM);
  CHECK(cap == before && p[999] == 999 * 7 && hd_last_error_message()[0] != '\0');
  free(p);
}

static void test_keymap_puts_replaces_and_removes(void) {
  hd__keymap_t m;
  hd__keymap_init(&m);
  enum { N = 500 };
  static uint8_t keys[N][32];
  static int vals[N];
  int err = 0;
  for (int i = 0; i < N; i++) {
    memset(keys[i], 0, 32);
    keys[i][0] = (uint8_t)i;
    keys[i][1] = (uint8_t)(i >> 8);
    CHECK(hd__keymap_put(&m, keys[i], &vals[i], &err) == NULL && err == 0);
  }
  CHECK(m.count == N);
  for (int i = 0; i < N; i++) CHECK(hd__keymap_get(&m, keys[i]) == &vals[i]);
  int other = 0;
  CHECK(hd__keymap_put(&m, keys[7], &other, &err) == &vals[7]); /* replaced: the old value */
  hd__keymap_remove(&m, keys[7], &vals[7]); /* not what it maps to any more: stays */
  CHECK(hd__keymap_get(&m, keys[7]) == &other);
  for (int i = 0; i < N; i += 2) hd__keymap_remove(&m, keys[i], i == 7 ? (void *)&other : &vals[i]);
  for (int i = 0; i < N; i++) {
    void *want = i % 2 == 0 ? NULL : i == 7 ? (void *)&other : &vals[i];
    CHECK(hd__keymap_get(&m, keys[i]) == want);
  }
  hd__keymap_free(&m);
}

static void test_error_detail_can_quote_itself_and_be_restored(void) {
  hd__error(HD_EIO, "disk said %s", "no");
  /* prefixing the current detail with itself as an argument is allowed */
  CHECK(hd__error(HD_ESTORE, "while closing: %s", hd_last_error_message()) == HD_ESTORE);
  CHECK(strcmp(hd_last_error_message(), "while closing: disk said no") == 0);
  hd__error_state_t e;
  hd__error_save(&e);
  hd__error(HD_EINVAL, "something else");
  CHECK(hd_last_error_code() == HD_EINVAL);
  CHECK(hd__error_restore(&e) == HD_ESTORE);
  CHECK(hd_last_error_code() == HD_ESTORE);
  CHECK(strcmp(hd_last_error_message(), "while closing: disk said no") == 0);
}

#define TESTS(X)                                                                                  \
  X(test_queue_keeps_order_and_removes_in_place)                                                  \
  X(test_queue_move_appends_everything)                                                           \
  X(test_array_reserve_grows_and_keeps)                                                           \
  X(test_keymap_puts_replaces_and_removes)                                                        \
  X(test_error_detail_can_quote_itself_and_be_restored)
HD_TEST_MAIN(TESTS)
