/* The server's metrics (hd_server_metrics, docs/OPERATIONS.md "Metrics and health"): a snapshot
 * read on the loop thread, then rendered in the Prometheus text exposition format 0.0.4 on any
 * thread. Split so that the HTTP responder (http.c) renders one snapshot into a buffer of the
 * right size without reading the counters twice. */
#ifndef HD_METRICS_H
#define HD_METRICS_H

#include "histogram.h"

#include <hyperdown.h>

typedef struct hd__metrics {
  hd_server_stats_t st;      /* HD_SERVER_STATS_VERSION, every field */
  uint64_t users_pending;    /* users holding at least one pending event */
  uint64_t handshaking;      /* connections accepted, not authenticated yet */
  uint64_t epoch_resumes, rollbacks;
  uint64_t handshakes_current_key, handshakes_next_key;
  int has_next_key;          /* the next key's series is shown only while there is one */
  hd__histogram_t add_durable;
} hd__metrics_t;

/* Fills `out`. Loop thread. HD_ECLOSED while the server closes. */
int hd__metrics_read(hd_server_t *server, hd__metrics_t *out);
/* The text of `m` into buf (snprintf-like: at most cap bytes, NUL-terminated when cap > 0);
 * returns the length of the whole text. Any thread. */
size_t hd__metrics_render(const hd__metrics_t *m, char *buf, size_t cap);

#endif
