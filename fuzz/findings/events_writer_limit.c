/* Finding: hd__events_writer_add (proto/wire.c) refuses with HD_EMSGSIZE an entry that a message
 * within the limit could hold. wire.h says HD_EMSGSIZE means "no message within the limit can
 * hold it", but hd__events_writer_add_slow tests `1 + HD__VARINT_MAX + es > max`, room for the
 * longest count varint, where a message of one entry needs `1 + 1 + es`. So an entry within 9
 * bytes of the limit is refused. Harmless today (the server keeps 64 bytes of slack under the
 * peer's limit); the fuzz target `messages` checks the writer against its actual bound.
 *
 * Reproducer input of that target: 01 01 01 0a 01 09 (EVENTS: seq 1, created 10, payload 09,
 * a message of L = 6). Exit 1 while the entry is refused under a limit of 6, 0 once it fits. */
#include "fuzz_util.h"

#include <stdio.h>

int main(void) {
  hd__buf_t out;
  hd__buf_init(&out);
  hd__events_writer_t w;
  hd__events_writer_init(&w, &out, 6, 0);
  const uint8_t payload[1] = {9};
  int rc = hd__events_writer_add(&w, 1, 10, payload, 1);
  printf("an entry of 4 bytes under a limit of 6 (the message is 6): %s\n",
         rc == 0 ? "taken" : hd_err_name(rc));
  hd__buf_free(&out);
  return rc == 0 ? 0 : 1;
}
