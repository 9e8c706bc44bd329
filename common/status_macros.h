// RETURN_IF_ERROR / ASSIGN_OR_RETURN for absl::Status and absl::StatusOr.
// Debian's Abseil (20220623) predates absl/status/status_macros.h, so we define our own.
#ifndef EAGLE_COMMON_STATUS_MACROS_H_
#define EAGLE_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define EAGLE_CONCAT_INNER_(a, b) a##b
#define EAGLE_CONCAT_(a, b) EAGLE_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status); returns it from the enclosing function if not OK.
#define RETURN_IF_ERROR(expr)                      \
  do {                                             \
    ::absl::Status eagle_status_ = (expr);         \
    if (!eagle_status_.ok()) return eagle_status_; \
  } while (0)

// `ASSIGN_OR_RETURN(lhs, expr)`: evaluates `expr` (an absl::StatusOr<T>); on error returns its
// status, else assigns/moves the value into `lhs` (which may be a declaration: `auto x`).
#define ASSIGN_OR_RETURN(lhs, expr) \
  EAGLE_ASSIGN_OR_RETURN_IMPL_(EAGLE_CONCAT_(eagle_statusor_, __LINE__), lhs, expr)

#define EAGLE_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)  \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // EAGLE_COMMON_STATUS_MACROS_H_
