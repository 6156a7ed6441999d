// Moving an agent (docs/operations.md, "Move an agent"): `carapace export` fences the source
// and writes one archive; `carapace import` continues the same agent elsewhere. Through the
// real worker, its control API and the real CLI, with a ledger that counts every side effect.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "common/file.h"
#include "tests/support/carapace_cli.h"
#include "tests/support/child_process.h"
#include "tests/support/ledger_server.h"
#include "tests/support/wait.h"
#include "tests/support/worker_process.h"
#include "worker/runtime/agent_archive.h"

using carapace::testing::Carapace;
using carapace::testing::CommandResult;
using carapace::testing::Events;
using carapace::testing::LedgerServer;
using carapace::testing::RunCommand;
using carapace::testing::TempDir;
using carapace::testing::WorkerProcess;
using Catch::Matchers::ContainsSubstring;
using json = nlohmann::json;
namespace v1 = carapace::worker::v1;

namespace {

// A conversation: the goal asks for a payment a person must approve; two later messages ask
// for an order each (idempotent, no approval). Every call reaches the ledger.
std::string Spec(const LedgerServer& ledger, const std::string& ns) {
  const std::string host = "127.0.0.1:" + std::to_string(ledger.port());
  auto post = [&](const std::string& tool, const std::string& path) {
    return "      - toolCalls: [{name: " + tool + ", arguments: {method: POST, url: \"" + ledger.url() + path +
           "\", body: {x: 1}}}]\n";
  };
  return "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: shop, namespace: " + ns +
         "}\nspec:\n  goal: pay the invoice\n"
         "  model:\n    backend: scripted\n    script:\n" +
         post("pay", "/payments/1") + "      - text: paid\n" + post("api", "/orders/a") + "      - text: ordered a\n" +
         post("api", "/orders/b") + "      - text: ordered b\n" +
         "  tools:\n"
         "    - {name: pay, kind: http, effect: side_effecting, requireApproval: true, http: {allowedHosts: [\"" +
         host +
         "\"]}}\n"
         "    - {name: api, kind: http, effect: idempotent, http: {allowedHosts: [\"" +
         host + "\"]}}\n";
}

grpc::Status Send(WorkerProcess& w, const std::string& text) {
  auto ctx = w.Context();
  v1::SendMessageRequest req;
  req.set_text(text);
  v1::SendMessageResponse out;
  return w.stub().SendMessage(ctx.get(), req, &out);
}

grpc::Status Decide(WorkerProcess& w, const std::string& call_id) {
  auto ctx = w.Context();
  v1::DecisionRequest req;
  req.set_call_id(call_id);
  v1::RunStatus out;
  return w.stub().Approve(ctx.get(), req, &out);
}

std::map<std::string, int> Calls(const LedgerServer& ledger) {
  std::map<std::string, int> n;
  for (const auto& e : ledger.entries()) ++n[e.path];
  return n;
}

}  // namespace

