/* The message codec of the wire protocol (docs/PROTOCOL.md): the growable output buffer, one
 * encoder per message type, validating zero-copy decoders, HELLO/WELCOME, the preamble, the
 * rejection frame and the message stream reader. No I/O and no crypto here: record.h seals and
 * opens the records that carry the message stream. */
#ifndef HD_WIRE_H
#define HD_WIRE_H

#include "buf.h"
#include "common.h"
#include "varint.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- Message types ------------------------------------------------------------------------- */

enum {
  HD__MSG_EVENTS = 0x01,
  HD__MSG_CONSUMED = 0x02,
  HD__MSG_DONE = 0x03,
  HD__MSG_RESUME = 0x04,
  HD__MSG_CREDIT = 0x05,
  HD__MSG_PAUSE = 0x06,
  HD__MSG_PING = 0x07,
  HD__MSG_PONG = 0x08,
  HD__MSG_BYE = 0x09,
  HD__MSG_EPOCH = 0x0a,
  /* Sent only where both peers announced the feature in the handshake (HD__FEATURE_*). */
  HD__MSG_FAILED = 0x0b,  /* client to server: events its handler failed or rejected */
  HD__MSG_NOTICES = 0x0c  /* server to client: notices in their place in the user's stream */
};

/* Features, a bit set appended to HELLO (the client's) and WELCOME (the server's): a message of a
 * feature is sent only when both sides announced it; a peer of an earlier release announces none
 * and ignores the bytes. */
enum {
  HD__FEATURE_FAILED = 1,  /* FAILED messages and dead letters */
  HD__FEATURE_NOTICES = 2  /* NOTICES messages */
};
#define HD__FEATURES_ALL (HD__FEATURE_FAILED | HD__FEATURE_NOTICES)
/* Longest reason in a FAILED entry. */
#define HD__REASON_MAX 1024

#define HD__BYE_TEXT_MAX 256
#define HD__DEFAULT_MAX_MESSAGE (1024 * 1024)

/* 1 if s[0..n) is well-formed UTF-8 (no overlongs, surrogates or code points above U+10FFFF). */
int hd__utf8_valid(const uint8_t *s, size_t n);

/* "EVENTS", ..., or NULL for a type this version does not know. */
const char *hd__msg_type_name(uint8_t type);

/* A notice's fields (docs/PROTOCOL.md "NOTICES"). */
typedef struct hd__notice {
  uint64_t kind;
  uint64_t count;
  uint64_t first_seq;
  uint64_t last_seq;
} hd__notice_t;

/* One entry of a batch message. EVENTS uses seq, created_ms and data (the payload); CONSUMED uses
 * seq and data (the client's data about the event); DONE uses seq only; FAILED seq, attempts and
 * data (the reason, UTF-8); NOTICES seq, created_ms and notice. Decoded entries point into the
 * message body. */
typedef struct hd__entry {
  uint64_t seq;
  uint64_t created_ms;
  const uint8_t *data;
  size_t len;
  uint64_t attempts;
  hd__notice_t notice;
} hd__entry_t;

typedef struct hd__resume {
  uint8_t store_id[HD_STORE_ID_BYTES]; /* all zeros: the client remembers no store */
  uint64_t high_seq;
  uint64_t window;
  /* Sent only to a server whose WELCOME carried an epoch: the epoch the client's view (high_seq)
   * belongs to (all zeros: none known). A RESUME without it is the version-1 message. */
  int has_epoch;
  uint8_t epoch[HD_STORE_ID_BYTES];
} hd__resume_t;

/* ---- Encoding: each call appends one whole message (length, type, body) to `out` -------------
 * Returns 0, HD_ENOMEM, or HD_EINVAL for a value the protocol cannot carry. Payload bytes are
 * copied exactly once, straight into `out`. The caller keeps each message within the peer's
 * max_message_bytes: hd__msg_*_fit tell how many leading entries fit. */

/* EVENTS through hd__events_writer_t (below), in one message of any size. */
int hd__msg_encode_events(hd__buf_t *out, const hd__entry_t *e, size_t n);
int hd__msg_encode_consumed(hd__buf_t *out, const hd__entry_t *e, size_t n);
int hd__msg_encode_done(hd__buf_t *out, const uint64_t *seqs, size_t n);
/* Reasons longer than HD__REASON_MAX or not UTF-8: HD_EINVAL. */
int hd__msg_encode_failed(hd__buf_t *out, const hd__entry_t *e, size_t n);
int hd__msg_encode_notices(hd__buf_t *out, const hd__entry_t *e, size_t n);
int hd__msg_encode_resume(hd__buf_t *out, const hd__resume_t *r);
int hd__msg_encode_credit(hd__buf_t *out, uint64_t granted);
int hd__msg_encode_pause(hd__buf_t *out, uint64_t pause_ms);
int hd__msg_encode_ping(hd__buf_t *out, uint64_t nonce);
int hd__msg_encode_pong(hd__buf_t *out, uint64_t nonce);
/* EPOCH (server to client, answering a RESUME whose epoch is not the server's): events at or
 * below `floor` are the ones the client saw under those numbers; pending events the client does
 * not hold at or below `seen_upto` may have been handled before (docs/PROTOCOL.md). */
