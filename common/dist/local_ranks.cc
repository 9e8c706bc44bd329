#include "common/dist/local_ranks.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"

namespace eagle {

std::vector<std::string> WithoutFlag(const std::vector<std::string>& args,
                                     const std::string& name) {
  std::vector<std::string> out;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == name) {
      ++i;  // and its value
      continue;
    }
    if (args[i].rfind(name + "=", 0) == 0) continue;
    out.push_back(args[i]);
  }
  return out;
}

absl::StatusOr<LocalRanks> LocalRanks::Start(const std::vector<std::string>& args, int world,
                                             const std::string& rendezvous,
                                             const std::string& world_size_flag) {
  LocalRanks ranks;
  const pid_t parent = ::getpid();
  for (int r = 1; r < world; ++r) {
    std::vector<std::string> a = args;
    for (const std::string& extra :
         {std::string("--rank"), std::to_string(r), world_size_flag, std::to_string(world),
          std::string("--rendezvous"), rendezvous}) {
      a.push_back(extra);
    }
    std::vector<char*> argv;
    for (std::string& s : a) argv.push_back(s.data());
    argv.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) {
      return absl::InternalError(absl::StrCat("fork for rank ", r, ": ", std::strerror(errno)));
    }
    if (pid == 0) {
      // The child: only async-signal-safe calls until exec.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);  // the parent died before prctl
      const int devnull = ::open("/dev/null", O_WRONLY | O_CLOEXEC);  // dup2's copy stays
      if (devnull >= 0) ::dup2(devnull, STDOUT_FILENO);
      ::execv("/proc/self/exe", argv.data());
      ::_exit(127);
    }
    ranks.pids_.push_back(pid);
  }
  return ranks;
}

LocalRanks& LocalRanks::operator=(LocalRanks&& other) noexcept {
  if (this != &other) {
    KillAll();
    pids_ = std::move(other.pids_);
    other.pids_.clear();
  }
  return *this;
}

LocalRanks::~LocalRanks() { KillAll(); }

void LocalRanks::KillAll() {
  for (pid_t& pid : pids_) {
    if (pid <= 0) continue;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    pid = -1;
  }
}

absl::Status LocalRanks::Wait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  absl::Status first;
  for (;;) {
    bool running = false;
    for (size_t i = 0; i < pids_.size(); ++i) {
      if (pids_[i] <= 0) continue;
      int status = 0;
      const pid_t got = ::waitpid(pids_[i], &status, WNOHANG);
      if (got == 0) {
        running = true;
        continue;
      }
      pids_[i] = -1;
      const bool ok = got > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
      if (!ok && first.ok()) {
        first = absl::InternalError(got > 0 && WIFSIGNALED(status)
                                        ? absl::StrCat("tensor-parallel rank ", i + 1,
                                                       " was killed by signal ", WTERMSIG(status))
                                        : absl::StrCat("tensor-parallel rank ", i + 1,
                                                       " exited with status ",
                                                       got > 0 ? WEXITSTATUS(status) : -1));
      }
    }
    if (!running) return first;
    if (std::chrono::steady_clock::now() >= deadline) {
      KillAll();
      return first.ok() ? absl::DeadlineExceededError(
                              absl::StrCat("tensor-parallel ranks still running after ",
                                           timeout.count() / 1000.0, " s; killed"))
                        : first;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace eagle
