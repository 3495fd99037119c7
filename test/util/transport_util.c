/* transport_util.h: log capture, peer callbacks, messages, options, the raw client. */
#include "transport_util.h"

#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- log capture ---- */
static pthread_mutex_t tu_log_mu = PTHREAD_MUTEX_INITIALIZER;
static char tu_log_text[65536];
static size_t tu_log_len;

void tu_log(void *ud, hd_log_level_t level, const char *msg) {
  (void)ud;
  pthread_mutex_lock(&tu_log_mu);
  int n = snprintf(tu_log_text + tu_log_len, sizeof tu_log_text - tu_log_len, "[%d] %s\n",
                   (int)level, msg);
  if (n > 0 && tu_log_len + (size_t)n < sizeof tu_log_text) tu_log_len += (size_t)n;
  if (hdt_verbose()) fprintf(stderr, "log [%d] %s\n", (int)level, msg);
  pthread_mutex_unlock(&tu_log_mu);
}

void tu_log_clear(void) {
  pthread_mutex_lock(&tu_log_mu);
  tu_log_len = 0;
  tu_log_text[0] = '\0';
  pthread_mutex_unlock(&tu_log_mu);
}

int tu_log_has(const char *needle) {
  pthread_mutex_lock(&tu_log_mu);
  int found = strstr(tu_log_text, needle) != NULL;
  pthread_mutex_unlock(&tu_log_mu);
  return found;
}

/* ---- peer state recorded by callbacks ---- */

void tu_peer_init(tu_peer_t *p) {
  memset(p, 0, sizeof *p);
  pthread_mutex_init(&p->detail_lock, NULL);
  atomic_store(&p->next_seq, 1);
}

int tu_peer_detail_has(tu_peer_t *p, const char *needle) {
  pthread_mutex_lock(&p->detail_lock);
  int has = strstr(p->detail, needle) != NULL;
  pthread_mutex_unlock(&p->detail_lock);
  return has;
}

void tu_on_connected(void *ud, const uint8_t pk[32]) {
  tu_peer_t *p = ud;
  memcpy(p->key, pk, 32);
  atomic_fetch_add(&p->connected, 1);
}

void tu_on_disconnected(void *ud, const uint8_t *pk, int status) {
  tu_peer_t *p = ud;
  pthread_mutex_lock(&p->detail_lock);
  snprintf(p->detail, sizeof p->detail, "%s", hd_last_error_message());
  pthread_mutex_unlock(&p->detail_lock);
  atomic_store(&p->last_had_key, pk != NULL);
  atomic_store(&p->last_status, status);
  atomic_fetch_add(&p->disconnected, 1);
}

void tu_on_closed(void *ud) { atomic_fetch_add(&((tu_peer_t *)ud)->closed, 1); }
void tu_on_destroy(void *ud) { atomic_fetch_add(&((tu_peer_t *)ud)->destroyed, 1); }

/* EVENTS bodies: one entry (seq, payload of `len` bytes of a pattern derived from seq). */
hd__buf_t tu_events_message(uint64_t seq, size_t len) {
  hd__buf_t b;
  hd__buf_init(&b);
  uint8_t *payload = malloc(len ? len : 1);
  for (size_t i = 0; i < len; i++) payload[i] = (uint8_t)(seq * 31 + i);
  hd__entry_t e = {.seq = seq, .created_ms = 1700000000000ull, .data = payload, .len = len};
  hd__msg_encode_events(&b, &e, 1);
  free(payload);
  return b;
}

/* The body of a whole encoded message (after the length varint and the type byte). */
const uint8_t *tu_body(const hd__buf_t *m, size_t *len) {
  uint64_t l = 1;
  int n = hd__varint_get(m->data, m->len, &l);
  *len = (size_t)l - 1;
  return m->data + n + 1;
}

void tu_count_events(tu_peer_t *p, uint8_t type, const uint8_t *body, size_t len) {
  atomic_fetch_add(&p->bytes, (long long)len);
  if (type == HD__MSG_EVENTS) {
    hd__entry_iter_t it;
    uint64_t count;
    if (hd__msg_entries_begin(&it, type, body, len, &count) == 0) {
      hd__entry_t e;
      while (hd__msg_entries_next(&it, &e)) {
        if ((long long)e.seq != atomic_load(&p->next_seq)) atomic_fetch_add(&p->out_of_order, 1);
        atomic_store(&p->next_seq, (long long)e.seq + 1);
        if (e.len > 65519) {
          int ok = 1;
          for (size_t i = 0; i < e.len; i++) {
            if (e.data[i] != (uint8_t)(e.seq * 31 + i)) ok = 0;
          }
          if (ok) atomic_fetch_add(&p->big_ok, 1);
        }
      }
    }
  }
  atomic_fetch_add(&p->messages, 1);
}

