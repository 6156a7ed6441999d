#!/usr/bin/python3
"""Validates AgentRun manifests against the CRD's openAPIV3Schema the way an API server would.

Run with Debian's /usr/bin/python3 (python3-jsonschema 4.10, python3-yaml 6.0). What a
real API server does, in its order:

  1. null values of fields the schema knows are dropped (pruned before defaulting);
  2. schema `default`s are applied (so rules see defaulted objects);
  3. the structural schema is checked with jsonschema, the Kubernetes extensions turned
     into JSON-schema meaning: x-kubernetes-int-or-string, x-kubernetes-preserve-unknown-
     fields; every other object refuses unknown fields (`kubectl apply`'s default
     --validate=strict: the server answers an unknown field with an error, not pruning);
  4. x-kubernetes-list-type: map keys are unique;
  5. the x-kubernetes-validations CEL rules, transition rules (oldSelf) only with --old.

The CEL evaluator below knows the subset the CRD uses; a rule outside it is an error of
this tool (exit 2), never a pass. YAML is read by the YAML 1.2 core schema, as the C++
parser (common/manifest.cc) reads it, so both see the same types; and a plain scalar that
kubectl's YAML 1.1 (go-yaml v2) would type otherwise (yes, 010, 1_000, 0x1F, a key y) is an
error, as the parser makes it one, since the API server would get another value.

  crd_validate.py CRD MANIFEST [--old OLD]     errors as "path: message"; exit 0 valid, 1 invalid
  crd_validate.py CRD --json MANIFEST...        one JSON result per manifest (valid, errors, defaulted)
  crd_validate.py --serve                       the API double's validator: JSON requests on stdin,
                                                answers on stdout, one a line (see serve())
  crd_validate.py CRD --lint [--chart CHART]    structural and documentation checks of the CRD itself,
                                                and that every CEL function it calls exists in the
                                                oldest Kubernetes the chart's kubeVersion allows
                                                (CHART: charts/carapace/Chart.yaml by default)
Exit 2: the tool cannot judge (unreadable input, unsupported CEL).
"""

import copy
import fractions
import json
import math
import os
import re
import sys

import jsonschema
import yaml

API_VERSION = "carapace.dev/v1alpha1"
KIND = "AgentRun"


class Unsupported(Exception):
    """The CRD uses something this validator does not model: a failure, never a pass."""


# ---------------------------------------------------------------------------------------
# YAML 1.2 core schema (PyYAML implements 1.1, where yes/no/on/off are booleans).


class CoreLoader(yaml.SafeLoader):
    def construct_mapping(self, node, deep=False):
        # Keys are their text, as the parser takes them (JSON keys are strings): `true: 1` is
        # the key "true", not the boolean.
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            return {(k.value if isinstance(k, yaml.ScalarNode) else self.construct_object(k, deep=deep)):
                    self.construct_object(v, deep=deep) for k, v in node.value}
        return super().construct_mapping(node, deep)


CoreLoader.yaml_implicit_resolvers = {}
for _tag, _regex, _first in [
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    ("tag:yaml.org,2002:int", r"^[-+]?[0-9]+$", list("-+0123456789")),
    ("tag:yaml.org,2002:float", r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$",
     list("-+0123456789.")),
]:
    CoreLoader.add_implicit_resolver(_tag, re.compile(_regex), _first)


def _core_int(loader, node):
    return int(loader.construct_scalar(node), 10)


def _core_float(loader, node):
    return float(loader.construct_scalar(node))


def _core_bool(loader, node):
    return loader.construct_scalar(node).lower() == "true"


def _core_timestamp(loader, node):  # 1.2 core has no timestamps: a string
    return loader.construct_scalar(node)


CoreLoader.add_constructor("tag:yaml.org,2002:int", _core_int)
CoreLoader.add_constructor("tag:yaml.org,2002:float", _core_float)
CoreLoader.add_constructor("tag:yaml.org,2002:bool", _core_bool)
CoreLoader.add_constructor("tag:yaml.org,2002:timestamp", _core_timestamp)


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=CoreLoader)


# ---------------------------------------------------------------------------------------
# YAML 1.1 as kubectl and Helm read it: sigs.k8s.io/yaml uses go-yaml v2, whose resolve()
# types plain scalars by YAML 1.1 rules. Mirrors CheckYaml11Scalars in common/manifest.cc.


class _PlainMarkingLoader(CoreLoader):
    """Composes nodes and marks the plain, untagged scalars (the only ones a resolver types)."""

    def compose_scalar_node(self, anchor):
        event = self.peek_event()
        node = super().compose_scalar_node(anchor)
        node.plain = event.tag is None and event.style is None
        return node


_GO_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
_DOT_FLOAT = re.compile(r"^\.[0-9]+(_[0-9]+)*([eE][-+]?[0-9]+(_[0-9]+)*)?\Z")
_Y11_BOOL = {**{w: True for w in ("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON")},
             **{w: False for w in ("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF")}}
_Y11_NULL = {"", "~", "null", "Null", "NULL"}
_Y11_SPECIAL_FLOAT = {**{w: math.nan for w in (".nan", ".NaN", ".NAN")},
                      **{w: math.inf for w in (".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF")},
                      **{w: -math.inf for w in ("-.inf", "-.Inf", "-.INF")}}
_INT64 = (-(1 << 63), (1 << 63) - 1)


def _go_parse_uint(s):
    """strconv.ParseUint(s, 0, 64): 0b/0o/0x prefixes, a leading 0 is octal."""
    if not s:
        return None
    base = 10
    if s[0] == "0":
        if len(s) >= 3 and s[1].lower() in "box":
            base, s = {"b": 2, "o": 8, "x": 16}[s[1].lower()], s[2:]
        else:
            base, s = 8, s[1:]
    digits = "0123456789abcdef"[:base]
    if any(c.lower() not in digits for c in s):
        return None
    v = int(s, base) if s else 0
    return v if v < (1 << 64) else None


def _go_parse_int(s, base=0):
    neg = s[:1] == "-"
    if s[:1] in ("+", "-"):
        s = s[1:]
    if not s or s[0] in "+-":
        return None
    if base == 2:
        v = int(s, 2) if set(s) <= {"0", "1"} else None
    else:
        v = _go_parse_uint(s)
    if v is None:
        return None
    v = -v if neg else v
    return v if _INT64[0] <= v <= _INT64[1] else None


