// The Jinja subset chat templates are rendered with: whitespace as Hugging Face renders
// (trim_blocks, lstrip_blocks), expressions with Python's meaning, loops, macros, filters
// and tests, and errors at load time with line and column. Expected outputs are worked out
// from Jinja's documented semantics (jinja.palletsprojects.com, "Template Designer
// Documentation", and the examples there) and Python's, not from this engine.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include "worker/model/jinja/template.h"

using namespace carapace;
using Catch::Matchers::ContainsSubstring;

namespace {

// Renders `source` with `vars`; a failure is reported as the result, prefixed "ERROR ".
std::string Render(const std::string& source, const nlohmann::json& vars = nlohmann::json::object()) {
  auto t = jinja::Template::Parse(source, "t.jinja");
  if (!t.ok()) return "ERROR " + t.status().message();
  jinja::Value v = jinja::FromJson(vars);
  auto r = (*t)->Render(v.dict());
  if (!r.ok()) return "ERROR " + r.status().message();
  return *r;
}

}  // namespace

TEST_CASE("jinja: whitespace follows trim_blocks and lstrip_blocks, and - on tags strips the rest", "[jinja]") {
  // The example of Jinja's documentation ("Whitespace Control") with both settings on.
  CHECK(Render("<div>\n    {% if true %}\n        yay\n    {% endif %}\n</div>") == "<div>\n        yay\n</div>");
  CHECK(Render("{% for item in seq -%}\n    {{ item }}\n{%- endfor %}", {{"seq", {1, 2, 3}}}) == "123");
  CHECK(Render("  {%+ if true %}x{% endif %}") == "  x");          // + keeps what lstrip_blocks takes
  CHECK(Render("{% if true +%}\nx{% endif %}") == "\nx");           // + keeps what trim_blocks takes
  CHECK(Render("a\n  {# a comment #}\nb") == "a\nb");              // comments are blocks for both rules
  CHECK(Render("  {{ 'x' }}\nz") == "  x\nz");                      // variable tags are not
  CHECK(Render("{{ 'x' }}\n") == "x");                               // one trailing newline goes
  CHECK(Render("x {% if true %}y{% endif %}\nz") == "x yz");        // lstrip only at the start of a line
  CHECK(Render("{%- if true -%}\n\n  x  \n\n{%- endif -%}") == "x");
  CHECK(Render("{{ 'a' -}}   \n  {{- 'b' }}") == "ab");
  CHECK(Render("{% raw %}{{ not }} {% rendered %}{% endraw %}") == "{{ not }} {% rendered %}");
  CHECK(Render("a\r\n{% if true %}\r\nb{% endif %}") == "a\nb");   // newlines become \n
}

TEST_CASE("jinja: expressions print and compute as Python does", "[jinja]") {
  CHECK(Render("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % -3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1.0 }} {{ 1e20 }} {{ 0.1 + 0.2 }}") ==
        "3 -4 -2 3.5 1024 1.0 1e+20 0.30000000000000004");
  CHECK(Render("{{ none }} {{ true }} {{ [1, 'a', none] }} {{ {'k': \"it's\"} }} {{ 'a' ~ 1 }} {{ 'ab' * 2 }}") ==
        "None True [1, 'a', None] {'k': \"it's\"} a1 abab");
  CHECK(Render("{{ not none is none }} {{ -2 | abs }} {{ 1 if x else 2 }} {{ 'y' if false }}|{{ x or 'dflt' }}") ==
        "False 2 2 |dflt");
  CHECK(Render("{{ 'hello'[1:3] }} {{ 'hello'[::-1] }} {{ [1, 2, 3][-1] }} {{ [1, 2, 3][5] is defined }}") ==
        "el olleh 3 False");
  CHECK(Render("{{ 'a b  c'.split() }} {{ 'x,y'.split(',') }} {{ 'a-b-c'.split('-', 1) }} {{ '  hi '.strip() }}") ==
        "['a', 'b', 'c'] ['x', 'y'] ['a', 'b-c'] hi");
  CHECK(Render("{{ 'Hi'.startswith('H') }} {{ 'Hi'.endswith(('x', 'i')) }} {{ 'héllo'[1] }} {{ 'héllo' | length }}") ==
        "True True é 5");
  CHECK(Render("{{ 'x' in 'xyz' }} {{ 'k' in {'k': 1} }} {{ 2 in [1, 2] }} {{ 3 not in [1, 2] }} {{ 1 == 1.0 }}") ==
        "True True True True True");
  CHECK(Render("{{ d.items() | list | length }} {{ d.get('a') }} {{ d.get('z', 'none') }} {{ d['items'] }}",
               {{"d", {{"a", 1}, {"items", "key, not method"}}}}) == "2 1 none key, not method");
  CHECK(Render("{{ 'abc' 'def' }} {{ \"tab\\there\" }} {{ '\\u00e9' }}") == "abcdef tab\there é");
}

