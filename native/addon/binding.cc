// N-API binding: class Engine as described in broker/native-engine.ts.
#include <napi.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "engine.h"
#include "events.h"
#include "netns_ip.h"
#include "pid_watch.h"
#include "util.h"

namespace sf {
namespace {

Napi::Value throw_type(Napi::Env env, const std::string& msg) {
  Napi::TypeError::New(env, msg).ThrowAsJavaScriptException();
  return env.Undefined();
}

Napi::Value throw_error(Napi::Env env, const Error& e) {
  Napi::Error err = Napi::Error::New(env, e.msg.empty() ? strerror(e.code) : e.msg);
  if (e.code) {
    const char* name = strerrorname_np(e.code);
    if (name) err.Set("code", Napi::String::New(env, name));
    err.Set("errno", Napi::Number::New(env, e.code));
  }
  err.ThrowAsJavaScriptException();
  return env.Undefined();
}

// Reads a string property; false (with a JS exception thrown) if it is missing or not a string.
bool get_string(Napi::Object o, const char* key, const char* where, std::string* out) {
  Napi::Value v = o.Get(key);
  if (!v.IsString()) {
    throw_type(o.Env(), std::string(where) + ": \"" + key + "\" must be a string");
    return false;
  }
  *out = v.As<Napi::String>().Utf8Value();
  return true;
}

bool get_port(Napi::Object o, const char* key, const char* where, bool allow_zero, uint16_t* out) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) {
    *out = SF_DEFAULT_PORT;
    return true;
  }
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (d != double(int64_t(d)) || d < (allow_zero ? 0 : 1) || d > 65535) {
    throw_type(o.Env(), std::string(where) + ": \"" + key + "\" must be an integer port number");
    return false;
  }
  *out = uint16_t(d);
  return true;
}

bool get_ms(Napi::Object o, const char* key, int* out) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return true;
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!(d >= 1 && d <= 3600000)) {
    throw_type(o.Env(), std::string("start(opts): \"") + key + "\" must be 1..3600000 ms");
    return false;
  }
  *out = int(d);
  return true;
}

// An optional whole number in [lo, hi].
bool get_count(Napi::Object o, const char* key, uint32_t lo, uint32_t hi, uint32_t* out) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return true;
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!(d >= lo && d <= hi) || d != double(uint32_t(d))) {
    throw_type(o.Env(), std::string("start(opts): \"") + key + "\" must be a whole number " + std::to_string(lo) +
                            ".." + std::to_string(hi));
    return false;
  }
  *out = uint32_t(d);
  return true;
}

// The optional cluster key (a Buffer of SF_CLUSTER_KEY_MIN..MAX secret bytes) and its window.
bool get_cluster_key(Napi::Object o, Config* cfg) {
  Napi::Value v = o.Get("clusterKey");
  if (!v.IsUndefined()) {
    if (!v.IsBuffer()) {
      throw_type(o.Env(), "start(opts): \"clusterKey\" must be a Buffer");
      return false;
    }
    Napi::Buffer<uint8_t> b = v.As<Napi::Buffer<uint8_t>>();
    if (b.Length() < SF_CLUSTER_KEY_MIN || b.Length() > SF_CLUSTER_KEY_MAX) {
      throw_type(o.Env(), "start(opts): \"clusterKey\" must be " + std::to_string(SF_CLUSTER_KEY_MIN) + ".." +
                              std::to_string(SF_CLUSTER_KEY_MAX) + " bytes, got " + std::to_string(b.Length()));
      return false;
    }
    cfg->cluster_key.assign(b.Data(), b.Data() + b.Length());
  }
  if (!get_ms(o, "headerWindowMs", &cfg->header_window_ms)) return false;
  if (cfg->header_window_ms < 1000 || (cfg->pool_depth > 0 && cfg->header_window_ms < SF_HDR_WINDOW_MIN_POOLED_MS)) {
    throw_type(o.Env(),
               std::string("start(opts): \"headerWindowMs\" must be at least ") +
                   (cfg->pool_depth > 0 ? std::to_string(SF_HDR_WINDOW_MIN_POOLED_MS) +
                                              " ms with pools (a pooled header is sent up to 20 s after it is signed)"
                                        : std::string("1000 ms")));
    return false;
  }
  return true;
}