def _go_parse_float(s):
    v = float(s)
    return None if math.isinf(v) else v  # an overflow is an error in Go: the scalar stays text


def yaml11_reading(text):
    """What go-yaml v2 makes of a plain scalar: None, a bool, a number or the text itself.
    Timestamps decoded into interface{} stay text, and there are no sexagesimal numbers."""
    c = text[:1]
    if not text or c in "yYnNtTfFoO~":
        if text in _Y11_BOOL:
            return _Y11_BOOL[text]
        return None if text in _Y11_NULL else text
    if text in _Y11_SPECIAL_FLOAT:
        return _Y11_SPECIAL_FLOAT[text]
    if c == ".":
        return _go_parse_float(text.replace("_", "")) if _DOT_FLOAT.match(text) else text
    if c not in "+-0123456789":
        return text
    plain = text.replace("_", "")  # go-yaml drops every underscore first
    for v in (_go_parse_int(plain), None if plain[0] in "+-" else _go_parse_uint(plain)):
        if v is not None:
            return v
    if _GO_FLOAT.match(plain):
        v = _go_parse_float(plain)
        if v is not None:
            return v
    if plain.startswith("0b"):
        v = _go_parse_int(plain[2:], 2)
    elif plain.startswith("-0b"):
        v = _go_parse_int("-" + plain[3:], 2)
    else:
        v = None
    return text if v is None else v


def yaml12_reading(text):
    """What the parser (YamlToJson) and CoreLoader make of a plain scalar; numbers out of
    range stay text, as in the parser."""
    if re.match(r"^(?:~|null|Null|NULL|)\Z", text):
        return None
    if re.match(r"^(?:true|True|TRUE|false|False|FALSE)\Z", text):
        return text.lower() == "true"
    if re.match(r"^[-+]?[0-9]+\Z", text):
        v = int(text, 10)
        return v if _INT64[0] <= v <= _INT64[1] else text
    if re.match(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?\Z", text):
        v = float(text)
        # std::stod throws on ERANGE: overflow, and underflow to zero or a subnormal.
        underflow = abs(v) < sys.float_info.min and re.search(r"[1-9]", re.split(r"[eE]", text)[0])
        return text if math.isinf(v) or underflow else v
    return text


def _same_json(a, b):
    """Equal as JSON values: numbers by value (8 and 8.0 are one JSON number), NaN never."""
    num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    if num(a) and num(b):
        return a == b
    return type(a) is type(b) and a == b


def _describe(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"the boolean {'true' if v else 'false'}"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    if isinstance(v, float) and math.isinf(v):
        return "infinity" if v > 0 else "-infinity"
    return f"the number {int(v) if v == int(v) and abs(v) < 1e18 else v!r}"


def _key_keeps_text(text, v):
    """Whether the JSON key sigs.k8s.io/yaml makes of a typed key is its own text."""
    if isinstance(v, str):
        return True
    if isinstance(v, bool):
        return text == ("true" if v else "false")
    if isinstance(v, int):
        return text == str(v)
    return False  # floats and null: not predicted, so refused


def yaml11_errors(path):
    """(path, message) for every plain scalar, key or value, that kubectl would type otherwise."""
    with open(path, encoding="utf-8") as f:
        root = yaml.compose(f, Loader=_PlainMarkingLoader)
    errs = []

    def walk(node, parts):
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if not isinstance(k, yaml.ScalarNode):
                    continue
                here = parts + [k.value]
                if k.plain:
                    r11 = yaml11_reading(k.value)
                    if not _key_keeps_text(k.value, r11):
                        errs.append((fmt_path(here), f"the key {k.value!r} is read as {_describe(r11)} by kubectl "
                                                     f"(YAML 1.1), not as the text {k.value!r}; quote it"))
                walk(v, here)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, parts + [i])
        elif isinstance(node, yaml.ScalarNode) and node.plain:
            r11, r12 = yaml11_reading(node.value), yaml12_reading(node.value)
            if not _same_json(r11, r12):
                hint = ", or write the number in plain decimal" if not isinstance(r12, str) and r11 is not None \
                    and not isinstance(r11, (bool, str)) else ""
                errs.append((fmt_path(parts), f"{node.value!r} is read as {_describe(r11)} by kubectl (YAML 1.1) "
                                              f"but as {_describe(r12)} here; quote it{hint}"))

    if root is not None:
        walk(root, [])
    return errs


# ---------------------------------------------------------------------------------------
# Quantities (k8s.io/apimachinery resource.Quantity), for the CEL quantity() library.

_QUANTITY = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?\Z")
_SUFFIX = {"": 1, "n": fractions.Fraction(1, 10**9), "u": fractions.Fraction(1, 10**6),
           "m": fractions.Fraction(1, 1000), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
           "P": 10**15, "E": 10**18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50,
           "Ei": 2**60}


class Quantity:
    def __init__(self, text):
        m = _QUANTITY.match(text)
        if not m:
            raise CelError(f"quantity: invalid quantity {text!r}")
        suffix = m.group(2) or ""
        scale = fractions.Fraction(10) ** int(suffix[1:]) if suffix[:1] in ("e", "E") else _SUFFIX[suffix]
        self.value = fractions.Fraction(m.group(1)) * scale

    def compare(self, other):
        if not isinstance(other, Quantity):
            raise CelError("no such overload: quantity compared with a non-quantity")
        return (self.value > other.value) - (self.value < other.value)


# ---------------------------------------------------------------------------------------
# CEL: the subset the CRD's rules use.


class CelError(Exception):
    """A rule that fails at run time (no such key, wrong types): the object is invalid."""


_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>[0-9]+(?![0-9.eEuU]))
  | (?P<str>'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")
  | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[<>!?:.,()\[\]+\-])
