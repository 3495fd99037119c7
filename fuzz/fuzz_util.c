/* fuzz_util.h: input reading, checks, chunked feeding, keys and ciphers, the handshake driver,
 * HELLO/WELCOME round trips, the stateful targets' message format, the raw peer. */
#include "fuzz_util.h"

#include "testutil.h"
#include "transport_util.h"

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- checks ---- */

void fz_fail(const char *file, int line, const char *what) {
  fprintf(stderr, "fuzz check failed at %s:%d: %s (last error: %s: %s)\n", file, line, what,
          hd_err_name(hd_last_error_code()), hd_last_error_message());
  abort();
}

/* ---- reading an input ---- */

uint8_t fz_u8(fz_in_t *in) {
  if (in->n == 0) return 0;
  in->n--;
  return *in->p++;
}

uint16_t fz_u16(fz_in_t *in) {
  uint16_t hi = fz_u8(in);
  return (uint16_t)(hi << 8 | fz_u8(in));
}

uint64_t fz_u64(fz_in_t *in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | fz_u8(in);
  return v;
}

const uint8_t *fz_take(fz_in_t *in, size_t want, size_t *got) {
  const uint8_t *p = in->p;
  *got = want < in->n ? want : in->n;
  in->p += *got;
  in->n -= *got;
  return p;
}

void fz_copy(fz_in_t *in, uint8_t *out, size_t n) {
  size_t got;
  const uint8_t *p = fz_take(in, n, &got);
  if (got) memcpy(out, p, got);
  memset(out + got, 0, n - got);
}

uint8_t fz_back_u8(fz_in_t *in) {
  if (in->n == 0) return 0;
  return in->p[--in->n];
}

fz_in_t fz_tail(fz_in_t *in, size_t n) {
  if (n > in->n) n = in->n;
  in->n -= n;
  fz_in_t tail = {in->p + in->n, n};
  return tail;
}

/* ---- feeding in chunks ---- */

/* 0: an empty feed; below 0x80: 1..32 bytes (cuts inside headers and varints); below 0xff:
 * 64..8128 bytes; 0xff: everything left. */
static size_t chunk_size(uint8_t b, size_t left) {
  size_t want = b == 0 ? 0 : b < 0x80 ? 1 + (b & 0x1f) : b < 0xff ? (size_t)(b - 0x7f) * 64 : left;
  return want < left ? want : left;
}

int fz_feed_chunks(const uint8_t *data, size_t n, fz_in_t *sizes, fz_feed_fn feed, void *ctx) {
  int first = 0;
  size_t off = 0;
  while (off < n) {
    size_t len = sizes->n > 0 ? chunk_size(fz_back_u8(sizes), n - off) : n - off;
    uint8_t *chunk = malloc(len ? len : 1);
    FZ_CHECK(chunk != NULL);
    if (len) memcpy(chunk, data + off, len);
    int rc = feed(ctx, chunk, len);
    free(chunk);
    if (first != 0) FZ_CHECK(rc == first); /* the error is sticky */
    else first = rc;
    off += len;
  }
  return first;
}

/* ---- identities and ciphers ---- */

const hd_keypair_t *fz_keypair(int i) {
  static hd_keypair_t kp[3];
  static int made[3];
  if (!made[i]) {
    uint8_t seed[HD_SEED_BYTES];
    memset(seed, 0x51 + i, sizeof seed);
    FZ_CHECK(hd_keypair_from_seed(&kp[i], seed) == 0);
    made[i] = 1;
  }
  return &kp[i];
}

const uint8_t *fz_prologue(void) {
  static uint8_t prologue[FZ_PROLOGUE_LEN];
  static int made;
  if (!made) {
    tu_prologue(prologue, FZ_TOPIC);
    made = 1;
  }
  return prologue;
}

/* Both sides of a handshake on fz_prologue(): `ini` with fz_keypair(1), `res` with
 * fz_keypair(0), fixed ephemerals. */
