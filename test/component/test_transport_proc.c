/* Two processes: this test binary runs itself again (exec of /proc/self/exe) as a client of a
 * server in the parent, over IPv4 and IPv6; messages go both ways (the server echoes). */
#include "harness.h"
#include "transport_util.h"

#include <sys/wait.h>

#define TOPIC "transport-proc-test"
#define SMALL 500

static void echo_hook(void *ud, hd__conn_t *c, uint8_t type, const uint8_t *body, size_t len) {
  tu_count_events(ud, type, body, len);
  /* echo on the loop thread: sends at once */
  hd_server_t *s = *(hd_server_t **)((char *)ud + sizeof(tu_peer_t));
  hd__server_send(s, c->remote_pk, type, body, len);
}

typedef struct {
  tu_peer_t p;
  hd_server_t *s; /* right after p: echo_hook finds it there */
} server_ctx_t;

/* The child's part: runs only when the parent set HD_PROC_CONNECT. */
static void proc_child(void) {
  const char *connect = getenv("HD_PROC_CONNECT");
  const char *key_hex = getenv("HD_PROC_SERVER_KEY");
  if (connect == NULL || key_hex == NULL) return; /* not a child: nothing to do */
  uint8_t server_pk[32];
  CHECK_OK(hd_hex_decode(server_pk, 32, key_hex));
  hd_keypair_t kp;
  hd_keypair_generate(&kp);
  tu_peer_t cp;
  tu_peer_init(&cp);
  hd_client_options_t co = tu_client_options(&kp, server_pk, TOPIC, connect, &cp);
  hd_client_t *c;
  CHECK_OK(hd_client_create(&c, &co));
  hd__client_set_message_hook(c, tu_count_hook, &cp);
  CHECK(WAIT_FOR(atomic_load(&cp.connected) == 1, 5000));
  CHECK(memcmp(cp.key, server_pk, 32) == 0);
  for (int i = 1; i <= SMALL; i++) {
    hd__buf_t m = tu_events_message((uint64_t)i, 32);
    size_t bl;
    const uint8_t *b = tu_body(&m, &bl);
    CHECK_OK(hd__client_send(c, HD__MSG_EVENTS, b, bl));
    hd__buf_free(&m);
  }
  hd__buf_t big = tu_events_message(SMALL + 1, 200000);
  size_t bl;
  const uint8_t *b = tu_body(&big, &bl);
  CHECK_OK(hd__client_send(c, HD__MSG_EVENTS, b, bl));
  hd__buf_free(&big);
  CHECK(WAIT_FOR(atomic_load(&cp.messages) == SMALL + 1 && atomic_load(&cp.big_ok) == 1, 10000));
  CHECK(atomic_load(&cp.out_of_order) == 0);
  CHECK_OK(hd_client_close_wait(c));
}

static void run_pair(const char *listen) {
  hd_keypair_t kp;
  hd_keypair_generate(&kp);
  server_ctx_t ctx;
  memset(&ctx, 0, sizeof ctx);
  tu_peer_init(&ctx.p);
  hd_server_options_t so = tu_server_options(&kp, TOPIC, listen, &ctx.p);
  if (hd_server_create(&ctx.s, &so) != 0) {
    if (listen[0] == '[') {
      printf("  (IPv6 unavailable, skipped: %s)\n", hd_last_error_message());
      return;
    }
    CHECK(0);
  }
  hd__server_set_message_hook(ctx.s, echo_hook, &ctx.p);
  char addr[64], key_hex[65];
  if (listen[0] == '[') snprintf(addr, sizeof addr, "[::1]:%d", hd_server_port(ctx.s));
  else snprintf(addr, sizeof addr, "127.0.0.1:%d", hd_server_port(ctx.s));
  hd_hex_encode(key_hex, sizeof key_hex, kp.public_key, 32);

  /* the child keeps HD_TEST_SLOW: its waits are on this process, which valgrind slows */
  char *env[] = {"HD_PROC_CONNECT", addr, "HD_PROC_SERVER_KEY", key_hex, NULL};
  pid_t pid = hdt_spawn_self("test_transport_proc", "proc_child", env, 0);
  CHECK(pid > 0);
  int status = hdt_wait_child(pid, 20000);
  CHECK_OK(hd_server_close_wait(ctx.s));
  CHECK(status != -1); /* it ended by itself in time */
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  CHECK(atomic_load(&ctx.p.connected) == 1);
  CHECK(atomic_load(&ctx.p.messages) == SMALL + 1);
  CHECK(atomic_load(&ctx.p.big_ok) == 1);
  CHECK(atomic_load(&ctx.p.out_of_order) == 0);
}

static void two_processes_ipv4(void) {
  if (getenv("HD_PROC_CONNECT")) return; /* in the child only proc_child runs */
  run_pair("127.0.0.1:0");
}

static void two_processes_ipv6(void) {
  if (getenv("HD_PROC_CONNECT")) return;
  run_pair("[::1]:0");
}

#define TESTS(X) X(proc_child) X(two_processes_ipv4) X(two_processes_ipv6)

HD_TEST_MAIN(TESTS)
