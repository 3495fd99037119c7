/* mqtt_e2e: Mosquitto (MQTT 3.1.1), the same scenarios as bench/e2e/hd_e2e, driven with
 * libmosquitto (each client on its own libmosquitto loop thread, mosquitto_loop_start).
 *
 * Subscriber: client id "e2e-sub", clean_session false (a persistent session), SUBSCRIBE e2e
 * QoS 1. Publisher: client id "e2e-pub", PUBLISH e2e QoS 1 (the broker answers PUBACK once it
 * has the message, in memory). The subscriber's handler marks the event delivered and
 * completed; libmosquitto sends the PUBACK to the broker when the handler returns, and the
 * broker then forgets the message. Durability is the broker's: persistence true writes the
 * in-memory database to mosquitto.db only every autosave_interval (default 1800 s) and at exit;
 * there is no fsync-per-message mode. run.sh writes it next to every figure.
 * Modes: tput | lat | paced (harness.h) and drain (the subscriber's session is offline while
 * the events are published; it reconnects and receives its queue). */
#include "harness.h"

#include <mosquitto.h>

static h_run_t *run;
static atomic_long pub_acked, connected_sub, subscribed;

static void on_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg) {
  (void)m, (void)ud;
  uint64_t id = h_id_of(msg->payload, (size_t)msg->payloadlen);
  h_deliver(run, id);
  h_complete(run, id);
}
static void on_publish(struct mosquitto *m, void *ud, int mid) {
  (void)m, (void)ud, (void)mid;
  atomic_fetch_add(&pub_acked, 1);
}
static void on_sub_connect(struct mosquitto *m, void *ud, int rc) {
  (void)ud;
  if (rc != 0) {
    fprintf(stderr, "mqtt: subscriber CONNACK %d\n", rc);
    exit(1);
  }
  mosquitto_subscribe(m, NULL, "e2e", 1);
  atomic_fetch_add(&connected_sub, 1);
}
static void on_subscribe(struct mosquitto *m, void *ud, int mid, int n, const int *q) {
  (void)m, (void)ud, (void)mid, (void)n, (void)q;
  atomic_fetch_add(&subscribed, 1);
}
static struct mosquitto *pub;
static int msend(void *ctx, uint64_t id, const uint8_t *p, size_t len) {
  (void)ctx, (void)id;
  return mosquitto_publish(pub, NULL, "e2e", (int)len, p, 1, false) == MOSQ_ERR_SUCCESS ? 0 : -1;
}

static struct mosquitto *sub_start(int port) {
  struct mosquitto *s = mosquitto_new("e2e-sub", false, NULL);
  mosquitto_max_inflight_messages_set(s, 0);
  mosquitto_message_callback_set(s, on_message);
  mosquitto_connect_callback_set(s, on_sub_connect);
  mosquitto_subscribe_callback_set(s, on_subscribe);
  long before = atomic_load(&subscribed);
  if (mosquitto_connect(s, "127.0.0.1", port, 60) != MOSQ_ERR_SUCCESS) {
    fprintf(stderr, "mqtt: subscriber connect failed\n");
    exit(1);
  }
  mosquitto_loop_start(s);
  for (int i = 0; i < 5000 && atomic_load(&subscribed) == before; i++) usleep(1000);
  return s;
}

int main(int argc, char **argv) {
  h_cfg_t cfg;
  h_cfg_defaults(&cfg);
  cfg.system = "mosquitto";
  for (int i = 1; i < argc; i++)
    if (!h_parse(&cfg, argc, argv, &i)) {
      fprintf(stderr, "mqtt_e2e: unknown option %s\n", argv[i]);
      return 2;
    }
  setvbuf(stdout, NULL, _IOLBF, 0);
  mosquitto_lib_init();
  int drain = strcmp(cfg.mode, "drain") == 0;
  run = calloc(1, sizeof *run);
  h_init(run, &cfg);
  pub = mosquitto_new("e2e-pub", true, NULL);
  mosquitto_max_inflight_messages_set(pub, 0);
  mosquitto_publish_callback_set(pub, on_publish);
  if (mosquitto_connect(pub, "127.0.0.1", cfg.port, 60) != MOSQ_ERR_SUCCESS) return 1;
  mosquitto_loop_start(pub);
  struct mosquitto *sub = sub_start(cfg.port);
  int late;
  char more[600];
  if (!drain) {
    late = h_produce(run, msend, NULL, NULL);
    snprintf(more, sizeof more, "\"threads\":\"mosquitto broker; driver: producer thread + one libmosquitto loop thread per client\"");
  } else {
    /* the session goes offline: its subscription stays, QoS 1 messages are queued for it */
    mosquitto_disconnect(sub);
    mosquitto_loop_stop(sub, false);
    mosquitto_destroy(sub);
    uint8_t *buf = malloc((size_t)run->c.payload);
    double t0 = h_now_s(), end = t0 + cfg.drain_timeout_s;
    for (long i = 0; i < run->c.events && h_now_s() < end; i++) {
      while (i - atomic_load(&pub_acked) >= run->c.inflight && h_now_s() < end) usleep(50);
      atomic_store(&run->issued, i + 1);
      h_fill(buf, run->c.payload, (uint64_t)i);
      if (msend(NULL, (uint64_t)i, buf, (size_t)run->c.payload) != 0) return 1;
    }
    while (atomic_load(&pub_acked) < atomic_load(&run->issued) && h_now_s() < end) usleep(200);
    double t1 = h_now_s();
    long rss_add = h_rss_kib_of(cfg.server_pid, "VmRSS");
    run->t0 = h_now_ns();
    sub = sub_start(cfg.port);
    late = h_wait_completed(run, atomic_load(&run->issued), run->t0 + (uint64_t)(cfg.drain_timeout_s * 1e9));
    double t2 = h_now_s();
    snprintf(more, sizeof more,
             "\"add_seconds\":%.3f,\"add_events_per_s\":%.1f,\"drain_seconds\":%.3f,"
             "\"drain_events_per_s\":%.1f,\"total_events_per_s\":%.1f,\"pub_acks\":%ld,"
             "\"server_rss_after_adds_kib\":%ld,\"server_peak_rss_kib\":%ld,\"add_window\":%ld",
             t1 - t0, (double)run->c.events / (t1 - t0), t2 - (double)run->t0 / 1e9,
             (double)run->c.events / (t2 - (double)run->t0 / 1e9), (double)run->c.events / (t2 - t0),
             atomic_load(&pub_acked), rss_add, h_rss_kib_of(cfg.server_pid, "VmHWM"), run->c.inflight);
  }
  usleep(200000);
  int rc = h_report(run, late, more);
  _exit(rc);
}
