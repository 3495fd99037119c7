/* The labelled recorders (label_util.h). */
#include "label_util.h"

/* "old#12" -> the label's index, 12; -1 if unreadable. */
static int parse(const char *const *labels, const uint8_t *p, size_t n, int *label, int *num) {
  char text[32];
  if (n == 0 || n >= sizeof text) return -1;
  memcpy(text, p, n);
  text[n] = '\0';
  char *hash = strchr(text, '#');
  if (hash == NULL) return -1;
  *hash = '\0';
  char *end;
  long v = strtol(hash + 1, &end, 10);
  if (*end != '\0' || v <= 0 || v >= LU_MAXN) return -1;
  *num = (int)v;
  *label = strcmp(text, labels[0]) == 0 ? 0 : strcmp(text, labels[1]) == 0 ? 1 : -1;
  return *label < 0 ? -1 : 0;
}

/* Records `ev` (label#num) as handled and completes it ok with "ack <payload>". */
static void handle(lu_cli_t *c, hd_event_t *ev, int label, int num) {
  hd_event_info_t info;
  hd_event_info(ev, &info);
  int marked = hd_event_possibly_repeated(ev);
  pthread_mutex_lock(&c->mu);
  if (c->ok[label][num] > 0 && !marked) {
    c->unmarked_repeats++;
    du_log_line(c->name, "TEST: %s#%d handled again, not marked", c->labels[label], num);
  }
  c->ok[label][num]++;
  c->marked[label][num] += marked;
  if (c->norder < (int)(sizeof c->order / sizeof c->order[0])) {
    c->order[c->norder++] = label * LU_MAXN + num;
  }
  pthread_mutex_unlock(&c->mu);
  char data[40];
  int n = snprintf(data, sizeof data, "ack %.*s", (int)info.payload_len, (const char *)info.payload);
  hd_event_complete(ev, 1, data, (size_t)n);
}

/* Reads label#num from the event; -1 (counted bad) if it does not name its own seq. */
static int event_label(lu_cli_t *c, hd_event_t *ev, int *label, int *num) {
  hd_event_info_t info;
  if (hd_event_info(ev, &info) == 0 && parse(c->labels, info.payload, info.payload_len, label, num) == 0 &&
      info.seq == (uint64_t)*num) {
    return 0;
  }
  pthread_mutex_lock(&c->mu);
  c->bad++;
  pthread_mutex_unlock(&c->mu);
  return -1;
}

static void on_event(void *ud, hd_event_t *ev) {
  lu_cli_t *c = ud;
  int label = 0, num = 0;
  if (event_label(c, ev, &label, &num) != 0) {
    hd_event_complete(ev, 1, NULL, 0);
    return;
  }
  pthread_mutex_lock(&c->mu);
  if (c->hold_from != 0 && (uint64_t)num >= c->hold_from && c->nheld < 64) {
    c->held[c->nheld++] = ev;
    pthread_mutex_unlock(&c->mu);
    return;
  }
  pthread_mutex_unlock(&c->mu);
  handle(c, ev, label, num);
}

int lu_held_count(lu_cli_t *c) {
  pthread_mutex_lock(&c->mu);
  int n = c->nheld;
  pthread_mutex_unlock(&c->mu);
  return n;
}

void lu_cli_release(lu_cli_t *c) {
  pthread_mutex_lock(&c->mu);
  c->hold_from = 0;
  int n = c->nheld;
  hd_event_t *held[64];
  memcpy(held, c->held, sizeof held);
  c->nheld = 0;
  pthread_mutex_unlock(&c->mu);
  for (int i = 0; i < n; i++) {
    int label, num;
    if (event_label(c, held[i], &label, &num) == 0) handle(c, held[i], label, num);
  }
}

static void on_consumed(void *ud, const uint8_t user[32], hd_consumed_t *b) {
  lu_srv_t *s = ud;
  (void)user;
  pthread_mutex_lock(&s->mu);
  for (size_t i = 0; i < hd_consumed_count(b); i++) {
    hd_event_info_t info;
    int label, num;
    char want[40];
    if (hd_consumed_event(b, i, &info) != 0 ||
        parse(s->labels, info.payload, info.payload_len, &label, &num) != 0) {
      s->bad++;
      continue;
    }
    int n = snprintf(want, sizeof want, "ack %.*s", (int)info.payload_len, (const char *)info.payload);
    if ((s->label >= 0 && label != s->label) || info.data_len != (size_t)n ||
        memcmp(info.data, want, info.data_len) != 0) {
      s->bad++;
      du_log_line(s->name, "TEST: %s reported with the data '%.*s'", want + 4, (int)info.data_len,
                  (const char *)info.data);
    }
    pthread_mutex_lock(&s->client->mu);
    if (s->client->ok[label][num] == 0) s->premature++;
    pthread_mutex_unlock(&s->client->mu);
    s->reports[label][num]++;
  }
  if (s->hold && s->nheld < 256) {
    s->held[s->nheld++] = b;
    pthread_mutex_unlock(&s->mu);
    return;
  }
  pthread_mutex_unlock(&s->mu);
  hd_consumed_complete_all(b, 1);
}

