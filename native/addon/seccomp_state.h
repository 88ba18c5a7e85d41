// runc's container process state, as it comes to the seccomp agent with a notify fd: a pure
// parser (no engine, no syscalls), unit-tested by tests/seccomp_state_test.cc and fuzzed by
// tests/fuzz/seccomp_state_fuzz.cc.
//
// runc sends one JSON object (the OCI runtime-spec "container process state"):
//   {"ociVersion": "1.0.2", "fds": ["seccompFd"], "pid": 123, "metadata": "<listenerMetadata>",
//    "state": {"ociVersion", "id", "status", "pid", "bundle", "annotations": {...}}}
// The agent needs three top-level members: "pid", "metadata" (the container id the runtime wrapper
// put there) and the position of "seccompFd" in "fds". Every other value, "state" with its
// annotations included, is skipped whatever it holds (strings, nesting to any depth, without
// recursion); a "pid" or "metadata" inside it is not the top-level one.
#pragma once
#include <string>
#include <string_view>

namespace sf {

struct OciState {
  long pid = 0;            // the number "pid" starts with (strtol); 0 when it is not a number
  std::string metadata;    // "metadata" when it is a string: escapes decoded, \uXXXX kept as written
  int seccomp_index = -1;  // position of the first "seccompFd" in "fds"; -1: none
};

// true when text starts with one whole, non-empty JSON object whose members parse; bytes after
// its closing brace are not looked at. false for anything truncated (so a state still arriving
// never parses) or malformed; *st then holds what was read before the error. A member given twice
// counts as its last for "pid" and "metadata", its first "seccompFd" for "fds".
bool parse_oci_state(std::string_view text, OciState* st);

}  // namespace sf
