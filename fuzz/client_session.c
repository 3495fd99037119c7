/* The client's session state machine (client/client_events.c, client_report.c, the handler and
 * the connection in net/conn.c) fed sequences of decrypted messages by a raw server. One real
 * client runs for the whole process, dialing a listener of this target on 127.0.0.1 again 1 ms
 * after each connection ends; its handler completes every event at once.
 *
 * Each input is one of its connections: the raw server accepts it, completes the handshake as
 * responder (WELCOME with a store id of its own each time, so every input starts from an empty
 * store as the connection sees it: what the client holds of earlier inputs' stores is kept
 * apart, never reported to this one, and purged after the next input (hd_client_held_stores,
 * hd_client_purge_store), which keeps the client's store small; a pause and a message
 * limit the input picks), waits for RESUME, sends the input's messages (fz_message_next: type,
 * length, body; unknown types, wrong directions and bodies the codec refuses included) in one
 * stream of records or one record per message, then PING; the client must answer PONG or close,
 * within a bound (a hang is a finding). The connection is then closed and the next input waits
 * (bounded) until the client has seen it go. With the first flag bit set the input is instead
 * sent raw in place of the handshake's answer (rejection frames, message 2 framing). Every
 * CHECK_EVERY inputs the stats call must answer; that the client dials again is checked by every
 * accept.
 *
 * Input: a flags byte (1: raw instead of the handshake's answer; 2: one record per message;
 * bits 2-3: the WELCOME's message limit; bits 4-5: its pause; 0x40: read on for LINGER_MS after
 * the PONG, for what the client does after its store writes: CONSUMED, CREDIT; 0x80: the WELCOME
 * carries an epoch and announces every feature, so that NOTICES are the server's to send and
 * the client waits for an EPOCH; without it the server plays one of the release before epochs and
 * features), then the messages or the raw bytes. */
#include "fuzz_util.h"

#include "testutil.h"
#include "transport_util.h"

#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WINDOW 16
#define CHECK_EVERY 64
/* The bound for a redial, RESUME, a PONG or a close: generous, as this virtual machine's host
 * sometimes takes its CPUs away for seconds (steal time), which a tighter bound took for hangs. */
#define REPLY_MS 10000
#define LINGER_MS 10  /* how long the server reads on after PONG when the input asks */

static hd_client_t *client;
static int listener, port;
static atomic_int disconnects; /* connections and attempts the client has seen end */
static uint64_t connections;   /* accepted: also the store id of the next WELCOME */

static void on_disconnected(void *ud, const uint8_t *pk, int status) {
  (void)ud, (void)pk, (void)status;
  atomic_fetch_add(&disconnects, 1);
}

static void on_event(void *ud, hd_event_t *e) {
  (void)ud;
  hd_event_complete(e, 1, "ok", 2);
}

static void stop_client(void) {
  if (client != NULL) hd_client_close_wait(client);
  client = NULL;
  close(listener);
}

static void start_once(void) {
  if (client != NULL) return;
  listener = tu_listen(&port);
  FZ_CHECK(listener >= 0);
  char addr[32];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  hd_client_options_t o = HD_CLIENT_OPTIONS_INIT;
  o.keypair = fz_keypair(1);
  o.server_public_key = fz_keypair(0)->public_key;
  o.topic = FZ_TOPIC;
  o.connect = addr;
  o.data_dir = fz_data_dir("client");
  o.sync_normal = 1;
  o.on_event = on_event;
  o.on_disconnected = on_disconnected;
  fz_verbose_log(&o.log, &o.log_level);
  o.reconnect_min_ms = 1;
  o.reconnect_max_ms = 1;
  o.retry_min_ms = 1;
  o.window = WINDOW;
  FZ_CHECK(hd_client_create(&client, &o) == 0);
  atexit(stop_client); /* after fz_data_dir's: runs before the folder goes */
}

/* Accepts the client's next connection: its socket. */
static int accept_client(void) {
  struct pollfd pf = {listener, POLLIN, 0};
  FZ_CHECK(poll(&pf, 1, REPLY_MS) == 1); /* the client dials again after every connection */
  int fd = accept(listener, NULL, NULL);
  FZ_CHECK(fd >= 0);
  connections++;
  return fd;
}