// One allow/deny word: "allow" -> true, "deny" -> false; false return (exception thrown) otherwise.
bool get_action(Napi::Object o, const char* key, const std::string& where, bool* allow) {
  Napi::Value v = o.Get(key);
  std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
  if (s != "allow" && s != "deny") {
    throw_type(o.Env(), where + ": \"" + key + "\" must be \"allow\" or \"deny\"");
    return false;
  }
  *allow = s == "allow";
  return true;
}

bool get_policy_port(Napi::Object o, const char* key, const std::string& where, uint16_t* out) {
  Napi::Value v = o.Get(key);
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (d != double(int64_t(d)) || d < 0 || d > 65535) {
    throw_type(o.Env(), where + ": \"" + key + "\" must be an integer 0..65535");
    return false;
  }
  *out = uint16_t(d);
  return true;
}

bool get_policy_cidr(Napi::Object o, const char* key, const std::string& where, uint32_t* net, uint32_t* mask) {
  Napi::Value v = o.Get(key);
  std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
  uint8_t prefix;
  if (!parse_cidr(s, net, &prefix)) {
    throw_type(o.Env(), where + ": \"" + key + "\" must be an IPv4 prefix (a.b.c.d/len)");
    return false;
  }
  *mask = prefix_mask(prefix);
  return true;
}

// setPolicy's argument: {default: "allow"|"deny", rules: [{action, from, to, portLo, portHi}]}.
bool parse_policy(Napi::Object o, Policy* p) {
  p->active = true;
  if (!get_action(o, "default", "setPolicy(policy)", &p->default_allow)) return false;
  Napi::Value rv = o.Get("rules");
  if (!rv.IsArray()) {
    throw_type(o.Env(), "setPolicy(policy): \"rules\" must be an array of {action, from, to, portLo, portHi}");
    return false;
  }
  Napi::Array a = rv.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    std::string where = "setPolicy: rules[" + std::to_string(i) + "]";
    Napi::Value v = a.Get(i);
    if (!v.IsObject()) {
      throw_type(o.Env(), where + " is not an object");
      return false;
    }
    Napi::Object r = v.As<Napi::Object>();
    PolicyRule x{};
    if (!get_action(r, "action", where, &x.allow) || !get_policy_cidr(r, "from", where, &x.src_net, &x.src_mask) ||
        !get_policy_cidr(r, "to", where, &x.dst_net, &x.dst_mask) || !get_policy_port(r, "portLo", where, &x.port_lo) ||
        !get_policy_port(r, "portHi", where, &x.port_hi))
      return false;
    if (x.port_lo > x.port_hi) {
      throw_type(o.Env(), where + ": \"portLo\" is above \"portHi\"");
      return false;
    }
    p->rules.push_back(x);
  }
  return true;
}

// Limits as JS sees them (limits() and sizeLimits()).
Napi::Object limits_object(Napi::Env env, const Limits& l) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("nofile", Napi::Number::New(env, double(l.nofile)));
  o.Set("reserve", Napi::Number::New(env, l.reserve));
  o.Set("budget", Napi::Number::New(env, l.budget));
  o.Set("conns", Napi::Number::New(env, l.conns));
  o.Set("pools", Napi::Number::New(env, l.pools));
  o.Set("listeners", Napi::Number::New(env, l.listeners));
  o.Set("pending", Napi::Number::New(env, l.pending));
  return o;
}

}  // namespace