""", re.VERBOSE)

_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r"}


def _unquote(text):
    out, i, body = [], 0, text[1:-1]
    while i < len(body):
        c = body[i]
        if c == "\\":
            nxt = body[i + 1]
            if nxt not in _ESCAPES:
                raise Unsupported(f"CEL escape \\{nxt} in {text}")
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def tokenize(src):
    pos, out = 0, []
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if not m:
            raise Unsupported(f"CEL syntax not supported at {src[pos:pos + 20]!r} in: {src}")
        pos = m.end()
        kind = m.lastgroup
        if kind == "ws":
            continue
        if kind == "num":
            out.append(("lit", int(m.group())))
        elif kind == "str":
            out.append(("lit", _unquote(m.group())))
        elif kind == "id":
            word = m.group()
            if word in ("true", "false"):
                out.append(("lit", word == "true"))
            elif word == "null":
                out.append(("lit", None))
            elif word == "in":
                out.append(("op", "in"))
            else:
                out.append(("id", word))
        else:
            out.append(("op", m.group()))
    out.append(("end", None))
    return out


METHODS = {"size", "matches", "lowerAscii", "startsWith", "endsWith", "contains", "compareTo",
           "isGreaterThan", "isLessThan", "all", "exists"}
FUNCTIONS = {"has", "size", "quantity", "isQuantity"}

# The oldest Kubernetes (major, minor) whose API server accepts each function in a NEW CRD,
# for `--lint` against the chart's kubeVersion. A library's IntroducedVersion in
# k8s.io/apiserver/pkg/cel/environment/base.go is not enough: new expressions compile in the
# environment of DefaultCompatibilityVersion(), the previous minor release, so a library
# introduced in 1.N is usable in a new CRD from 1.N+1. Sources: that file, and the "CEL
# options, language features, and libraries" table of
# https://kubernetes.io/docs/reference/using-api/cel/ .
#   - 1.25: x-kubernetes-validations (KEP-2876) beta and on by default, transition rules
#     (oldSelf) included; the CEL standard definitions (has, size, matches, startsWith,
#     endsWith, contains, the all/exists macros) and the extended strings library
#     (lowerAscii; the docs list it from 1.25).
#   - 1.28: a rule's fieldPath and reason (kubernetes/kubernetes#118041).
#   - 1.29: the Kubernetes quantity library (quantity, isQuantity and its methods):
#     IntroducedVersion 1.28 in base.go, usable in new CRDs from 1.29; the docs list it as 1.29+.
CEL_SINCE = {
    "x-kubernetes-validations": (1, 25), "oldSelf": (1, 25),
    "has": (1, 25), "size": (1, 25), "matches": (1, 25), "startsWith": (1, 25), "endsWith": (1, 25),
    "contains": (1, 25), "all": (1, 25), "exists": (1, 25), "lowerAscii": (1, 25),
    "fieldPath": (1, 28), "reason": (1, 28),
    "quantity": (1, 29), "isQuantity": (1, 29), "compareTo": (1, 29), "isGreaterThan": (1, 29),
    "isLessThan": (1, 29),
}
assert METHODS | FUNCTIONS <= set(CEL_SINCE), "every function the evaluator accepts needs its Kubernetes version"


class Parser:
    """Recursive descent, CEL precedence: ?: < || < && < relations/in < + - < unary < member."""

    def __init__(self, src):
        self.src, self.toks, self.i = src, tokenize(src), 0

    def peek(self):
        return self.toks[self.i]

    def take(self, kind=None, value=None):
        tok = self.toks[self.i]
        if (kind and tok[0] != kind) or (value is not None and tok[1] != value):
            raise Unsupported(f"CEL: expected {value or kind}, found {tok[1]!r} in: {self.src}")
        self.i += 1
        return tok

    def is_op(self, *ops):
        tok = self.peek()
        return tok[0] == "op" and tok[1] in ops

    def parse(self):
        node = self.cond()
        self.take("end")
        return node

    def cond(self):
        c = self.binary(0)
        if self.is_op("?"):
            self.take()
            a = self.cond()
            self.take("op", ":")
            return ("?:", c, a, self.cond())
        return c

    LEVELS = [("||",), ("&&",), ("==", "!=", "<", "<=", ">", ">=", "in"), ("+", "-")]

    def binary(self, level):
        if level == len(self.LEVELS):
            return self.unary()
        node = self.binary(level + 1)
        while self.is_op(*self.LEVELS[level]):
            op = self.take()[1]
            node = (op, node, self.binary(level + 1))
        return node

    def unary(self):
        if self.is_op("!"):
            self.take()
            return ("!", self.unary())
        if self.is_op("-"):
            self.take()
            return ("neg", self.unary())
        return self.member()

    def args(self):
        self.take("op", "(")
        out = []
        if not self.is_op(")"):
            out.append(self.cond())
            while self.is_op(","):
                self.take()
                out.append(self.cond())
        self.take("op", ")")
        return out

    def member(self):
        node = self.primary()
        while True:
            if self.is_op("."):
                self.take()
                name = self.take("id")[1]
                if self.is_op("("):
                    if name not in METHODS:
                        raise Unsupported(f"CEL method {name}() not supported in: {self.src}")
                    args = self.args()
                    if name in ("all", "exists"):
                        if len(args) != 2 or args[0][0] != "var":
                            raise Unsupported(f"CEL macro {name} needs (var, predicate) in: {self.src}")
                        node = ("macro", name, node, args[0][1], args[1])
                    else:
                        node = ("call", name, node, args)
                else:
                    node = ("field", node, name)
            elif self.is_op("["):
                self.take()
                idx = self.cond()
                self.take("op", "]")
                node = ("index", node, idx)
            else:
                return node

    def primary(self):
        tok = self.take()
        if tok[0] == "lit":
            return ("lit", tok[1])
        if tok[0] == "id":
            if self.is_op("("):
                if tok[1] not in FUNCTIONS:
                    raise Unsupported(f"CEL function {tok[1]}() not supported in: {self.src}")
                args = self.args()
                if tok[1] == "has":
                    if len(args) != 1 or args[0][0] != "field":
                        raise Unsupported(f"has() takes a field selection in: {self.src}")
                    return ("has", args[0][1], args[0][2])
                return ("func", tok[1], args)
            return ("var", tok[1])
        if tok == ("op", "("):
            node = self.cond()
            self.take("op", ")")
            return node
        if tok == ("op", "["):
            items = []
            if not self.is_op("]"):
                items.append(self.cond())
                while self.is_op(","):
                    self.take()
                    items.append(self.cond())
            self.take("op", "]")
            return ("list", items)
        raise Unsupported(f"CEL: unexpected {tok[1]!r} in: {self.src}")


def compile_rule(src):
    return Parser(src).parse()


def _same_type(a, b):
    num = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, num) and isinstance(b, num):
        return True
    return type(a) is type(b)


def _size(v):
    if isinstance(v, (str, list, dict)):
        return len(v)
    raise CelError(f"no such overload: size({type(v).__name__})")


def _cel_regex(pattern):
    try:
        return re.compile(go_to_python_regex(pattern))
    except re.error as e:
        raise Unsupported(f"regex {pattern!r}: {e}")


def evaluate(node, env):
    op = node[0]
    if op == "lit":
        return node[1]
    if op == "var":
        if node[1] not in env:
            raise Unsupported(f"CEL variable {node[1]} is not bound here")
        return env[node[1]]
    if op == "list":
        return [evaluate(n, env) for n in node[1]]
    if op == "field":
        obj = evaluate(node[1], env)
        if not isinstance(obj, dict):
            raise CelError(f"no such field {node[2]} on {type(obj).__name__}")
        if node[2] not in obj:
            raise CelError(f"no such key: {node[2]}")
        return obj[node[2]]
    if op == "has":
        obj = evaluate(node[1], env)
        if not isinstance(obj, dict):
            raise CelError(f"has() on {type(obj).__name__}")
        return node[2] in obj
    if op == "index":
        obj, idx = evaluate(node[1], env), evaluate(node[2], env)
        try:
            return obj[idx]
        except (KeyError, IndexError, TypeError):
            raise CelError(f"no such key or index: {idx!r}")
    if op in ("&&", "||"):
        # CEL's logical operators are commutative over errors: false && error is false.
        decisive = op == "||"
        try:
            left = evaluate(node[1], env)
        except CelError:
            right = evaluate(node[2], env)
            if right is decisive:
                return right
            raise
        if not isinstance(left, bool):
            raise CelError(f"{op} of a non-bool")
        if left is decisive:
            return left
        right = evaluate(node[2], env)
        if not isinstance(right, bool):
            raise CelError(f"{op} of a non-bool")
        return right
    if op == "!":
        v = evaluate(node[1], env)
        if not isinstance(v, bool):
            raise CelError("! of a non-bool")
        return not v
    if op == "neg":
        v = evaluate(node[1], env)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise CelError("- of a non-number")
        return -v
    if op == "?:":
        c = evaluate(node[1], env)
        if not isinstance(c, bool):
            raise CelError("?: condition is not a bool")
        return evaluate(node[2] if c else node[3], env)
    if op in ("==", "!="):
        a, b = evaluate(node[1], env), evaluate(node[2], env)
        eq = _same_type(a, b) and a == b
        return eq if op == "==" else not eq
    if op in ("<", "<=", ">", ">="):
        a, b = evaluate(node[1], env), evaluate(node[2], env)
        if not _same_type(a, b) or isinstance(a, (bool, list, dict)) or a is None:
            raise CelError(f"no such overload: {type(a).__name__} {op} {type(b).__name__}")
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
    if op in ("+", "-"):
        a, b = evaluate(node[1], env), evaluate(node[2], env)
        if op == "+" and isinstance(a, str) and isinstance(b, str):
            return a + b
        if op == "+" and isinstance(a, list) and isinstance(b, list):
            return a + b
        if isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool) and not isinstance(b, bool):
            return a + b if op == "+" else a - b
        raise CelError(f"no such overload: {type(a).__name__} {op} {type(b).__name__}")
    if op == "in":
        a, b = evaluate(node[1], env), evaluate(node[2], env)
        if isinstance(b, list):
            return any(_same_type(a, x) and a == x for x in b)
        if isinstance(b, dict):
            return a in b
        raise CelError("in: the right side is not a list or map")
    if op == "func":
        args = [evaluate(a, env) for a in node[2]]
        if node[1] == "size" and len(args) == 1:
            return _size(args[0])
        if node[1] == "quantity" and len(args) == 1 and isinstance(args[0], str):
            return Quantity(args[0])
        if node[1] == "isQuantity" and len(args) == 1 and isinstance(args[0], str):
            return bool(_QUANTITY.match(args[0]))
        raise CelError(f"no such overload: {node[1]}")
    if op == "call":
        target = evaluate(node[2], env)
        args = [evaluate(a, env) for a in node[3]]
        name = node[1]
        if name == "size" and not args:
            return _size(target)
        if isinstance(target, str) and len(args) == 1 and isinstance(args[0], str):
            if name == "matches":
                return _cel_regex(args[0]).search(target) is not None
            if name == "startsWith":
                return target.startswith(args[0])
            if name == "endsWith":
                return target.endswith(args[0])
            if name == "contains":
                return args[0] in target
        if isinstance(target, str) and name == "lowerAscii" and not args:
            return "".join(c.lower() if c.isascii() else c for c in target)
        if isinstance(target, Quantity) and len(args) == 1:
            c = target.compare(args[0])
            if name == "compareTo":
                return c
            if name == "isGreaterThan":
                return c > 0
            if name == "isLessThan":
                return c < 0
        raise CelError(f"no such overload: {type(target).__name__}.{name}()")
    if op == "macro":
        name, target, var, pred = node[1], evaluate(node[2], env), node[3], node[4]
        items = list(target) if isinstance(target, (list, dict)) else None
        if items is None:
            raise CelError(f"{name}() on a non-collection")
        results = []
        for item in items:
            v = evaluate(pred, {**env, var: item})
            if not isinstance(v, bool):
                raise CelError(f"{name}() predicate is not a bool")
            results.append(v)
        return all(results) if name == "all" else any(results)
    raise Unsupported(f"CEL node {op}")


# ---------------------------------------------------------------------------------------
# Regexes: Go's RE2 `$` matches only at the end; Python's also before a final newline.


def go_to_python_regex(pattern):
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            # a leading ] or ^] is literal inside a class
            if pattern[i + 1:i + 2] == "^":
                out.append("[^")
                i += 2
                continue
        elif c == "$":
            out.append(r"\Z")
            i += 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


# ---------------------------------------------------------------------------------------
# The Kubernetes schema as JSON schema.

VALUE_KEYWORDS = ("enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength",
                  "maxLength", "minItems", "maxItems", "required", "multipleOf", "uniqueItems",
                  "minProperties", "maxProperties")
KNOWN_KEYS = set(VALUE_KEYWORDS) | {
    "type", "description", "default", "properties", "items", "additionalProperties", "pattern", "format",
    "anyOf", "allOf", "oneOf", "not", "nullable", "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields", "x-kubernetes-validations", "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys", "x-kubernetes-map-type", "x-kubernetes-embedded-resource", "title", "example"}


def to_json_schema(node, junctor=False):
    unknown = set(node) - KNOWN_KEYS
    if unknown:
        raise Unsupported(f"schema keywords not modelled: {sorted(unknown)}")
    out = {k: node[k] for k in VALUE_KEYWORDS if k in node}
    if "pattern" in node:
        out["pattern"] = go_to_python_regex(node["pattern"])
        out["x-go-pattern"] = node["pattern"]  # as written, for messages
    if node.get("x-kubernetes-int-or-string"):
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    elif "type" in node:
        out["type"] = [node["type"], "null"] if node.get("nullable") else node["type"]
    if "properties" in node:
        out["properties"] = {k: to_json_schema(v, junctor) for k, v in node["properties"].items()}
    if "items" in node:
        out["items"] = to_json_schema(node["items"], junctor)
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = to_json_schema(node["additionalProperties"], junctor)
    elif node.get("type") == "object" and not node.get("x-kubernetes-preserve-unknown-fields") and not junctor:
        out["additionalProperties"] = False
    for j in ("anyOf", "allOf", "oneOf"):
        if j in node:
            branches = [to_json_schema(b, True) for b in node[j]]
            if "anyOf" in out and j == "anyOf":  # int-or-string already uses anyOf
                out.setdefault("allOf", []).append({"anyOf": branches})
            else:
                out[j] = branches
    if "not" in node:
        out["not"] = to_json_schema(node["not"], True)
    return out


def _strict_integer(checker, instance):
    # kube-openapi's `type: integer` takes a JSON number with an integral value (50.0), so the
    # parser does too (ObjectReader::Int); 1.5 and booleans are not integers.
    if isinstance(instance, bool):
        return False
    return isinstance(instance, int) or (isinstance(instance, float) and instance.is_integer())


Validator = jsonschema.validators.extend(
    jsonschema.Draft7Validator,
    type_checker=jsonschema.Draft7Validator.TYPE_CHECKER.redefine("integer", _strict_integer))


def fmt_path(parts):
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def schema_errors(schema, value, base, root=False):
    errs = []
    js = to_json_schema(schema)
    if root and "metadata" in js.get("properties", {}):
        # ObjectMeta: the API server checks its fields itself (validate() below); the CRD
        # may only restrict name and generateName.
        js["properties"]["metadata"].pop("additionalProperties", None)
    for e in Validator(js).iter_errors(value):
        path = base + list(e.absolute_path)
        if e.validator == "additionalProperties" and e.validator_value is False:
            known = set(e.schema.get("properties", {}))
            for extra in sorted(set(e.instance) - known):
                errs.append((fmt_path(path + [extra]), "unknown field"))
        elif e.validator == "required":
            m = re.match(r"^'(.*)' is a required property$", e.message)
            errs.append((fmt_path(path + [m.group(1)] if m else path), "Required value"))
        else:
            errs.append((fmt_path(path), e.message))
    return errs


# ---------------------------------------------------------------------------------------
# Walks over schema and value: pruning nulls, defaults, list-map keys, CEL rules.


def prune_nulls(schema, value):
    if isinstance(value, dict) and not schema.get("x-kubernetes-preserve-unknown-fields"):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for k in list(value):
            # A map's values (resources.requests.cpu: null) are pruned like properties.
            sub = props.get(k, extra if isinstance(extra, dict) else None)
            if value[k] is None and sub is not None and not sub.get("nullable"):
                del value[k]
            elif sub is not None:
                prune_nulls(sub, value[k])
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            prune_nulls(schema["items"], item)


def apply_defaults(schema, value):
    if isinstance(value, dict):
        for k, sub in schema.get("properties", {}).items():
            if k not in value and "default" in sub:
                value[k] = copy.deepcopy(sub["default"])
            if k in value:
                apply_defaults(sub, value[k])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for k in value:
                apply_defaults(extra, value[k])
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            apply_defaults(schema["items"], item)


def list_map_errors(schema, value, path):
    errs = []
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for k, v in value.items():
            if k in props:
                errs += list_map_errors(props[k], v, path + [k])
    elif isinstance(value, list) and "items" in schema:
        if schema.get("x-kubernetes-list-type") == "map":
            seen = set()
            keys = schema["x-kubernetes-list-map-keys"]
            for i, item in enumerate(value):
                key = tuple(json.dumps(item.get(k), sort_keys=True) for k in keys)
                if key in seen:
                    errs.append((fmt_path(path + [i]), "Duplicate value: " +
                                 ", ".join(f"{k}={item.get(k)!r}" for k in keys)))
                seen.add(key)
        elif schema.get("x-kubernetes-list-type") == "set":
            raise Unsupported("x-kubernetes-list-type: set")
        for i, item in enumerate(value):
            errs += list_map_errors(schema["items"], item, path + [i])
    return errs


def _field_path_parts(field_path):
    if not re.match(r"^(\.[A-Za-z_][A-Za-z0-9_]*)+$", field_path):
        raise Unsupported(f"fieldPath {field_path!r}")
    return field_path[1:].split(".")


def _rule_uses_old(rule):
    return any(t == ("id", "oldSelf") for t in tokenize(rule))


def cel_errors(schema, value, path, old=None, has_old=False, in_list=False, fmt=lambda node, rule, msg: msg):
    """Evaluates every rule where its schema node has a value; transition rules where the old
    object has a value at the same place (lists: only list-maps correlate, not modelled)."""
    errs = []
    for r in schema.get("x-kubernetes-validations", []):
        uses_old = _rule_uses_old(r["rule"])
        if uses_old and in_list:
            raise Unsupported("a transition rule inside a list")
        if uses_old and not has_old:
            continue
        env = {"self": value}
        if uses_old:
            env["oldSelf"] = old
        where = path + (_field_path_parts(r["fieldPath"]) if "fieldPath" in r else [])
        try:
            ok = evaluate(compile_rule(r["rule"]), env)
            if not isinstance(ok, bool):
                raise Unsupported(f"rule does not give a bool: {r['rule']}")
            if not ok:
                errs.append((fmt_path(where), fmt(schema, r, r.get("message", "failed rule: " + r["rule"]))))
        except CelError as e:
            errs.append((fmt_path(where), fmt(schema, r, f"rule {r['rule']!r}: {e}")))
    if isinstance(value, dict):
        for k, sub in schema.get("properties", {}).items():
            if k in value:
                sub_has_old = has_old and isinstance(old, dict) and k in old
                errs += cel_errors(sub, value[k], path + [k], old[k] if sub_has_old else None, sub_has_old, in_list,
                                   fmt)
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errs += cel_errors(schema["items"], item, path + [i], None, False, True, fmt)
    return errs


# ---------------------------------------------------------------------------------------
# The object as a whole.

# ObjectMeta's fields; the API server checks their types (the CRD may restrict only name).
OBJECT_META = {"name", "generateName", "namespace", "labels", "annotations", "uid", "resourceVersion",
               "generation", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
               "ownerReferences", "finalizers", "managedFields", "selfLink"}


def load_crd_schema(crd_path):
    crd = load_yaml(crd_path)
    versions = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    if len(versions) != 1:
        raise Unsupported("the CRD has no single v1alpha1 version")
    schema = versions[0]["schema"]["openAPIV3Schema"]
    _compile_all(schema)  # a rule this tool cannot read fails every run, not only some
    return schema


def _compile_all(node):
    if isinstance(node, dict):
        for r in node.get("x-kubernetes-validations", []):
            compile_rule(r["rule"])
        for v in node.values():
            _compile_all(v)
    elif isinstance(node, list):
        for v in node:
            _compile_all(v)


def prepare(schema, manifest):
    """Pruning and defaulting as the API server does; returns the object it would store."""
    obj = copy.deepcopy(manifest)
    if isinstance(obj, dict):
        obj.pop("status", None)  # the main resource ignores status (status subresource)
        prune_nulls(schema, obj)
        apply_defaults(schema, obj)
    return obj


def validate(schema, manifest, old_manifest=None, yaml_errors=()):
    """Returns (errors, defaulted object); errors are (path, message) pairs. `yaml_errors`:
    yaml11_errors() of the manifest's file."""
    if not isinstance(manifest, dict):
        return [("(document)", "an AgentRun must be a mapping")], manifest
    obj = prepare(schema, manifest)
    errs = []
    for key, want in (("apiVersion", API_VERSION), ("kind", KIND)):
        if key not in obj:
            errs.append((key, "Required value"))
        elif obj[key] != want:
            errs.append((key, f"must be {want}, got {obj[key]!r}"))
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        errs.append(("metadata", "Required value" if meta is None else "must be a mapping"))
    else:
        if "name" not in meta and "generateName" not in meta:
            errs.append(("metadata.name", "Required value: name or generateName is required"))
        for k in sorted(set(meta) - OBJECT_META):
            errs.append((f"metadata.{k}", "unknown field"))
        for k in ("labels", "annotations"):
            if k in meta and meta[k] is not None:
                if not isinstance(meta[k], dict):
                    errs.append((f"metadata.{k}", "must be a mapping of strings"))
                    continue
                for lk, lv in meta[k].items():
                    if not isinstance(lv, str):
                        errs.append((f"metadata.{k}.{lk}", "must be a string"))
    for k in ("name", "generateName", "namespace"):
        if isinstance(meta, dict) and k in meta and not isinstance(meta[k], str):
            errs.append((f"metadata.{k}", "must be a string"))
    errs += schema_errors(schema, obj, [], root=True)
    errs += list_map_errors(schema, obj, [])
    if not errs:  # rules see only objects of the schema's shape
        old = prepare(schema, old_manifest) if old_manifest is not None else None
        errs += cel_errors(schema, obj, [], old, old is not None)
    return sorted(set(errs) | set(yaml_errors)), obj


