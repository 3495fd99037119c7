/* Crashes: processes killed with SIGKILL in the middle of a stream of events.
 *
 * The test re-executes its own binary (/proc/self/exe, argv[1] = "crash_role") in two roles,
 * chosen by the environment (HD_CRASH_ROLE):
 *   server  creates a server on a data folder, adds HD_CRASH_ADD events for one user from four
 *           threads with hd_server_add_event_wait (so group commits happen), and completes every
 *           consumption report ok;
 *   client  the user's client on its own data folder; its handler completes ok at once.
 * Both processes append lines to ONE shared log file opened with O_APPEND. A line is a single
 * write(2), so lines from the processes interleave whole and the file's order is the order in
 * which things happened. A write that returned is in the kernel's page cache and survives a
 * SIGKILL of the writer (only a machine crash could lose it, which this test does not do), so the
 * lines need no fsync to be evidence:
 *   "added SEQ IDX"     after hd_server_add_event_wait returned (the event is durable)
 *   "handled SEQ IDX"   in the handler, before it completes ok
 *   "reported SEQ"      in on_consumed: the server received the client's consumption report
 *   "KILL server|client", "START ..." written by the parent
 * (IDX is the payload's number, "crash#IDX", so a handled event is matched to its add.)
 *
 * server_killed: the parent SIGKILLs the server once half the events were added, starts it
 * again on the same folder and port (it adds N/10 more), lets everything drain, stops both and
 * checks: every event whose add completed is handled; none is handled twice (the client and its
 * store survived); no sequence number is given twice across the crash; the payload handled for
 * a seq is the one added; both stores end empty. Consumption reports seen twice by the server
 * (the client reports again what the killed server had not confirmed: at least once) are counted
 * and printed.
 *
 * client_killed: the parent SIGKILLs the client once a third of the events were handled, starts
 * it again on the same folder. Its handler works 50 us per event (HD_CRASH_US overrides) so that
 * the client is busy all along and the kill lands while consumptions are being recorded. A handler may run again for an event it completed whose consumption
 * was not yet durable (docs/ARCHITECTURE.md: at least once), so the strict rule checked is the durable one:
 * once the server has received the consumption report of an event (the client sends it only after
 * recording the consumption durably), that event is never handled again. Also: every added event
 * is handled; within one client process no event is handled twice. Re-handles are counted and
 * printed.
 *
 * torture: many kills (HD_KILLS, 60 by default, 30 under valgrind) of the server, the client or
 * both, at random moments (seeded: HD_SEED, 1 by default) while the server adds and the client
 * handles; each victim is started again at once on its folder (torture_run says how). Server
 * incarnation k adds the payloads crash#<k * 1000000 + i>, so every payload is unique. The log
 * gives the evidence: "added" lines are the acknowledged adds; a "handled" line belongs to the
 * client incarnation the parent started last before it ("START client"), and "KILL client"
 * says that incarnation was killed. Checked: every acknowledged add handled (zero loss); no
 * sequence number given twice; no event handled twice by one incarnation, again after an
 * incarnation that ended cleanly, or again after the server received its report; and the
 * repeats of a killed incarnation are the tail of what it handled (its consumptions commit in
 * order, so what was not yet durable at the kill is its last handlings); everything drains, both
 * stores end empty. The figures (kills of each, events, repeats, time) are printed.
 *
 * The torture's adds are a mix (HD_CRASH_MIX in the children; mix_kind says which from the
 * payload's number): plain ones; ones with a time to live of 10 to 220 ms (a killed client stays
 * away 150 to 350 ms one time in three, so the sweep takes some); ones with a dedup key, each
 * repeated at once by another thread and again by the next server incarnation (same key, same
 * payload); ones with a collapse key (3 keys); and poison ones the client's handler fails at
 * every call (max_attempts 4) or rejects; and pairs added by one hd_server_add_events call
 * (crash#IDX and crash#<IDX + 500000>, numbered one after the other). More lines: "dup SEQ IDX
 * OWN" (a repeat's answer), "replaced R SEQ", "notice SEQ KIND COUNT FIRST LAST" (on_notice),
 * "poison SEQ IDX ATTEMPT", "dl SEQ ATTEMPTS" (on_dead_letter) and, from the last server at its
 * stop, "dead SEQ ATTEMPTS IDX REASON" for every dead letter; "handled" lines carry
 * hd_event_attempt. Checked besides:
 * an acknowledged add is handled, or expired unsent and in an EXPIRED notice's range (the
 * notices count exactly those, give or take the adds a killed server committed unanswered), or
 * replaced unsent (never handled), or a poison event in the dead letters after 4 calls (failed)
 * or at once (rejected), never seen by on_consumed; a repeat answers the number its payload was
 * stored under and no payload is stored twice; attempts rise across kills. */
#include "harness.h"
#include "delivery_util.h"

#define ADDERS 4

/* ================================ child roles ================================ */

static int log_fd = -1;

static void log_write(const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (n > (int)sizeof line - 2) n = (int)sizeof line - 2;
  line[n++] = '\n';
  ssize_t w = write(log_fd, line, (size_t)n);
  (void)w;
}

static void role_log(void *ud, hd_log_level_t level, const char *msg) {
  if (level <= HD_LOG_INFO) log_write("# %s [%d] %s", (const char *)ud, (int)level, msg);
}

/* What a role starts from: its key pair (hex in $<env>_S, $<env>_P), the other public key it needs
 * (hex in $<other>), and the address 127.0.0.1:$HD_CRASH_PORT. 0 or an error. */
static int role_keys(hd_keypair_t *kp, const char *env, uint8_t other_pk[32], const char *other,
                     char addr[64]) {
  char name[64];
  uint8_t sc[32], pk[32];
  snprintf(addr, 64, "127.0.0.1:%s", getenv("HD_CRASH_PORT"));
  snprintf(name, sizeof name, "%s_S", env);
  const char *sc_hex = getenv(name);
  snprintf(name, sizeof name, "%s_P", env);
  const char *pk_hex = getenv(name);
  if (!sc_hex || !pk_hex || !getenv(other) || hd_hex_decode(sc, 32, sc_hex) ||
      hd_hex_decode(pk, 32, pk_hex) || hd_hex_decode(other_pk, 32, getenv(other)))
    return -1;
  return hd_keypair_from_scalar(kp, sc, pk);
}

/* The parent's stop file, or a time limit (a child never outlives a parent that died). */
static uint64_t role_deadline;
static int stop_requested(void) {
  if (role_deadline == 0) role_deadline = hdt_now_ms() + 300000;
  return access(getenv("HD_CRASH_STOP"), F_OK) == 0 || hdt_now_ms() > role_deadline;
}

/* After the parent's stop, up to 10 s for `drained(h)` (the handle's store has nothing left). */
static void role_wind_down(int (*drained)(void *h), void *h) {
  while (!stop_requested()) hdt_sleep_ms(10);
  uint64_t dl = hdt_now_ms() + 10000;
  while (hdt_now_ms() < dl && !drained(h)) hdt_sleep_ms(10);
}

static int server_drained(void *s) {
  hd_server_stats_t st;
  return hdt_server_stats(s, &st) != 0 || st.pending_total == 0;
}

static int client_drained(void *c) {
  hd_client_stats_t st;
  return hdt_client_stats(c, &st) != 0 || (st.unhandled == 0 && st.consumed == 0);
}

/* ---- the torture's mix (HD_CRASH_MIX=1): what an add of payload crash#IDX carries ----
 * The kind is a function of IDX, so the parent reads it from the log's numbers. Kinds are not
 * mixed: an event is plain, or has a time to live, or a dedup key, or a collapse key, or is
 * poison. */
enum {
  MIX_PLAIN,
  MIX_TTL,         /* ttl_ms mix_ttl(IDX): 10 to 220 ms, some expire while the client is away */
  MIX_DEDUP,       /* dedup key "dk<IDX>" */
  MIX_DEDUP_AGAIN, /* a repeat of IDX - 1 (its key and payload) by another thread at once */
  MIX_DEDUP_OLD,   /* a repeat of IDX - 2 - 1000000: the previous server incarnation's add */
  MIX_COLLAPSE,    /* collapse key "ck<(IDX / 20) % 3>" */
  MIX_FAIL,        /* poison: the client's handler fails it at every call (hd_event_fail) */
  MIX_REJECT,      /* poison: the client's handler rejects it at once (hd_event_reject) */
  MIX_BATCH,       /* with crash#<IDX + MIX_BATCH_SECOND> in one hd_server_add_events call */
};

