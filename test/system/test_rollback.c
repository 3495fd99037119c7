/* A server store that lost its last commits, through the public API (docs/RELIABILITY.md,
 * "Restores and rollbacks"; docs/PROTOCOL.md, "Epochs"): restored from a backup, or the files a
 * power loss leaves under synchronous=NORMAL. The client had seen numbers the store then gives
 * again to new events.
 *
 * The scenario of every test: events old#1..old#90 are added while the client is away; the
 * store's image is taken there (a backup, or a copy of its files as a power loss would leave
 * them); old#91..old#100 are added and the client handles all 100; the server closes; the image
 * is put back; new#91..new#105 are added (they get seqs 91..105 again); the client connects.
 * Required: every new event is handled, once, unmarked; an old event is handled a second time
 * only marked as possibly repeated; a consumption the client reports is never taken for another
 * event; both sides log and count the rollback.
 *
 * The recorders are the test's own (delivery_util's take a seq for an event's identity, which a
 * rollback breaks): events are told apart by their payload, "old#N" or "new#N" (N its seq). */
#include "harness.h"
#include "delivery_util.h"

#define N_OLD 100
#define IMAGE_AT 90  /* the backup or the power loss keeps 1..90 */
#define N_NEW 15     /* new#91..new#105 */
#define MAXN 128
#define WAIT_MS 10000

enum { OLD = 0, NEW = 1 };

typedef struct srv {
  char name[32]; /* first: the log callback prints it */
  hd_keypair_t kp;
  char *dir;
  int port, sync_normal;
  hd_server_t *h;
  pthread_mutex_t mu;
  int hold;                   /* keep the batches (completed with failure at the end) */
  hd_consumed_t *held[256];
  int nheld;
  int reports[2][MAXN];       /* on_consumed calls per event */
  int premature;              /* a report of an event the client has not handled */
  int bad;                    /* data not "ack <payload>", or an unreadable event */
  struct cli *client;
} srv_t;

typedef struct cli {
  char name[32];
  hd_keypair_t kp;
  char *dir;
  hd_client_t *h;
  pthread_mutex_t mu;
  uint64_t hold_from;         /* events with seq >= this are kept, not completed (0: none) */
  hd_event_t *held[64];
  int nheld;
  int ok[2][MAXN];            /* completed ok, per event */
  int marked[2][MAXN];        /* of those, handed out marked possibly repeated */
  int unmarked_repeats;       /* an event completed ok again without the mark */
  int bad;                    /* unreadable payload, or seq and payload disagree */
} cli_t;

typedef struct world {
  srv_t s;
  cli_t c;
  char *tmp;                  /* the image and the backup */
  int logged[2];              /* "rolled back" lines of the server and the client before */
} world_t;

/* Lines logged by the handle `who` that say it saw a rollback. */
static int rollback_lines(const char *who) { return du_log_count(who, "rolled back"); }

/* "old#12" -> OLD, 12; -1 if unreadable. */
static int parse(const uint8_t *p, size_t n, int *kind, int *num) {
  char text[32];
  if (n == 0 || n >= sizeof text) return -1;
  memcpy(text, p, n);
  text[n] = '\0';
  char k[8];
  if (sscanf(text, "%3[a-z]#%d", k, num) != 2 || *num <= 0 || *num >= MAXN) return -1;
  *kind = strcmp(k, "new") == 0 ? NEW : strcmp(k, "old") == 0 ? OLD : -1;
  return *kind < 0 ? -1 : 0;
}

/* Records `ev` (kind#num) as handled and completes it ok with "ack <payload>". */
static void handle(cli_t *c, hd_event_t *ev, int kind, int num) {
  hd_event_info_t info;
  hd_event_info(ev, &info);
  int marked = hd_event_possibly_repeated(ev);
  pthread_mutex_lock(&c->mu);
  if (c->ok[kind][num] > 0 && !marked) {
    c->unmarked_repeats++;
    du_log_line(c->name, "TEST: %s#%d handled again, not marked", kind ? "new" : "old", num);
  }
  c->ok[kind][num]++;
  c->marked[kind][num] += marked;
  pthread_mutex_unlock(&c->mu);
  char data[40];
  int n = snprintf(data, sizeof data, "ack %.*s", (int)info.payload_len, (const char *)info.payload);
  hd_event_complete(ev, 1, data, (size_t)n);
}

