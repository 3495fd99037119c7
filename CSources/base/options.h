/* Option structs (hd_*_options_t) start with a version field; this is their one check. */
#ifndef HD_OPTIONS_H
#define HD_OPTIONS_H

/* HD_EINVAL for NULL options or version 0, HD_EVERSION for a version newer than `known`; `what`
 * names the struct in the message ("server", "client"). */
int hd__options_check_version(const void *opts, unsigned int version, unsigned int known,
                              const char *what);

#endif