/* The second item of a MIX_BATCH call: a number no incarnation's own adds reach. */
#define MIX_BATCH_SECOND 500000

/* The client's attempts at an event under the mix (max_attempts), with a short backoff. */
#define MIX_ATTEMPTS 4

static int mix_kind(long idx) {
  if (idx % 100 == 17) return MIX_FAIL;
  if (idx % 100 == 57) return MIX_REJECT;
  switch (idx % 20) {
    case 3: case 13: return MIX_TTL;
    case 5: return MIX_DEDUP;
    case 6: return MIX_DEDUP_AGAIN;
    case 7: return MIX_DEDUP_OLD;
    case 9: case 19: return MIX_COLLAPSE;
    case 11: return MIX_BATCH;
    default: return MIX_PLAIN;
  }
}

static uint64_t mix_ttl(long idx) { return 10 + (uint64_t)((idx / 20) % 8) * 30; }
static int mix_collapse_key(long idx) { return (int)((idx / 20) % 3); }

typedef struct adder {
  hd_server_t *s;
  const uint8_t *user;
  atomic_long *next;
  long last;
  long pause_us; /* between two adds of one thread (HD_CRASH_ADD_US): adds spread over time */
  int mix;       /* HD_CRASH_MIX: adds of every kind (mix_kind) */
  int failed;
} adder_t;

/* MIX_BATCH: crash#i and crash#<i + MIX_BATCH_SECOND> in one hd_server_add_events call (one
 * transaction): both "added", the second numbered right after the first. */
static int adder_add_batch(adder_t *a, long i) {
  char text[2][32];
  hd_add_item_t items[2];
  for (int j = 0; j < 2; j++) {
    int len = snprintf(text[j], sizeof text[j], "crash#%ld", i + j * MIX_BATCH_SECOND);
    items[j] = (hd_add_item_t){a->user, text[j], (size_t)len, NULL};
  }
  hd_fanout_result_t r[2];
  int rc = hd_server_add_events_wait(a->s, items, 2, r);
  for (int j = 0; rc == 0 && j < 2; j++) rc = r[j].status;
  if (rc != 0) return rc;
  for (int j = 0; j < 2; j++) {
    log_write("added %" PRIu64 " %ld", r[j].result.seq, i + j * MIX_BATCH_SECOND);
  }
  if (r[1].result.seq != r[0].result.seq + 1) {
    log_write("# batch %ld numbered %" PRIu64 " and %" PRIu64 ": not in item order", i,
              r[0].result.seq, r[1].result.seq);
    return HD_EINVAL;
  }
  return 0;
}

/* Adds payload crash#i as the mix says (plain without it) and logs what the server answered:
 *   "added SEQ IDX"        stored (IDX: the payload's number, which a repeat takes from its first)
 *   "dup SEQ IDX OWN"      a dedup repeat (add OWN) answered with SEQ, nothing stored
 *   "replaced R SEQ"       the add SEQ replaced the unsent event R (collapse key) */
static int adder_add(adder_t *a, long i) {
  uint8_t buf[128], key[32];
  hd_add_options_t ao;
  hd_add_options_init(&ao, HD_ADD_OPTIONS_VERSION);
  long idx = i;
  int kind = a->mix ? mix_kind(i) : MIX_PLAIN;
  if (kind == MIX_DEDUP_AGAIN) idx = i - 1;
  if (kind == MIX_DEDUP_OLD) idx = i >= 1000000 ? i - 2 - 1000000 : -1;
  if (kind == MIX_TTL) ao.ttl_ms = mix_ttl(i);
  if (kind == MIX_DEDUP || kind == MIX_DEDUP_AGAIN || (kind == MIX_DEDUP_OLD && idx >= 0)) {
    ao.dedup_key = key;
    ao.dedup_key_len = (size_t)snprintf((char *)key, sizeof key, "dk%ld", idx);
  }
  if (kind == MIX_DEDUP_OLD && idx < 0) idx = i; /* the first incarnation has no previous one */
  if (kind == MIX_COLLAPSE) {
    ao.collapse_key = key;
    ao.collapse_key_len = (size_t)snprintf((char *)key, sizeof key, "ck%d", mix_collapse_key(i));
  }
  if (kind == MIX_BATCH) return adder_add_batch(a, i);
  int len = snprintf((char *)buf, sizeof buf, "crash#%ld", idx);
  hd_add_result_t r;
  int rc = a->mix ? hd_server_add_event_v2_wait(a->s, a->user, buf, (size_t)len, &ao, &r)
                  : hd_server_add_event_wait(a->s, a->user, buf, (size_t)len, &r.seq);
  if (rc != 0) return rc;
  if (!a->mix) r.flags = 0;
  if (r.flags & HD_ADD_DUPLICATE) {
    log_write("dup %" PRIu64 " %ld %ld%s", r.seq, idx, i,
              r.flags & HD_ADD_CONFLICT ? " conflict" : "");
    return 0;
  }
  log_write("added %" PRIu64 " %ld", r.seq, idx);
  if (r.flags & HD_ADD_REPLACED) log_write("replaced %" PRIu64 " %" PRIu64, r.replaced_seq, r.seq);
  return 0;
}

static void *adder_main(void *arg) {
  adder_t *a = arg;
  for (;;) {
    long i = atomic_fetch_add(a->next, 1);
    if (i > a->last) break;
    int rc = adder_add(a, i);
    if (rc != 0) {
      log_write("# add %ld failed: %s (%s)", i, hd_err_name(rc), hd_last_error_message());
      a->failed++;
      continue;
    }
    if (a->pause_us > 0) usleep((useconds_t)a->pause_us);
  }
  return NULL;
}

static void role_consumed(void *ud, const uint8_t user[32], hd_consumed_t *b) {
  (void)ud;
  (void)user;
  size_t n = hd_consumed_count(b);
  for (size_t i = 0; i < n; i++) {
    hd_event_info_t info;
    if (hd_consumed_event(b, i, &info) == 0) {
      char want[64];
      int wl = snprintf(want, sizeof want, "ack %" PRIu64, info.seq);
      if (info.data_len != (size_t)wl || memcmp(info.data, want, (size_t)wl) != 0)
        log_write("bad-data %" PRIu64, info.seq);
      log_write("reported %" PRIu64, info.seq);
    }
  }
  hd_consumed_complete_all(b, 1);
}

/* The user's dead letters as the store holds them at the end: "dead SEQ ATTEMPTS IDX REASON". */
static void log_dead_letters(hd_server_t *s, const uint8_t user[32]) {
  static uint8_t buf[256 * 1024];
  hd_dead_letter_t page[64];
  uint64_t cursor = 0;
  int n;
  while ((n = hd_server_list_dead_letters(s, user, &cursor, page, 64, buf, sizeof buf)) > 0) {
    for (int i = 0; i < n; i++) {
      const hd_dead_letter_t *d = &page[i];
      long idx = -1;
      if (d->payload_len > 6 && d->payload_len < 40 && memcmp(d->payload, "crash#", 6) == 0) {
        char tmp[40]; /* the payload is not NUL-terminated in the listing's buffer */
        memcpy(tmp, d->payload + 6, d->payload_len - 6);
        tmp[d->payload_len - 6] = '\0';
        idx = atol(tmp);
      }
      log_write("dead %" PRIu64 " %u %ld %.*s", d->seq, d->attempts, idx, (int)d->reason_len,
                d->reason);
    }
  }
  if (n < 0) log_write("# list dead letters failed: %s", hd_err_name(n));
}

static void role_dead_letter(void *ud, const uint8_t user[32], const hd_dead_letter_t *d) {
  (void)ud;
  (void)user;
  log_write("dl %" PRIu64 " %u", d->seq, d->attempts);
}