static void on_event(void *ud, hd_event_t *ev) {
  cli_t *c = ud;
  hd_event_info_t info;
  int kind = 0, num = 0;
  pthread_mutex_lock(&c->mu);
  if (hd_event_info(ev, &info) != 0 || parse(info.payload, info.payload_len, &kind, &num) != 0 ||
      info.seq != (uint64_t)num) {
    c->bad++;
    pthread_mutex_unlock(&c->mu);
    hd_event_complete(ev, 1, NULL, 0);
    return;
  }
  if (c->hold_from != 0 && info.seq >= c->hold_from && c->nheld < 64) {
    c->held[c->nheld++] = ev;
    pthread_mutex_unlock(&c->mu);
    return;
  }
  pthread_mutex_unlock(&c->mu);
  handle(c, ev, kind, num);
}

static int held_count(cli_t *c) {
  pthread_mutex_lock(&c->mu);
  int n = c->nheld;
  pthread_mutex_unlock(&c->mu);
  return n;
}

/* Stops holding; what the handler kept is handled now. */
static void cli_release(cli_t *c) {
  pthread_mutex_lock(&c->mu);
  c->hold_from = 0;
  int n = c->nheld;
  hd_event_t *held[64];
  memcpy(held, c->held, sizeof held);
  c->nheld = 0;
  pthread_mutex_unlock(&c->mu);
  for (int i = 0; i < n; i++) {
    hd_event_info_t info;
    int kind, num;
    if (hd_event_info(held[i], &info) == 0 && parse(info.payload, info.payload_len, &kind, &num) == 0)
      handle(c, held[i], kind, num);
  }
}

static void on_consumed(void *ud, const uint8_t user[32], hd_consumed_t *b) {
  srv_t *s = ud;
  (void)user;
  pthread_mutex_lock(&s->mu);
  for (size_t i = 0; i < hd_consumed_count(b); i++) {
    hd_event_info_t info;
    int kind, num;
    char want[40];
    if (hd_consumed_event(b, i, &info) != 0 || parse(info.payload, info.payload_len, &kind, &num)) {
      s->bad++;
      continue;
    }
    int n = snprintf(want, sizeof want, "ack %.*s", (int)info.payload_len, (const char *)info.payload);
    if (info.data_len != (size_t)n || memcmp(info.data, want, info.data_len) != 0) {
      s->bad++;
      du_log_line(s->name, "TEST: %s reported with the data '%.*s'", want + 4, (int)info.data_len,
                  (const char *)info.data);
    }
    pthread_mutex_lock(&s->client->mu);
    if (s->client->ok[kind][num] == 0) s->premature++;
    pthread_mutex_unlock(&s->client->mu);
    s->reports[kind][num]++;
  }
  if (s->hold && s->nheld < 256) {
    s->held[s->nheld++] = b;
    pthread_mutex_unlock(&s->mu);
    return;
  }
  pthread_mutex_unlock(&s->mu);
  hd_consumed_complete_all(b, 1);
}

/* ---- the two handles ---- */

static int srv_start(srv_t *s) {
  char listen[64];
  snprintf(listen, sizeof listen, "127.0.0.1:%d", s->port);
  hd_server_options_t o = HD_SERVER_OPTIONS_INIT;
  o.keypair = &s->kp;
  o.topic = DU_TOPIC;
  o.listen = listen;
  o.data_dir = s->dir;
  o.sync_normal = s->sync_normal;
  o.on_consumed = on_consumed;
  o.user_data = s;
  o.log = du_log_cb;
  o.log_level = hdt_verbose() ? HD_LOG_DEBUG : HD_LOG_INFO;
  int rc = HD_EADDRINUSE;
  for (int i = 0; i < 100 && rc == HD_EADDRINUSE; i++) {
    rc = hd_server_create(&s->h, &o);
    if (rc == HD_EADDRINUSE) hdt_sleep_ms(20);
  }
  if (rc != 0) {
    du_log_line(s->name, "TEST: hd_server_create: %s (%s)", hd_err_name(rc), hd_last_error_message());
    s->h = NULL;
    return rc;
  }
  s->port = hd_server_port(s->h);
  return 0;
}