# ---------------------------------------------------------------------------------------
# --serve: the Kubernetes API double's validator (tests/support/kube_api_double_crd_validator.cc).
# What the apiextensions-apiserver does to a custom resource on create and update, with its
# messages: structural pruning of undeclared fields (pkg/apiserver/schema/pruning), nulls
# pruned, defaults (pkg/apiserver/schema/defaulting), the OpenAPI schema checks
# (kube-openapi validate errors as apiextensions turns them into field errors), list-map
# keys, and the x-kubernetes-validations rules (pkg/apiserver/schema/cel/validation.go),
# transition rules against the stored object.


def prune_unknown(schema, value, path, unknown, root=False):
    """Drops the fields the schema does not declare; their paths go to `unknown`."""
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields")
        for k in list(value):
            if root and k in ("apiVersion", "kind"):
                continue
            if root and k == "metadata":  # ObjectMeta: only its own fields survive decoding
                if isinstance(value[k], dict):
                    for mk in list(value[k]):
                        if mk not in OBJECT_META:
                            unknown.append(fmt_path(path + ["metadata", mk]))
                            del value[k][mk]
                continue
            if k in props:
                prune_unknown(props[k], value[k], path + [k], unknown)
            elif isinstance(extra, dict):
                prune_unknown(extra, value[k], path + [k], unknown)
            elif not preserve and extra is not True:
                unknown.append(fmt_path(path + [k]))
                del value[k]
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            prune_unknown(schema["items"], item, path + [i], unknown)