static void role_server(void) {
  hd_keypair_t kp;
  uint8_t user[32];
  char listen[64];
  CHECK_OK(role_keys(&kp, "HD_CRASH_SKEY", user, "HD_CRASH_USER", listen));
  hd_server_options_t o = HD_SERVER_OPTIONS_INIT;
  o.keypair = &kp;
  o.topic = DU_TOPIC;
  o.listen = listen;
  o.data_dir = getenv("HD_CRASH_DIR");
  o.on_consumed = role_consumed;
  o.on_dead_letter = role_dead_letter;
  o.log = role_log;
  o.log_level = HD_LOG_INFO;
  o.user_data = "server";
  hd_server_t *s = NULL;
  int rc = HD_EADDRINUSE;
  for (int i = 0; i < 100 && rc == HD_EADDRINUSE; i++) {
    rc = hd_server_create(&s, &o);
    if (rc == HD_EADDRINUSE) hdt_sleep_ms(20);
  }
  if (rc != 0) log_write("# server create failed: %s (%s)", hd_err_name(rc), hd_last_error_message());
  CHECK_OK(rc);
  log_write("port %d", hd_server_port(s));
  atomic_long next = atol(getenv("HD_CRASH_FIRST"));
  long last = next + atol(getenv("HD_CRASH_ADD")) - 1;
  long pause_us = getenv("HD_CRASH_ADD_US") ? atol(getenv("HD_CRASH_ADD_US")) : 0;
  adder_t a[ADDERS];
  pthread_t t[ADDERS];
  for (int i = 0; i < ADDERS; i++) {
    a[i] = (adder_t){s, user, &next, last, pause_us, getenv("HD_CRASH_MIX") != NULL, 0};
    pthread_create(&t[i], NULL, adder_main, &a[i]);
  }
  int failed = 0;
  for (int i = 0; i < ADDERS; i++) {
    pthread_join(t[i], NULL);
    failed += a[i].failed;
  }
  log_write("adds-done %d", failed);
  role_wind_down(server_drained, s);
  hd_server_stats_t st;
  hdt_server_stats(s, &st);
  log_write("final-server pending %" PRIu64, st.pending_total);
  log_dead_letters(s, user);
  CHECK_OK(hd_server_close_wait(s));
  CHECK(failed == 0);
}

static long handler_us;
static int client_mix; /* HD_CRASH_MIX */

static void role_event(void *ud, hd_event_t *ev) {
  (void)ud;
  hd_event_info_t info;
  if (hd_event_info(ev, &info) != 0) {
    log_write("bad-event");
    hd_event_complete(ev, 0, NULL, 0);
    return;
  }
  long idx = -1;
  if (info.payload_len > 6 && info.payload_len < 40 && memcmp(info.payload, "crash#", 6) == 0) {
    char tmp[40];
    memcpy(tmp, info.payload + 6, info.payload_len - 6);
    tmp[info.payload_len - 6] = '\0';
    idx = atol(tmp);
  }
  uint32_t attempt = hd_event_attempt(ev);
  int kind = client_mix && idx >= 0 ? mix_kind(idx) : MIX_PLAIN;
  if (kind == MIX_FAIL || kind == MIX_REJECT) {
    log_write("poison %" PRIu64 " %ld %u", info.seq, idx, attempt);
    if (kind == MIX_FAIL) hd_event_fail(ev, "torture poison", 14);
    else hd_event_reject(ev, "torture reject", 14);
    return;
  }
  log_write("handled %" PRIu64 " %ld %u", info.seq, idx, attempt);
  if (handler_us > 0) usleep((useconds_t)handler_us); /* an application doing some work */
  char data[64];
  int dl = snprintf(data, sizeof data, "ack %" PRIu64, info.seq);
  hd_event_complete(ev, 1, data, (size_t)dl);
}

/* The mix's notices: "notice SEQ KIND COUNT FIRST LAST", then completed ok. */
static void role_notice(void *ud, hd_event_t *ev) {
  (void)ud;
  hd_notice_t n;
  if (hd_event_notice(ev, &n) != 0) {
    log_write("bad-event");
  } else {
    log_write("notice %" PRIu64 " %u %" PRIu64 " %" PRIu64 " %" PRIu64, hd_event_seq(ev), n.kind,
              n.count, n.first_seq, n.last_seq);
  }
  hd_event_complete(ev, 1, NULL, 0);
}

static void role_client(void) {
  hd_keypair_t kp;
  uint8_t server_pk[32];
  char connect[64];
  CHECK_OK(role_keys(&kp, "HD_CRASH_UKEY", server_pk, "HD_CRASH_SKEY_P", connect));
  hd_client_options_t o = HD_CLIENT_OPTIONS_INIT;
  o.keypair = &kp;
  o.server_public_key = server_pk;
  o.topic = DU_TOPIC;
  o.connect = connect;
  o.data_dir = getenv("HD_CRASH_DIR");
  o.on_event = role_event;
  o.log = role_log;
  o.log_level = HD_LOG_INFO;
  o.user_data = "client";
  handler_us = getenv("HD_CRASH_HANDLER_US") ? atol(getenv("HD_CRASH_HANDLER_US")) : 0;
  o.reconnect_min_ms = 20;
  o.reconnect_max_ms = 200;
  client_mix = getenv("HD_CRASH_MIX") != NULL;
  if (client_mix) {
    o.on_notice = role_notice;
    o.max_attempts = MIX_ATTEMPTS;
    o.retry_min_ms = 1;
    o.retry_max_ms = 4;
  }
  hd_client_t *c = NULL;
  int rc = hd_client_create(&c, &o);
  if (rc != 0) log_write("# client create failed: %s (%s)", hd_err_name(rc), hd_last_error_message());
  CHECK_OK(rc);
  role_wind_down(client_drained, c);
  hd_client_stats_t st;
  hdt_client_stats(c, &st);
  log_write("final-client unhandled %" PRIu64 " consumed %" PRIu64, st.unhandled, st.consumed);
  CHECK_OK(hd_client_close_wait(c));
}

static void crash_role(void) {
  const char *role = getenv("HD_CRASH_ROLE");
  if (role == NULL) return; /* not a child */
  log_fd = open(getenv("HD_CRASH_LOG"), O_WRONLY | O_APPEND | O_CREAT, 0600);
  CHECK(log_fd >= 0);
  if (strcmp(role, "server") == 0) role_server();
  else role_client();
  close(log_fd);
}

/* ================================ the parent ================================ */

typedef struct crash {
  char *root, *sdir, *cdir, *log, *stop;
  hd_keypair_t skp, ukp;
  pid_t server, client;
  int port;
  long n;
  uint64_t cap;    /* the log's sequence numbers are below this */
  long handler_us; /* the client's handler works this long per event */
  long add_us;     /* each adding thread of the server pauses this long between adds */
  int mix;         /* the torture's mix of adds (HD_CRASH_MIX in the children) */
} crash_t;

/* The log, parsed. */
typedef struct parsed {
  uint64_t cap;
  int *added, *handled, *handled_seg, *reported, *reported_seen;
  long *added_idx;
  long added_lines, handled_lines, reported_lines;
  int segment;               /* client processes seen (KILL client lines) */
  int dup_in_segment;        /* a seq handled twice by one client process */
  int handled_after_report;  /* the strict rule broken */
  uint64_t first_after_report;
  int idx_mismatch, bad_data, bad_event, out_of_range;
  int adds_done, add_failures;
  int port_lines, last_port;
  int final_server, final_client;
  long final_pending, final_unhandled, final_consumed;
  /* processes: "START client" begins client incarnation `client_starts` (from 1); a handled
   * line belongs to the incarnation started last (one client runs at a time) */
  int server_starts, client_starts, adds_done_server; /* the server incarnation of adds-done */
  char *client_killed;            /* [incarnation]: ended by SIGKILL (killed_cap of them) */
  size_t killed_cap;
  struct handling { uint64_t seq; int inc; } *hrec; /* every handled line, in order */
  size_t n_hrec, hrec_cap;
  /* the mix (p->mix): kinds are mix_kind(the payload's number) */
  int mix;
  long *handled_idx;         /* [seq]: the payload's number of its handled line (0: none) */
  uint64_t *replaced_by;     /* [seq]: the add that replaced it (collapse), 0: none */
  char *is_notice;           /* [seq]: a notice line had this number */
  int *dead;                 /* [seq]: the attempts of its dead letter (0: none) */
  struct notice { uint64_t seq, count, first, last; unsigned kind; } *notices; /* distinct seqs */
  size_t n_notices, notices_cap;
  struct dup { uint64_t seq; long idx, own; } *dups; /* "dup" lines */
  size_t n_dups, dups_cap;
  long notice_lines, replaced_lines, dead_lines, conflicts, replaced_twice;
  /* attempts (hd_event_attempt) and poison */
  uint32_t *last_attempt;    /* [seq]: the attempt of its last handler call */
  long attempt_not_rising;   /* a call whose attempt was not above the seq's previous call's */
  int *poison_calls;         /* [seq]: "poison" lines (handler calls of a poison event) */
  long *poison_idx;          /* [seq]: their payload's number */
  int *poison_inc_calls;     /* [seq]: calls by the client incarnation of its last call */
  int *poison_inc;           /* [seq]: that incarnation */
  long reject_twice_in_inc;  /* a rejected event called twice by one client incarnation */
  char *dl;                  /* [seq]: on_dead_letter said so */
  long poison_lines;
} parsed_t;

