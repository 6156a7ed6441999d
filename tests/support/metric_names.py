#!/usr/bin/python3
"""Checks that every metric an alert rule or a Grafana dashboard queries is exported.

  metric_names.py --scrape operator.txt --scrape worker.txt alerts.yaml dash.json ...

Each --scrape file is a /metrics page (Prometheus text format). Each other file is a
PrometheusRule (.spec.groups), a plain rules file (groups:) or a Grafana dashboard (.json).
The metric names are taken from the PromQL of the rules' `expr`, the panels' targets (rows'
and library panels' too), the annotations' queries and the templating queries
(label_values(metric, label) and query_result(expr)). A name counts as exported when the
scrapes have a sample of that name or a `# TYPE` line for its family (a histogram's family
gives its _bucket, _sum and _count; a summary's only _sum and _count). Exits 1 listing each
missing name with where it is used; 2 when a file cannot be read or a query cannot be
checked (a selector matching names by regex, a library panel whose queries are elsewhere).

Stdlib and PyYAML only (Debian's python3-yaml).
"""
import argparse
import json
import re
import sys

import yaml

# Series Prometheus makes itself, not any exporter: the scrape's own series and the
# alerting state.
PROMETHEUS_MADE = {
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
    "ALERTS",
    "ALERTS_FOR_STATE",
}

# PromQL words that are not metric names when not followed by "(".
KEYWORDS = {
    "and", "or", "unless", "bool", "by", "without", "on", "ignoring", "group_left",
    "group_right", "offset", "inf", "nan", "start", "end",
}

