// slimfast-runc and slimfast-hook: the small programs engines execute.
//
// slimfast-runc (built without SF_HOOK) scans runc's global flags as runtime-wrapper/args.ts does. Every
// subcommand but create, run and exec goes straight to the real runc with execv(): same arguments
// (argv[0] "runc"), same environment, every inherited fd untouched (--preserve-fds, LISTEN_FDS, the engine's stdio
// pipes), so state/kill/delete/start/... cost one exec more than runc itself. For create/run/exec it runs
//   node ROOT/dist/runtime-wrapper/main.js --slimfast-edit-only ARGV...
// as a child (stdin/stdout /dev/null, stderr a pipe copied to ours, no other fds: Node must not touch the
// engine's pipes, e.g. make them non-blocking) and, when that exits 0, execs the real runc in place.
//
// slimfast-hook (built with -DSF_HOOK) execs node ROOT/dist/hooks/main.js ARGV... directly.
//
// Both first hand their work to the running broker's runtime service (door.c, STATE_DIR/runtime.sock):
// the broker runs the same TypeScript with this program's arguments, environment, working directory,
// network namespace and (hooks) stdin, and answers with the exit status and output. No broker there,
// another install, no answer within 5 s, or SLIMFAST_NO_RUNTIME_SERVICE set: the Node.js program does
// the work as described above, so behaviour without a broker is unchanged.
//
// The real runc: SLIMFAST_RUNC, else "runc" in the SlimFast config file (SLIMFAST_CONFIG, else
// /etc/slimfast/config.json), else runc on PATH other than this program. ROOT: the first directory
// above /proc/self/exe holding the compiled TypeScript. node: SLIMFAST_NODE, else the node this was
// built with (SF_NODE), else node on PATH.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "door.h"

#ifndef SF_NODE
#define SF_NODE ""
#endif

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define DEFAULT_CONFIG "/etc/slimfast/config.json"

#ifdef SF_HOOK
#define PROG "slimfast-hook"
#define SCRIPT "dist/hooks/main.js"
#else
#define PROG "slimfast-runc"
#define SCRIPT "dist/runtime-wrapper/main.js"
#endif

static const char *log_file;
static const char *log_format;

// ---------------------------------------------------------------------------------------------------
// Errors: a runc-style JSON line in --log FILE when --log-format json, else stderr.

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (log_file && log_format && strcmp(log_format, "json") == 0) {
    FILE *f = fopen(log_file, "ae");
    if (f) {
      struct timespec ts;
      struct tm tm;
      char when[64];
      clock_gettime(CLOCK_REALTIME, &ts);
      gmtime_r(&ts.tv_sec, &tm);
      strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
      fputs("{\"level\":\"error\",\"msg\":\"" PROG ": ", f);
      json_escape(f, msg);
      fprintf(f, "\",\"time\":\"%s.%09ldZ\"}\n", when, ts.tv_nsec);
      if (fclose(f) == 0) exit(1);
    }
  }
  fprintf(stderr, PROG ": %s\n", msg);
  exit(1);
}

// ---------------------------------------------------------------------------------------------------
// runc's global flags (keep in step with runtime-wrapper/args.ts).

static const char *const value_flags[] = {"root", "log", "log-format", "criu", "rootless", NULL};

// If tok is a flag ("-x", "--x", "-x=v", "--x=v"), sets name/len/value (value NULL when none) and returns 1.
static int parse_flag(const char *tok, const char **name, size_t *len, const char **value) {
  if (tok[0] != '-' || tok[1] == '\0' || strcmp(tok, "--") == 0) return 0;
  const char *body = tok[1] == '-' ? tok + 2 : tok + 1;
  if (*body == '\0' || *body == '-') return 0;
  const char *eq = strchr(body, '=');
  *name = body;
  *len = eq ? (size_t)(eq - body) : strlen(body);
  *value = eq ? eq + 1 : NULL;
  return 1;
}

static int is_value_flag(const char *name, size_t len) {
  for (int i = 0; value_flags[i]; i++)
    if (strlen(value_flags[i]) == len && strncmp(value_flags[i], name, len) == 0) return 1;
  return 0;
}

static int flag_is(const char *name, size_t len, const char *want) {
  return strlen(want) == len && strncmp(name, want, len) == 0;
}

