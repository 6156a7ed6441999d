// Linked into every executable of the sanitizer build (make sanitize; CMakeLists.txt): the
// sanitizer runtimes call these for their default options, so the suppressions in
// tests/lsan.supp and tests/ubsan.supp apply to the test binaries and to the workers and
// operators they start, whatever environment a test gives its children.
extern "C" const char* __lsan_default_options() { return "suppressions=" CARAPACE_LSAN_SUPPRESSIONS; }
extern "C" const char* __ubsan_default_options() {
  return "suppressions=" CARAPACE_UBSAN_SUPPRESSIONS ":print_stacktrace=1";
}
