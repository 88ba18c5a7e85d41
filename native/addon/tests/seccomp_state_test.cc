// runc's container process state parser (native/addon/seccomp_state.cc), without the engine.
// Built and run by selftest.mjs (g++); exits non-zero on failure.
#include <climits>
#include <cstdio>
#include <string>

#include "seccomp_state.h"

using namespace sf;

static int fails = 0;
static void check(bool ok, const std::string& name) {
  if (!ok) printf("FAIL seccomp_state: %s\n", name.c_str()), fails++;
}

// Parses text into a fresh state; *ok is the parser's result.
static OciState parse(const std::string& text, bool* ok) {
  OciState st;
  *ok = parse_oci_state(text, &st);
  return st;
}

static bool parses_as(const std::string& text, long pid, const std::string& metadata, int index) {
  bool ok;
  OciState st = parse(text, &ok);
  return ok && st.pid == pid && st.metadata == metadata && st.seccomp_index == index;
}

// A string literal with its NUL bytes.
template <size_t N>
static std::string bytes(const char (&s)[N]) {
  return std::string(s, N - 1);
}

static bool fails_(const std::string& text) {
  bool ok;
  parse(text, &ok);
  return !ok;
}

int main() {
  // What runc sends (runc 1.1, a container annotated for the seccomp path).
  const std::string runc =
      "{\"ociVersion\":\"1.0.2\",\"fds\":[\"seccompFd\"],\"pid\":4242,\"metadata\":\"web-1\",\"state\":{\"ociVersion\":"
      "\"1.0.2\",\"id\":\"web-1\",\"status\":\"creating\",\"pid\":4242,\"bundle\":\"/run/bundles/"
      "web-1\",\"annotations\":"
      "{\"io.slimfast.seccomp\":\"true\",\"org.opencontainers.image.title\":\"web\"}}}";
  check(parses_as(runc, 4242, "web-1", 0), "runc's state: pid, metadata, seccompFd");
  // The same without annotations, and without "state" at all (sfseccomp, the keeper's tests).
  check(parses_as(
            "{\"ociVersion\":\"1.0.2\",\"fds\":[\"seccompFd\"],\"pid\":7,\"metadata\":\"c\",\"state\":{\"ociVersion\":"
            "\"1.0.2\",\"id\":\"c\",\"status\":\"creating\",\"pid\":7,\"bundle\":\"\"}}",
            7, "c", 0),
        "a state without annotations");
  check(parses_as("{\"pid\": 1, \"metadata\": \"x\", \"fds\": [\"seccompFd\"]}", 1, "x", 0), "no \"state\" member");
  check(parses_as("{\"metadata\":\"m\",\"state\":{\"annotations\":{}},\"fds\":[\"seccompFd\"],\"pid\":3}", 3, "m", 0),
        "empty annotations, any member order");

  // Only top-level members count: the same names inside "state" or its annotations are skipped.
  check(
      parses_as("{\"state\":{\"pid\":99,\"metadata\":\"inner\",\"fds\":[\"seccompFd\"],\"annotations\":{\"pid\":\"1\","
                "\"metadata\":\"evil\"}},\"pid\":5,\"metadata\":\"outer\",\"fds\":[\"a\",\"seccompFd\"]}",
                5, "outer", 1),
      "pid/metadata/fds nested in state are not the top-level ones");
  check(parses_as("{\"state\":{\"annotations\":{\"k\":\"}\",\"l\":\"{[\",\"q\":\"\\\"}\\\\\",\"n\":[{},[[]],{\"a\":{"
                  "\"b\":[]}}]}},"
                  "\"pid\":2,\"metadata\":\"id\",\"fds\":[\"seccompFd\"]}",
                  2, "id", 0),
        "braces, brackets and escaped quotes inside skipped strings, nesting");
  check(parses_as("{\"state\":{\"annotations\":{\"k\":\"}}\"}},\"pid\":2,\"metadata\":\"id\",\"fds\":[\"seccompFd\"]}",
                  2, "id", 0),
        "a closing brace inside an annotation does not close it");
  check(parses_as("{\"state\":{\"annotations\":{\"k\":\"{[\"}},\"pid\":2,\"metadata\":\"id\",\"fds\":[\"seccompFd\"]}",
                  2, "id", 0),
        "nor does an opening one keep it open");
  check(parses_as("{\"state\":{\"annotations\":{\"k\":\"\\\"}\"}},\"pid\":2,\"metadata\":\"id\"}", 2, "id", -1),
        "an escaped quote does not end a skipped string");
  {
    bool ok;
    OciState st = parse("{\"pid\":1,\"metadata\":\"x\",\"state\":{\"annotations\":{\"a\":\"b\"}}}", &ok);
    check(ok && st.seccomp_index == -1, "no \"fds\": parsed, no seccompFd");
    st = parse("{\"pid\":1,\"fds\":[\"seccompFd\"]}", &ok);
    check(ok && st.metadata.empty(), "no \"metadata\": parsed, empty");
    st = parse("{\"metadata\":\"x\",\"fds\":[\"seccompFd\"]}", &ok);
    check(ok && st.pid == 0, "no \"pid\": 0");
  }

  // fds
  check(parses_as("{\"fds\":[\"a\",\"b\",\"seccompFd\",\"seccompFd\"],\"metadata\":\"x\"}", 0, "x", 2),
        "the first seccompFd's position");
  check(parses_as("{\"fds\":[],\"metadata\":\"x\"}", 0, "x", -1), "empty fds");
  check(parses_as("{\"fds\":[\"a\"],\"fds\":[\"b\",\"seccompFd\"],\"metadata\":\"x\"}", 0, "x", 1),
        "fds given twice: its position in the array it is in");
  check(parses_as("{\"fds\":[\"seccompFd\"],\"fds\":[\"a\",\"seccompFd\"],\"metadata\":\"x\"}", 0, "x", 0),
        "the first one found wins");
  check(parses_as("{\"fds\":[\"seccompfd\",\"seccompFd \"],\"metadata\":\"x\"}", 0, "x", -1), "names compare exactly");
  check(fails_("{\"fds\":\"seccompFd\"}"), "fds not an array");
  check(fails_("{\"fds\":[1]}"), "fds with a number");
  check(fails_("{\"fds\":[\"a\",]}"), "fds with a trailing comma");
  check(fails_("{\"fds\":[\"a\" \"b\"]}"), "fds without a comma");

  // pid: the number the value starts with.
  check(parses_as("{\"pid\":-12,\"metadata\":\"x\"}", -12, "x", -1), "negative pid");
  check(parses_as("{\"pid\": 12 ,\"metadata\":\"x\"}", 12, "x", -1), "blanks around the pid");
  check(parses_as("{\"pid\":12.9}", 12, "", -1), "a fraction: its integer part");
  check(parses_as("{\"pid\":\"12\"}", 0, "", -1), "a string pid is not a number");
  check(parses_as("{\"pid\":{\"a\":1}}", 0, "", -1), "an object pid is not a number");
  check(parses_as("{\"pid\":null}", 0, "", -1), "a null pid");
  check(parses_as("{\"pid\":99999999999999999999999}", LONG_MAX, "", -1), "an overflowing pid saturates");
  check(parses_as("{\"pid\":1,\"pid\":2}", 2, "", -1), "pid given twice: the last");

  // metadata: escapes
  check(parses_as("{\"metadata\":\"a\\nb\\tc\\rd\\be\\ff\"}", 0, "a\nb\tc\rd\be\ff", -1), "control escapes decoded");
  check(parses_as("{\"metadata\":\"q\\\"s\\\\l\\/\"}", 0, "q\"s\\l/", -1), "quote, backslash, slash");
  check(parses_as("{\"metadata\":\"\\u0041\\u00e9x\"}", 0, "\\u0041\\u00e9x", -1), "\\uXXXX kept as written");
  check(parses_as("{\"metadata\":\"\\x\"}", 0, "x", -1), "an unknown escape: the character");
  check(parses_as("{\"metadata\":\"caf\xc3\xa9 \xe2\x9c\x93\"}", 0, "caf\xc3\xa9 \xe2\x9c\x93", -1),
        "UTF-8 bytes kept");
  check(parses_as(bytes("{\"metadata\":\"a\0b\"}"), 0, bytes("a\0b"), -1), "a NUL byte kept");
  check(parses_as("{\"metadata\":\"\"}", 0, "", -1), "empty metadata");
  check(parses_as("{\"metadata\":42,\"fds\":[\"seccompFd\"]}", 0, "", 0), "a number for metadata: skipped, empty");
  check(parses_as("{\"metadata\":{\"id\":\"x\"}}", 0, "", -1), "an object for metadata: skipped");
  check(parses_as("{\"metadata\":\"a\",\"metadata\":\"b\"}", 0, "b", -1), "metadata given twice: the last");
  check(parses_as("{\"metadata\":\"a\",\"metadata\":7}", 0, "a", -1), "a later non-string metadata leaves the string");
  check(fails_("{\"metadata\":\"\\u00\"}"), "a short \\u escape");

  // Layout
  check(parses_as(" \r\n\t{ \"pid\" : 8 , \"metadata\" :\n\"x\" ,\r\n \"fds\" : [ \"seccompFd\" ] }\n", 8, "x", 0),
        "blanks everywhere");
  check(parses_as("{\"pid\":1,\"metadata\":\"x\"}garbage{", 1, "x", -1), "bytes after the object are not looked at");
  check(fails_(""), "empty input");
  check(fails_("   "), "blanks only");
  check(fails_("{}"), "an empty object");
  check(fails_("[\"seccompFd\"]"), "an array");
  check(fails_("null"), "null");
  check(fails_("\"{\\\"pid\\\":1}\""), "a string holding an object");
  check(fails_(bytes("\0{\"pid\":1}")), "a NUL before the object");

  // Malformed
  check(fails_("{pid:1}"), "an unquoted key");
  check(fails_("{\"pid\" 1}"), "no colon");
  check(fails_("{\"metadata\":\"x\" \"pid\":1}"), "no comma after a string");
  check(fails_("{\"pid\":1,}"), "a trailing comma");
  check(fails_("{,\"pid\":1}"), "a leading comma");
  check(fails_("{\"state\":{\"a\":[1,2}"), "an unclosed array inside state");
  check(fails_("{\"state\":\"abc}"), "an unterminated string");
  check(fails_("{\"metadata\":\"abc\\"), "an escape at the end");
  check(fails_("{\"a\":\"\\"), "an escape at the end of a skipped string");
  check(fails_("{\x01}"), "a control byte for a key");
  {
    bool ok;
    OciState st = parse("{\"pid\":31,\"metadata\":\"x\" \"fds\":[\"seccompFd\"]}", &ok);
    check(!ok && st.pid == 31 && st.metadata == "x" && st.seccomp_index == -1,
          "on failure: what was read before the error");
  }

  // Truncated: no prefix of a whole state parses (the agent tries every partial read), the state
  // itself does.
  {
    int parsed = 0;
    for (size_t n = 0; n < runc.size(); n++) parsed += !fails_(runc.substr(0, n));
    check(parsed == 0, "no prefix of runc's state parses (" + std::to_string(parsed) + " did)");
    const std::string spaced = "{ \"pid\" : 12 , \"metadata\" : \"a\\\"b\" , \"fds\" : [ \"seccompFd\" ] } ";
    parsed = 0;
    for (size_t n = 0; n + 1 < spaced.size(); n++) parsed += !fails_(spaced.substr(0, n));
    check(parsed == 0 && parses_as(spaced, 12, "a\"b", 0), "nor of one with blanks and escapes");
  }

  // Huge
  {
    std::string id(1 << 20, 'i');
    check(parses_as("{\"fds\":[\"seccompFd\"],\"pid\":1,\"metadata\":\"" + id + "\"}", 1, id, 0), "a 1 MiB metadata");
    std::string deep = "{\"state\":" + std::string(1 << 20, '[') + std::string(1 << 20, ']') +
                       ",\"metadata\":\"x\",\"fds\":[\"seccompFd\"]}";
    check(parses_as(deep, 0, "x", 0), "2^20 nested arrays (no recursion)");
    check(fails_("{\"state\":" + std::string(1 << 20, '{')), "2^20 unclosed braces");
    check(fails_(std::string(3 << 19, '{')), "1.5 MiB of '{' (the keeper test's garbage)");
    std::string fds = "{\"metadata\":\"x\",\"fds\":[";
    for (int i = 0; i < 100000; i++) fds += "\"fd\",";
    fds += "\"seccompFd\"]}";
    check(parses_as(fds, 0, "x", 100000), "seccompFd after 100000 other fds");
    std::string ann = "{\"state\":{\"annotations\":{";
    for (int i = 0; i < 50000; i++) ann += "\"k" + std::to_string(i) + "\":\"v\\\"}\",";
    ann += "\"last\":\"\"}},\"pid\":6,\"metadata\":\"x\",\"fds\":[\"seccompFd\"]}";
    check(parses_as(ann, 6, "x", 0), "50000 annotations");
  }

  printf("%s seccomp_state\n", fails ? "FAIL" : "ok");
  return fails != 0;
}
