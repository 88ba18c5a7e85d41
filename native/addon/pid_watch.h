#pragma once
#include <napi.h>

namespace sf {

// Adds watchExit(pid, onExit) and unwatchExit(id) to the addon's exports (pid_watch.cc).
void export_pid_watch(Napi::Env env, Napi::Object exports);

}  // namespace sf
