#include "bpf_object.h"

#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>

namespace sf {

bpf_object* load_embedded_bpf(const unsigned char* data, size_t len, const char* name, const char* what,
                              const std::function<std::string(bpf_object*)>& prepare, std::string (*hint)(int),
                              std::string* err) {
  LIBBPF_OPTS(bpf_object_open_opts, oo, .object_name = name);
  bpf_object* obj = bpf_object__open_mem(data, len, &oo);
  if (!obj) {
    int e = errno;
    *err = std::string("cannot open the embedded ") + what + " object: " + strerror(e);
    return nullptr;
  }
  std::string why = prepare ? prepare(obj) : "";
  if (why.empty()) {
    if (int r = bpf_object__load(obj); r < 0)
      why = std::string("cannot load the ") + what + " program: " + strerror(-r) + (hint ? hint(-r) : "");
  }
  if (why.empty()) return obj;
  bpf_object__close(obj);
  *err = why;
  return nullptr;
}

bool find_map_fds(bpf_object* obj, std::initializer_list<std::pair<const char*, int*>> maps) {
  bool all = true;
  for (const auto& m : maps) {
    *m.second = bpf_object__find_map_fd_by_name(obj, m.first);
    all = all && *m.second >= 0;
  }
  return all;
}

}  // namespace sf
