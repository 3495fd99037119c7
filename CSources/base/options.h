/* The structs a caller hands in start with a version field: options (hd_*_options_t) and the
 * stats a call fills (hd_*_stats_t). These are their checks. */
#ifndef HD_OPTIONS_H
#define HD_OPTIONS_H

/* HD_EINVAL for NULL options or version 0, HD_EVERSION for a version newer than `known`; `what`
 * names the struct in the message ("server", "client"). */
int hd__options_check_version(const void *opts, unsigned int version, unsigned int known,
                              const char *what);

/* Stats: HD_EVERSION for version 0 or one newer than `known` (the caller must say which fields
 * its struct has). */
int hd__options_check_stats_version(unsigned int version, unsigned int known, const char *what);

#endif