static void handshake_pair(hd__noise_pattern_t pattern, hd__handshake_t *ini,
                           hd__handshake_t *res) {
  static uint8_t xs[2][32], xp[2][32];
  static int made;
  uint8_t e[32];
  for (int i = 0; !made && i < 2; i++)
    FZ_CHECK(hd__keypair_to_x25519(fz_keypair(i), xs[i], xp[i]) == 0);
  made = 1;
  FZ_CHECK(hd__handshake_init(ini, pattern, 1, fz_prologue(), FZ_PROLOGUE_LEN, xs[1], xp[0]) == 0);
  FZ_CHECK(hd__handshake_init(res, pattern, 0, fz_prologue(), FZ_PROLOGUE_LEN, xs[0], NULL) == 0);
  memset(e, 0xe1, sizeof e);
  hd__handshake_fix_ephemeral(ini, e);
  memset(e, 0xe2, sizeof e);
  hd__handshake_fix_ephemeral(res, e);
}

/* Writes the next message of `w` with `payload` and has `r` read it: 0 or the read's error. */
static int pass_message(hd__handshake_t *w, hd__handshake_t *r, const uint8_t *payload,
                        size_t len) {
  uint8_t msg[512], got[512];
  size_t mlen = 0, glen = 0;
  FZ_CHECK(hd__handshake_write_message(w, payload, len, msg, sizeof msg, &mlen) == 0);
  int rc = hd__handshake_read_message(r, msg, mlen, got, sizeof got, &glen);
  if (rc == 0) FZ_CHECK(glen == len && (len == 0 || memcmp(got, payload, len) == 0));
  return rc;
}

/* Splits both sides and checks that each one's sending cipher is the other's receiving one. */
static void check_split(hd__handshake_t *ini, hd__handshake_t *res, hd__cipher_t c[4]) {
  FZ_CHECK(memcmp(hd__handshake_hash(ini), hd__handshake_hash(res), HD__NOISE_HASHLEN) == 0);
  FZ_CHECK(hd__handshake_split(ini, &c[0], &c[1]) == 0);
  FZ_CHECK(hd__handshake_split(res, &c[2], &c[3]) == 0);
  for (int i = 0; i < 2; i++) {
    hd__cipher_t *tx = &c[i == 0 ? 0 : 2], *rx = &c[i == 0 ? 3 : 1];
    uint8_t pt[4] = {'p', 'i', 'n', 'g'}, ct[4 + HD__NOISE_TAGLEN], back[4];
    FZ_CHECK(hd__cipher_encrypt(tx, NULL, 0, pt, 4, ct) == 0);
    FZ_CHECK(hd__cipher_decrypt(rx, NULL, 0, ct, sizeof ct, back) == 0);
    FZ_CHECK(memcmp(back, pt, 4) == 0);
  }
}

void fz_cipher_pair(hd__cipher_t *send, hd__cipher_t *recv) {
  static hd__cipher_t c[4];
  static int made;
  if (!made) {
    hd__handshake_t ini, res;
    handshake_pair(HD__NOISE_IK, &ini, &res);
    FZ_CHECK(pass_message(&ini, &res, NULL, 0) == 0);
    FZ_CHECK(pass_message(&res, &ini, NULL, 0) == 0);
    check_split(&ini, &res, c);
    /* the check used the first nonces: start again from the keys */
    for (int i = 0; i < 4; i++) c[i].n = 0;
    made = 1;
  }
  *send = c[0];
  *recv = c[3];
}

/* ---- the Noise handshake, one side fed by the input ---- */

/* How the input changes a message on its way to the tested side; 1 if it differs. */
static int alter(fz_in_t *in, const uint8_t *msg, size_t len, uint8_t *out, size_t *out_len,
                 size_t cap) {
  uint8_t how = fz_u8(in);
  memcpy(out, msg, len);
  *out_len = len;
  if (how % 3 == 1) { /* replaced by input bytes */
    size_t got;
    const uint8_t *p = fz_take(in, fz_u16(in) % cap, &got);
    if (got) memcpy(out, p, got);
    *out_len = got;
  } else if (how % 3 == 2 && len > 0) { /* bytes XORed in at chosen places */
    for (int k = fz_u8(in) % 8 + 1; k > 0; k--) {
      size_t at = fz_u16(in) % len;
      out[at] ^= fz_u8(in);
    }
  }
  return *out_len != len || memcmp(out, msg, len) != 0;
}

