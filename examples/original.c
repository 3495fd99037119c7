/* The original hyperdown example (its README's "Usage / test"), in C, with the original's own
 * keypear key pairs: a server, a user who is online, a user who is offline and comes back later,
 * and then the part the original left commented out: the server leaves and comes back, and
 * recovers what a client consumed while it was away.
 *
 *   usage: original [FOLDER]
 *
 * FOLDER holds the three stores (server/, onlineClient1/, offlineClient2/, like the original's
 * testFolder); by default a fresh folder under /tmp, removed at the end. Exit status 0 when every
 * event was handled exactly once and every server callback ran exactly once. */
#define _GNU_SOURCE
#include <hyperdown.h>

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The original's key pairs: { scalar, publicKey } as keypear makes them. */
static const char *const KEYS[3][2] = {
    {"808a6e175b246bc93d4adaada45d49c031296efb36da7fdf3c5128d3eb46fd5e",
     "9b0e5bf749a3fd55ca5d08b225962bae6c0c826d9822a79e36b1871b50da82fe"},
    {"684e14316d8f379829ee5d1b883dffd2cf123f2987b8658353ae740ed8758565",
     "09f9cb2e6097bab4936696c7fb2e80c52ecc7e7a0dfe67274d93198e785c1558"},
    {"b0cf93c3f3589ea5e7a09b752e7b6492e6e331661da8fe88854d692aec59114f",
     "4cce6d17f4000b19b9f752fb7c185a56cff16d86f0cda8673e5ab6baed9e7171"},
};

/* The events of the story: { user (1 or 2), payload }. Callbacks recognise an event by its
 * payload, so that the story also runs again on a folder kept from an earlier run (sequence
 * numbers go on from where they were). */