def _go_type(v):
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer()):
        return "integer"
    return {float: "number", str: "string", dict: "object", list: "array", type(None): "null"}[type(v)]


def _go_value(v):
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return json.dumps(v) if isinstance(v, (str, int, float, bool)) or v is None else f'"{_go_type(v)}"'


def k8s_schema_errors(schema, value):
    js = to_json_schema(schema)
    if "metadata" in js.get("properties", {}):
        js["properties"]["metadata"].pop("additionalProperties", None)
    out = []
    for e in Validator(js).iter_errors(value):
        parts = list(e.absolute_path)
        path = fmt_path(parts) or "<root>"
        v, want, got = e.validator, e.validator_value, e.instance
        if v == "required":
            m = re.match(r"^'(.*)' is a required property$", e.message)
            out.append(f"{fmt_path(parts + [m.group(1)] if m else parts)}: Required value")
        elif v == "enum":
            out.append(f"{path}: Unsupported value: {_go_value(got)}: supported values: " +
                       ", ".join(json.dumps(x) for x in want))
        elif v == "type":
            want = want[0] if isinstance(want, list) else want
            out.append(f'{path}: Invalid value: "{_go_type(got)}": {path} in body must be of type {want}: '
                       f'"{_go_type(got)}"')
        elif v == "pattern":
            out.append(f"{path}: Invalid value: {_go_value(got)}: {path} in body should match "
                       f"'{e.schema.get('x-go-pattern', want)}'")
        elif v == "maxLength":
            out.append(f"{path}: Too long: may not be more than {want} bytes")
        elif v == "minLength":
            out.append(f"{path}: Invalid value: {_go_value(got)}: {path} in body should be at least {want} chars long")
        elif v == "minimum":
            out.append(f"{path}: Invalid value: {_go_value(got)}: {path} in body should be greater than or equal "
                       f"to {want}")
        elif v == "maximum":
            out.append(f"{path}: Invalid value: {_go_value(got)}: {path} in body should be less than or equal to "
                       f"{want}")
        elif v == "maxItems":
            out.append(f"{path}: Too many: {len(got)}: must have at most {want} items")
        elif v == "minItems":
            out.append(f"{path}: Invalid value: {len(got)}: {path} in body should have at least {want} items")
        elif v == "maxProperties":
            out.append(f"{path}: Too many: {len(got)}: must have at most {want} items")
        else:
            out.append(f"{path}: Invalid value: {_go_value(got)}: {e.message}")
    return out


