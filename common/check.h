// CHECK / DCHECK for invariants the code itself guarantees (never for request or file content).
// A failed check prints file:line and the condition, then aborts.
#ifndef EAGLE_COMMON_CHECK_H_
#define EAGLE_COMMON_CHECK_H_

#include <cstdio>
#include <cstdlib>

namespace eagle::internal {
[[noreturn]] inline void CheckFailed(const char* file, int line, const char* cond) {
  std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", file, line, cond);
  std::abort();
}
}  // namespace eagle::internal

#define EAGLE_CHECK(cond)                                                                        \
  do {                                                                                           \
    if (__builtin_expect(!(cond), 0)) ::eagle::internal::CheckFailed(__FILE__, __LINE__, #cond); \
  } while (0)

#ifdef NDEBUG
#define EAGLE_DCHECK(cond) \
  do {                     \
  } while (0)
#else
#define EAGLE_DCHECK(cond) EAGLE_CHECK(cond)
#endif

#endif  // EAGLE_COMMON_CHECK_H_
