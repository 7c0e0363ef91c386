//! The Grafana dashboard (`deploy/grafana/`) and the Prometheus rules
//! (`deploy/prometheus/`) speak of what the shim really exports: every
//! `shim_*` series they name, and every label they select or group by, is
//! in the shim's own metrics registry; `promtool` accepts the rules and their
//! unit tests pass (each alert fires on the shim's series, and only then).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use api_shim::metrics::Metrics;

fn deploy(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path)
}

/// Each exported series name with its label names, from the registry with
/// one sample in every family (a vector with no sample exports nothing).
fn exported() -> BTreeMap<String, BTreeSet<String>> {
    let m = Metrics::new().expect("metrics");
    m.decision("check", "allowed", "api", "free", "NORMAL");
    m.redis_seconds
        .with_label_values(&["limits"])
        .observe(0.001);
    m.reloads.with_label_values(&["ok"]).inc();
    m.shadow_denials.with_label_values(&["api", "day"]).inc();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in m
        .render()
        .expect("render")
        .lines()
        .filter(|l| !l.starts_with('#'))
    {
        let (name, labels) = match line.split_once('{') {
            Some((name, rest)) => (name, rest.split_once('}').map_or("", |(l, _)| l)),
            None => (line.split(' ').next().unwrap_or_default(), ""),
        };
        let names = labels
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, _)| k.to_string());
        out.entry(name.to_string()).or_default().extend(names);
    }
    out
}

/// Every PromQL expression of the dashboard's panels.
fn dashboard_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(deploy("grafana/ratelimit-shim.json")).expect("dashboard");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let mut out = Vec::new();
    for panel in dash["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or_default().to_string();
            out.push((title, t["expr"].as_str().expect("expr").to_string()));
        }
    }
    out
}

/// Every `expr:` of the rules file (one-line or `|` blocks).
fn rule_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(deploy("prometheus/ratelimit-rules.yml")).expect("rules");
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let indent = line.len() - line.trim_start().len();
        let mut expr = rest.trim().trim_start_matches('|').to_string();
        while let Some(next) = lines.peek() {
            let deeper = next.len() - next.trim_start().len() > indent;
            if !deeper || next.trim().is_empty() {
                break;
            }
            expr.push(' ');
            expr.push_str(next.trim());
            lines.next();
        }
        out.push((line.trim().to_string(), expr));
    }
    out
}

/// `shim_*` names in an expression, each with the label names its selector
/// uses (`{outcome="denied", policy=~"$policy"}`).
fn selectors(expr: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("shim_") {
        let before = rest[..at].chars().last();
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        rest = &tail[end..];
        // `policy:shim_denial_ratio:rate5m` is a recording rule, not a series.
        if before.is_some_and(|c| c == ':' || c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let labels = match rest.strip_prefix('{') {
            Some(inner) => inner
                .split_once('}')
                .map_or("", |(l, _)| l)
                .split(',')
                .filter_map(|m| m.split(['=', '!']).next())
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect(),
            None => Vec::new(),
        };
        out.push((name.to_string(), labels));
    }
    out
}

/// The label names of every `by (…)` clause.
fn grouping(expr: &str) -> Vec<String> {
    expr.split("by (")
        .skip(1)
        .filter_map(|s| s.split_once(')'))
        .flat_map(|(labels, _)| labels.split(',').map(|l| l.trim().to_string()))
        .collect()
}

#[test]
fn dashboard_and_rules_name_only_what_the_shim_exports() {
    let exported = exported();
    let mut named = 0;
    for (where_, expr) in dashboard_exprs().into_iter().chain(rule_exprs()) {
        let mut labels_here: BTreeSet<String> = BTreeSet::new();
        for (name, labels) in selectors(&expr) {
            named += 1;
            let Some(known) = exported.get(&name) else {
                panic!(
                    "{where_}: {name} is not a series the shim exports ({:?})",
                    exported.keys()
                );
            };
            for l in labels {
                assert!(
                    known.contains(&l),
                    "{where_}: {name} has no label {l} ({known:?})"
                );
            }
            labels_here.extend(known.iter().cloned());
        }
        for l in grouping(&expr) {
            // A recording rule's output keeps the labels it was grouped by.
            let recorded = expr.contains("policy:shim_") && l == "policy";
            assert!(
                recorded || labels_here.contains(&l),
                "{where_}: groups by {l}, which no series in `{expr}` has"
            );
        }
    }
    assert!(
        named >= 20,
        "only {named} series found: is the parser reading the files?"
    );
}

#[test]
fn dashboard_covers_what_operators_ask() {
    let titles: Vec<String> = dashboard_exprs().into_iter().map(|(t, _)| t).collect();
    for wanted in [
        "Decisions by outcome",
        "Decisions by policy",
        "Decisions by tier",
        "Decisions by mode",
        "Denial ratio by policy",
        "Redis round-trip latency",
        "Failovers and fences",
        "Configuration reloads",
    ] {
        assert!(
            titles.iter().any(|t| t == wanted),
            "no panel {wanted}: {titles:?}"
        );
    }
}

/// `promtool`, from Debian's `prometheus` package (scripts/install-deps.sh).
fn promtool(args: &[&str]) -> Option<std::process::Output> {
    match Command::new("promtool")
        .args(args)
        .current_dir(deploy("prometheus"))
        .output()
    {
        Ok(out) => Some(out),
        Err(e) => {
            println!("skipped: promtool is not installed ({e}); apt-get install prometheus");
            None
        }
    }
}

#[test]
fn promtool_accepts_the_rules_and_their_tests_pass() {
    for args in [
        ["check", "rules", "ratelimit-rules.yml"],
        ["test", "rules", "ratelimit-rules.test.yml"],
    ] {
        let Some(out) = promtool(&args) else { return };
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "promtool {}: {said}", args.join(" "));
        assert!(
            said.contains("SUCCESS"),
            "promtool {}: {said}",
            args.join(" ")
        );
    }
}