_REASONS = {"FieldValueRequired": "Required value", "FieldValueForbidden": "Forbidden",
            "FieldValueDuplicate": "Duplicate value"}


def _k8s_rule_message(node, rule, message):
    reason = rule.get("reason", "FieldValueInvalid")
    if reason in _REASONS:
        return f"{_REASONS[reason]}: {message}"
    return f'Invalid value: "{node.get("type", "object")}": {message}'


def serve_validate(schema, manifest, old_manifest=None):
    """(errors, unknown field paths, the object to store); errors as the server words them."""
    obj = copy.deepcopy(manifest)
    obj.pop("status", None)
    unknown = []
    prune_unknown(schema, obj, [], unknown, root=True)
    prune_nulls(schema, obj)
    apply_defaults(schema, obj)
    errs = k8s_schema_errors(schema, obj)
    errs += [f"{p}: {m}" for p, m in list_map_errors(schema, obj, [])]
    if not errs:
        old = prepare(schema, old_manifest) if old_manifest is not None else None
        errs += [f"{p}: {m}" for p, m in cel_errors(schema, obj, [], old, old is not None, fmt=_k8s_rule_message)]
    return errs, unknown, obj


def serve(stdin, stdout):
    """One JSON request a line: {"schema_id", "schema" (once per id), "object", "old"};
    one JSON answer a line: {"errors", "unknown", "object"}, or {"fatal"} when this tool
    cannot judge, or {"unknown_schema": true} when the schema must be sent again."""
    schemas = {}
    for line in stdin:
        try:
            req = json.loads(line)
            if "schema" in req:
                _compile_all(req["schema"])
                schemas[req["schema_id"]] = req["schema"]
            if req.get("schema_id") not in schemas:
                answer = {"unknown_schema": True}
            else:
                errs, unknown, obj = serve_validate(schemas[req["schema_id"]], req["object"], req.get("old"))
                answer = {"errors": errs, "unknown": unknown, "object": obj}
        except Unsupported as e:
            answer = {"fatal": f"crd_validate: cannot judge: {e}"}
        except Exception as e:  # a failure of this tool, told to the double rather than dying
            answer = {"fatal": f"crd_validate: {type(e).__name__}: {e}"}
        stdout.write(json.dumps(answer) + "\n")
        stdout.flush()
    return 0