// Returns the index of the subcommand in argv, or argc when there is none.
__attribute__((unused)) static int scan_globals(int argc, char **argv) {
  int i = 1;
  for (; i < argc; i++) {
    const char *name, *value;
    size_t len;
    if (!parse_flag(argv[i], &name, &len, &value)) break;
    if (!is_value_flag(name, len)) continue;  // booleans, and flags runc may add later
    if (!value) {
      if (i + 1 >= argc) return argc;  // runc will complain
      value = argv[++i];
    }
    if (flag_is(name, len, "log")) log_file = value;
    if (flag_is(name, len, "log-format")) log_format = value;
  }
  if (i < argc && strcmp(argv[i], "--") == 0) i++;
  return i;
}

// ---------------------------------------------------------------------------------------------------
// A JSON reader just big enough to take top-level strings ("runc", "stateDir") from the config file.

static const char *skip_ws(const char *p) {
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
  return p;
}

// Parses a JSON string at p (pointing at '"'); copies it (ASCII escapes decoded) into out if out != NULL.
static const char *parse_string(const char *p, char *out, size_t cap) {
  size_t n = 0;
  if (*p++ != '"') return NULL;
  for (;;) {
    char c = *p++;
    if (c == '\0') return NULL;
    if (c == '"') break;
    if (c == '\\') {
      char e = *p++;
      switch (e) {
        case 'n':
          c = '\n';
          break;
        case 't':
          c = '\t';
          break;
        case 'r':
          c = '\r';
          break;
        case 'b':
          c = '\b';
          break;
        case 'f':
          c = '\f';
          break;
        case 'u': {
          unsigned v = 0;
          for (int k = 0; k < 4; k++) {
            char h = *p++;
            v <<= 4;
            if (h >= '0' && h <= '9')
              v |= (unsigned)(h - '0');
            else if (h >= 'a' && h <= 'f')
              v |= (unsigned)(h - 'a' + 10);
            else if (h >= 'A' && h <= 'F')
              v |= (unsigned)(h - 'A' + 10);
            else
              return NULL;
          }
          c = v < 0x80 ? (char)v : '?';
          break;
        }
        case '\0':
          return NULL;
        default:
          c = e;  // " \ /
      }
    }
    if (out) {
      if (n + 1 >= cap) return NULL;
      out[n++] = c;
    }
  }
  if (out) out[n] = '\0';
  return p;
}

static const char *skip_value(const char *p, int depth) {
  p = skip_ws(p);
  if (depth > 256) return NULL;
  if (*p == '"') return parse_string(p, NULL, 0);
  if (*p == '{' || *p == '[') {
    char close = *p == '{' ? '}' : ']';
    p = skip_ws(p + 1);
    if (*p == close) return p + 1;
    for (;;) {
      if (close == '}') {
        p = parse_string(skip_ws(p), NULL, 0);
        if (!p) return NULL;
        p = skip_ws(p);
        if (*p++ != ':') return NULL;
      }
      p = skip_value(p, depth + 1);
      if (!p) return NULL;
      p = skip_ws(p);
      if (*p == ',') {
        p++;
        continue;
      }
      if (*p == close) return p + 1;
      return NULL;
    }
  }
  const char *start = p;
  while (*p && strchr("0123456789+-.eEtruefalsn", *p)) p++;
  return p == start ? NULL : p;
}

static const char *config_file(void) {
  const char *file = getenv("SLIMFAST_CONFIG");
  return file && *file ? file : DEFAULT_CONFIG;
}

