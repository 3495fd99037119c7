/* A strict reader of the Prometheus text exposition format 0.0.4 (prometheus.io, "Exposition
 * formats"), for the tests of hd_server_metrics: it refuses what the format forbids and, stricter
 * than the format, a sample whose family has no TYPE line before it. Refused:
 *  - a text that does not end with a line feed, a NUL byte;
 *  - a metric name not [a-zA-Z_:][a-zA-Z0-9_:]*, a label name not [a-zA-Z_][a-zA-Z0-9_]* or
 *    starting with "__", a label named twice in one sample;
 *  - a label value not quoted, or with an escape other than \\, \" and \n;
 *  - a HELP docstring with an escape other than \\ and \n; a second HELP or TYPE for a name;
 *    a TYPE other than counter, gauge, histogram, summary, untyped; a TYPE after a sample of
 *    its family;
 *  - a value that is not a float (digits, '.', exponent; NaN, +Inf, -Inf), a timestamp that is
 *    not an integer, anything after the timestamp;
 *  - a family's lines not in one group; the same series (name and label set, in any order)
 *    twice; a negative counter;
 *  - a histogram whose buckets (per label set) are not in ascending `le` order, not cumulative,
 *    without le="+Inf" last, or whose +Inf bucket is not its _count, or without _sum or _count;
 *    a histogram sample that is none of _bucket, _sum, _count.
 * No process, no socket: a function over a buffer (test/unit can use it too). */
#ifndef HD_PROM_TEXT_H
#define HD_PROM_TEXT_H

#include <stddef.h>

typedef struct pt_sample {
  char name[128];
  char labels[512];  /* canonical: name="value" pairs sorted by name, joined by ',' (escapes as
                        written); "" for none */
  char family[128];
  char le[64];       /* the value of its `le` label, "" without one */
  char rest[512];    /* the canonical labels but `le` (a histogram's series) */
  double value;
} pt_sample_t;

typedef struct pt_family {
  char name[128];
  char type[16];     /* "" until its TYPE line */
  int has_help;
  int samples;       /* seen so far */
} pt_family_t;

typedef struct pt_text {
  pt_sample_t *samples;
  size_t n, cap;
  pt_family_t *families;
  size_t nf, capf;
  char error[256];   /* why pt_parse refused, with the line number */
} pt_text_t;

/* Parses `len` bytes of `text`. 0, or -1 with `error` set. pt_free in both cases. */
int pt_parse(const char *text, size_t len, pt_text_t *out);
void pt_free(pt_text_t *t);
/* The value of the series `name` with the canonical `labels` ("" for none, e.g. "le=\"0.5\"").
 * 0, or -1 if there is no such series. */
int pt_value(const pt_text_t *t, const char *name, const char *labels, double *out);
/* The family `name` (NULL if none). */
const pt_family_t *pt_family(const pt_text_t *t, const char *name);

#endif