void tu_count_hook(void *ud, hd__conn_t *c, uint8_t type, const uint8_t *body, size_t len) {
  (void)c;
  tu_count_events(ud, type, body, len);
}

/* ---- handles ---- */
/* A fresh store folder under /tmp for a server, removed at exit by the process that made it
 * (a forked child that exits must not remove its parent's folders). */
static char tu_dirs[512][32];
static int tu_ndirs;
static pid_t tu_dirs_pid;

static void tu_dirs_cleanup(void) {
  if (getpid() != tu_dirs_pid) return;
  for (int i = 0; i < tu_ndirs; i++) hdt_rmrf(tu_dirs[i]);
  tu_ndirs = 0;
}

const char *tu_data_dir(void) {
  if (tu_ndirs == 0 && tu_dirs_pid == 0) {
    tu_dirs_pid = getpid();
    atexit(tu_dirs_cleanup);
  }
  static char spare[32];
  char *d = tu_ndirs < 512 ? tu_dirs[tu_ndirs] : spare; /* past 512: left in /tmp */
  snprintf(d, sizeof tu_dirs[0], "/tmp/hd-tu-XXXXXX");
  if (mkdtemp(d) == NULL) return NULL;
  if (d != spare) tu_ndirs++;
  return d;
}

hd_server_options_t tu_server_options(const hd_keypair_t *kp, const char *topic,
                                      const char *listen, tu_peer_t *p) {
  hd_server_options_t o = HD_SERVER_OPTIONS_INIT;
  o.keypair = kp;
  o.topic = topic;
  o.listen = listen;
  o.data_dir = tu_data_dir();
  o.user_data = p;
  o.destroy = tu_on_destroy;
  o.log = tu_log;
  o.log_level = hdt_verbose() ? HD_LOG_DEBUG : HD_LOG_INFO;
  o.on_peer_connected = tu_on_connected;
  o.on_peer_disconnected = tu_on_disconnected;
  return o;
}

/* The client's handler: every event is handled at once. */
void tu_on_event(void *ud, hd_event_t *e) {
  (void)ud;
  hd_event_complete(e, 1, NULL, 0);
}

hd_client_options_t tu_client_options(const hd_keypair_t *kp, const uint8_t *server_pk,
                                      const char *topic, const char *connect,
                                      tu_peer_t *p) {
  hd_client_options_t o = HD_CLIENT_OPTIONS_INIT;
  o.keypair = kp;
  o.server_public_key = server_pk;
  o.topic = topic;
  o.connect = connect;
  o.user_data = p;
  o.destroy = tu_on_destroy;
  o.log = tu_log;
  o.log_level = hdt_verbose() ? HD_LOG_DEBUG : HD_LOG_INFO;
  o.on_connected = tu_on_connected;
  o.on_disconnected = tu_on_disconnected;
  o.data_dir = tu_data_dir();
  o.on_event = tu_on_event;
  o.reconnect_min_ms = 20;
  o.reconnect_max_ms = 200;
  return o;
}

/* ---- raw client over a blocking socket ---- */

int tu_raw_connect(tu_raw_t *r, int port) {
  memset(r, 0, sizeof *r);
  r->fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int one = 1;
  setsockopt(r->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return connect(r->fd, (struct sockaddr *)&a, sizeof a);
}

int tu_listen(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof a;
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 8) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &al) != 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  *port = ntohs(a.sin_port);
  return fd;
}