static int srv_stop(srv_t *s) {
  if (s->h == NULL) return 0;
  int rc = hd_server_close_wait(s->h);
  s->h = NULL;
  for (int i = 0; i < s->nheld; i++) hd_consumed_complete_all(s->held[i], 0); /* only frees */
  s->nheld = 0;
  return rc;
}

static int cli_start(world_t *w) {
  cli_t *c = &w->c;
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", w->s.port);
  hd_client_options_t o = HD_CLIENT_OPTIONS_INIT;
  o.keypair = &c->kp;
  o.server_public_key = w->s.kp.public_key;
  o.topic = DU_TOPIC;
  o.connect = addr;
  o.data_dir = c->dir;
  o.on_event = on_event;
  o.user_data = c;
  o.log = du_log_cb;
  o.log_level = hdt_verbose() ? HD_LOG_DEBUG : HD_LOG_INFO;
  o.reconnect_min_ms = 50;
  o.reconnect_max_ms = 200;
  return hd_client_create(&c->h, &o);
}

/* Closes the client; what its handler kept is then completed, which only frees it. */
static int cli_stop(cli_t *c) {
  if (c->h == NULL) return 0;
  int rc = hd_client_close_wait(c->h);
  c->h = NULL;
  for (int i = 0; i < c->nheld; i++) hd_event_complete(c->held[i], 0, NULL, 0);
  c->nheld = 0;
  return rc;
}

static int world_init(world_t *w, int sync_normal) {
  memset(w, 0, sizeof *w);
  snprintf(w->s.name, sizeof w->s.name, "server");
  snprintf(w->c.name, sizeof w->c.name, "client");
  pthread_mutex_init(&w->s.mu, NULL);
  pthread_mutex_init(&w->c.mu, NULL);
  w->s.client = &w->c;
  w->s.sync_normal = sync_normal;
  w->tmp = hdt_mkdtemp("rollback");
  w->s.dir = hdt_path(w->tmp, "server");
  w->c.dir = hdt_path(w->tmp, "client");
  if (w->tmp == NULL || w->s.dir == NULL || w->c.dir == NULL) return -1;
  if (hd_keypair_generate(&w->s.kp) != 0 || hd_keypair_generate(&w->c.kp) != 0) return -1;
  w->logged[0] = rollback_lines(w->s.name); /* the capture is the whole program's */
  w->logged[1] = rollback_lines(w->c.name);
  return srv_start(&w->s);
}

static void world_free(world_t *w) {
  cli_stop(&w->c);
  srv_stop(&w->s);
  hdt_rmrf(w->tmp);
  free(w->tmp);
  free(w->s.dir);
  free(w->c.dir);
}

/* ---- steps ---- */

/* Adds kind#first..kind#last; each must get its number as its seq. */
static int add(world_t *w, int kind, int first, int last) {
  for (int n = first; n <= last; n++) {
    char p[16];
    int len = snprintf(p, sizeof p, "%s#%d", kind == NEW ? "new" : "old", n);
    uint64_t seq = 0;
    int rc = hd_server_add_event_wait(w->s.h, w->c.kp.public_key, p, (size_t)len, &seq);
    if (rc != 0 || seq != (uint64_t)n) {
      du_log_line("test", "TEST: add %s: %s, seq %llu", p, hd_err_name(rc), (unsigned long long)seq);
      return -1;
    }
  }
  return 0;
}

static int ok_count(cli_t *c, int kind, int n) {
  pthread_mutex_lock(&c->mu);
  int v = c->ok[kind][n];
  pthread_mutex_unlock(&c->mu);
  return v;
}