/* The IK responder's two keys (a server's key rollover): the first byte's bits 1-2 say how.
 * 0: one key, as before; 1: the initiator dialed the responder's next key (the responder starts
 * with fz_keypair(2), a decoy); 2: it dialed the current one and the decoy is next. */
static const uint8_t *rollover_keys(int mode, hd__handshake_t *res, uint8_t next[32]) {
  static uint8_t xs[2][32], xp[32];
  static int made;
  if (!made) {
    FZ_CHECK(hd__keypair_to_x25519(fz_keypair(0), xs[0], xp) == 0);
    FZ_CHECK(hd__keypair_to_x25519(fz_keypair(2), xs[1], xp) == 0);
    made = 1;
  }
  if (mode == 0) return NULL;
  if (mode == 1) {
    uint8_t e[32];
    memset(e, 0xe2, sizeof e);
    FZ_CHECK(hd__handshake_init(res, HD__NOISE_IK, 0, fz_prologue(), FZ_PROLOGUE_LEN, xs[1],
                                NULL) == 0);
    hd__handshake_fix_ephemeral(res, e);
  }
  memcpy(next, xs[mode == 1 ? 0 : 1], 32);
  return next;
}

/* Reads the IK responder's first message as the server does, with its next key if it has one. */
static int read_first(hd__handshake_t *r, const uint8_t *next, int mode, const uint8_t *msg,
                      size_t len, uint8_t *got, size_t cap, size_t *glen) {
  if (next == NULL) return hd__handshake_read_message(r, msg, len, got, cap, glen);
  int used_next = -1;
  int rc = hd__handshake_read_first_either(r, fz_prologue(), FZ_PROLOGUE_LEN, next, msg, len, got,
                                           cap, glen, &used_next);
  FZ_CHECK(used_next == (rc == 0 && mode == 1));
  return rc;
}

void fz_handshake_run(int tested_initiator, const uint8_t *data, size_t size) {
  fz_in_t in = {data, size};
  uint8_t first = fz_u8(&in);
  hd__noise_pattern_t pattern = first & 1 ? HD__NOISE_XX : HD__NOISE_IK;
  int n_messages = pattern == HD__NOISE_IK ? 2 : 3;
  hd__handshake_t hs[2]; /* [0] initiator, [1] responder */
  handshake_pair(pattern, &hs[0], &hs[1]);
  int mode = pattern == HD__NOISE_IK && !tested_initiator ? (first >> 1) % 3 : 0;
  uint8_t next_key[32];
  const uint8_t *next = rollover_keys(mode, &hs[1], next_key);
  static uint8_t msg[HD__NOISE_MAX_MESSAGE], alt[HD__NOISE_MAX_MESSAGE], got[HD__NOISE_MAX_MESSAGE];
  for (int i = 0; i < n_messages; i++) {
    hd__handshake_t *w = &hs[i % 2], *r = &hs[1 - i % 2];
    int reader_tested = (i % 2 == 0) != (tested_initiator != 0);
    size_t plen, mlen = 0, alen = 0, glen = 0;
    const uint8_t *payload = fz_take(&in, fz_u8(&in), &plen);
    FZ_CHECK(hd__handshake_write_message(w, payload, plen, msg, sizeof msg, &mlen) == 0);
    if (reader_tested && alter(&in, msg, mlen, alt, &alen, sizeof alt)) {
      hd__handshake_t before = *r;
      int rc = i == 0 ? read_first(r, next, mode, alt, alen, got, sizeof got, &glen)
                      : hd__handshake_read_message(r, alt, alen, got, sizeof got, &glen);
      if (rc == 0) {
        /* only XX's first message is unauthenticated: a clear ephemeral key and payload */
        FZ_CHECK(pattern == HD__NOISE_XX && i == 0 && alen >= HD__NOISE_DHLEN);
        FZ_CHECK(glen == alen - HD__NOISE_DHLEN && memcmp(got, alt + HD__NOISE_DHLEN, glen) == 0);
        return; /* the transcripts differ from here on */
      }
      FZ_CHECK(rc == HD_EAUTH || rc == HD_EPROTO || rc == HD_EBUFSIZE);
      FZ_CHECK(memcmp(&before, r, sizeof before) == 0); /* a refused message changes nothing */
    }
    FZ_CHECK((i == 0 ? read_first(r, next, mode, msg, mlen, got, sizeof got, &glen)
                     : hd__handshake_read_message(r, msg, mlen, got, sizeof got, &glen)) == 0);
    FZ_CHECK(glen == plen && (plen == 0 || memcmp(got, payload, plen) == 0));
    if (reader_tested && pattern == HD__NOISE_IK) {
      if (i == 0) fz_check_hello(got, glen);
      else fz_check_welcome(got, glen);
    }
  }
  FZ_CHECK(hd__handshake_is_done(&hs[0]) && hd__handshake_is_done(&hs[1]));
  FZ_CHECK(memcmp(hd__handshake_remote_static(&hs[1]), hs[0].s_public, 32) == 0);
  FZ_CHECK(memcmp(hd__handshake_remote_static(&hs[0]), hs[1].s_public, 32) == 0);
  hd__cipher_t c[4];
  check_split(&hs[0], &hs[1], c);
}

