/* Bad input and misbehaving peers: an invalid user key, empty and oversized payloads, a folder in
 * use (same process and another process), a client process that vanishes (SIGKILL) in the middle
 * of a batch, a data folder that cannot be created, completion misuse. Each gets a clear error and
 * nothing is lost. Child processes are this binary run again (argv[1] = "bad_role"). */
#include "harness.h"
#include "delivery_util.h"

/* ================================ child roles ================================ */

/* "vanish": a client whose handler logs "handled SEQ", completes ok, and SIGKILLs its own process
 * when it gets HD_BAD_KILL_AT, without completing that one: at once, inside the handler
 * (HD_BAD_KILL_LATER unset), or 300 ms later from another thread while the handler holds it.
 * "busy": tries to open a server on HD_BAD_DIR; exits 0 only on HD_EBUSY with a message saying
 * the folder is in use. */
static int role_log_fd = -1;
static uint64_t role_kill_at;

static void *kill_later(void *arg) {
  (void)arg;
  hdt_sleep_ms(300);
  raise(SIGKILL);
  return NULL;
}

static void vanish_event(void *ud, hd_event_t *ev) {
  (void)ud;
  uint64_t seq = hd_event_seq(ev);
  if (seq == role_kill_at) {
    if (getenv("HD_BAD_KILL_LATER") == NULL) raise(SIGKILL);
    pthread_t t;
    pthread_create(&t, NULL, kill_later, NULL);
    return; /* held: never completed */
  }
  char line[64];
  int n = snprintf(line, sizeof line, "handled %" PRIu64 "\n", seq);
  ssize_t w = write(role_log_fd, line, (size_t)n);
  (void)w;
  char data[64];
  size_t dl = du_ack(data, sizeof data, 1, seq);
  hd_event_complete(ev, 1, data, dl);
}

static void role_vanish(void) {
  hd_keypair_t kp;
  uint8_t sc[32], pk[32], server_pk[32];
  CHECK_OK(hd_hex_decode(sc, 32, getenv("HD_BAD_USC")));
  CHECK_OK(hd_hex_decode(pk, 32, getenv("HD_BAD_UPK")));
  CHECK_OK(hd_hex_decode(server_pk, 32, getenv("HD_BAD_SPK")));
  CHECK_OK(hd_keypair_from_scalar(&kp, sc, pk));
  role_kill_at = (uint64_t)atol(getenv("HD_BAD_KILL_AT"));
  role_log_fd = open(getenv("HD_BAD_LOG"), O_WRONLY | O_APPEND | O_CREAT, 0600);
  CHECK(role_log_fd >= 0);
  hd_client_options_t o = HD_CLIENT_OPTIONS_INIT;
  o.keypair = &kp;
  o.server_public_key = server_pk;
  o.topic = DU_TOPIC;
  o.connect = getenv("HD_BAD_CONNECT");
  o.data_dir = getenv("HD_BAD_DIR");
  o.on_event = vanish_event;
  hd_client_t *c;
  CHECK_OK(hd_client_create(&c, &o));
  hdt_sleep_ms(20000); /* the handler kills us long before */
  hd_client_close_wait(c);
  exit(3);
}

static void role_busy(void) {
  hd_keypair_t kp;
  hd_keypair_generate(&kp);
  hd_server_options_t o = HD_SERVER_OPTIONS_INIT;
  o.keypair = &kp;
  o.topic = DU_TOPIC;
  o.listen = "127.0.0.1:0";
  o.data_dir = getenv("HD_BAD_DIR");
  hd_server_t *s = NULL;
  int rc = hd_server_create(&s, &o);
  if (rc == 0) {
    hd_server_close_wait(s);
    exit(1);
  }
  printf("  (another process: %s: %s)\n", hd_err_name(rc), hd_last_error_message());
  exit(rc == HD_EBUSY && strstr(hd_last_error_message(), "in use") ? 0 : 2);
}

static void bad_role(void) {
  const char *role = getenv("HD_BAD_ROLE");
  if (role == NULL) return;
  if (strcmp(role, "vanish") == 0) role_vanish();
  else role_busy();
}

static pid_t spawn(char *const env[]) {
  return hdt_spawn_self("test_bad_input", "bad_role", env, HDT_CHILD_NATIVE);
}

/* ================================ tests ================================ */

/* Every test but data_dir_cannot_be_created runs on a world of one server and one user's client,
 * c: the client, w->s: the server. */
static atomic_int stray_callbacks;
static void count_cb(void *cb_data, int status, uint64_t seq) {
  (void)cb_data;
  (void)status;
  (void)seq;
  atomic_fetch_add(&stray_callbacks, 1);
}

