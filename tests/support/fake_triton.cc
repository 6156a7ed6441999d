// The Triton gRPC double.
#include "tests/support/fake_triton.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include "inference/grpc_service.grpc.pb.h"

namespace carapace::testing {

using inference::ModelInferRequest;
using inference::ModelInferResponse;

std::vector<float> FakeEmbedding(const std::string& text, int dimensions) {
  std::vector<float> v(static_cast<size_t>(dimensions));
  uint32_t h = 2166136261u;
  for (unsigned char c : text) h = (h ^ c) * 16777619u;
  for (int i = 0; i < dimensions; ++i) v[static_cast<size_t>(i)] = static_cast<float>((h >> (i % 24)) & 0xff) / 255.0f;
  return v;
}

class FakeTritonServer::Service final : public inference::GRPCInferenceService::Service {
 public:
  Service(std::string model, std::string embedder, int dims) : model_(std::move(model)), embedder_(std::move(embedder)), dims_(dims) {}

  grpc::Status ServerLive(grpc::ServerContext*, const inference::ServerLiveRequest*, inference::ServerLiveResponse* r) override {
    r->set_live(true);
    return grpc::Status::OK;
  }
  grpc::Status ServerReady(grpc::ServerContext*, const inference::ServerReadyRequest*, inference::ServerReadyResponse* r) override {
    std::lock_guard<std::mutex> lock(mu_);
    r->set_ready(ready_);
    return grpc::Status::OK;
  }
  grpc::Status ModelReady(grpc::ServerContext*, const inference::ModelReadyRequest* q, inference::ModelReadyResponse* r) override {
    std::lock_guard<std::mutex> lock(mu_);
    r->set_ready(ready_ && (q->name() == model_ || q->name() == embedder_));
    return grpc::Status::OK;
  }
  grpc::Status ModelConfig(grpc::ServerContext*, const inference::ModelConfigRequest* q,
                           inference::ModelConfigResponse* r) override {
    // What gRPC answers for a method the server does not have (KServe's v2 has no ModelConfig).
    if (kserve_) return {grpc::StatusCode::UNIMPLEMENTED, ""};
    if (q->name() != model_ && q->name() != embedder_) return {grpc::StatusCode::NOT_FOUND, "unknown model " + q->name()};
    auto* config = r->mutable_config();
    config->set_name(q->name());
    config->set_backend(q->name() == model_ ? "vllm" : "python");
    if (q->name() == model_) {
      for (const auto& [k, v] : config_parameters_) (*config->mutable_parameters())[k].set_string_value(v);
    }
    return grpc::Status::OK;
  }

  grpc::Status ModelMetadata(grpc::ServerContext*, const inference::ModelMetadataRequest* q,
                             inference::ModelMetadataResponse* r) override {
    if (q->name() != model_ && q->name() != embedder_) return {grpc::StatusCode::NOT_FOUND, "unknown model " + q->name()};
    r->set_name(q->name());
    r->set_platform("python");
    auto* in = r->add_inputs();
    in->set_name("text_input");
    in->set_datatype("BYTES");
    in->add_shape(1);
    auto* out = r->add_outputs();
    out->set_name(q->name() == model_ ? "text_output" : "embedding");
    out->set_datatype(q->name() == model_ ? "BYTES" : "FP32");
    out->add_shape(-1);
    if (q->name() == model_ && token_counts_) {
      for (const char* name : {"return_num_input_tokens", "return_num_output_tokens"}) {
        auto* ask = r->add_inputs();
        ask->set_name(name);
        ask->set_datatype("BOOL");
        ask->add_shape(1);
      }
      for (const char* name : {"num_input_tokens", "num_output_tokens"}) {
        auto* count = r->add_outputs();
        count->set_name(name);
        count->set_datatype("UINT32");
        count->add_shape(-1);
      }
    }
    if (q->name() == model_ && !output_length_.empty()) {
      auto* length = r->add_outputs();
      length->set_name(output_length_);
      length->set_datatype("UINT32");
      length->add_shape(-1);
    }
    if (q->name() == model_ && finish_reason_) {
      // As the vLLM backend's auto-completed config declares them (r24.12 on).
      auto* ask = r->add_inputs();
      ask->set_name("return_finish_reason");
      ask->set_datatype("BOOL");
      ask->add_shape(1);
      auto* reason = r->add_outputs();
      reason->set_name("finish_reason");
      reason->set_datatype("BYTES");
      reason->add_shape(-1);
    }
    return grpc::Status::OK;
  }

