/* redis_e2e: Redis Streams, the same scenarios as bench/e2e/hd_e2e, driven with hiredis.
 *
 * One producer connection (non-blocking hiredis context, pipelined): XADD s * p <payload>.
 * One consumer thread with its own connection: XREADGROUP GROUP g c COUNT 1000 BLOCK 100
 * STREAMS s >, the handler per entry (delivered), then one pipelined XACK s g ids... and
 * XDEL s ids...; an event is completed when both replies are back (acknowledged and deleted).
 * Durability is the server's (appendonly yes, appendfsync always|everysec: set by run.sh and
 * written next to every figure with --durability).
 * Modes: tput | lat | paced (harness.h) and drain (add --events while no consumer reads, then
 * start the consumer and time until every event is acked and deleted). */
#include "harness.h"

#include <hiredis/hiredis.h>
#include <poll.h>

static h_run_t *run;
static int port;
static atomic_int stop;

/* ---------------- producer ---------------- */
static redisContext *pc;
static long outstanding, add_errors;

static int pump(int block) {
  while (outstanding > 0) {
    void *rep = NULL;
    if (redisGetReplyFromReader(pc, &rep) != REDIS_OK) return -1;
    if (rep) {
      redisReply *r = rep;
      if (r->type == REDIS_REPLY_ERROR) add_errors++;
      freeReplyObject(r);
      outstanding--;
      continue;
    }
    int done = 0;
    do {
      if (redisBufferWrite(pc, &done) != REDIS_OK) return -1;
      if (!done) {
        struct pollfd pf = {pc->fd, POLLOUT | POLLIN, 0};
        poll(&pf, 1, 100);
        if (pf.revents & POLLIN) break; /* read some replies, the server may be waiting on us */
      }
    } while (!done);
    struct pollfd pf = {pc->fd, POLLIN, 0};
    if (poll(&pf, 1, block ? 1000 : 0) <= 0) {
      if (block) continue;
      return 0;
    }
    if (redisBufferRead(pc) != REDIS_OK) return -1;
  }
  int done = 0;
  while (!done) {
    if (redisBufferWrite(pc, &done) != REDIS_OK) return -1;
    if (!done) {
      struct pollfd pf = {pc->fd, POLLOUT, 0};
      poll(&pf, 1, 100);
    }
  }
  return 0;
}
static int rsend(void *ctx, uint64_t id, const uint8_t *p, size_t len) {
  (void)ctx, (void)id;
  if (redisAppendCommand(pc, "XADD s * p %b", p, len) != REDIS_OK) return -1;
  outstanding++;
  return pump(outstanding > 4096);
}
static void rflush(void *ctx) {
  (void)ctx;
  pump(0);
}

/* ---------------- consumer ---------------- */
static void *consumer(void *arg) {
  (void)arg;
  redisContext *c = redisConnect("127.0.0.1", port);
  if (!c || c->err) {
    fprintf(stderr, "redis consumer: connect failed\n");
    exit(1);
  }
  const char **av = malloc(sizeof(char *) * 1010);
  size_t *al = malloc(sizeof(size_t) * 1010);
  char (*ids)[48] = malloc(48 * 1000);
  uint64_t *hid = malloc(sizeof(uint64_t) * 1000);
  while (!atomic_load(&stop)) {
    redisReply *r = redisCommand(c, "XREADGROUP GROUP g c COUNT 1000 BLOCK 100 STREAMS s >");
    if (!r) {
      fprintf(stderr, "redis consumer: %s\n", c->errstr);
      exit(1);
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
      freeReplyObject(r);
      continue;
    }
    redisReply *entries = r->element[0]->element[1];
    size_t n = entries->elements;
    for (size_t i = 0; i < n; i++) {
      redisReply *e = entries->element[i];
      snprintf(ids[i], 48, "%s", e->element[0]->str);
      redisReply *fv = e->element[1];
      uint64_t id = fv->elements >= 2 ? h_id_of(fv->element[1]->str, fv->element[1]->len) : UINT64_MAX;
      hid[i] = id;
      h_deliver(run, id);
    }
    freeReplyObject(r);
    av[0] = "XACK", al[0] = 4, av[1] = "s", al[1] = 1, av[2] = "g", al[2] = 1;
    for (size_t i = 0; i < n; i++) av[3 + i] = ids[i], al[3 + i] = strlen(ids[i]);
    redisAppendCommandArgv(c, (int)(3 + n), av, al);
    av[0] = "XDEL", al[0] = 4, av[1] = "s", al[1] = 1;
    for (size_t i = 0; i < n; i++) av[2 + i] = ids[i], al[2 + i] = strlen(ids[i]);
    redisAppendCommandArgv(c, (int)(2 + n), av, al);
    for (int k = 0; k < 2; k++) {
      void *rep = NULL;
      if (redisGetReply(c, &rep) != REDIS_OK) {
        fprintf(stderr, "redis consumer: ack: %s\n", c->errstr);
        exit(1);
      }
      redisReply *rr = rep;
      if (rr->type != REDIS_REPLY_INTEGER || (size_t)rr->integer != n)
        fprintf(stderr, "redis consumer: ack/del answered %lld of %zu\n", rr->integer, n);
      freeReplyObject(rr);
    }
    for (size_t i = 0; i < n; i++) h_complete(run, hid[i]);
  }
  redisFree(c);
  return NULL;
}

