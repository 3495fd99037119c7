/* What the fuzz targets of fuzz/ share (docs/FUZZING.md): reading an input from both ends,
 * checks that abort (libFuzzer reports the abort as a crash, with the input), feeding bytes in
 * chunks, fixed identities and a real cipher pair, the Noise handshake driver of the two
 * handshake targets, the HELLO/WELCOME round trips, the message format of the stateful targets
 * and a raw peer's reading side. Compiled once (fuzz_util.c) into every target. */
#ifndef HD_FUZZ_UTIL_H
#define HD_FUZZ_UTIL_H

#include "keys.h"
#include "noise.h"
#include "record.h"
#include "wire.h"

#include <stddef.h>
#include <stdint.h>

/* The libFuzzer entry point every target defines. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- checks ---- */

/* Prints the failed condition and the thread's last error detail, then aborts. */
void fz_fail(const char *file, int line, const char *what) __attribute__((noreturn));
#define FZ_CHECK(cond)                                                                            \
  do {                                                                                            \
    if (!(cond)) fz_fail(__FILE__, __LINE__, #cond);                                              \
  } while (0)

/* ---- reading an input ---- */

/* Structure is read from the front; small numbers that steer how the rest is cut (chunk sizes)
 * are read from the back, so that changing one does not shift the other. Past the end every
 * read gives zeros. */
typedef struct fz_in {
  const uint8_t *p;
  size_t n;
} fz_in_t;

uint8_t fz_u8(fz_in_t *in);
uint16_t fz_u16(fz_in_t *in); /* big-endian */
uint64_t fz_u64(fz_in_t *in); /* big-endian; zero-padded */
/* Up to `want` bytes from the front, consumed (*got: how many there were): a pointer into the
 * input. */
const uint8_t *fz_take(fz_in_t *in, size_t want, size_t *got);
/* `n` bytes from the front into `out`, zero-padded past the end. */
void fz_copy(fz_in_t *in, uint8_t *out, size_t n);
uint8_t fz_back_u8(fz_in_t *in);
/* Splits off the last `n` bytes (fewer if there are not as many) as an input of their own. */
fz_in_t fz_tail(fz_in_t *in, size_t n);

/* ---- feeding in chunks ---- */

/* One feed of a reader that keeps its error: `chunk` is writable and exactly `len` bytes. */
typedef int (*fz_feed_fn)(void *ctx, uint8_t *chunk, size_t len);
/* Feeds `n` bytes of `data` to `feed` in chunks: the sizes come from the back of `sizes`, a byte
 * each (0: an empty feed; below 0x80: 1 to 32 bytes, to cut inside headers and varints; below
 * 0xff: 64 to 8128 bytes; 0xff: the rest); when they run out the rest is one chunk. Each chunk
 * is copied into a heap buffer of exactly its size (so an overread is ASan's). Checks that the
 * reader's error is sticky: once a feed returned non-zero, every later feed returns the same.
 * Returns the first non-zero result, or 0. */
int fz_feed_chunks(const uint8_t *data, size_t n, fz_in_t *sizes, fz_feed_fn feed, void *ctx);

/* ---- identities and ciphers ---- */

#define FZ_TOPIC "fuzz"
/* Fixed key pairs made from seeds (0: the server, 1: a user): the same in every run. */
const hd_keypair_t *fz_keypair(int i);
/* The Noise prologue of FZ_TOPIC ("hyperdown/1" and the topic key). */
const uint8_t *fz_prologue(void);
#define FZ_PROLOGUE_LEN 43
/* The two transport ciphers of one real IK handshake between fz_keypair(1) (initiator) and
 * fz_keypair(0), with fixed ephemerals: the initiator's sending cipher and the responder's
 * receiving one, both at nonce 0. Made once per process; copies are returned. */
void fz_cipher_pair(hd__cipher_t *send, hd__cipher_t *recv);

/* ---- the Noise handshake, one side fed by the input ---- */

/* Plays an IK or XX handshake between a tested side (the initiator if `tested_initiator`) and a
 * genuine peer, both with fixed keys and ephemerals. Each message the peer writes reaches the
 * tested side as the input says: replaced by input bytes, with input bytes XORed in, or
 * unchanged; its payload comes from the input. A message that was changed must be refused
 * (HD_EAUTH, HD_EPROTO or HD_EBUFSIZE) with the tested state untouched, after which the genuine
 * one must still be accepted. A payload read in IK is decoded as the wire does (HELLO by the
 * responder, WELCOME by the initiator). At the end both sides' ciphers must talk to each other. */
void fz_handshake_run(int tested_initiator, const uint8_t *data, size_t size);

/* ---- HELLO and WELCOME ---- */

/* Decodes the payload; a version 1 payload must re-encode to the bytes it was read from (its
 * fields' prefix: trailing bytes are ignored), another version must leave every other field
 * zero, a failure must be HD_EPROTO. Returns the decoder's result. */
int fz_check_hello(const uint8_t *p, size_t len);
int fz_check_welcome(const uint8_t *p, size_t len);

/* ---- the stateful targets' input: a sequence of messages ---- */

/* Takes the next message from `in` and appends it, framed (length varint, type, body), to `out`:
 * in the input it is a type byte, a length byte and that many body bytes (fewer at the end of
 * the input). 1 if a message was appended, 0 once the input is used up. */
int fz_message_next(fz_in_t *in, hd__buf_t *out);
/* Appends the whole message of `type` with this body (length varint, type, body) to `out`. */
void fz_frame(hd__buf_t *out, uint8_t type, const uint8_t *body, size_t len);
/* The stateful targets' format, written by the seed generator: one message. */
void fz_message_put(hd__buf_t *out, uint8_t type, const uint8_t *body, size_t len);

/* ---- sockets that do not trip over TIME-WAIT ---- */

/* Hundreds of connections a second to one loopback port reuse local ports within the minute a
 * closed connection stays in TIME-WAIT. When the far side closed first, the TIME-WAIT is its
 * own: a new SYN on the same addresses and ports meets it, the kernel refuses it (the random
 * timestamp offset of each connection fails PAWS) and the connect stalls for a retransmission,
 * a second or more: a false hang. So a raw client connects from a local address that rotates
 * through 127.0.0.2 to 127.0.0.254, and a raw server closes with a reset, leaving no TIME-WAIT. */

/* A blocking TCP socket connected to 127.0.0.1:port (TCP_NODELAY), from the next local address
 * of the rotation: the socket, or -1. */
int fz_connect(int port);
/* Closes `fd` with a reset (SO_LINGER 0) instead of a FIN. */
void fz_close_reset(int fd);

/* ---- a raw peer over a blocking socket, after the handshake ---- */

typedef struct fz_peer {
  int fd;
  hd__cipher_t tx;
  hd__record_reader_t rr;
  hd__msg_reader_t mr;
  unsigned seen[256];  /* messages received, by type */
  uint64_t pong;       /* the nonce of the last PONG */
  int pongs;
  int broken;          /* the peer broke the record layer or the message stream */
} fz_peer_t;

/* Takes over `fd` (closed by fz_peer_close) with the transport ciphers of the handshake. */
void fz_peer_start(fz_peer_t *p, int fd, const hd__cipher_t *tx, const hd__cipher_t *rx);
/* Seals `n` bytes of the message stream into records and sends them. 0 or -1. */
int fz_peer_send(fz_peer_t *p, const uint8_t *stream, size_t n);
/* Reads until `until(p, arg)` holds (1), the other side closes or breaks the protocol (0), or
 * `ms` pass (-1). */
int fz_peer_wait(fz_peer_t *p, int (*until)(const fz_peer_t *p, uint64_t arg), uint64_t arg,
                 int ms);
/* Sends PING `nonce` and waits for its PONG: 1, 0 (closed) or -1 (timed out). Every message of
 * the other side before it has been read and handled by then. */
int fz_peer_barrier(fz_peer_t *p, uint64_t nonce, int ms);
/* Plays one input of a stateful target: sends the messages of `in` (fz_message_next) in one
 * stream of records, or one record per message, then PING; the other side must answer PONG or
 * close within `ms` (else it hangs: a finding). Then reads what comes for `linger_ms` more. */
void fz_peer_play(fz_peer_t *p, fz_in_t *in, int per_message, int ms, int linger_ms);
/* Reads whatever comes for `ms` (what the other side does later, after its store writes): 0 if
 * it closed meanwhile, else -1. */
int fz_peer_linger(fz_peer_t *p, int ms);
/* Closes the socket (with a reset if `reset`, see fz_close_reset) and frees the readers. */
void fz_peer_close(fz_peer_t *p, int reset);

/* With HD_TEST_VERBOSE=1 (testutil.h), a handle's log goes to stderr: sets its options' log
 * callback and level. */
void fz_verbose_log(hd_log_cb *log, hd_log_level_t *level);
/* A fresh store folder in /dev/shm (else /tmp), removed at exit; the folders of runs that
 * crashed (their process is gone) are removed by the next one. */
const char *fz_data_dir(const char *tag);

#endif