  // Triton refuses an input the model does not declare (core's InferenceRequest
  // normalisation: "unexpected inference input '<name>' for model '<model>'").
  std::string Undeclared(const FakeTritonRequest& seen) const {
    if (seen.return_finish_reason_sent && !finish_reason_) {
      return "[request id: <id_unknown>] unexpected inference input 'return_finish_reason' for model '" + model_ + "'";
    }
    if (seen.token_counts_sent && !token_counts_) {
      return "[request id: <id_unknown>] unexpected inference input 'return_num_input_tokens' for model '" + model_ + "'";
    }
    // And an output it does not declare (the same normalisation, for requested outputs).
    for (const auto& name : seen.outputs) {
      const bool declared = name == "text_output" || (finish_reason_ && name == "finish_reason") ||
                            (token_counts_ && (name == "num_input_tokens" || name == "num_output_tokens")) ||
                            (!output_length_.empty() && name == output_length_);
      if (!declared) return "[request id: <id_unknown>] unexpected inference output '" + name + "' for model '" + model_ + "'";
    }
    return "";
  }

  bool Asked(const FakeTritonRequest& seen, const std::string& output) const {
    return !output.empty() && std::find(seen.outputs.begin(), seen.outputs.end(), output) != seen.outputs.end();
  }

  // One BYTES element in raw form, as Triton sends them: a 4-byte little-endian length, then the bytes.
  static std::string RawBytes(const std::string& s) { return LittleEndian32(static_cast<uint32_t>(s.size())) + s; }

