// The ranks of a tensor-parallel group on this host, started by rank 0 (`--tp N`) as copies of
// its own program: the same arguments with `--tp N` replaced by `--rank R --world-size N
// --rendezvous HOST:PORT`. A rank dies with the process that started it (PR_SET_PDEATHSIG), so
// none is left behind when rank 0 is killed; rank 0 kills and reaps the others when it ends
// early.
#ifndef EAGLE_COMMON_DIST_LOCAL_RANKS_H_
#define EAGLE_COMMON_DIST_LOCAL_RANKS_H_

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace eagle {

class LocalRanks {
 public:
  // Starts ranks 1..world-1 running `args` (args[0] the program; "--tp" and its value removed)
  // plus the rank flags; their standard output goes to /dev/null (rank 0 answers), their
  // standard error is this process's.
  // `world_size_flag`: how the program spells its world-size flag ("--world-size" for
  // eagle-cli, "--world_size" for the services' Abseil flags).
  static absl::StatusOr<LocalRanks> Start(const std::vector<std::string>& args, int world,
                                          const std::string& rendezvous,
                                          const std::string& world_size_flag = "--world-size");
  LocalRanks() = default;
  LocalRanks(LocalRanks&& other) noexcept : pids_(std::move(other.pids_)) { other.pids_.clear(); }
  LocalRanks& operator=(LocalRanks&& other) noexcept;
  ~LocalRanks();  // kills and reaps the ranks still running

  // Waits up to `timeout` for every rank to exit; OK when all exited with status 0, else
  // INTERNAL naming the first rank that failed (or DEADLINE_EXCEEDED, after killing the rest).
  absl::Status Wait(std::chrono::milliseconds timeout);
  void KillAll();
  const std::vector<pid_t>& pids() const { return pids_; }

 private:
  std::vector<pid_t> pids_;  // rank r + 1 at index r; -1 once reaped
};

// `args` without the flag `name` and its value ("--tp 2" or "--tp=2").
std::vector<std::string> WithoutFlag(const std::vector<std::string>& args, const std::string& name);

}  // namespace eagle

#endif  // EAGLE_COMMON_DIST_LOCAL_RANKS_H_
