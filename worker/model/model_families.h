// Model families: one name (spec.model.triton.family) that brings together what a model
// served through Triton needs from the client: how its prompt is written, how it writes
// tool calls, where its replies stop, and whether the server must keep special tokens in
// the text for the calls to be seen. And the one place the triton backend gets its
// ChatTemplate from, whichever of family, template, templateFile or chatTemplate is set.
#pragma once

#include <string>
#include <vector>

#include "common/agentrun/spec.h"
#include "common/status.h"
#include "worker/model/chat_template.h"

namespace carapace {

// The family names, in the order docs/models.md lists them.
const std::vector<std::string>& ModelFamilyNames();

// The chat template an endpoint's settings describe. Files (templateFile, chatTemplate.file,
// a mounted ConfigMap) are read now. Errors: kInvalidArgument naming the field and, for a
// template, its line and column.
Result<ChatTemplate> ChatTemplateFor(const TritonOptions& triton);

}  // namespace carapace
