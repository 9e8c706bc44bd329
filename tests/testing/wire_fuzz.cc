#include "tests/testing/wire_fuzz.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace eagle::testing {
namespace {

constexpr size_t kFrameHeader = 9;

int Uniform(std::mt19937_64& rng, int lo, int hi) {  // [lo, hi]
  return std::uniform_int_distribution<int>(lo, hi)(rng);
}

std::string RandomBytes(std::mt19937_64& rng, int n) {
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(Uniform(rng, 0, 255));
  return s;
}

// Blocking sends give up after 5 s, so that a peer that stops reading cannot hold the relay.
void SetSendTimeout(int fd) {
  const timeval t{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &t, sizeof t);
}

int ConnectLoopback(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  SetSendTimeout(fd);
  return fd;
}

}  // namespace

absl::StatusOr<H2Connection> SplitConnection(std::string_view bytes) {
  if (!bytes.starts_with(kHttp2Preface)) {
    return absl::InvalidArgumentError("the bytes do not start with the HTTP/2 preface");
  }
  H2Connection c;
  c.preface = std::string(kHttp2Preface);
  size_t at = kHttp2Preface.size();
  while (at < bytes.size()) {
    if (bytes.size() - at < kFrameHeader) {
      return absl::InvalidArgumentError(absl::StrCat("a frame header is cut short at ", at));
    }
    const auto* h = reinterpret_cast<const uint8_t*>(bytes.data() + at);
    const size_t length = size_t{h[0]} << 16 | size_t{h[1]} << 8 | h[2];
    if (bytes.size() - at - kFrameHeader < length) {
      return absl::InvalidArgumentError(absl::StrCat("a frame payload is cut short at ", at));
    }
    H2Frame f;
    f.type = h[3];
    f.flags = h[4];
    f.stream = uint32_t{h[5]} << 24 | uint32_t{h[6]} << 16 | uint32_t{h[7]} << 8 | h[8];
    f.payload = std::string(bytes.substr(at + kFrameHeader, length));
    c.frames.push_back(std::move(f));
    at += kFrameHeader + length;
  }
  return c;
}

std::string Serialize(const H2Connection& c) {
  std::string out = c.preface;
  for (const H2Frame& f : c.frames) {
    const int64_t told = std::clamp<int64_t>(
        static_cast<int64_t>(f.payload.size()) + f.length_delta, 0, (int64_t{1} << 24) - 1);
    const char header[kFrameHeader] = {
        static_cast<char>(told >> 16),     static_cast<char>(told >> 8),
        static_cast<char>(told),           static_cast<char>(f.type),
        static_cast<char>(f.flags),        static_cast<char>(f.stream >> 24),
        static_cast<char>(f.stream >> 16), static_cast<char>(f.stream >> 8),
        static_cast<char>(f.stream)};
    out.append(header, kFrameHeader);
    out += f.payload;
  }
  return out;
}

