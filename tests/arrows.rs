//! The workspace's arrows (ARCHITECTURE.md, "Workspace"): which crate may depend on which.
//!
//! domain ← core ← {gateway, channels, admin-api} ← the binary; adapters → domain (+ config)
//! only, never core, never each other; transports never import adapters or each other;
//! loadtest → protocol only; config → nothing in the workspace. Read from `cargo metadata`
//! (normal, build and dev dependencies alike: a test that links an adapter into core is an
//! arrow too), so a new `Cargo.toml` line that breaks the layout fails here, by name.
//!
//! Its own small test binary: it links nothing of Parla.

use std::collections::{BTreeMap, BTreeSet};

/// What each workspace package may depend on among the workspace's packages. A package that is
/// not listed may depend on nothing of the workspace until a rule says otherwise.
const RULES: &[(&str, &[&str])] = &[
    ("parla-config", &[]),
    ("parla-protocol", &[]),
    ("parla-domain", &["parla-protocol"]),
    ("parla-engine", &["parla-domain", "parla-config", "parla-protocol"]),
    ("parla-store-redb", ADAPTER),
    ("parla-store-cql", ADAPTER),
    ("parla-cluster", ADAPTER),
    ("parla-knowledge", ADAPTER),
    ("parla-egress", ADAPTER),
    ("parla-stripe", ADAPTER),
    ("parla-keyring", ADAPTER),
    ("parla-gateway", TRANSPORT),
    ("parla-channels", TRANSPORT),
    ("parla-admin-api", TRANSPORT),
    ("parla-loadtest", &["parla-protocol"]),
    (
        "parla-adapter-bench",
        &[
            "parla-domain",
            "parla-config",
            "parla-store-redb",
            "parla-store-cql",
            "parla-cluster",
            "parla-knowledge",
        ],
    ),
    ("parla-store-bench", &[]),
];

/// Adapters implement the domain's ports; they see the domain and the settings, nothing else.
const ADAPTER: &[&str] = &["parla-domain", "parla-config"];
/// Transports call the engine and speak the protocol; they never reach an adapter or another
/// transport.
const TRANSPORT: &[&str] = &["parla-engine", "parla-domain", "parla-config", "parla-protocol"];
/// The composition root names everything.
const ROOT: &str = "parla";

/// Arrows that exist today and are being removed (issue 20), each with where it goes. The list
/// only shrinks: an entry that no longer exists fails the test too, so it is deleted with the
/// arrow.
const KNOWN: &[(&str, &str)] = &[];

#[test]
fn every_workspace_dependency_follows_an_arrow() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let members: BTreeSet<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();

    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for package in packages {
        let name = package["name"].as_str().expect("name");
        let deps = package["dependencies"].as_array().expect("dependencies");
        let workspace_deps = deps
            .iter()
            .filter_map(|d| d["name"].as_str())
            .filter(|d| members.contains(d) && *d != name);
        edges.entry(name).or_default().extend(workspace_deps);
    }

    let rules: BTreeMap<&str, &[&str]> = RULES.iter().copied().collect();
    let mut wrong = Vec::new();
    for (package, deps) in &edges {
        if *package == ROOT {
            continue;
        }
        let Some(allowed) = rules.get(package) else {
            wrong.push(format!("{package} has no rule in tests/arrows.rs: add one"));
            continue;
        };
        for dep in deps {
            if !allowed.contains(dep) && !KNOWN.contains(&(package, dep)) {
                wrong.push(format!("{package} → {dep} breaks the architecture's arrows"));
            }
        }
    }
    for (package, dep) in KNOWN {
        if !edges.get(package).is_some_and(|deps| deps.contains(dep)) {
            wrong.push(format!("{package} → {dep} is gone: delete it from KNOWN"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_rule_names_a_crate_of_the_layout() {
    // A rule for a crate that does not exist (yet) is fine; a rule naming an unknown crate in
    // its allowed list is a typo.
    let known: BTreeSet<&str> = RULES.iter().map(|(name, _)| *name).collect();
    for (package, allowed) in RULES {
        for dep in *allowed {
            assert!(known.contains(dep), "{package}'s rule names {dep}, which has no rule");
        }
    }
}