TEST_CASE(
    "an agent moved mid-conversation, with an approval waiting and messages queued, loses nothing and "
    "repeats nothing; its source is fenced for good",
    "[move]") {
  TempDir tmp;
  LedgerServer ledger;
  REQUIRE(ledger.Start());
  std::filesystem::create_directories(tmp.Sub("laptop"));
  std::filesystem::create_directories(tmp.Sub("cluster"));
  const std::string laptop_spec = tmp.Write("laptop.yaml", Spec(ledger, "laptop"));
  WorkerProcess source(WORKER_BIN, laptop_spec, tmp.Sub("laptop/agent"), tmp.Sub("laptop"));
  REQUIRE(source.Start());
  REQUIRE(carapace::testing::WaitFor([&] { return source.Status().phase() == v1::PHASE_WAITING_FOR_APPROVAL; }));
  REQUIRE(source.Status().waiting_size() == 1);
  const std::string call_id = source.Status().waiting(0).call_id();
  REQUIRE(Send(source, "also order a").ok());
  REQUIRE(Send(source, "and order b").ok());
  const v1::RunStatus before = source.Status();
  REQUIRE(before.inbox_depth() == 2);
  CHECK(ledger.entries().empty());  // nothing approved, nothing done

  const std::string archive = tmp.Sub("shop.carapace");
  CommandResult exported =
      Carapace({"export", "--worker", source.address(), "--token-file", tmp.Sub("laptop/token"), "--to", archive});
  INFO(exported.out << exported.err);
  REQUIRE(exported.exit_code == 0);
  CHECK_THAT(exported.out, ContainsSubstring("is fenced"));
  REQUIRE(carapace::IsAgentArchive(archive));
  auto manifest = carapace::ReadArchiveManifest(archive);
  REQUIRE(manifest.ok());
  CHECK(manifest->run_id == before.run_id());
  CHECK_FALSE(manifest->handoff_id.empty());
  CHECK(manifest->revision == 1);
  CHECK(manifest->ns == "laptop");

  // The source is fenced: it takes no message, decision or resume, and says why.
  const v1::RunStatus fenced = source.Status();
  CHECK(fenced.handoff_id() == manifest->handoff_id);
  CHECK(fenced.phase() == v1::PHASE_PAUSED);
  for (grpc::Status st : {Send(source, "one more"), Decide(source, call_id)}) {
    CHECK(st.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
    CHECK_THAT(st.error_message(), ContainsSubstring("handed off"));
  }
  CommandResult resume = Carapace({"resume", "--worker", source.address(), "--token-file", tmp.Sub("laptop/token")});
  CHECK(resume.exit_code == 2);
  CHECK_THAT(resume.err, ContainsSubstring("handed off"));
  // ... across a crash and a restart too.
  source.Kill();
  REQUIRE(source.Start());
  CHECK(source.Status().handoff_id() == manifest->handoff_id);
  CHECK(Send(source, "after restart").error_code() == grpc::StatusCode::FAILED_PRECONDITION);
  // Exporting again gives the same hand-off (a copy lost on the way can be fetched again).
  const std::string again = tmp.Sub("again.carapace");
  REQUIRE(Carapace({"export", "--worker", source.address(), "--token-file", tmp.Sub("laptop/token"), "--to", again})
              .exit_code == 0);
  CHECK(carapace::ReadArchiveManifest(again)->handoff_id == manifest->handoff_id);
  const uint64_t source_events = source.Status().last_event_seq();

  // Imported in another namespace (a cluster's), it is the same agent where it stopped.
  CommandResult imported = Carapace({"import", "--from", archive, "--state-dir", tmp.Sub("cluster/agent")});
  INFO(imported.out << imported.err);
  REQUIRE(imported.exit_code == 0);
  const std::string cluster_spec = tmp.Write("cluster.yaml", Spec(ledger, "team-a"));
  WorkerProcess moved(WORKER_BIN, cluster_spec, tmp.Sub("cluster/agent"), tmp.Sub("cluster"));
  REQUIRE(moved.Start());
  REQUIRE(carapace::testing::WaitFor([&] { return moved.Status().phase() == v1::PHASE_WAITING_FOR_APPROVAL; }));
  const v1::RunStatus arrived = moved.Status();
  CHECK(arrived.run_id() == before.run_id());
  CHECK(arrived.namespace_() == "team-a");
  CHECK(arrived.handoff_id().empty());
  REQUIRE(arrived.waiting_size() == 1);
  CHECK(arrived.waiting(0).call_id() == call_id);
  CHECK(arrived.inbox_depth() == 2);

  // Approved there, everything runs once, in order, and the conversation goes on.
  REQUIRE(Decide(moved, call_id).ok());
  REQUIRE(carapace::testing::WaitFor(
      [&] { return moved.Status().phase() == v1::PHASE_IDLE && moved.Status().inbox_depth() == 0; }, 30000));
  moved.Stop();
  source.Stop();
  CHECK(Calls(ledger) == std::map<std::string, int>{{"/payments/1", 1}, {"/orders/a", 1}, {"/orders/b", 1}});
  // The same agent: the payment carries the key the run's identity gives it.
  std::string moved_key;
  for (const auto& e : Events(tmp.Sub("cluster/agent"))) {
    if (e["type"] == "tool_intent" && e["data"]["callId"] == call_id) moved_key = e["data"].value("idempotencyKey", "");
  }
  REQUIRE_FALSE(moved_key.empty());
  CHECK(ledger.entries().at(0).path == "/payments/1");
  CHECK(ledger.entries().at(0).idempotency_key == moved_key);
  // The moved log is the source's, up to the fence, then the import and what came after.
  const json from = Events(tmp.Sub("laptop/agent"));
  const json to = Events(tmp.Sub("cluster/agent"));
  REQUIRE(from.size() == source_events);
  REQUIRE(to.size() > manifest->last_seq);
  for (size_t i = 0; i < manifest->last_seq; ++i) {
    INFO("event " << i + 1);
    CHECK(to[i] == from[i]);
  }
  CHECK(to[manifest->last_seq]["type"] == "imported");
  // The fenced source did nothing after the export: no model call, no tool call.
  for (size_t i = 0; i < from.size(); ++i) {
    if (from[i]["type"] == "handed_off") {
      for (size_t j = i; j < from.size(); ++j) {
        CHECK(from[j]["type"] != "model_request");
        CHECK(from[j]["type"] != "tool_intent");
      }
      break;
    }
  }

  // The same archive is never imported twice; a fork is a new agent with its own run id.
  CommandResult twice = Carapace({"import", "--from", archive, "--state-dir", tmp.Sub("second")});
  CHECK(twice.exit_code == 2);
  CHECK_THAT(twice.err, ContainsSubstring("was imported already"));
  CHECK_THAT(twice.err, ContainsSubstring("--fork"));
  CHECK_FALSE(std::filesystem::exists(tmp.Sub("second/store")));
  CommandResult fork = Carapace({"import", "--from", archive, "--state-dir", tmp.Sub("fork"), "--fork"});
  INFO(fork.out << fork.err);
  REQUIRE(fork.exit_code == 0);
  const json forked = Events(tmp.Sub("fork"));
  REQUIRE_FALSE(forked.empty());
  CHECK(forked.back()["type"] == "imported");
  CHECK(forked.back()["data"]["fork"] == true);
  CHECK(forked.back()["data"]["runId"] != before.run_id());
  // Approved and run, the fork pays again, as the new agent it is: with a key of its own, so a
  // service that deduplicates by key tells the two apart.
  REQUIRE(Carapace({"approve", "--state-dir", tmp.Sub("fork"), "--call", call_id}).exit_code == 0);
  CommandResult fork_run = Carapace({"run", cluster_spec, "--state-dir", tmp.Sub("fork")});
  INFO(fork_run.out << fork_run.err);
  CHECK(fork_run.exit_code == 0);
  std::vector<std::string> payment_keys;
  for (const auto& e : ledger.entries()) {
    if (e.path == "/payments/1") payment_keys.push_back(e.idempotency_key);
  }
  REQUIRE(payment_keys.size() == 2);
  CHECK(payment_keys[0] != payment_keys[1]);
}

TEST_CASE(
    "an export waits for the call in flight: the archive holds its result and the moved agent does not "
    "call again",
    "[move]") {
  TempDir tmp;
  LedgerServer ledger(1500);  // the order is held 1.5 s: the export comes while it is in flight
  REQUIRE(ledger.Start());
  const std::string host = "127.0.0.1:" + std::to_string(ledger.port());
  const std::string spec =
      tmp.Write("o.yaml",
                "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: o}\nspec:\n  goal: order\n"
                "  model:\n    backend: scripted\n    script:\n"
                "      - toolCalls: [{name: api, arguments: {method: POST, url: \"" +
                    ledger.url() +
                    "/orders/1\", body: {qty: 1}}}]\n"
                    "      - text: ordered\n"
                    "  tools:\n    - {name: api, kind: http, effect: side_effecting, http: {allowedHosts: [\"" +
                    host + "\"]}}\n");
  std::filesystem::create_directories(tmp.Sub("w"));
  WorkerProcess source(WORKER_BIN, spec, tmp.Sub("w/agent"), tmp.Sub("w"));
  REQUIRE(source.Start());
  REQUIRE(carapace::testing::WaitFor([&] { return ledger.entries().size() == 1; }));
  CommandResult exported = Carapace(
      {"export", "--worker", source.address(), "--token-file", tmp.Sub("w/token"), "--to", tmp.Sub("o.carapace")});
  INFO(exported.out << exported.err);
  REQUIRE(exported.exit_code == 0);
  source.Stop();
  // The side-effecting call ended before the fence: its result is in the archive, not an
  // outcome the copy would have to guess at.
  REQUIRE(Carapace({"import", "--from", tmp.Sub("o.carapace"), "--state-dir", tmp.Sub("moved")}).exit_code == 0);
  bool result_moved = false;
  for (const auto& e : Events(tmp.Sub("moved"))) {
    CHECK(e["type"] != "tool_outcome_unknown");
    result_moved = result_moved || e["type"] == "tool_result";
  }
  CHECK(result_moved);
  CommandResult finished = Carapace({"run", spec, "--state-dir", tmp.Sub("moved")});
  INFO(finished.out << finished.err);
  CHECK(finished.exit_code == 0);
  CHECK_THAT(finished.out, ContainsSubstring("ordered"));
  CHECK(Calls(ledger) == std::map<std::string, int>{{"/orders/1", 1}});
}

TEST_CASE("a stopped agent exported from its state dir and imported goes on; the source run refuses to act", "[move]") {
  TempDir tmp;
  LedgerServer ledger;
  REQUIRE(ledger.Start());
  const std::string spec = tmp.Write("a.yaml", Spec(ledger, "laptop"));
  // `carapace run` stops at the approval (exit 5: waiting for a person).
  CommandResult first = Carapace({"run", spec, "--state-dir", tmp.Sub("a")});
  REQUIRE(first.exit_code == 5);
  const std::string archive = tmp.Sub("a.carapace");
  // Where the archive cannot go, nothing is exported and the agent is not fenced.
  CommandResult nowhere = Carapace({"export", "--state-dir", tmp.Sub("a"), "--to", tmp.Sub("no/such/dir/a.carapace")});
  CHECK(nowhere.exit_code != 0);
  CHECK_THAT(nowhere.err, ContainsSubstring("nothing was exported"));
  for (const auto& e : Events(tmp.Sub("a"))) CHECK(e["type"] != "handed_off");
  CommandResult exported = Carapace({"export", "--state-dir", tmp.Sub("a"), "--to", archive});
  INFO(exported.out << exported.err);
  REQUIRE(exported.exit_code == 0);
  // Into a file that exists: refused, the file untouched.
  std::ofstream(tmp.Sub("taken.carapace")) << "mine";
  CommandResult over = Carapace({"export", "--state-dir", tmp.Sub("a"), "--to", tmp.Sub("taken.carapace")});
  CHECK(over.exit_code == 2);
  CHECK(*carapace::ReadFile(tmp.Sub("taken.carapace")) == "mine");

  // The source refuses a decision; `carapace run` on it does nothing.
  json events = Events(tmp.Sub("a"));
  std::string call_id;
  for (const auto& e : events) {
    if (e["type"] == "approval_requested") call_id = e["data"].value("callId", "");
  }
  REQUIRE_FALSE(call_id.empty());
  CommandResult approve = Carapace({"approve", "--state-dir", tmp.Sub("a"), "--call", call_id});
  CHECK(approve.exit_code == 2);
  CHECK_THAT(approve.err, ContainsSubstring("handed off"));
  Carapace({"run", spec, "--state-dir", tmp.Sub("a")});
  CommandResult compact = Carapace({"compact", spec, "--state-dir", tmp.Sub("a")});
  CHECK(compact.exit_code == 2);
  CHECK_THAT(compact.err, ContainsSubstring("handed off"));
  CHECK(ledger.entries().empty());

  REQUIRE(Carapace({"import", "--from", archive, "--state-dir", tmp.Sub("b")}).exit_code == 0);
  REQUIRE(Carapace({"approve", "--state-dir", tmp.Sub("b"), "--call", call_id}).exit_code == 0);
  CommandResult resumed = Carapace({"run", spec, "--state-dir", tmp.Sub("b")});
  INFO(resumed.out << resumed.err);
  CHECK(resumed.exit_code == 0);
  CHECK(Calls(ledger) == std::map<std::string, int>{{"/payments/1", 1}});
  CHECK(std::filesystem::exists(tmp.Sub("b/restored-from.json")));
}

TEST_CASE("a damaged or hostile archive is refused whole, naming what is wrong, and leaves nothing behind", "[move]") {
  TempDir tmp;
  const std::string spec = tmp.Write("s.yaml",
                                     "apiVersion: carapace.dev/v1alpha1\nkind: AgentRun\nmetadata: {name: s}\nspec:\n"
                                     "  goal: g\n  model:\n    backend: scripted\n    script:\n      - text: done\n");
  REQUIRE(Carapace({"run", spec, "--state-dir", tmp.Sub("s")}).exit_code == 0);
  const std::string good = tmp.Sub("s.carapace");
  REQUIRE(Carapace({"export", "--state-dir", tmp.Sub("s"), "--to", good}).exit_code == 0);
  auto bytes = carapace::ReadFile(good);
  REQUIRE(bytes.ok());

  auto refused = [&](const std::string& name, const std::string& content, const std::string& says) {
    const std::string path = tmp.Write(name, content);
    CommandResult r = Carapace({"import", "--from", path, "--state-dir", tmp.Sub("into-" + name)});
    INFO(name << ": " << r.err);
    CHECK(r.exit_code != 0);
    CHECK_THAT(r.err, ContainsSubstring(says));
    CHECK_FALSE(std::filesystem::exists(tmp.Sub("into-" + name)));
    CHECK_FALSE(std::filesystem::exists(tmp.Sub("into-" + name + ".restoring")));
    // A failed import does not keep the archive's claim: the good copy can still be used.
    CHECK_FALSE(std::filesystem::exists(path + ".imported"));
  };
  refused("cut.carapace", bytes->substr(0, bytes->size() - 100), "cut short");
  std::string flipped = *bytes;
  flipped[flipped.size() / 2] = static_cast<char>(flipped[flipped.size() / 2] ^ 0x20);
  refused("flipped.carapace", flipped, "digest does not match");
  refused("extra.carapace", *bytes + "x", "bytes follow the end");

  // Hand-made: a record that would write outside the state dir.
  auto u32 = [](uint32_t v) {
    return std::string{static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
                       static_cast<char>(v)};
  };
  auto record = [&](char kind, const std::string& name, const std::string& data) {
    return std::string(1, kind) + u32(static_cast<uint32_t>(name.size())) + name + u32(0644) + u32(0) +
           u32(static_cast<uint32_t>(data.size())) + data;
  };
  const std::string head =
      std::string(carapace::kAgentArchiveMagic) + record('M', "", R"({"format":1,"runId":"r","lastSeq":1})");
  refused("escape.carapace", head + record('D', "store", "") + record('F', "store/../../evil", "x"),
          "names must stay inside");
  CHECK_FALSE(std::filesystem::exists(tmp.Sub("evil")));
  // A link, then a file through it: the file would land wherever the link points.
  refused("link.carapace",
          head + record('D', "workspace", "") + record('L', "workspace/out", tmp.path()) +
              record('F', "workspace/out/planted", "x"),
          "its directory is a link");
  CHECK_FALSE(std::filesystem::exists(tmp.Sub("planted")));
  refused("store-link.carapace", head + record('D', "store", "") + record('L', "store/CURRENT", "/etc/passwd"),
          "a link in the store");
  refused("not.carapace", "just some file\n", "neither a backup directory");
  refused(
      "typed.carapace",
      std::string(carapace::kAgentArchiveMagic) + record('M', "", R"({"format":1,"runId":"r","lastSeq":1,"name":5})"),
      "manifest is damaged");

  // The good one still imports, into a directory whose parents are made for it.
  CommandResult ok = Carapace({"import", "--from", good, "--state-dir", tmp.Sub("nested/dir/ok")});
  INFO(ok.err);
  CHECK(ok.exit_code == 0);
  // Run again as an init container does, it knows it is done; into a dir holding another run it refuses.
  CommandResult again =
      Carapace({"restore", "--from", good, "--state-dir", tmp.Sub("nested/dir/ok"), "--skip-if-restored"});
  CHECK(again.exit_code == 0);
  CHECK_THAT(again.out, ContainsSubstring("already restored"));
  CommandResult other = Carapace({"restore", "--from", good, "--state-dir", tmp.Sub("s"), "--skip-if-restored"});
  CHECK(other.exit_code == 2);
  CHECK_THAT(other.err, ContainsSubstring("is not empty"));

  // Imported once means once: not again through a link to it, and not again by the same
  // importer after its copy was removed (that would start the agent twice from its fence).
  std::filesystem::create_symlink(good, tmp.Sub("alias.carapace"));
  CommandResult via_link = Carapace({"import", "--from", tmp.Sub("alias.carapace"), "--state-dir", tmp.Sub("l")});
  CHECK(via_link.exit_code == 2);
  CHECK_THAT(via_link.err, ContainsSubstring("was imported already"));
  std::filesystem::remove_all(tmp.Sub("nested/dir/ok"));
  CommandResult replay = Carapace({"import", "--from", good, "--state-dir", tmp.Sub("nested/dir/ok")});
  CHECK(replay.exit_code == 2);
  CHECK_THAT(replay.err, ContainsSubstring("start twice from its fence"));
  // A restore that was done stays done when its copy is gone (an init container on a new pod).
  CommandResult fork = Carapace({"import", "--from", good, "--state-dir", tmp.Sub("f"), "--fork"});
  REQUIRE(fork.exit_code == 0);
  std::filesystem::rename(good, tmp.Sub("moved-away.carapace"));
  CommandResult done =
      Carapace({"restore", "--from", good, "--state-dir", tmp.Sub("f"), "--skip-if-restored", "--fork"});
  INFO(done.err);
  CHECK(done.exit_code == 0);
  CHECK_THAT(done.out, ContainsSubstring("already restored"));

  // The source, fenced by the export, is taken back when its archive was never imported.
  CommandResult take_back = Carapace({"resume", "--state-dir", tmp.Sub("s"), "--take-back"});
  INFO(take_back.err);
  CHECK(take_back.exit_code == 0);
  CHECK(Events(tmp.Sub("s")).back()["type"] == "handoff_revoked");
  CommandResult again_back = Carapace({"resume", "--state-dir", tmp.Sub("s"), "--take-back"});
  CHECK(again_back.exit_code == 2);
  CHECK_THAT(again_back.err, ContainsSubstring("not handed off"));
}
