/* The one EVENTS encoder (hd__events_writer_t): what the server's pump sends. Messages are cut
 * under the limit, every entry comes back from the decoder as written, the header is right
 * whatever the writer guessed for it, and an event that fits no message is refused. */
#include "harness.h"

#include "wire.h"

typedef struct decoded {
  uint64_t count, seq_next;
  size_t messages;
  uint64_t largest_l;
  int bad;
} decoded_t;

/* Walks whole messages in `b`, checks each EVENTS body and that seqs run on from seq_next with
 * payload byte (seq & 0xff) repeated seq % 300 times. */
static int on_msg(void *ctx, uint8_t type, const uint8_t *body, size_t len) {
  decoded_t *d = ctx;
  d->messages++;
  if (1 + len > d->largest_l) d->largest_l = 1 + len;
  hd__entry_iter_t it;
  uint64_t n;
  if (type != HD__MSG_EVENTS || hd__msg_entries_begin(&it, type, body, len, &n) != 0) {
    d->bad = 1;
    return 0;
  }
  hd__entry_t e;
  while (hd__msg_entries_next(&it, &e)) {
    if (e.seq != d->seq_next || e.created_ms != 1000 + e.seq || e.len != e.seq % 300) d->bad = 1;
    for (size_t i = 0; i < e.len; i++) if (e.data[i] != (uint8_t)e.seq) d->bad = 1;
    d->seq_next++;
    d->count++;
  }
  return 0;
}

static int decode_all(const hd__buf_t *b, decoded_t *d, uint64_t first) {
  memset(d, 0, sizeof *d);
  d->seq_next = first;
  hd__msg_reader_t r;
  hd__msg_reader_init(&r, UINT32_MAX, on_msg, d);
  int rc = hd__msg_reader_feed(&r, b->data, b->len);
  int idle = hd__msg_reader_idle(&r);
  hd__msg_reader_free(&r);
  return rc == 0 && idle && !d->bad ? 0 : -1;
}

/* Writes events first..first+n-1 with a writer of `max` and header guess `room`, finishing and
 * reopening messages as the writer asks. */
static int write_events(hd__buf_t *out, uint64_t first, size_t n, uint64_t max, size_t room,
                        size_t *room_after) {
  static uint8_t payload[300];
  hd__events_writer_t w;
  hd__events_writer_init(&w, out, max, room);
  for (uint64_t seq = first; seq < first + n; seq++) {
    memset(payload, (uint8_t)seq, sizeof payload);
    int rc = hd__events_writer_add(&w, seq, 1000 + seq, payload, seq % 300);
    if (rc == HD__EVENTS_FULL) {
      if (hd__events_writer_finish(&w) != 1) return -1;
      rc = hd__events_writer_add(&w, seq, 1000 + seq, payload, seq % 300);
    }
    if (rc != 0) return rc;
  }
  if (hd__events_writer_finish(&w) < 0) return -1;
  if (room_after) *room_after = w.room;
  return 0;
}

static void test_messages_are_cut_under_the_limit(void) {
  static const uint64_t limits[] = {400, 1000, 4096, 65536, 1u << 20};
  for (size_t i = 0; i < HD__ARRAY_SIZE(limits); i++) {
    hd__buf_t b;
    hd__buf_init(&b);
    CHECK_OK(write_events(&b, 1, 3000, limits[i], 0, NULL));
    decoded_t d;
    CHECK_OK(decode_all(&b, &d, 1));
    CHECK(d.count == 3000 && d.largest_l <= limits[i]);
    if (limits[i] < 65536) CHECK(d.messages > 1);
    hd__buf_free(&b);
  }
}

static void test_any_header_guess_gives_the_same_bytes(void) {
  /* too small (1), exact, too large (21) and the limit's own guess (0): identical output */
  hd__buf_t ref;
  hd__buf_init(&ref);
  CHECK_OK(write_events(&ref, 5, 700, 20000, 0, NULL));
  static const size_t rooms[] = {1, 2, 3, 4, 5, 6, 7, 21};
  for (size_t i = 0; i < HD__ARRAY_SIZE(rooms); i++) {
    hd__buf_t b;
    hd__buf_init(&b);
    size_t after = 0;
    CHECK_OK(write_events(&b, 5, 700, 20000, rooms[i], &after));
    CHECK(b.len == ref.len && memcmp(b.data, ref.data, b.len) == 0);
    CHECK(after >= 4 && after <= 7); /* it learnt the real header size */
    hd__buf_free(&b);
  }
  decoded_t d;
  CHECK_OK(decode_all(&ref, &d, 5));
  CHECK(d.count == 700);
  hd__buf_free(&ref);
}