// Copies the top-level string member `want` of the config file into out; returns 1 when found.
static int config_string(const char *want, char *out, size_t cap) {
  int fd = open(config_file(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[65536];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  const char *p = skip_ws(buf);
  if (*p++ != '{') return 0;
  p = skip_ws(p);
  if (*p == '}') return 0;
  for (;;) {
    char key[64];
    p = parse_string(skip_ws(p), key, sizeof key);
    if (!p) return 0;  // a key too long to be one we want is none of them, but a broken file is ignored here
    p = skip_ws(p);
    if (*p++ != ':') return 0;
    p = skip_ws(p);
    if (strcmp(key, want) == 0 && *p == '"') return parse_string(p, out, cap) != NULL && *out;
    p = skip_value(p, 0);
    if (!p) return 0;
    p = skip_ws(p);
    if (*p++ != ',') return 0;
  }
}

// ---------------------------------------------------------------------------------------------------
// Finding programs.

static int is_executable_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

// Searches PATH for name, skipping files that are this very program. Returns 1 and fills out when found.
static int search_path(const char *name, char *out, size_t cap) {
  struct stat self;
  int have_self = stat("/proc/self/exe", &self) == 0;
  const char *path = getenv("PATH");
  if (!path || !*path) path = DEFAULT_PATH;
  while (*path) {
    const char *end = strchr(path, ':');
    size_t len = end ? (size_t)(end - path) : strlen(path);
    if (len > 0 && len + strlen(name) + 2 <= cap) {
      snprintf(out, cap, "%.*s/%s", (int)len, path, name);
      struct stat st;
      if (is_executable_file(out) && stat(out, &st) == 0 &&
          !(have_self && st.st_dev == self.st_dev && st.st_ino == self.st_ino))
        return 1;
    }
    if (!end) break;
    path = end + 1;
  }
  return 0;
}

#ifndef SF_HOOK
static const char *find_runc(void) {
  static char buf[PATH_MAX];
  const char *env = getenv("SLIMFAST_RUNC");
  if (env && *env) {
    if (!is_executable_file(env)) die("SLIMFAST_RUNC=%s is not an executable file", env);
    return env;
  }
  if (config_string("runc", buf, sizeof buf)) {
    if (!is_executable_file(buf)) die("\"runc\": \"%s\" in the SlimFast config file is not an executable file", buf);
    return buf;
  }
  if (search_path("runc", buf, sizeof buf)) return buf;
  const char *path = getenv("PATH");
  die("cannot find the real runc: set SLIMFAST_RUNC, set \"runc\" in %s, or put runc on PATH (%s)",
      getenv("SLIMFAST_CONFIG") && *getenv("SLIMFAST_CONFIG") ? getenv("SLIMFAST_CONFIG") : DEFAULT_CONFIG,
      path && *path ? path : DEFAULT_PATH);
}
#endif

static const char *find_node(void) {
  static char buf[PATH_MAX];
  const char *env = getenv("SLIMFAST_NODE");
  if (env && *env) return env;
  if (*SF_NODE && is_executable_file(SF_NODE)) return SF_NODE;
  if (search_path("node", buf, sizeof buf)) return buf;
  die("cannot find node (Node.js >= 20.8): set SLIMFAST_NODE or put node on PATH");
}

// The install root: the first of exe's directory and its parents holding SCRIPT.
static const char *find_script(void) {
  static char script[PATH_MAX];
  char dir[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
  if (n <= 0) die("cannot read /proc/self/exe: %s", strerror(errno));
  dir[n] = '\0';
  char exe[PATH_MAX];
  memcpy(exe, dir, (size_t)n + 1);
  for (int up = 0; up < 4; up++) {
    char *slash = strrchr(dir, '/');
    if (!slash) break;
    *slash = '\0';
    if (snprintf(script, sizeof script, "%s/" SCRIPT, dir) < (int)sizeof script && access(script, R_OK) == 0)
      return script;
  }
  die("cannot find " SCRIPT " in a directory above %s: build SlimFast (npm run build) or reinstall it", exe);
}

// ---------------------------------------------------------------------------------------------------

#ifndef SF_HOOK
static void close_from(int lowfd) {
#ifdef SYS_close_range
  if (syscall(SYS_close_range, (unsigned)lowfd, ~0U, 0) == 0) return;
#endif
  DIR *d = opendir("/proc/self/fd");
  if (!d) {
    for (int fd = lowfd; fd < 65536; fd++) close(fd);
    return;
  }
  int dfd = dirfd(d);
  struct dirent *e;
  int fds[4096], nfds = 0;
  while ((e = readdir(d)) && nfds < 4096) {
    int fd = atoi(e->d_name);
    if (fd >= lowfd && fd != dfd) fds[nfds++] = fd;
  }
  closedir(d);
  for (int i = 0; i < nfds; i++) close(fds[i]);
}

// Runs the TypeScript edit step; returns only if it succeeded.
static void run_edit_step(int argc, char **argv) {
  const char *node = find_node();
  const char *script = find_script();
  int errpipe[2];
  if (pipe2(errpipe, O_CLOEXEC) != 0) die("pipe: %s", strerror(errno));
  char **args = calloc((size_t)argc + 4, sizeof *args);
  if (!args) die("out of memory");
  int k = 0;
  args[k++] = (char *)node;
  args[k++] = (char *)script;
  args[k++] = "--slimfast-edit-only";
  for (int i = 1; i < argc; i++) args[k++] = argv[i];
  args[k] = NULL;

  pid_t pid = fork();
  if (pid < 0) die("fork: %s", strerror(errno));
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDWR);
    if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0 || dup2(errpipe[1], 2) < 0) _exit(126);
    close_from(3);
    execv(node, args);
    dprintf(2, PROG ": cannot run %s: %s\n", node, strerror(errno));
    _exit(127);
  }
  close(errpipe[1]);
  char buf[4096];
  for (;;) {
    ssize_t n = read(errpipe[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(2, buf + off, (size_t)(n - off));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) break;
      off += w;
    }
  }
  close(errpipe[0]);
  free(args);
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) die("waitpid: %s", strerror(errno));
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return;
  // The edit step reported its error itself (log file or stderr).
  exit(WIFEXITED(status) ? (WEXITSTATUS(status) ? WEXITSTATUS(status) : 1) : 1);
}
#endif

