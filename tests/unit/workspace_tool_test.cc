// The workspace tool: file operations work, and nothing can leave the workspace.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tests/support/child_process.h"
#include "worker/tools/workspace_tool.h"

using namespace carapace;
using carapace::testing::TempDir;
using Catch::Matchers::ContainsSubstring;
using nlohmann::json;

TEST_CASE("write, read, list and delete inside the workspace", "[tools][workspace]") {
  TempDir tmp;
  WorkspaceTool tool("notes", tmp.Sub("ws"));
  ToolContext ctx{"c1", "k"};
  auto w = tool.Call({{"op", "write"}, {"path", "dir/a.md"}, {"content", "hello"}}, ctx);
  REQUIRE(w.ok);
  auto r = tool.Call({{"op", "read"}, {"path", "dir/a.md"}}, ctx);
  REQUIRE(r.ok);
  CHECK(r.output["content"] == "hello");
  auto l = tool.Call({{"op", "list"}, {"path", "dir"}}, ctx);
  REQUIRE(l.ok);
  CHECK(l.output["entries"] == json::array({"a.md"}));
  auto root = tool.Call({{"op", "list"}}, ctx);
  REQUIRE(root.ok);
  CHECK(root.output["entries"] == json::array({"dir/"}));
  auto d = tool.Call({{"op", "delete"}, {"path", "dir/a.md"}}, ctx);
  REQUIRE(d.ok);
  CHECK(d.output["deleted"] == true);
  // Deleting again is not an error: delete is idempotent.
  auto d2 = tool.Call({{"op", "delete"}, {"path", "dir/a.md"}}, ctx);
  REQUIRE(d2.ok);
  CHECK(d2.output["deleted"] == false);
  auto gone = tool.Call({{"op", "read"}, {"path", "dir/a.md"}}, ctx);
  CHECK_FALSE(gone.ok);
  CHECK_THAT(gone.error, ContainsSubstring("no such file"));
}

TEST_CASE("paths that leave the workspace are refused", "[tools][workspace]") {
  TempDir tmp;
  std::filesystem::create_directories(tmp.Sub("ws"));
  std::ofstream(tmp.Sub("secret.txt")) << "secret";
  REQUIRE(::symlink(tmp.path().c_str(), tmp.Sub("ws/escape").c_str()) == 0);
  REQUIRE(::symlink(tmp.Sub("secret.txt").c_str(), tmp.Sub("ws/link.txt").c_str()) == 0);
  WorkspaceTool tool("notes", tmp.Sub("ws"));
  ToolContext ctx{"c1", "k"};

  struct Case {
    json args;
    std::string why;
  };
  std::vector<Case> cases = {
      {{{"op", "read"}, {"path", "../secret.txt"}}, "uses \"..\""},
      {{{"op", "read"}, {"path", "a/../../secret.txt"}}, "uses \"..\""},
      {{{"op", "read"}, {"path", tmp.Sub("secret.txt")}}, "is absolute"},
      {{{"op", "read"}, {"path", "escape/secret.txt"}}, "outside the workspace through a symlink"},
      {{{"op", "read"}, {"path", "link.txt"}}, "outside the workspace through a symlink"},
      {{{"op", "write"}, {"path", "escape/new.txt"}, {"content", "x"}}, "outside the workspace through a symlink"},
      {{{"op", "delete"}, {"path", "link.txt/.."}}, "uses \"..\""},
      {{{"op", "list"}, {"path", "escape"}}, "outside the workspace through a symlink"},
  };
  for (const auto& c : cases) {
    INFO(c.args.dump());
    auto r = tool.Call(c.args, ctx);
    CHECK_FALSE(r.ok);
    CHECK_THAT(r.error, ContainsSubstring(c.why));
  }
  CHECK_FALSE(std::filesystem::exists(tmp.Sub("new.txt")));
  std::ifstream in(tmp.Sub("secret.txt"));
  std::string content;
  in >> content;
  CHECK(content == "secret");
}