static void test_whole_message_encoder_is_the_writer(void) {
  enum { N = 50 };
  static uint8_t payload[300];
  hd__entry_t e[N];
  for (size_t i = 0; i < N; i++) {
    uint64_t seq = 1 + i;
    e[i] = (hd__entry_t){.seq = seq, .created_ms = 1000 + seq, .data = payload, .len = seq % 300};
  }
  hd__buf_t one, many;
  hd__buf_init(&one);
  hd__buf_init(&many);
  CHECK_OK(hd__msg_encode_events(&one, e, N));
  CHECK(one.len == hd__msg_events_size(e, N));
  hd__events_writer_t w;
  hd__events_writer_init(&w, &many, UINT64_MAX, 0);
  for (size_t i = 0; i < N; i++) {
    CHECK_OK(hd__events_writer_add(&w, e[i].seq, e[i].created_ms, e[i].data, e[i].len));
  }
  CHECK(hd__events_writer_finish(&w) == 1);
  CHECK(hd__events_writer_finish(&w) == 0); /* nothing open */
  CHECK(one.len == many.len && memcmp(one.data, many.data, one.len) == 0);
  hd__buf_free(&one);
  hd__buf_free(&many);
}

static void test_an_event_that_fits_no_message_is_refused(void) {
  hd__buf_t b;
  hd__buf_init(&b);
  hd__events_writer_t w;
  hd__events_writer_init(&w, &b, 200, 0);
  static uint8_t big[300];
  CHECK_RC(hd__events_writer_add(&w, 9, 1, big, sizeof big), HD_EMSGSIZE);
  CHECK(strstr(hd_last_error_message(), "event 9") != NULL);
  CHECK(b.len == 0 && hd__events_writer_finish(&w) == 0); /* nothing was written */
  CHECK_OK(hd__events_writer_add(&w, 10, 1, big, 100));
  CHECK(hd__events_writer_finish(&w) == 1);
  decoded_t d;
  CHECK(decode_all(&b, &d, 10) == -1); /* the payload pattern differs; the framing does not: */
  CHECK(d.messages == 1 && d.largest_l <= 200);
  hd__buf_free(&b);
}

/* The exact bound (a fuzz finding): an entry fits when a message of that entry alone, its type,
 * a count of one byte and the entry, is within the limit; the writer used to keep room for the
 * longest count varint and refused entries within 9 bytes of the limit. */
static void test_an_event_that_just_fits_is_taken(void) {
  hd__buf_t b;
  hd__buf_init(&b);
  hd__events_writer_t w;
  hd__events_writer_init(&w, &b, 6, 0);
  const uint8_t payload[1] = {9}; /* entry: seq 1, created 10, len 1, one byte = 4 bytes */
  CHECK_OK(hd__events_writer_add(&w, 1, 10, payload, 1));
  CHECK(hd__events_writer_finish(&w) == 1);
  static const uint8_t want[] = {6, HD__MSG_EVENTS, 1, 1, 10, 1, 9};
  CHECK(b.len == sizeof want && memcmp(b.data, want, sizeof want) == 0);
  hd__buf_free(&b);
  hd__buf_init(&b);
  hd__events_writer_init(&w, &b, 5, 0); /* one byte less: no message can hold it */
  CHECK_RC(hd__events_writer_add(&w, 1, 10, payload, 1), HD_EMSGSIZE);
  CHECK(b.len == 0);
  hd__buf_free(&b);
}

#define TESTS(X)                                                                                  \
  X(test_messages_are_cut_under_the_limit)                                                        \
  X(test_any_header_guess_gives_the_same_bytes)                                                   \
  X(test_whole_message_encoder_is_the_writer)                                                     \
  X(test_an_event_that_fits_no_message_is_refused)                                                \
  X(test_an_event_that_just_fits_is_taken)
HD_TEST_MAIN(TESTS)
