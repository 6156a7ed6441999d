// memory_store / memory_search / memory_get / memory_forget over MemoryStore.
#include "worker/tools/memory/memory_tools.h"

#include <cmath>
#include <cstring>
#include <optional>

#include "common/time.h"
#include "worker/model/model_backend.h"
#include "worker/store/run_store.h"

namespace carapace {

namespace {
// Keys in the memory column family: e/<id> holds the entry as JSON, v/<id> its embedding
// as raw float32. "e/" sorts before "v/", so a scan meets an entry before its vector.
std::string EntryKey(const std::string& id) { return "e/" + id; }
std::string VectorKey(const std::string& id) { return "v/" + id; }
}  // namespace

MemoryStore::MemoryStore(RunStore* store, ModelBackend* embedder, size_t dimensions)
    : store_(store), embedder_(embedder), index_(embedder ? dimensions : 0) {}

Status MemoryStore::Load() {
  if (loaded_) return Status::Ok();
  std::unordered_map<std::string, MemoryEntry> entries;
  std::vector<std::string> order;
  Status bad;
  CARAPACE_RETURN_IF_ERROR(store_->ForEachMemory([&](std::string_view key, std::string_view value) {
    if (key.substr(0, 2) == "e/") {
      auto j = nlohmann::json::parse(value, nullptr, false);
      if (j.is_discarded() || !j.is_object()) {
        bad = Corruption("memory entry " + std::string(key) + " is not valid JSON");
        return false;
      }
      MemoryEntry e;
      e.id = std::string(key.substr(2));
      e.text = j.value("text", "");
      e.created_ms = j.value("createdMs", int64_t{0});
      if (j.contains("tags") && j["tags"].is_array()) {
        for (const auto& t : j["tags"]) {
          if (t.is_string()) e.tags.push_back(t.get<std::string>());
        }
      }
      order.push_back(e.id);
      entries[e.id] = std::move(e);
    } else if (key.substr(0, 2) == "v/") {
      std::string id(key.substr(2));
      auto it = entries.find(id);
      if (it == entries.end()) return true;  // a vector whose entry was forgotten mid-way
      std::vector<float> v(value.size() / sizeof(float));
      std::memcpy(v.data(), value.data(), v.size() * sizeof(float));
      index_.Add(std::move(it->second), v);
      entries.erase(it);
    }
    return true;
  }));
  CARAPACE_RETURN_IF_ERROR(bad);
  for (const auto& id : order) {  // entries stored without a vector (no embedder)
    auto it = entries.find(id);
    if (it != entries.end()) index_.Add(std::move(it->second), {});
  }
  loaded_ = true;
  return Status::Ok();
}

Result<std::vector<float>> MemoryStore::EmbedOne(const std::string& text) {
  if (!embedder_) return std::vector<float>();
  CARAPACE_ASSIGN_OR_RETURN(auto vectors, embedder_->Embed({text}));
  if (vectors.size() != 1 || vectors[0].size() != index_.dimensions()) {
    return Internal("the embedding backend returned a vector of the wrong size");
  }
  for (float x : vectors[0]) {
    if (!std::isfinite(x)) return Internal("the embedding backend returned a vector with NaN or infinity");
  }
  return std::move(vectors[0]);
}

Result<MemoryEntry> MemoryStore::Put(const std::string& id, const std::string& text, const std::vector<std::string>& tags) {
  CARAPACE_RETURN_IF_ERROR(Load());
  CARAPACE_ASSIGN_OR_RETURN(auto vec, EmbedOne(text));
  MemoryEntry e{id, text, tags, WallNowMillis()};
  if (const MemoryEntry* old = index_.Get(id)) e.created_ms = old->created_ms;  // a retry keeps its time
  std::vector<std::pair<std::string, std::string>> kv = {
      {EntryKey(id), nlohmann::json{{"text", text}, {"tags", tags}, {"createdMs", e.created_ms}}.dump()}};
  if (!vec.empty()) {
    kv.emplace_back(VectorKey(id), std::string(reinterpret_cast<const char*>(vec.data()), vec.size() * sizeof(float)));
  }
  CARAPACE_RETURN_IF_ERROR(store_->PutMemory(kv, true));
  index_.Add(e, vec);
  return e;
}

Result<std::vector<MemoryHit>> MemoryStore::Search(const std::string& query, size_t limit) {
  CARAPACE_RETURN_IF_ERROR(Load());
  CARAPACE_ASSIGN_OR_RETURN(auto vec, EmbedOne(query));
  return index_.Search(query, vec.empty() ? nullptr : &vec, limit);
}

Result<const MemoryEntry*> MemoryStore::Get(const std::string& id) {
  CARAPACE_RETURN_IF_ERROR(Load());
  return index_.Get(id);
}

Result<bool> MemoryStore::Forget(const std::string& id) {
  CARAPACE_RETURN_IF_ERROR(Load());
  CARAPACE_RETURN_IF_ERROR(store_->DeleteMemory({EntryKey(id), VectorKey(id)}));
  return index_.Remove(id);
}

Result<size_t> MemoryStore::Size() {
  CARAPACE_RETURN_IF_ERROR(Load());
  return index_.size();
}

namespace {

nlohmann::json EntryJson(const MemoryEntry& e) {
  return {{"id", e.id}, {"text", e.text}, {"tags", e.tags}, {"createdMs", e.created_ms}};
}

// One of the four memory tools; `op` says which.
class MemoryTool : public Tool {
 public:
  enum class Op { kStore, kSearch, kGet, kForget };
  MemoryTool(std::string name, Op op, std::shared_ptr<MemoryStore> memory)
      : name_(std::move(name)), op_(op), memory_(std::move(memory)) {}