/* ---- HELLO and WELCOME ---- */

/* The two payloads begin with a varint version; after decoding, a version other than 1 leaves
 * everything else zero. */
typedef struct payload_codec {
  int (*decode)(const uint8_t *p, size_t len, void *out);
  size_t (*encode)(const void *in, uint8_t *out);
  size_t size; /* of the decoded struct */
} payload_codec_t;

static int check_payload(const payload_codec_t *codec, const uint8_t *p, size_t len) {
  uint64_t v[16]; /* room for either struct; the decoders zero it (padding too) first */
  uint8_t out[HD__HELLO_MAX > HD__WELCOME_MAX ? HD__HELLO_MAX : HD__WELCOME_MAX];
  FZ_CHECK(codec->size <= sizeof v);
  int rc = codec->decode(p, len, v);
  if (rc != 0) {
    FZ_CHECK(rc == HD_EPROTO);
    return rc;
  }
  if (v[0] != HD_PROTOCOL_VERSION) {
    static const uint8_t zero[sizeof v];
    FZ_CHECK(memcmp((uint8_t *)v + sizeof v[0], zero, codec->size - sizeof v[0]) == 0);
    return 0;
  }
  size_t n = codec->encode(v, out);
  FZ_CHECK(n <= len && memcmp(out, p, n) == 0);
  /* what it re-encoded (the features included, when they were read) decodes to the same */
  uint64_t again[16];
  FZ_CHECK(codec->decode(out, n, again) == 0 && memcmp(again, v, codec->size) == 0);
  return 0;
}

static int hello_decode(const uint8_t *p, size_t len, void *out) {
  return hd__hello_decode(p, len, out);
}
static size_t hello_encode(const void *in, uint8_t *out) { return hd__hello_encode(in, out); }
static int welcome_decode(const uint8_t *p, size_t len, void *out) {
  return hd__welcome_decode(p, len, out);
}
static size_t welcome_encode(const void *in, uint8_t *out) { return hd__welcome_encode(in, out); }

int fz_check_hello(const uint8_t *p, size_t len) {
  static const payload_codec_t codec = {hello_decode, hello_encode, sizeof(hd__hello_t)};
  return check_payload(&codec, p, len);
}

