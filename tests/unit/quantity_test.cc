// Quantities as the API server stores them. The expected forms follow resource.Quantity
// (k8s.io/apimachinery/pkg/api/resource/quantity.go: ParseQuantity rounds up to nano,
// CanonicalizeBytes picks the suffix) and its tests in quantity_test.go.
#include <catch2/catch_test_macros.hpp>

#include "common/quantity.h"

using carapace::CanonicalQuantity;
using carapace::CanonicalResources;
using carapace::QuantityValue;
using nlohmann::json;

TEST_CASE("quantities are written in the server's canonical form", "[quantity]") {
  const std::pair<const char*, const char*> cases[] = {
      // decimal: the largest suffix that keeps the number whole, exponent a multiple of 3
      {"0", "0"}, {"0.0", "0"}, {"000", "0"}, {"1", "1"}, {"1.0", "1"}, {"0.5", "500m"}, {"0.1", "100m"},
      {"1.01", "1010m"}, {"1000m", "1"}, {"1500m", "1500m"}, {"1000", "1k"}, {"1500", "1500"}, {"10000", "10k"},
      {"1k", "1k"}, {"1000k", "1M"}, {"1G", "1G"}, {"0.001", "1m"}, {"100n", "100n"}, {"1000n", "1u"},
      {"+1", "1"}, {".5", "500m"}, {"5.", "5"}, {"-0.5", "-500m"},
      // precision finer than nano is rounded up
      {"0.1n", "1n"}, {"1.1n", "2n"}, {"0.0000000001", "1n"},
      // binary: whole multiples of 1024 keep a binary suffix; below 1024 or fractional: decimal
      {"1Ki", "1Ki"}, {"1024Mi", "1Gi"}, {"1.5Gi", "1536Mi"}, {"0.5Gi", "512Mi"}, {"1536Mi", "1536Mi"},
      {"1.5Ki", "1536"}, {"0.5Ki", "512"}, {"1024Ki", "1Mi"}, {"0.5Mi", "512Ki"}, {"1Ei", "1Ei"},
      {"0.001Ki", "1024m"}, {"0Gi", "0"},
      // exponent form stays in exponent form
      {"1e3", "1e3"}, {"1E3", "1e3"}, {"1e-3", "1e-3"}, {"10e3", "10e3"}, {"1e0", "1"}, {"0.5e3", "500"},
      {"1e1", "10"}, {"1e2", "100"},
  };
  for (const auto& [in, want] : cases) {
    INFO(in);
    auto got = CanonicalQuantity(std::string(in));
    REQUIRE(got.has_value());
    CHECK(*got == want);
  }
}

TEST_CASE("what the server refuses is not a quantity", "[quantity]") {
  for (const char* bad : {"", ".", "+", "1.1.1", "1 Gi", " 1", "1i", "1Gb", "1KB", "ki", "1e", "1e1.5", "1ee3",
                          "Gi", "1Mi1", "0x10", "1e+"}) {
    INFO(bad);
    CHECK_FALSE(CanonicalQuantity(std::string(bad)).has_value());
  }
}

TEST_CASE("numbers in JSON are quantities too, as the API reads them", "[quantity]") {
  CHECK(CanonicalQuantity(json(1)) == "1");
  CHECK(CanonicalQuantity(json(2000)) == "2k");
  CHECK(CanonicalQuantity(json(0.5)) == "500m");
  CHECK(CanonicalQuantity(json(1.0)) == "1");
  CHECK_FALSE(CanonicalQuantity(json(true)).has_value());
  CHECK_FALSE(CanonicalQuantity(json(nullptr)).has_value());
}

TEST_CASE("quantity values are whole units rounded up", "[quantity]") {
  CHECK(QuantityValue("1Gi") == int64_t{1} << 30);
  CHECK(QuantityValue("1.5Gi") == int64_t{3} << 29);
  CHECK(QuantityValue("1G") == 1000000000);
  CHECK(QuantityValue("100m") == 1);
  CHECK(QuantityValue("0") == 0);
  CHECK_FALSE(QuantityValue("-1").has_value());
  CHECK_FALSE(QuantityValue("16Ei").has_value());  // past int64
  CHECK_FALSE(QuantityValue("lots").has_value());
}

TEST_CASE("resources are stored with canonical quantities and no empty maps", "[quantity]") {
  json in = {{"requests", {{"cpu", "0.5"}, {"memory", "1024Mi"}}}, {"limits", json::object()}};
  CHECK(CanonicalResources(in) == json{{"requests", {{"cpu", "500m"}, {"memory", "1Gi"}}}});
  CHECK(CanonicalResources({{"requests", {{"cpu", 1}}}}) == json{{"requests", {{"cpu", "1"}}}});
  CHECK(CanonicalResources(json::object()) == json::object());
  // Not a quantity: left alone for the server to refuse with its own message.
  CHECK(CanonicalResources({{"limits", {{"cpu", "lots"}}}}) == json{{"limits", {{"cpu", "lots"}}}});
}
