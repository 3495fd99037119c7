/* A real full disk: the store of the server, then the client's, on a small tmpfs of its own (4 MB)
 * that the test fills with a file, as another program would, and later frees by removing it.
 *
 * Each scenario mounts a tmpfs (mount(2): root, or CAP_SYS_ADMIN; without it the test prints
 * SKIP with the reason and counts as skipped, never as passed), then runs in a child process
 * (fork) so that whatever happens to it (a failed CHECK, a crash, a hang killed at the deadline)
 * the parent unmounts afterwards.
 *
 * server_disk_full: 20 events delivered; 20 more acknowledged and held by the client's handler;
 * the disk fills. Adds fail with HD_ENOSPC and a detail that says "disk is full", again and
 * again (the store does not give up for good); the acknowledged events are delivered and
 * handled; their deletes fail and are tried again. The server closes and opens again on the full
 * disk (its store is openable: an open under FULL writes nothing), still holding those events;
 * the client reports them again and their deletes fail again. Space freed: adds work, and
 * everything drains without a reconnect (the failed deletes are retried by the server): each
 * event handled exactly once, on_consumed once per server, both stores empty.
 *
 * client_disk_full: 20 events delivered; 20 more stored by the client and the first held by
 * its handler; the client's disk fills. The server's adds all work; the client cannot store the
 * new ones (it says so and reconnects), closes and opens again on the full disk (the held event,
 * never completed, is handed out again), cannot record consumptions (recorded again with a
 * backoff, client_handler.c, and no event handed out meanwhile). Space freed: everything drains,
 * each event handled exactly once, both stores empty. */
#include "harness.h"
#include "delivery_util.h"

#include <sys/mount.h>

#define FD_SIZE "4m"   /* the tmpfs */
#define FD_PAD 1500    /* payload bytes beyond "user1#<seq>" */
#define FD_CAP 20000   /* seqs recorded */
#define FD_BASELINE 20 /* events delivered before the disk fills */

typedef struct disk {
  char *root, *mnt, *filler;
  int mounted;
} disk_t;

static void disk_unmount(disk_t *d) {
  if (d->mounted && umount2(d->mnt, 0) != 0) {
    fprintf(stderr, "  umount %s: %s (left mounted)\n", d->mnt, strerror(errno));
  } else if (d->root) {
    hdt_rmrf(d->root);
  }
  free(d->root);
  free(d->mnt);
  free(d->filler);
  memset(d, 0, sizeof *d);
}

/* A fresh tmpfs of FD_SIZE at /tmp/hd-<tag>-XXXXXX/disk. 0, or -1 with the reason in `why`. */
static int disk_mount(disk_t *d, const char *tag, char *why, size_t why_len) {
  memset(d, 0, sizeof *d);
  d->root = hdt_mkdtemp(tag);
  if (d->root == NULL) {
    snprintf(why, why_len, "mkdtemp: %s", strerror(errno));
    return -1;
  }
  d->mnt = hdt_path(d->root, "disk");
  d->filler = hdt_path(d->mnt, "filler");
  if (mkdir(d->mnt, 0700) != 0) {
    snprintf(why, why_len, "mkdir %s: %s", d->mnt, strerror(errno));
    disk_unmount(d);
    return -1;
  }
  if (mount("tmpfs", d->mnt, "tmpfs", MS_NOSUID | MS_NODEV, "size=" FD_SIZE ",mode=0700") != 0) {
    snprintf(why, why_len, "cannot mount a tmpfs of " FD_SIZE " on %s: %s (needs root or "
             "CAP_SYS_ADMIN)", d->mnt, strerror(errno));
    disk_unmount(d);
    return -1;
  }
  d->mounted = 1;
  return 0;
}

/* Fills the disk with the filler file, to the last byte it takes. The bytes written, or -1 if a
 * write failed otherwise than with ENOSPC. */
static long disk_fill(disk_t *d) {
  int fd = open(d->filler, O_WRONLY | O_CREAT | O_APPEND, 0600);
  if (fd < 0) return -1;
  static char chunk[65536];
  long total = 0;
  for (size_t size = sizeof chunk; size > 0; size /= 2) {
    for (;;) {
      ssize_t w = write(fd, chunk, size);
      if (w > 0) {
        total += w;
        continue;
      }
      if (w < 0 && errno != ENOSPC) {
        close(fd);
        return -1;
      }
      break;
    }
  }
  close(fd);
  return total;
}

