/* A broker socket this process may not use is reported on stderr, once per program, while its TCP
 * keeps working on the ordinary path; no broker at all (ENOENT) stays silent. Modes (each in a
 * fresh process, stderr captured to a file):
 *   eacces   the socket is in a root-only directory and the process runs as uid 65534: one line
 *            naming the socket and "Permission denied"
 *   refused  a broker that answers HELLO with EACCES (the process is not in the container's network
 *            namespace): one line saying so
 *   nopath   SLIMFAST_SOCKET names a path that does not exist: nothing
 * Each mode listens twice with the broker asked again in between (past the preload's back-off),
 * and each listener serves an ordinary connection. */
#include "fixture.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "slimfast_wire.h"

static int unix_listener(const char *path) {
  int s = (int)CHECK_SYS(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  struct sockaddr_un su;
  memset(&su, 0, sizeof su);
  su.sun_family = AF_UNIX;
  snprintf(su.sun_path, sizeof su.sun_path, "%s", path);
  unlink(path);
  CHECK_SYS(bind(s, (struct sockaddr *)&su, sizeof su));
  CHECK_SYS(chmod(path, 0666));
  CHECK_SYS(listen(s, 16));
  return s;
}

/* The broker's refusal (native/addon refuse_preload): HELLO_OK seq 0 with the errno, then close. */
static void *refusing_broker(void *arg) {
  int srv = *(int *)arg;
  for (;;) {
    int c = accept(srv, NULL, NULL);
    if (c < 0) return NULL;
    struct sf_msg m;
    memset(&m, 0, sizeof m);
    m.version = SF_MSG_VERSION;
    m.type = SF_HELLO_OK;
    m.status = EACCES;
    send(c, &m, sizeof m, MSG_NOSIGNAL);
    usleep(20000); /* its HELLO arrives; read it so that close does not reset */
    recv(c, &m, sizeof m, MSG_DONTWAIT);
    close(c);
  }
}

static void listen_and_serve(const char *what) {
  int lfd = (int)CHECK_SYS(socket(AF_INET, SOCK_STREAM, 0));
  struct sockaddr_in any = fx_mkaddr(INADDR_ANY, 0);
  CHECK_SYS(bind(lfd, (struct sockaddr *)&any, sizeof any));
  double t0 = fx_now();
  CHECK_SYS(listen(lfd, 16));
  CHECKF(fx_now() - t0 < 1.0, "%s: listen took %.2f s", what, fx_now() - t0);
  CHECKF(fx_raw_sockopt_int(lfd, SOL_SOCKET, SO_DOMAIN) == AF_INET &&
             fx_raw_sockopt_int(lfd, SOL_SOCKET, SO_ACCEPTCONN) == 1,
         "%s: listen() did not leave an ordinary listening socket", what);
  fx_echo_thread(lfd);
  struct sockaddr_in dst = fx_mkaddr(htonl(INADDR_LOOPBACK), fx_port(lfd));
  int c = fx_connect(&dst);
  fx_echo_check(c, "off SlimFast\n");
  close(c);
}

static void child(const char *mode) {
  if (!strcmp(mode, "eacces")) {
    CHECK_SYS(setgroups(0, NULL));
    CHECK_SYS(setgid(65534));
    CHECK_SYS(setuid(65534));
  }
  listen_and_serve("first");
  usleep(1200000); /* past the preload's back-off (1 s at most): the broker is asked again */
  listen_and_serve("second");
}

/* Runs a child mode with SLIMFAST_SOCKET=sock; returns what it wrote on stderr. */
static char *run_captured(const char *mode, const char *sock, char *buf, size_t len) {
  char tmpl[] = "/tmp/sfpre-denied-err-XXXXXX";
  int f = (int)CHECK_SYS(mkstemp(tmpl));
  unlink(tmpl);
  int saved = (int)CHECK_SYS(dup(2));
  CHECK_SYS(dup2(f, 2));
  char env_sock[200];
  snprintf(env_sock, sizeof env_sock, "SLIMFAST_SOCKET=%s", sock);
  const char *env[] = {env_sock, "SLIMFAST_DEBUG", NULL};
  int rc = fx_run_self((char *const[]){"--child", (char *)mode, NULL}, env);
  dup2(saved, 2);
  close(saved);
  ssize_t n = pread(f, buf, len - 1, 0);
  close(f);
  buf[n > 0 ? n : 0] = 0;
  CHECKF(rc == 0, "mode %s failed (%d); its stderr:\n%s", mode, rc, buf);
  return buf;
}

static int count_lines(const char *s, const char *needle) {
  int n = 0;
  for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle)) n++;
  return n;
}

int main(int argc, char **argv) {
  fx_init(argc, argv);
  if (argc >= 3 && !strcmp(argv[1], "--child")) {
    child(argv[2]);
    fx_pass();
  }
  if (!fx_preloaded()) SKIP("libslimfast is not preloaded");
  if (getuid() != 0) SKIP("needs root (to make a root-only directory and drop to uid 65534)");
  char out[8192];

  char dir[64], sock[128];
  snprintf(dir, sizeof dir, "/tmp/sfpre-denied-%d", (int)getpid());
  rmdir(dir);
  CHECK_SYS(mkdir(dir, 0700));
  CHECK_SYS(chmod(dir, 0700));
  snprintf(sock, sizeof sock, "%s/sf.sock", dir);
  int srv = unix_listener(sock); /* reachable for root, not for uid 65534 */
  run_captured("eacces", sock, out, sizeof out);
  CHECKF(count_lines(out, "cannot connect to the broker socket") == 1 && strstr(out, sock) &&
             strstr(out, "uid 65534") && strstr(out, "Permission denied"),
         "eacces: expected one line naming %s, uid 65534 and Permission denied; stderr:\n%s", sock, out);
  close(srv);
  unlink(sock);
  rmdir(dir);

  snprintf(sock, sizeof sock, "/tmp/sfpre-refusing-%d.sock", (int)getpid());
  srv = unix_listener(sock);
  pthread_t t;
  CHECK(pthread_create(&t, NULL, refusing_broker, &srv) == 0);
  pthread_detach(t);
  run_captured("refused", sock, out, sizeof out);
  CHECKF(count_lines(out, "refused this program") == 1 && strstr(out, "network namespace"),
         "refused: expected one line about the network namespace; stderr:\n%s", out);
  unlink(sock);

  run_captured("nopath", "/nonexistent/slimfast/broker.sock", out, sizeof out);
  CHECKF(out[0] == 0, "nopath: a missing broker must stay silent; stderr:\n%s", out);
  fx_pass();
}
