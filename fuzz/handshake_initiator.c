/* The Noise handshake (crypto/noise.h) as the initiator, the client's side: each message of the
 * responder reaches it replaced by input bytes, with input bytes XORed in, or intact, with a
 * payload from the input; in IK the payload it reads is decoded as WELCOME. It must never crash,
 * a changed message must fail cleanly and change nothing, and the intact one must then still
 * complete the handshake (fz_handshake_run). */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_handshake_run(1, data, size);
  return 0;
}