static void cmd(redisContext *c, const char *s) {
  redisReply *r = redisCommand(c, s);
  if (!r) {
    fprintf(stderr, "redis: %s: %s\n", s, c->errstr);
    exit(1);
  }
  freeReplyObject(r);
}

int main(int argc, char **argv) {
  h_cfg_t cfg;
  h_cfg_defaults(&cfg);
  cfg.system = "redis";
  for (int i = 1; i < argc; i++)
    if (!h_parse(&cfg, argc, argv, &i)) {
      fprintf(stderr, "redis_e2e: unknown option %s\n", argv[i]);
      return 2;
    }
  setvbuf(stdout, NULL, _IOLBF, 0);
  port = cfg.port;
  int drain = strcmp(cfg.mode, "drain") == 0;
  run = calloc(1, sizeof *run);
  h_init(run, &cfg);
  redisContext *setup = redisConnect("127.0.0.1", port);
  if (!setup || setup->err) return 1;
  cmd(setup, "DEL s");
  cmd(setup, "XGROUP CREATE s g $ MKSTREAM");
  pc = redisConnectNonBlock("127.0.0.1", port);
  if (!pc || pc->err) return 1;
  { /* wait for the non-blocking connect */
    struct pollfd pf = {pc->fd, POLLOUT, 0};
    poll(&pf, 1, 5000);
  }
  pthread_t th;
  int late;
  char more[512];
  if (!drain) {
    pthread_create(&th, NULL, consumer, NULL);
    late = h_produce(run, rsend, NULL, rflush);
    pump(1);
    atomic_store(&stop, 1);
    pthread_join(th, NULL);
    snprintf(more, sizeof more, "\"add_errors\":%ld,\"threads\":\"redis-server; driver: producer thread + consumer thread, one connection each\"", add_errors);
  } else {
    /* add phase: every XADD answered (with appendfsync always: after its fsync) */
    uint8_t *buf = malloc((size_t)run->c.payload);
    double t0 = h_now_s();
    for (long i = 0; i < run->c.events; i++) {
      atomic_store(&run->issued, i + 1);
      h_fill(buf, run->c.payload, (uint64_t)i);
      redisAppendCommand(pc, "XADD s * p %b", buf, (size_t)run->c.payload);
      outstanding++;
      if (pump(outstanding >= run->c.inflight) != 0) return 1;
    }
    pump(1);
    double t1 = h_now_s();
    long rss_add = h_rss_kib_of(cfg.server_pid, "VmRSS");
    run->t0 = h_now_ns();
    pthread_create(&th, NULL, consumer, NULL);
    late = h_wait_completed(run, run->c.events, run->t0 + (uint64_t)(cfg.drain_timeout_s * 1e9));
    double t2 = h_now_s();
    atomic_store(&stop, 1);
    pthread_join(th, NULL);
    snprintf(more, sizeof more,
             "\"add_seconds\":%.3f,\"add_events_per_s\":%.1f,\"drain_seconds\":%.3f,"
             "\"drain_events_per_s\":%.1f,\"total_events_per_s\":%.1f,\"add_errors\":%ld,"
             "\"server_rss_after_adds_kib\":%ld,\"server_peak_rss_kib\":%ld,\"add_window\":%ld",
             t1 - t0, (double)run->c.events / (t1 - t0), t2 - (double)run->t0 / 1e9,
             (double)run->c.events / (t2 - (double)run->t0 / 1e9),
             (double)run->c.events / (t2 - t0), add_errors, rss_add,
             h_rss_kib_of(cfg.server_pid, "VmHWM"), run->c.inflight);
  }
  int rc = h_report(run, late, more);
  return rc || add_errors ? 1 : 0;
}
