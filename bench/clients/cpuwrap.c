/* cpuwrap: runs a command and records the CPU time it (and every descendant it reaped) used.
 *
 *   cpuwrap OUTFILE CMD [ARGS...]
 *
 * Benchmark clients are short-lived, so they are gone before the harness can read /proc/PID/stat
 * after a measurement; this wrapper waits for the command and writes
 * {"user_us":N,"sys_us":N,"status":N} to OUTFILE from getrusage(RUSAGE_CHILDREN). It exits with the
 * command's status (128+signal when killed). The child dies with the wrapper (PR_SET_PDEATHSIG). */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t child;

static void forward(int sig) {
  if (child > 0) kill(child, sig);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s OUTFILE CMD [ARGS...]\n", argv[0]);
    return 2;
  }
  pid_t parent = getpid();
  child = fork();
  if (child < 0) {
    perror("cpuwrap: fork");
    return 1;
  }
  if (child == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    execvp(argv[2], argv + 2);
    fprintf(stderr, "cpuwrap: %s: %s\n", argv[2], strerror(errno));
    _exit(127);
  }
  struct sigaction sa = {.sa_handler = forward};
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  int st = 0;
  while (waitpid(child, &st, 0) < 0 && errno == EINTR) {}
  struct rusage ru;
  getrusage(RUSAGE_CHILDREN, &ru);
  int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  FILE *f = fopen(argv[1], "w");
  if (!f) {
    perror("cpuwrap: output file");
    return code ? code : 1;
  }
  fprintf(f, "{\"user_us\":%ld,\"sys_us\":%ld,\"status\":%d}\n", ru.ru_utime.tv_sec * 1000000L + ru.ru_utime.tv_usec,
          ru.ru_stime.tv_sec * 1000000L + ru.ru_stime.tv_usec, code);
  fclose(f);
  return code;
}
