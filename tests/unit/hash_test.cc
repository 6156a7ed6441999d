// SHA-256 against the FIPS 180-4 example vectors and the block-boundary lengths, and the
// bearer token check built on it.
#include <catch2/catch_test_macros.hpp>

#include "common/bearer_token.h"
#include "common/hash.h"

using carapace::Sha256Hex;

TEST_CASE("sha256 matches the standard test vectors", "[hash]") {
  CHECK(Sha256Hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(Sha256Hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(Sha256Hex(std::string(1000000, 'a')) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("sha256 pads correctly around the 55/56/64-byte block boundaries", "[hash]") {
  // Known digests of runs of 'a' at the lengths where the padding spills into a second block.
  CHECK(Sha256Hex(std::string(55, 'a')) == "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
  CHECK(Sha256Hex(std::string(56, 'a')) == "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
  CHECK(Sha256Hex(std::string(64, 'a')) == "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

TEST_CASE("a bearer token matches only the header that carries it exactly", "[hash]") {
  using carapace::BearerTokenMatches;
  const std::string token = "0123456789abcdef0123456789abcdef";
  CHECK(BearerTokenMatches("Bearer " + token, token));
  CHECK_FALSE(BearerTokenMatches("", token));
  CHECK_FALSE(BearerTokenMatches(token, token));
  CHECK_FALSE(BearerTokenMatches("Bearer " + token + "0", token));
  CHECK_FALSE(BearerTokenMatches("Bearer " + token.substr(1), token));
  CHECK_FALSE(BearerTokenMatches("bearer " + token, token));
  // No token configured: nothing matches, not even "Bearer ".
  CHECK_FALSE(BearerTokenMatches("Bearer ", ""));
}
