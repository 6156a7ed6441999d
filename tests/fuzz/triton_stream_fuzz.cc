// KServe v2 / Triton stream responses as they come off the wire (a serialized
// ModelStreamInferResponse): the text output (raw or typed BYTES), the finish reason and
// the final flag read as the backend reads them, the text fed to the tool-call parser.
#include <cstdint>

#include "inference/grpc_service.pb.h"
#include "worker/model/model_backend.h"
#include "worker/model/reply_parser.h"
#include "worker/model/triton_outputs.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  inference::ModelStreamInferResponse response;
  if (!response.ParseFromArray(data, static_cast<int>(size))) return 0;
  const auto& infer = response.infer_response();
  carapace::ReplyParser parser(carapace::ToolCallFormat::kHermes, {});
  carapace::ChatStream out;
  if (auto text = carapace::OutputText(infer, "text_output")) parser.Feed(*text, &out);
  (void)carapace::OutputText(infer, carapace::TritonTensorNames().finish_reason);
  (void)carapace::IsFinal(infer);
  parser.End(&out);
  return 0;
}
