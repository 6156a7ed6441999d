// Triton / KServe v2 gRPC client for chat and embeddings.
#include "worker/model/triton_backend.h"

#include <chrono>
#include <cstring>
#include <mutex>
#include <optional>
#include <tuple>

#include <grpcpp/client_context.h>

#include "inference/grpc_service.grpc.pb.h"
#include "worker/model/grpc_channels.h"
#include "worker/model/model_families.h"
#include "worker/model/reasoning_filter.h"
#include "worker/model/reply_parser.h"
#include "worker/model/triton_outputs.h"
#include "worker/tools/header_values.h"

namespace carapace {

namespace {

using inference::GRPCInferenceService;
using inference::ModelInferRequest;
using inference::ModelInferResponse;

class TritonBackend : public ModelBackend {
 public:
  TritonBackend(ModelEndpointSpec spec, ChatTemplate chat_template, std::shared_ptr<grpc::Channel> channel,
                std::string token, int64_t dimensions)
      : spec_(std::move(spec)),
        template_(std::move(chat_template)),
        channel_(std::move(channel)),
        stub_(GRPCInferenceService::NewStub(channel_)),
        token_(std::move(token)),
        dimensions_(dimensions) {}

  Status Chat(const ModelRequest& request, ChatStream* out) override {
    static const std::vector<Message> kNone;
    Result<std::string> rendered = RenderPrompt(template_, request.messages ? *request.messages : kNone, request.tools);
    // A template that refuses the conversation refuses it on every endpoint and every try.
    if (!rendered.ok()) {
      return InvalidArgument(spec_.Describe() + ": the chat template refused the conversation: " + rendered.status().message());
    }
    const std::string& prompt = *rendered;
    const AdditionalOutputs declared = DeclaredOutputs();
    ModelInferRequest infer = BuildChatRequest(prompt, declared);
    ReplyParser parser(template_.tool_call_format, template_.stop, request.tools);
    ReasoningFilter reasoning(template_.reasoning_open, template_.reasoning_close);
    size_t generated = 0;  // bytes, for the usage estimate
    std::string finish_reason;  // the server's, when it sends one
    std::optional<uint64_t> input_tokens, output_tokens;  // the server's counts, when it sends them
    auto take = [&](const ModelInferResponse& response) {
      const TritonTensorNames& n = spec_.triton.tensors;
      if (auto text = OutputText(response, n.text_output)) {
        if (!text->empty()) out->Generating();
        generated += text->size();
        parser.Feed(reasoning.Feed(*text), out);
      }
      if (auto reason = OutputText(response, n.finish_reason); reason && *reason != "None" && !reason->empty()) {
        finish_reason = *reason;
      }
      if (auto count = OutputUint(response, n.num_input_tokens)) input_tokens = count;
      if (auto count = OutputUint(response, n.num_output_tokens)) output_tokens = output_tokens.value_or(0) + *count;
    };
    grpc::ClientContext ctx;
    Prepare(&ctx);
    if (!request.traceparent.empty()) ctx.AddMetadata("traceparent", request.traceparent);
    const std::string what = spec_.Describe();
    if (!spec_.triton.stream) {
      ModelInferResponse response;
      grpc::Status s = stub_->ModelInfer(&ctx, infer, &response);
      if (!s.ok()) return FromGrpcStatus(s, what);
      if (!OutputText(response, spec_.triton.tensors.text_output)) {
        return InvalidArgument(what + ": the response has no output \"" + spec_.triton.tensors.text_output + "\"");
      }
      take(response);
    } else {
      auto stream = stub_->ModelStreamInfer(&ctx);
      if (!stream->Write(infer)) return StreamFailed(stream->Finish(), *out, what);
      stream->WritesDone();
      inference::ModelStreamInferResponse response;
      bool final_seen = false;
      while (!final_seen && stream->Read(&response)) {
        if (!response.error_message().empty()) {
          // Triton reports refused requests here (unknown model, bad shape, prompt too
          // long): asking again would get the same answer.
          ctx.TryCancel();
          return AfterStart(*out, InvalidArgument(what + ": the server refused the request: " + response.error_message()));
        }
        take(response.infer_response());
        final_seen = IsFinal(response.infer_response());
      }
      if (final_seen) ctx.TryCancel();  // the server may keep the stream open for more requests
      grpc::Status s = stream->Finish();
      // We asked for an empty final response: a stream that ends without one was cut.
      if (!final_seen) return StreamFailed(s, *out, what);
    }
    parser.Feed(reasoning.End(), out);
    parser.End(out);
    // The server's counts when it sends them (the vLLM backend, asked); otherwise estimated,
    // so the token budget still holds.
    out->Usage(input_tokens ? static_cast<int64_t>(*input_tokens) : EstimateTokens(prompt.size()),
               output_tokens ? static_cast<int64_t>(*output_tokens) : EstimateTokens(generated),
               !input_tokens || !output_tokens);
    // "length" tells the runtime the reply was cut short (it is then not an answer). A server
    // that sends counts but no reason (TensorRT-LLM with an output-length tensor named in
    // tensors.numOutputTokens) cut the reply short when it used every token it was allowed.
    const bool used_every_token = finish_reason.empty() && output_tokens &&
                                  static_cast<int64_t>(*output_tokens) >= spec_.max_tokens.value_or(1024);
    if (finish_reason == "length" || used_every_token) out->Finish("length");
    else out->Finish(!out->response().tool_calls.empty() ? "tool_calls" : "stop");
    return Status::Ok();
  }

