// Wall-clock timing helpers.
#ifndef EAGLE_COMMON_TIMING_H_
#define EAGLE_COMMON_TIMING_H_

#include <chrono>

namespace eagle {

using Clock = std::chrono::steady_clock;

// Seconds elapsed since `t`.
inline double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace eagle

#endif  // EAGLE_COMMON_TIMING_H_