int hd__msg_encode_epoch(hd__buf_t *out, uint64_t floor, uint64_t seen_upto);
/* `text` is UTF-8, at most HD__BYE_TEXT_MAX bytes (HD_EINVAL otherwise). */
int hd__msg_encode_bye(hd__buf_t *out, uint64_t reason, const char *text, size_t text_len);

/* The encoded size (length prefix included) of a batch message, and how many leading entries
 * of `e` fit in one message of at most `max_message_bytes` (the L of the frame). */
size_t hd__msg_events_size(const hd__entry_t *e, size_t n);
size_t hd__msg_events_fit(const hd__entry_t *e, size_t n, uint64_t max_message_bytes);
size_t hd__msg_consumed_size(const hd__entry_t *e, size_t n);
size_t hd__msg_consumed_fit(const hd__entry_t *e, size_t n, uint64_t max_message_bytes);
size_t hd__msg_done_fit(const uint64_t *seqs, size_t n, uint64_t max_message_bytes);
size_t hd__msg_failed_fit(const hd__entry_t *e, size_t n, uint64_t max_message_bytes);

/* ---- EVENTS, streamed -------------------------------------------------------------------------
 * The one EVENTS encoder. Entries are appended straight into `out` as they come (the server's
 * pump writes each row while the store still holds it, so a payload is copied once, from the
 * store into the connection's output), and messages are cut so that each stays within the
 * peer's limit. A message's header (L, type, count) is written when the message is finished, in
 * room kept in front of its entries. The room is a guess: exact when the caller knows the message
 * in advance, else the size of the previous message's header (a stream of full messages has
 * headers of one size); a wrong guess costs one shift of the message's entries. */
typedef struct hd__events_writer {
  hd__buf_t *out;
  uint64_t max;      /* the largest L (type byte + body) a message may have */
  size_t room;       /* header bytes kept in front of the next message's entries */
  size_t msg_start;  /* offset in out of the open message's header room; SIZE_MAX: none open */
  size_t body_bytes; /* the open message's entries' bytes */
  uint64_t count;    /* the open message's entries */
} hd__events_writer_t;

/* What hd__events_writer_add returns when the entry does not fit the open message. */
#define HD__EVENTS_FULL 1

/* `header_room`: the header size expected (hd__events_header_size of the message, or what an
 * earlier writer's `room` ended at); 0 for a guess from the limit. */
void hd__events_writer_init(hd__events_writer_t *w, hd__buf_t *out, uint64_t max_message_bytes,
                            size_t header_room);
/* The header's size for `count` entries of `body_bytes` bytes in all. */
size_t hd__events_header_size(uint64_t count, size_t body_bytes);
/* Appends one entry to the open message, opening one if none is: 0; HD__EVENTS_FULL when the open
 * message cannot take it (finish it, then add again); HD_EMSGSIZE when no message within the
 * limit can hold it; HD_ENOMEM. Nothing is written unless 0 is returned. Inline: it runs once per
 * event sent; the rare cases (a message to open, the limit near, the buffer to grow) are
 * hd__events_writer_add_slow's. */
static inline int hd__events_writer_add(hd__events_writer_t *w, uint64_t seq, uint64_t created_ms,
                                        const uint8_t *payload, size_t len);
int hd__events_writer_add_slow(hd__events_writer_t *w, uint64_t seq, uint64_t created_ms,
                               const uint8_t *payload, size_t len);
/* Writes the open message's header: 1 if a message was finished, 0 if none was open, HD_ENOMEM.
 * `out` then holds whole messages only, so its owner may flush it before the next add. */
int hd__events_writer_finish(hd__events_writer_t *w);

/* Writes one entry at the end of the open message; the caller checked that it fits. */
static inline void hd__events_writer_put(hd__events_writer_t *w, uint64_t seq, uint64_t created_ms,
                                         const uint8_t *payload, size_t len) {
  hd__buf_t *out = w->out;
  uint8_t *start = out->data + out->len, *p = start;
  p += hd__varint_put(p, seq);
  p += hd__varint_put(p, created_ms);
  p += hd__varint_put(p, len);
  if (len) memcpy(p, payload, len);
  size_t es = (size_t)(p - start) + len;
  out->len += es;
  w->body_bytes += es;
  w->count++;
}