int fz_check_welcome(const uint8_t *p, size_t len) {
  static const payload_codec_t codec = {welcome_decode, welcome_encode, sizeof(hd__welcome_t)};
  return check_payload(&codec, p, len);
}

/* ---- the stateful targets' input ---- */

void fz_frame(hd__buf_t *out, uint8_t type, const uint8_t *body, size_t len) {
  uint8_t head[HD__VARINT_MAX + 1];
  size_t h = hd__varint_put(head, (uint64_t)len + 1);
  head[h++] = type;
  FZ_CHECK(hd__buf_append(out, head, h) == 0);
  if (len) FZ_CHECK(hd__buf_append(out, body, len) == 0);
}

int fz_message_next(fz_in_t *in, hd__buf_t *out) {
  if (in->n == 0) return 0;
  uint8_t type = fz_u8(in);
  size_t len;
  const uint8_t *body = fz_take(in, fz_u8(in), &len);
  fz_frame(out, type, body, len);
  return 1;
}

void fz_message_put(hd__buf_t *out, uint8_t type, const uint8_t *body, size_t len) {
  FZ_CHECK(len <= 255);
  uint8_t head[2] = {type, (uint8_t)len};
  FZ_CHECK(hd__buf_append(out, head, 2) == 0);
  if (len) FZ_CHECK(hd__buf_append(out, body, len) == 0);
}

/* ---- sockets ---- */

int fz_connect(int port) {
  static unsigned next;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK + 1 + next++ % 253); /* 127.0.0.2 .. 127.0.0.254 */
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0) {
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) return fd;
  }
  close(fd);
  return -1;
}

void fz_close_reset(int fd) {
  struct linger l = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  close(fd);
}

/* ---- a raw peer ---- */

static int peer_on_msg(void *ctx, uint8_t type, const uint8_t *body, size_t len) {
  fz_peer_t *p = ctx;
  p->seen[type]++;
  uint64_t v;
  if (type == HD__MSG_PONG && hd__msg_decode_varint(type, body, len, &v) == 0) {
    p->pong = v;
    p->pongs++;
  }
  return 0;
}

void fz_peer_start(fz_peer_t *p, int fd, const hd__cipher_t *tx, const hd__cipher_t *rx) {
  memset(p, 0, sizeof *p);
  p->fd = fd;
  p->tx = *tx;
  hd__msg_reader_init(&p->mr, 0, peer_on_msg, p);
  FZ_CHECK(hd__record_reader_init(&p->rr, rx, hd__record_to_msgs, &p->mr) == 0);
}

int fz_peer_send(fz_peer_t *p, const uint8_t *stream, size_t n) {
  hd__buf_t rec;
  hd__buf_init(&rec);
  FZ_CHECK(hd__record_seal(&p->tx, stream, n, &rec) == 0);
  int rc = rec.len ? tu_send_all(p->fd, rec.data, rec.len) : 0;
  hd__buf_free(&rec);
  return rc;
}

int fz_peer_wait(fz_peer_t *p, int (*until)(const fz_peer_t *p, uint64_t arg), uint64_t arg,
                 int ms) {
  static uint8_t buf[65536];
  uint64_t deadline = hdt_now_ms() + (uint64_t)ms;
  for (;;) {
    if (until(p, arg)) return 1;
    if (p->broken) return 0;
    uint64_t now = hdt_now_ms();
    if (now >= deadline) return -1;
    struct pollfd pf = {p->fd, POLLIN, 0};
    if (poll(&pf, 1, (int)(deadline - now)) <= 0) continue;
    ssize_t n = recv(p->fd, buf, sizeof buf, 0);
    if (n <= 0) return 0;
    if (hd__record_reader_feed(&p->rr, buf, (size_t)n) != 0) p->broken = 1;
  }
}

static int has_pong(const fz_peer_t *p, uint64_t nonce) { return p->pongs > 0 && p->pong == nonce; }