  // A UINT32 in raw form, as Triton lays out tensors: 4 bytes, little-endian.
  static std::string LittleEndian32(uint32_t n) {
    std::string raw(4, '\0');
    for (int i = 0; i < 4; ++i) raw[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
    return raw;
  }

  // A UINT32 output: raw little-endian in the stream (as Triton sends), typed in unary
  // answers (as KServe's Python servers send).
  static void AddCount(ModelInferResponse* r, const char* name, int64_t n, bool raw) {
    auto* o = r->add_outputs();
    o->set_name(name);
    o->set_datatype("UINT32");
    o->add_shape(1);
    if (!raw) {
      o->mutable_contents()->add_uint_contents(static_cast<uint32_t>(n));
      return;
    }
    r->add_raw_output_contents(LittleEndian32(static_cast<uint32_t>(n)));
  }

  static void AddFinishReason(ModelInferResponse* r, const std::string& reason) {
    auto* o = r->add_outputs();
    o->set_name("finish_reason");
    o->set_datatype("BYTES");
    o->add_shape(1);
    r->add_raw_output_contents(RawBytes(reason));
  }

  grpc::Status ModelInfer(grpc::ServerContext* ctx, const ModelInferRequest* q, ModelInferResponse* r) override {
    FakeTritonRequest seen = Record(*ctx, *q, false);
    if (q->model_name() == embedder_) {
      // FP32 output in raw form, as Triton sends it.
      r->set_model_name(embedder_);
      auto* o = r->add_outputs();
      o->set_name("embedding");
      o->set_datatype("FP32");
      o->add_shape(static_cast<int64_t>(seen.texts.size()));
      o->add_shape(dims_);
      std::string raw;
      for (const auto& t : seen.texts) {
        auto v = FakeEmbedding(t, dims_);
        raw.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
      }
      r->add_raw_output_contents(raw);
      return grpc::Status::OK;
    }
    if (q->model_name() != model_) return {grpc::StatusCode::NOT_FOUND, "unknown model " + q->model_name()};
    if (std::string refused = Undeclared(seen); !refused.empty()) return {grpc::StatusCode::INVALID_ARGUMENT, refused};
    FakeTritonReply reply;
    if (!Take(&reply)) return {grpc::StatusCode::FAILED_PRECONDITION, "the double has no scripted reply left"};
    if (reply.delay_ms) std::this_thread::sleep_for(std::chrono::milliseconds(reply.delay_ms));
    if (reply.fail_code) return {static_cast<grpc::StatusCode>(reply.fail_code), reply.fail_message};
    std::string text;
    for (const auto& c : reply.chunks) text += c;
    // Typed contents here (as KServe's Python servers send); raw in the stream (as Triton).
    auto* o = r->add_outputs();
    o->set_name("text_output");
    o->set_datatype("BYTES");
    o->add_shape(1);
    o->mutable_contents()->add_bytes_contents(text);
    if (seen.return_finish_reason) {
      auto* reason = r->add_outputs();
      reason->set_name("finish_reason");
      reason->set_datatype("BYTES");
      reason->add_shape(1);
      reason->mutable_contents()->add_bytes_contents(reply.finish_reason);
    }
    if (seen.return_num_input_tokens) AddCount(r, "num_input_tokens", FakeTritonServer::CountTokens(seen.prompt), false);
    if (seen.return_num_output_tokens) AddCount(r, "num_output_tokens", FakeTritonServer::CountTokens(text), false);
    if (Asked(seen, output_length_)) AddCount(r, output_length_.c_str(), FakeTritonServer::CountTokens(text), false);
    return grpc::Status::OK;
  }

  grpc::Status ModelStreamInfer(grpc::ServerContext* ctx,
                                grpc::ServerReaderWriter<inference::ModelStreamInferResponse, ModelInferRequest>* stream) override {
    ModelInferRequest q;
    while (stream->Read(&q)) {
      FakeTritonRequest seen = Record(*ctx, q, true);
      if (q.model_name() != model_) {
        inference::ModelStreamInferResponse r;
        r.set_error_message("unknown model " + q.model_name());
        stream->Write(r);
        continue;
      }
      if (std::string refused = Undeclared(seen); !refused.empty()) {
        inference::ModelStreamInferResponse r;
        r.set_error_message(refused);
        stream->Write(r);
        continue;
      }
      FakeTritonReply reply;
      if (!Take(&reply)) return {grpc::StatusCode::FAILED_PRECONDITION, "the double has no scripted reply left"};
      if (reply.delay_ms) std::this_thread::sleep_for(std::chrono::milliseconds(reply.delay_ms));
      if (reply.fail_code) return {static_cast<grpc::StatusCode>(reply.fail_code), reply.fail_message};
      int sent = 0;
      for (const auto& chunk : reply.chunks) {
        if (reply.cut_after >= 0 && sent == reply.cut_after) break;
        if (sent > 0 && reply.chunk_delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(reply.chunk_delay_ms));
        inference::ModelStreamInferResponse r;
        auto* o = r.mutable_infer_response()->add_outputs();
        o->set_name("text_output");
        o->set_datatype("BYTES");
        o->add_shape(1);
        r.mutable_infer_response()->add_raw_output_contents(RawBytes(chunk));
        if (seen.return_finish_reason) {
          const bool last = sent + 1 == static_cast<int>(reply.chunks.size());
          AddFinishReason(r.mutable_infer_response(), last ? reply.finish_reason : "None");
        }
        if (seen.return_num_input_tokens) {
          AddCount(r.mutable_infer_response(), "num_input_tokens", FakeTritonServer::CountTokens(seen.prompt), true);
        }
        if (seen.return_num_output_tokens) {
          AddCount(r.mutable_infer_response(), "num_output_tokens", FakeTritonServer::CountTokens(chunk), true);
        }
        if (Asked(seen, output_length_)) {
          AddCount(r.mutable_infer_response(), output_length_.c_str(), FakeTritonServer::CountTokens(chunk), true);
        }
        (*r.mutable_infer_response()->mutable_parameters())["triton_final_response"].set_bool_param(false);
        if (!stream->Write(r)) return grpc::Status::CANCELLED;
        ++sent;
      }
      if (reply.cut_after >= 0) return {grpc::StatusCode::UNAVAILABLE, "the double broke the stream"};
      if (!reply.stream_error.empty()) {
        inference::ModelStreamInferResponse r;
        r.set_error_message(reply.stream_error);
        stream->Write(r);
        continue;
      }
      if (reply.no_final) return grpc::Status::OK;
      if (seen.empty_final) {
        inference::ModelStreamInferResponse r;
        (*r.mutable_infer_response()->mutable_parameters())["triton_final_response"].set_bool_param(true);
        stream->Write(r);
      }
    }
    return grpc::Status::OK;
  }

  bool Take(FakeTritonReply* reply) {
    std::lock_guard<std::mutex> lock(mu_);
    if (replies_.empty()) return false;
    *reply = std::move(replies_.front());
    replies_.pop_front();
    return true;
  }

  FakeTritonRequest Record(const grpc::ServerContext& ctx, const ModelInferRequest& q, bool streaming) {
    FakeTritonRequest seen;
    seen.model = q.model_name();
    seen.streaming_rpc = streaming;
    auto auth = ctx.client_metadata().find("authorization");
    if (auth != ctx.client_metadata().end()) seen.authorization = std::string(auth->second.data(), auth->second.size());
    auto trace = ctx.client_metadata().find("traceparent");
    if (trace != ctx.client_metadata().end()) seen.traceparent = std::string(trace->second.data(), trace->second.size());
    auto p = q.parameters().find("triton_enable_empty_final_response");
    seen.empty_final = p != q.parameters().end() && p->second.bool_param();
    for (const auto& out : q.outputs()) seen.outputs.push_back(out.name());
    for (const auto& in : q.inputs()) {
      const auto& c = in.contents();
      if (in.name() == "text_input") {
        for (const auto& b : c.bytes_contents()) seen.texts.push_back(b);
        if (!seen.texts.empty()) seen.prompt = seen.texts.front();
      } else if (in.name() == "stream" && c.bool_contents_size() > 0) {
        seen.stream = c.bool_contents(0);
      } else if (in.name() == "return_finish_reason") {
        seen.return_finish_reason_sent = true;
        seen.return_finish_reason = c.bool_contents_size() > 0 && c.bool_contents(0);
      } else if (in.name() == "return_num_input_tokens" || in.name() == "return_num_output_tokens") {
        seen.token_counts_sent = true;
        const bool asked = c.bool_contents_size() > 0 && c.bool_contents(0);
        (in.name() == "return_num_input_tokens" ? seen.return_num_input_tokens : seen.return_num_output_tokens) = asked;
      } else if (in.name() == "sampling_parameters" && c.bytes_contents_size() > 0) {
        seen.sampling = nlohmann::json::parse(c.bytes_contents(0), nullptr, false);
      } else if (c.int_contents_size() > 0) {
        seen.sampling[in.name()] = c.int_contents(0);
      } else if (c.fp32_contents_size() > 0) {
        seen.sampling[in.name()] = c.fp32_contents(0);
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    requests_.push_back(seen);
    return seen;
  }

  std::string model_, embedder_;
  int dims_;
  bool finish_reason_ = false;  // set before the server starts (DeclareFinishReason)
  bool token_counts_ = false;   // set before the server starts (DeclareTokenCounts)
  std::map<std::string, std::string> config_parameters_;  // set before the server starts
  bool kserve_ = false;
  std::string output_length_;  // set before the server starts (DeclareOutputLength)
  mutable std::mutex mu_;
  std::deque<FakeTritonReply> replies_;
  std::vector<FakeTritonRequest> requests_;
  bool ready_ = true;
};

FakeTritonServer::FakeTritonServer(std::string model, std::string embedder, int dimensions)
    : service_(std::make_unique<Service>(std::move(model), std::move(embedder), dimensions)) {}

FakeTritonServer::~FakeTritonServer() { Stop(); }

bool FakeTritonServer::Start(const FakeTritonTls* tls) {
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (tls) {
    grpc::SslServerCredentialsOptions ssl(tls->client_ca_pem.empty()
                                              ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                              : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    ssl.pem_root_certs = tls->client_ca_pem;
    ssl.pem_key_cert_pairs.push_back({tls->key_pem, tls->cert_pem});
    creds = grpc::SslServerCredentials(ssl);
  }
  service_->finish_reason_ = declare_finish_reason_;
  service_->token_counts_ = declare_token_counts_;
  service_->config_parameters_ = config_parameters_;
  service_->kserve_ = kserve_;
  service_->output_length_ = output_length_;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", creds, &port_);
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  return server_ != nullptr && port_ > 0;
}

void FakeTritonServer::Stop() {
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_.reset();
  }
}

void FakeTritonServer::Push(FakeTritonReply reply) {
  std::lock_guard<std::mutex> lock(service_->mu_);
  service_->replies_.push_back(std::move(reply));
}

size_t FakeTritonServer::pending() const {
  std::lock_guard<std::mutex> lock(service_->mu_);
  return service_->replies_.size();
}

std::vector<FakeTritonRequest> FakeTritonServer::requests() const {
  std::lock_guard<std::mutex> lock(service_->mu_);
  return service_->requests_;
}

void FakeTritonServer::set_ready(bool ready) {
  std::lock_guard<std::mutex> lock(service_->mu_);
  service_->ready_ = ready;
}

}  // namespace carapace::testing