class EngineWrap : public Napi::ObjectWrap<EngineWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(
        env, "Engine",
        {InstanceMethod<&EngineWrap::Start>("start"), InstanceMethod<&EngineWrap::Stop>("stop"),
         InstanceMethod<&EngineWrap::AddContainer>("addContainer"),
         InstanceMethod<&EngineWrap::RemoveContainer>("removeContainer"),
         InstanceMethod<&EngineWrap::SetPeers>("setPeers"),
         InstanceMethod<&EngineWrap::SetRemoteListeners>("setRemoteListeners"),
         InstanceMethod<&EngineWrap::SetPolicy>("setPolicy"), InstanceMethod<&EngineWrap::Listeners>("listeners"),
         InstanceMethod<&EngineWrap::Counters>("counters"), InstanceMethod<&EngineWrap::GetLimits>("limits"),
         InstanceMethod<&EngineWrap::HandoffLatency>("handoffLatency"), InstanceMethod<&EngineWrap::HostKey>("hostKey"),
         InstanceMethod<&EngineWrap::SyncHeader>("syncHeader"), InstanceMethod<&EngineWrap::Unconfined>("unconfined")});
  }

  explicit EngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineWrap>(info), eng_(new Engine) {
    // Stop the thread before the environment goes away (process exit without stop()).
    napi_add_env_cleanup_hook(info.Env(), &EngineWrap::Cleanup, this);
    env_ = info.Env();
  }

  ~EngineWrap() override {
    napi_remove_env_cleanup_hook(env_, &EngineWrap::Cleanup, this);
    Shutdown();
  }

 private:
  static void Cleanup(void* self) { static_cast<EngineWrap*>(self)->Shutdown(); }

  void Shutdown() {
    eng_->stop();
    if (sink_) {
      sink_->close();
      sink_.reset();
    }
  }

  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const char* where = "start(opts, onEvent)";
    if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsFunction())
      return throw_type(env, std::string(where) + ": expects an options object and an event callback");
    Napi::Object o = info[0].As<Napi::Object>();
    Config cfg;
    std::string host, overlay, local;
    if (!get_string(o, "hostIp", where, &host) || !get_string(o, "overlayCidr", where, &overlay) ||
        !get_string(o, "localSubnet", where, &local) || !get_port(o, "port", where, true, &cfg.port) ||
        !get_ms(o, "headerTimeoutMs", &cfg.header_timeout_ms) ||
        !get_ms(o, "connectTimeoutMs", &cfg.connect_timeout_ms) || !get_count(o, "poolDepth", 0, 64, &cfg.pool_depth) ||
        !get_count(o, "poolMax", 1, 256, &cfg.pool_max) || !get_count(o, "poolPeerMax", 1, 65536, &cfg.pool_peer_max) ||
        !get_count(o, "headerPeerMax", 1, 1 << 20, &cfg.header_peer_max) ||
        !get_count(o, "headerPendingMax", 1, 1 << 20, &cfg.header_pending_max) ||
        !get_count(o, "containerConnsMax", 1, 1 << 24, &cfg.container_conns_max) ||
        !get_count(o, "containerPoolsMax", 1, 1 << 24, &cfg.container_pools_max) ||
        !get_count(o, "containerListenersMax", 1, 1 << 24, &cfg.container_listeners_max) ||
        !get_count(o, "containerPendingMax", 1, 1 << 24, &cfg.container_pending_max) ||
        !get_count(o, "fdReserve", 1, 1 << 24, &cfg.fd_reserve) || !get_cluster_key(o, &cfg))
      return env.Undefined();
    if (!parse_ip(host, &cfg.host_ip)) return throw_type(env, "start: hostIp \"" + host + "\" is not an IPv4 address");
    if (!parse_cidr(overlay, &cfg.overlay_net, &cfg.overlay_prefix))
      return throw_type(env, "start: overlayCidr \"" + overlay + "\" is not an IPv4 prefix (a.b.c.d/len)");
    if (!parse_cidr(local, &cfg.local_net, &cfg.local_prefix))
      return throw_type(env, "start: localSubnet \"" + local + "\" is not an IPv4 prefix (a.b.c.d/len)");
    cfg.debug = o.Get("debug").ToBoolean().Value();
    if (!o.Get("seccompSocket").IsUndefined()) {
      if (!o.Get("seccompSocket").IsString()) return throw_type(env, "start: seccompSocket must be a path (string)");
      cfg.seccomp_path = o.Get("seccompSocket").As<Napi::String>().Utf8Value();
    }
    if (!o.Get("seccompKeeper").IsUndefined()) {
      if (!o.Get("seccompKeeper").IsString()) return throw_type(env, "start: seccompKeeper must be a path (string)");
      cfg.seccomp_keeper = o.Get("seccompKeeper").As<Napi::String>().Utf8Value();
    }
    if (o.Get("steering").IsBoolean()) cfg.steer = o.Get("steering").As<Napi::Boolean>().Value();
    if (o.Get("guard").IsBoolean()) cfg.guard = o.Get("guard").As<Napi::Boolean>().Value();
    if (cfg.pool_max < cfg.pool_depth) cfg.pool_max = cfg.pool_depth;
    if (eng_->running()) return throw_error(env, Error{EALREADY, "the engine is already started; call stop() first"});
    auto sink = std::make_unique<JsEventSink>(env, info[1].As<Napi::Function>(), &eng_->ctr.events_dropped);
    Error e = eng_->start(cfg, sink.get());
    if (e) {
      sink->close();
      return throw_error(env, e);
    }
    sink_ = std::move(sink);
    return env.Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    Shutdown();
    return info.Env().Undefined();
  }

  Napi::Value AddContainer(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsString() || !info[1].IsString() || !info[2].IsString())
      return throw_type(env,
                        "addContainer(id, ip, socketPath[, {netns, unprivilegedPortStart}]): expects three strings");
    std::string id = info[0].As<Napi::String>().Utf8Value();
    std::string ips = info[1].As<Napi::String>().Utf8Value();
    std::string path = info[2].As<Napi::String>().Utf8Value();
    uint32_t ip;
    if (id.empty()) return throw_type(env, "addContainer: the container id is empty");
    if (!parse_ip(ips, &ip)) return throw_type(env, "addContainer: \"" + ips + "\" is not an IPv4 address");
    std::string netns;
    int port_start = -1;
    if (info.Length() > 3 && !info[3].IsUndefined()) {
      if (!info[3].IsObject())
        return throw_type(env, "addContainer: the fourth argument must be {netns, unprivilegedPortStart}");
      Napi::Object o = info[3].As<Napi::Object>();
      Napi::Value n = o.Get("netns");
      if (!n.IsUndefined()) {
        if (!n.IsString()) return throw_type(env, "addContainer: \"netns\" must be a path (string)");
        netns = n.As<Napi::String>().Utf8Value();
      }
      Napi::Value p = o.Get("unprivilegedPortStart");
      if (!p.IsUndefined()) {
        double d = p.IsNumber() ? p.As<Napi::Number>().DoubleValue() : -1;
        if (!(d >= 0 && d <= 65536) || d != double(int(d)))
          return throw_type(env, "addContainer: \"unprivilegedPortStart\" must be a whole number 0..65536");
        port_start = int(d);
      }
    }
    Error e = eng_->add_container(id, ip, path, netns, port_start);
    if (e) return throw_error(env, e);
    return env.Undefined();
  }

  Napi::Value RemoveContainer(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsString()) return throw_type(env, "removeContainer(id): id must be a string");
    return Napi::Boolean::New(env, eng_->remove_container(info[0].As<Napi::String>().Utf8Value()));
  }

  Napi::Value SetPeers(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const char* where = "setPeers(peers)";
    if (info.Length() < 1 || !info[0].IsArray())
      return throw_type(env, "setPeers(peers): expects an array of {ip, subnet, port}");
    Napi::Array a = info[0].As<Napi::Array>();
    std::vector<Route> routes;
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Value v = a.Get(i);
      if (!v.IsObject()) return throw_type(env, "setPeers: peers[" + std::to_string(i) + "] is not an object");
      Napi::Object p = v.As<Napi::Object>();
      std::string ip, subnet;
      Route r{};
      if (!get_string(p, "ip", where, &ip) || !get_string(p, "subnet", where, &subnet) ||
          !get_port(p, "port", where, false, &r.peer_port))
        return env.Undefined();
      if (!parse_ip(ip, &r.peer_ip)) return throw_type(env, "setPeers: \"" + ip + "\" is not an IPv4 address");
      if (!parse_cidr(subnet, &r.net, &r.prefix))
        return throw_type(env, "setPeers: \"" + subnet + "\" is not an IPv4 prefix (a.b.c.d/len)");
      routes.push_back(r);
    }
    eng_->set_peers(routes);
    return env.Undefined();
  }

  Napi::Value SetRemoteListeners(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t peer;
    if (info.Length() < 1 || !info[0].IsString() || !parse_ip(info[0].As<Napi::String>().Utf8Value(), &peer))
      return throw_type(env, "setRemoteListeners(peerIp, listeners): peerIp must be an IPv4 address");
    if (info.Length() < 2 || info[1].IsNull() || info[1].IsUndefined()) {
      eng_->set_remote_listeners(peer, nullptr);
      return env.Undefined();
    }
    if (!info[1].IsArray())
      return throw_type(env, "setRemoteListeners: listeners must be an array of \"ip:port\" or null");
    Napi::Array a = info[1].As<Napi::Array>();
    std::vector<uint64_t> keys;
    keys.reserve(a.Length());
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Value v = a.Get(i);
      std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
      size_t colon = s.rfind(':');
      uint32_t ip;
      char* end = nullptr;
      long port = colon == std::string::npos ? -1 : strtol(s.c_str() + colon + 1, &end, 10);
      if (colon == std::string::npos || !parse_ip(s.substr(0, colon), &ip) || !end || *end || port < 1 || port > 65535)
        return throw_type(env, "setRemoteListeners: listeners[" + std::to_string(i) + "] is not \"ip:port\"");
      keys.push_back(addr_key(ip, uint16_t(port)));
    }
    eng_->set_remote_listeners(peer, &keys);
    return env.Undefined();
  }

  Napi::Value SetPolicy(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Policy p;
    if (info.Length() < 1 || (!info[0].IsNull() && !info[0].IsObject()))
      return throw_type(env, "setPolicy(policy): expects {default, rules} or null (no policy)");
    if (!info[0].IsNull() && !parse_policy(info[0].As<Napi::Object>(), &p)) return env.Undefined();
    eng_->set_policy(std::move(p));
    return env.Undefined();
  }

  Napi::Value Listeners(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::vector<ListenerRow> rows = eng_->listener_rows();
    Napi::Array a = Napi::Array::New(env, rows.size());
    for (size_t i = 0; i < rows.size(); i++) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("ip", ip_str(rows[i].ip));
      o.Set("port", Napi::Number::New(env, rows[i].port));
      o.Set("containerId", rows[i].container);
      o.Set("channels", Napi::Number::New(env, rows[i].channels));
      a.Set(uint32_t(i), o);
    }
    return a;
  }

  // The key this broker signs its containers' pooled headers with (set by start()); it goes to
  // every peer in the SYNC header this broker subscribes with. Not with a cluster key: then it is
  // a secret that must never be sent.
  Napi::Value HostKey(const Napi::CallbackInfo& info) {
    std::lock_guard<std::mutex> lk(eng_->mu);
    if (eng_->clustered())
      return throw_error(
          info.Env(),
          Error{EPERM, "hostKey(): with a cluster key the host key is secret; subscribe with syncHeader()"});
    return Napi::Buffer<uint8_t>::Copy(info.Env(), eng_->auth.host_key(), 16);
  }

  // The 48-byte SYNC header to subscribe to a peer with (a new one each call: fresh nonce).
  Napi::Value SyncHeader(const Napi::CallbackInfo& info) {
    std::lock_guard<std::mutex> lk(eng_->mu);
    if (!eng_->running()) return throw_error(info.Env(), Error{ENOTCONN, "syncHeader(): the engine is not started"});
    sf_hdr h = eng_->auth.sync_header();
    return Napi::Buffer<uint8_t>::Copy(info.Env(), reinterpret_cast<const uint8_t*>(&h), sizeof h);
  }

  // "" while the confinement guard is attached, else why it is not (nothing is handed out then).
  Napi::Value Unconfined(const Napi::CallbackInfo& info) {
    std::lock_guard<std::mutex> lk(eng_->mu);
    return Napi::String::New(info.Env(), eng_->unconfined_why);
  }

  Napi::Value Counters(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    eng_->read_pool_reports();
    Napi::Object o = Napi::Object::New(env);
#define SF_X(n) o.Set(#n, Napi::Number::New(env, double(eng_->ctr.n.load(std::memory_order_relaxed))));
    SF_COUNTERS(SF_X)
#undef SF_X
    // Connections the kernel steered count as handed in (the doorbells among them do not).
    SteerStats st{};
    uint64_t denied[Guard::KINDS] = {};
    bool confined = false;
    {
      std::lock_guard<std::mutex> lk(eng_->mu);
      if (eng_->steering()) st = eng_->steer->stats();
      if ((confined = eng_->confined()))
        for (int k = 0; k < Guard::KINDS; k++) denied[k] = eng_->guard->denied(Guard::Kind(k));
    }
    uint64_t bells = eng_->ctr.doorbells.load(std::memory_order_relaxed);
    uint64_t steered = st.steered > bells ? st.steered - bells : 0;
    uint64_t local = eng_->ctr.same_host_steered.load(std::memory_order_relaxed);
    uint64_t from_peers = steered > local ? steered - local : 0;  // same-host ones are same_host
    o.Set("handed_in",
          Napi::Number::New(env, double(eng_->ctr.handed_in.load(std::memory_order_relaxed) + from_peers)));
    o.Set("steered", Napi::Number::New(env, double(steered)));
    o.Set("steer_to_broker",
          Napi::Number::New(env, double(st.no_header + st.not_steerable + st.no_key + st.no_listener + st.closed)));
    o.Set("steer_bad_tag", Napi::Number::New(env, double(st.bad_tag)));  // with a cluster key: forged, reset
    o.Set("steer_stale", Napi::Number::New(env, double(st.stale)));
    o.Set("steer_replayed", Napi::Number::New(env, double(st.replayed)));
    o.Set("steer_not_member", Napi::Number::New(env, double(st.not_member)));
    o.Set("steer_dropped", Napi::Number::New(env, double(st.dropped)));
    // The confinement guard: 1 while host sockets may be handed out (attached and checked), and
    // the calls it refused on marked sockets: setsockopt() that would have changed the reserved
    // port's group program, connect() (Fast Open sends included) and bind().
    o.Set("confined", Napi::Number::New(env, confined ? 1 : 0));
    o.Set("steer_guard_denied", Napi::Number::New(env, double(denied[Guard::REUSEPORT])));
    o.Set("guard_denied_connect", Napi::Number::New(env, double(denied[Guard::CONNECT])));
    o.Set("guard_denied_bind", Napi::Number::New(env, double(denied[Guard::BIND])));
    // Not a counter the thread keeps: read from /proc when asked (nothing on the hot path).
    o.Set("engine_cpu_us", Napi::Number::New(env, double(eng_->thread_cpu_ns() / 1000)));
    return o;
  }

  // What start() made of the limits: {nofile, reserve, budget, conns, pools, listeners, pending}
  // (before the first start(): nofile, reserve and budget 0, the defaults).
  Napi::Value GetLimits(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Limits l;
    {
      std::lock_guard<std::mutex> lk(eng_->mu);
      l = eng_->lim;
    }
    return limits_object(env, l);
  }

  // {boundsSeconds, out, in}: each side {buckets (cumulative, one per bound and +Inf last),
  // count, sumSeconds}, as Prometheus histograms want them (latency.h).
  Napi::Value HandoffLatency(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Array bounds = Napi::Array::New(env, kLatencyBounds);
    for (int i = 0; i < kLatencyBounds; i++) bounds.Set(uint32_t(i), Napi::Number::New(env, kLatencyBoundsUs[i] / 1e6));
    auto side = [&](const LatencyHist& h) {
      Napi::Array b = Napi::Array::New(env, kLatencyBounds + 1);
      uint64_t total = 0;
      for (int i = 0; i <= kLatencyBounds; i++) {
        total += h.bucket[i].load(std::memory_order_relaxed);
        b.Set(uint32_t(i), Napi::Number::New(env, double(total)));
      }
      Napi::Object o = Napi::Object::New(env);
      o.Set("buckets", b);
      o.Set("count", Napi::Number::New(env, double(total)));
      o.Set("sumSeconds", Napi::Number::New(env, double(h.sum_ns.load(std::memory_order_relaxed)) / 1e9));
      return o;
    };
    Napi::Object o = Napi::Object::New(env);
    o.Set("boundsSeconds", bounds);
    o.Set("out", side(eng_->lat.out));
    o.Set("in", side(eng_->lat.in));
    return o;
  }

  std::unique_ptr<Engine> eng_;
  std::unique_ptr<JsEventSink> sink_;
  napi_env env_ = nullptr;
};