/* Keys that are not usable Ed25519 points: all zeros (a small-order point), all 0xff (not
 * canonical, not on the curve), the identity (small order), y = 2 (no x). */
static void invalid_key_body(du_world_t *w) {
  CHECK_OK(du_world_init(w, "bad", 1, 8, DU_START_SERVER));
  du_client_t *c = &w->c[0];
  uint8_t keys[4][32];
  memset(keys[0], 0, 32);
  memset(keys[1], 0xff, 32);
  memset(keys[2], 0, 32);
  keys[2][0] = 1;
  memset(keys[3], 0, 32);
  keys[3][0] = 2;
  atomic_store(&stray_callbacks, 0);
  for (int i = 0; i < 4; i++) {
    CHECK_RC(hd_publickey_check(keys[i]), HD_EKEY);
    CHECK_RC(hd_server_add_event(w->s.h, keys[i], "x", 1, count_cb, NULL), HD_EKEY);
    CHECK(hd_last_error_message()[0] != '\0');
    uint64_t seq = 99;
    CHECK_RC(hd_server_add_event_wait(w->s.h, keys[i], "x", 1, &seq), HD_EKEY);
    CHECK(hd_last_error_message()[0] != '\0');
  }
  printf("  (invalid key: %s)\n", hd_last_error_message());
  hdt_sleep_ms(50);
  CHECK(atomic_load(&stray_callbacks) == 0); /* a refused call never calls back */
  hd_server_stats_t st;
  CHECK_OK(du_server_stats(&w->s, &st));
  CHECK(st.events_added == 0 && st.pending_total == 0);
  /* the server goes on: a valid user gets seq 1 */
  CHECK_OK(du_add_events(w->s.h, c->kp.public_key, 1, 1, 1, 0));
}

DU_WORLD_TEST(invalid_user_key, invalid_key_body)

/* Empty, NULL and oversized payloads: HD_EINVAL; the largest allowed one (max_message_bytes less
 * 64, default 1 MiB) is accepted and reaches the client intact. */
static void payload_body(du_world_t *w) {
  CHECK_OK(du_world_init(w, "bad", 1, 8, DU_START_SERVER));
  du_client_t *c = &w->c[0];
  const uint8_t *user = c->kp.public_key;
  const size_t max_payload = 1048576 - 64;
  uint8_t *big = malloc(max_payload + 1);
  CHECK(big != NULL);
  size_t len = du_payload(big, max_payload + 1, 1, 1, max_payload + 1 - strlen("user1#1"));
  CHECK(len == max_payload + 1);
  atomic_store(&stray_callbacks, 0);
  uint64_t seq = 0;
  int rc1 = hd_server_add_event(w->s.h, user, big, 0, count_cb, NULL);
  int rc2 = hd_server_add_event_wait(w->s.h, user, big, 0, &seq);
  int rc3 = hd_server_add_event(w->s.h, user, NULL, 5, count_cb, NULL);
  int rc4 = hd_server_add_event(w->s.h, user, big, max_payload + 1, count_cb, NULL);
  char detail[256];
  snprintf(detail, sizeof detail, "%s", hd_last_error_message());
  int rc5 = hd_server_add_event_wait(w->s.h, user, big, max_payload + 1, &seq);
  int rc6 = hd_server_add_event_wait(w->s.h, user, big, 64u << 20, &seq);
  int rc7 = hd_server_add_event_wait(w->s.h, user, big, max_payload, &seq);
  free(big);
  CHECK_RC(rc1, HD_EINVAL);
  CHECK_RC(rc2, HD_EINVAL);
  CHECK_RC(rc3, HD_EINVAL);
  CHECK_RC(rc4, HD_EINVAL);
  CHECK_RC(rc5, HD_EINVAL);
  CHECK_RC(rc6, HD_EINVAL);
  CHECK(detail[0] != '\0');
  printf("  (oversized payload: %s)\n", detail);
  CHECK_OK(rc7);
  CHECK(seq == 1); /* refused adds took no number */
  hdt_sleep_ms(50);
  CHECK(atomic_load(&stray_callbacks) == 0);
  /* the largest payload travels (in many records) and arrives intact */
  CHECK_OK(du_client_start(c));
  DCHECK(WAIT_FOR(du_client_oks(c, 1) == 1, 20000));
  DCHECK(WAIT_FOR(du_server_pending_total(&w->s) == 0 && du_client_store_empty(c), 10000));
  CHECK(du_client_clean(c) && du_server_clean(&w->s));
}

DU_WORLD_TEST(empty_and_oversized_payloads, payload_body)