/* Grows *arr (of `size`-byte items, *cap of them) to hold `want`, zeroing what it adds. */
static int grow(void *arr, size_t *cap, size_t want, size_t size) {
  if (want <= *cap) return 0;
  size_t n = *cap ? *cap * 2 : 64;
  while (n < want) n *= 2;
  char *p = realloc(*(char **)arr, n * size);
  if (p == NULL) return -1;
  memset(p + *cap * size, 0, (n - *cap) * size);
  *(char **)arr = p;
  *cap = n;
  return 0;
}

static void parsed_free(parsed_t *p) {
  free(p->last_attempt);
  free(p->poison_calls);
  free(p->poison_idx);
  free(p->poison_inc_calls);
  free(p->poison_inc);
  free(p->dl);
  free(p->handled_idx);
  free(p->replaced_by);
  free(p->is_notice);
  free(p->dead);
  free(p->notices);
  free(p->dups);
  free(p->client_killed);
  free(p->hrec);
  free(p->added);
  free(p->handled);
  free(p->handled_seg);
  free(p->reported);
  free(p->reported_seen);
  free(p->added_idx);
  memset(p, 0, sizeof *p);
}

static int parse_log(const char *path, uint64_t cap, int mix, parsed_t *p) {
  memset(p, 0, sizeof *p);
  p->cap = cap;
  p->mix = mix;
  p->handled_idx = calloc(cap, sizeof(long));
  p->replaced_by = calloc(cap, sizeof(uint64_t));
  p->is_notice = calloc(cap, 1);
  p->dead = calloc(cap, sizeof(int));
  p->last_attempt = calloc(cap, sizeof(uint32_t));
  p->poison_calls = calloc(cap, sizeof(int));
  p->poison_idx = calloc(cap, sizeof(long));
  p->poison_inc_calls = calloc(cap, sizeof(int));
  p->poison_inc = calloc(cap, sizeof(int));
  p->dl = calloc(cap, 1);
  p->added = calloc(cap, sizeof(int));
  p->handled = calloc(cap, sizeof(int));
  p->handled_seg = calloc(cap, sizeof(int));
  p->reported = calloc(cap, sizeof(int));
  p->reported_seen = calloc(cap, sizeof(int));
  p->added_idx = calloc(cap, sizeof(long));
  p->final_pending = p->final_unhandled = p->final_consumed = -1;
  FILE *f = fopen(path, "r");
  if (f == NULL) return -1;
  char line[1024];
  long *handled_idx = p->handled_idx;
  while (fgets(line, sizeof line, f)) {
    uint64_t seq, s2, s3, s4;
    long idx, a, b;
    unsigned kind;
    if (sscanf(line, "added %" SCNu64 " %ld", &seq, &idx) == 2) {
      p->added_lines++;
      if (seq >= cap) { p->out_of_range++; continue; }
      p->added[seq]++;
      p->added_idx[seq] = idx;
      if (handled_idx[seq] && handled_idx[seq] != idx) p->idx_mismatch++;
    } else if (sscanf(line, "poison %" SCNu64 " %ld %u", &seq, &idx, &kind) == 3) {
      p->poison_lines++;
      if (seq >= cap) { p->out_of_range++; continue; }
      if (kind <= p->last_attempt[seq]) p->attempt_not_rising++;
      p->last_attempt[seq] = kind;
      p->poison_calls[seq]++;
      p->poison_idx[seq] = idx;
      if (p->poison_inc[seq] != p->client_starts) p->poison_inc_calls[seq] = 0;
      p->poison_inc[seq] = p->client_starts;
      if (++p->poison_inc_calls[seq] > 1 && mix_kind(idx) == MIX_REJECT) p->reject_twice_in_inc++;
    } else if (sscanf(line, "dl %" SCNu64 " %ld", &seq, &a) == 2) {
      if (seq >= cap) { p->out_of_range++; continue; }
      p->dl[seq] = 1;
    } else if (sscanf(line, "handled %" SCNu64 " %ld", &seq, &idx) == 2) {
      p->handled_lines++;
      if (seq >= cap) { p->out_of_range++; continue; }
      if (sscanf(line, "handled %*u %*d %u", &kind) == 1) {
        if (kind <= p->last_attempt[seq]) p->attempt_not_rising++;
        p->last_attempt[seq] = kind;
      }
      p->handled[seq]++;
      if (p->handled_seg[seq] == p->segment + 1) p->dup_in_segment++;
      p->handled_seg[seq] = p->segment + 1;
      if (p->reported_seen[seq]) {
        if (!p->handled_after_report) p->first_after_report = seq;
        p->handled_after_report++;
      }
      handled_idx[seq] = idx;
      if (p->added[seq] && p->added_idx[seq] != idx) p->idx_mismatch++;
      if (grow(&p->hrec, &p->hrec_cap, p->n_hrec + 1, sizeof *p->hrec) == 0)
        p->hrec[p->n_hrec++] = (struct handling){seq, p->client_starts};
    } else if (sscanf(line, "reported %" SCNu64, &seq) == 1) {
      p->reported_lines++;
      if (seq >= cap) { p->out_of_range++; continue; }
      p->reported[seq]++;
      p->reported_seen[seq] = 1;
    } else if (sscanf(line, "dup %" SCNu64 " %ld %ld", &seq, &idx, &a) == 3) {
      if (seq >= cap) { p->out_of_range++; continue; }
      if (strstr(line, "conflict")) p->conflicts++;
      if (grow(&p->dups, &p->dups_cap, p->n_dups + 1, sizeof *p->dups) == 0)
        p->dups[p->n_dups++] = (struct dup){seq, idx, a};
    } else if (sscanf(line, "replaced %" SCNu64 " %" SCNu64, &seq, &s2) == 2) {
      p->replaced_lines++;
      if (seq >= cap || s2 >= cap) { p->out_of_range++; continue; }
      if (p->replaced_by[seq]) p->replaced_twice++;
      p->replaced_by[seq] = s2;
    } else if (sscanf(line, "notice %" SCNu64 " %u %" SCNu64 " %" SCNu64 " %" SCNu64, &seq, &kind,
                      &s2, &s3, &s4) == 5) {
      p->notice_lines++;
      if (seq >= cap) { p->out_of_range++; continue; }
      if (!p->is_notice[seq] &&
          grow(&p->notices, &p->notices_cap, p->n_notices + 1, sizeof *p->notices) == 0)
        p->notices[p->n_notices++] = (struct notice){seq, s2, s3, s4, kind};
      p->is_notice[seq] = 1;
      /* a notice is completed in the stream's order like an event: it takes part in the tally */
      if (p->handled_seg[seq] == p->segment + 1) p->dup_in_segment++;
      p->handled_seg[seq] = p->segment + 1;
      if (grow(&p->hrec, &p->hrec_cap, p->n_hrec + 1, sizeof *p->hrec) == 0)
        p->hrec[p->n_hrec++] = (struct handling){seq, p->client_starts};
    } else if (sscanf(line, "dead %" SCNu64 " %ld", &seq, &a) == 2) {
      p->dead_lines++;
      if (seq >= cap) { p->out_of_range++; continue; }
      p->dead[seq] = (int)a;
    } else if (strncmp(line, "KILL client", 11) == 0) {
      p->segment++;
      if (grow(&p->client_killed, &p->killed_cap, (size_t)p->client_starts + 1, 1) == 0)
        p->client_killed[p->client_starts] = 1;
    } else if (strncmp(line, "START client", 12) == 0) {
      p->client_starts++;
    } else if (strncmp(line, "START server", 12) == 0) {
      p->server_starts++;
    } else if (sscanf(line, "adds-done %ld", &a) == 1) {
      p->adds_done++;
      p->adds_done_server = p->server_starts;
      p->add_failures += (int)a;
    } else if (sscanf(line, "port %ld", &a) == 1) {
      p->port_lines++;
      p->last_port = (int)a;
    } else if (sscanf(line, "final-server pending %ld", &a) == 1) {
      p->final_server++;
      p->final_pending = a;
    } else if (sscanf(line, "final-client unhandled %ld consumed %ld", &a, &b) == 2) {
      p->final_client++;
      p->final_unhandled = a;
      p->final_consumed = b;
    } else if (strncmp(line, "bad-data", 8) == 0) {
      p->bad_data++;
    } else if (strncmp(line, "bad-event", 9) == 0) {
      p->bad_event++;
    }
  }
  fclose(f);
  return 0;
}

