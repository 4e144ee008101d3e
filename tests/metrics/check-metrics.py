#!/usr/bin/python3
"""Checks a Prometheus text exposition (format 0.0.4) with a real parser.

    check-metrics.py SOURCE [--require NAME ...] [--before SOURCE2
                     --increased SAMPLE ...]

SOURCE is an http:// URL or a file ("-" = stdin). It is parsed with
prometheus_client.parser.text_string_to_metric_families (Debian
python3-prometheus-client); every family must have HELP and TYPE, every
sample name must belong to its family, and no series may repeat.
--require NAME: a family or sample name that must be present.
--before SOURCE2 with --increased SAMPLE: SAMPLE (a sample name, optionally
with labels as name{k="v",...}) summed over matching series must be larger
in SOURCE than in SOURCE2 (an earlier scrape).
Exits 0 when every check passes, 1 otherwise (each failure on stderr).
"""
import argparse
import re
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def load(src):
    if src.startswith("http://") or src.startswith("https://"):
        with urllib.request.urlopen(src, timeout=10) as r:
            ctype = r.headers.get("Content-Type", "")
            if not ctype.startswith("text/plain"):
                raise SystemExit("bad Content-Type %r" % ctype)
            return r.read().decode("utf-8")
    if src == "-":
        return sys.stdin.read()
    with open(src, encoding="utf-8") as f:
        return f.read()


def parse(text, errors):
    """Families by name, and samples as {(name, labels tuple): value}."""
    fams, samples = {}, {}
    # HELP and TYPE before each family's samples (the parser is lenient
    # about missing ones: check the raw lines)
    helped, typed = set(), set()
    for line in text.splitlines():
        m = re.match(r"# (HELP|TYPE) (\S+)", line)
        if m:
            (helped if m.group(1) == "HELP" else typed).add(m.group(2))
    for fam in text_string_to_metric_families(text):
        fams[fam.name] = fam
        for s in fam.samples:
            if not s.name.startswith(fam.name):
                errors.append("sample %s outside family %s" % (s.name, fam.name))
            key = (s.name, tuple(sorted(s.labels.items())))
            if key in samples:
                errors.append("duplicate series %s%s" % key)
            samples[key] = s.value
    for name, fam in fams.items():
        if fam.type == "unknown":
            errors.append("family %s has no TYPE" % name)
        spelled = {name, name + "_total"}
        if not (spelled & helped):
            errors.append("family %s has no HELP" % name)
        if not (spelled & typed):
            errors.append("family %s has no TYPE line" % name)
    return fams, samples


def select(samples, spec):
    m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?$", spec)
    if not m:
        raise SystemExit("bad sample spec %r" % spec)
    name, want = m.group(1), {}
    if m.group(2):
        for k, v in re.findall(r'(\w+)="([^"]*)"', m.group(2)):
            want[k] = v
    total, found = 0.0, False
    for (n, labels), v in samples.items():
        d = dict(labels)
        if n == name and all(d.get(k) == v2 for k, v2 in want.items()):
            total += v
            found = True
    return total if found else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("source")
    ap.add_argument("--require", action="append", default=[])
    ap.add_argument("--before")
    ap.add_argument("--increased", action="append", default=[])
    a = ap.parse_args()
    errors = []
    fams, samples = parse(load(a.source), errors)
    names = set(fams) | {n for n, _ in samples}
    for r in a.require:
        if r not in names:
            errors.append("required metric %s missing" % r)
    if a.increased:
        if not a.before:
            raise SystemExit("--increased needs --before")
        _, old = parse(load(a.before), errors)
        for spec in a.increased:
            now, then = select(samples, spec), select(old, spec)
            if now is None:
                errors.append("%s: no such series" % spec)
            elif now <= (then or 0.0):
                errors.append("%s did not increase (%s -> %s)" % (spec, then, now))
    for e in errors:
        print("check-metrics: " + e, file=sys.stderr)
    if not errors:
        print("check-metrics: %d families, %d series: ok" % (len(fams), len(samples)))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