// probeSteering(auth): loads the kernel steering program (sf_steer, or sf_steer_auth when auth is
// true) with its maps and closes both again: "" when it loads, else why not. No socket, no
// sysctl, no engine: what `slimfast doctor` asks on a host before a broker runs there.
Napi::Value ProbeSteering(const Napi::CallbackInfo& info) {
  bool auth = info.Length() > 0 && info[0].ToBoolean().Value();
  Steering s;
  return Napi::String::New(info.Env(), s.open(auth));
}

// probeConfinement(): attaches the confinement guard, checks it on probe sockets over 127.0.0.1
// and detaches it again: "" when host sockets could be handed out here, else why not.
Napi::Value ProbeConfinement(const Napi::CallbackInfo& info) {
  Guard g;
  return Napi::String::New(info.Env(), g.open());
}

// raiseFdLimit([cap]): RLIMIT_NOFILE's soft limit up to the hard one (as root the hard one first up
// to min(fs.nr_open, 1048576)), or to cap; {softBefore, hardBefore, soft, hard}. The daemon calls
// it before start(), which sizes its limits from what it got.
// netnsIpv4(path): {ip} (ip "" when the namespace has no global IPv4 address) or {error}.
Napi::Value NetnsIpv4(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) return throw_type(env, "netnsIpv4(path): path must be a string");
  NetnsIp r = netns_ipv4(info[0].As<Napi::String>().Utf8Value());
  Napi::Object o = Napi::Object::New(env);
  if (!r.error.empty())
    o.Set("error", r.error);
  else
    o.Set("ip", r.ip);
  return o;
}

