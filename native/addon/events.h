// Events from the engine to JS: a queue plus one Napi::ThreadSafeFunction that drains it.
// Producers (engine thread, or JS calls such as removeContainer) never block and never call JS;
// at most one drain call is queued in the TSFN at a time, and it delivers the whole batch.
// When the queue is long, log events are dropped; listener and sync events never are.
#pragma once

#include <napi.h>

#include <memory>

#include "engine.h"

namespace sf {

struct EventQueue;

class JsEventSink : public EventSink {
 public:
  JsEventSink(Napi::Env env, Napi::Function cb, std::atomic<uint64_t>* dropped);
  ~JsEventSink() override;
  void listener(bool add, uint32_t ip, uint16_t port, const std::string& container) override;
  bool sync(int fd, uint32_t peer_ip) override;
  void log(int level, std::string msg, std::string container) override;
  // After the engine stopped: drops what is queued (closing sync fds) and releases the TSFN.
  void close();

 private:
  std::shared_ptr<EventQueue> q_;
};

}  // namespace sf
