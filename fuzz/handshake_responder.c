/* The Noise handshake (crypto/noise.h) as the responder, the server's side: each message of the
 * initiator reaches it replaced by input bytes, with input bytes XORed in, or intact, with a
 * payload from the input; in IK the payload it reads is decoded as HELLO. It must never crash, a
 * changed message must fail cleanly and change nothing, and the intact one must then still
 * complete the handshake (fz_handshake_run). */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_handshake_run(0, data, size);
  return 0;
}
