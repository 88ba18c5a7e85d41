// Exit notifications for processes on Node's own event loop: a pidfd (pidfd_open, Linux 5.3) that
// libuv polls; it becomes readable when the process exits. The broker watches each registered
// container's init process this way and unregisters the container itself, so no poststop hook
// process has to run for that. Owns only its watch table; nothing else in the addon touches it.
//
//   watchExit(pid, onExit) -> id > 0, or -errno (ESRCH: no such process)
//   unwatchExit(id)        -> whether the watch was still there (onExit is then never called)
#include "pid_watch.h"

#include <sys/syscall.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstdint>
#include <unordered_map>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

namespace sf {
namespace {

struct Watch {
  uv_poll_t poll;
  int fd = -1;
  uint32_t id = 0;
  Napi::FunctionReference on_exit;
};

// Per Node environment (the broker's main thread, or a test's worker): ids to watches.
struct Table {
  std::unordered_map<uint32_t, Watch*> by_id;
  uint32_t next_id = 1;
};

void closed(uv_handle_t* h) {
  Watch* w = static_cast<Watch*>(h->data);
  close(w->fd);
  delete w;
}

void stop(Table* t, Watch* w) {
  t->by_id.erase(w->id);
  uv_poll_stop(&w->poll);
  uv_close(reinterpret_cast<uv_handle_t*>(&w->poll), closed);
}

Table* table(Napi::Env env) {
  Table* t = env.GetInstanceData<Table>();
  if (!t) {
    t = new Table;
    env.SetInstanceData<Table>(t);
    // At the environment's end (a worker thread exiting): close what is still watched.
    env.AddCleanupHook([t] {
      while (!t->by_id.empty()) stop(t, t->by_id.begin()->second);
    });
  }
  return t;
}

void readable(uv_poll_t* p, int status, int events) {
  Watch* w = static_cast<Watch*>(p->data);
  Napi::Env env = w->on_exit.Env();
  Napi::HandleScope scope(env);
  Napi::FunctionReference cb = std::move(w->on_exit);
  stop(table(env), w);
  // MakeCallback: promise jobs queued by the callback run before control returns to libuv.
  cb.MakeCallback(env.Global(), {});
}

Napi::Value WatchExit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsFunction()) {
    Napi::TypeError::New(env, "watchExit(pid, onExit): pid must be a number and onExit a function")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  double pid = info[0].As<Napi::Number>().DoubleValue();
  if (!(pid >= 1 && pid <= 4194304) || pid != static_cast<double>(static_cast<int>(pid)))
    return Napi::Number::New(env, -EINVAL);
  int fd = static_cast<int>(syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0));
  if (fd < 0) return Napi::Number::New(env, -errno);
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || !loop) {
    close(fd);
    return Napi::Number::New(env, -ENOSYS);
  }
  Table* t = table(env);
  Watch* w = new Watch;
  w->fd = fd;
  w->poll.data = w;
  if (uv_poll_init(loop, &w->poll, fd) != 0) {
    close(fd);
    delete w;
    return Napi::Number::New(env, -ENOSYS);
  }
  w->id = t->next_id++;
  if (t->next_id == 0 || t->next_id > 0x7fffffff) t->next_id = 1;
  w->on_exit = Napi::Persistent(info[1].As<Napi::Function>());
  t->by_id[w->id] = w;
  uv_poll_start(&w->poll, UV_READABLE, readable);
  uv_unref(reinterpret_cast<uv_handle_t*>(&w->poll));  // a watch does not keep the process alive
  return Napi::Number::New(env, w->id);
}

Napi::Value UnwatchExit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) return Napi::Boolean::New(env, false);
  Table* t = table(env);
  auto it = t->by_id.find(info[0].As<Napi::Number>().Uint32Value());
  if (it == t->by_id.end()) return Napi::Boolean::New(env, false);
  stop(t, it->second);
  return Napi::Boolean::New(env, true);
}

}  // namespace

void export_pid_watch(Napi::Env env, Napi::Object exports) {
  exports.Set("watchExit", Napi::Function::New(env, WatchExit, "watchExit"));
  exports.Set("unwatchExit", Napi::Function::New(env, UnwatchExit, "unwatchExit"));
}

}  // namespace sf