// ---------------------------------------------------------------------------------------------------
// The broker's runtime service (door.c): the work without a Node.js start-up, when a broker runs.

// The broker's state dir, as the TypeScript resolves it: SLIMFAST_STATE_DIR, "stateDir" in the config
// file, /run/slimfast.
static const char *state_dir(void) {
  static char buf[PATH_MAX];
  const char *env = getenv("SLIMFAST_STATE_DIR");
  if (env && *env) return env;
  if (config_string("stateDir", buf, sizeof buf)) return buf;
  return "/run/slimfast";
}

// The install root: SCRIPT's path without "/" SCRIPT.
static const char *install_root(void) {
  static char root[PATH_MAX];
  const char *script = find_script();
  size_t n = strlen(script) - strlen("/" SCRIPT);
  memcpy(root, script, n);
  root[n] = '\0';
  return root;
}

// SLIMFAST_HOOK_TIMEOUT in ms (seconds, "s" suffix allowed), else 10 s; the TypeScript checks it properly.
__attribute__((unused)) static int hook_timeout_ms(void) {
  const char *raw = getenv("SLIMFAST_HOOK_TIMEOUT");
  char *end = NULL;
  double s = raw && *raw ? strtod(raw, &end) : 10;
  if (!(s > 0) || s > 3600) s = 10;
  return (int)(s * 1000);
}

// How long the service may take before the caller does the work itself (a broker that is stopped,
// say): short, as a start must not wait long on a broker that will not answer; it answers in a few ms.
// SLIMFAST_BROKER_DEADLINE_MS (set below once the broker has let one request time out, and carried to
// the container's hook through its env) makes it shorter.
#define DOOR_TIMEOUT_MS 1000
#define DEADLINE_AFTER_TIMEOUT "300"

static int door_timeout_ms(void) {
  const char *raw = getenv("SLIMFAST_BROKER_DEADLINE_MS");
  long ms = raw && *raw ? strtol(raw, NULL, 10) : 0;
  return ms >= 50 && ms < DOOR_TIMEOUT_MS ? (int)ms : DOOR_TIMEOUT_MS;
}

static int open_door(void) { return getenv("SLIMFAST_NO_RUNTIME_SERVICE") ? -1 : door_connect(state_dir()); }

static int via_door(int fd, const char *prog, int argc, char **argv, const char *input, size_t input_len, int timed_out,
                    int *code) {
  struct door_req r = {
      .prog = prog,
      .config = config_file(),
      .root = install_root(),
      .argc = argc - 1,
      .argv = argv + 1,
      .input = input,
      .input_len = input_len,
      .input_timed_out = timed_out,
      .timeout_ms = door_timeout_ms(),
  };
  return door_call(fd, &r, code);
}