  ToolSchema Schema() const override {
    switch (op_) {
      case Op::kStore:
        return {name_, "Remember a piece of text for later (survives restarts). Returns its id.",
                {{"type", "object"},
                 {"properties", {{"text", {{"type", "string"}}}, {"tags", {{"type", "array"}, {"items", {{"type", "string"}}}}}}},
                 {"required", {"text"}}}};
      case Op::kSearch:
        return {name_, "Search remembered text by words and by meaning; best matches first.",
                {{"type", "object"},
                 {"properties", {{"query", {{"type", "string"}}}, {"limit", {{"type", "integer"}, {"minimum", 1}, {"maximum", 50}}}}},
                 {"required", {"query"}}}};
      case Op::kGet:
        return {name_, "Read one remembered entry by id.",
                {{"type", "object"}, {"properties", {{"id", {{"type", "string"}}}}}, {"required", {"id"}}}};
      case Op::kForget:
        return {name_, "Forget one remembered entry by id.",
                {{"type", "object"}, {"properties", {{"id", {{"type", "string"}}}}}, {"required", {"id"}}}};
    }
    return {name_, "", nlohmann::json::object()};
  }

  // Storing under the call's idempotency key makes a retried store write the same entry.
  Effect DefaultEffect() const override {
    return op_ == Op::kSearch || op_ == Op::kGet ? Effect::kReadOnly : Effect::kIdempotent;
  }

  ToolResult Call(const nlohmann::json& args, const ToolContext& ctx) override {
    if (!args.is_object()) return ToolResult::Fail("arguments must be an object");
    auto text_arg = [&](const char* key) -> std::optional<std::string> {
      if (!args.contains(key) || !args[key].is_string() || args[key].get<std::string>().empty()) return std::nullopt;
      return args[key].get<std::string>();
    };
    switch (op_) {
      case Op::kStore: {
        auto text = text_arg("text");
        if (!text) return ToolResult::Fail("\"text\" (a non-empty string) is required");
        std::vector<std::string> tags;
        if (args.contains("tags")) {
          if (!args["tags"].is_array()) return ToolResult::Fail("\"tags\" must be a list of strings");
          for (const auto& t : args["tags"]) {
            if (!t.is_string()) return ToolResult::Fail("\"tags\" must be a list of strings");
            tags.push_back(t.get<std::string>());
          }
        }
        auto e = memory_->Put(ctx.idempotency_key, *text, tags);
        if (!e.ok()) return ToolResult::Fail("cannot store: " + e.status().message());
        return ToolResult::Ok({{"id", e->id}});
      }
      case Op::kSearch: {
        auto query = text_arg("query");
        if (!query) return ToolResult::Fail("\"query\" (a non-empty string) is required");
        int64_t limit = 5;
        if (args.contains("limit")) {
          if (!args["limit"].is_number_integer() || args["limit"].get<int64_t>() < 1 || args["limit"].get<int64_t>() > 50) {
            return ToolResult::Fail("\"limit\" must be an integer from 1 to 50");
          }
          limit = args["limit"].get<int64_t>();
        }
        auto hits = memory_->Search(*query, static_cast<size_t>(limit));
        if (!hits.ok()) return ToolResult::Fail("cannot search: " + hits.status().message());
        nlohmann::json results = nlohmann::json::array();
        for (const auto& h : *hits) {
          nlohmann::json r = EntryJson(*h.entry);
          r["score"] = h.score;
          r["keywordScore"] = h.keyword_score;
          r["vectorScore"] = h.vector_score;
          results.push_back(r);
        }
        return ToolResult::Ok({{"results", results}});
      }
      case Op::kGet: {
        auto id = text_arg("id");
        if (!id) return ToolResult::Fail("\"id\" (a non-empty string) is required");
        auto e = memory_->Get(*id);
        if (!e.ok()) return ToolResult::Fail(e.status().message());
        if (*e == nullptr) return ToolResult::Fail("no memory with id \"" + *id + "\"");
        return ToolResult::Ok(EntryJson(**e));
      }
      case Op::kForget: {
        auto id = text_arg("id");
        if (!id) return ToolResult::Fail("\"id\" (a non-empty string) is required");
        auto gone = memory_->Forget(*id);
        if (!gone.ok()) return ToolResult::Fail(gone.status().message());
        return ToolResult::Ok({{"id", *id}, {"forgotten", *gone}});  // forgetting twice is not an error
      }
    }
    return ToolResult::Fail("unknown memory operation");
  }

 private:
  std::string name_;
  Op op_;
  std::shared_ptr<MemoryStore> memory_;
};

}  // namespace

Result<ToolList> CreateMemoryTools(const ToolSpec& spec, const ToolEnvironment& env) {
  if (env.store == nullptr) return InvalidArgument("tool \"" + spec.name + "\": memory needs the run's store");
  size_t dims = 0;
  if (env.embedder != nullptr) {
    auto probe = env.embedder->Embed({"dimensions"});
    if (!probe.ok()) return probe.status().WithContext("spec.embedding");
    if (probe->empty() || probe->front().empty()) {
      return InvalidArgument("spec.embedding: the embedding backend returned no vector");
    }
    dims = probe->front().size();
  }
  auto memory = std::make_shared<MemoryStore>(env.store, env.embedder, dims);
  ToolList tools;
  tools.push_back(std::make_unique<MemoryTool>(spec.name + "_store", MemoryTool::Op::kStore, memory));
  tools.push_back(std::make_unique<MemoryTool>(spec.name + "_search", MemoryTool::Op::kSearch, memory));
  tools.push_back(std::make_unique<MemoryTool>(spec.name + "_get", MemoryTool::Op::kGet, memory));
  tools.push_back(std::make_unique<MemoryTool>(spec.name + "_forget", MemoryTool::Op::kForget, memory));
  return tools;
}

}  // namespace carapace