  Result<std::vector<std::vector<float>>> Embed(const std::vector<std::string>& texts) override {
    ModelInferRequest infer;
    infer.set_model_name(spec_.name);
    auto* input = infer.add_inputs();
    input->set_name(spec_.triton.tensors.text_input);
    input->set_datatype("BYTES");
    input->add_shape(static_cast<int64_t>(texts.size()));
    input->add_shape(1);
    for (const auto& t : texts) input->mutable_contents()->add_bytes_contents(t);
    infer.add_outputs()->set_name(spec_.triton.tensors.embedding);
    grpc::ClientContext ctx;
    Prepare(&ctx);
    ModelInferResponse response;
    const std::string what = spec_.Describe();
    grpc::Status s = stub_->ModelInfer(&ctx, infer, &response);
    if (!s.ok()) return FromGrpcStatus(s, what);
    for (int i = 0; i < response.outputs_size(); ++i) {
      const auto& o = response.outputs(i);
      if (o.name() != spec_.triton.tensors.embedding) continue;
      if (o.datatype() != "FP32") return InvalidArgument(what + ": output \"" + o.name() + "\" is " + o.datatype() + ", not FP32");
      std::vector<float> flat;
      if (i < response.raw_output_contents_size()) {
        const std::string& raw = response.raw_output_contents(i);
        flat.resize(raw.size() / 4);
        if (!flat.empty()) std::memcpy(flat.data(), raw.data(), flat.size() * 4);  // little-endian, as our hosts
      } else {
        flat.assign(o.contents().fp32_contents().begin(), o.contents().fp32_contents().end());
      }
      const size_t dims = static_cast<size_t>(dimensions_);
      if (flat.size() != texts.size() * dims) {
        return FailedPrecondition(what + ": returned " + std::to_string(flat.size()) + " values for " +
                                  std::to_string(texts.size()) + " texts; spec.embedding.dimensions is " +
                                  std::to_string(dimensions_));
      }
      std::vector<std::vector<float>> out;
      for (size_t t = 0; t < texts.size(); ++t) out.emplace_back(flat.begin() + t * dims, flat.begin() + (t + 1) * dims);
      return out;
    }
    return InvalidArgument(what + ": the response has no output \"" + spec_.triton.tensors.embedding + "\"");
  }

  Status CheckHealth() override {
    const std::string what = spec_.Describe();
    {
      grpc::ClientContext ctx;
      Prepare(&ctx, std::chrono::seconds(2));
      inference::ServerReadyResponse r;
      grpc::Status s = stub_->ServerReady(&ctx, inference::ServerReadyRequest(), &r);
      if (!s.ok()) return FromGrpcStatus(s, what + " ServerReady");
      if (!r.ready()) return Unavailable(what + ": the server is not ready");
    }
    grpc::ClientContext ctx;
    Prepare(&ctx, std::chrono::seconds(2));
    inference::ModelReadyRequest req;
    req.set_name(spec_.name);
    inference::ModelReadyResponse r;
    grpc::Status s = stub_->ModelReady(&ctx, req, &r);
    if (!s.ok()) return FromGrpcStatus(s, what + " ModelReady");
    if (!r.ready()) return Unavailable(what + ": model " + spec_.name + " is not ready");
    LearnContextWindow();
    return Status::Ok();
  }

  std::optional<int64_t> ContextWindow() override {
    std::lock_guard<std::mutex> lock(metadata_mu_);
    return context_window_;
  }

