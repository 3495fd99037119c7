/* The server's session state machine (server/session.c, consumed.c, the connection in
 * net/conn.c) fed sequences of decrypted messages by a raw client. One real server runs for the
 * whole process on 127.0.0.1 (a port of its own, a store in a fresh folder) and holds a few
 * pending events for the raw client's user; its consumption callback always completes with
 * failure, so the store keeps them and every input meets the same server state.
 *
 * Each input is one fresh connection: the raw client (test/util/transport_util.h) completes the
 * handshake as that user (through the server's authorization callback, which admits it), sends
 * the input's messages (fz_message_next: type, length, body;
 * unknown types and bodies the codec refuses included) in one stream of records or one record
 * per message, then PING; the server must answer PONG or close the connection, within a bound
 * (a hang is a finding). The connection is then closed and the next input waits (bounded) until
 * the server has seen it go. With the first flag bit set the input is instead sent raw before
 * the handshake (preamble and handshake parsing), optionally after a valid preamble. Every
 * CHECK_EVERY inputs no event may be lost (each held, or a dead letter when a client that
 * announced FAILED failed it: those are requeued) and a good client must still be served: RESUME
 * gets EVENTS, and the stats call answers.
 *
 * Input: a flags byte (1: raw before the handshake; 2: one record per message, or in raw mode a
 * valid preamble first; 0x40: read on for LINGER_MS after the PONG, for what the server does
 * after its store reads and writes; 0x80: the raw client's HELLO announces every feature, so that
 * FAILED is the client's to send; without it the client plays one of the release before the
 * features), then the messages or the raw bytes. */
#include "fuzz_util.h"

#include "testutil.h"
#include "transport_util.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define PENDING 12       /* events the user has waiting */
#define BIG_PAYLOAD 70000 /* one of them spans records */
#define CHECK_EVERY 64
/* The bound for a PONG, a close, or the server noticing our close: generous, as this virtual
 * machine's host sometimes takes its CPUs away for seconds (steal time), which a tighter bound
 * took for hangs. */
#define REPLY_MS 10000
#define LINGER_MS 10     /* how long the peer reads on after PONG when the input asks */

static hd_server_t *server;
static int port;
static atomic_int disconnects; /* connections the server has closed */
static int opened;             /* connections we made */

static void on_disconnected(void *ud, const uint8_t *pk, int status) {
  (void)ud, (void)pk, (void)status;
  atomic_fetch_add(&disconnects, 1);
}

/* Admits every key, so that each handshake goes through the authorization step (the connection
 * waiting in HD__CONN_AUTHORIZING, then answered). */
static void authorize(void *ud, const uint8_t key[32], hd_authorization_t *req) {
  (void)ud, (void)key;
  FZ_CHECK(hd_authorization_allow(req) == 0);
}

/* Keeps every event: the next input meets the same store. */
static void on_consumed(void *ud, const uint8_t user[32], hd_consumed_t *batch) {
  (void)ud, (void)user;
  hd_consumed_complete_all(batch, 0);
}

static void stop_server(void) {
  if (server != NULL) hd_server_close_wait(server);
  server = NULL;
}

static void start_once(void) {
  if (server != NULL) return;
  hd_server_options_t o = HD_SERVER_OPTIONS_INIT;
  o.keypair = fz_keypair(0);
  o.topic = FZ_TOPIC;
  o.listen = "127.0.0.1:0";
  o.data_dir = fz_data_dir("server");
  o.sync_normal = 1;
  o.on_consumed = on_consumed;
  o.on_peer_disconnected = on_disconnected;
  o.authorize = authorize;
  o.handshakes_per_address = UINT32_MAX; /* every input is a connection from 127.0.0.1 */
  fz_verbose_log(&o.log, &o.log_level);
  FZ_CHECK(hd_server_create(&server, &o) == 0);
  atexit(stop_server); /* after fz_data_dir's: runs before the folder goes */
  port = hd_server_port(server);
  FZ_CHECK(port > 0);
  static uint8_t payload[BIG_PAYLOAD];
  for (int i = 0; i < PENDING; i++) {
    size_t len = i == PENDING / 2 ? sizeof payload : (size_t)(i + 1) * 7;
    memset(payload, 'a' + i, len);
    FZ_CHECK(hd_server_add_event_wait(server, fz_keypair(1)->public_key, payload, len, NULL) == 0);
  }
}