/* The handshake as the server, answering with `w`; then the peer takes the socket. */
static void handshake(int fd, hd__welcome_t *w, fz_peer_t *p) {
  static uint8_t xs[32], xp[32];
  static int made;
  if (!made) FZ_CHECK(hd__keypair_to_x25519(fz_keypair(0), xs, xp) == 0);
  made = 1;
  uint8_t pre[HD__PREAMBLE_BYTES], lenb[2], msg[512], payload[512], out[512], wp[HD__WELCOME_MAX];
  FZ_CHECK(tu_recv_all(fd, pre, sizeof pre, REPLY_MS) == 0);
  FZ_CHECK(tu_recv_all(fd, lenb, 2, REPLY_MS) == 0);
  size_t len = hd__get_u16be(lenb), plen = 0, olen = 0;
  FZ_CHECK(len > 0 && len <= sizeof msg && tu_recv_all(fd, msg, len, REPLY_MS) == 0);
  hd__handshake_t hs;
  FZ_CHECK(hd__handshake_init(&hs, HD__NOISE_IK, 0, fz_prologue(), FZ_PROLOGUE_LEN, xs, NULL) == 0);
  FZ_CHECK(hd__handshake_read_message(&hs, msg, len, payload, sizeof payload, &plen) == 0);
  size_t wl = hd__welcome_encode(w, wp);
  FZ_CHECK(hd__handshake_write_message(&hs, wp, wl, out + 2, sizeof out - 2, &olen) == 0);
  hd__put_u16be(out, (uint16_t)olen);
  FZ_CHECK(tu_send_all(fd, out, olen + 2) == 0);
  hd__cipher_t tx, rx;
  FZ_CHECK(hd__handshake_split(&hs, &tx, &rx) == 0);
  hd__handshake_wipe(&hs);
  fz_peer_start(p, fd, &tx, &rx);
}

static int has_resume(const fz_peer_t *p, uint64_t arg) {
  (void)arg;
  return p->seen[HD__MSG_RESUME] > 0;
}

static void run_messages(int fd, fz_in_t *in, uint8_t flags) {
  static const uint64_t limits[4] = {HD__DEFAULT_MAX_MESSAGE, 16, 300, 4096};
  hd__welcome_t w = {HD_PROTOCOL_VERSION, {0}, 0, 0, 60000};
  memcpy(w.store_id, &connections, sizeof connections); /* another store each time */
  w.max_message_bytes = limits[flags >> 2 & 3];
  w.pause_ms = (flags >> 4 & 3) * 5;
  if (flags & 0x80) {
    w.has_epoch = 1;
    memset(w.epoch, 0xe0, sizeof w.epoch);
    w.features = HD__FEATURES_ALL;
  }
  fz_peer_t p;
  handshake(fd, &w, &p);
  FZ_CHECK(fz_peer_wait(&p, has_resume, 0, REPLY_MS) == 1);
  fz_peer_play(&p, in, flags & 2, REPLY_MS, flags & 0x40 ? LINGER_MS : 0);
  fz_peer_close(&p, 1); /* no TIME-WAIT here: see fz_close_reset */
}

/* Drops what the client holds for the stores of earlier inputs (not the last one's: that is the
 * current store until the next connection, which a purge refuses). */
static void purge_earlier_stores(void) {
  uint8_t ids[4][HD_STORE_ID_BYTES];
  int n = hd_client_held_stores(client, ids[0], NULL, NULL, 4);
  FZ_CHECK(n >= 0);
  for (int i = 0; i < n && i < 4; i++) {
    FZ_CHECK(hd_client_purge_store(client, ids[i], NULL, NULL) == 0);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static unsigned runs;
  start_once();
  if (runs++ % CHECK_EVERY == 0) {
    hd_client_stats_t st;
    FZ_CHECK(hdt_client_stats(client, &st) == 0);
  }
  fz_in_t in = {data, size};
  uint8_t flags = fz_u8(&in);
  int before = atomic_load(&disconnects);
  int fd = accept_client();
  if (flags & 1) {
    if (in.n) tu_send_all(fd, in.p, in.n); /* fails once the client has closed: fine */
    fz_close_reset(fd);
  } else {
    run_messages(fd, &in, flags);
  }
  FZ_CHECK(WAIT_FOR(atomic_load(&disconnects) > before, REPLY_MS));
  purge_earlier_stores();
  return 0;
}
