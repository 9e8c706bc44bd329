// Names the calling thread (as top -H, ps -L and /proc/PID/task/*/comm show it): at most 15
// characters are kept, as Linux allows.
#ifndef EAGLE_COMMON_THREAD_NAME_H_
#define EAGLE_COMMON_THREAD_NAME_H_

#include <pthread.h>

#include <string>

namespace eagle {

inline void NameThisThread(const std::string& name) {
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

}  // namespace eagle

#endif  // EAGLE_COMMON_THREAD_NAME_H_