int fz_peer_barrier(fz_peer_t *p, uint64_t nonce, int ms) {
  hd__buf_t ping;
  hd__buf_init(&ping);
  FZ_CHECK(hd__msg_encode_ping(&ping, nonce) == 0);
  fz_peer_send(p, ping.data, ping.len); /* a peer that closed may still have sent what it had */
  hd__buf_free(&ping);
  return fz_peer_wait(p, has_pong, nonce, ms);
}

static int never(const fz_peer_t *p, uint64_t arg) {
  (void)p, (void)arg;
  return 0;
}

int fz_peer_linger(fz_peer_t *p, int ms) { return fz_peer_wait(p, never, 0, ms); }

void fz_peer_play(fz_peer_t *p, fz_in_t *in, int per_message, int ms, int linger_ms) {
  hd__buf_t stream;
  hd__buf_init(&stream);
  while (fz_message_next(in, &stream)) {
    if (per_message) {
      fz_peer_send(p, stream.data, stream.len); /* fails once the other side closed: fine */
      stream.len = 0;
    }
  }
  if (stream.len) fz_peer_send(p, stream.data, stream.len);
  hd__buf_free(&stream);
  /* messages are handled in order: PONG comes once all were, unless one closed the connection */
  int rc = fz_peer_barrier(p, 0x5eed, ms);
  if (rc < 0) fprintf(stderr, "fuzz: neither PONG nor a close within %d ms\n", ms);
  FZ_CHECK(rc >= 0);
  if (rc > 0 && linger_ms > 0) fz_peer_linger(p, linger_ms);
  if (hdt_verbose()) {
    fprintf(stderr, "fuzz: %s; received", rc > 0 ? "PONG" : "closed");
    for (int t = 0; t < 256; t++) {
      const char *name = hd__msg_type_name((uint8_t)t);
      if (p->seen[t]) fprintf(stderr, " %s x%u", name ? name : "?", p->seen[t]);
    }
    fprintf(stderr, "\n");
  }
}

void fz_peer_close(fz_peer_t *p, int reset) {
  if (p->fd >= 0 && reset) fz_close_reset(p->fd);
  else if (p->fd >= 0) close(p->fd);
  p->fd = -1;
  hd__record_reader_free(&p->rr);
  hd__msg_reader_free(&p->mr);
}

/* ---- handles ---- */

void fz_verbose_log(hd_log_cb *log, hd_log_level_t *level) {
  if (!hdt_verbose()) return;
  *log = tu_log; /* prints as it comes when verbose */
  *level = HD_LOG_DEBUG;
}


static char *dirs[8];
static int n_dirs;

static void remove_dirs(void) {
  for (int i = 0; i < n_dirs; i++) {
    hdt_rmrf(dirs[i]);
    free(dirs[i]);
  }
  n_dirs = 0;
}

/* A run that crashed left its folders: those whose process is gone are removed. */
static void remove_stale_dirs(void) {
  DIR *d = opendir("/dev/shm");
  struct dirent *e;
  while (d != NULL && (e = readdir(d)) != NULL) {
    char tag[32];
    int pid;
    if (sscanf(e->d_name, "hd-fuzz-%31[^-]-%d-", tag, &pid) != 2 || pid == getpid()) continue;
    if (kill(pid, 0) == 0 || errno != ESRCH) continue;
    char path[300];
    snprintf(path, sizeof path, "/dev/shm/%s", e->d_name);
    hdt_rmrf(path);
  }
  if (d != NULL) closedir(d);
}

const char *fz_data_dir(const char *tag) {
  FZ_CHECK(n_dirs < (int)HD__ARRAY_SIZE(dirs));
  if (n_dirs == 0) remove_stale_dirs();
  char tmpl[128];
  snprintf(tmpl, sizeof tmpl, "/dev/shm/hd-fuzz-%s-%d-XXXXXX", tag, (int)getpid());
  char *d = mkdtemp(tmpl) != NULL ? strdup(tmpl) : hdt_mkdtemp(tag);
  FZ_CHECK(d != NULL);
  if (n_dirs == 0) atexit(remove_dirs);
  dirs[n_dirs++] = d;
  return d;
}