Napi::Value RaiseFdLimit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  double cap = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 0;
  if (!(cap >= 0 && cap <= double(1u << 30))) return throw_type(env, "raiseFdLimit([cap]): cap must be 0..2^30");
  FdLimit f = raise_fd_limit(uint64_t(cap));
  Napi::Object o = Napi::Object::New(env);
  o.Set("softBefore", Napi::Number::New(env, double(f.soft_before)));
  o.Set("hardBefore", Napi::Number::New(env, double(f.hard_before)));
  o.Set("soft", Napi::Number::New(env, double(f.soft)));
  o.Set("hard", Napi::Number::New(env, double(f.hard)));
  return o;
}

// sizeLimits(nofile, opts): what start() would make of opts' limits under that RLIMIT_NOFILE.
Napi::Value SizeLimits(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber())
    return throw_type(env, "sizeLimits(nofile[, opts]): nofile must be a number");
  Config cfg;
  if (info.Length() > 1 && info[1].IsObject()) {
    Napi::Object o = info[1].As<Napi::Object>();
    if (!get_count(o, "containerConnsMax", 1, 1 << 24, &cfg.container_conns_max) ||
        !get_count(o, "containerPoolsMax", 1, 1 << 24, &cfg.container_pools_max) ||
        !get_count(o, "containerListenersMax", 1, 1 << 24, &cfg.container_listeners_max) ||
        !get_count(o, "containerPendingMax", 1, 1 << 24, &cfg.container_pending_max) ||
        !get_count(o, "fdReserve", 1, 1 << 24, &cfg.fd_reserve))
      return env.Undefined();
  }
  Limits l = size_limits(uint64_t(info[0].As<Napi::Number>().DoubleValue()), cfg);
  return limits_object(env, l);
}

}  // namespace sf

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Engine", sf::EngineWrap::Define(env));
  exports.Set("probeSteering", Napi::Function::New(env, sf::ProbeSteering, "probeSteering"));
  exports.Set("probeConfinement", Napi::Function::New(env, sf::ProbeConfinement, "probeConfinement"));
  exports.Set("raiseFdLimit", Napi::Function::New(env, sf::RaiseFdLimit, "raiseFdLimit"));
  exports.Set("netnsIpv4", Napi::Function::New(env, sf::NetnsIpv4, "netnsIpv4"));
  exports.Set("sizeLimits", Napi::Function::New(env, sf::SizeLimits, "sizeLimits"));
  sf::export_pid_watch(env, exports);
  return exports;
}

NODE_API_MODULE(slimfast_addon, Init)