#define NEVENTS 4
static const struct {
  int user;
  const char *payload;
} EVENTS[NEVENTS] = {
    {1, "{\"prize\":500,\"game\":\"boxing\",\"note\":\"user1 is online\"}"},
    {2, "{\"prize\":-500,\"game\":\"boxing\",\"note\":\"user2 is offline\"}"},
    {1, "{\"prize\":4500,\"game\":\"boxing2\",\"note\":\"user1 is still online\"}"},
    {1, "{\"prize\":100,\"game\":\"boxing3\",\"note\":\"user1 takes its time with this one\"}"},
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int handled[NEVENTS];  /* handler completions per event of the story */
static int consumed[NEVENTS]; /* server callbacks per event of the story */
static int wrong;           /* anything unexpected */
static hd_event_t *slow_event; /* the event client1 takes its time with */
static hd_keypair_t kp[3];

static void die(const char *what, int rc) {
  fprintf(stderr, "example: %s: %s (%s)\n", what, hd_last_error_message(), hd_err_name(rc));
  exit(1);
}

static int user_of(const uint8_t *pk) {
  for (int i = 1; i <= 2; i++) {
    if (memcmp(pk, kp[i].public_key, 32) == 0) return i;
  }
  return 0;
}

/* Which event of the story this is (-1: none, or not this user's). */
static int story_event(int user, const uint8_t *payload, size_t len) {
  for (int i = 0; i < NEVENTS; i++) {
    if (EVENTS[i].user == user && strlen(EVENTS[i].payload) == len &&
        memcmp(EVENTS[i].payload, payload, len) == 0)
      return i;
  }
  return -1;
}

static void bump(int *counter) {
  pthread_mutex_lock(&mu);
  (*counter)++;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
}

/* Waits (at most 10 s) until `*counter` reaches `want`. */
static void wait_for(const int *counter, int want, const char *what) {
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += 10;
  pthread_mutex_lock(&mu);
  while (*counter < want) {
    if (pthread_cond_timedwait(&cv, &mu, &dl) == ETIMEDOUT) {
      pthread_mutex_unlock(&mu);
      fprintf(stderr, "example: timed out waiting for %s\n", what);
      exit(1);
    }
  }
  pthread_mutex_unlock(&mu);
}

static void wait_until(int (*cond)(void *), void *arg, const char *what) {
  for (int i = 0; i < 1000; i++) {
    if (cond(arg)) return;
    usleep(10 * 1000);
  }
  fprintf(stderr, "example: timed out waiting for %s\n", what);
  exit(1);
}

/* ---- the server's callback: onClientConsumedEvents(remotePublicKey, events, cb) ---- */
static void on_consumed(void *ud, const uint8_t user[32], hd_consumed_t *batch) {
  (void)ud;
  int u = user_of(user);
  for (size_t i = 0; i < hd_consumed_count(batch); i++) {
    hd_event_info_t ev;
    hd_consumed_event(batch, i, &ev);
    printf("server: client%d used the event %llu %.*s (its answer: %.*s)\n", u,
           (unsigned long long)ev.seq, (int)ev.payload_len, (const char *)ev.payload,
           (int)ev.data_len, (const char *)ev.data);
    int e = story_event(u, ev.payload, ev.payload_len);
    if (e < 0 || ev.data_len != 4 || memcmp(ev.data, "done", 4) != 0) wrong++;
    else bump(&consumed[e]);
  }
  hd_consumed_complete_all(batch, 1); /* cb(true) */
}

/* ---- the clients' handler: eventHandler(id, data, cb) ---- */
static void on_event(void *ud, hd_event_t *event) {
  int u = (int)(intptr_t)ud;
  hd_event_info_t ev;
  hd_event_info(event, &ev);
  printf("client%d: event from server %llu %.*s\n", u, (unsigned long long)ev.seq,
         (int)ev.payload_len, (const char *)ev.payload);
  int e = story_event(u, ev.payload, ev.payload_len);
  if (e == 3) {
    /* this one takes a while: the handler completes it later, from another thread */
    printf("client1: (working on event %llu for a while...)\n", (unsigned long long)ev.seq);
    pthread_mutex_lock(&mu);
    slow_event = event;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    return;
  }
  if (e < 0) wrong++;
  else bump(&handled[e]);
  hd_event_complete(event, 1, "done", 4); /* cb(id, true) */
}

static void load(int i) {
  uint8_t scalar[32], pk[32];
  int rc;
  if ((rc = hd_hex_decode(scalar, 32, KEYS[i][0])) != 0) die("scalar", rc);
  if ((rc = hd_hex_decode(pk, 32, KEYS[i][1])) != 0) die("public key", rc);
  if ((rc = hd_keypair_from_scalar(&kp[i], scalar, pk)) != 0) die("key pair", rc);
}

static char root[4096], server_dir[4200], client1_dir[4200], client2_dir[4200];

static hd_server_t *start_server(int port) {
  char listen[64];
  snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
  hd_server_options_t o = HD_SERVER_OPTIONS_INIT;
  o.keypair = &kp[0];
  o.topic = "topic";
  o.listen = listen;
  o.data_dir = server_dir;
  o.on_consumed = on_consumed;
  hd_server_t *s = NULL;
  int rc = HD_EADDRINUSE;
  for (int i = 0; i < 100 && rc == HD_EADDRINUSE; i++) {
    rc = hd_server_create(&s, &o);
    if (rc == HD_EADDRINUSE) usleep(20 * 1000);
  }
  if (rc != 0) die("server", rc);
  return s;
}

static hd_client_t *start_client(int user, const char *dir, int port) {
  char connect[64];
  snprintf(connect, sizeof connect, "127.0.0.1:%d", port);
  hd_client_options_t o = HD_CLIENT_OPTIONS_INIT;
  o.keypair = &kp[user];
  o.server_public_key = kp[0].public_key;
  o.topic = "topic";
  o.connect = connect;
  o.data_dir = dir;
  o.on_event = on_event;
  o.user_data = (void *)(intptr_t)user;
  o.reconnect_min_ms = 20;
  o.reconnect_max_ms = 200;
  hd_client_t *c = NULL;
  int rc = hd_client_create(&c, &o);
  if (rc != 0) die("client", rc);
  return c;
}

static uint64_t add(hd_server_t *s, int i) {
  uint64_t seq = 0;
  int rc = hd_server_add_event_wait(s, kp[EVENTS[i].user].public_key, EVENTS[i].payload,
                                    strlen(EVENTS[i].payload), &seq);
  if (rc != 0) die("addEvent", rc);
  return seq;
}

static int slow_event_here(void *arg) {
  (void)arg;
  pthread_mutex_lock(&mu);
  int here = slow_event != NULL;
  pthread_mutex_unlock(&mu);
  return here;
}

static int client_holds(void *arg) {
  /* consumed by the client, waiting for the server's confirmation */
  hd_client_stats_t st = {HD_CLIENT_STATS_VERSION, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  return hd_client_stats(arg, &st) == 0 && st.consumed == 1;
}

static int client_empty(void *arg) {
  hd_client_stats_t st = {HD_CLIENT_STATS_VERSION, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  return hd_client_stats(arg, &st) == 0 && st.consumed == 0 && st.unhandled == 0;
}

static int server_empty(void *arg) {
  hd_server_stats_t st = {HD_SERVER_STATS_VERSION, 0, 0, 0, 0, 0, 0, 0};
  return hd_server_stats(arg, &st) == 0 && st.pending_total == 0;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *f) {
  (void)sb;
  (void)flag;
  (void)f;
  return remove(p);
}

int main(int argc, char **argv) {
  int rc, own_folder = argc < 2;
  setvbuf(stdout, NULL, _IOLBF, 0);
  if ((rc = HD_CHECK_VERSION()) != 0) die("version", rc);
  if (own_folder) {
    snprintf(root, sizeof root, "/tmp/hyperdown-example-XXXXXX");
    if (mkdtemp(root) == NULL) {
      perror("mkdtemp");
      return 1;
    }
  } else {
    snprintf(root, sizeof root, "%s", argv[1]);
  }
  snprintf(server_dir, sizeof server_dir, "%s/server", root);
  snprintf(client1_dir, sizeof client1_dir, "%s/onlineClient1", root);
  snprintf(client2_dir, sizeof client2_dir, "%s/offlineClient2", root);
  printf("hyperdown %s: the original example, stored in %s\n", hd_version_string(), root);
  for (int i = 0; i < 3; i++) load(i);

  /* server */
  hd_server_t *server = start_server(0);
  int port = hd_server_port(server);
  printf("server: listening on 127.0.0.1:%d as 9b0e5bf7...\n", port);

  /* an online user */
  hd_client_t *online = start_client(1, client1_dir, port);
  printf("client1: online (09f9cb2e...)\n");

  printf("server: addEvent for user1, who is online\n");
  uint64_t seq = add(server, 0);
  wait_for(&consumed[0], 1, "user1's first event");

  /* an offline user */
  printf("server: addEvent for user2, who is offline\n");
  seq = add(server, 1);
  uint64_t pending = 0;
  hd_server_pending(server, kp[2].public_key, &pending);
  printf("server: user2's event %llu waits in the server's store (%llu pending for user2)\n",
         (unsigned long long)seq, (unsigned long long)pending);

  /* they come back later... */
  sleep(1);
  printf("client2: comes back (4cce6d17...)\n");
  hd_client_t *offline = start_client(2, client2_dir, port);
  wait_for(&consumed[1], 1, "user2's event");

  printf("server: addEvent for user1, still online\n");
  seq = add(server, 2);
  wait_for(&consumed[2], 1, "user1's second event");

  /* the part the original left commented out: the server leaves, clients go on, it comes back */
  printf("server: addEvent for user1 once more\n");
  seq = add(server, 3);
  wait_until(slow_event_here, NULL, "client1 to get the event");
  pthread_mutex_lock(&mu);
  hd_event_t *slow = slow_event;
  pthread_mutex_unlock(&mu);
  printf("server: leaving\n");
  if ((rc = hd_server_close_wait(server)) != 0) die("leave", rc);
  printf("client1: done with event %llu while the server is away\n", (unsigned long long)seq);
  bump(&handled[3]);
  if ((rc = hd_event_complete(slow, 1, "done", 4)) != 0) die("complete", rc);
  wait_until(client_holds, online, "client1 to record event 3 consumed");
  printf("client1: event %llu is recorded consumed in its own store, waiting for the server\n",
         (unsigned long long)seq);
  sleep(1);
  printf("server: back, on the same folder\n");
  server = start_server(port);
  wait_for(&consumed[3], 1, "the server to recover the event client1 consumed meanwhile");
  wait_until(server_empty, server, "the server's store to empty");
  wait_until(client_empty, online, "client1's store to empty");
  wait_until(client_empty, offline, "client2's store to empty");
  usleep(200 * 1000); /* anything repeated would show now */

  hd_client_close_wait(offline);
  hd_client_close_wait(online);
  hd_server_close_wait(server);

  int ok = wrong == 0;
  for (int i = 0; i < NEVENTS; i++) {
    if (handled[i] != 1 || consumed[i] != 1) ok = 0;
  }
  printf("%s: %s\n", ok ? "done" : "FAILED",
         ok ? "every event was handled once and every server callback ran once; both stores are empty"
            : "an event was handled or a callback ran other than once");
  if (own_folder) nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  return ok ? 0 : 1;
}