/* 1 once kind#first..kind#last were each completed ok at least `times` times. */
static int handled(cli_t *c, int kind, int first, int last, int times) {
  for (int n = first; n <= last; n++) {
    if (ok_count(c, kind, n) < times) return 0;
  }
  return 1;
}

static uint64_t pending(srv_t *s) {
  uint64_t n = UINT64_MAX;
  hd_server_stats_t st;
  if (s->h != NULL && hdt_server_stats(s->h, &st) == 0) n = st.pending_total;
  return n;
}

static int client_store_empty(cli_t *c) {
  hd_client_stats_t st;
  return c->h != NULL && hdt_client_stats(c->h, &st) == 0 && st.unhandled == 0 && st.consumed == 0;
}

static uint64_t high_water(cli_t *c) {
  hd_client_stats_t st;
  return c->h != NULL && hdt_client_stats(c->h, &st) == 0 ? st.high_water : UINT64_MAX;
}

static int reports(srv_t *s, int kind, int n) {
  pthread_mutex_lock(&s->mu);
  int v = s->reports[kind][n];
  pthread_mutex_unlock(&s->mu);
  return v;
}

static int srv_rollback_stats(srv_t *s, hd_rollback_stats_t *st) {
  memset(st, 0, sizeof *st);
  st->version = HD_ROLLBACK_STATS_VERSION;
  return hd_server_rollback_stats(s->h, st);
}

static int cli_rollback_stats(cli_t *c, hd_rollback_stats_t *st) {
  memset(st, 0, sizeof *st);
  st->version = HD_ROLLBACK_STATS_VERSION;
  return hd_client_rollback_stats(c->h, st);
}

static void on_backup(void *data, int status) { *(atomic_int *)data = status == 0 ? 1 : status; }

/* The image of the store at this point: a backup (`power_loss` 0) or a copy of its files as a
 * power loss would leave them (1). Kept in <tmp>/image. */
static int take_image(world_t *w, int power_loss) {
  char *image = hdt_path(w->tmp, "image");
  int rc = -1;
  if (image != NULL && mkdir(image, 0700) == 0) {
    if (power_loss) {
      static const char *const files[] = {"hyperdown.db", "hyperdown.db-wal", "hyperdown.store"};
      rc = 0;
      for (size_t i = 0; i < sizeof files / sizeof files[0] && rc == 0; i++) {
        char from[512], to[512];
        snprintf(from, sizeof from, "%s/%s", w->s.dir, files[i]);
        snprintf(to, sizeof to, "%s/%s", image, files[i]);
        rc = hdt_copy_file(from, to);
      }
    } else {
      char path[512];
      snprintf(path, sizeof path, "%s/hyperdown.db", image);
      atomic_int done = 0;
      rc = hd_server_backup(w->s.h, path, on_backup, &done);
      if (rc == 0 && !WAIT_FOR(atomic_load(&done) != 0, WAIT_MS)) rc = -1;
      if (rc == 0 && atomic_load(&done) != 1) rc = atomic_load(&done);
    }
  }
  free(image);
  return rc;
}

/* With the server closed: its folder becomes the image. */
static int put_image_back(world_t *w) {
  char *image = hdt_path(w->tmp, "image");
  hdt_rmrf(w->s.dir);
  int rc = image != NULL && rename(image, w->s.dir) == 0 ? 0 : -1;
  free(image);
  return rc;
}

/* Up to the moment the client connects again: old#1..90 added while it is away, the image taken,
 * old#91..100 added and all 100 handled by the client (`hold_from`: events from there on are
 * kept by its handler; `srv_hold`: the server keeps every consumption report), both closed, the
 * image put back, the server started on it and new#91..105 added. */
