// The way from slimfast-runc and slimfast-hook to the broker's runtime service (runtime-service/,
// STATE_DIR/runtime.sock): the work goes to the running broker, so no Node.js starts per container.
#ifndef SF_DOOR_H
#define SF_DOOR_H

#include <stddef.h>
#include <stdio.h>

struct door_req {
  const char *prog;    // "runc" or "hook"
  const char *config;  // the config file this program reads
  const char *root;    // the install root
  int argc;            // arguments after the program name
  char **argv;
  const char *input;  // hooks: all of stdin (may be NULL)
  size_t input_len;
  int input_timed_out;  // hooks: stdin did not end within the hook timeout (the service reports it)
  int timeout_ms;       // for the whole exchange
};

// Connects to the runtime service of the broker of state_dir: a socket, or -1 when none listens there
// (no file, or a dead broker's), which refuses at once.
int door_connect(const char *state_dir);

// One request on a door_connect()ed socket, which it closes. Returns 0 when the service did the work:
// its output is written to fds 1 and 2 and *code is the exit status to use. Returns -1 when the
// caller must do the work itself (another install, a reply it cannot read), DOOR_TIMED_OUT when no
// whole reply came within timeout_ms (a stopped or overloaded broker): nothing has been written then.
#define DOOR_TIMED_OUT (-2)
int door_call(int fd, const struct door_req *r, int *code);

// JSON string body escaping (also used for runc-style log lines).
void json_escape(FILE *f, const char *s);

#endif