# ---------------------------------------------------------------------------------------
# Checks of the CRD itself.


DEFAULT_CHART = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "charts", "carapace",
                             "Chart.yaml")
_KUBE_VERSION = re.compile(r"^\s*>=\s*v?(\d+)\.(\d+)(?:\.\d+)?(?:-[0-9A-Za-z.-]+)?"
                           r"(?:\s*,?\s*<=?\s*v?\d+(?:\.\d+){0,2}(?:-[0-9A-Za-z.-]+)?)?\s*\Z")


def chart_min_kube(chart_path):
    """(major, minor) of the oldest Kubernetes a Helm chart's kubeVersion admits, read from its
    ">=X.Y[.Z][-pre]" lower bound (an upper "<..." bound may follow). Raises ValueError when the
    file cannot be read or the constraint is not of that form: without a known minimum no CEL
    function can be judged, and that is a failure, not a pass."""
    try:
        with open(chart_path, encoding="utf-8") as f:
            chart = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"{chart_path}: {e}")
    kube = chart.get("kubeVersion") if isinstance(chart, dict) else None
    m = _KUBE_VERSION.match(kube) if isinstance(kube, str) else None
    if not m:
        raise ValueError(f"{chart_path}: kubeVersion {kube!r} is not a \">=X.Y[.Z][-0]\" lower bound")
    return int(m.group(1)), int(m.group(2))


def _cel_names(node):
    """The functions, methods, macros and variables a compiled rule uses."""
    out = set()
    if isinstance(node, tuple) and node:
        if node[0] in ("func", "call", "macro"):
            out.add(node[1])
        elif node[0] == "has":
            out.add("has")
        elif node[0] == "var":
            out.add(node[1])
        for part in node[1:]:
            if isinstance(part, (tuple, list)):
                out |= _cel_names(part)
    elif isinstance(node, list):
        for part in node:
            out |= _cel_names(part)
    return out


def _regex_literals(node):
    """The regex literals of a compiled rule's matches() calls."""
    out = []
    if isinstance(node, tuple) and node:
        if node[0] == "call" and node[1] == "matches" and node[3] and node[3][0][0] == "lit":
            out.append(node[3][0][1])
        for part in node[1:]:
            if isinstance(part, (tuple, list)):
                out += _regex_literals(part)
    elif isinstance(node, list):
        for part in node:
            out += _regex_literals(part)
    return out


# \s, \d, \w, \b and their negations mean different things in RE2 (the API server: ASCII only,
# \s without \v), Python (Unicode) and std::regex (the parser: locale, \s with \v).
_SHORTHAND = re.compile(r"(?<!\\)(?:\\\\)*\\[sSdDwWbB]")
RULE_KEYS = {"rule", "message", "fieldPath", "reason"}