int tu_send_all(int fd, const void *p, size_t n) {
  const uint8_t *b = p;
  while (n > 0) {
    ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
    if (w <= 0) return -1;
    b += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Reads exactly n bytes within `ms`; 0 ok, -1 closed or timed out. */
int tu_recv_all(int fd, void *p, size_t n, int ms) {
  uint8_t *b = p;
  uint64_t dl = hdt_now_ms() + (uint64_t)ms * hdt_slow();
  while (n > 0) {
    struct pollfd pf = {fd, POLLIN, 0};
    uint64_t now = hdt_now_ms();
    if (now >= dl) return -1;
    if (poll(&pf, 1, (int)(dl - now)) <= 0) return -1;
    ssize_t r = recv(fd, b, n, 0);
    if (r <= 0) return -1;
    b += r;
    n -= (size_t)r;
  }
  return 0;
}

/* 1 if the peer closed the socket (EOF or reset) within `ms`, discarding what it sent. */
int tu_wait_closed(int fd, int ms) {
  uint64_t dl = hdt_now_ms() + (uint64_t)ms * hdt_slow();
  uint8_t buf[4096];
  for (;;) {
    uint64_t now = hdt_now_ms();
    if (now >= dl) return 0;
    struct pollfd pf = {fd, POLLIN, 0};
    if (poll(&pf, 1, (int)(dl - now)) <= 0) continue;
    ssize_t r = recv(fd, buf, sizeof buf, 0);
    if (r <= 0) return 1;
  }
}

void tu_prologue(uint8_t out[43], const char *topic) {
  memcpy(out, "hyperdown/1", 11);
  hd_topic_key(out + 11, topic, strlen(topic));
}

/* Preamble + Noise IK handshake as a client; 0 when the transport ciphers are ready. */
int tu_raw_handshake(tu_raw_t *r, const hd_keypair_t *kp, const uint8_t server_pk[32],
                     const char *topic) {
  int rc = tu_raw_handshake_only(r, kp, server_pk, topic);
  return rc != 0 ? rc : tu_raw_prove(r);
}

int tu_raw_prove(tu_raw_t *r) {
  uint8_t rec[HD__RECORD_HEADER + HD__RECORD_TAG];
  hd__put_u16be(rec, HD__RECORD_TAG);
  if (hd__cipher_encrypt(&r->tx, NULL, 0, NULL, 0, rec + HD__RECORD_HEADER) != 0) return -1;
  return tu_send_all(r->fd, rec, sizeof rec);
}

int tu_raw_handshake_only(tu_raw_t *r, const hd_keypair_t *kp, const uint8_t server_pk[32],
                          const char *topic) {
  uint8_t xs[32], xp[32], srv_x[32], prologue[43];
  tu_prologue(prologue, topic);
  hd__keypair_to_x25519(kp, xs, xp);
  hd__ed25519_pk_to_x25519(server_pk, srv_x);
  hd__handshake_t hs;
  if (hd__handshake_init(&hs, HD__NOISE_IK, 1, prologue, 43, xs, srv_x) != 0) return -1;
  hd__hello_t hello = {.version = HD_PROTOCOL_VERSION, .max_message_bytes = HD__DEFAULT_MAX_MESSAGE,
                       .features = r->features};
  memcpy(hello.public_key, kp->public_key, 32);
  uint8_t hp[HD__HELLO_MAX], out[16 + 2 + 512];
  size_t hl = hd__hello_encode(&hello, hp), ml = 0;
  hd__preamble_encode(out, prologue + 11);
  if (hd__handshake_write_message(&hs, hp, hl, out + 18, 512, &ml) != 0) return -1;
  hd__put_u16be(out + 16, (uint16_t)ml);
  memcpy(r->sent, out, 18 + ml);
  r->sent_len = 18 + ml;
  if (tu_send_all(r->fd, out, 18 + ml) != 0) return -1;
  uint8_t lenb[2], msg[512], payload[512];
  if (tu_recv_all(r->fd, lenb, 2, 3000) != 0) return -1;
  size_t len = hd__get_u16be(lenb), pl = 0;
  if (len == 0 || len > sizeof msg || tu_recv_all(r->fd, msg, len, 3000) != 0) return -1;
  if (hd__handshake_read_message(&hs, msg, len, payload, sizeof payload, &pl) != 0) return -1;
  if (hd__welcome_decode(payload, pl, &r->welcome) != 0) return -1;
  int rc = hd__handshake_split(&hs, &r->tx, &r->rx);
  hd__handshake_wipe(&hs);
  return rc;
}

/* Seals one whole encoded message into records and sends them; `tamper` flips a ciphertext bit. */
int tu_raw_send(tu_raw_t *r, const hd__buf_t *msg, int tamper) {
  hd__buf_t rec;
  hd__buf_init(&rec);
  if (hd__record_seal(&r->tx, msg->data, msg->len, &rec) != 0) return -1;
  if (tamper) rec.data[3] ^= 0x01;
  int rc = tu_send_all(r->fd, rec.data, rec.len);
  hd__buf_free(&rec);
  return rc;
}