/* Waits until the server has closed every connection we made. */
static void wait_server_closed(void) {
  FZ_CHECK(WAIT_FOR(atomic_load(&disconnects) >= opened, REPLY_MS));
}

/* A connection as the user, handshake done; the peer takes the socket. */
static void connect_peer(fz_peer_t *p, uint64_t features) {
  tu_raw_t r;
  memset(&r, 0, sizeof r);
  r.features = features;
  FZ_CHECK((r.fd = fz_connect(port)) >= 0);
  opened++;
  FZ_CHECK(tu_raw_handshake(&r, fz_keypair(1), fz_keypair(0)->public_key, FZ_TOPIC) == 0);
  fz_peer_start(p, r.fd, &r.tx, &r.rx);
}

static int has_events(const fz_peer_t *p, uint64_t arg) {
  (void)arg;
  return p->seen[HD__MSG_EVENTS] > 0;
}

/* The user's events the store holds (notices aside: the listing skips them). */
static uint64_t held_events(void) {
  hd_event_info_t ev[16];
  uint64_t cursor = 0, n = 0;
  int got;
  while ((got = hd_server_list_events(server, fz_keypair(1)->public_key, &cursor, ev, 16, NULL,
                                      0)) > 0) {
    n += (uint64_t)got;
  }
  FZ_CHECK(got == 0);
  return n;
}

/* No event is lost: each is held or, failed by a client that announced FAILED (its own to
 * report), a dead letter; those are requeued, so that the inputs keep meeting events. The server
 * still serves a good client and answers calls. */
static void check_alive(void) {
  hd_server_stats_t st;
  FZ_CHECK(hdt_server_stats(server, &st) == 0 && held_events() + st.dead_letters == PENDING);
  if (st.dead_letters > 0) {
    uint64_t n = 0;
    FZ_CHECK(hd_server_requeue_dead_letters_wait(server, fz_keypair(1)->public_key, NULL, 0,
                                                 &n) == 0 && n == st.dead_letters);
    FZ_CHECK(held_events() == PENDING);
  }
  fz_peer_t p;
  connect_peer(&p, HD__FEATURES_ALL);
  hd__resume_t resume = {{0}, 0, 4};
  hd__buf_t m;
  hd__buf_init(&m);
  FZ_CHECK(hd__msg_encode_resume(&m, &resume) == 0);
  FZ_CHECK(fz_peer_send(&p, m.data, m.len) == 0);
  hd__buf_free(&m);
  FZ_CHECK(fz_peer_barrier(&p, 1, REPLY_MS) == 1);
  FZ_CHECK(fz_peer_wait(&p, has_events, 0, REPLY_MS) == 1);
  fz_peer_close(&p, 0);
  wait_server_closed();
}

static void run_messages(fz_in_t *in, uint8_t flags) {
  fz_peer_t p;
  connect_peer(&p, flags & 0x80 ? HD__FEATURES_ALL : 0);
  fz_peer_play(&p, in, flags & 2, REPLY_MS, flags & 0x40 ? LINGER_MS : 0);
  fz_peer_close(&p, 0);
}

static void run_raw(fz_in_t *in, int preamble) {
  int fd = fz_connect(port);
  FZ_CHECK(fd >= 0);
  opened++;
  if (preamble) {
    uint8_t pre[HD__PREAMBLE_BYTES];
    hd__preamble_encode(pre, fz_prologue() + FZ_PROLOGUE_LEN - HD_TOPIC_BYTES);
    tu_send_all(fd, pre, sizeof pre);
  }
  if (in->n) tu_send_all(fd, in->p, in->n); /* fails once the server has closed: fine */
  shutdown(fd, SHUT_WR);
  FZ_CHECK(tu_wait_closed(fd, REPLY_MS));
  close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static unsigned runs;
  start_once();
  if (runs++ % CHECK_EVERY == 0) check_alive();
  fz_in_t in = {data, size};
  uint8_t flags = fz_u8(&in);
  if (flags & 1) run_raw(&in, flags & 2);
  else run_messages(&in, flags);
  wait_server_closed();
  return 0;
}