def lint(schema, min_kube=None):
    """Every property documented and typed, junctors without structure, rules compiled,
    defaults valid, list-map keys required or defaulted; patterns free of the regex
    shorthands the engines disagree on; with min_kube (major, minor), every CEL function and
    rule field available to a new CRD on that Kubernetes."""
    problems = []

    def too_new(what, path):
        since = CEL_SINCE.get(what)
        if since is None:
            problems.append(f"{path}: no minimum Kubernetes version is known for {what}")
        elif min_kube is not None and since > min_kube:
            problems.append(f"{path}: {what} needs Kubernetes {since[0]}.{since[1]} for a new CRD, but the chart "
                            f"allows {min_kube[0]}.{min_kube[1]} (kubeVersion)")

    def walk(node, path, in_junctor=False):
        if isinstance(node.get("pattern"), str) and _SHORTHAND.search(node["pattern"]):
            problems.append(f"{path}: pattern uses a regex shorthand (\\s, \\d, \\w, \\b) that RE2, Python and "
                            "std::regex read differently; write the class out, e.g. [\\t\\n\\f\\r ]")
        if node.get("x-kubernetes-validations"):
            too_new("x-kubernetes-validations", path)
        for r in node.get("x-kubernetes-validations", []):
            for k in sorted(set(r) - RULE_KEYS):
                problems.append(f"{path}: rule field {k} is not modelled by this validator")
            for k in sorted(set(r) & {"fieldPath", "reason"}):
                too_new(k, path)
            try:
                ast = compile_rule(r["rule"])
                for name in sorted(_cel_names(ast) - {"self"}):
                    too_new(name, path)
                for literal in _regex_literals(ast):
                    if _SHORTHAND.search(literal):
                        problems.append(f"{path}: matches() uses a regex shorthand (\\s, \\d, \\w, \\b); write the "
                                        "class out")
                if "fieldPath" in r:
                    target = node
                    for part in _field_path_parts(r["fieldPath"]):
                        target = target.get("properties", {}).get(part)
                        if target is None:
                            problems.append(f"{path}: fieldPath {r['fieldPath']} names no field")
                            break
            except Unsupported as e:
                problems.append(f"{path}: {e}")
            if "\n" in r.get("message", ""):
                problems.append(f"{path}: a rule's message must be one line")
        if in_junctor:
            for k in ("type", "description", "default", "nullable", "additionalProperties",
                      "x-kubernetes-validations", "x-kubernetes-preserve-unknown-fields"):
                if k in node:
                    problems.append(f"{path}: {k} is not allowed inside anyOf/allOf/oneOf/not")
        else:
            if "type" not in node and not node.get("x-kubernetes-int-or-string"):
                problems.append(f"{path}: no type")
            if node.get("x-kubernetes-int-or-string") and "type" in node:
                problems.append(f"{path}: x-kubernetes-int-or-string takes no type")
            if path != "metadata" and not str(node.get("description", "")).strip():
                problems.append(f"{path}: no description")
            if "default" in node:
                errs = schema_errors(node, copy.deepcopy(node["default"]), [path])
                problems.extend(f"{p}: the default is invalid: {m}" for p, m in errs)
                # The rules too, on the default as written (no nested defaults applied).
                errs = cel_errors(node, copy.deepcopy(node["default"]), [path], None, False)
                problems.extend(f"{p}: the default breaks a rule: {m}" for p, m in errs)
        if node.get("x-kubernetes-list-type") == "map":
            items = node["items"]
            for k in node.get("x-kubernetes-list-map-keys", []):
                if k not in items.get("required", []) and "default" not in items["properties"].get(k, {}):
                    problems.append(f"{path}: list-map key {k} is neither required nor defaulted")
        for k, sub in node.get("properties", {}).items():
            if in_junctor and k not in node.get("properties", {}):
                continue
            walk(sub, f"{path}.{k}" if path else k, in_junctor)
        if "items" in node:
            walk(node["items"], path + "[]", in_junctor)
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], path + "{}", in_junctor)
        for j in ("anyOf", "allOf", "oneOf"):
            for b in node.get(j, []):
                for k in b.get("properties", {}):
                    if k not in node.get("properties", {}):
                        problems.append(f"{path}: {j} names property {k} the schema does not declare")
                walk(b, path + f"<{j}>", True)

    walk(schema, "")
    meta = schema.get("properties", {}).get("metadata", {})
    if set(meta) - {"type", "properties"} or set(meta.get("properties", {})) - {"name", "generateName"}:
        problems.append("metadata: only type and the properties name and generateName are allowed")
    to_json_schema(schema)  # every keyword modelled
    return problems


def main(argv):
    args = argv[1:]
    if args == ["--serve"]:
        return serve(sys.stdin, sys.stdout)
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        schema = load_crd_schema(args[0])
        rest = args[1:]
        if rest[:1] == ["--lint"]:
            if rest not in (["--lint"],) and not (len(rest) == 3 and rest[1] == "--chart"):
                print(__doc__, file=sys.stderr)
                return 2
            chart = rest[2] if len(rest) == 3 else DEFAULT_CHART
            try:
                problems = lint(schema, chart_min_kube(chart))
            except ValueError as e:
                problems = lint(schema) + [f"the minimum Kubernetes version is unknown: {e}"]
            for p in problems:
                print(p)
            return 1 if problems else 0
        if rest[:1] == ["--json"]:
            results = []
            for path in rest[1:]:
                errs, obj = validate(schema, load_yaml(path), yaml_errors=yaml11_errors(path))
                results.append({"file": path, "valid": not errs, "errors": [f"{p}: {m}" for p, m in errs],
                                "defaulted": obj})
            print(json.dumps(results, indent=1, sort_keys=True))
            return 0
        old = None
        if len(rest) == 3 and rest[1] == "--old":
            old = load_yaml(rest[2])
        elif len(rest) != 1:
            print(__doc__, file=sys.stderr)
            return 2
        errs, _ = validate(schema, load_yaml(rest[0]), old, yaml11_errors(rest[0]))
        for p, m in errs:
            print(f"{rest[0]}: {p}: {m}")
        return 1 if errs else 0
    except Unsupported as e:
        print(f"crd_validate: cannot judge: {e}", file=sys.stderr)
        return 2
    except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
        print(f"crd_validate: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
