/* The handshake payloads and the clear bytes around them (proto/wire.h): HELLO and WELCOME
 * decoded from arbitrary bytes (a version 1 payload re-encodes to the bytes it was read from,
 * trailing bytes aside; another version leaves the other fields zero; a failure is HD_EPROTO),
 * the preamble check (only our own preamble passes; a refusal is HD_EPROTO, HD_EVERSION or
 * HD_ETOPIC as section 3 orders the checks) and the rejection reasons.
 *
 * Input: a byte that picks what is fed, then the bytes. */
#include "fuzz_util.h"

#include <string.h>

static void check_preamble(const uint8_t *p, size_t len) {
  uint8_t in[HD__PREAMBLE_BYTES], ours[HD__PREAMBLE_BYTES], topic[HD_TOPIC_BYTES];
  memset(in, 0, sizeof in);
  memcpy(in, p, len < sizeof in ? len : sizeof in);
  memcpy(topic, fz_prologue() + FZ_PROLOGUE_LEN - HD_TOPIC_BYTES, HD_TOPIC_BYTES);
  hd__preamble_encode(ours, topic);
  int rc = hd__preamble_check(in, topic);
  int want = memcmp(in, ours, 4) != 0                   ? HD_EPROTO
             : in[4] != HD_PROTOCOL_VERSION             ? HD_EVERSION
             : in[5] != 0 || in[6] != 0 || in[7] != 0   ? HD_EPROTO
             : memcmp(in + 8, ours + 8, 8) != 0         ? HD_ETOPIC
                                                        : 0;
  FZ_CHECK(rc == want);
  /* the server answers a refusal with a reason the client maps back to the same error */
  if (rc != 0) {
    uint8_t frame[HD__REJECT_BYTES];
    hd__reject_encode(frame, hd__reject_reason_for(rc));
    FZ_CHECK(frame[0] == 0 && frame[1] == 0 && hd__reject_error(frame[2]) == rc);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  uint8_t what = data[0] % 4;
  const uint8_t *p = data + 1;
  size_t len = size - 1;
  if (what == 0) {
    fz_check_hello(p, len);
  } else if (what == 1) {
    fz_check_welcome(p, len);
  } else if (what == 2) {
    check_preamble(p, len);
  } else {
    /* any reason byte is an error code; unknown ones read as malformed */
    int rc = hd__reject_error(len ? p[0] : 0);
    FZ_CHECK(rc == HD_EVERSION || rc == HD_ETOPIC || rc == HD_EAUTH || rc == HD_EPROTO ||
             rc == HD_EMSGSIZE);
  }
  return 0;
}