TEST_CASE("bad workspace arguments get a clear error", "[tools][workspace]") {
  TempDir tmp;
  WorkspaceTool tool("notes", tmp.Sub("ws"));
  ToolContext ctx{"c1", "k"};
  CHECK_THAT(tool.Call({{"op", "move"}, {"path", "a"}}, ctx).error, ContainsSubstring("must be one of read, write, list, delete"));
  CHECK_THAT(tool.Call({{"op", "write"}, {"path", "a"}}, ctx).error, ContainsSubstring("\"content\" (a string) is required"));
  CHECK_THAT(tool.Call({{"op", "read"}}, ctx).error, ContainsSubstring("\"path\" is required"));
  CHECK_THAT(tool.Call({{"op", "read"}, {"path", 7}}, ctx).error, ContainsSubstring("\"path\" must be a string"));
  CHECK_THAT(tool.Call({{"op", "delete"}, {"path", ""}}, ctx).error, ContainsSubstring("refusing to delete the workspace"));
  CHECK_THAT(tool.Call({{"path", "a"}}, ctx).error, ContainsSubstring("\"op\" (read, write, list or delete) is required"));
  CHECK_THAT(tool.Call({{"op", 1}, {"path", "a"}}, ctx).error, ContainsSubstring("\"op\" (read, write, list or delete) is required"));
  CHECK_THAT(tool.Call({{"op", nullptr}}, ctx).error, ContainsSubstring("\"op\" (read, write, list or delete) is required"));
}

TEST_CASE("reading a FIFO or a binary file does not hang or break the transcript", "[tools][workspace]") {
  TempDir tmp;
  WorkspaceTool tool("notes", tmp.Sub("ws"));
  ToolContext ctx{"c1", "k"};
  REQUIRE(::mkfifo(tmp.Sub("ws/pipe").c_str(), 0600) == 0);
  CHECK_THAT(tool.Call({{"op", "read"}, {"path", "pipe"}}, ctx).error, ContainsSubstring("is not a regular file"));
  std::ofstream(tmp.Sub("ws/logo.png"), std::ios::binary) << std::string("\x89PNG\r\n\x1a\n\xff\xfe", 10);
  auto r = tool.Call({{"op", "read"}, {"path", "logo.png"}}, ctx);
  REQUIRE(r.ok);
  CHECK(r.output["binary"] == true);
  CHECK(r.output["bytes"] == 10);
  CHECK_NOTHROW(r.output.dump());
}

TEST_CASE("deleting a symlink removes the link, not what it points to", "[tools][workspace]") {
  TempDir tmp;
  WorkspaceTool tool("notes", tmp.Sub("ws"));
  ToolContext ctx{"c1", "k"};
  REQUIRE(tool.Call({{"op", "write"}, {"path", "real.md"}, {"content", "keep me"}}, ctx).ok);
  REQUIRE(::symlink(tmp.Sub("ws/real.md").c_str(), tmp.Sub("ws/alias.md").c_str()) == 0);
  auto r = tool.Call({{"op", "delete"}, {"path", "alias.md"}}, ctx);
  REQUIRE(r.ok);
  CHECK_FALSE(std::filesystem::is_symlink(tmp.Sub("ws/alias.md")));
  CHECK(std::filesystem::exists(tmp.Sub("ws/real.md")));
}

TEST_CASE("a hard link planted in the workspace to a file outside it is not read", "[tools][workspace]") {
  TempDir tmp;
  std::filesystem::create_directories(tmp.Sub("ws"));
  std::ofstream(tmp.Sub("secret.txt")) << "the secret outside";
  REQUIRE(::link(tmp.Sub("secret.txt").c_str(), tmp.Sub("ws/innocent.txt").c_str()) == 0);
  WorkspaceTool tool("notes", tmp.Sub("ws"));
  ToolContext ctx{"c1", "k"};
  auto r = tool.Call({{"op", "read"}, {"path", "innocent.txt"}}, ctx);
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.error, ContainsSubstring("innocent.txt has 2 hard links"));
  CHECK(r.output.dump().find("the secret outside") == std::string::npos);
  // Writing replaces the name in the workspace; the file outside is not written through it.
  auto w = tool.Call({{"op", "write"}, {"path", "innocent.txt"}, {"content", "mine"}}, ctx);
  REQUIRE(w.ok);
  std::ifstream outside(tmp.Sub("secret.txt"));
  std::string kept((std::istreambuf_iterator<char>(outside)), {});
  CHECK(kept == "the secret outside");
  auto again = tool.Call({{"op", "read"}, {"path", "innocent.txt"}}, ctx);
  REQUIRE(again.ok);  // now a file of its own, with one link
  CHECK(again.output["content"] == "mine");
}
