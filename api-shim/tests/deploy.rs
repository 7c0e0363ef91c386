//! The Kubernetes manifests in `deploy/kubernetes/` are what users deploy:
//! they must be valid resources, secure by default, and carry a shim
//! configuration the shim itself accepts.

use std::path::{Path, PathBuf};
use std::process::Command;

use api_shim::config::Loader;

fn manifests() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "no manifests in {}", dir.display());
    files
}

fn text(p: &Path) -> String {
    std::fs::read_to_string(p).expect("read manifest")
}

/// The `shim.toml: |` block of the ConfigMap, unindented.
fn configmap_shim_toml() -> String {
    let all =
        text(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/api-shim.yaml"));
    let mut lines = all
        .lines()
        .skip_while(|l| l.trim() != "shim.toml: |")
        .skip(1);
    let mut out = String::new();
    for l in lines.by_ref() {
        if l.starts_with("---") || (!l.is_empty() && !l.starts_with("    ")) {
            break;
        }
        out.push_str(l.strip_prefix("    ").unwrap_or(l));
        out.push('\n');
    }
    assert!(out.contains("[policies."), "no shim.toml in the ConfigMap");
    out
}

#[test]
fn the_configmap_holds_a_configuration_the_shim_accepts() {
    let dir = std::env::temp_dir().join(format!("rl-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("shim.toml");
    std::fs::write(&path, configmap_shim_toml()).expect("write shim.toml");
    let loaded = Loader::new(Some(path), |_| None).load(rl_grammar::EXACT_MAX_LOG_DEFAULT);
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = loaded {
        panic!("the shim refuses the ConfigMap's configuration: {}", e.0);
    }
}

#[test]
fn the_manifests_are_secure_by_default() {
    for p in manifests() {
        let t = text(&p);
        let name = p.display();
        // Nothing exposed outside the cluster, no secret shipped, every
        // workload non-root and locked down, and a NetworkPolicy per file.
        for banned in [
            "kind: Secret",
            "type: LoadBalancer",
            "type: NodePort",
            "hostNetwork: true",
            "privileged: true",
        ] {
            assert!(!t.contains(banned), "{name}: {banned}");
        }
        assert!(
            t.contains("kind: NetworkPolicy"),
            "{name}: no NetworkPolicy"
        );
        let workloads =
            t.matches("kind: Deployment").count() + t.matches("kind: StatefulSet").count();
        assert!(workloads >= 1, "{name}: no workload");
        for want in [
            "runAsNonRoot: true",
            "allowPrivilegeEscalation: false",
            "readOnlyRootFilesystem: true",
            "automountServiceAccountToken: false",
        ] {
            assert_eq!(
                t.matches(want).count(),
                workloads,
                "{name}: {want} on every workload"
            );
        }
    }
    let shim = configmap_shim_toml();
    assert!(
        shim.contains("[raw]\n") && shim.contains("enabled = false"),
        "raw endpoints must stay off"
    );
}

/// Schema validation against Kubernetes' own OpenAPI schemas, offline, with
/// `kubernetes-validate` (PyPI, installed by scripts/install-deps.sh).
#[test]
fn the_manifests_validate_against_the_kubernetes_schemas() {
    let files = manifests();
    let out = match Command::new("kubernetes-validate")
        .arg("--strict")
        .args(&files)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            println!("skipped: kubernetes-validate is not installed ({e}); pip install kubernetes-validate");
            return;
        }
    };
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "kubernetes-validate failed:\n{report}"
    );
    assert!(report.contains("passed"), "nothing validated:\n{report}");
    assert!(!report.contains("ERROR"), "{report}");
}
