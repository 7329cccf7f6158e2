// Error-propagation helpers for absl::Status / absl::StatusOr (in the style of
// google/federated-compute fcp/base/monitoring.h).
#ifndef EDGEFL_COMMON_STATUS_MACROS_H_
#define EDGEFL_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define EDGEFL_CONCAT_INNER_(a, b) a##b
#define EDGEFL_CONCAT_(a, b) EDGEFL_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define RETURN_IF_ERROR(expr)                          \
  do {                                                 \
    ::absl::Status _edgefl_status = (expr);            \
    if (!_edgefl_status.ok()) return _edgefl_status;   \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, MakeX());` evaluates an absl::StatusOr<T>, returns its status when it
// is an error, and otherwise moves the value into `lhs`.
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(EDGEFL_CONCAT_(_edgefl_statusor_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                           \
  if (!tmp.ok()) return tmp.status();          \
  lhs = std::move(tmp).value()

#endif  // EDGEFL_COMMON_STATUS_MACROS_H_
