// Loading a BPF object embedded in the addon as bytes (native/bpf/embed.mjs): the steering program
// (steering.cc) and the guard (guard.cc). No dependency on the engine.
#pragma once
#include <cstddef>
#include <functional>
#include <initializer_list>
#include <string>
#include <utility>

struct bpf_object;

namespace sf {

inline constexpr char kBpfPrivilegeHint[] = " (needs CAP_BPF and CAP_NET_ADMIN, or root)";

// Opens data[0..len) as the object `name`, runs prepare if given (choosing programs, sizing maps
// before the kernel sees them; "" or why not) and loads the object. Returns it loaded, or null with
// *err set and nothing left open. Messages name it by `what`: "cannot open the embedded <what>
// object: <strerror>", "cannot load the <what> program: <strerror><hint(errno)>" (hint may be null).
bpf_object* load_embedded_bpf(const unsigned char* data, size_t len, const char* name, const char* what,
                              const std::function<std::string(bpf_object*)>& prepare, std::string (*hint)(int),
                              std::string* err);

// Sets each *fd to the fd of the named map (-1 if missing); false if any is missing.
bool find_map_fds(bpf_object* obj, std::initializer_list<std::pair<const char*, int*>> maps);

}  // namespace sf
