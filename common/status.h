// Status and Result<T>: errors as values, used across every Carapace module.
// Nothing fallible returns void; exceptions never cross a module border.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace carapace {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,     // the caller's input is wrong: a manifest, a flag, a request
  kNotFound,            // a named thing does not exist
  kAlreadyExists,       // a thing that must be new is not
  kFailedPrecondition,  // the system is not in a state that allows the call
  kBusy,                // another process holds the resource (state dir lock)
  kCorruption,          // stored data is damaged or not ours; never silently reset
  kIoError,             // the OS failed a read or write
  kPermissionDenied,    // a guard refused the action (path escape, host not allowed)
  kDeadlineExceeded,    // a time limit ran out
  kUnavailable,         // a remote peer could not be reached; may succeed later
  kResourceExhausted,   // a size or count limit was hit
  kInternal,            // a bug: an invariant did not hold
  kAborted,             // an operation broke off part-way (a stream cut after data); redo it whole
  kVolumeFull,          // no room on the volume for a write: nothing was written; the same write may be tried again
};

// Returns the stable lower_snake name of a code ("invalid_argument").
const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "invalid_argument: spec.goal: must not be empty"; "ok" when ok.
  std::string ToString() const;

  // Returns a copy whose message is "context: message", keeping the code.
  Status WithContext(const std::string& context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status AlreadyExists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
inline Status FailedPrecondition(std::string m) { return {StatusCode::kFailedPrecondition, std::move(m)}; }
inline Status Busy(std::string m) { return {StatusCode::kBusy, std::move(m)}; }
inline Status Corruption(std::string m) { return {StatusCode::kCorruption, std::move(m)}; }
inline Status IoError(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
inline Status PermissionDenied(std::string m) { return {StatusCode::kPermissionDenied, std::move(m)}; }
inline Status DeadlineExceeded(std::string m) { return {StatusCode::kDeadlineExceeded, std::move(m)}; }
inline Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status ResourceExhausted(std::string m) { return {StatusCode::kResourceExhausted, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
inline Status Aborted(std::string m) { return {StatusCode::kAborted, std::move(m)}; }
inline Status VolumeFull(std::string m) { return {StatusCode::kVolumeFull, std::move(m)}; }

// Result<T> holds either a value or a non-ok Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT
    assert(!std::get<Status>(v_).ok() && "Result built from an ok Status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }

  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }

  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace carapace

// Returns early from a function returning Status or Result<T> when `expr` fails.
#define CARAPACE_RETURN_IF_ERROR(expr)        \
  do {                                        \
    ::carapace::Status _st = (expr);          \
    if (!_st.ok()) return _st;                \
  } while (0)

#define CARAPACE_CONCAT_INNER(a, b) a##b
#define CARAPACE_CONCAT(a, b) CARAPACE_CONCAT_INNER(a, b)
// `CARAPACE_ASSIGN_OR_RETURN(auto x, MakeX());` binds the value or returns the error.
#define CARAPACE_ASSIGN_OR_RETURN(lhs, expr) \
  CARAPACE_ASSIGN_OR_RETURN_IMPL(CARAPACE_CONCAT(_res_, __LINE__), lhs, expr)
#define CARAPACE_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) return tmp.status();                  \
  lhs = std::move(tmp).value()
