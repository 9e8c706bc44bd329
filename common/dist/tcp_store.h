// The rendezvous of a tensor-parallel group: a small key-value store served over TCP by rank 0
// (HOST:PORT of --rendezvous), through which the ranks exchange what their collective library
// needs to connect (Gloo's pair addresses, NCCL's unique id). Every rank, rank 0 included, is a
// client; Get blocks until the key is set or the timeout passes.
//
// Wire format (all integers little-endian u32): a request is op ('S' or 'G'), key length, key,
// and for 'S' value length and value; 'S' is answered with one byte 0, 'G' with one byte (0 =
// found, 1 = not set within the timeout given in the request, in milliseconds) then value length
// and value.
#ifndef EAGLE_COMMON_DIST_TCP_STORE_H_
#define EAGLE_COMMON_DIST_TCP_STORE_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"

namespace eagle {

// "HOST:PORT" -> host and port (INVALID_ARGUMENT naming `flag` otherwise).
absl::Status ParseHostPort(const std::string& text, const std::string& flag, std::string* host,
                           int* port);

class TcpStoreServer {
 public:
  // Listens on host:port (port 0: a free port, see port()).
  static absl::StatusOr<std::unique_ptr<TcpStoreServer>> Start(const std::string& host, int port);
  ~TcpStoreServer();
  int port() const { return port_; }

 private:
  TcpStoreServer() = default;
  void AcceptLoop();
  void Serve(int fd);

  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::string> values_;  // guarded by mu_
  std::vector<std::thread> workers_;           // guarded by mu_
  std::vector<int> fds_;                       // guarded by mu_
};

class TcpStoreClient {
 public:
  // Connects to host:port, retrying until `timeout` (the server may start later than its
  // clients); UNAVAILABLE naming the address when it never answers.
  static absl::StatusOr<std::unique_ptr<TcpStoreClient>> Connect(const std::string& host, int port,
                                                                 std::chrono::milliseconds timeout);
  ~TcpStoreClient();
  absl::Status Set(const std::string& key, const std::string& value);
  // DEADLINE_EXCEEDED when the key is not set within `timeout`.
  absl::StatusOr<std::string> Get(const std::string& key, std::chrono::milliseconds timeout);
  // This end's address on the connection (numeric): the interface that reaches rank 0.
  std::string local_address() const;

 private:
  explicit TcpStoreClient(int fd) : fd_(fd) {}
  std::mutex mu_;  // one request at a time on the connection
  int fd_ = -1;
};

// One rank's side of a group's rendezvous: rank 0's server (the one it passes, started on a port
// it chose, or one started here on `address`) and every rank's client, connected within
// `timeout`. INVALID_ARGUMENT for a rank outside [0, world) or a bad or portless address.
struct Rendezvous {
  std::unique_ptr<TcpStoreServer> server;  // rank 0 only
  std::unique_ptr<TcpStoreClient> client;
};
absl::StatusOr<Rendezvous> JoinRendezvous(int rank, int world, const std::string& address,
                                          std::unique_ptr<TcpStoreServer> server,
                                          std::chrono::milliseconds timeout);

}  // namespace eagle

#endif  // EAGLE_COMMON_DIST_TCP_STORE_H_
