#include "tests/support/otlp_receiver.h"

#include <set>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <opentelemetry/proto/collector/trace/v1/trace_service.grpc.pb.h>

namespace carapace::testing {

namespace collector = opentelemetry::proto::collector::trace::v1;
namespace common = opentelemetry::proto::common::v1;
namespace tracepb = opentelemetry::proto::trace::v1;

namespace {

std::string Hex(const std::string& bytes) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0xf]);
  }
  return out;
}

bool AllZero(const std::string& bytes) { return bytes.find_first_not_of('\0') == std::string::npos; }

nlohmann::json Value(const common::AnyValue& v) {
  switch (v.value_case()) {
    case common::AnyValue::kStringValue: return v.string_value();
    case common::AnyValue::kBoolValue: return v.bool_value();
    case common::AnyValue::kIntValue: return v.int_value();
    case common::AnyValue::kDoubleValue: return v.double_value();
    case common::AnyValue::kArrayValue: {
      nlohmann::json a = nlohmann::json::array();
      for (const auto& e : v.array_value().values()) a.push_back(Value(e));
      return a;
    }
    default: return nullptr;
  }
}

// Why the OTLP spec would have a receiver refuse this span; empty when it is well formed.
std::string Malformed(const tracepb::Span& s) {
  if (s.trace_id().size() != 16 || AllZero(s.trace_id())) return "span \"" + s.name() + "\": trace_id must be 16 non-zero bytes";
  if (s.span_id().size() != 8 || AllZero(s.span_id())) return "span \"" + s.name() + "\": span_id must be 8 non-zero bytes";
  if (!s.parent_span_id().empty() && s.parent_span_id().size() != 8) return "span \"" + s.name() + "\": parent_span_id must be empty or 8 bytes";
  if (s.name().empty()) return "a span has an empty name";
  if (s.start_time_unix_nano() == 0) return "span \"" + s.name() + "\": no start time";
  if (s.end_time_unix_nano() < s.start_time_unix_nano()) return "span \"" + s.name() + "\": ends before it starts";
  std::set<std::string> keys;
  for (const auto& kv : s.attributes()) {
    if (!keys.insert(kv.key()).second) return "span \"" + s.name() + "\": attribute " + kv.key() + " given twice";
  }
  return "";
}

}  // namespace

std::string ReceivedSpan::Attr(const std::string& key) const {
  auto it = attributes.find(key);
  return it != attributes.end() && it->is_string() ? it->get<std::string>() : "";
}

class OtlpReceiver::Service final : public collector::TraceService::Service {
 public:
  grpc::Status Export(grpc::ServerContext*, const collector::ExportTraceServiceRequest* req,
                      collector::ExportTraceServiceResponse*) override {
    std::vector<ReceivedSpan> got;
    for (const auto& rs : req->resource_spans()) {
      std::map<std::string, std::string> resource;
      for (const auto& kv : rs.resource().attributes()) {
        if (kv.value().has_string_value()) resource[kv.key()] = kv.value().string_value();
      }
      for (const auto& ss : rs.scope_spans()) {
        for (const auto& s : ss.spans()) {
          if (std::string why = Malformed(s); !why.empty()) {
            std::lock_guard<std::mutex> lock(mu);
            ++calls;
            refusals.push_back(why);
            return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, why);
          }
          ReceivedSpan r;
          r.trace_id = Hex(s.trace_id());
          r.span_id = Hex(s.span_id());
          r.parent_span_id = Hex(s.parent_span_id());
          r.name = s.name();
          r.kind = s.kind();
          r.start_unix_nano = s.start_time_unix_nano();
          r.end_unix_nano = s.end_time_unix_nano();
          for (const auto& kv : s.attributes()) r.attributes[kv.key()] = Value(kv.value());
          r.status_code = s.status().code();
          r.status_message = s.status().message();
          r.resource = resource;
          r.scope = ss.scope().name();
          got.push_back(std::move(r));
        }
      }
    }
    std::lock_guard<std::mutex> lock(mu);
    ++calls;
    for (auto& r : got) spans.push_back(std::move(r));
    return grpc::Status::OK;
  }

  mutable std::mutex mu;
  std::vector<ReceivedSpan> spans;
  std::vector<std::string> refusals;
  size_t calls = 0;
};

OtlpReceiver::OtlpReceiver() : service_(std::make_unique<Service>()) {}

OtlpReceiver::~OtlpReceiver() { Stop(); }

bool OtlpReceiver::Start(int port) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:" + std::to_string(port), grpc::InsecureServerCredentials(), &port_);
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  return server_ != nullptr && port_ != 0;
}

void OtlpReceiver::Stop() {
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
  server_.reset();
}

std::vector<ReceivedSpan> OtlpReceiver::spans() const {
  std::lock_guard<std::mutex> lock(service_->mu);
  return service_->spans;
}

std::vector<ReceivedSpan> OtlpReceiver::SpansNamed(const std::string& prefix) const {
  std::vector<ReceivedSpan> out;
  for (auto& s : spans()) {
    if (s.name.rfind(prefix, 0) == 0) out.push_back(std::move(s));
  }
  return out;
}

std::vector<std::string> OtlpReceiver::refusals() const {
  std::lock_guard<std::mutex> lock(service_->mu);
  return service_->refusals;
}

size_t OtlpReceiver::export_calls() const {
  std::lock_guard<std::mutex> lock(service_->mu);
  return service_->calls;
}

bool OtlpReceiver::WaitFor(const std::function<bool(const std::vector<ReceivedSpan>&)>& done,
                           std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (done(spans())) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace carapace::testing
