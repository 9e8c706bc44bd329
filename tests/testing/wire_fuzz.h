// Wire fuzzing of the services' data ports (test R16): real HTTP/2 connections captured through
// a recording relay, split into frames, mutated, and replayed over raw TCP.
#ifndef EAGLE_TESTS_TESTING_WIRE_FUZZ_H_
#define EAGLE_TESTS_TESTING_WIRE_FUZZ_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"

namespace eagle::testing {

// The 24 bytes every HTTP/2 client connection starts with (RFC 9113, 3.4).
inline constexpr std::string_view kHttp2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// One HTTP/2 frame: a 9-byte header (24-bit payload length, type, flags, reserved bit and
// 31-bit stream id) and its payload.
struct H2Frame {
  uint8_t type = 0;
  uint8_t flags = 0;
  uint32_t stream = 0;  // with the reserved bit, as sent
  std::string payload;
  // Added to the payload's length in the header when serialized: a frame that lies about its
  // length.
  int64_t length_delta = 0;
};

// What a client sent on one connection: the preface, then its frames.
struct H2Connection {
  std::string preface;
  std::vector<H2Frame> frames;
};

// Splits the bytes a client sent on one connection. An error if they do not start with the
// preface or a frame is cut short.
absl::StatusOr<H2Connection> SplitConnection(std::string_view bytes);
// The bytes again (SplitConnection's inverse when no length_delta is set).
std::string Serialize(const H2Connection& c);

// A copy of `seed` with 1 to 4 random mutations from `rng`: bytes flipped or set to 0x00 / 0xff
// in a payload, a frame's type, flags or stream id changed, a lying length, a frame duplicated,
// dropped, moved or inserted with random contents, a payload cut or extended, the preface
// damaged (rarely); and, applied to the bytes, a cut at a random point (sometimes).
std::string Mutate(const H2Connection& seed, std::mt19937_64& rng);

// A copy of `seed` (an HTTP/1.1 request, say) with 1 to 6 random byte-level mutations: bits
// flipped, bytes set to characters that matter to a parser (CR, LF, ':', ' ', NUL, '"', '{',
// '%', 0xff), a range deleted, duplicated or overwritten with random bytes, a number replaced
// (0, -1, huge, or many digits: Content-Length, max_tokens), and sometimes a cut.
std::string MutateBytes(const std::string& seed, std::mt19937_64& rng);

// Listens on a loopback port and forwards each accepted connection to `target_port`, recording
// the bytes the client sent. Stop() (or the destructor) closes everything.
class RecordingRelay {
 public:
  static absl::StatusOr<std::unique_ptr<RecordingRelay>> Start(int target_port);
  ~RecordingRelay();
  int port() const { return port_; }
  // The client bytes of every connection that has ended.
  std::vector<std::string> Recorded();
  void Stop();

 private:
  RecordingRelay() = default;
  void AcceptLoop();
  void Pump(int client, int server);

  int listen_fd_ = -1;
  int port_ = 0;
  int target_port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::thread> pumps_;
  std::vector<std::string> recorded_;
};

// What a raw exchange did.
struct RawExchange {
  bool connected = false;
  bool closed_by_server = false;
  size_t sent = 0;
  size_t received = 0;
};
// Sends `bytes` on a fresh TCP connection to 127.0.0.1:`port` and reads what comes back, then
// closes it. With `half_close`, the client's side is shut for writing once all is sent, and the
// read lasts until the server closes (gRPC then drops the whole transport at once, so a request
// rarely reaches its handler). Without, the connection stays open until the server closes it,
// `quiet_s` pass without a byte once all is sent, or `timeout_s` pass: a request that arrived
// whole runs.
RawExchange SendRaw(int port, std::string_view bytes, double timeout_s, double quiet_s,
                    bool half_close);

// Open file descriptors and threads of process `pid` (from /proc); -1 if it cannot be read.
int OpenFds(int pid);
int Threads(int pid);

}  // namespace eagle::testing

#endif  // EAGLE_TESTS_TESTING_WIRE_FUZZ_H_