/* Runs `scenario` in a child process on a fresh tmpfs, then unmounts it. */
static void on_disk(const char *tag, void (*scenario)(disk_t *d)) {
  disk_t d;
  char why[512];
  if (disk_mount(&d, tag, why, sizeof why) != 0) SKIP("%s: %s", tag, why);
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    int before = hd_test_failed_checks; /* an earlier test's failures are not this one's */
    scenario(&d);
    exit(hd_test_failed_checks != before); /* not _exit: libuv's destructor joins its pool */
  }
  int st = pid > 0 ? hdt_wait_child(pid, 120000) : -1;
  disk_unmount(&d);
  CHECK(pid > 0);
  CHECK(st != -1); /* it ended in time */
  if (WIFSIGNALED(st)) fprintf(stderr, "  %s: the scenario died of signal %d\n", tag, WTERMSIG(st));
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* One server, one client (user1); the store of `which` ("server" or "client") on the disk. */
static int world_on_disk(du_world_t *w, disk_t *d, const char *which) {
  if (du_world_init(w, "fulldisk", 1, FD_CAP, 0) != 0) return -1;
  char **dir = strcmp(which, "server") == 0 ? &w->s.dir : &w->c[0].dir;
  hdt_rmrf(*dir);
  free(*dir);
  *dir = hdt_path(d->mnt, which);
  if (du_world_start_server(w) != 0) return -1;
  return du_client_start(&w->c[0]);
}

/* Adds the event that is to get `seq` (payload du_payload(1, seq, FD_PAD)). */
static int add_one(du_world_t *w, uint64_t seq) {
  uint8_t buf[FD_PAD + 64];
  size_t len = du_payload(buf, sizeof buf, 1, seq, FD_PAD);
  uint64_t got = 0;
  int rc = hd_server_add_event_wait(w->s.h, w->c[0].kp.public_key, buf, len, &got);
  if (rc == 0 && got != seq) {
    fprintf(stderr, "  the add got seq %" PRIu64 ", wanted %" PRIu64 "\n", got, seq);
    return HD_ESTATE;
  }
  return rc;
}

static void set_mode(du_client_t *c, int mode) {
  pthread_mutex_lock(&c->mu);
  c->mode = mode;
  pthread_mutex_unlock(&c->mu);
}

/* A restart may hand to on_consumed again what was completed ok but not deleted (at least once):
 * the recorder forgets those completions, so that it counts only a repeat by one server. */
static void server_restarted(du_server_t *s) {
  pthread_mutex_lock(&s->mu);
  memset(s->oks[0], 0, s->cap * sizeof(int));
  pthread_mutex_unlock(&s->mu);
}

/* Adds until the disk says no (what the store had allocated may take a few more); `*next` is the
 * next seq. The failing add's code, with its detail in `detail`. */
static int add_until_full(du_world_t *w, uint64_t *next, char *detail, size_t cap) {
  int rc = 0;
  for (int i = 0; i < 1000 && (rc = add_one(w, *next)) == 0; i++) (*next)++;
  snprintf(detail, cap, "%s", hd_last_error_message());
  return rc;
}

/* Everything drains: 1..n handled exactly once each, nothing pending on either side, no error
 * recorded. */
static int all_drained(du_world_t *w, uint64_t n) {
  du_client_t *c = &w->c[0];
  return WAIT_FOR(du_client_total_ok(c) >= (long)n, 20000) && du_client_all_ok_once(c, 1, n) &&
         WAIT_FOR(du_server_pending_total(&w->s) == 0, 20000) &&
         WAIT_FOR(du_client_store_empty(c), 20000) && du_client_clean(c) && du_server_clean(&w->s);
}

/* How both scenarios start, before the disk fills: the store of `which` on the disk, FD_BASELINE
 * events delivered and drained, FD_BASELINE more acknowledged and stored by the client, the
 * first of them held by its handler. *next: the next seq. 1 if all went so. */
static int start_and_hold(du_world_t *w, disk_t *d, const char *which, uint64_t *next) {
  du_client_t *c = &w->c[0];
  if (world_on_disk(w, d, which) != 0) return 0;
  for (*next = 1; *next <= FD_BASELINE; (*next)++) {
    if (add_one(w, *next) != 0) return 0;
  }
  if (!all_drained(w, FD_BASELINE)) return 0;
  set_mode(c, DU_HOLD);
  for (int i = 0; i < FD_BASELINE; i++, (*next)++) {
    if (add_one(w, *next) != 0) return 0;
  }
  hd_client_stats_t st;
  return WAIT_FOR(du_client_nheld(c) == 1 && du_client_stats(c, &st) == 0 &&
                  st.unhandled == FD_BASELINE, 10000);
}