TEST_CASE("jinja: loops have loop.*, filters, else, break and continue; set stays in the loop, namespace does not",
          "[jinja]") {
  CHECK(Render("{% for x in xs %}{{ loop.index }}/{{ loop.length }}{% if loop.first %}F{% endif %}"
               "{% if loop.last %}L{% endif %}{% if not loop.first %}<{{ loop.previtem }}{% endif %}"
               "{% if not loop.last %}>{{ loop.nextitem }}{% endif %};{% endfor %}",
               {{"xs", {"a", "b", "c"}}}) == "1/3F>b;2/3<a>c;3/3L<b;");
  CHECK(Render("{% for x in [1, 2, 3, 4] if x is even %}{{ x }}{{ ',' if not loop.last }}{% endfor %}") == "2,4");
  CHECK(Render("{% for x in [] %}x{% else %}empty{% endfor %}") == "empty");
  CHECK(Render("{% for i in range(10) %}{% if i == 5 %}{% break %}{% endif %}{% if i is odd %}{% continue %}"
               "{% endif %}{{ i }}{% endfor %}") == "024");
  CHECK(Render("{% set y = 1 %}{% for x in [1, 2] %}{% set y = x * 10 %}{% endfor %}{{ y }}") == "1");
  CHECK(Render("{% set ns = namespace(y=1) %}{% for x in [1, 2] %}{% set ns.y = x * 10 %}{% endfor %}{{ ns.y }}") == "20");
  CHECK(Render("{% for k in {'b': 1, 'a': 2} %}{{ k }}{% endfor %}") == "ba");
  CHECK(Render("{% for k, v in {'b': 1, 'a': 2}.items() %}{{ k }}={{ v }} {% endfor %}") == "b=1 a=2 ");
  CHECK(Render("{% for m in [1, 2, 3][::-1] %}{{ m }}{% endfor %}") == "321");
  CHECK(Render("{% for a in [1, 2] %}{% for b in 'xy' %}{{ a }}{{ b }}{{ loop.index }} {% endfor %}{{ loop.index }}|{% endfor %}") ==
        "1x1 1y2 1|2x1 2y2 2|");
  CHECK(Render("{% set a, b = 1, 2 %}{{ b }}{{ a }}") == "21");
  CHECK(Render("{% set block %}in {{ 'side' }}{% endset %}[{{ block }}]") == "[in side]");
}

TEST_CASE("jinja: macros take defaults and keywords, see the top level, and may recurse", "[jinja]") {
  CHECK(Render("{% set greeting = 'Hi' %}{% macro greet(name, punct='!') %}{{ greeting }} {{ name }}{{ punct }}"
               "{% endmacro %}{{ greet('Ann') }} {{ greet('Bo', punct='?') }} {{ greet(punct='.', name='Cy') }}") ==
        "Hi Ann! Hi Bo? Hi Cy.");
  CHECK(Render("{% macro count(n) %}{{ n }}{% if n > 0 %}{{ count(n - 1) }}{% endif %}{% endmacro %}{{ count(3) }}") ==
        "3210");
  CHECK(Render("{%- macro m(x) -%}\n  [{{ x }}]\n{%- endmacro -%}\n{{ m(1) ~ m(2) }}") == "[1][2]");
}

