/* Compiled with -pedantic -Werror as C and as C++: the public header must stand alone. */
#include "hyperdown.h"

int hd_header_test_uses_the_header(void);
int hd_header_test_uses_the_header(void) {
  hd_server_options_t s = HD_SERVER_OPTIONS_INIT;
  hd_client_options_t c = HD_CLIENT_OPTIONS_INIT;
  hd_keypair_t kp;
  (void)kp;
  return (int)s.version + (int)c.version + HD_EINVAL + HD_ABI_VERSION;
}