static void until_the_restore(world_t *w, int power_loss, uint64_t hold_from, int srv_hold) {
  CHECK_OK(add(w, OLD, 1, IMAGE_AT));
  CHECK_OK(take_image(w, power_loss));
  w->c.hold_from = hold_from;
  w->s.hold = srv_hold;
  CHECK_OK(cli_start(w));
  CHECK_OK(add(w, OLD, IMAGE_AT + 1, N_OLD));
  int last = hold_from ? (int)hold_from - 1 : N_OLD;
  DCHECK(WAIT_FOR(handled(&w->c, OLD, 1, last, 1) && high_water(&w->c) == N_OLD, WAIT_MS));
  if (!hold_from && !srv_hold) {
    DCHECK(WAIT_FOR(pending(&w->s) == 0 && client_store_empty(&w->c), WAIT_MS));
  }
  if (srv_hold) DCHECK(WAIT_FOR(reports(&w->s, OLD, last) > 0, WAIT_MS));
  CHECK_OK(cli_stop(&w->c));
  CHECK_OK(srv_stop(&w->s));
  CHECK_OK(put_image_back(w));
  w->c.hold_from = 0;
  w->s.hold = 0;
  CHECK_OK(srv_start(&w->s));
  CHECK_OK(add(w, NEW, IMAGE_AT + 1, IMAGE_AT + N_NEW));
}

/* After the client connected again: every new event handled exactly once, unmarked, and no
 * consumption taken for another event; both stores empty in the end. */
static void new_events_delivered(world_t *w) {
  DCHECK(WAIT_FOR(handled(&w->c, NEW, IMAGE_AT + 1, IMAGE_AT + N_NEW, 1), WAIT_MS));
  DCHECK(WAIT_FOR(pending(&w->s) == 0 && client_store_empty(&w->c), WAIT_MS));
  hdt_sleep_ms(100);
  pthread_mutex_lock(&w->c.mu);
  for (int n = IMAGE_AT + 1; n <= IMAGE_AT + N_NEW; n++) {
    CHECK(w->c.ok[NEW][n] == 1 && w->c.marked[NEW][n] == 0);
  }
  int repeats = w->c.unmarked_repeats, bad = w->c.bad;
  pthread_mutex_unlock(&w->c.mu);
  CHECK(repeats == 0 && bad == 0);
  CHECK(w->s.premature == 0 && w->s.bad == 0);
}

/* Both sides counted and logged one rollback, and agree on the epoch. */
static void rollback_counted(world_t *w, uint64_t repeated, uint64_t orphaned, uint64_t dropped) {
  hd_rollback_stats_t ss, cs;
  CHECK_OK(srv_rollback_stats(&w->s, &ss));
  CHECK_OK(cli_rollback_stats(&w->c, &cs));
  CHECK(ss.rollbacks == 1 && ss.epoch_resumes == 1);
  CHECK(cs.rollbacks == 1 && cs.epoch_resumes == 1);
  if (cs.events_repeated != repeated || cs.events_orphaned != orphaned ||
      cs.consumed_dropped != dropped) {
    fprintf(stderr, "  client: %llu repeated, %llu orphaned, %llu dropped\n",
            (unsigned long long)cs.events_repeated, (unsigned long long)cs.events_orphaned,
            (unsigned long long)cs.consumed_dropped);
  }
  CHECK(cs.events_repeated == repeated && cs.events_orphaned == orphaned &&
        cs.consumed_dropped == dropped);
  CHECK(memcmp(ss.epoch, cs.epoch, HD_STORE_ID_BYTES) == 0);
  CHECK(rollback_lines(w->s.name) - w->logged[0] == 1);
  CHECK(rollback_lines(w->c.name) - w->logged[1] == 1);
}

/* ---- the tests ---- */

/* The client comes back to the store put back at 90, which had old#1..90 pending (handled since):
 * they come again, marked; new#91..105 are handled as the new events they are. */
static void back_to_the_image(world_t *w) {
  CHECK_OK(cli_start(w));
  new_events_delivered(w);
  for (int n = 1; n <= IMAGE_AT; n++) {
    CHECK(ok_count(&w->c, OLD, n) == 2 && w->c.marked[OLD][n] == 1);
  }
  for (int n = IMAGE_AT + 1; n <= N_OLD; n++) CHECK(ok_count(&w->c, OLD, n) == 1);
  rollback_counted(w, IMAGE_AT, 0, 0);
}

