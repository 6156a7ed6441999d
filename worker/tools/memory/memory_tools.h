// The memory kind: long-term memory that survives restarts. One spec entry
// ({name: memory, kind: memory}) gives the model four tools: memory_store, memory_search,
// memory_get and memory_forget (prefixed by the entry's name). Entries live in the run's
// store (column family "memory"), so they survive kill -9 like every other record.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "worker/tools/memory/memory_index.h"
#include "worker/tools/tool.h"

namespace carapace {

class ModelBackend;
class RunStore;

// The memory of one run: the index in memory, kept in the store. Loaded on first use.
class MemoryStore {
 public:
  // `embedder` may be null (keyword search only); `dimensions` is 0 then.
  MemoryStore(RunStore* store, ModelBackend* embedder, size_t dimensions);

  // Stores (or replaces) an entry; synced before it returns.
  Result<MemoryEntry> Put(const std::string& id, const std::string& text, const std::vector<std::string>& tags);
  Result<std::vector<MemoryHit>> Search(const std::string& query, size_t limit);
  Result<const MemoryEntry*> Get(const std::string& id);
  Result<bool> Forget(const std::string& id);
  Result<size_t> Size();

 private:
  Status Load();
  Result<std::vector<float>> EmbedOne(const std::string& text);

  RunStore* store_;
  ModelBackend* embedder_;
  MemoryIndex index_;
  bool loaded_ = false;
};

// The ToolSetFactory registered for kind "memory".
Result<ToolList> CreateMemoryTools(const ToolSpec& spec, const ToolEnvironment& env);

}  // namespace carapace
