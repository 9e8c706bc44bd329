#include "common/dist/tcp_store.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace eagle {
namespace {

bool WriteAll(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool ReadAll(int fd, void* data, size_t n) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t r = ::recv(fd, p, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool WriteU32(int fd, uint32_t v) {
  const uint8_t b[4] = {static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8),
                        static_cast<uint8_t>(v >> 16), static_cast<uint8_t>(v >> 24)};
  return WriteAll(fd, b, 4);
}

bool ReadU32(int fd, uint32_t* v) {
  uint8_t b[4];
  if (!ReadAll(fd, b, 4)) return false;
  *v = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<uint32_t>(b[3]) << 24);
  return true;
}

constexpr uint32_t kMaxField = 1 << 20;  // keys and values are addresses and ids: small

bool ReadString(int fd, std::string* s) {
  uint32_t n = 0;
  if (!ReadU32(fd, &n) || n > kMaxField) return false;
  s->resize(n);
  return n == 0 || ReadAll(fd, s->data(), n);
}

bool WriteString(int fd, const std::string& s) {
  return WriteU32(fd, static_cast<uint32_t>(s.size())) && WriteAll(fd, s.data(), s.size());
}

// The first address of host:port (numeric or a name).
absl::StatusOr<sockaddr_storage> Resolve(const std::string& host, int port, socklen_t* len,
                                         bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (passive) hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  const int rc =
      ::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &res);
  if (rc != 0 || res == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot resolve rendezvous host \"", host, "\": ", ::gai_strerror(rc)));
  }
  sockaddr_storage out{};
  std::memcpy(&out, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  ::freeaddrinfo(res);
  return out;
}

}  // namespace

absl::Status ParseHostPort(const std::string& text, const std::string& flag, std::string* host,
                           int* port) {
  const size_t colon = text.rfind(':');
  int p = -1;
  if (colon == std::string::npos || colon == 0 || !absl::SimpleAtoi(text.substr(colon + 1), &p) ||
      p < 0 || p > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " must be HOST:PORT with a port in [0, 65535], not \"", text, "\""));
  }
  *host = text.substr(0, colon);
  if (host->size() > 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  *port = p;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<TcpStoreServer>> TcpStoreServer::Start(const std::string& host,
                                                                      int port) {
  socklen_t len = 0;
  absl::StatusOr<sockaddr_storage> addr = Resolve(host, port, &len, /*passive=*/true);
  if (!addr.ok()) return addr.status();
  const int fd = ::socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&*addr), len) != 0 || ::listen(fd, 64) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::UnavailableError(
        absl::StrCat("rendezvous: cannot listen on ", host, ":", port, ": ", std::strerror(err)));
  }
  sockaddr_storage bound{};
  socklen_t blen = sizeof(bound);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &blen);
  auto s = std::unique_ptr<TcpStoreServer>(new TcpStoreServer());
  s->listen_fd_ = fd;
  s->port_ =
      ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port
                                        : reinterpret_cast<const sockaddr_in*>(&bound)->sin_port);
  s->acceptor_ = std::thread([p = s.get()] { p->AcceptLoop(); });
  return s;
}

TcpStoreServer::~TcpStoreServer() {
  stop_ = true;
  ::shutdown(listen_fd_, SHUT_RDWR);
  if (acceptor_.joinable()) acceptor_.join();
  ::close(listen_fd_);
  std::vector<std::thread> workers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
    workers.swap(workers_);
  }
  cv_.notify_all();
  for (std::thread& t : workers) t.join();
}

void TcpStoreServer::AcceptLoop() {
  while (!stop_) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (stop_ || errno == EINVAL || errno == EBADF) return;  // shut down
      // A transient failure (an aborted connection, out of descriptors): keep serving.
      if (errno != EINTR) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    std::lock_guard<std::mutex> lock(mu_);
    fds_.push_back(fd);
    try {
      workers_.emplace_back([this, fd] { Serve(fd); });
    } catch (const std::exception&) {
      fds_.pop_back();  // no thread for it: refuse this connection
      ::close(fd);
    }
  }
}