/* The event `s` is in the range of an EXPIRED notice the client was handed. */
static int expired_covered(const parsed_t *p, uint64_t s) {
  for (size_t i = 0; i < p->n_notices; i++) {
    const struct notice *n = &p->notices[i];
    if (n->kind == HD_NOTICE_EXPIRED && n->first <= s && s <= n->last) return 1;
  }
  return 0;
}

/* The unsent collapse event `r` was replaced: by an add that said so, or by a later add with its
 * key that committed without answering (its server was killed; its event was handled). */
static int collapse_replaced(const parsed_t *p, uint64_t r) {
  if (p->replaced_by[r]) return 1;
  int key = mix_collapse_key(p->added_idx[r]);
  for (uint64_t s = r + 1; s < p->cap; s++) {
    if (p->handled[s] && !p->added[s] && mix_kind(p->handled_idx[s]) == MIX_COLLAPSE &&
        mix_collapse_key(p->handled_idx[s]) == key)
      return 1;
  }
  return 0;
}

/* The acknowledged event `s` came to an end its kind allows: handled; under the mix also expired
 * (a time to live, and an EXPIRED notice covers it) or replaced (a collapse key). */
static int event_resolved(const parsed_t *p, uint64_t s) {
  if (p->handled[s]) return 1;
  if (!p->mix) return 0;
  if (p->dl[s]) return 1; /* a dead letter (the final listing says whether it may be) */
  switch (mix_kind(p->added_idx[s])) {
    case MIX_TTL: return expired_covered(p, s);
    case MIX_COLLAPSE: return collapse_replaced(p, s);
    /* seen by the handler: its end (a dead letter: on_dead_letter may have died with a killed
     * server) is the final listing's to show, once both sides drained */
    case MIX_FAIL: case MIX_REJECT: return p->poison_calls[s] > 0;
    default: return 0;
  }
}

/* The first acknowledged adds not resolved, as evidence. */
static void print_unresolved(const parsed_t *p) {
  int n = 0;
  for (uint64_t s = 1; s < p->cap && n < 10; s++) {
    if (p->added[s] && !event_resolved(p, s)) {
      fprintf(stderr, "  not resolved: seq %" PRIu64 ", payload %ld (kind %d)\n", s,
              p->added_idx[s], p->mix ? mix_kind(p->added_idx[s]) : MIX_PLAIN);
      n++;
    }
  }
}

/* Every acknowledged add resolved: handled (at least once), or as its kind allows. */
static int all_added_handled(const parsed_t *p) {
  for (uint64_t s = 1; s < p->cap; s++) {
    if (p->added[s] && !event_resolved(p, s)) return 0;
  }
  return 1;
}

static void parent_log(crash_t *c, const char *what) {
  int fd = open(c->log, O_WRONLY | O_APPEND | O_CREAT, 0600);
  if (fd < 0) return;
  char line[128];
  int n = snprintf(line, sizeof line, "%s\n", what);
  ssize_t w = write(fd, line, (size_t)n);
  (void)w;
  close(fd);
}

static void hexkey(char out[65], const uint8_t *b) { hd_hex_encode(out, 65, b, 32); }

static pid_t spawn(crash_t *c, const char *role, const char *dir, int port, long first, long add) {
  char ss[65], sp[65], us[65], up[65], portb[16], firstb[32], addb[32], hus[32], aus[32];
  char line[64];
  hexkey(ss, c->skp.scalar);
  hexkey(sp, c->skp.public_key);
  hexkey(us, c->ukp.scalar);
  hexkey(up, c->ukp.public_key);
  snprintf(portb, sizeof portb, "%d", port);
  snprintf(firstb, sizeof firstb, "%ld", first);
  snprintf(addb, sizeof addb, "%ld", add);
  snprintf(hus, sizeof hus, "%ld", c->handler_us);
  snprintf(aus, sizeof aus, "%ld", c->add_us);
  snprintf(line, sizeof line, "START %s", role);
  parent_log(c, line);
  char *env[] = {"HD_CRASH_ROLE",   (char *)role, "HD_CRASH_DIR",        (char *)dir,
                 "HD_CRASH_LOG",    c->log,       "HD_CRASH_STOP",       c->stop,
                 "HD_CRASH_PORT",   portb,        "HD_CRASH_FIRST",      firstb,
                 "HD_CRASH_ADD",    addb,         "HD_CRASH_HANDLER_US", hus,
                 "HD_CRASH_SKEY_S", ss,           "HD_CRASH_SKEY_P",     sp,
                 "HD_CRASH_UKEY_S", us,           "HD_CRASH_UKEY_P",     up,
                 "HD_CRASH_USER",   up,           "HD_CRASH_ADD_US",     aus,
                 c->mix ? "HD_CRASH_MIX" : NULL, "1", NULL};
  /* the children run natively, not under valgrind */
  return hdt_spawn_self("test_crash", "crash_role", env, HDT_CHILD_NATIVE | HDT_CHILD_QUIET);
}

static void kill_child(crash_t *c, pid_t *pid, const char *what) {
  if (*pid <= 0) return;
  kill(*pid, SIGKILL);
  waitpid(*pid, NULL, 0);
  *pid = 0;
  parent_log(c, what);
}

/* Waits until `cond` on a fresh parse holds (bounded). */
#define WAIT_LOG(c, p, cond, ms)                                                                  \
  ({                                                                                              \
    uint64_t wl_dl_ = hdt_now_ms() + (uint64_t)(ms) * (uint64_t)hdt_slow();                       \
    int wl_ok_ = 0;                                                                               \
    for (;;) {                                                                                    \
      parsed_free(&(p));                                                                          \
      parse_log((c)->log, (c)->cap, (c)->mix, &(p));                                              \
      if (cond) { wl_ok_ = 1; break; }                                                            \
      if (hdt_now_ms() > wl_dl_) break;                                                           \
      hdt_sleep_ms(20);                                                                           \
    }                                                                                             \
    wl_ok_;                                                                                       \
  })

static void crash_free(crash_t *c) {
  if (c->server > 0) { kill(c->server, SIGKILL); waitpid(c->server, NULL, 0); }
  if (c->client > 0) { kill(c->client, SIGKILL); waitpid(c->client, NULL, 0); }
  if (c->root && !getenv("HD_TEST_KEEP")) hdt_rmrf(c->root);
  free(c->root);
  free(c->sdir);
  free(c->cdir);
  free(c->log);
  free(c->stop);
  memset(c, 0, sizeof *c);
}

static int crash_init(crash_t *c) {
  memset(c, 0, sizeof *c);
  c->root = hdt_mkdtemp("crash");
  if (c->root == NULL) return -1;
  c->sdir = hdt_path(c->root, "server");
  c->cdir = hdt_path(c->root, "client");
  c->log = hdt_path(c->root, "log");
  c->stop = hdt_path(c->root, "stop");
  hd_keypair_generate(&c->skp);
  hd_keypair_generate(&c->ukp);
  c->n = (long)hdt_count(10000, 1000);
  c->cap = (uint64_t)c->n * 2 + 100;
  return 0;
}

static void print_tail(crash_t *c) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "grep -v '^\\(added\\|handled\\|reported\\) ' %s | tail -40 >&2", c->log);
  int r = system(cmd);
  (void)r;
}

/* Stops both children cleanly (the stop file) and waits for them. */
static int stop_children(crash_t *c) {
  int fd = open(c->stop, O_WRONLY | O_CREAT, 0600);
  if (fd >= 0) close(fd);
  int ok = 1;
  if (c->server > 0) {
    int st = hdt_wait_child(c->server, 30000);
    c->server = 0;
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) ok = 0;
  }
  if (c->client > 0) {
    int st = hdt_wait_child(c->client, 30000);
    c->client = 0;
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) ok = 0;
  }
  return ok;
}

/* Once the server just started on port 0 (c->server) says its port: the client, dialing it. 1
 * if both run. */
static int start_client(crash_t *c, parsed_t *p) {
  int got_port = c->server > 0 && WAIT_LOG(c, *p, p->port_lines >= 1, 10000);
  c->port = p->last_port;
  if (!got_port) {
    print_tail(c);
    return 0;
  }
  c->client = spawn(c, "client", c->cdir, c->port, 0, 0);
  return c->client > 0;
}

