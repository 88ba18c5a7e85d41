#include "events.h"

#include <unistd.h>

#include <cstdio>
#include <mutex>
#include <vector>

#include "util.h"

namespace sf {

namespace {

enum Kind : uint8_t { K_LISTENER, K_SYNC, K_LOG };

struct Item {
  explicit Item(Kind k) : kind(k) {}
  Kind kind;
  bool add = false;
  uint8_t level = 0;
  uint32_t ip = 0;
  uint16_t port = 0;
  int fd = -1;
  std::string text;       // container id or log message
  std::string container;  // log: the container it is about, or empty
};

constexpr size_t kMaxQueuedLogs = 1024;
const char* const kLevels[] = {"debug", "info", "warn", "error"};

}  // namespace

struct EventQueue {
  std::mutex mu;
  std::vector<Item> items;
  size_t logs = 0;
  bool scheduled = false;  // a drain call is queued in the TSFN
  bool closed = false;
  Napi::ThreadSafeFunction tsfn;
  std::atomic<uint64_t>* dropped = nullptr;
};

static void deliver(const std::shared_ptr<EventQueue>& q, Napi::Env env, Napi::Function cb) {
  std::vector<Item> batch;
  {
    std::lock_guard<std::mutex> lk(q->mu);
    batch.swap(q->items);
    q->logs = 0;
    q->scheduled = false;
  }
  for (Item& it : batch) {
    Napi::HandleScope scope(env);
    Napi::Object o = Napi::Object::New(env);
    switch (it.kind) {
      case K_LISTENER:
        o.Set("type", "listener");
        o.Set("op", it.add ? "add" : "remove");
        o.Set("ip", ip_str(it.ip));
        o.Set("port", Napi::Number::New(env, it.port));
        o.Set("containerId", it.text);
        break;
      case K_SYNC:
        o.Set("type", "sync");
        o.Set("fd", Napi::Number::New(env, it.fd));
        o.Set("peerIp", ip_str(it.ip));
        break;
      case K_LOG:
        o.Set("type", "log");
        o.Set("level", kLevels[it.level < 4 ? it.level : 3]);
        o.Set("msg", it.text);
        if (!it.container.empty()) o.Set("containerId", it.container);
        break;
    }
    cb.Call({o});
    if (env.IsExceptionPending()) {
      // A throwing handler must not stop later events (a sync fd would leak otherwise).
      Napi::Error e = env.GetAndClearPendingException();
      fprintf(stderr, "slimfast addon: the engine event handler threw: %s\n", e.Message().c_str());
    }
  }
}

// Queues one item; false if the sink is closed or the item (a log line) was dropped.
static bool push(const std::shared_ptr<EventQueue>& q, Item&& item) {
  std::lock_guard<std::mutex> lk(q->mu);
  if (q->closed) return false;
  if (item.kind == K_LOG) {
    if (q->logs >= kMaxQueuedLogs) {
      if (q->dropped) q->dropped->fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    q->logs++;
  }
  q->items.push_back(std::move(item));
  if (!q->scheduled) {
    std::shared_ptr<EventQueue> keep = q;
    napi_status st = q->tsfn.NonBlockingCall([keep](Napi::Env env, Napi::Function cb) { deliver(keep, env, cb); });
    // On failure the items stay queued and the next push tries again.
    if (st == napi_ok) q->scheduled = true;
  }
  return true;
}

JsEventSink::JsEventSink(Napi::Env env, Napi::Function cb, std::atomic<uint64_t>* dropped)
    : q_(std::make_shared<EventQueue>()) {
  q_->dropped = dropped;
  // Unlimited TSFN queue: it never holds more than one drain call anyway.
  q_->tsfn = Napi::ThreadSafeFunction::New(env, cb, "slimfast-engine-events", 0, 1);
}

JsEventSink::~JsEventSink() { close(); }

void JsEventSink::listener(bool add, uint32_t ip, uint16_t port, const std::string& container) {
  Item it(K_LISTENER);
  it.add = add;
  it.ip = ip;
  it.port = port;
  it.text = container;
  push(q_, std::move(it));
}

bool JsEventSink::sync(int fd, uint32_t peer_ip) {
  Item it(K_SYNC);
  it.fd = fd;
  it.ip = peer_ip;
  return push(q_, std::move(it));
}

void JsEventSink::log(int level, std::string msg, std::string container) {
  Item it(K_LOG);
  it.level = uint8_t(level);
  it.text = std::move(msg);
  it.container = std::move(container);
  push(q_, std::move(it));
}

void JsEventSink::close() {
  std::vector<Item> left;
  {
    std::lock_guard<std::mutex> lk(q_->mu);
    if (q_->closed) return;
    q_->closed = true;
    left.swap(q_->items);
    q_->dropped = nullptr;
  }
  for (Item& it : left)
    if (it.kind == K_SYNC) close_fd(it.fd);  // nobody will own it
  q_->tsfn.Release();
}

}  // namespace sf
