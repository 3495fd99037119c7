/* store_util.h: the folder-and-loop fixture of the store tests. */
#include "store_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int store_fx_init(store_fx_t *f, const char *tag, const char *sub) {
  memset(f, 0, sizeof *f);
  snprintf(f->dir, sizeof f->dir, "/tmp/hd-%s-XXXXXX", tag);
  if (mkdtemp(f->dir) == NULL) return -1;
  snprintf(f->folder, sizeof f->folder, "%s/%s", f->dir, sub);
  if (uv_loop_init(&f->loop) != 0) return -1;
  f->opts.folder = f->folder;
  f->opts.loop = &f->loop;
  return 0;
}

int store_fx_done(store_fx_t *f) {
  int rc = 0;
  uv_run(&f->loop, UV_RUN_NOWAIT);
  if (uv_loop_close(&f->loop) != 0) rc = -1;
  hdt_rmrf(f->dir);
  return rc;
}

static void on_timer(uv_timer_t *t) { *(int *)t->data = 1; }

int store_run_until(uv_loop_t *loop, const int *counter, int want, uint64_t ms) {
  uv_timer_t timer;
  int expired = 0;
  uv_timer_init(loop, &timer);
  timer.data = &expired;
  uv_timer_start(&timer, on_timer, ms, 0);
  while (*counter < want && !expired) uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&timer, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return *counter >= want ? 0 : -1;
}

void store_set_flag(void *data) { *(int *)data = 1; }