 private:
  void Prepare(grpc::ClientContext* ctx, std::chrono::seconds timeout = std::chrono::seconds(0)) const {
    if (timeout.count() == 0) timeout = std::chrono::seconds(spec_.timeout_seconds);
    ctx->set_deadline(std::chrono::system_clock::now() + timeout);
    if (!token_.empty()) ctx->AddMetadata("authorization", "Bearer " + token_);
  }

  static Status StreamFailed(const grpc::Status& s, const ChatStream& out, const std::string& what) {
    return AfterStart(out, FromGrpcStatus(s.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                                                "the stream ended without a final response")
                                                 : s,
                                          what));
  }

  static void AddScalar(ModelInferRequest* r, const std::string& name, const char* type, bool batched,
                        const std::function<void(inference::InferTensorContents*)>& set) {
    auto* t = r->add_inputs();
    t->set_name(name);
    t->set_datatype(type);
    if (batched) t->add_shape(1);
    t->add_shape(1);
    set(t->mutable_contents());
  }

  // The window a Triton model's config names in its parameters (config.pbtxt `parameters`),
  // asked of ModelConfig until it answers. No standard key exists: these are what the LLM
  // backends call it (vLLM's engine argument; TensorRT-LLM's engine build option, prompt and
  // reply together). A KServe server without ModelConfig (UNIMPLEMENTED), or a config that
  // names none, leaves the window to the spec or the default (docs/context.md).
  void LearnContextWindow() {
    {
      std::lock_guard<std::mutex> lock(metadata_mu_);
      if (config_read_) return;
    }
    grpc::ClientContext ctx;
    Prepare(&ctx, std::chrono::seconds(2));
    inference::ModelConfigRequest req;
    req.set_name(spec_.name);
    inference::ModelConfigResponse r;
    grpc::Status s = stub_->ModelConfig(&ctx, req, &r);
    if (!s.ok() && s.error_code() != grpc::StatusCode::UNIMPLEMENTED) return;  // asked again at the next check
    std::optional<int64_t> window;
    for (const char* key : {"max_model_len", "max_seq_len", "max_sequence_length", "context_length"}) {
      auto p = r.config().parameters().find(key);
      if (window || p == r.config().parameters().end()) continue;
      const std::string& v = p->second.string_value();
      char* end = nullptr;
      const long long n = std::strtoll(v.c_str(), &end, 10);
      if (!v.empty() && end != nullptr && *end == '\0' && n >= 256 && n <= (1 << 24)) window = n;
    }
    std::lock_guard<std::mutex> lock(metadata_mu_);
    config_read_ = true;
    context_window_ = window;
  }

  // Which of the vLLM backend's additional outputs the model's config declares (the inputs
  // that ask for them), asked once of ModelMetadata (a failed look-up is asked again next
  // time, and meanwhile counts as none): Triton refuses an input a model does not declare.
  struct AdditionalOutputs {
    bool finish_reason = false;
    bool num_input_tokens = false;
    bool num_output_tokens = false;
    std::vector<std::string> outputs;  // every output the model declares
  };
  AdditionalOutputs DeclaredOutputs() {
    std::lock_guard<std::mutex> lock(metadata_mu_);
    if (declared_outputs_) return *declared_outputs_;
    grpc::ClientContext ctx;
    Prepare(&ctx, std::chrono::seconds(5));
    inference::ModelMetadataRequest req;
    req.set_name(spec_.name);
    inference::ModelMetadataResponse r;
    if (!stub_->ModelMetadata(&ctx, req, &r).ok()) return {};
    AdditionalOutputs declared;
    const TritonTensorNames& n = spec_.triton.tensors;
    for (const auto& in : r.inputs()) {
      declared.finish_reason = declared.finish_reason || in.name() == n.return_finish_reason;
      declared.num_input_tokens = declared.num_input_tokens || in.name() == n.return_num_input_tokens;
      declared.num_output_tokens = declared.num_output_tokens || in.name() == n.return_num_output_tokens;
    }
    // A model may send an output with no input to ask for it (TensorRT-LLM's, named in
    // tensors): it is asked for by name.
    for (const auto& o : r.outputs()) declared.outputs.push_back(o.name());
    declared_outputs_ = declared;
    return declared;
  }

