//! The shape of the house, checked: crate dependencies point one way, no crate's modules
//! import each other in a circle, and storage reads no workflow table. (ARCHITECTURE.md
//! draws the picture; this keeps the code to it.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The workspace crates: name → directory.
fn crates() -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root().join("storage")];
    for e in std::fs::read_dir(root().join("crates")).unwrap() {
        dirs.push(e.unwrap().path());
    }
    for d in dirs {
        let toml = std::fs::read_to_string(d.join("Cargo.toml")).unwrap();
        let name = toml.lines().find_map(|l| l.strip_prefix("name = ")).unwrap().trim_matches('"').to_string();
        out.insert(name, d);
    }
    out
}

/// The workspace crates a crate depends on (normal dependencies, not dev ones).
fn internal_deps(dir: &Path, names: &BTreeSet<String>) -> BTreeSet<String> {
    let toml = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let deps = toml.split("[dependencies]").nth(1).unwrap_or_default();
    let deps = deps.split("\n[").next().unwrap_or_default();
    deps.lines()
        .filter_map(|l| l.split(['.', ' ', '=']).next())
        .filter(|n| names.contains(*n))
        .map(str::to_string)
        .collect()
}

#[test]
fn crate_dependencies_point_one_way() {
    let crates = crates();
    let names: BTreeSet<String> = crates.keys().cloned().collect();
    // what each crate may depend on inside the workspace (STYLE.md, ARCHITECTURE.md)
    let allowed: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("readhub-types", &[][..]),
        ("dicom-walk", &[][..]),
        // certificates and keys into rustls configurations; knows no listener
        ("readhub-tls", &["readhub-types"][..]),
        ("storage", &["readhub-types", "dicom-walk"][..]),
        ("dicom-media", &["readhub-types", "dicom-walk"][..]),
        // ECG files in (aECG, Philips XML, SCP-ECG), made DICOM; measurements; criteria:
        // pure, no I/O beyond the bytes it is given
        ("ecg", &["readhub-types"][..]),
        // the audit trail: written by both front doors, stored beside the index
        ("audit", &["storage"][..]),
        ("dicom-gateway", &["storage", "readhub-types", "readhub-tls", "audit"][..]),
        ("worklist", &["storage", "readhub-types"][..]),
        // HL7 v2 (MLLP orders in, results out): an edge that translates to and from the
        // worklist's orders, like the gateway does for instances
        ("hl7", &["storage", "worklist", "readhub-types", "audit"][..]),
        ("viewer-api", &["storage", "worklist", "dicom-media", "readhub-types", "audit", "ecg"][..]),
        // the fuzz targets reach into every parser; nothing depends on them
        ("fuzz-targets", &["storage", "dicom-gateway", "dicom-media", "viewer-api", "ecg", "hl7"][..]),
    ]);
    for (name, dir) in &crates {
        let rule = allowed.get(name.as_str()).unwrap_or_else(|| panic!("crate {name} is new: say here what it may depend on"));
        for dep in internal_deps(dir, &names) {
            assert!(rule.contains(&dep.as_str()), "{name} depends on {dep}, against the one-way rule");
        }
    }
}

/// `crate::module` references of each module of a crate.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    // a module is a top-level file or folder of src/
    let top = |p: &Path| -> Option<String> {
        let rel = p.strip_prefix(src).ok()?;
        let first = rel.components().next()?.as_os_str().to_str()?.trim_end_matches(".rs").to_string();
        (first != "lib" && first != "main").then_some(first)
    };
    let modules: BTreeSet<String> = files.iter().filter_map(|f| top(f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let Some(m) = top(f) else { continue };
        let text = std::fs::read_to_string(f).unwrap();
        let code: String = text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
        let entry = graph.entry(m.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + 7..];
            let dep: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if modules.contains(&dep) && dep != m {
                entry.insert(dep);
            }
            // use crate::{a, b::C}
            if rest.starts_with('{') {
                for item in rest[1..].split('}').next().unwrap_or_default().split(',') {
                    let dep = item.trim().split("::").next().unwrap_or_default().to_string();
                    if modules.contains(&dep) && dep != m {
                        entry.insert(dep);
                    }
                }
            }
        }
    }
    graph
}

/// A cycle in `graph`, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(n: &str, g: &BTreeMap<String, BTreeSet<String>>, path: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == n) {
            let mut c = path[at..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_crate_has_an_import_circle() {
    for (name, dir) in crates().into_iter().chain([("readhub".to_string(), root().to_path_buf())]) {
        let graph = module_graph(&dir.join("src"));
        assert!(cycle(&graph).is_none(), "{name}: modules import each other in a circle: {:?}", cycle(&graph));
    }
    // the checker finds one when there is one
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(cycle(&g), Some(vec!["a".into(), "b".into(), "a".into()]));
}

#[test]
fn storage_reads_no_workflow_table() {
    let workflow = ["worklist_items", "open_transfers", "site_quiet_periods", "item_events", "reports", "critical_results", "alerts", "pools", "users"];
    for e in std::fs::read_dir(root().join("storage/src")).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        for t in workflow {
            for pat in [format!("FROM {t} "), format!("JOIN {t} "), format!("UPDATE {t} "), format!("INTO {t} ")] {
                assert!(!text.contains(&pat), "{} touches the workflow table {t}: give storage a study filter instead", p.display());
            }
        }
    }
}
