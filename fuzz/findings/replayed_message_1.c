/* Finding: a replayed handshake message 1 takes the genuine client's place. Noise IK's first
 * message carries no freshness, so its bytes, captured once, open a new connection for that
 * client's identity whenever they are sent again; the server then closes the genuine connection
 * ("replaced by a newer connection of the same peer", server/server.c on_conn_open). Whoever
 * replays it cannot read or send records, but can keep the user disconnected.
 *
 * Here the bytes are fuzz/corpus/server_session/raw-handshake (a fixed ephemeral key: the same
 * bytes every time). Exit 1 while the replay replaces the genuine connection, 0 once it does not.
 * Run from the root of the checkout: make fuzz-findings. */
#include "fuzz_util.h"
#include "testutil.h"
#include "transport_util.h"

#include <stdio.h>
#include <string.h>

int main(void) {
  FZ_CHECK(hd_init() == 0);
  hd_server_options_t o = HD_SERVER_OPTIONS_INIT;
  o.keypair = fz_keypair(0);
  o.topic = FZ_TOPIC;
  o.listen = "127.0.0.1:0";
  o.data_dir = fz_data_dir("replay");
  hd_server_t *s;
  FZ_CHECK(hd_server_create(&s, &o) == 0);
  int port = hd_server_port(s);

  tu_raw_t r;
  memset(&r, 0, sizeof r);
  FZ_CHECK((r.fd = fz_connect(port)) >= 0);
  FZ_CHECK(tu_raw_handshake(&r, fz_keypair(1), fz_keypair(0)->public_key, FZ_TOPIC) == 0);
  fz_peer_t genuine;
  fz_peer_start(&genuine, r.fd, &r.tx, &r.rx);
  FZ_CHECK(fz_peer_barrier(&genuine, 1, 5000) == 1);

  uint8_t seed[512], pre[HD__PREAMBLE_BYTES], head[2];
  FILE *f = fopen("fuzz/corpus/server_session/raw-handshake", "rb");
  FZ_CHECK(f != NULL);
  size_t n = fread(seed, 1, sizeof seed, f);
  fclose(f);
  FZ_CHECK(n > 1 && seed[0] == 3); /* raw mode, after a valid preamble */
  int fd = fz_connect(port);
  FZ_CHECK(fd >= 0);
  hd__preamble_encode(pre, fz_prologue() + FZ_PROLOGUE_LEN - HD_TOPIC_BYTES);
  FZ_CHECK(tu_send_all(fd, pre, sizeof pre) == 0 && tu_send_all(fd, seed + 1, n - 1) == 0);
  int answered = tu_recv_all(fd, head, 2, 5000) == 0 && (head[0] | head[1]) != 0;
  int alive = fz_peer_barrier(&genuine, 2, 5000) == 1;
  printf("replayed message 1 %s; the genuine connection is %s\n",
         answered ? "answered with message 2" : "refused", alive ? "still up" : "closed");
  fz_peer_close(&genuine, 0);
  close(fd);
  hd_server_close_wait(s);
  return alive ? 0 : 1;
}
