/* The version check of option structs (options.h). */
#include "options.h"

#include "common.h"

int hd__options_check_version(const void *opts, unsigned int version, unsigned int known,
                              const char *what) {
  if (opts == NULL) return hd__error(HD_EINVAL, "%s options are NULL", what);
  if (version == 0) {
    return hd__error(HD_EINVAL, "%s options have version 0: initialise them with the _INIT "
                                "macro or the _options_init function", what);
  }
  if (version > known) {
    return hd__error(HD_EVERSION, "%s options version %u is newer than this library knows (%u)",
                     what, version, known);
  }
  return 0;
}