/* ---- the scenarios: one runner, a row each ---- */

/* What the log said when the victim was killed, and how the children ended. */
typedef struct outcome {
  long added_at_kill, handled_at_kill;
  int clean_exit;
} outcome_t;

typedef struct crash_case {
  const char *victim;   /* the process killed: "server" or "client" */
  long handler_us;      /* the client's handler works this long per event (HD_CRASH_US overrides) */
  int kill_div;         /* killed once n / kill_div events were added (server), handled (client) */
  /* what is printed and checked for this victim, beyond what every scenario checks */
  void (*verdict)(crash_t *c, const parsed_t *p, const outcome_t *o);
} crash_case_t;

/* The client and its store survived: exactly once; no sequence number given twice across the
 * crash; the restarted server added n / 10 more. */
static void server_verdict(crash_t *c, const parsed_t *p, const outcome_t *o) {
  printf("  server killed after %ld adds (%ld handled); then %ld added, %ld handled, %ld reports "
         "in all\n",
         o->added_at_kill, o->handled_at_kill, p->added_lines, p->handled_lines, p->reported_lines);
  int rereported = 0, twice = 0, dup_added = 0;
  uint64_t first_twice = 0, first_dup = 0;
  for (uint64_t s = 1; s < p->cap; s++) {
    if (p->reported[s] > 1) rereported++;
    if (p->handled[s] > 1) { if (!twice) first_twice = s; twice++; }
    if (p->added[s] > 1) { if (!dup_added) first_dup = s; dup_added++; }
  }
  printf("  %d events reported to the server again after its restart (at least once: allowed)\n",
         rereported);
  if (twice) fprintf(stderr, "  %d events handled twice, the first: seq %" PRIu64 "\n", twice, first_twice);
  if (dup_added) fprintf(stderr, "  %d sequence numbers given twice, the first: %" PRIu64 "\n", dup_added, first_dup);
  if (twice || dup_added || !o->clean_exit) print_tail(c);
  CHECK(twice == 0);             /* the client's store survived: exactly once */
  CHECK(dup_added == 0);         /* no sequence number given twice across the crash */
  CHECK(p->added_lines >= c->n / 2 + c->n / 10);
}

/* Re-handles of events whose consumption was not yet durable are allowed and counted; an event
 * whose report reached the server is never handled again; one process never handles twice. */
static void client_verdict(crash_t *c, const parsed_t *p, const outcome_t *o) {
  long rehandled = 0;
  for (uint64_t s = 1; s < p->cap; s++) {
    if (p->handled[s] > 1) rehandled += p->handled[s] - 1;
  }
  printf("  client killed after %ld handled (%ld added); %ld handled in all, %ld re-handled after "
         "the restart (consumption not yet durable: allowed)\n",
         o->handled_at_kill, o->added_at_kill, p->handled_lines, rehandled);
  if (p->handled_after_report)
    fprintf(stderr, "  %d events handled again after the server had their report, the first: seq %" PRIu64 "\n",
            p->handled_after_report, p->first_after_report);
  if (p->handled_after_report || p->dup_in_segment || !o->clean_exit) print_tail(c);
  CHECK(p->handled_after_report == 0); /* durable consumption is never handled again */
  CHECK(p->dup_in_segment == 0);       /* one client process never handles an event twice */
  CHECK(p->added_lines == c->n);
}

/* Server and client up; the victim is SIGKILLed in the middle of the stream and started again
 * on its folder (a server on the same port, adding n / 10 more); everything drains; both stop
 * cleanly; the log is checked. */
static void crash_run(crash_t *c, const crash_case_t *k) {
  parsed_t p;
  memset(&p, 0, sizeof p);
  CHECK_OK(crash_init(c));
  int server_dies = strcmp(k->victim, "server") == 0;
  c->handler_us = k->handler_us;
  if (k->handler_us && getenv("HD_CRASH_US")) c->handler_us = atol(getenv("HD_CRASH_US"));
  c->server = spawn(c, "server", c->sdir, 0, 1, c->n);
  CHECK(start_client(c, &p));
  /* kill the victim in the middle of the stream */
  long *progress = server_dies ? &p.added_lines : &p.handled_lines;
  int reached = WAIT_LOG(c, p, *progress >= c->n / k->kill_div, 30000);
  kill_child(c, server_dies ? &c->server : &c->client, server_dies ? "KILL server" : "KILL client");
  parsed_free(&p);
  parse_log(c->log, c->cap, c->mix, &p);
  outcome_t o = {p.added_lines, p.handled_lines, 0};
  if (!reached) print_tail(c);
  CHECK(reached);
  if (server_dies) {
    c->server = spawn(c, "server", c->sdir, c->port, c->n + 1, c->n / 10);
    CHECK(c->server > 0);
  } else {
    hdt_sleep_ms(50);
    c->client = spawn(c, "client", c->cdir, c->port, 0, 0);
    CHECK(c->client > 0);
  }
  int drained = WAIT_LOG(c, p, p.adds_done >= 1 && all_added_handled(&p), 60000);
  if (!drained) print_tail(c);
  CHECK(drained);
  o.clean_exit = stop_children(c);
  parsed_free(&p);
  CHECK_OK(parse_log(c->log, c->cap, c->mix, &p));
  k->verdict(c, &p, &o);
  CHECK(all_added_handled(&p));
  CHECK(p.idx_mismatch == 0); /* the handled payload is the one added under that seq */
  CHECK(p.out_of_range == 0 && p.bad_data == 0 && p.bad_event == 0);
  CHECK(p.add_failures == 0);
  CHECK(o.clean_exit);
  CHECK(p.final_server == 1 && p.final_pending == 0);
  CHECK(p.final_client == 1 && p.final_unhandled == 0 && p.final_consumed == 0);
  parsed_free(&p);
}

/* A scenario as a test; in a child only crash_role runs. */
#define CRASH_TEST(name, ...)                                                                     \
  static void name(void) {                                                                        \
    static const crash_case_t k = {__VA_ARGS__};                                                  \
    if (getenv("HD_CRASH_ROLE")) return;                                                          \
    crash_t c;                                                                                    \
    memset(&c, 0, sizeof c);                                                                      \
    crash_run(&c, &k);                                                                            \
    crash_free(&c);                                                                               \
  }

CRASH_TEST(server_killed, .victim = "server", .kill_div = 2, .verdict = server_verdict)
/* the handler works 50 us per event: the client is busy all along, so the kill lands while
 * consumptions are being recorded */
CRASH_TEST(client_killed, .victim = "client", .handler_us = 50, .kill_div = 3,
           .verdict = client_verdict)

/* ---- torture: many kills of either process at random moments ---- */

