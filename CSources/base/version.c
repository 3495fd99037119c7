/* Release and ABI versions, the header/library check, and the size constants as functions. */
#include "common.h"

unsigned int hd_version(void) { return HD_VERSION_HEX; }
const char *hd_version_string(void) { return HD_VERSION_STRING; }
int hd_abi_version(void) { return HD_ABI_VERSION; }

int hd_check_version(int abi_version, unsigned int header_version_hex) {
  /* A header newer than the library may declare functions this library lacks. */
  if (abi_version != HD_ABI_VERSION || header_version_hex > HD_VERSION_HEX) {
    return hd__error(HD_EVERSION,
                     "header is ABI %d version 0x%06x, library is ABI %d version 0x%06x",
                     abi_version, header_version_hex, HD_ABI_VERSION, HD_VERSION_HEX);
  }
  return 0;
}

size_t hd_publickey_bytes(void) { return HD_PUBLICKEY_BYTES; }
size_t hd_scalar_bytes(void) { return HD_SCALAR_BYTES; }
size_t hd_seed_bytes(void) { return HD_SEED_BYTES; }
size_t hd_secretkey_bytes(void) { return HD_SECRETKEY_BYTES; }
size_t hd_topic_bytes(void) { return HD_TOPIC_BYTES; }
size_t hd_keypair_size(void) { return sizeof(hd_keypair_t); }