static inline int hd__events_writer_add(hd__events_writer_t *w, uint64_t seq, uint64_t created_ms,
                                        const uint8_t *payload, size_t len) {
  /* the entry's size at most: its three varints at their longest */
  size_t most = 3 * HD__VARINT_MAX + len;
  if (w->msg_start == SIZE_MAX || 1 + HD__VARINT_MAX + w->body_bytes + (uint64_t)most > w->max ||
      w->out->cap - w->out->len < most) {
    return hd__events_writer_add_slow(w, seq, created_ms, payload, len);
  }
  hd__events_writer_put(w, seq, created_ms, payload, len);
  return 0;
}

/* ---- Decoding: `body` is the message after its type byte ------------------------------------
 * Every decoder validates the whole body first and returns HD_EPROTO (with a detail naming the
 * message and the fault) for anything malformed, so a consumer never acts on half a message. */

/* Iterator over the entries of an EVENTS, CONSUMED or DONE body. */
typedef struct hd__entry_iter {
  const uint8_t *p;
  const uint8_t *end;
  uint64_t left;
  uint8_t type;
} hd__entry_iter_t;

/* Validates the body of `type` (one of the batch types: hd__msg_is_batch) and readies `it`. `*count` gets the
 * number of entries; it is checked against the body's length before anything else, so a caller
 * may size an array from it. */
int hd__msg_entries_begin(hd__entry_iter_t *it, uint8_t type, const uint8_t *body, size_t len,
                          uint64_t *count);
/* 1 with the next entry in `*e`, 0 at the end. Cannot fail: begin has validated the body. */
int hd__msg_entries_next(hd__entry_iter_t *it, hd__entry_t *e);

/* RESUME with or without the trailing epoch (16 bytes); anything else after `window` is
 * HD_EPROTO. */
int hd__msg_decode_resume(const uint8_t *body, size_t len, hd__resume_t *r);
int hd__msg_decode_epoch(const uint8_t *body, size_t len, uint64_t *floor, uint64_t *seen_upto);
/* CREDIT, PAUSE, PING and PONG: a body of exactly one varint. */
int hd__msg_decode_varint(uint8_t type, const uint8_t *body, size_t len, uint64_t *v);
/* BYE: `*text` points into the body (not NUL-terminated), valid UTF-8 of at most 256 bytes. */
int hd__msg_decode_bye(const uint8_t *body, size_t len, uint64_t *reason, const uint8_t **text,
                       size_t *text_len);
/* Validates a message of any type: HD_EPROTO for an unknown type or a malformed body. */
int hd__msg_check(uint8_t type, const uint8_t *body, size_t len);
/* EVENTS, CONSUMED, DONE, FAILED and NOTICES: bodies whose every entry hd__msg_entries_begin
 * walks. */
static inline int hd__msg_is_batch(uint8_t type) {
  return type == HD__MSG_EVENTS || type == HD__MSG_CONSUMED || type == HD__MSG_DONE ||
         type == HD__MSG_FAILED || type == HD__MSG_NOTICES;
}

/* A notice as the stores keep it: its four fields as varints (the payload of a stored notice). */
#define HD__NOTICE_MAX (4 * HD__VARINT_MAX)
size_t hd__notice_encode(const hd__notice_t *n, uint8_t out[HD__NOTICE_MAX]);
/* HD_EPROTO unless exactly four minimal varints. */
int hd__notice_decode(const uint8_t *p, size_t len, hd__notice_t *n);

/* ---- Handshake payloads -------------------------------------------------------------------- */

#define HD__HELLO_MAX (HD__VARINT_MAX + HD_PUBLICKEY_BYTES + 2 * HD__VARINT_MAX)
#define HD__WELCOME_MAX (HD__VARINT_MAX + HD_STORE_ID_BYTES + 4 * HD__VARINT_MAX + HD_STORE_ID_BYTES)

typedef struct hd__hello {
  uint64_t version;
  uint8_t public_key[HD_PUBLICKEY_BYTES]; /* the client's Ed25519 identity */
  uint64_t max_message_bytes;             /* the largest message the client accepts */
  /* Appended after max_message_bytes (a peer of an earlier release ignores it; absent: 0) */
  uint64_t features;                      /* HD__FEATURE_* */
} hd__hello_t;

typedef struct hd__welcome {
  uint64_t version;
  uint8_t store_id[HD_STORE_ID_BYTES];
  uint64_t pause_ms;
  uint64_t max_message_bytes; /* the largest message the server accepts */
  uint64_t keepalive_ms;
  /* Appended after keepalive_ms (a version-1 peer ignores it): the store's epoch, which changes
   * whenever the store may have lost its last commits (docs/PROTOCOL.md, "Epochs"). */
  int has_epoch;
  uint8_t epoch[HD_STORE_ID_BYTES];
  /* Appended after the epoch (sent with one only; absent: 0). */
  uint64_t features; /* HD__FEATURE_* */
} hd__welcome_t;