# A string (double- or single-quoted with escapes, or a raw backquoted one) or a comment.
_STRING_OR_COMMENT = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|`[^`]*`|#[^\n]*')
_STRING_MARK = re.compile(r"\x00(\d+)\x00")
# Grafana's variables: ${var}, ${var:fmt}, $__rate_interval, $var, [[var]].
_GRAFANA_VAR = re.compile(r"\$\{[^}]*\}|\$\w+|\[\[[^\]]*\]\]")
_NAME_MATCHER = re.compile(r"__name__\s*(=~|!~|!=|=)\s*\x00(\d+)\x00")
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_AT = re.compile(r"@\s*(start\s*\(\s*\)|end\s*\(\s*\)|[-+]?[0-9.]+)")
_OFFSET = re.compile(r"\boffset\s+-?[0-9a-zA-Z.]+")
_NUMBER = re.compile(r"(?<![\w:])(0[xX][0-9a-fA-F]+|[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?(?:[smhdwy]|ms)*)")
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


class Unsupported(ValueError):
    """A query whose metric names cannot be known from its text."""


def _strip_strings_and_comments(expr):
    """expr with each string replaced by \\0N\\0 (N indexes the returned list of string
    values) and each comment removed. One left-to-right pass, as PromQL's lexer reads: a
    quote inside a comment starts no string, a # inside a string starts no comment."""
    strings = []

    def replace(m):
        token = m.group(0)
        if token.startswith("#"):
            return " "
        strings.append(token[1:-1])
        return " \x00%d\x00 " % (len(strings) - 1)

    return _STRING_OR_COMMENT.sub(replace, expr), strings


def names_in_promql(expr):
    """The metric names a PromQL expression selects."""
    names = set()
    # Strings and comments first, so quoted braces, brackets and parentheses in matcher
    # values, and anything in a comment, cannot confuse what follows.
    text, strings = _strip_strings_and_comments(expr)
    # A {__name__="x"} selector names x; one matching names by pattern or by exclusion
    # names nothing this check could confirm, so it is refused rather than passed.
    for m in _NAME_MATCHER.finditer(text):
        value = strings[int(m.group(2))]
        if m.group(1) != "=":
            raise Unsupported("__name__%s%r selects metrics by pattern; name them" % (m.group(1), value))
        names.add(value)
    text = _STRING_MARK.sub(" ", text)
    text = _GRAFANA_VAR.sub(" 1 ", text)
    text = _BRACES.sub(" ", text)
    text = _BRACKETS.sub(" ", text)
    text = _LABEL_LIST.sub(" ", text)
    text = _AT.sub(" ", text)
    text = _OFFSET.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    for m in _IDENT.finditer(text):
        word = m.group(0)
        rest = text[m.end():].lstrip()
        if rest.startswith("("):  # a function or an aggregation
            continue
        if word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def names_in_template_query(query):
    """Metric names in a Grafana Prometheus templating query."""
    query = query.strip()
    m = re.fullmatch(r"label_values\((.*),\s*[a-zA-Z_]\w*\s*\)", query, re.S)
    if m:
        return names_in_promql(m.group(1))
    if re.fullmatch(r"label_values\(\s*[a-zA-Z_]\w*\s*\)", query) or query.startswith("metrics("):
        return set()
    m = re.fullmatch(r"query_result\((.*)\)", query, re.S)
    if m:
        return names_in_promql(m.group(1))
    return names_in_promql(query)


def uses_in_rules(path, doc):
    """(name, where) for a PrometheusRule or a plain rules file; also the recorded names."""
    groups = (doc.get("spec") or {}).get("groups") if doc.get("kind") == "PrometheusRule" else doc.get("groups")
    uses, recorded = [], set()
    for group in groups or []:
        for rule in group.get("rules") or []:
            what = rule.get("alert") or rule.get("record")
            if rule.get("record"):
                recorded.add(rule["record"])
            where = "%s: group %s, %s" % (path, group.get("name"), what)
            for name in _names(names_in_promql, rule.get("expr", ""), where):
                uses.append((name, where))
    return uses, recorded


def _names(parse, query, where):
    try:
        return parse(str(query or ""))
    except Unsupported as e:
        raise Unsupported("%s: %s" % (where, e)) from None


def _panels(panels):
    for p in panels or []:
        yield p
        yield from _panels(p.get("panels"))  # a row (collapsed or not) may hold its panels


def uses_in_dashboard(path, doc):
    uses = []
    # An exported dashboard carries its library panels' models in __elements; a panel that
    # only refers to one has its queries there (or in Grafana's database: not checkable).
    elements = doc.get("__elements") or {}
    library = {uid: (e.get("model") or {}) for uid, e in elements.items() if isinstance(e, dict)}
    panels = list(_panels(doc.get("panels")))
    for uid, model in library.items():
        panels += [dict(p, title="%s (library panel %s)" % (p.get("title"), uid)) for p in _panels([model])]
    for panel in panels:
        ref = panel.get("libraryPanel")
        if isinstance(ref, dict) and not panel.get("targets") and ref.get("uid") not in library:
            raise Unsupported("%s: panel %r is library panel %r, whose queries are not in the file"
                              % (path, panel.get("title"), ref.get("name") or ref.get("uid")))
        for target in panel.get("targets") or []:
            where = "%s: panel %r, target %s" % (path, panel.get("title"), target.get("refId"))
            for name in _names(names_in_promql, target.get("expr"), where):
                uses.append((name, where))
    for annotation in (doc.get("annotations") or {}).get("list") or []:
        if annotation.get("expr"):
            where = "%s: annotation %s" % (path, annotation.get("name"))
            for name in _names(names_in_promql, annotation.get("expr"), where):
                uses.append((name, where))
    for var in (doc.get("templating") or {}).get("list") or []:
        if var.get("type") != "query":
            continue
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        where = "%s: variable %s" % (path, var.get("name"))
        for name in _names(names_in_template_query, query, where):
            uses.append((name, where))
    return uses


def exported_names(scrape_paths):
    names = set()
    for path in scrape_paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line.startswith("# TYPE "):
                    parts = line.split()
                    if len(parts) >= 4:
                        family, kind = parts[2], parts[3]
                        names.add(family)
                        # A summary has quantiles in its own name, never buckets.
                        if kind == "histogram":
                            names.update(family + s for s in ("_bucket", "_sum", "_count"))
                        elif kind == "summary":
                            names.update(family + s for s in ("_sum", "_count"))
                elif line and not line.startswith("#"):
                    m = _IDENT.match(line)
                    if m:
                        names.add(m.group(0))
    return names


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrape", action="append", default=[], help="a /metrics page saved to a file")
    parser.add_argument("files", nargs="+", help="rule files (.yaml) and Grafana dashboards (.json)")
    args = parser.parse_args(argv)
    if not args.scrape:
        parser.error("no --scrape file: nothing to check against")

    uses, recorded = [], set()
    try:
        exported = exported_names(args.scrape)
        for path in args.files:
            with open(path, encoding="utf-8") as f:
                if path.endswith(".json"):
                    uses += uses_in_dashboard(path, json.load(f))
                else:
                    for doc in yaml.safe_load_all(f):
                        if isinstance(doc, dict):
                            u, r = uses_in_rules(path, doc)
                            uses += u
                            recorded |= r
    except (OSError, ValueError, yaml.YAMLError) as e:
        print("metric_names: %s" % e, file=sys.stderr)
        return 2

    if not uses:
        print("metric_names: no metric is used in %s" % ", ".join(args.files), file=sys.stderr)
        return 2
    known = exported | recorded | PROMETHEUS_MADE
    missing = {}
    for name, where in uses:
        if name not in known:
            missing.setdefault(name, []).append(where)
    for name in sorted(missing):
        print("%s is not exported; used in:" % name)
        for where in missing[name]:
            print("  " + where)
    used = sorted({n for n, _ in uses})
    print("metric_names: %d metrics used, %d missing: %s" % (len(used), len(missing), " ".join(used)), file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
