/* hd_init: idempotent and thread-safe (libsodium's sodium_init under a once-flag). */
#include "common.h"

#include <sodium.h>
#include <uv.h>

static uv_once_t init_once = UV_ONCE_INIT;
static int init_result;

static void init_once_fn(void) { init_result = sodium_init() < 0 ? HD_EINIT : 0; }

int hd_init(void) {
  uv_once(&init_once, init_once_fn);
  if (init_result != 0) return hd__error(HD_EINIT, "libsodium failed to initialise");
  return 0;
}
