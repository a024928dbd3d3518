//===- Comm.cpp - communicators for data-parallel runs --------------------===//

#include "trlc/Comm.h"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>

#ifdef TRLC_HAVE_GLOO
#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#endif

namespace trlc {
namespace {

class NoComm : public Communicator {
public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string name() const override { return "none"; }
  void allReduceSum(float *, size_t) override {}
  void allReduceSum(double *, size_t) override {}
  void allGather(const float *shard, float *out, size_t count) override {
    std::copy(shard, shard + count, out);
  }
  void reduceScatterSum(float *in, float *out, size_t count) override {
    std::copy(in, in + count, out);
  }
  void barrier() override {}
};

#ifdef TRLC_HAVE_GLOO
/// The torchrun rendezvous (MASTER_ADDR:MASTER_PORT): rank 0 serves a
/// key-value store the ranks exchange their Gloo addresses through; only
/// the rendezvous goes through it, every collective goes through Gloo.
/// Messages: 'S' key value (set) and 'G' key (get; answered once the key
/// exists), each string as a 4-byte length then its bytes.
class TcpStore : public gloo::rendezvous::Store {
public:
  TcpStore(const std::string &host, int port, bool serve, int timeoutSeconds)
      : timeout(timeoutSeconds) {
    if (serve)
      listenOn(port);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeoutSeconds);
    for (;;) {
      fd = connectTo(host, port);
      if (fd >= 0)
        break;
      if (std::chrono::steady_clock::now() > deadline)
        throw CommError("cannot reach the rendezvous at " + host + ":" +
                        std::to_string(port) + " within " +
                        std::to_string(timeoutSeconds) + " s (is rank 0 running there?)");
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    timeval tv{timeoutSeconds, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~TcpStore() override {
    if (fd >= 0)
      close(fd);
  }
  void set(const std::string &key, const std::vector<char> &data) override {
    sendAll(fd, "S", 1);
    sendString(fd, key);
    sendString(fd, std::string(data.begin(), data.end()));
  }
  std::vector<char> get(const std::string &key) override {
    sendAll(fd, "G", 1);
    sendString(fd, key);
    std::string v;
    if (!recvString(fd, v))
      throw CommError("the rendezvous did not answer for '" + key + "' within " +
                      std::to_string(timeout) + " s (did a rank not start?)");
    return std::vector<char>(v.begin(), v.end());
  }
  void wait(const std::vector<std::string> &keys) override {
    for (const std::string &k : keys)
      get(k);
  }

private:
  static void sendAll(int s, const char *p, size_t n) {
    while (n > 0) {
      ssize_t k = send(s, p, n, MSG_NOSIGNAL);
      if (k <= 0)
        throw CommError("the rendezvous connection closed");
      p += k;
      n -= static_cast<size_t>(k);
    }
  }
  static bool recvAll(int s, char *p, size_t n) {
    while (n > 0) {
      ssize_t k = recv(s, p, n, 0);
      if (k <= 0)
        return false;
      p += k;
      n -= static_cast<size_t>(k);
    }
    return true;
  }
  static void sendString(int s, const std::string &v) {
    uint32_t n = htonl(static_cast<uint32_t>(v.size()));
    sendAll(s, reinterpret_cast<const char *>(&n), 4);
    sendAll(s, v.data(), v.size());
  }
  static bool recvString(int s, std::string &v) {
    uint32_t n = 0;
    if (!recvAll(s, reinterpret_cast<char *>(&n), 4))
      return false;
    v.resize(ntohl(n));
    return recvAll(s, v.data(), v.size());
  }
  static int connectTo(const std::string &host, int port) {
    addrinfo hints{}, *res = nullptr;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0)
      throw CommError("MASTER_ADDR=" + host + " does not resolve to an address");
    int s = -1;
    for (addrinfo *a = res; a && s < 0; a = a->ai_next) {
      s = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
      if (s >= 0 && connect(s, a->ai_addr, a->ai_addrlen) != 0) {
        close(s);
        s = -1;
      }
    }
    freeaddrinfo(res);
    return s;
  }
  /// Rank 0: the store itself, on a thread for the life of the process.
  void listenOn(int port) {
    int l = socket(AF_INET6, SOCK_STREAM, 0);
    int off = 0, on = 1;
    setsockopt(l, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    sockaddr_in6 addr{};
    addr.sin6_family = AF_INET6;
    addr.sin6_addr = in6addr_any;
    addr.sin6_port = htons(static_cast<uint16_t>(port));
    if (l < 0 || bind(l, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0 ||
        listen(l, 256) != 0)
      throw CommError("rank 0 cannot listen on port " + std::to_string(port) + ": " +
                      std::strerror(errno) +
                      " (is the port in use? pick another MASTER_PORT, or set TRLC_MASTER_PORT)");
    struct Shared {
      std::mutex m;
      std::condition_variable cv;
      std::map<std::string, std::string> kv;
    };
    auto shared = std::make_shared<Shared>();
    std::thread([l, shared] {
      for (;;) {
        int c = accept(l, nullptr, nullptr);
        if (c < 0)
          return;
        std::thread([c, shared] {
          char op;
          std::string key, value;
          while (recvAll(c, &op, 1) && recvString(c, key)) {
            if (op == 'S') {
              if (!recvString(c, value))
                break;
              std::lock_guard<std::mutex> lock(shared->m);
              shared->kv[key] = value;
              shared->cv.notify_all();
            } else {
              std::unique_lock<std::mutex> lock(shared->m);
              shared->cv.wait(lock, [&] { return shared->kv.count(key) > 0; });
              value = shared->kv[key];
              lock.unlock();
              try {
                sendString(c, value);
              } catch (const CommError &) {
                break;
              }
            }
          }
          close(c);
        }).detach();
      }
    }).detach();
  }
  int fd = -1;
  int timeout;
};

class GlooComm : public Communicator {
public:
  GlooComm(int rank, int size, gloo::rendezvous::Store &base, const std::string &where,
           int timeoutSeconds) {
    // A peer that died closes its sockets: writing to one must fail the
    // collective with an error, not kill this process with SIGPIPE.
    std::signal(SIGPIPE, SIG_IGN);
    try {
      gloo::transport::tcp::attr attr;
      // The address the other ranks reach this one at: TRLC_HOST, else
      // this machine's name when the ranks meet at another machine, else
      // loopback.
      const char *host = std::getenv("TRLC_HOST");
      const char *master = std::getenv("MASTER_ADDR");
      char name[256] = {};
      bool remote = master && *master && std::string(master) != "localhost" &&
                    std::string(master).rfind("127.", 0) != 0;
      if (host && *host)
        attr.hostname = host;
      else if (remote && gethostname(name, sizeof name - 1) == 0)
        attr.hostname = name;
      else
        attr.hostname = "127.0.0.1";
      device_ = gloo::transport::tcp::CreateDevice(attr);
      gloo::rendezvous::PrefixStore store("trlc", base);
      context_ = std::make_shared<gloo::rendezvous::Context>(rank, size);
      context_->setTimeout(std::chrono::seconds(timeoutSeconds));
      context_->connectFullMesh(store, device_);
    } catch (const std::exception &e) {
      throw CommError("rank " + std::to_string(rank) + ": cannot connect to the other " +
                      std::to_string(size - 1) + " ranks through " + where + " within " +
                      std::to_string(timeoutSeconds) + " s: " + e.what());
    }
  }
  int rank() const override { return context_->rank; }
  int size() const override { return context_->size; }
  std::string name() const override { return "gloo"; }
  void allReduceSum(float *data, size_t n) override { reduce(data, n); }
  void allReduceSum(double *data, size_t n) override { reduce(data, n); }
  void allGather(const float *shard, float *out, size_t count) override {
    try {
      gloo::AllgatherOptions opts(context_);
      opts.setInput(const_cast<float *>(shard), count);
      opts.setOutput(out, count * context_->size);
      gloo::allgather(opts);
    } catch (const std::exception &e) {
      fail(e);
    }
  }
  void reduceScatterSum(float *in, float *out, size_t count) override {
    reduce(in, count * context_->size);
    const float *mine = in + count * context_->rank;
    std::copy(mine, mine + count, out);
  }
  void barrier() override {
    try {
      gloo::BarrierOptions opts(context_);
      gloo::barrier(opts);
    } catch (const std::exception &e) {
      fail(e);
    }
  }

private:
  template <typename T> void reduce(T *data, size_t n) {
    if (n == 0)
      return;
    try {
      gloo::AllreduceOptions opts(context_);
      opts.setOutput(data, n);
      void (*sum)(void *, const void *, const void *, size_t) = &gloo::sum<T>;
      opts.setReduceFunction(sum);
      gloo::allreduce(opts);
    } catch (const std::exception &e) {
      fail(e);
    }
  }
  [[noreturn]] void fail(const std::exception &e) {
    throw CommError("rank " + std::to_string(context_->rank) +
                    ": a collective with the other ranks failed (did a rank exit or "
                    "stop responding?): " + e.what());
  }
  std::shared_ptr<gloo::transport::Device> device_;
  std::shared_ptr<gloo::rendezvous::Context> context_;
};
#endif

int envInt(const char *name, int fallback) {
  const char *v = std::getenv(name);
  if (!v || !*v)
    return fallback;
  char *end = nullptr;
  long x = std::strtol(v, &end, 10);
  if (*end || x < 0)
    throw CommError(std::string(name) + "='" + v + "' is not a non-negative integer");
  return static_cast<int>(x);
}

struct Place {
  int rank = 0, size = 1;
};

/// RANK and WORLD_SIZE, checked.
Place place() {
  Place p;
  p.size = envInt("WORLD_SIZE", 1);
  if (p.size <= 1) {
    p.size = 1;
    return p;
  }
  p.rank = envInt("RANK", -1);
  if (p.rank < 0 || p.rank >= p.size)
    throw CommError("WORLD_SIZE is " + std::to_string(p.size) +
                    " but RANK is unset or out of range; set RANK to 0.." +
                    std::to_string(p.size - 1));
  return p;
}

#ifdef TRLC_HAVE_GLOO
/// Where the ranks meet: TRLC_RENDEZVOUS_DIR or MASTER_ADDR:MASTER_PORT.
std::unique_ptr<gloo::rendezvous::Store> openStore(const Place &p, int timeout,
                                                   std::string &where) {
  const char *dir = std::getenv("TRLC_RENDEZVOUS_DIR");
  const char *addr = std::getenv("MASTER_ADDR");
  int port = envInt("MASTER_PORT", 0);
  // torchrun's agent serves its own store on MASTER_PORT: trlc's
  // rendezvous takes the next port then. TRLC_MASTER_PORT overrides both.
  const char *torchrun = std::getenv("TORCHELASTIC_RUN_ID");
  if (port > 0 && torchrun && *torchrun)
    port += 1;
  port = envInt("TRLC_MASTER_PORT", port);
  if (dir && *dir) {
    where = dir;
    return std::make_unique<gloo::rendezvous::FileStore>(dir);
  }
  if (addr && *addr && port > 0) {
    where = std::string(addr) + ":" + std::to_string(port);
    return std::make_unique<TcpStore>(addr, port, p.rank == 0, timeout);
  }
  throw CommError("WORLD_SIZE is " + std::to_string(p.size) +
                  " but the ranks have nowhere to meet: set MASTER_ADDR and MASTER_PORT "
                  "(rank 0's host and a free port, as torchrun does) or "
                  "TRLC_RENDEZVOUS_DIR (a directory every rank sees); "
                  "`trlc run --nproc N` sets one up for local runs");
}
#endif

} // namespace

std::unique_ptr<Communicator> makeCommunicator(const std::string &backend) {
  Place p = place();
  int timeout = envInt("TRLC_COMM_TIMEOUT", 60);
#ifdef TRLC_HAVE_NCCL
  if (backend == "cuda") {
    std::vector<char> id;
    if (p.size > 1) {
#ifdef TRLC_HAVE_GLOO
      std::string where;
      std::unique_ptr<gloo::rendezvous::Store> store = openStore(p, timeout, where);
      if (p.rank == 0)
        store->set("trlc-nccl-id", ncclIdBytes());
      id = store->get("trlc-nccl-id");
#else
      throw CommError("this trlc was built without Gloo (libgloo-dev), which NCCL runs "
                      "use to meet");
#endif
    } else {
      id = ncclIdBytes();
    }
    return makeNcclComm(p.rank, p.size, id, timeout);
  }
#endif
  if (p.size == 1)
    return std::make_unique<NoComm>();
  if (backend != "cpu")
    throw CommError("this trlc was built without NCCL, so its " + backend +
                    " backend runs one process only (WORLD_SIZE is " +
                    std::to_string(p.size) + ")");
#ifdef TRLC_HAVE_GLOO
  // The store is needed only to connect (rank 0's server thread lives on
  // for late ranks).
  std::string where;
  std::unique_ptr<gloo::rendezvous::Store> store = openStore(p, timeout, where);
  return std::make_unique<GlooComm>(p.rank, p.size, *store, where, timeout);
#else
  throw CommError("this trlc was built without Gloo (libgloo-dev), so it cannot run "
                  "several processes");
#endif
}

} // namespace trlc
