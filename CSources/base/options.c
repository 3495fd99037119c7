/* The version checks of the structs a caller hands in (options.h). */
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

int hd__options_check_stats_version(unsigned int version, unsigned int known, const char *what) {
  if (version != 0 && version <= known) return 0;
  return hd__error(HD_EVERSION, "%s stats version %u: set it to 1..%u (the _STATS_VERSION the "
                   "caller was built with)", what, version, known);
}