void TcpStoreServer::Serve(int fd) {
  for (;;) {
    char op = 0;
    std::string key;
    if (!ReadAll(fd, &op, 1) || !ReadString(fd, &key)) break;
    if (op == 'S') {
      std::string value;
      if (!ReadString(fd, &value)) break;
      {
        std::lock_guard<std::mutex> lock(mu_);
        values_[key] = std::move(value);
      }
      cv_.notify_all();
      const char ok = 0;
      if (!WriteAll(fd, &ok, 1)) break;
    } else if (op == 'G') {
      uint32_t timeout_ms = 0;
      if (!ReadU32(fd, &timeout_ms)) break;
      std::string value;
      bool found = false;
      {
        std::unique_lock<std::mutex> lock(mu_);
        found = cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                             [&] { return stop_.load() || values_.count(key) > 0; });
        found = found && values_.count(key) > 0;
        if (found) value = values_[key];
      }
      const char status = found ? 0 : 1;
      if (!WriteAll(fd, &status, 1) || !WriteString(fd, value)) break;
    } else {
      break;  // not our protocol: drop the connection
    }
  }
  // Forgotten before it is closed: a number reused by a new connection is never shut down by
  // mistake.
  std::lock_guard<std::mutex> lock(mu_);
  std::erase(fds_, fd);
  ::close(fd);
}

absl::StatusOr<std::unique_ptr<TcpStoreClient>> TcpStoreClient::Connect(
    const std::string& host, int port, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string last;
  do {
    // Resolved at every attempt: rank 0's name may appear (DNS of a starting pod) after ours.
    socklen_t len = 0;
    absl::StatusOr<sockaddr_storage> addr = Resolve(host, port, &len, /*passive=*/false);
    if (!addr.ok()) {
      last = std::string(addr.status().message());
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    const int fd = ::socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&*addr), len) == 0) {
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      return std::unique_ptr<TcpStoreClient>(new TcpStoreClient(fd));
    }
    last = std::strerror(errno);
    ::close(fd);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  } while (std::chrono::steady_clock::now() < deadline);
  return absl::UnavailableError(absl::StrCat("rendezvous ", host, ":", port, " did not answer in ",
                                             timeout.count() / 1000.0, " s (", last, ")"));
}

TcpStoreClient::~TcpStoreClient() { ::close(fd_); }

std::string TcpStoreClient::local_address() const {
  sockaddr_storage a{};
  socklen_t len = sizeof(a);
  if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) return "";
  char host[NI_MAXHOST] = {};
  if (::getnameinfo(reinterpret_cast<const sockaddr*>(&a), len, host, sizeof(host), nullptr, 0,
                    NI_NUMERICHOST) != 0) {
    return "";
  }
  return host;
}

absl::Status TcpStoreClient::Set(const std::string& key, const std::string& value) {
  std::lock_guard<std::mutex> lock(mu_);
  char ok = 1;
  if (!WriteAll(fd_, "S", 1) || !WriteString(fd_, key) || !WriteString(fd_, value) ||
      !ReadAll(fd_, &ok, 1) || ok != 0) {
    return absl::UnavailableError(absl::StrCat("rendezvous: lost the store setting ", key));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> TcpStoreClient::Get(const std::string& key,
                                                std::chrono::milliseconds timeout) {
  std::lock_guard<std::mutex> lock(mu_);
  char status = 1;
  std::string value;
  if (!WriteAll(fd_, "G", 1) || !WriteString(fd_, key) ||
      !WriteU32(fd_, static_cast<uint32_t>(timeout.count())) || !ReadAll(fd_, &status, 1) ||
      !ReadString(fd_, &value)) {
    return absl::UnavailableError(absl::StrCat("rendezvous: lost the store reading ", key));
  }
  if (status != 0) {
    return absl::DeadlineExceededError(absl::StrCat("rendezvous: \"", key, "\" was not set within ",
                                                    timeout.count() / 1000.0, " s"));
  }
  return value;
}

absl::StatusOr<Rendezvous> JoinRendezvous(int rank, int world, const std::string& address,
                                          std::unique_ptr<TcpStoreServer> server,
                                          std::chrono::milliseconds timeout) {
  if (world < 1 || rank < 0 || rank >= world) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", rank, " is outside a world of ", world, " ranks"));
  }
  std::string host;
  int port = 0;
  if (absl::Status s = ParseHostPort(address, "--rendezvous", &host, &port); !s.ok()) return s;
  if (server != nullptr) port = server->port();
  if (port == 0) {
    return absl::InvalidArgumentError(
        "--rendezvous needs a fixed port (not 0) that every rank can reach");
  }
  Rendezvous r;
  if (rank == 0) {
    if (server == nullptr) {
      // Every interface: rank 0's own name may not resolve yet (a starting pod's DNS record).
      absl::StatusOr<std::unique_ptr<TcpStoreServer>> srv = TcpStoreServer::Start("", port);
      if (!srv.ok()) return srv.status();
      server = *std::move(srv);
    }
    r.server = std::move(server);
  }
  absl::StatusOr<std::unique_ptr<TcpStoreClient>> client =
      TcpStoreClient::Connect(host, port, timeout);
  if (!client.ok()) return client.status();
  r.client = *std::move(client);
  return r;
}

}  // namespace eagle
