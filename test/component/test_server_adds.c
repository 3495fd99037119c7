/* The server's add calls at their one completion (server_add.c): the add-to-durable histogram
 * (hd__server_events_t.add_durable, read on the loop thread) gets one observation per add call
 * that succeeded, whatever its kind (add_event, add_event_v2, fan-out, add_events) and however
 * many adds it carried; none for an add refused at its limit or a call refused at once; each
 * observation is the time from the call to the commit. Server on 127.0.0.1 port 0, folder under
 * /tmp, every wait bounded. */
#include "harness.h"
#include "server.h"
#include "server_events.h"
#include "testutil.h"

typedef struct fx {
  hd_keypair_t skp, u1, u2;
  char *dir;
  hd_server_t *s;
} fx_t;

static int fx_init(fx_t *f) {
  memset(f, 0, sizeof *f);
  hd_keypair_generate(&f->skp);
  hd_keypair_generate(&f->u1);
  hd_keypair_generate(&f->u2);
  f->dir = hdt_mkdtemp("server-adds");
  if (f->dir == NULL) return -1;
  hd_server_options_t o;
  hd_server_options_init(&o, HD_SERVER_OPTIONS_VERSION);
  o.keypair = &f->skp;
  o.topic = "server-adds-test";
  o.listen = "127.0.0.1:0";
  o.data_dir = f->dir;
  o.max_pending_per_user = 3;
  return hd_server_create(&f->s, &o);
}

static void fx_done(fx_t *f) {
  if (f->s != NULL) hd_server_close_wait(f->s);
  if (f->dir != NULL) hdt_rmrf(f->dir);
  free(f->dir);
}

typedef struct hist_read {
  hd_server_t *s;
  hd__histogram_t h;
} hist_read_t;

static int read_on_loop(void *arg) {
  hist_read_t *r = arg;
  r->h = hd__server_events_of(r->s)->add_durable;
  return 0;
}

static hd__histogram_t hist(fx_t *f) {
  hist_read_t r = {.s = f->s};
  if (hd__runtime_call(hd__server_runtime(f->s), read_on_loop, &r) != 0) r.h.count = UINT64_MAX;
  return r.h;
}

static void one_per_call(void) {
  fx_t f;
  CHECK_OK(fx_init(&f));
  CHECK(hist(&f).count == 0);
  uint64_t t0 = uv_hrtime();
  CHECK_OK(hd_server_add_event_wait(f.s, f.u1.public_key, "a", 1, NULL));
  uint64_t waited = uv_hrtime() - t0;
  hd__histogram_t h = hist(&f);
  CHECK(h.count == 1 && h.sum_ns > 0 && h.sum_ns <= waited);
  CHECK_OK(hd_server_add_event_v2_wait(f.s, f.u1.public_key, "b", 1, NULL, NULL));
  CHECK(hist(&f).count == 2);
  uint8_t users[64];
  memcpy(users, f.u1.public_key, 32);
  memcpy(users + 32, f.u2.public_key, 32);
  CHECK_OK(hd_server_add_fanout_wait(f.s, users, 2, "c", 1, NULL, NULL));
  CHECK(hist(&f).count == 3); /* two adds, one call */
  hd_add_item_t items[3] = {{f.u2.public_key, "d", 1, NULL}, {f.u2.public_key, "e", 1, NULL},
                            {f.u1.public_key, "f", 1, NULL}}; /* u1's fourth: refused alone */
  hd_fanout_result_t res[3];
  CHECK_OK(hd_server_add_events_wait(f.s, items, 3, res));
  CHECK(res[2].status == HD_ELIMIT);
  CHECK(hist(&f).count == 4);
  /* refused: at the limit (a single add fails whole), or at once */
  CHECK_RC(hd_server_add_event_wait(f.s, f.u1.public_key, "g", 1, NULL), HD_ELIMIT);
  CHECK_RC(hd_server_add_event_v2_wait(f.s, f.u1.public_key, "g", 1, NULL, NULL), HD_ELIMIT);
  CHECK_RC(hd_server_add_events_wait(f.s, items, 0, NULL), HD_EINVAL);
  h = hist(&f);
  CHECK(h.count == 4);
  uint64_t in_buckets = 0;
  for (int i = 0; i <= HD__HISTOGRAM_BUCKETS; i++) in_buckets += h.counts[i];
  CHECK(in_buckets == 4);
  fx_done(&f);
}

#define TESTS(X) X(one_per_call)
HD_TEST_MAIN(TESTS)
