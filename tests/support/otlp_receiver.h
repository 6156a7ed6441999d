// A double of an OTLP/gRPC trace receiver (the OpenTelemetry Collector's otlp receiver),
// built from the OTLP protobuf definitions Debian ships (libopentelemetry-proto-dev):
// opentelemetry.proto.collector.trace.v1.TraceService/Export on 127.0.0.1.
//
// As strict as the protocol (opentelemetry-proto's opentelemetry/proto/trace/v1/trace.proto
// and the OTLP specification, specification/protocol/otlp.md): a request holding a span
// whose trace_id is not 16 bytes or all zero, whose span_id is not 8 bytes or all zero,
// whose parent_span_id is neither empty nor 8 bytes, with an empty name, no start time, an
// end before its start, or an attribute key given twice, is refused INVALID_ARGUMENT ("not
// retryable" in the spec's words) and none of its spans are kept.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace grpc {
class Server;
}

namespace carapace::testing {

struct ReceivedSpan {
  std::string trace_id;        // hex
  std::string span_id;         // hex
  std::string parent_span_id;  // hex; empty for a root
  std::string name;
  int kind = 0;  // SpanKind: 1 internal, 2 server, 3 client
  uint64_t start_unix_nano = 0;
  uint64_t end_unix_nano = 0;
  nlohmann::json attributes = nlohmann::json::object();  // key -> string, number, bool or array
  int status_code = 0;  // 0 unset, 1 ok, 2 error
  std::string status_message;
  std::map<std::string, std::string> resource;  // the resource's string attributes
  std::string scope;                            // the instrumentation scope's name

  std::string Attr(const std::string& key) const;  // a string attribute, or "" when absent
  double DurationMs() const { return static_cast<double>(end_unix_nano - start_unix_nano) / 1e6; }
};

class OtlpReceiver {
 public:
  OtlpReceiver();
  ~OtlpReceiver();

  // 127.0.0.1 on `port`, or a free port when 0. False when it cannot listen.
  bool Start(int port = 0);
  void Stop();
  int port() const { return port_; }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }

  std::vector<ReceivedSpan> spans() const;
  std::vector<ReceivedSpan> SpansNamed(const std::string& prefix) const;  // name starts with prefix
  // Requests refused as malformed, with the reason (a test expects none).
  std::vector<std::string> refusals() const;
  size_t export_calls() const;
  // Waits (up to `timeout`) until `done(spans())` holds; returns whether it did.
  bool WaitFor(const std::function<bool(const std::vector<ReceivedSpan>&)>& done,
               std::chrono::milliseconds timeout = std::chrono::milliseconds(15000)) const;

  class Service;

 private:
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace carapace::testing