/* The required case: a backup at 90, the client saw 100, the store restored, 15 adds. A clean
 * restart afterwards is no rollback: the client resumes in the store's new epoch. */
static void restore_from_backup(world_t *w) {
  CHECK_OK(world_init(w, 0));
  until_the_restore(w, 0, 0, 0);
  int failed = hd_test_failed_checks;
  back_to_the_image(w);
  CHECK(hd_test_failed_checks == failed);
  CHECK_OK(srv_stop(&w->s));
  CHECK_OK(srv_start(&w->s));
  hd_rollback_stats_t ss;
  DCHECK(WAIT_FOR(hd_server_connected_users(w->s.h, NULL, 0) == 1, WAIT_MS));
  hdt_sleep_ms(100);
  CHECK_OK(srv_rollback_stats(&w->s, &ss));
  CHECK(ss.rollbacks == 0 && ss.epoch_resumes == 0);
}

/* The same after a power loss under synchronous=NORMAL: the image is the store's files as they
 * were on disk at 90, the store notices at its next open that it was not closed cleanly. */
static void power_loss_under_normal(world_t *w) {
  CHECK_OK(world_init(w, 1));
  until_the_restore(w, 1, 0, 0);
  back_to_the_image(w);
}

/* The client still holds events above the floor when it comes back: old#91..95 consumed, never
 * confirmed (the server kept the reports), old#96..100 not handled (its handler kept old#96).
 * The consumed ones are dropped, never reported to the restored store (whose 91..95 are new
 * events now); the unhandled ones are handled once, as what they are, and never reported. The
 * events at or below the floor that it consumed are reported again and not handled again. */
static void restore_with_events_held_above_the_floor(world_t *w) {
  CHECK_OK(world_init(w, 0));
  until_the_restore(w, 0, 96, 1);
  /* old#96 is kept by the handler until EPOCH is applied, so that 96..100 are still unhandled
   * then (a client handles what it holds before it is connected: they would be consumed, and
   * dropped unreported as 91..95 are) */
  w->c.hold_from = 96;
  CHECK_OK(cli_start(w));
  hd_rollback_stats_t cs;
  DCHECK(WAIT_FOR(cli_rollback_stats(&w->c, &cs) == 0 && cs.epoch_resumes == 1, WAIT_MS));
  DCHECK(WAIT_FOR(held_count(&w->c) == 1, WAIT_MS));
  cli_release(&w->c);
  new_events_delivered(w);
  for (int n = 1; n <= N_OLD; n++) {
    if (ok_count(&w->c, OLD, n) != 1) fprintf(stderr, "  old#%d handled %d times\n", n, ok_count(&w->c, OLD, n));
    CHECK(ok_count(&w->c, OLD, n) == 1);
  }
  for (int n = 96; n <= N_OLD; n++) CHECK(w->c.marked[OLD][n] == 0 && reports(&w->s, OLD, n) == 0);
  rollback_counted(w, 0, 5, 5);
}

/* Defines the test `name`: body(world), then the world is freed whatever the body's CHECKs did. */
#define ROLLBACK_TEST(name, body)                                                                 \
  static void name(void) {                                                                        \
    static world_t name##_w;                                                                      \
    body(&name##_w);                                                                              \
    world_free(&name##_w);                                                                        \
  }

ROLLBACK_TEST(restore_from_backup_delivers_new_events, restore_from_backup)
ROLLBACK_TEST(power_loss_under_normal_delivers_new_events, power_loss_under_normal)
ROLLBACK_TEST(restore_with_events_held_above_the_floor_is_safe,
              restore_with_events_held_above_the_floor)

#define TESTS(X)                                                                                  \
  X(restore_from_backup_delivers_new_events)                                                      \
  X(power_loss_under_normal_delivers_new_events)                                                  \
  X(restore_with_events_held_above_the_floor_is_safe)
HD_TEST_MAIN(TESTS)
