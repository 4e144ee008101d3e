#!/usr/bin/env python3
"""The Prometheus files of deploy/prometheus: valid YAML of the right shape,
every alert names a metric logicd or gatewayd exports (or a standard one),
and `promtool check rules/config` passes where Debian's prometheus package
is already installed (the suite never installs it)."""
import re
import shutil
import subprocess
import sys

import yaml

# The names agreed for /metrics (docs/operations.md, section 13.10).
EXPORTED = {
    "mim_ready", "mim_commit_seconds_bucket", "mim_writer_queue_depth",
    "mim_lmdb_map_used_bytes", "mim_lmdb_map_size_bytes", "mim_rpc_links",
    "mim_logic_link_up", "mim_webhook_dropped_total",
}
STANDARD = {"up", "node_filesystem_avail_bytes", "node_filesystem_size_bytes"}
FUNCS = {"histogram_quantile", "sum", "by", "rate", "increase",
         "avg_over_time", "predict_linear", "le", "instance"}


def main(src):
    d = src + "/deploy/prometheus"
    cfg = yaml.safe_load(open(d + "/prometheus.yml"))
    assert cfg["rule_files"] == ["libmim-alerts.yml"], cfg["rule_files"]
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    for job in ("libmim-logicd", "libmim-gatewayd"):
        assert jobs[job]["metrics_path"] == "/metrics", job
        assert jobs[job]["static_configs"][0]["targets"], job
    rules = yaml.safe_load(open(d + "/libmim-alerts.yml"))
    names = []
    for g in rules["groups"]:
        for r in g["rules"]:
            for k in ("alert", "expr", "labels", "annotations"):
                assert k in r, (r.get("alert"), k)
            assert r["labels"]["severity"] in ("warning", "critical"), r
            assert "summary" in r["annotations"], r["alert"]
            names.append(r["alert"])
            expr = re.sub(r'\{[^}]*\}|"[^"]*"|\[[^]]*\]', "", r["expr"])
            for ident in re.findall(r"[a-z_][a-z0-9_]*", expr):
                if ident in FUNCS:
                    continue
                assert ident in EXPORTED | STANDARD, (r["alert"], ident)
            for job in re.findall(r'job="([^"]+)"', r["expr"]):
                assert job in jobs, (r["alert"], job)
    assert len(names) == len(set(names)), "duplicate alert names"
    wanted = {"LibmimLogicdNotReady", "LibmimCommitLatencyHigh",
              "LibmimLogicLinkDown", "LibmimLmdbMapNearlyFull",
              "LibmimDiskNearlyFull"}
    assert wanted <= set(names), wanted - set(names)
    promtool = shutil.which("promtool")
    if promtool:
        subprocess.run([promtool, "check", "rules", d + "/libmim-alerts.yml"],
                       check=True)
        subprocess.run([promtool, "check", "config", d + "/prometheus.yml"],
                       check=True)
    else:
        print("promtool not installed: YAML and shape checks only")
    print("prometheus files: ok (%d alerts)" % len(names))


if __name__ == "__main__":
    main(sys.argv[1])
