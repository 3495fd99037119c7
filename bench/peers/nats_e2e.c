/* nats_e2e: NATS JetStream, the same scenarios as bench/e2e/hd_e2e, driven with libnats (nats.c).
 *
 * Stream E2E (subject e2e, FILE storage, WorkQueue retention: an acked message is deleted).
 * Producer: js_PublishAsync (every publish is acknowledged by the server once stored; the
 * pub-ack handler counts errors). Consumer: a durable push consumer with AckPolicy explicit and
 * manual acks (its own connection); the handler marks the event delivered and acks it with
 * natsMsg_Ack (the ack is sent, not waited for: AckSync would add a round trip per event); the
 * event is completed when its ack is sent.
 * Durability is the server's: nats-server 2.9 fsyncs its file store on a timer (2 minutes) and
 * has no sync_interval option (added in 2.10); run.sh writes it next to every figure.
 * Modes: tput | lat | paced (harness.h) and drain. */
#include "harness.h"

#include <nats/nats.h>

static h_run_t *run;
static jsCtx *js;
static atomic_long pub_errors, pub_acks;

static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure) {
  (void)nc, (void)sub, (void)closure;
  uint64_t id = h_id_of(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
  h_deliver(run, id);
  if (natsMsg_Ack(msg, NULL) != NATS_OK) fprintf(stderr, "nats: ack failed\n");
  h_complete(run, id);
  natsMsg_Destroy(msg);
}
static void on_puback(jsCtx *j, natsMsg *m, jsPubAck *pa, jsPubAckErr *pae, void *closure) {
  (void)j, (void)m, (void)pa, (void)closure;
  if (pae) atomic_fetch_add(&pub_errors, 1);
  else atomic_fetch_add(&pub_acks, 1);
}
static int nsend(void *ctx, uint64_t id, const uint8_t *p, size_t len) {
  (void)ctx, (void)id;
  natsStatus s = js_PublishAsync(js, "e2e", p, (int)len, NULL);
  return s == NATS_OK ? 0 : -1;
}

static natsSubscription *subscribe(natsConnection *cnc) {
  jsCtx *cjs;
  jsOptions o;
  jsOptions_Init(&o);
  if (natsConnection_JetStream(&cjs, cnc, &o) != NATS_OK) exit(1);
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = "E2E";
  so.ManualAck = true;
  so.Config.Durable = "dur";
  so.Config.AckPolicy = js_AckExplicit;
  so.Config.DeliverPolicy = js_DeliverAll;
  so.Config.MaxAckPending = 65536;
  natsSubscription *sub = NULL;
  jsErrCode je = 0;
  natsStatus s = js_Subscribe(&sub, cjs, "e2e", on_msg, NULL, NULL, &so, &je);
  if (s != NATS_OK) {
    fprintf(stderr, "nats: subscribe: %s (%d)\n", natsStatus_GetText(s), (int)je);
    exit(1);
  }
  natsSubscription_SetPendingLimits(sub, -1, -1);
  return sub;
}

int main(int argc, char **argv) {
  h_cfg_t cfg;
  h_cfg_defaults(&cfg);
  cfg.system = "nats";
  for (int i = 1; i < argc; i++)
    if (!h_parse(&cfg, argc, argv, &i)) {
      fprintf(stderr, "nats_e2e: unknown option %s\n", argv[i]);
      return 2;
    }
  setvbuf(stdout, NULL, _IOLBF, 0);
  int drain = strcmp(cfg.mode, "drain") == 0;
  run = calloc(1, sizeof *run);
  h_init(run, &cfg);
  char url[64];
  snprintf(url, sizeof url, "nats://127.0.0.1:%d", cfg.port);
  natsConnection *pnc = NULL, *cnc = NULL;
  if (natsConnection_ConnectTo(&pnc, url) != NATS_OK || natsConnection_ConnectTo(&cnc, url) != NATS_OK) {
    fprintf(stderr, "nats: connect failed\n");
    return 1;
  }
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.PublishAsync.MaxPending = drain ? cfg.inflight : 65536;
  jo.PublishAsync.AckHandler = on_puback;
  jo.PublishAsync.StallWait = 10000;
  if (natsConnection_JetStream(&js, pnc, &jo) != NATS_OK) return 1;
  js_DeleteStream(js, "E2E", NULL, NULL);
  jsStreamConfig sc;
  jsStreamConfig_Init(&sc);
  sc.Name = "E2E";
  const char *subj[1] = {"e2e"};
  sc.Subjects = subj;
  sc.SubjectsLen = 1;
  sc.Storage = js_FileStorage;
  sc.Retention = js_WorkQueuePolicy;
  jsErrCode je = 0;
  jsStreamInfo *si = NULL;
  natsStatus s = js_AddStream(&si, js, &sc, NULL, &je);
  if (s != NATS_OK) {
    fprintf(stderr, "nats: add stream: %s (%d)\n", natsStatus_GetText(s), (int)je);
    return 1;
  }
  jsStreamInfo_Destroy(si);
  int late;
  char more[600];
  natsSubscription *sub = NULL;
  if (!drain) {
    sub = subscribe(cnc);
    late = h_produce(run, nsend, NULL, NULL);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 30000;
    js_PublishAsyncComplete(js, &po);
    snprintf(more, sizeof more, "\"pub_errors\":%ld,\"threads\":\"nats-server; driver: producer thread + libnats threads, two connections\"",
             atomic_load(&pub_errors));
  } else {
    uint8_t *buf = malloc((size_t)run->c.payload);
    double t0 = h_now_s();
    for (long i = 0; i < run->c.events; i++) {
      atomic_store(&run->issued, i + 1);
      h_fill(buf, run->c.payload, (uint64_t)i);
      if (js_PublishAsync(js, "e2e", buf, (int)run->c.payload, NULL) != NATS_OK) {
        fprintf(stderr, "nats: publish failed at %ld\n", i);
        return 1;
      }
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 120000;
    js_PublishAsyncComplete(js, &po);
    double t1 = h_now_s();
    long rss_add = h_rss_kib_of(cfg.server_pid, "VmRSS");
    run->t0 = h_now_ns();
    sub = subscribe(cnc);
    late = h_wait_completed(run, run->c.events, run->t0 + (uint64_t)(cfg.drain_timeout_s * 1e9));
    double t2 = h_now_s();
    snprintf(more, sizeof more,
             "\"add_seconds\":%.3f,\"add_events_per_s\":%.1f,\"drain_seconds\":%.3f,"
             "\"drain_events_per_s\":%.1f,\"total_events_per_s\":%.1f,\"pub_errors\":%ld,\"pub_acks\":%ld,"
             "\"server_rss_after_adds_kib\":%ld,\"server_peak_rss_kib\":%ld,\"add_window\":%ld",
             t1 - t0, (double)run->c.events / (t1 - t0), t2 - (double)run->t0 / 1e9,
             (double)run->c.events / (t2 - (double)run->t0 / 1e9), (double)run->c.events / (t2 - t0),
             atomic_load(&pub_errors), atomic_load(&pub_acks), rss_add,
             h_rss_kib_of(cfg.server_pid, "VmHWM"), run->c.inflight);
  }
  usleep(200000);
  int rc = h_report(run, late, more);
  natsSubscription_Unsubscribe(sub);
  natsSubscription_Destroy(sub);
  _exit(rc || atomic_load(&pub_errors) ? 1 : 0);
}
