// A Triton / KServe v2 gRPC server double with scripted output, for tests and benchmarks:
// ServerLive/Ready, ModelReady, ModelMetadata, ModelInfer (chat and embeddings) and the
// decoupled ModelStreamInfer, with faults on demand. It records what it was asked.
// Test support only: never linked into a shipped binary.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <grpcpp/server.h>
#include <nlohmann/json.hpp>

namespace carapace::testing {

// One reply, taken in order by the next chat request.
struct FakeTritonReply {
  std::vector<std::string> chunks;  // streamed pieces of text_output (unary: joined)
  int fail_code = 0;                // a grpc::StatusCode to fail with before any output
  std::string fail_message = "scripted failure";
  int cut_after = -1;               // stream this many chunks, then break the stream
  int delay_ms = 0;                 // wait before the first chunk
  int chunk_delay_ms = 0;           // and before each chunk after it (a model generating)
  std::string stream_error;         // answer with ModelStreamInferResponse.error_message
  bool no_final = false;            // end the stream cleanly without the final response
  // vLLM's finish reason, sent in `finish_reason` when the request asked for it (the last
  // response of a stream has it; the ones before say "None").
  std::string finish_reason = "stop";
};

struct FakeTritonRequest {
  std::string model;
  std::string prompt;             // text_input
  std::vector<std::string> texts;  // embedding inputs
  bool stream = false;
  bool empty_final = false;       // triton_enable_empty_final_response
  nlohmann::json sampling;        // sampling_parameters (vllm preset), or the separate tensors
  std::string authorization;
  std::string traceparent;        // the traceparent metadata entry, if any
  bool streaming_rpc = false;     // came through ModelStreamInfer
  bool return_finish_reason = false;       // the request asked for `finish_reason`
  bool return_finish_reason_sent = false;  // it sent the input at all (true or false)
  bool return_num_input_tokens = false;    // asked for the prompt's token count
  bool return_num_output_tokens = false;   // asked for the reply's token counts
  bool token_counts_sent = false;          // sent either input at all
  std::vector<std::string> outputs;        // the outputs it asked for by name
};

struct FakeTritonTls {
  std::string cert_pem;
  std::string key_pem;
  std::string client_ca_pem;  // set: clients must present a certificate signed by it
};

class FakeTritonServer {
 public:
  // `model`: the chat model's name; `embedder`: the embedding model's name.
  explicit FakeTritonServer(std::string model = "llm", std::string embedder = "embedder", int dimensions = 8);
  ~FakeTritonServer();

  // Listens on 127.0.0.1 on a free port. False when it cannot.
  bool Start(const FakeTritonTls* tls = nullptr);
  void Stop();
  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }

  // The chat model's config declares vLLM's additional output `finish_reason` (the input
  // `return_finish_reason`), as Triton's vLLM backend does from r24.12. Without it, a request
  // that sends that input is refused, as Triton refuses any input a model does not declare.
  // Call before Start.
  void DeclareFinishReason() { declare_finish_reason_ = true; }
  // The same for the token counts (`return_num_input_tokens` / `return_num_output_tokens`):
  // answered with `num_input_tokens` on every response and `num_output_tokens` per response
  // (the tokens of that response's text). The double's tokenizer: a token per 3 bytes,
  // rounded up, so a test can tell its counts from the client's estimate (4 bytes). Call
  // before Start.
  void DeclareTokenCounts() { declare_token_counts_ = true; }
  static int64_t CountTokens(const std::string& text) { return static_cast<int64_t>((text.size() + 2) / 3); }
  // The chat model's config.pbtxt `parameters` (string values, as Triton keeps them), served
  // by ModelConfig. `kserve`: the server has no ModelConfig (KServe's v2 protocol does not
  // define it), so the call is UNIMPLEMENTED, as gRPC answers any method a service lacks.
  // Call before Start.
  void SetConfigParameter(const std::string& key, const std::string& value) { config_parameters_[key] = value; }
  void ActAsKServe() { kserve_ = true; }
  // The model declares a UINT32 output `name` with no input to ask for it, as a TensorRT-LLM
  // ensemble that routes out an output length does: a request that names it among its
  // outputs gets each response's token count there.
  void DeclareOutputLength(std::string name) { output_length_ = std::move(name); }

  void Push(FakeTritonReply reply);
  // Replies no chat request has taken yet.
  size_t pending() const;
  std::vector<FakeTritonRequest> requests() const;
  void set_ready(bool ready);

  class Service;

 private:
  std::unique_ptr<Service> service_;
  bool declare_finish_reason_ = false;
  bool declare_token_counts_ = false;
  std::map<std::string, std::string> config_parameters_;
  bool kserve_ = false;
  std::string output_length_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

// The embedding the double returns for a text (deterministic, for assertions).
std::vector<float> FakeEmbedding(const std::string& text, int dimensions);

}  // namespace carapace::testing