TEST_CASE("jinja: filters and tests", "[jinja]") {
  CHECK(Render("{{ {'b': 1, 'a': [1, 2.5, none, true, 'é\"']} | tojson }}") == "{\"b\": 1, \"a\": [1, 2.5, null, true, \"é\\\"\"]}");
  CHECK(Render("{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}") == "{\"a\": 2, \"b\": 1}");
  CHECK(Render("{{ [1, {'a': []}] | tojson(indent=2) }}") == "[\n  1,\n  {\n    \"a\": []\n  }\n]");
  const nlohmann::json users = {{"users", {{{"name", "ann"}, {"admin", true}}, {{"name", "bo"}, {"admin", false}}}}};
  CHECK(Render("{{ users | map(attribute='name') | join('|') }} {{ users | selectattr('admin') | map(attribute='name') | list }} "
               "{{ users | rejectattr('admin') | list | length }} {{ users | selectattr('name', 'equalto', 'bo') | first | tojson }}",
               users) == "ann|bo ['ann'] 1 {\"admin\": false, \"name\": \"bo\"}");
  CHECK(Render("{{ [1, 2, 3, 4] | select('odd') | list }} {{ [1, 2, 3] | reject('equalto', 2) | list }} "
               "{{ ['a', 'b'] | map('upper') | join }}") == "[1, 3] [1, 3] AB");
  CHECK(Render("{{ missing | default('d') }}|{{ '' | default('d', true) }}|{{ '' | default('d') }}|{{ none | default('d') }}") ==
        "d|d||None");
  CHECK(Render("{{ [3, 1, 2] | sort }} {{ [3, 1, 2] | sort(reverse=true) }} {{ ['b', 'a', 'b'] | unique | list }} "
               "{{ [1, 5, 3] | max }} {{ [1, 2, 3] | sum }} {{ 'ab' | reverse }} {{ {'b': 1, 'a': 2} | dictsort | first | first }}") ==
        "[1, 2, 3] [3, 2, 1] ['b', 'a'] 5 6 ba a");
  CHECK(Render("{{ 'a-b' | replace('-', '+') }} {{ '  x ' | trim }} {{ 'hello world' | title }} {{ 'hELLO' | capitalize }} "
               "{{ '42' | int + 1 }} {{ 'x' | int }} {{ '2.5' | float }} {{ 2.567 | round(2) }} {{ [1, 2] | first }}{{ [1, 2] | last }}") ==
        "a+b x Hello World Hello 43 0 2.5 2.57 12");
  CHECK(Render("{{ 'a\nb' | indent(2) }}|{{ 'x' | upper }}{{ 'Y' | lower }}|{{ 3 | string ~ 4 }}|{{ 'a b c' | wordcount }}") ==
        "a\n  b|Xy|34|3");
  CHECK(Render("{{ x is defined }} {{ y is undefined }} {{ none is none }} {{ 'a' is string }} {{ 1 is number }} "
               "{{ 1.5 is float }} {{ 1 is integer }} {{ {} is mapping }} {{ [] is sequence }} {{ true is boolean }} "
               "{{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 'a' is in ['a'] }} {{ 1 is eq 1 }} {{ x is not none }}",
               {{"x", 1}}) == "True True True True True True True True True True True True True True True True");
  CHECK(Render("{{ 'x' is mapping }} {{ {} is string }} {{ 'abc' is iterable }} {{ 1 is iterable }} {{ true is true }} {{ 0 is false }}") ==
        "False False True False True False");
}

TEST_CASE("jinja: undefined values print nothing and fail only when used as a value", "[jinja]") {
  CHECK(Render("[{{ nothing }}] {{ nothing | length }} {{ nothing == 1 }} {% for x in nothing %}x{% endfor %}.") ==
        "[] 0 False .");
  CHECK(Render("{{ none.attr is defined }} {{ d.missing is defined }} {{ d.missing | default('-') }}", {{"d", nlohmann::json::object()}}) ==
        "False False -");
  CHECK_THAT(Render("\n  {{ d.missing.deeper }}", {{"d", nlohmann::json::object()}}),
             ContainsSubstring("t.jinja:2:6: 'dict object' has no attribute 'missing'"));
  CHECK_THAT(Render("{{ nothing.attr }}"), ContainsSubstring("t.jinja:1:4: 'nothing' is undefined"));
  CHECK_THAT(Render("{% for x in none %}{% endfor %}"), ContainsSubstring("'NoneType' object is not iterable"));
}

