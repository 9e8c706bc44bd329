// A tensor-parallel group as a program starts it from its flags:
//   --tp N                        this process is rank 0 and starts ranks 1..N-1 on this host
//   --rank R --world-size N --rendezvous HOST:PORT
//                                 this process is rank R of a group spread over hosts (rank 0
//                                 serves the rendezvous at HOST:PORT)
//   --tp-timeout S                the bound on joining and on every collective (the watchdog)
#ifndef EAGLE_COMMON_DIST_GROUP_H_
#define EAGLE_COMMON_DIST_GROUP_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dist/communicator.h"
#include "common/dist/local_ranks.h"

namespace eagle {

struct TensorParallelFlags {
  int tp = 1;                                    // --tp
  int rank = -1;                                 // --rank (-1: not given)
  int world_size = 0;                            // --world-size
  std::string rendezvous;                        // --rendezvous
  double timeout_s = 30;                         // --tp-timeout
  std::string world_size_flag = "--world-size";  // as the program spells it (LocalRanks)
};

struct TensorParallelGroup {
  std::shared_ptr<Communicator> comm;  // null: no tensor parallelism
  LocalRanks ranks;                    // the ranks rank 0 started (--tp)
};

// Checks the flags (INVALID_ARGUMENT naming the flag) and starts or joins the group. `args` is
// this program's command line, which --tp passes on to the ranks it starts.
absl::StatusOr<TensorParallelGroup> StartTensorParallel(const TensorParallelFlags& flags,
                                                        const std::vector<std::string>& args);

// FAILED_PRECONDITION unless every rank passes the same `fingerprint` (the same model at the
// same precision): ranks that loaded different files would otherwise compute garbage silently.
// Called right after loading: it first waits up to 10 minutes for every rank to get there.
absl::Status CheckSameModel(Communicator& comm, const std::string& fingerprint);

}  // namespace eagle

#endif  // EAGLE_COMMON_DIST_GROUP_H_