  ModelInferRequest BuildChatRequest(const std::string& prompt, const AdditionalOutputs& declared) const {
    const TritonTensorNames& n = spec_.triton.tensors;
    // The TensorRT-LLM ensemble is a batching model ([batch, 1] tensors); the vLLM backend
    // model takes [1].
    const bool trt = spec_.triton.preset == "tensorrtllm";
    ModelInferRequest r;
    r.set_model_name(spec_.name);
    AddScalar(&r, n.text_input, "BYTES", trt, [&](auto* c) { c->add_bytes_contents(prompt); });
    AddScalar(&r, n.stream, "BOOL", trt, [&](auto* c) { c->add_bool_contents(spec_.triton.stream); });
    AddScalar(&r, n.exclude_input_in_output, "BOOL", trt, [&](auto* c) { c->add_bool_contents(true); });
    if (trt) {
      AddScalar(&r, n.max_tokens, "INT32", trt,
                [&](auto* c) { c->add_int_contents(static_cast<int32_t>(spec_.max_tokens.value_or(1024))); });
      if (spec_.temperature) AddScalar(&r, n.temperature, "FP32", trt, [&](auto* c) { c->add_fp32_contents(static_cast<float>(*spec_.temperature)); });
      if (spec_.top_p) AddScalar(&r, n.top_p, "FP32", trt, [&](auto* c) { c->add_fp32_contents(static_cast<float>(*spec_.top_p)); });
      // The template's end-of-turn strings, so generation stops there and not at max_tokens.
      auto* stop = r.add_inputs();
      stop->set_name(n.stop_words);
      stop->set_datatype("BYTES");
      stop->add_shape(1);
      stop->add_shape(static_cast<int64_t>(template_.stop.size()));
      for (const auto& s : template_.stop) stop->mutable_contents()->add_bytes_contents(s);
    } else {
      nlohmann::json sampling = {{"max_tokens", spec_.max_tokens.value_or(1024)}, {"stop", template_.stop}};
      // The tool-call markers of some families are special tokens, which vLLM leaves out of
      // the text by default: the calls would never be seen.
      if (template_.keep_special_tokens) sampling["skip_special_tokens"] = false;
      if (spec_.temperature) sampling["temperature"] = *spec_.temperature;
      if (spec_.top_p) sampling["top_p"] = *spec_.top_p;
      AddScalar(&r, n.sampling_parameters, "BYTES", trt, [&](auto* c) { c->add_bytes_contents(sampling.dump()); });
    }
    r.add_outputs()->set_name(n.text_output);
    for (auto [wanted, ask, output] : {std::tuple{declared.finish_reason, &n.return_finish_reason, &n.finish_reason},
                                        std::tuple{declared.num_input_tokens, &n.return_num_input_tokens, &n.num_input_tokens},
                                        std::tuple{declared.num_output_tokens, &n.return_num_output_tokens, &n.num_output_tokens}}) {
      const bool declared_output = std::find(declared.outputs.begin(), declared.outputs.end(), *output) != declared.outputs.end();
      if (wanted) AddScalar(&r, *ask, "BOOL", trt, [&](auto* c) { c->add_bool_contents(true); });
      if (wanted || declared_output) r.add_outputs()->set_name(*output);
    }
    if (spec_.triton.stream) (*r.mutable_parameters())["triton_enable_empty_final_response"].set_bool_param(true);
    return r;
  }

  ModelEndpointSpec spec_;
  ChatTemplate template_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<GRPCInferenceService::Stub> stub_;
  std::string token_;
  int64_t dimensions_;
  std::mutex metadata_mu_;
  std::optional<AdditionalOutputs> declared_outputs_;
  bool config_read_ = false;                // ModelConfig answered (or is not offered)
  std::optional<int64_t> context_window_;  // what its parameters named
};

}  // namespace

Result<std::unique_ptr<ModelBackend>> CreateTritonBackend(const BackendContext& context) {
  const ModelEndpointSpec& spec = context.endpoint;
  Result<ChatTemplate> chat_template = ChatTemplateFor(spec.triton);
  if (!chat_template.ok()) return chat_template.status();
  CARAPACE_ASSIGN_OR_RETURN(auto channel, ModelChannel(spec.endpoint, spec.tls));
  std::string token;
  if (spec.api_key) {
    CARAPACE_ASSIGN_OR_RETURN(token, LoadHeaderValue(*spec.api_key, "apiKey"));
  }
  return std::unique_ptr<ModelBackend>(
      new TritonBackend(spec, std::move(*chat_template), std::move(channel), std::move(token), context.embedding_dimensions));
}

}  // namespace carapace