TEST_CASE("jinja: what the engine cannot render fails at load time with line and column", "[jinja]") {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{{ x | frobnicate }}", "t.jinja:1:8: unknown filter 'frobnicate'"},
      {"{% include 'other.jinja' %}", "t.jinja:1:4: the tag {% include %} is not supported: a chat template must be one self-contained file"},
      {"ab\n  {{ foo(1) }}", "t.jinja:2:6: unknown function 'foo'"},
      {"{% for x in y %}", "t.jinja:1:4: this block is never closed: expected {% endfor %}"},
      {"{{ 'a'.bogus() }}", "t.jinja:1:8: unknown method 'bogus'"},
      {"{% if x %}{% break %}{% endif %}", "t.jinja:1:14: {% break %} outside a for loop"},
      {"{{ x is frob }}", "t.jinja:1:9: unknown test 'frob'"},
      {"{{ xs | map('nope') }}", "t.jinja:1:13: unknown filter 'nope' given to map"},
      {"{{ 'unterminated }}", "t.jinja:1:4: the string is not closed"},
      {"{% frobnicate %}", "t.jinja:1:4: unknown tag 'frobnicate'"},
      {"{{ 1 + }}", "t.jinja:1:8: expected an expression, found }}"},
      {"{% if x %}a{% endfor %}", "t.jinja:1:15: unexpected {% endfor %}, expected {% endif %}"},
      {"{% endif %}", "t.jinja:1:4: unexpected {% endif %}: no block is open"},
      {"{{ x", "t.jinja:1:1: the tag is not closed with }}"},
      {"{% for x in xs recursive %}{% endfor %}", "recursive for loops are not supported"},
      {"{{ f(*args) }}", "*args and **kwargs are not supported"},
      {"{{ " + std::string(300, '(') + "1" + std::string(300, ')') + " }}", "nested more than 200 deep"},
  };
  for (const auto& [source, expected] : cases) {
    INFO(source);
    auto t = jinja::Template::Parse(source, "t.jinja");
    REQUIRE_FALSE(t.ok());
    CHECK(t.status().code() == StatusCode::kInvalidArgument);
    CHECK_THAT(t.status().message(), ContainsSubstring(expected));
  }
}

TEST_CASE("jinja: a template's own errors and runaway work come back as errors with a position", "[jinja]") {
  CHECK(Render("{{- raise_exception('Roles must alternate user/assistant') }}") ==
        "ERROR t.jinja:1:5: the chat template raised an error: Roles must alternate user/assistant");
  CHECK(Render("\n{{ 1 + 'a' }}") == "ERROR t.jinja:2:6: unsupported operand type(s) for +: 'int' and 'str'");
  CHECK(Render("{{ 'a' < 1 }}") == "ERROR t.jinja:1:8: '<' not supported between instances of 'str' and 'int'");
  CHECK(Render("{% set ns = 1 %}{% set ns.a = 2 %}") ==
        "ERROR t.jinja:1:20: cannot assign attribute 'a' on ns, a int: only a namespace() takes attributes");
  CHECK_THAT(Render("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}"), ContainsSubstring("macros called more than 32 deep"));
  CHECK_THAT(Render("{% for i in range(100000) %}{% for j in range(1000) %}x{% endfor %}{% endfor %}"),
             ContainsSubstring("more than 5,000,000 steps"));
  // Doubling a string or a list each step would exhaust memory long before the step limit.
  CHECK_THAT(Render("{% set ns = namespace(s='ab') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"),
             ContainsSubstring("a string of more than 64 MiB"));
  CHECK_THAT(Render("{% set ns = namespace(l=[1]) %}{% for i in range(60) %}{% set ns.l = ns.l + ns.l %}{% endfor %}"),
             ContainsSubstring("a list of more than 1000000 items"));
  CHECK_THAT(Render("{{ ('x' * 1000) | replace('x', 'yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy' * 1000) }}"),
             ContainsSubstring("a string of more than 64 MiB"));
  CHECK_THAT(Render("{{ range(1000000) }}"), ContainsSubstring("range: more than 100000 items"));
}

