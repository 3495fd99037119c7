/* What the store component tests (test_store, test_store_client) share: a fresh folder under /tmp
 * with a libuv loop of the test's own and store options pointing into the folder, and bounded
 * runs of that loop. Compiled once (store_util.c) into the test helper library. */
#ifndef HD_STORE_UTIL_H
#define HD_STORE_UTIL_H

#include "store.h"

#include "testutil.h"

#include <uv.h>

typedef struct store_fx {
  char dir[64];               /* /tmp/hd-<tag>-XXXXXX, removed by store_fx_done */
  char folder[128];           /* <dir>/<sub>: the store's folder (not created) */
  uv_loop_t loop;
  hd__store_options_t opts;   /* folder and loop set */
} store_fx_t;

/* Zeroes `f`, makes the folder and the loop. 0 or -1. */
int store_fx_init(store_fx_t *f, const char *tag, const char *sub);
/* Runs what is left on the loop, closes it, removes the folder. 0, or -1 if the loop still held
 * something (a store left a handle behind). */
int store_fx_done(store_fx_t *f);

/* Runs `loop` until *counter >= want or `ms` passed; 0 if it got there. */
int store_run_until(uv_loop_t *loop, const int *counter, int want, uint64_t ms);
/* A done callback that sets the int it is given to 1. */
void store_set_flag(void *data);

/* Writes `len` bytes of `data` as <folder>/<name> (replacing it). 0 or -1. */
int store_write_file(const char *folder, const char *name, const void *data, size_t len);
/* Copies <from>/<name> to <to>/<name> (creating `to`, mode 0700). 0, or -1 (also when the file
 * is missing). */
int store_copy_file(const char *from, const char *to, const char *name);
/* 1 if <folder>/<name> exists. */
int store_file_exists(const char *folder, const char *name);

#endif