std::string Mutate(const H2Connection& seed, std::mt19937_64& rng) {
  H2Connection c = seed;
  auto any_frame = [&]() -> H2Frame& {
    return c.frames[Uniform(rng, 0, static_cast<int>(c.frames.size()) - 1)];
  };
  // Frames that carry a request (HEADERS, DATA, CONTINUATION) are the interesting targets.
  auto request_frame = [&]() -> H2Frame& {
    std::vector<H2Frame*> picks;
    for (H2Frame& f : c.frames) {
      if (f.type == 0 || f.type == 1 || f.type == 9) picks.push_back(&f);
    }
    if (picks.empty() || Uniform(rng, 0, 3) == 0) return any_frame();
    return *picks[Uniform(rng, 0, static_cast<int>(picks.size()) - 1)];
  };
  const int mutations = Uniform(rng, 1, 4);
  for (int m = 0; m < mutations; ++m) {
    if (c.frames.empty()) {
      c.frames.push_back(H2Frame{static_cast<uint8_t>(Uniform(rng, 0, 10)), 0, 1,
                                 RandomBytes(rng, Uniform(rng, 0, 32))});
      continue;
    }
    switch (Uniform(rng, 0, 11)) {
      case 0:
      case 1: {  // flip bytes of a payload
        H2Frame& f = request_frame();
        if (f.payload.empty()) break;
        for (int k = Uniform(rng, 1, 8); k > 0; --k) {
          f.payload[Uniform(rng, 0, static_cast<int>(f.payload.size()) - 1)] ^=
              static_cast<char>(1 << Uniform(rng, 0, 7));
        }
        break;
      }
      case 2: {  // bytes set to the edge values (HPACK integers and lengths overflow)
        H2Frame& f = request_frame();
        if (f.payload.empty()) break;
        for (int k = Uniform(rng, 1, 4); k > 0; --k) {
          f.payload[Uniform(rng, 0, static_cast<int>(f.payload.size()) - 1)] =
              Uniform(rng, 0, 1) ? '\xff' : '\0';
        }
        break;
      }
      case 3:
        any_frame().type =
            static_cast<uint8_t>(Uniform(rng, 0, 3) ? Uniform(rng, 0, 9) : Uniform(rng, 0, 255));
        break;
      case 4:
        any_frame().flags = static_cast<uint8_t>(Uniform(rng, 0, 255));
        break;
      case 5: {  // stream 0, an even (server) id, a huge one, or another frame's
        const uint32_t choices[] = {0u, 2u, 0x7fffffffu, 0x80000001u, any_frame().stream + 2};
        request_frame().stream = choices[Uniform(rng, 0, 4)];
        break;
      }
      case 6: {  // a lying length: off by a little, or far too long
        const int64_t deltas[] = {-1, 1, -9, 16, 1 << 14, 1 << 23};
        request_frame().length_delta = deltas[Uniform(rng, 0, 5)];
        break;
      }
      case 7: {  // duplicate a frame (a few times, sometimes)
        const int i = Uniform(rng, 0, static_cast<int>(c.frames.size()) - 1);
        const H2Frame copy = c.frames[i];
        c.frames.insert(c.frames.begin() + i, Uniform(rng, 0, 3) ? 1 : Uniform(rng, 2, 40), copy);
        break;
      }
      case 8:  // drop a frame
        c.frames.erase(c.frames.begin() + Uniform(rng, 0, static_cast<int>(c.frames.size()) - 1));
        break;
      case 9: {  // move a frame elsewhere
        const int from = Uniform(rng, 0, static_cast<int>(c.frames.size()) - 1);
        H2Frame f = c.frames[from];
        c.frames.erase(c.frames.begin() + from);
        c.frames.insert(c.frames.begin() + Uniform(rng, 0, static_cast<int>(c.frames.size())), f);
        break;
      }
      case 10: {  // insert a random frame
        H2Frame f{static_cast<uint8_t>(Uniform(rng, 0, 10)),
                  static_cast<uint8_t>(Uniform(rng, 0, 255)),
                  static_cast<uint32_t>(Uniform(rng, 0, 7)), RandomBytes(rng, Uniform(rng, 0, 64))};
        c.frames.insert(c.frames.begin() + Uniform(rng, 0, static_cast<int>(c.frames.size())), f);
        break;
      }
      default: {  // cut or extend a payload (its header follows, so the frame stays framed)
        H2Frame& f = request_frame();
        if (Uniform(rng, 0, 1) && !f.payload.empty()) {
          f.payload.resize(Uniform(rng, 0, static_cast<int>(f.payload.size()) - 1));
        } else {
          f.payload += RandomBytes(rng, Uniform(rng, 1, 64));
        }
        break;
      }
    }
  }
  if (Uniform(rng, 0, 49) == 0) {
    c.preface[Uniform(rng, 0, static_cast<int>(c.preface.size()) - 1)] ^= 0x20;
  }
  std::string out = Serialize(c);
  if (Uniform(rng, 0, 9) == 0 && out.size() > 1) {
    out.resize(Uniform(rng, 1, static_cast<int>(out.size()) - 1));
  }
  return out;
}

std::string MutateBytes(const std::string& seed, std::mt19937_64& rng) {
  std::string s = seed;
  const int mutations = Uniform(rng, 1, 6);
  for (int m = 0; m < mutations; ++m) {
    if (s.empty()) s = RandomBytes(rng, Uniform(rng, 1, 16));
    const int at = Uniform(rng, 0, static_cast<int>(s.size()) - 1);
    const int len = std::min<int>(Uniform(rng, 1, 64), static_cast<int>(s.size()) - at);
    switch (Uniform(rng, 0, 6)) {
      case 0:
        s[at] ^= static_cast<char>(1 << Uniform(rng, 0, 7));
        break;
      case 1: {
        static constexpr char kSpecial[] = {'\r', '\n', ':', ' ', '\0', '"', '{', '%', '\xff'};
        s[at] = kSpecial[Uniform(rng, 0, sizeof kSpecial - 1)];
        break;
      }
      case 2:
        s.erase(at, len);
        break;
      case 3:
        s.insert(at, s.substr(at, len));
        break;
      case 4:
        s.replace(at, len, RandomBytes(rng, len));
        break;
      case 5: {  // the next number from `at` replaced
        const size_t d = s.find_first_of("0123456789", at);
        if (d == std::string::npos) break;
        const size_t e = s.find_first_not_of("0123456789", d);
        static constexpr const char* kNumbers[] = {
            "0", "-1", "4294967296", "99999999999999999999", "1e9", "007"};
        s.replace(d, (e == std::string::npos ? s.size() : e) - d,
                  kNumbers[Uniform(rng, 0, std::size(kNumbers) - 1)]);
        break;
      }
      default:
        s.resize(at);
        break;
    }
  }
  return s;
}