/* Encode into `out` (HD__HELLO_MAX / HD__WELCOME_MAX bytes); return the length used. */
size_t hd__hello_encode(const hd__hello_t *h, uint8_t *out);
size_t hd__welcome_encode(const hd__welcome_t *w, uint8_t *out);
/* Decode a handshake payload. Trailing bytes are ignored (room for extensions): a WELCOME has
 * an epoch when at least 16 bytes follow keepalive_ms, then features if a varint follows; what
 * follows is ignored too; fewer than 16 are ignored as they always were. A HELLO has features if
 * a varint follows max_message_bytes. When the version
 * is not HD_PROTOCOL_VERSION only `version` is filled and 0 is returned, so that the caller can
 * answer "version unsupported" rather than "malformed". HD_EPROTO if malformed. */
int hd__hello_decode(const uint8_t *p, size_t len, hd__hello_t *h);
int hd__welcome_decode(const uint8_t *p, size_t len, hd__welcome_t *w);

/* ---- Preamble and rejection ---------------------------------------------------------------- */

#define HD__PREAMBLE_BYTES 16
#define HD__REJECT_BYTES 3

void hd__preamble_encode(uint8_t out[HD__PREAMBLE_BYTES], const uint8_t topic_key[HD_TOPIC_BYTES]);
/* 0 if the preamble is ours; HD_EPROTO (not Hyperdown: bad magic, flags or reserved bytes),
 * HD_EVERSION (another protocol version) or HD_ETOPIC (another topic). */
int hd__preamble_check(const uint8_t in[HD__PREAMBLE_BYTES],
                       const uint8_t topic_key[HD_TOPIC_BYTES]);

enum {
  HD__REJECT_VERSION = 1,  /* protocol version unsupported */
  HD__REJECT_TOPIC = 2,    /* topic mismatch */
  HD__REJECT_AUTH = 3,     /* handshake authentication failed */
  HD__REJECT_IDENTITY = 4, /* HELLO's Ed25519 key does not map to the Noise static key */
  HD__REJECT_MALFORMED = 5, /* malformed preamble or handshake */
  HD__REJECT_REFUSED = 6,   /* the server does not admit this key (older clients read it as 5) */
  HD__REJECT_MSGSIZE = 7    /* the client's max_message_bytes cannot carry the server's largest
                               event (older clients read it as 5) */
};

/* The rejection frame: 00 00 reason. */
void hd__reject_encode(uint8_t out[HD__REJECT_BYTES], uint8_t reason);
/* The reason the server should send for a failure code from the checks above. */
uint8_t hd__reject_reason_for(int code);
/* Records the reason as the thread's error detail and returns the matching HD_E* code. */
int hd__reject_error(uint8_t reason);

/* ---- Message stream reader ----------------------------------------------------------------- */

/* Receives one whole message; `body` is valid only during the call. Non-zero stops the feed. */
typedef int (*hd__msg_cb)(void *ctx, uint8_t type, const uint8_t *body, size_t body_len);

/* Cuts the decrypted record stream into messages. A message inside one chunk is handed over in
 * place; one that spans chunks is assembled in a buffer of its exact size, allocated only after
 * its declared length passed the max_message_bytes check. Idle, the reader holds at most
 * HD__MSG_KEEP bytes. */
#define HD__MSG_KEEP 4096

typedef struct hd__msg_reader {
  uint64_t max_message_bytes; /* the largest L accepted (type byte + body) */
  hd__msg_cb cb;
  void *ctx;
  int error;                     /* sticky: once set, every feed returns it */
  uint8_t head[HD__VARINT_MAX];  /* a length prefix cut by a chunk boundary */
  uint8_t head_len;
  uint8_t *msg;                  /* the message being assembled */
  size_t msg_len, msg_have, msg_cap;
} hd__msg_reader_t;

void hd__msg_reader_init(hd__msg_reader_t *r, uint64_t max_message_bytes, hd__msg_cb cb,
                         void *ctx);
/* Feeds plaintext. 0 when every complete message was delivered; the callback's non-zero value,
 * HD_EPROTO (bad length prefix), HD_EMSGSIZE (declared length above the limit) or HD_ENOMEM. */
int hd__msg_reader_feed(hd__msg_reader_t *r, const uint8_t *p, size_t n);
/* 1 if no message is half received (a clean place for the stream to end). */
int hd__msg_reader_idle(const hd__msg_reader_t *r);
void hd__msg_reader_free(hd__msg_reader_t *r);

#endif