int lu_world_init(lu_world_t *w, const char *tag, const char *const labels[2]) {
  memset(w, 0, sizeof *w);
  lu_srv_t *s = &w->s;
  lu_cli_t *c = &w->c;
  snprintf(s->name, sizeof s->name, "server");
  snprintf(c->name, sizeof c->name, "client");
  s->labels = c->labels = labels;
  s->label = -1;
  s->client = c;
  pthread_mutex_init(&s->mu, NULL);
  pthread_mutex_init(&c->mu, NULL);
  w->tmp = hdt_mkdtemp(tag);
  s->dir = hdt_path(w->tmp, "server");
  c->dir = hdt_path(w->tmp, "client");
  if (w->tmp == NULL || s->dir == NULL || c->dir == NULL) return -1;
  return hd_keypair_generate(&s->kp) == 0 && hd_keypair_generate(&c->kp) == 0 ? 0 : -1;
}

void lu_world_free(lu_world_t *w) {
  lu_cli_stop(&w->c);
  lu_srv_stop(&w->s);
  hdt_rmrf(w->tmp);
  free(w->tmp);
  free(w->s.dir);
  free(w->c.dir);
  memset(w, 0, sizeof *w);
}

int lu_srv_start(lu_srv_t *s) {
  char listen[64];
  snprintf(listen, sizeof listen, "127.0.0.1:%d", s->port);
  pthread_mutex_lock(&s->mu);
  memset(s->reports, 0, sizeof s->reports);
  pthread_mutex_unlock(&s->mu);
  hd_server_options_t o = HD_SERVER_OPTIONS_INIT;
  o.keypair = &s->kp;
  o.topic = DU_TOPIC;
  o.listen = listen;
  o.data_dir = s->dir;
  o.sync_normal = s->sync_normal;
  o.on_consumed = on_consumed;
  o.user_data = s;
  o.log = du_log_cb;
  o.log_level = hdt_verbose() ? HD_LOG_DEBUG : HD_LOG_INFO;
  int rc = HD_EADDRINUSE;
  for (int i = 0; i < 100 && rc == HD_EADDRINUSE; i++) {
    rc = hd_server_create(&s->h, &o);
    if (rc == HD_EADDRINUSE) hdt_sleep_ms(20);
  }
  if (rc != 0) {
    du_log_line(s->name, "TEST: hd_server_create: %s (%s)", hd_err_name(rc), hd_last_error_message());
    s->h = NULL;
    return rc;
  }
  s->port = hd_server_port(s->h);
  return 0;
}

int lu_srv_stop(lu_srv_t *s) {
  if (s->h == NULL) return 0;
  int rc = hd_server_close_wait(s->h);
  s->h = NULL;
  for (int i = 0; i < s->nheld; i++) hd_consumed_complete_all(s->held[i], 0); /* only frees */
  s->nheld = 0;
  return rc;
}

int lu_cli_start(lu_cli_t *c, const lu_srv_t *s) {
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", s->port);
  hd_client_options_t o = HD_CLIENT_OPTIONS_INIT;
  o.keypair = &c->kp;
  o.server_public_key = s->kp.public_key;
  o.topic = DU_TOPIC;
  o.connect = addr;
  o.data_dir = c->dir;
  o.on_event = on_event;
  o.user_data = c;
  o.log = du_log_cb;
  o.log_level = hdt_verbose() ? HD_LOG_DEBUG : HD_LOG_INFO;
  o.reconnect_min_ms = 50;
  o.reconnect_max_ms = 200;
  return hd_client_create(&c->h, &o);
}

int lu_cli_stop(lu_cli_t *c) {
  if (c->h == NULL) return 0;
  int rc = hd_client_close_wait(c->h);
  c->h = NULL;
  for (int i = 0; i < c->nheld; i++) hd_event_complete(c->held[i], 0, NULL, 0);
  c->nheld = 0;
  return rc;
}

int lu_add(lu_srv_t *s, const lu_cli_t *c, int label, int first, int last) {
  for (int n = first; n <= last; n++) {
    char p[32];
    int len = snprintf(p, sizeof p, "%s#%d", s->labels[label], n);
    uint64_t seq = 0;
    int rc = hd_server_add_event_wait(s->h, c->kp.public_key, p, (size_t)len, &seq);
    if (rc != 0 || seq != (uint64_t)n) {
      du_log_line("test", "TEST: add %s: %s, seq %llu", p, hd_err_name(rc), (unsigned long long)seq);
      return -1;
    }
  }
  return 0;
}

int lu_ok_count(lu_cli_t *c, int label, int n) {
  pthread_mutex_lock(&c->mu);
  int v = c->ok[label][n];
  pthread_mutex_unlock(&c->mu);
  return v;
}

int lu_handled(lu_cli_t *c, int label, int first, int last, int times) {
  for (int n = first; n <= last; n++) {
    if (lu_ok_count(c, label, n) < times) return 0;
  }
  return 1;
}

int lu_reports(lu_srv_t *s, int label, int n) {
  pthread_mutex_lock(&s->mu);
  int v = s->reports[label][n];
  pthread_mutex_unlock(&s->mu);
  return v;
}

uint64_t lu_pending(lu_srv_t *s) {
  hd_server_stats_t st;
  return s->h != NULL && hdt_server_stats(s->h, &st) == 0 ? st.pending_total : UINT64_MAX;
}

uint64_t lu_high_water(lu_cli_t *c) {
  hd_client_stats_t st;
  return c->h != NULL && hdt_client_stats(c->h, &st) == 0 ? st.high_water : UINT64_MAX;
}

int lu_client_store_empty(lu_cli_t *c) {
  hd_client_stats_t st;
  return c->h != NULL && hdt_client_stats(c->h, &st) == 0 && st.unhandled == 0 && st.consumed == 0;
}
