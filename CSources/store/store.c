/* Backend selection and the blocking close helpers shared by every backend (store.h). */
#include "store.h"
#include "store_writer.h"

static int check_options(const hd__store_options_t *opts) {
  if (opts == NULL || opts->folder == NULL || opts->folder[0] == '\0' || opts->loop == NULL) {
    return hd__error(HD_EINVAL, "store options need a folder and a loop");
  }
  if (opts->backend != HD__STORE_SQLITE) {
    return hd__error(HD_EINVAL, "unknown store backend %d", (int)opts->backend);
  }
  return 0;
}

int hd__server_store_open(hd__server_store_t **out, const hd__store_options_t *opts) {
  if (out == NULL) return hd__error(HD_EINVAL, "no output pointer");
  *out = NULL;
  int err = check_options(opts);
  return err != 0 ? err : hd__sqlite_server_store_open(out, opts);
}

int hd__client_store_open(hd__client_store_t **out, const hd__store_options_t *opts) {
  if (out == NULL) return hd__error(HD_EINVAL, "no output pointer");
  *out = NULL;
  int err = check_options(opts);
  return err != 0 ? err : hd__sqlite_client_store_open(out, opts);
}

int hd__server_store_backup_folder(const char *folder, const char *path) {
  return hd__sqlite_server_store_backup_folder(folder, path);
}

static void set_flag(void *data) { *(int *)data = 1; }

/* The one body of both close_waits (their stores differ in type only): close with a callback
 * that sets a flag, then run the loop until it is set. The loop is read first: the close frees
 * the store. */
#define CLOSE_WAIT(s)                                                                          \
  do {                                                                                         \
    int done = 0;                                                                              \
    uv_loop_t *loop = (s)->loop;                                                               \
    if ((s)->vt->close((s), set_flag, &done) == 0) hd__store_run_until(loop, &done);           \
  } while (0)

void hd__server_store_close_wait(hd__server_store_t *s) { CLOSE_WAIT(s); }

void hd__client_store_close_wait(hd__client_store_t *s) { CLOSE_WAIT(s); }