/* A second server and a second client on folders in use: HD_EBUSY with a message; the first
 * ones go on working. Another process gets the same. */
static void busy_body(du_world_t *w) {
  CHECK_OK(du_world_init(w, "bad", 1, 8, DU_START_SERVER));
  du_client_t *c = &w->c[0];
  CHECK_OK(du_client_start(c));
  DCHECK(WAIT_FOR(du_client_is_connected(c), 5000));

  hd_server_options_t so;
  char listen[64];
  du_server_fill_options(&w->s, &so, listen, sizeof listen);
  so.listen = "127.0.0.1:0";
  hd_server_t *s2 = NULL;
  int rc = hd_server_create(&s2, &so);
  if (rc == 0) hd_server_close_wait(s2);
  CHECK_RC(rc, HD_EBUSY);
  printf("  (second server: %s)\n", hd_last_error_message());
  CHECK(strstr(hd_last_error_message(), w->s.dir) != NULL); /* names the folder */
  CHECK(strstr(hd_last_error_message(), "in use") || strstr(hd_last_error_message(), "already open"));

  hd_client_options_t co;
  du_client_fill_options(c, &co);
  hd_client_t *c2 = NULL;
  rc = hd_client_create(&c2, &co);
  if (rc == 0) hd_client_close_wait(c2);
  CHECK_RC(rc, HD_EBUSY);
  printf("  (second client: %s)\n", hd_last_error_message());
  CHECK(strstr(hd_last_error_message(), c->dir) != NULL);
  CHECK(strstr(hd_last_error_message(), "in use") || strstr(hd_last_error_message(), "already open"));

  /* another process */
  char *env[] = {"HD_BAD_ROLE", "busy", "HD_BAD_DIR", w->s.dir, NULL};
  pid_t pid = spawn(env);
  CHECK(pid > 0);
  int st = hdt_wait_child(pid, 10000);
  CHECK(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);

  /* the first ones go on */
  CHECK_OK(du_add_events(w->s.h, c->kp.public_key, 1, 1, 3, 0));
  DCHECK(WAIT_FOR(du_client_total_ok(c) == 3, 5000));
  DCHECK(WAIT_FOR(du_server_pending_total(&w->s) == 0 && du_client_store_empty(c), 5000));
  CHECK(du_client_all_ok_once(c, 1, 3));
  CHECK(du_client_clean(c) && du_server_clean(&w->s));
}

DU_WORLD_TEST(folder_in_use, busy_body)

/* A client process SIGKILLs itself in its handler at event 5 of a batch of 20: the server keeps
 * what was not confirmed; the user's next connection gets it; nothing is lost.
 * `same_store`: the next connection uses the dead process's folder (its store survived: events
 * whose consumption reached the server are not handled again); otherwise a fresh folder (a new
 * device: it gets everything the server still holds). */
