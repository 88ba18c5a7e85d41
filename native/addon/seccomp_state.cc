// runc's container process state (seccomp_state.h): a minimal JSON scanner and the three members
// the seccomp agent reads.
#include "seccomp_state.h"

#include <cstdlib>

namespace sf {

namespace {

// Reads strings and skips any value; scalars are taken loosely (everything up to the next ',', '}'
// or ']'), nesting is counted, not recursed into.
struct JsonScan {
  std::string_view s;
  size_t i = 0;
  explicit JsonScan(std::string_view t) : s(t) {}
  void ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
  }
  bool str(std::string* out) {
    ws();
    if (i >= s.size() || s[i] != '"') return false;
    i++;
    std::string v;
    while (i < s.size() && s[i] != '"') {
      char ch = s[i++];
      if (ch == '\\') {
        if (i >= s.size()) return false;
        char e = s[i++];
        if (e == 'u') {  // not needed for ids: keep it as is
          if (i + 4 > s.size()) return false;
          v += "\\u";
          v.append(s.data() + i, 4);
          i += 4;
          continue;
        }
        switch (e) {
          case 'n':
            ch = '\n';
            break;
          case 't':
            ch = '\t';
            break;
          case 'r':
            ch = '\r';
            break;
          case 'b':
            ch = '\b';
            break;
          case 'f':
            ch = '\f';
            break;
          default:
            ch = e;
        }
      }
      v += ch;
    }
    if (i >= s.size()) return false;
    i++;
    if (out) *out = std::move(v);
    return true;
  }
  bool skip() {  // any value
    ws();
    if (i >= s.size()) return false;
    if (s[i] == '"') return str(nullptr);
    if (s[i] == '{' || s[i] == '[') {
      int depth = 0;
      while (i < s.size()) {
        ws();
        if (i >= s.size()) return false;
        char ch = s[i];
        if (ch == '"') {
          if (!str(nullptr)) return false;
          continue;
        }
        i++;
        if (ch == '{' || ch == '[')
          depth++;
        else if (ch == '}' || ch == ']') {
          if (--depth == 0) return true;
        }
      }
      return false;
    }
    while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ']') i++;
    return true;
  }
  bool lit(char ch) {
    ws();
    if (i < s.size() && s[i] == ch) {
      i++;
      return true;
    }
    return false;
  }
};

}  // namespace

bool parse_oci_state(std::string_view text, OciState* st) {
  JsonScan j(text);
  if (!j.lit('{')) return false;
  if (j.lit('}')) return false;
  do {
    std::string key;
    if (!j.str(&key) || !j.lit(':')) return false;
    if (key == "pid") {
      j.ws();
      size_t start = j.i;
      if (!j.skip()) return false;
      std::string num(text.substr(start, j.i - start));
      char* end = nullptr;
      st->pid = strtol(num.c_str(), &end, 10);
    } else if (key == "metadata") {
      j.ws();
      if (j.i < text.size() && text[j.i] == '"') {
        if (!j.str(&st->metadata)) return false;
      } else if (!j.skip()) {
        return false;
      }
    } else if (key == "fds") {
      if (!j.lit('[')) return false;
      int idx = 0;
      if (!j.lit(']')) {
        do {
          std::string name;
          if (!j.str(&name)) return false;
          if (name == "seccompFd" && st->seccomp_index < 0) st->seccomp_index = idx;
          idx++;
        } while (j.lit(','));
        if (!j.lit(']')) return false;
      }
    } else if (!j.skip()) {
      return false;
    }
  } while (j.lit(','));
  return j.lit('}');
}

}  // namespace sf
