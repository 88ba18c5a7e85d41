// libFuzzer target: runc's container state parser (seccomp_state.cc). The first byte picks a mode:
//   even: the rest as the state itself, parsed in place (ASan sees any read past its end); the
//         result must not depend on what follows the object;
//   odd:  the rest drives a generator of valid states (members in any order and repeated, "pid"
//         and "metadata" and "fds" nested in "state" and its annotations, every kind of escape,
//         blanks): the parser must find exactly the top-level members the generator put there,
//         and no truncation of the state may parse (read from a buffer of its own length).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "require.h"
#include "seccomp_state.h"

namespace {

struct In {
  const uint8_t* p;
  size_t n;
  uint8_t byte() {
    if (!n) return 0;
    n--;
    return *p++;
  }
  bool more() const { return n > 0; }
};

struct Gen {
  In in{nullptr, 0};
  std::string out;
  // What the parser should find.
  long pid = 0;
  std::string metadata;
  int seccomp_index = -1;

  void blank() {
    static const char* const kBlanks[] = {"", "", "", " ", "\n", "\t", "\r\n", "  "};
    out += kBlanks[in.byte() & 7];
  }
  // A JSON string of up to 15 bytes from the input; returns what the parser decodes it to.
  std::string str() {
    std::string decoded;
    out += '"';
    for (int len = in.byte() & 15; len > 0; len--) {
      uint8_t c = in.byte();
      uint8_t how = in.byte();
      static const char kShort[] = {'"',  '"', '\\', '\\', '/',  '/', '\b', 'b',
                                    '\f', 'f', '\n', 'n',  '\r', 'r', '\t', 't'};
      const char* esc = nullptr;
      for (size_t k = 0; k < sizeof kShort; k += 2)
        if (char(c) == kShort[k]) esc = &kShort[k + 1];
      if (esc && (c != '/' || (how & 1))) {  // must (or, for '/', may) be escaped
        out += '\\';
        out += *esc;
        decoded += char(c);
      } else if (c < 0x20 || (how & 6) == 6) {  // \u00XX: kept as written
        static const char kHex[] = "0123456789abcdef";
        std::string u = std::string("\\u00") + kHex[c >> 4] + kHex[c & 15];
        out += u;
        decoded += u;
      } else {
        out += char(c);
        decoded += char(c);
      }
    }
    out += '"';
    return decoded;
  }
  void number() {
    if (in.byte() & 1) out += '-';
    int digits = in.byte() & 7;
    out += char('1' + in.byte() % 9);
    for (int k = 0; k < digits; k++) out += char('0' + in.byte() % 10);
    uint8_t tail = in.byte();
    if (tail & 1) out += "." + std::to_string(tail >> 1);
    if (tail & 2) out += ((tail & 4) ? "e+" : "E-") + std::to_string(tail >> 4);
  }
  // Any value (no string at the top when !strings); keys of nested objects are sometimes the
  // members the parser looks for.
  void value(int depth, bool strings = true) {
    uint8_t kind = in.byte() % (depth < 48 ? 8 : 5);
    if (kind == 0 && !strings) kind = 4;
    switch (kind) {
      case 0:
        str();
        break;
      case 1:
        number();
        break;
      case 2:
        out += "true";
        break;
      case 3:
        out += "false";
        break;
      case 4:
        out += "null";
        break;
      case 5:
      case 6: {
        bool obj = kind == 5;
        out += obj ? '{' : '[';
        int n = in.byte() & 7;
        for (int k = 0; k < n && in.more(); k++) {
          if (k) out += ',';
          blank();
          if (obj) {
            uint8_t which = in.byte() & 7;
            if (which < 3)
              out += which == 0 ? "\"pid\"" : which == 1 ? "\"metadata\"" : "\"fds\"";
            else
              str();
            blank();
            out += ':';
            blank();
          }
          value(depth + 1);
          blank();
        }
        out += obj ? '}' : ']';
        break;
      }
      default: {  // runc's "state" with annotations
        out += "{\"id\":";
        str();
        out += ",\"annotations\":{";
        int n = in.byte() & 7;
        for (int k = 0; k < n && in.more(); k++) {
          if (k) out += ',';
          str();
          out += ':';
          value(depth + 1);
        }
        out += "}}";
      }
    }
  }
  void member(bool first) {
    if (!first) out += ',';
    blank();
    uint8_t which = in.byte() % 5;
    if (which == 0) {  // pid: usually a number; whatever it is, the number its text starts with
      out += "\"pid\"";
      blank();
      out += ':';
      blank();
      size_t start = out.size();
      if (in.byte() & 3)
        number();
      else
        value(0);
      pid = strtol(out.c_str() + start, nullptr, 10);
    } else if (which == 1) {  // metadata: a string, or something else, which leaves it as it was
      out += "\"metadata\"";
      blank();
      out += ':';
      blank();
      if (in.byte() & 3)
        metadata = str();
      else
        value(0, false);
    } else if (which == 2) {  // fds: strings, sometimes "seccompFd"
      out += "\"fds\"";
      blank();
      out += ':';
      blank();
      out += '[';
      int n = in.byte() & 7;
      for (int k = 0; k < n; k++) {
        if (k) out += ',';
        blank();
        if (in.byte() % 3 == 0) {
          out += "\"seccompFd\"";
          if (seccomp_index < 0) seccomp_index = k;
        } else {
          std::string name = str();
          if (name == "seccompFd" && seccomp_index < 0) seccomp_index = k;
        }
        blank();
      }
      out += ']';
    } else {  // anything else, "state" included
      size_t at = out.size();
      std::string key = which == 3 ? "state" : str();
      if (which == 3) out += "\"state\"";
      if (key == "pid" || key == "metadata" || key == "fds") out.insert(at + 1, "x");
      blank();
      out += ':';
      blank();
      value(0);
    }
    blank();
  }
};

bool same(const sf::OciState& a, const sf::OciState& b) {
  return a.pid == b.pid && a.metadata == b.metadata && a.seccomp_index == b.seccomp_index;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  uint8_t mode = data[0];
  data++, size--;
  if (!(mode & 1)) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    sf::OciState st, again;
    bool ok = sf::parse_oci_state(text, &st);
    REQUIRE(sf::parse_oci_state(text, &again) == ok && same(st, again));
    REQUIRE(st.metadata.size() <= size && st.seccomp_index < int(size));
    if (ok) {  // what follows the object is never read
      std::string more(text);
      more += "}\"\\{[,";
      sf::OciState st2;
      REQUIRE(sf::parse_oci_state(more, &st2) && same(st, st2));
    }
    return 0;
  }
  Gen g;
  g.in = In{data, size};
  g.blank();
  g.out += '{';
  g.member(true);
  for (int k = 0; k < 12 && g.in.more(); k++) g.member(false);
  g.out += '}';
  sf::OciState st;
  REQUIRE(sf::parse_oci_state(g.out, &st));
  REQUIRE(st.pid == g.pid);
  REQUIRE(st.metadata == g.metadata);
  REQUIRE(st.seccomp_index == g.seccomp_index);
  // Truncated anywhere (the agent parses every partial read), it is not a state. Each truncation
  // is parsed from a buffer of its own length, so that ASan sees a read past its end.
  auto truncated_fails = [&](size_t cut) {
    std::unique_ptr<char[]> part(new char[cut]);
    memcpy(part.get(), g.out.data(), cut);
    sf::OciState st_part;
    REQUIRE(!sf::parse_oci_state(std::string_view(part.get(), cut), &st_part));
  };
  size_t n = g.out.size();
  if (n <= 128) {
    for (size_t cut = 0; cut < n; cut++) truncated_fails(cut);
  } else {  // the last byte, and 15 cuts spread over it from where the input says
    truncated_fails(n - 1);
    for (size_t k = 0; k < 15; k++) truncated_fails((k * n / 15 + size_t(mode >> 1) * 7919) % n);
  }
  return 0;
}