static void vanish_body(du_world_t *w, int same_store, int later) {
  const int n = 20;
  CHECK_OK(du_world_init(w, "bad", 1, 64, DU_START_SERVER));
  du_client_t *c = &w->c[0];
  char logpath[512]; /* in the server's folder: removed with it */
  snprintf(logpath, sizeof logpath, "%s/vanish.log", w->s.dir);
  CHECK_OK(du_add_events(w->s.h, c->kp.public_key, 1, 1, n, 0));

  char usc[65], upk[65], spk[65];
  hd_hex_encode(usc, sizeof usc, c->kp.scalar, 32);
  hd_hex_encode(upk, sizeof upk, c->kp.public_key, 32);
  hd_hex_encode(spk, sizeof spk, w->s.kp.public_key, 32);
  char *env[] = {"HD_BAD_ROLE", "vanish", "HD_BAD_USC", usc, "HD_BAD_UPK", upk,
                 "HD_BAD_SPK", spk, "HD_BAD_CONNECT", c->addr, "HD_BAD_DIR", c->dir,
                 "HD_BAD_LOG", logpath, "HD_BAD_KILL_AT", "5", NULL, NULL, NULL};
  if (later) {
    env[16] = "HD_BAD_KILL_LATER";
    env[17] = "1";
  }
  pid_t pid = spawn(env);
  CHECK(pid > 0);
  int st = hdt_wait_child(pid, 20000);
  CHECK(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  int handled_by_child[64] = {0};
  FILE *f = fopen(logpath, "r");
  CHECK(f != NULL);
  char line[128];
  int child_handled = 0;
  while (fgets(line, sizeof line, f)) {
    unsigned long long s;
    if (sscanf(line, "handled %llu", &s) == 1 && s < 64) {
      handled_by_child[s]++;
      child_handled++;
    }
  }
  fclose(f);
  unlink(logpath);
  CHECK(child_handled == 4); /* 1..4, then it died in the handler of 5 */
  /* the server noticed, and keeps everything not confirmed */
  DCHECK(WAIT_FOR(atomic_load(&w->s.peers_disconnected) >= 1, 5000));
  hdt_sleep_ms(100);
  uint64_t pending = du_server_pending(&w->s, c->kp.public_key);
  long reported_before = du_server_total_calls(&w->s);
  int reported_early[5] = {0};
  for (uint64_t q = 1; q <= 4; q++) reported_early[q] = du_server_calls(&w->s, 0, q);
  printf("  child died at 5/%d: %ld reports had reached the server, %" PRIu64 " events pending\n",
         n, reported_before, pending);
  CHECK(pending >= (uint64_t)(n - 4) && pending <= (uint64_t)n);
  for (uint64_t q = 5; q <= (uint64_t)n; q++) CHECK(du_server_calls(&w->s, 0, q) == 0);
  if (later) {
    /* the handler held 5 for 300 ms: 1..4 were consumed durably, reported and confirmed */
    CHECK(reported_before == 4);
    CHECK(pending == (uint64_t)(n - 4));
  }

  if (!same_store) {
    hdt_rmrf(c->dir);
    free(c->dir);
    c->dir = hdt_mkdtemp("bad-client2");
    CHECK(c->dir != NULL);
  }
  CHECK_OK(du_client_start(c));
  /* nothing lost: every event handled, by the child or by the next connection */
  DCHECK(WAIT_FOR(du_server_pending_total(&w->s) == 0, 10000));
  DCHECK(WAIT_FOR(du_client_store_empty(c), 10000));
  hdt_sleep_ms(100);
  for (uint64_t q = 1; q <= (uint64_t)n; q++) {
    int total = handled_by_child[q] + du_client_oks(c, q);
    if (total < 1) fprintf(stderr, "  seq %" PRIu64 " was never handled\n", q);
    CHECK(total >= 1);
    CHECK(du_client_oks(c, q) <= 1);
    CHECK(du_server_calls(&w->s, 0, q) == 1); /* each confirmed once: no callback repeated */
  }
  for (uint64_t q = 5; q <= (uint64_t)n; q++) CHECK(du_client_oks(c, q) == 1);
  if (same_store) {
    /* an event whose report reached the server before the kill is not handled again */
    int rehandled = 0;
    for (uint64_t q = 1; q <= 4; q++) {
      rehandled += du_client_oks(c, q);
      if (reported_early[q]) CHECK(du_client_calls(c, q) == 0);
    }
    printf("  same store: %d of events 1-4 handled again (their consumption was not durable yet)\n",
           rehandled);
  }
  CHECK(du_client_clean(c) && du_server_clean(&w->s));
}

DU_WORLD_TEST(peer_vanishes_mid_batch, vanish_body, 1, 0)

DU_WORLD_TEST(peer_vanishes_holding_event, vanish_body, 1, 1)

DU_WORLD_TEST(peer_vanishes_then_new_device, vanish_body, 0, 0)

/* A data folder that cannot be created (a path under a regular file): a clear error, no
 * callback, and the address is free again. */
static atomic_int destroyed;
static void on_destroy(void *ud) {
  (void)ud;
  atomic_fetch_add(&destroyed, 1);
}

static void bad_dir_body(char **root) {
  *root = hdt_mkdtemp("bad-dir");
  CHECK(*root != NULL);
  char *file = hdt_path(*root, "file");
  int fd = open(file, O_WRONLY | O_CREAT, 0600);
  char *sub = hdt_path(file, "sub");
  free(file);
  CHECK(fd >= 0);
  close(fd);
  hd_keypair_t kp;
  hd_keypair_generate(&kp);
  atomic_store(&destroyed, 0);

  hd_server_options_t so = HD_SERVER_OPTIONS_INIT;
  so.keypair = &kp;
  so.topic = DU_TOPIC;
  so.listen = "127.0.0.1:0";
  so.data_dir = sub;
  so.destroy = on_destroy;
  so.user_data = &kp;
  hd_server_t *s = NULL;
  int rc = hd_server_create(&s, &so);
  char detail[512];
  snprintf(detail, sizeof detail, "%s", hd_last_error_message());
  if (rc == 0) hd_server_close_wait(s);
  printf("  (server: %s: %s)\n", hd_err_name(rc), detail);
  CHECK(rc < 0);
  CHECK(strstr(detail, sub) != NULL); /* names the folder */

  hd_client_options_t co = HD_CLIENT_OPTIONS_INIT;
  co.keypair = &kp;
  co.server_public_key = kp.public_key;
  co.topic = DU_TOPIC;
  co.connect = "127.0.0.1:9"; /* never dialed: the create fails first */
  co.no_reconnect = 1;
  co.data_dir = sub;
  co.on_event = du_on_event;
  co.destroy = on_destroy;
  co.user_data = &kp;
  hd_client_t *c = NULL;
  rc = hd_client_create(&c, &co);
  snprintf(detail, sizeof detail, "%s", hd_last_error_message());
  if (rc == 0) hd_client_close_wait(c);
  printf("  (client: %s: %s)\n", hd_err_name(rc), detail);
  CHECK(rc < 0);
  CHECK(strstr(detail, sub) != NULL);
  hdt_sleep_ms(20);
  CHECK(atomic_load(&destroyed) == 0); /* no callback fires for a failed create */

  /* a client without a handler */
  char *ok_dir = hdt_path(*root, "client");
  co.data_dir = ok_dir;
  co.on_event = NULL;
  rc = hd_client_create(&c, &co);
  free(ok_dir);
  if (rc == 0) hd_client_close_wait(c);
  free(sub);
  CHECK_RC(rc, HD_EINVAL);
}

static void data_dir_cannot_be_created(void) {
  char *root = NULL;
  bad_dir_body(&root);
  hdt_rmrf(root);
  free(root);
}

/* A consumed batch of several events: a second completion of an event is HD_EALREADY, an index
 * past the end HD_EINVAL, complete_all finishes the rest. */
static void misuse_body(du_world_t *w) {
  CHECK_OK(du_world_init(w, "bad", 1, 8, 0));
  du_client_t *c = &w->c[0];
  w->s.mode = DU_SRV_HOLD;
  CHECK_OK(du_world_start_server(w));
  c->mode = DU_HOLD;
  CHECK_OK(du_client_start(c));
  CHECK_OK(du_add_events(w->s.h, c->kp.public_key, 1, 1, 3, 0));
  hd_client_stats_t cs;
  DCHECK(WAIT_FOR(du_client_nheld(c) == 1, 5000));
  DCHECK(WAIT_FOR(du_client_stats(c, &cs) == 0 && cs.events_received == 3, 5000));
  /* consume the three while the server is away, so that they are reported together */
  CHECK_OK(du_server_stop(&w->s));
  c->mode = DU_OK;
  du_client_release(c, 1);
  DCHECK(WAIT_FOR(du_client_stats(c, &cs) == 0 && cs.consumed == 3, 5000));
  CHECK_OK(du_server_start(&w->s));
  DCHECK(WAIT_FOR(du_server_total_calls(&w->s) == 3, 5000));
  int u = -1;
  hd_consumed_t *b = du_server_take(&w->s, &u);
  CHECK(b != NULL);
  size_t n = hd_consumed_count(b);
  hd_event_info_t info;
  int past_end = hd_consumed_event(b, n, &info);
  int again = 0;
  if (n >= 2) {
    du_server_record_ok(&w->s, u, b, 0);
    CHECK_OK(hd_consumed_complete(b, 0, 1));
    again = hd_consumed_complete(b, 0, 1);
    for (size_t i = 1; i < n; i++) du_server_record_ok(&w->s, u, b, i);
    CHECK_OK(hd_consumed_complete_all(b, 1));
  } else {
    printf("  (the report came in batches of one: EALREADY not exercised)\n");
    hd_consumed_complete_all(b, 1);
  }
  CHECK_RC(past_end, HD_EINVAL);
  if (n >= 2) CHECK_RC(again, HD_EALREADY);
  w->s.mode = DU_SRV_OK;
  du_server_release(&w->s, 1);
  DCHECK(WAIT_FOR(du_server_pending_total(&w->s) == 0 && du_client_store_empty(c), 5000));
  CHECK(du_client_all_ok_once(c, 1, 3));
  CHECK(du_client_clean(c) && du_server_clean(&w->s));
}

DU_WORLD_TEST(completion_misuse, misuse_body)

#define TESTS(X)                                                                                  \
  X(bad_role)                                                                                     \
  X(invalid_user_key)                                                                             \
  X(empty_and_oversized_payloads)                                                                 \
  X(folder_in_use)                                                                                \
  X(peer_vanishes_mid_batch)                                                                      \
  X(peer_vanishes_holding_event)                                                                  \
  X(peer_vanishes_then_new_device)                                                                \
  X(data_dir_cannot_be_created)                                                                   \
  X(completion_misuse)

HD_TEST_MAIN(TESTS)
