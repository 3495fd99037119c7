/* The demo: the original example's peers with their own key pairs, on loopback. A server, an
 * online user and an offline user who comes later authenticate over the Noise handshake; a user
 * who trusts another server key is refused. (Event delivery joins this demo with the stores.) */
#include <hyperdown.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>

static const char *const keys[3][2] = {
    {"808a6e175b246bc93d4adaada45d49c031296efb36da7fdf3c5128d3eb46fd5e",
     "9b0e5bf749a3fd55ca5d08b225962bae6c0c826d9822a79e36b1871b50da82fe"},
    {"684e14316d8f379829ee5d1b883dffd2cf123f2987b8658353ae740ed8758565",
     "09f9cb2e6097bab4936696c7fb2e80c52ecc7e7a0dfe67274d93198e785c1558"},
    {"b0cf93c3f3589ea5e7a09b752e7b6492e6e331661da8fe88854d692aec59114f",
     "4cce6d17f4000b19b9f752fb7c185a56cff16d86f0cda8673e5ab6baed9e7171"},
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static int connected_users, answered_clients;

static void die(const char *what, int rc) {
  fprintf(stderr, "demo: %s: %s (%s)\n", what, hd_last_error_message(), hd_err_name(rc));
  exit(1);
}

static void load(hd_keypair_t *kp, int i) {
  uint8_t scalar[32], pk[32];
  int rc;
  if ((rc = hd_hex_decode(scalar, 32, keys[i][0])) != 0) die("scalar", rc);
  if ((rc = hd_hex_decode(pk, 32, keys[i][1])) != 0) die("public key", rc);
  if ((rc = hd_keypair_from_scalar(kp, scalar, pk)) != 0) die("key pair", rc);
}

static void short_hex(char out[17], const uint8_t *key) { hd_hex_encode(out, 17, key, 8); }

static void server_peer(void *ud, const uint8_t pk[32]) {
  char hex[17];
  short_hex(hex, pk);
  printf("server: user %s... authenticated\n", hex);
  pthread_mutex_lock(&lock);
  connected_users++;
  pthread_cond_broadcast(&changed);
  pthread_mutex_unlock(&lock);
}

static void server_peer_gone(void *ud, const uint8_t *pk, int status) {
  if (status != 0) printf("server: refused a peer: %s (%s)\n", hd_last_error_message(), hd_err_name(status));
}

static void client_connected(void *ud, const uint8_t pk[32]) {
  char hex[17];
  short_hex(hex, pk);
  printf("%s: connected to server %s...\n", (const char *)ud, hex);
  pthread_mutex_lock(&lock);
  answered_clients++;
  pthread_cond_broadcast(&changed);
  pthread_mutex_unlock(&lock);
}

static void client_disconnected(void *ud, const uint8_t *pk, int status) {
  if (status == 0) return;
  printf("%s: %s (%s)\n", (const char *)ud, hd_last_error_message(), hd_err_name(status));
  pthread_mutex_lock(&lock);
  answered_clients++;
  pthread_cond_broadcast(&changed);
  pthread_mutex_unlock(&lock);
}

static hd_client_t *dial(const char *name, const hd_keypair_t *kp, const uint8_t *server_pk,
                         const char *addr) {
  hd_client_options_t o = HD_CLIENT_OPTIONS_INIT;
  hd_client_t *c;
  int rc;
  o.keypair = kp;
  o.server_public_key = server_pk;
  o.topic = "topic";
  o.connect = addr;
  o.no_reconnect = 1;
  o.user_data = (void *)name;
  o.on_connected = client_connected;
  o.on_disconnected = client_disconnected;
  if ((rc = hd_client_create(&c, &o)) != 0) die("client", rc);
  return c;
}

static void wait_for(int *counter, int want) {
  pthread_mutex_lock(&lock);
  while (*counter < want) pthread_cond_wait(&changed, &lock);
  pthread_mutex_unlock(&lock);
}

int main(void) {
  hd_keypair_t server_kp, user1, user2, stranger;
  hd_server_options_t so = HD_SERVER_OPTIONS_INIT;
  hd_server_t *server;
  char addr[64];
  int rc;

  if ((rc = HD_CHECK_VERSION()) != 0) die("version", rc);
  printf("hyperdown %s: the original example's peers, on loopback\n", hd_version_string());
  load(&server_kp, 0);
  load(&user1, 1);
  load(&user2, 2);
  if ((rc = hd_keypair_generate(&stranger)) != 0) die("keygen", rc);

  so.keypair = &server_kp;
  so.topic = "topic";
  so.listen = "127.0.0.1:0";
  so.on_peer_connected = server_peer;
  so.on_peer_disconnected = server_peer_gone;
  if ((rc = hd_server_create(&server, &so)) != 0) die("server", rc);
  snprintf(addr, sizeof addr, "127.0.0.1:%d", hd_server_port(server));
  printf("server: listening on %s\n", addr);

  hd_client_t *online = dial("client1 (online)", &user1, server_kp.public_key, addr);
  wait_for(&answered_clients, 1);
  printf("client2 is offline for now... and comes back later\n");
  usleep(200 * 1000);
  hd_client_t *offline = dial("client2 (came back)", &user2, server_kp.public_key, addr);
  wait_for(&answered_clients, 2);
  wait_for(&connected_users, 2);

  /* A user who trusts another server key is refused by the handshake, and says why. */
  hd_client_t *wrong = dial("client3 (wrong server key)", &stranger, stranger.public_key, addr);
  wait_for(&answered_clients, 3);

  hd_client_close_wait(wrong);
  hd_client_close_wait(offline);
  hd_client_close_wait(online);
  hd_server_close_wait(server);
  printf("server: left\n");
  return 0;
}