absl::StatusOr<std::unique_ptr<RecordingRelay>> RecordingRelay::Start(int target_port) {
  std::unique_ptr<RecordingRelay> r(new RecordingRelay());
  r->target_port_ = target_port;
  r->listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (r->listen_fd_ < 0 || bind(r->listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      listen(r->listen_fd_, 16) != 0 ||
      getsockname(r->listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    return absl::InternalError("the relay could not listen on a loopback port");
  }
  r->port_ = ntohs(a.sin_port);
  r->acceptor_ = std::thread([p = r.get()] { p->AcceptLoop(); });
  return r;
}

RecordingRelay::~RecordingRelay() { Stop(); }

void RecordingRelay::Stop() {
  if (stop_.exchange(true)) return;
  if (acceptor_.joinable()) acceptor_.join();
  if (listen_fd_ >= 0) close(listen_fd_);
  std::vector<std::thread> pumps;
  {
    std::lock_guard lock(mu_);
    pumps.swap(pumps_);
  }
  for (auto& t : pumps) t.join();
}

std::vector<std::string> RecordingRelay::Recorded() {
  std::lock_guard lock(mu_);
  return recorded_;
}

void RecordingRelay::AcceptLoop() {
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    const int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    SetSendTimeout(client);
    const int server = ConnectLoopback(target_port_);
    if (server < 0) {
      close(client);
      continue;
    }
    std::lock_guard lock(mu_);
    pumps_.emplace_back([this, client, server] { Pump(client, server); });
  }
}

void RecordingRelay::Pump(int client, int server) {
  std::string sent;
  bool client_open = true, server_open = true;
  char buf[16384];
  while (!stop_ && server_open) {
    // A closed client leaves the poll set (POLLHUP would otherwise wake it at once, forever).
    pollfd p[2] = {{client_open ? client : -1, POLLIN, 0}, {server, POLLIN, 0}};
    if (poll(p, 2, 50) <= 0) continue;
    if (client_open && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
      const ssize_t n = read(client, buf, sizeof buf);
      if (n <= 0) {
        client_open = false;
        shutdown(server, SHUT_WR);
      } else {
        sent.append(buf, n);
        if (send(server, buf, n, MSG_NOSIGNAL) != n) server_open = false;
      }
    }
    if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      const ssize_t n = read(server, buf, sizeof buf);
      if (n <= 0) {
        server_open = false;
      } else if (client_open) {
        send(client, buf, n, MSG_NOSIGNAL);
      }
    }
  }
  close(client);
  close(server);
  std::lock_guard lock(mu_);
  recorded_.push_back(std::move(sent));
}

RawExchange SendRaw(int port, std::string_view bytes, double timeout_s, double quiet_s,
                    bool half_close) {
  RawExchange out;
  const int fd = ConnectLoopback(port);
  if (fd < 0) return out;
  out.connected = true;
  // Send and read together: a server that answers (or stops reading) before the client is done
  // must not block the client's writes.
  using Clock = std::chrono::steady_clock;
  const auto end = Clock::now() + std::chrono::duration<double>(timeout_s);
  auto heard = Clock::now();
  bool writing = true, reading = true;
  char buf[16384];
  while (reading && Clock::now() < end) {
    if (!writing && !half_close && Clock::now() - heard > std::chrono::duration<double>(quiet_s)) {
      break;
    }
    if (writing && out.sent == bytes.size()) {
      writing = false;
      heard = Clock::now();
      if (half_close) shutdown(fd, SHUT_WR);
    }
    pollfd p{fd, static_cast<short>(POLLIN | (writing ? POLLOUT : 0)), 0};
    if (poll(&p, 1, 10) <= 0) continue;
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      const ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        out.received += n;
        heard = Clock::now();
      } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        reading = false;
        out.closed_by_server = true;
      }
    }
    if (writing && (p.revents & POLLOUT)) {
      const ssize_t n =
          send(fd, bytes.data() + out.sent, bytes.size() - out.sent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        out.sent += n;
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        writing = false;  // the server closed or reset: nothing more to send
      }
    }
  }
  close(fd);
  return out;
}

int OpenFds(int pid) {
  std::error_code ec;
  int n = 0;
  for (std::filesystem::directory_iterator it(absl::StrCat("/proc/", pid, "/fd"), ec), end;
       !ec && it != end; it.increment(ec)) {
    ++n;
  }
  return ec ? -1 : n;
}

int Threads(int pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    int n = 0;
    if (line.starts_with("Threads:") && absl::SimpleAtoi(line.substr(8), &n)) return n;
  }
  return -1;
}

}  // namespace eagle::testing