/* splitmix64: the kills' moments and victims, the same for the same seed */
static uint64_t rng_next(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static int rng_between(uint64_t *x, int lo, int hi) {
  return lo + (int)(rng_next(x) % (uint64_t)(hi - lo + 1));
}

static long env_long(const char *name, long dflt) {
  const char *v = getenv(name);
  return v != NULL && *v != '\0' ? atol(v) : dflt;
}

#define TORTURE_ADD 400 /* events a server incarnation adds, if it lives long enough */

/* SIGKILLs `*pid` (it must still run: a child that ended by itself is a failure) and logs it. */
static int torture_kill(crash_t *c, pid_t *pid, const char *what) {
  int st = 0;
  kill(*pid, SIGKILL);
  waitpid(*pid, &st, 0);
  *pid = 0;
  parent_log(c, what);
  return WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL ? 0 : -1;
}

/* Server incarnation `inc` (from 0) adds the payloads crash#<inc * 1000000 + i>, i < TORTURE_ADD:
 * unique across incarnations, so a handled payload names its add. */
static pid_t torture_server(crash_t *c, int inc) {
  /* seqs are given to committed adds and to notices only */
  c->cap = (uint64_t)(inc + 1) * (TORTURE_ADD + 150) + 100; /* MIX_BATCH: 2 events per add */
  return spawn(c, "server", c->sdir, c->port, (long)inc * 1000000, TORTURE_ADD);
}

/* The figures of a torture's log: repeats and whether each was allowed. */
typedef struct torture_tally {
  long events, unacked, handled, repeats, max_burst;
  long dup_added, same_incarnation, after_clean, not_a_suffix;
} torture_tally_t;

/* A repeat (an event handled again) is allowed only where the design allows it: the earlier
 * handling was in a client incarnation that was killed, so its consumption may not have been
 * durable yet. Consumptions commit in the order of handling, so what a killed incarnation
 * handles again is the tail of what it handled: once one of its events is handled again, so is
 * every event it handled after that one. */
static int torture_tally(const parsed_t *p, torture_tally_t *t) {
  memset(t, 0, sizeof *t);
  size_t *last = calloc(p->cap, sizeof *last); /* the index of the seq's last handling + 1 */
  int *inc_of = calloc(p->cap, sizeof *inc_of);
  if (last == NULL || inc_of == NULL) {
    free(last);
    free(inc_of);
    return -1;
  }
  for (size_t i = 0; i < p->n_hrec; i++) last[p->hrec[i].seq] = i + 1;
  for (uint64_t s = 1; s < p->cap; s++) {
    if (p->added[s]) t->events++;
    if (p->added[s] > 1) t->dup_added++;
    if (p->handled[s] && !p->added[s]) t->unacked++; /* committed, killed before it answered */
  }
  int inc = -1, tail = 0;
  long burst = 0;
  for (size_t i = 0; i < p->n_hrec; i++) {
    const struct handling *h = &p->hrec[i];
    if (h->inc != inc) {
      inc = h->inc;
      tail = 0;
      burst = 0;
    }
    t->handled++;
    if (inc_of[h->seq] == h->inc) t->same_incarnation++;
    inc_of[h->seq] = h->inc;
    if (last[h->seq] == i + 1) {
      if (tail) t->not_a_suffix++;
      continue;
    }
    t->repeats++;
    if (++burst > t->max_burst) t->max_burst = burst;
    tail = 1;
    int killed = (size_t)h->inc < p->killed_cap && p->client_killed[h->inc];
    if (!killed) t->after_clean++;
  }
  free(last);
  free(inc_of);
  return 0;
}

/* The figures and the rules of the mix, from the final log. */
typedef struct mix_tally {
  long ttl, ttl_handled, expired, uncovered; /* acknowledged adds with a time to live */
  long notices, other_notices;               /* distinct notices handed out; not EXPIRED */
  uint64_t expired_counted, unknown;         /* the notices' counts; numbers the log never names */
  long dedup_answers, dedup_across, dedup_wrong, stored_twice, conflicts;
  long collapse, replaced, replaced_handled, replaced_wrong, replaced_twice;
  long batch;                                /* events added by add_events calls */
  long poison, poison_calls, dead, dead_good, poison_not_dead, poison_attempts_wrong;
  long poison_too_many_calls, poison_reported, dead_good_wrong;
} mix_tally_t;

static int cmp_pair(const void *a, const void *b) {
  const long *x = a, *y = b;
  return x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : x[1] < y[1] ? -1 : x[1] > y[1];
}

/* Expiry: every acknowledged add with a time to live that was never handled lies in an EXPIRED
 * notice's range, and the notices count at least those (at most those plus the numbers the log
 * never names: adds committed by a server killed before it answered, which may have expired
 * too). Dedup: a repeat's answer is the number its payload was stored under, and no payload is
 * stored under two numbers. Collapse: an event replaced was never handled, and an add said so. */
static int mix_tally(const parsed_t *p, mix_tally_t *t) {
  memset(t, 0, sizeof *t);
  uint64_t top = 0;
  long (*pairs)[2] = calloc(p->cap, sizeof *pairs);
  if (pairs == NULL) return -1;
  size_t np = 0;
  for (uint64_t s = 1; s < p->cap; s++) {
    int known = p->added[s] || p->handled[s] || p->is_notice[s] || p->replaced_by[s] || p->dead[s];
    if (known) top = s;
    if (p->added[s] || p->handled[s]) {
      pairs[np][0] = p->handled[s] ? p->handled_idx[s] : p->added_idx[s];
      pairs[np++][1] = (long)s;
    }
    if (!p->added[s]) continue;
    int kind = mix_kind(p->added_idx[s]);
    if (kind == MIX_TTL) {
      t->ttl++;
      if (p->handled[s]) t->ttl_handled++;
      else {
        t->expired++;
        if (!expired_covered(p, s)) t->uncovered++;
      }
    } else if (kind == MIX_COLLAPSE) {
      t->collapse++;
    } else if (kind == MIX_BATCH) {
      t->batch++;
    }
    if (p->replaced_by[s]) {
      t->replaced++;
      if (p->handled[s]) t->replaced_handled++;
      uint64_t by = p->replaced_by[s];
      long idx_by = p->added[by] ? p->added_idx[by] : -1;
      if (kind != MIX_COLLAPSE || idx_by < 0 || mix_kind(idx_by) != MIX_COLLAPSE ||
          mix_collapse_key(idx_by) != mix_collapse_key(p->added_idx[s]) || by <= s)
        t->replaced_wrong++;
    }
  }
  for (uint64_t s = 1; s <= top; s++) {
    if (!(p->added[s] || p->handled[s] || p->is_notice[s] || p->replaced_by[s] || p->dead[s] ||
          p->poison_calls[s]))
      t->unknown++;
  }
  /* Poison: every one a dead letter, after MIX_ATTEMPTS counted calls (failed) or at once
   * (rejected: once per client process, a killed one's call may be repeated), never reported to
   * on_consumed. A good event in the dead letters is one whose attempts were used up by kills of
   * the client (docs/QUEUES.md: a crash during a call counts): all of them. */
  for (uint64_t s = 1; s < p->cap; s++) {
    long idx = p->added[s]          ? p->added_idx[s]
               : p->poison_calls[s] ? p->poison_idx[s]
               : p->handled[s]      ? p->handled_idx[s]
                                    : -1;
    int kind = idx >= 0 ? mix_kind(idx) : MIX_PLAIN;
    int poison = kind == MIX_FAIL || kind == MIX_REJECT;
    t->poison_calls += p->poison_calls[s];
    if (p->dead[s]) {
      t->dead++;
      if (!poison) {
        t->dead_good++;
        if (p->dead[s] != MIX_ATTEMPTS) t->dead_good_wrong++;
      }
    }
    if (!poison || !(p->added[s] || p->poison_calls[s])) continue;
    t->poison++;
    if (!p->dead[s]) t->poison_not_dead++;
    else if (kind == MIX_FAIL ? p->dead[s] != MIX_ATTEMPTS : p->dead[s] > MIX_ATTEMPTS)
      t->poison_attempts_wrong++;
    if (p->poison_calls[s] > MIX_ATTEMPTS) t->poison_too_many_calls++;
    if (p->reported[s]) t->poison_reported++;
  }
  for (size_t i = 0; i < p->n_notices; i++) {
    t->notices++;
    if (p->notices[i].kind == HD_NOTICE_EXPIRED) t->expired_counted += p->notices[i].count;
    else t->other_notices++;
  }
  for (size_t i = 0; i < p->n_dups; i++) {
    const struct dup *d = &p->dups[i];
    t->dedup_answers++;
    if (d->idx / 1000000 != d->own / 1000000) t->dedup_across++;
    if (!p->handled[d->seq] || p->handled_idx[d->seq] != d->idx) t->dedup_wrong++;
  }
  qsort(pairs, np, sizeof *pairs, cmp_pair);
  for (size_t i = 1; i < np; i++) {
    if (pairs[i][0] == pairs[i - 1][0] && pairs[i][1] != pairs[i - 1][1]) t->stored_twice++;
  }
  free(pairs);
  t->conflicts = p->conflicts;
  t->replaced_twice = p->replaced_twice;
  return 0;
}

/* Server and client run; HD_KILLS times (60 by default, 30 under valgrind) one of them or both
 * are SIGKILLed at a random moment (20 to 400 ms after the last kill) and started again on their
 * folders 0 to 50 ms later (a client killed alone: 150 to 350 ms later one time in three, that
 * time taken off the next pause), the server on the same port; the server's four threads add
 * the mix all along (a pause of 1 ms between two adds of a thread) and its consumption callback
 * completes them; the client's handler works 50 us per event. Then both run to the end:
 * everything drains, both stop cleanly. The seed (HD_SEED, 1 by default) fixes the moments and
 * the victims. */
static void torture_run(crash_t *c) {
  parsed_t p;
  memset(&p, 0, sizeof p);
  CHECK_OK(crash_init(c));
  c->mix = 1;
  long kills = env_long("HD_KILLS", (long)hdt_count(60, 30));
  uint64_t seed = (uint64_t)env_long("HD_SEED", 1), x = seed;
  uint64_t y = seed ^ 0x6a09e667f3bcc908ull; /* the client's longer absences: their own stream,
                                                so the victims are those of the seed without them */
  c->handler_us = 50;
  c->add_us = 1000;
  uint64_t t0 = hdt_now_ms();
  int sinc = 0;
  long server_kills = 0, client_kills = 0;
  c->server = torture_server(c, sinc++);
  CHECK(start_client(c, &p));
  int unexpected = 0;
  long away_ms = 0; /* the last kill's client stayed away this long: taken off the next wait */
  while (server_kills + client_kills < kills) {
    long wait_ms = rng_between(&x, 20, 400) - away_ms;
    hdt_sleep_ms(wait_ms > 20 ? (int)wait_ms : 20);
    int r = rng_between(&x, 0, 9); /* 4 in 10 the server, 4 the client, 2 both */
    int ks = r < 4 || r >= 8, kc = r >= 4;
    if (ks) {
      unexpected += torture_kill(c, &c->server, "KILL server") != 0;
      server_kills++;
    }
    if (kc) {
      unexpected += torture_kill(c, &c->client, "KILL client") != 0;
      client_kills++;
    }
    /* a killed client stays away 150 to 350 ms one time in three: long enough for the expiry
     * sweep to take some of the events with a time to live added meanwhile */
    away_ms = rng_between(&x, 0, 50);
    if (kc && !ks && rng_between(&y, 0, 2) == 0) away_ms = rng_between(&y, 150, 350);
    hdt_sleep_ms((int)away_ms);
    if (ks) c->server = torture_server(c, sinc++);
    if (kc) c->client = spawn(c, "client", c->cdir, c->port, 0, 0);
    if (unexpected || c->server <= 0 || c->client <= 0) break;
  }
  if (unexpected) print_tail(c);
  CHECK(unexpected == 0); /* every child was still running when it was killed */
  CHECK(c->server > 0 && c->client > 0);
  /* the last incarnations run to the end: the server adds all its events, everything drains */
  int drained =
      WAIT_LOG(c, p, p.adds_done_server == p.server_starts && all_added_handled(&p), 60000);
  if (!drained) {
    print_tail(c);
    print_unresolved(&p);
  }
  CHECK(drained);
  int clean_exit = stop_children(c);
  parsed_free(&p);
  CHECK_OK(parse_log(c->log, c->cap, c->mix, &p));
  torture_tally_t t;
  CHECK_OK(torture_tally(&p, &t));
  printf("  torture, seed %" PRIu64 ": %ld kills (%ld of the server, %ld of the client) in "
         "%.1f s; %ld events acknowledged (%ld more committed unacknowledged, handled too), %ld "
         "handlings, %ld repeats (at most %ld after one kill)\n",
         seed, server_kills + client_kills, server_kills, client_kills,
         (double)(hdt_now_ms() - t0) / 1000.0, t.events, t.unacked, t.handled, t.repeats,
         t.max_burst);
  int bad = t.dup_added || t.same_incarnation || t.after_clean || t.not_a_suffix ||
            p.handled_after_report || !clean_exit;
  if (bad) {
    fprintf(stderr, "  seqs given twice %ld, handled twice by one client %ld, handled again after "
            "a clean end %ld, repeats not the tail of a killed client's handlings %ld, handled "
            "after the server had the report %d (first seq %" PRIu64 ")\n",
            t.dup_added, t.same_incarnation, t.after_clean, t.not_a_suffix,
            p.handled_after_report, p.first_after_report);
    print_tail(c);
  }
  CHECK(all_added_handled(&p)); /* zero loss: every acknowledged add was handled */
  CHECK(t.dup_added == 0);      /* no sequence number given twice across the kills */
  CHECK(t.same_incarnation == 0 && t.after_clean == 0 && t.not_a_suffix == 0);
  CHECK(p.handled_after_report == 0); /* a consumption the server received is durable */
  CHECK(p.idx_mismatch == 0);         /* the handled payload is the one added under that seq */
  CHECK(p.out_of_range == 0 && p.bad_data == 0 && p.bad_event == 0);
  CHECK(p.add_failures == 0);
  CHECK(clean_exit);
  CHECK(p.final_server == 1 && p.final_pending == 0);
  CHECK(p.final_client == 1 && p.final_unhandled == 0 && p.final_consumed == 0);
  CHECK(t.events >= TORTURE_ADD);
  mix_tally_t m;
  CHECK_OK(mix_tally(&p, &m));
  printf("  mix: %ld adds with a time to live (%ld handled, %ld expired unsent: %" PRIu64
         " counted by %ld notices, %" PRIu64 " numbers the log never names); %ld dedup repeats "
         "answered with the first add's number (%ld across a server restart), %ld collapse "
         "adds (%ld replaced an unsent one), %ld events added two by two by add_events\n",
         m.ttl, m.ttl_handled, m.expired, m.expired_counted, m.notices - m.other_notices,
         m.unknown, m.dedup_answers, m.dedup_across, m.collapse, m.replaced, m.batch);
  printf("  poison: %ld events (1 in %d failed at every call, 1 in %d rejected) in %ld handler "
         "calls; %ld dead letters at the end, %ld of them good events whose %d attempts kills "
         "used up\n",
         m.poison, 100, 100, m.poison_calls, m.dead, m.dead_good, MIX_ATTEMPTS);
  int poison_bad = m.poison_not_dead || m.poison_attempts_wrong || m.poison_too_many_calls ||
                   m.poison_reported || m.dead_good_wrong || p.reject_twice_in_inc ||
                   p.attempt_not_rising;
  if (poison_bad) {
    fprintf(stderr, "  poison not dead %ld, dead with other attempts %ld, called more than %d "
            "times %ld, reported to on_consumed %ld, good dead with attempts left %ld, rejected "
            "twice by one client %ld, calls whose attempt did not rise %ld\n",
            m.poison_not_dead, m.poison_attempts_wrong, MIX_ATTEMPTS, m.poison_too_many_calls,
            m.poison_reported, m.dead_good_wrong, p.reject_twice_in_inc, p.attempt_not_rising);
    print_tail(c);
  }
  CHECK(m.poison_not_dead == 0 && m.poison_attempts_wrong == 0 && m.poison_too_many_calls == 0);
  CHECK(m.poison_reported == 0 && m.dead_good_wrong == 0 && p.reject_twice_in_inc == 0);
  CHECK(p.attempt_not_rising == 0); /* attempts are counted durably before each call */
  CHECK(m.poison > 0 && p.dead_lines == m.dead);
  int mix_bad = m.uncovered || m.expired_counted < (uint64_t)m.expired ||
                m.expired_counted > (uint64_t)m.expired + m.unknown || m.other_notices ||
                m.dedup_wrong || m.stored_twice || m.conflicts || m.replaced_handled ||
                m.replaced_wrong || m.replaced_twice;
  if (mix_bad) {
    fprintf(stderr, "  expired not covered by a notice %ld, other notices %ld, dedup answers "
            "with a wrong number %ld, payloads stored twice %ld, conflicts %ld, replaced events "
            "handled %ld, replacements of another key %ld, replaced twice %ld\n",
            m.uncovered, m.other_notices, m.dedup_wrong, m.stored_twice, m.conflicts,
            m.replaced_handled, m.replaced_wrong, m.replaced_twice);
    print_tail(c);
  }
  CHECK(m.uncovered == 0); /* an expired event is told about in an EXPIRED notice */
  CHECK(m.expired_counted >= (uint64_t)m.expired);
  CHECK(m.expired_counted <= (uint64_t)m.expired + m.unknown); /* no handled event counted */
  CHECK(m.other_notices == 0);
  /* a repeat stores nothing and answers with the first add's number */
  CHECK(m.dedup_wrong == 0 && m.stored_twice == 0 && m.conflicts == 0);
  CHECK(m.replaced_handled == 0 && m.replaced_wrong == 0 && m.replaced_twice == 0);
  CHECK(m.ttl > 0 && m.dedup_across > 0 && m.collapse > 0); /* the mix was exercised */
  parsed_free(&p);
}

static void torture(void) {
  if (getenv("HD_CRASH_ROLE")) return;
  crash_t c;
  memset(&c, 0, sizeof c);
  torture_run(&c);
  crash_free(&c);
}

#define TESTS(X) X(crash_role) X(server_killed) X(client_killed) X(torture)

HD_TEST_MAIN(TESTS)
