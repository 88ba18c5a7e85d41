// Container registry in native code: one SOCK_SEQPACKET broker socket per container.
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>

#include "engine.h"
#include "util.h"

namespace sf {

Error Engine::add_container(const std::string& id, uint32_t ip, const std::string& path, const std::string& netns,
                            int port_start) {
  // Its network namespace, read before the lock (a thread joins it for the port sysctl): which
  // user namespaces' CAP_NET_BIND_SERVICE count there, and from which port on none is needed.
  NetnsInfo ni = read_netns_info(netns, true);
  if (ni.userns_chain.empty()) ni.userns_chain = read_netns_info("", true).userns_chain;  // unreadable: the broker's
  std::lock_guard<std::mutex> lk(mu);
  if (by_id.count(id)) return Error{EEXIST, "container \"" + id + "\" is already registered"};
  auto other = by_ip.find(ip);
  if (other != by_ip.end())
    return Error{EEXIST, "IP " + ip_str(ip) + " is already used by container \"" + other->second->id + "\""};
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof a.sun_path)
    return Error{ENAMETOOLONG, "socket path \"" + path + "\" is empty or longer than " +
                                   std::to_string(sizeof a.sun_path - 1) + " bytes"};
  memcpy(a.sun_path, path.c_str(), path.size() + 1);
  Error err;
  if (!ensure_epoll(&err)) return err;
  auto fail = [&](const char* what, int fd) {
    int e = errno;
    close_fd(fd);
    return Error{e, std::string(what) + " " + path + ": " + strerror(e)};
  };
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail("cannot create the broker socket", -1);
  if (unlink(path.c_str()) < 0 && errno != ENOENT) return fail("cannot remove the stale file at", fd);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return fail("cannot bind", fd);
  struct stat st;
  if (chmod(path.c_str(), 0666) < 0 || stat(path.c_str(), &st) < 0 || listen(fd, 4096) < 0) {
    Error e = fail("cannot set up", fd);
    unlink(path.c_str());
    return e;
  }
  Container* c = new (std::nothrow) Container;
  if (!c) {
    close_fd(fd);
    unlink(path.c_str());
    return Error{ENOMEM, "out of memory"};
  }
  c->id = id;
  c->ip = ip;
  c->restricted = policy.restricts(ip);
  c->path = path;
  c->path_dev = st.st_dev;
  c->path_ino = st.st_ino;
  c->netns = netns;
  c->netns_dev = ni.dev;
  c->netns_ino = ni.ino;
  c->userns_chain = std::move(ni.userns_chain);
  c->port_start_fixed = port_start >= 0;
  c->port_start = port_start >= 0 ? uint32_t(port_start) : ni.port_start_ok ? ni.port_start : 1024;
  c->port_start_read_ms = now_ms();
  c->ev.fd = fd;
  if (!ep_add(c->ev, EPOLLIN)) {
    Error e = fail("epoll_ctl for", fd);
    unlink(path.c_str());
    delete c;
    return e;
  }
  by_id.emplace(id, c);
  by_ip.emplace(ip, c);
  containers_gen++;
  inc(ctr.containers);
  return Error{};
}

bool Engine::remove_container(const std::string& id) {
  std::lock_guard<std::mutex> lk(mu);
  auto it = by_id.find(id);
  if (it == by_id.end()) return false;
  kill_container(it->second, true);
  if (running_)
    nudge();
  else
    collect_garbage();
  return true;
}

// Closes the broker socket, its preload connections and its listeners (mu held).
void Engine::kill_container(Container* c, bool emit) {
  while (!c->conns.empty()) kill_preload(c->conns.back());
  // Its listeners go, steered ones too (whose sockets may outlive their channels).
  std::vector<Listener*> mine = listeners.select([c](Listener* l) { return l->c == c; });
  for (Listener* l : mine) remove_listener(l, emit);
  while (!c->channels.empty()) kill_channel(c->channels.back(), emit);
  ep_del(c->ev);
  close_fd(c->ev.fd);
  c->ev.fd = -1;
  struct stat st;
  // Unlink only the socket file we created (a newer daemon may have taken the path over).
  if (lstat(c->path.c_str(), &st) == 0 && st.st_dev == c->path_dev && st.st_ino == c->path_ino) unlink(c->path.c_str());
  by_id.erase(c->id);
  by_ip.erase(c->ip);
  dec(ctr.containers);
  bury(c);
}

}  // namespace sf
