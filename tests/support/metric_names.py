#!/usr/bin/python3
"""Checks that every metric an alert rule or a Grafana dashboard queries is exported.

  metric_names.py --scrape operator.txt --scrape worker.txt alerts.yaml dash.json ...

Each --scrape file is a /metrics page (Prometheus text format). Each other file is a
PrometheusRule (.spec.groups), a plain rules file (groups:) or a Grafana dashboard (.json).
The metric names are taken from the PromQL of the rules' `expr`, the panels' targets and
the templating queries (label_values(metric, label) and query_result(expr)). A name counts
as exported when the scrapes have a sample of that name or a `# TYPE` line for its family
(a histogram's or summary's family gives its _bucket, _sum and _count). Exits 1 listing
each missing name with where it is used; 2 when a file cannot be read.

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

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
# Grafana's variables: ${var}, ${var:fmt}, $__rate_interval, $var, [[var]].
_GRAFANA_VAR = re.compile(r"\$\{[^}]*\}|\$\w+|\[\[[^\]]*\]\]")
_NAME_MATCHER = re.compile(r'__name__\s*=\s*("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_AT = re.compile(r"@\s*(start\s*\(\s*\)|end\s*\(\s*\)|[-+]?[0-9.]+)")
_OFFSET = re.compile(r"\boffset\s+-?[0-9a-zA-Z.]+")
_NUMBER = re.compile(r"(?<![\w:])(0[xX][0-9a-fA-F]+|[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?(?:[smhdwy]|ms)*)")
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def names_in_promql(expr):
    """The metric names a PromQL expression selects."""
    names = set()
    # Strings first, so quoted braces, brackets and parentheses in matcher values cannot
    # confuse what follows; a {__name__="x"} selector names x.
    for m in _NAME_MATCHER.finditer(expr):
        names.add(m.group(1)[1:-1])
    text = _GRAFANA_VAR.sub(" 1 ", expr)
    text = _STRING.sub(" ", text)
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
            for name in names_in_promql(str(rule.get("expr", ""))):
                uses.append((name, "%s: group %s, %s" % (path, group.get("name"), what)))
    return uses, recorded


def _panels(panels):
    for p in panels or []:
        yield p
        yield from _panels(p.get("panels"))  # a collapsed row holds its panels


def uses_in_dashboard(path, doc):
    uses = []
    for panel in _panels(doc.get("panels")):
        for target in panel.get("targets") or []:
            for name in names_in_promql(str(target.get("expr", ""))):
                uses.append((name, "%s: panel %r, target %s" % (path, panel.get("title"), target.get("refId"))))
    for var in (doc.get("templating") or {}).get("list") or []:
        if var.get("type") != "query":
            continue
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        for name in names_in_template_query(str(query or "")):
            uses.append((name, "%s: variable %s" % (path, var.get("name"))))
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
                        if kind in ("histogram", "summary"):
                            names.update(family + s for s in ("_bucket", "_sum", "_count"))
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