static void server_full_body(du_world_t *w, disk_t *d) {
  du_client_t *c = &w->c[0];
  uint64_t next = 1;
  /* events acknowledged before the disk fills, consumed after it did: their deletes fail */
  DCHECK(start_and_hold(w, d, "server", &next));
  long filled = disk_fill(d);
  CHECK(filled > 0);
  char detail[512];
  int rc = add_until_full(w, &next, detail, sizeof detail);
  printf("  server: disk filled (%ld bytes); %" PRIu64 " adds acknowledged, then %s: %s\n",
         filled, next - 1, hd_err_name(rc), detail);
  DCHECK(rc == HD_ENOSPC);
  CHECK(strstr(detail, "disk is full") != NULL);
  for (int i = 0; i < 5; i++) CHECK_RC(add_one(w, next), HD_ENOSPC); /* and again: not for good */
  uint64_t acked = next - 1;
  /* what was acknowledged is delivered and handled; the deletes fail and wait */
  set_mode(c, DU_OK);
  du_client_release(c, 1);
  DCHECK(WAIT_FOR(du_client_total_ok(c) == (long)acked, 10000));
  DCHECK(WAIT_FOR(du_server_calls_are(&w->s, 0, FD_BASELINE + 1, acked, 1), 10000));
  DCHECK(WAIT_FOR(du_log_count("server", "consumed events failed (ENOSPC") > 0, 10000));
  DCHECK(du_server_pending_total(&w->s) == acked - FD_BASELINE);
  /* the store opens again on the full disk (which the close's checkpoint may have freed a little:
   * filled again) */
  CHECK_OK(du_server_stop(&w->s));
  int failed = du_log_count("server", "consumed events failed (ENOSPC");
  server_restarted(&w->s);
  CHECK(disk_fill(d) >= 0);
  CHECK_OK(du_server_start(&w->s));
  DCHECK(du_server_pending_total(&w->s) == acked - FD_BASELINE);
  DCHECK(WAIT_FOR(du_client_is_connected(c) && atomic_load(&w->s.peers_connected) == 2, 10000));
  /* the client reports them again; their deletes fail again */
  DCHECK(WAIT_FOR(du_log_count("server", "consumed events failed (ENOSPC") > failed, 10000));
  CHECK_RC(add_one(w, next), HD_ENOSPC);
  /* room again: adds work and everything drains, the failed deletes too, without a reconnect */
  CHECK(unlink(d->filler) == 0);
  int connects = atomic_load(&w->s.peers_connected);
  for (int i = 0; i < FD_BASELINE; i++, next++) CHECK_OK(add_one(w, next));
  DCHECK(all_drained(w, next - 1));
  CHECK(atomic_load(&w->s.peers_connected) == connects);
  DCHECK(du_log_count("server", "consumed events at try") > 0); /* the retries did it */
}

static void server_full(disk_t *d) {
  static du_world_t w;
  server_full_body(&w, d);
  du_world_free(&w);
}

static void server_disk_full(void) { on_disk("fulldisk-server", server_full); }

static void client_full_body(du_world_t *w, disk_t *d) {
  du_client_t *c = &w->c[0];
  uint64_t next = 1;
  /* events stored before the disk fills, handled after it did; the first is with the handler */
  DCHECK(start_and_hold(w, d, "client", &next));
  long filled = disk_fill(d);
  CHECK(filled > 0);
  /* the server's adds all work; the client cannot store them and says so */
  int connects = atomic_load(&w->s.peers_connected);
  for (int i = 0; i < FD_BASELINE; i++, next++) CHECK_OK(add_one(w, next));
  DCHECK(WAIT_FOR(du_log_count("client1", "received events failed: commit: database or disk is "
                               "full") > 0, 10000));
  /* the store opens again on the full disk (the held event was not completed: handed out again) */
  CHECK_OK(du_client_stop(c));
  CHECK_OK(du_client_start(c));
  DCHECK(WAIT_FOR(du_client_nheld(c) == 1, 10000));
  /* its consumption cannot be recorded: tried again, and once that is known the handler waits
   * (the events handled while the first records were on their way wait with it) */
  set_mode(c, DU_OK);
  CHECK(du_client_release(c, 1) == 1);
  DCHECK(WAIT_FOR(du_log_count("client1", "consumed failed (ENOSPC") > 0, 10000));
  DCHECK(WAIT_FOR(du_log_count("client1", "consumed events again") > 0, 10000));
  long handled = du_client_total_ok(c);
  int retries = du_log_count("client1", "consumed events again");
  DCHECK(WAIT_FOR(du_log_count("client1", "consumed events again") > retries + 1, 10000));
  DCHECK(du_client_total_ok(c) == handled);
  printf("  client: disk filled (%ld bytes); storing received events failed %d times, %ld "
         "events handled whose consumption could not be recorded, %d tries to record them; %d "
         "connections meanwhile\n", filled, du_log_count("client1", "received events failed"),
         handled - FD_BASELINE, du_log_count("client1", "consumed events again") + 1,
         atomic_load(&w->s.peers_connected) - connects);
  /* room again: everything drains, each event handled exactly once */
  CHECK(unlink(d->filler) == 0);
  DCHECK(all_drained(w, next - 1));
  DCHECK(du_log_count("client1", "consumptions are recorded again") == 1);
}

static void client_full(disk_t *d) {
  static du_world_t w;
  client_full_body(&w, d);
  du_world_free(&w);
}

static void client_disk_full(void) { on_disk("fulldisk-client", client_full); }

#define TESTS(X) X(server_disk_full) X(client_disk_full)

HD_TEST_MAIN(TESTS)