TEST_CASE("jinja: Hugging Face's helpers: strftime_now and the generation block", "[jinja]") {
  CHECK(Render("{{ strftime_now('%Y') | length }}") == "4");
  CHECK(Render("a{% generation %}b{% endgeneration %}c") == "abc");
}

TEST_CASE("jinja: Jinja's own semantics where a simpler engine would differ", "[jinja]") {
  // Each iteration starts from the outer variables (a new frame per item in Jinja).
  CHECK(Render("{% set x = 0 %}{% for i in [1, 2, 3] %}{% set x = x + i %}{{ x }}{% endfor %}{{ x }}") == "1230");
  // Python's chained comparisons.
  CHECK(Render("{{ 1 < 3 < 2 }} {{ 0 < 1 < 2 }} {{ 1 == 1 in [1] }}") == "False True True");
  // Built-in functions are globals a template may test for (Llama 3.2 asks for strftime_now).
  CHECK(Render("{{ strftime_now is defined }} {{ namespace is defined }} {{ frobnicate is defined }}") == "True True False");
  // Hugging Face's tojson: ensure_ascii, indent, separators, sort_keys.
  CHECK(Render("{{ {'a': [1, 2]} | tojson(separators=(',', ':')) }}") == "{\"a\":[1,2]}");
  CHECK(Render("{{ 'é😀' | tojson(ensure_ascii=true) }} {{ 'é' | tojson }}") == "\"\\u00e9\\ud83d\\ude00\" \"é\"");
  CHECK(Render("{{ [1] | tojson(indent='\t') }}") == "[\n\t1\n]");
  // Undefined iterates as empty, so it is iterable; a wrong key type is undefined, not an error.
  CHECK(Render("{{ nothing is iterable }} {{ [1]['a'] is defined }} {{ nothing is sequence }}") == "True False True");
  // Python's whitespace is Unicode's.
  CHECK(Render("{{ 'hi\u3000' | trim }}|{{ '\u00a0x\u00a0'.strip() }}|{{ 'a\u2003b'.split() }}") == "hi|x|['a', 'b']");
  CHECK(Render("{{ 'xyéx'.strip('xé') }}|{{ 'a b  '.split(none, 1) }}") == "y|['a', 'b  ']");
  // Python's round halves to even and keeps an integer; Jinja's indent skips only empty lines.
  CHECK(Render("{{ 2.5 | round }} {{ 3.5 | round }} {{ 5 | round }} {{ 2.675 | round(1, 'floor') }}") == "2.0 4.0 5 2.6");
  CHECK(Render("{{ 'a\n\n b' | indent(2) }}|{{ 'a' | indent(2, true) }}|{{ 'a\n' | indent(2, blank=true) }}|") ==
        "a\n\n   b|  a|a\n  |");
  // The title filter splits at - and spaces only; str.title() at every non-letter.
  CHECK(Render("{{ 'get_weather-now' | title }} {{ \"they're a1b\".title() }}") == "Get_weather-Now They'Re A1B");
  // Positions count characters, as slicing does.
  CHECK(Render("{% set s = 'é-x' %}{{ s.find('x') }} {{ s[s.find('x'):] }} {{ s.count('') }}") == "2 x 4");
  CHECK(Render("{{ 'v1.2'.removeprefix('v') }} {{ 'a.txt'.removesuffix('.txt') }} {{ ' \u00a0'.isspace() }}") == "1.2 a True");
  // raw keeps the newline after {% raw %}; trim_blocks takes the one after {% endraw %}.
  CHECK(Render("{% raw %}\nx{% endraw %}\ny") == "\nxy");
  // A set block renders in its own frame.
  CHECK(Render("{% set y = 1 %}{% set b %}{% set y = 2 %}{{ y }}{% endset %}{{ b }}{{ y }}") == "21");
}