#ifdef SF_HOOK
// All of stdin, bounded by the hook timeout (the Node.js hook has the same bound); *timed_out when
// it did not end in time (len then says what came).
static char *read_input(size_t *len, int *timed_out) {
  size_t cap = 65536, n = 0;
  char *buf = malloc(cap);
  if (!buf) die("out of memory");
  int ms = hook_timeout_ms();
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    if (n == cap) {
      char *b = realloc(buf, cap *= 2);
      if (!b) die("out of memory");
      buf = b;
    }
    clock_gettime(CLOCK_MONOTONIC, &t);
    long left = ms - ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
    struct pollfd p = {0, POLLIN, 0};
    int ready = left > 0 ? poll(&p, 1, (int)left) : 0;
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) {
      *timed_out = 1;
      break;
    }
    ssize_t got = read(0, buf + n, cap - n);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;  // EOF (or a broken stdin, which the TypeScript would read as EOF too)
    n += (size_t)got;
  }
  *len = n;
  return buf;
}

// Makes fd 0 a file holding input again, for the Node.js hook.
static void restore_input(const char *input, size_t len) {
  int fd = memfd_create("slimfast-hook-stdin", MFD_CLOEXEC);
  if (fd < 0) die("memfd_create: %s", strerror(errno));
  for (size_t off = 0; off < len;) {
    ssize_t w = write(fd, input + off, len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) die("cannot buffer stdin: %s", strerror(errno));
    off += (size_t)w;
  }
  if (lseek(fd, 0, SEEK_SET) != 0 || dup2(fd, 0) < 0) die("cannot buffer stdin: %s", strerror(errno));
  close(fd);
}
#endif

int main(int argc, char **argv) {
#ifdef SF_HOOK
  const char *stage = argc > 1 ? argv[1] : "";
  if (strcmp(stage, "create") == 0 || strcmp(stage, "poststop") == 0 || strcmp(stage, "precreate") == 0) {
    int fd = open_door();
    if (fd >= 0) {  // else stdin stays untouched for the Node.js hook
      size_t len = 0;
      int timed_out = 0, code;
      char *input = read_input(&len, &timed_out);
      int r = via_door(fd, "hook", argc, argv, input, len, timed_out, &code);
      if (r == 0) return code;
      // The broker took the connection but did not answer: the Node.js hook gives it one short last
      // chance (SLIMFAST_BROKER_DEADLINE_MS) before the broker-down outcome, not a whole hook timeout.
      if (r == DOOR_TIMED_OUT) setenv("SLIMFAST_BROKER_DEADLINE_MS", DEADLINE_AFTER_TIMEOUT, 1);
      restore_input(input, len);
      free(input);
    }
  }
  const char *node = find_node();
  const char *script = find_script();
  char **args = calloc((size_t)argc + 3, sizeof *args);
  if (!args) die("out of memory");
  int k = 0;
  args[k++] = (char *)node;
  args[k++] = (char *)script;
  for (int i = 1; i < argc; i++) args[k++] = argv[i];
  args[k] = NULL;
  execv(node, args);
  die("cannot run %s: %s", node, strerror(errno));
#else
  int cmd = scan_globals(argc, argv);
  const char *runc = find_runc();
  if (cmd < argc &&
      (strcmp(argv[cmd], "create") == 0 || strcmp(argv[cmd], "run") == 0 || strcmp(argv[cmd], "exec") == 0)) {
    // The edit (`runc state` for exec --process), in the broker or in Node.js, uses the runc found
    // here: one look-up per start, whatever the two implementations of the rule would say.
    setenv("SLIMFAST_RUNC", runc, 1);
    int code, fd = open_door(), r = -1;
    if (fd >= 0 && (r = via_door(fd, "runc", argc, argv, NULL, 0, 0, &code)) == 0) {
      if (code != 0) return code;  // the service reported the error (stderr or the --log file)
    } else {
      // A broker that let the edit time out gets only a short wait from the container's hook (the
      // editor forwards this into the hook's env).
      if (r == DOOR_TIMED_OUT) setenv("SLIMFAST_BROKER_DEADLINE_MS", DEADLINE_AFTER_TIMEOUT, 1);
      run_edit_step(argc, argv);
    }
  }
  // runc names itself after argv[0] in its help and some errors: say "runc", as runc run directly would.
  argv[0] = "runc";
  execv(runc, argv);
  die("cannot run %s: %s", runc, strerror(errno));
#endif
}