TEST_CASE("jinja: hostile templates fail cleanly: no overflow, no use after free, no cycle, no deep recursion",
          "[jinja]") {
  CHECK(Render("{{ [1, 2, 3][1::9223372036854775807] }} {{ 'abc'[::-9223372036854775807] }}") == "[2] c");
  CHECK_THAT(Render("{{ (-9223372036854775807 - 1) // -1 }}"), ContainsSubstring("integer overflow in //"));
  CHECK_THAT(Render("{{ 9223372036854775807 + 1 }}"), ContainsSubstring("integer overflow in +"));
  CHECK_THAT(Render("{{ 3 ** 100 }}"), ContainsSubstring("integer overflow in **"));
  CHECK(Render("{{ (-1) ** 3 }} {{ 1 ** 99999999999 }} {{ (-9223372036854775807 - 1) % -1 }}") == "-1 1 0");
  CHECK(Render("{% set ns = namespace() %}{% for x in [1, 2] %}{% set ns.l = loop %}{% endfor %}{{ ns.l.length }}") == "2");
  CHECK_THAT(Render("{% set ns = namespace() %}{% set ns.me = ns %}"), ContainsSubstring("a namespace cannot hold a namespace"));
  CHECK_THAT(Render("{% set ns = namespace() %}{% set ns.me = [{'a': ns}] %}"), ContainsSubstring("a namespace cannot hold a namespace"));
  CHECK_THAT(Render("{% set ns = namespace(l=[]) %}{% for i in range(300) %}{% set ns.l = [ns.l] %}{% endfor %}"),
             ContainsSubstring("nested more than 256 deep"));
  std::string chain = "{{ x";
  for (int i = 0; i < 300000; ++i) chain += "|e";
  CHECK_THAT(Render(chain + " }}"), ContainsSubstring("nested more than 200 deep"));
  std::string sum = "{{ 1";
  for (int i = 0; i < 100000; ++i) sum += " + 1";
  CHECK_THAT(Render(sum + " }}"), ContainsSubstring("nested more than 200 deep"));
  CHECK_THAT(Render("{{ 'x' | indent(9223372036854775807) }}"), ContainsSubstring("indent: width must be between 0 and 1000"));
  CHECK_THAT(Render("{{ [1] | tojson(indent=2000000000) }}"), ContainsSubstring("tojson: indent must be between 0 and 64"));
  CHECK(Render("{{ [[1]] | map(attribute='99999999999999999999') | list | length }}") == "1");
  CHECK_THAT(Render("{{ '\\U00110000' }}"), ContainsSubstring("no Unicode character"));
}

TEST_CASE("jinja: the format filter is Python's % formatting; unknown names in an if branch fail only if it runs",
          "[jinja]") {
  CHECK(Render("{{ '%s=%d' | format('n', 3) }} {{ '%05.1f|%-4s|%x|%%' | format(2.25, 'ab', 255) }} {{ '%r' | format('q') }}") ==
        "n=3 002.2|ab  |ff|% 'q'");
  CHECK_THAT(Render("{{ '%s %s' | format(1) }}"), ContainsSubstring("not enough arguments for format string"));
  CHECK_THAT(Render("{{ '%s' | format(1, 2) }}"), ContainsSubstring("not all arguments converted"));
  // As Jinja 3 does: a template may keep code for inputs it is never given (olmo3's
  // `arguments | from_json` for string arguments).
  const std::string branch = "{% if x is string %}{{ x | from_json }}{{ x.update(y) }}{{ frob(x) }}{% else %}ok{% endif %}";
  CHECK(Render(branch, {{"x", {{"a", 1}}}}) == "ok");
  CHECK_THAT(Render(branch, {{"x", "s"}}), ContainsSubstring("t.jinja:1:28: unknown filter 'from_json'"));
  auto t = jinja::Template::Parse(branch, "t.jinja");
  REQUIRE(t.ok());
  REQUIRE((*t)->deferred().size() == 3);
  CHECK_THAT((*t)->deferred()[0], ContainsSubstring("t.jinja:1:28: unknown filter 'from_json' (in a branch: an error only if it runs)"));
  // Outside a branch it still fails the load.
  CHECK_THAT(Render("{{ x | from_json }}"), ContainsSubstring("t.jinja:1:8: unknown filter 'from_json'"));
}
