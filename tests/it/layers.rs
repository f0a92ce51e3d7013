//! The floor plan holds: every `crate::…`, `super::…` and `hephaestus::…` path in `src/` goes
//! to the same floor or one below (the floors are the fenced `layers` block of
//! docs/architecture.md, written there once), and no two modules import each other, directly
//! or around a circle. `make lint` runs this.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module of the library or the binary: its path (`stage::upload`) and file.
#[derive(Debug, Clone)]
struct Module {
    path: Vec<String>,
    file: PathBuf,
}

/// One path to another module, as written.
#[derive(Debug)]
struct Edge {
    from: usize,
    to: usize,
    line: usize,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The floors, bottom first: each line of the `layers` block is `name: module module …`.
fn floors(architecture: &str) -> Vec<(String, Vec<String>)> {
    let block = architecture
        .split("```layers\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/architecture.md has a ```layers block");
    block
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (name, modules) = l.split_once(':').expect("`floor: modules` lines");
            (
                name.trim().to_string(),
                modules.split_whitespace().map(str::to_string).collect(),
            )
        })
        .collect()
}

/// Every `.rs` file under `dir`, as modules under `prefix`.
fn modules(dir: &Path, prefix: &[String], out: &mut Vec<Module>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read src")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            let mut p = prefix.to_vec();
            p.push(stem);
            modules(&path, &p, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let mut p = prefix.to_vec();
            if !matches!(stem.as_str(), "mod" | "lib") {
                p.push(stem);
            }
            out.push(Module {
                path: p,
                file: path,
            });
        }
    }
}

/// The paths a line names: `crate::a::b`, `super::{x, y}`, expanded one brace level deep.
fn paths_in(line: &str) -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    for anchor in ["crate::", "super::", "hephaestus::"] {
        let mut rest = line;
        while let Some(i) = rest.find(anchor) {
            let before = rest[..i].chars().last();
            rest = &rest[i + anchor.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let head: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let mut segs: Vec<String> = head
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            let after = &rest[head.len()..];
            let anchor = anchor.trim_end_matches("::").to_string();
            if let Some(group) = after.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or_default();
                for item in inner.split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() && name != "self" {
                        let mut s = segs.clone();
                        s.push(name);
                        found.push((anchor.clone(), s));
                    }
                }
                if segs.is_empty() {
                    continue;
                }
            }
            if !segs.is_empty() {
                // A trailing item may be a type, a function or a module: resolution decides.
                found.push((anchor.clone(), std::mem::take(&mut segs)));
            }
        }
    }
    found
}

/// The deepest module `segs` (an absolute module path) names.
fn resolve(index: &BTreeMap<Vec<String>, usize>, segs: &[String]) -> Option<usize> {
    (1..=segs.len())
        .rev()
        .find_map(|n| index.get(&segs[..n].to_vec()).copied())
}

fn is_ancestor(a: &[String], b: &[String]) -> bool {
    a.len() < b.len() && b.starts_with(a)
}

#[test]
fn layers_no_import_runs_up_a_floor_and_no_module_cycle() {
    let root = root();
    let architecture =
        std::fs::read_to_string(root.join("docs/architecture.md")).expect("docs/architecture.md");
    let floors = floors(&architecture);
    let floor_of: BTreeMap<&str, (usize, &str)> = floors
        .iter()
        .enumerate()
        .flat_map(|(i, (name, ms))| ms.iter().map(move |m| (m.as_str(), (i, name.as_str()))))
        .collect();

    // The library is `hephaestus`; the binary's modules (`main`, `cli`, `command`) sit on top
    // and reach the library as `hephaestus::…`.
    let mut all = Vec::new();
    modules(&root.join("src"), &[], &mut all);
    let bin_roots = ["main", "cli", "command"];
    let index: BTreeMap<Vec<String>, usize> = all
        .iter()
        .enumerate()
        .map(|(i, m)| (m.path.clone(), i))
        .collect();

    let mut problems = Vec::new();
    let mut edges = Vec::new();
    for (from, module) in all.iter().enumerate() {
        let top = module.path.first().map_or("lib", String::as_str);
        let in_bin = bin_roots.contains(&top);
        let text = std::fs::read_to_string(&module.file).expect("read");
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim_start();
            if line.starts_with("//") {
                continue;
            }
            let code = line.split("//").next().unwrap_or_default();
            for (anchor, segs) in paths_in(code) {
                let absolute: Vec<String> = match (anchor.as_str(), in_bin) {
                    // Inside the binary, its own modules: all on the top floor.
                    ("crate" | "super", true) => continue,
                    ("crate" | "hephaestus", _) => segs.clone(),
                    _ => {
                        // `super` of `a/b.rs` and of `a/b/mod.rs` is `a`.
                        let mut base = module.path.clone();
                        base.pop();
                        base.extend(segs.iter().cloned());
                        base
                    }
                };
                if absolute.is_empty() || bin_roots.contains(&absolute[0].as_str()) {
                    continue;
                }
                let Some(to) = resolve(&index, &absolute) else {
                    continue;
                };
                edges.push(Edge {
                    from,
                    to,
                    line: n + 1,
                });
            }
        }
    }

    let floor = |m: &Module| -> (usize, String) {
        let top = m.path.first().map_or("lib", String::as_str);
        match floor_of.get(top) {
            Some((i, name)) => (*i, name.to_string()),
            None if top == "lib" => (floors.len(), "crate root".into()),
            None => panic!(
                "module `{top}` ({}) is on no floor: add it to the layers block of docs/architecture.md",
                m.file.display()
            ),
        }
    };
    for e in &edges {
        let (a, b) = (&all[e.from], &all[e.to]);
        let ((fa, na), (fb, nb)) = (floor(a), floor(b));
        if fb > fa {
            problems.push(format!(
                "{}:{}: `{}` (floor {na}) imports `{}` (floor {nb}), a floor above",
                a.file.strip_prefix(&root).unwrap_or(&a.file).display(),
                e.line,
                a.path.join("::"),
                b.path.join("::"),
            ));
        }
    }

    // Cycles between modules; a directory's own mod.rs and its files are one room.
    let mut graph: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    for e in &edges {
        let (a, b) = (&all[e.from].path, &all[e.to].path);
        if e.from != e.to && !is_ancestor(a, b) && !is_ancestor(b, a) {
            graph.entry(e.from).or_default().insert(e.to);
        }
    }
    if let Some(cycle) = find_cycle(&graph) {
        problems.push(format!(
            "import cycle: {}",
            cycle
                .iter()
                .map(|&i| all[i].path.join("::"))
                .collect::<Vec<_>>()
                .join(" → ")
        ));
    }
    assert!(
        problems.is_empty(),
        "the floor plan of docs/architecture.md is broken:\n  {}",
        problems.join("\n  ")
    );
    // The check saw the house: the stages import the lifecycle, the pipeline the stages.
    let saw = |a: &str, b: &str| {
        edges.iter().any(|e| {
            all[e.from].path.first().map(String::as_str) == Some(a)
                && all[e.to].path.first().map(String::as_str) == Some(b)
        })
    };
    assert!(saw("stage", "lifecycle") && saw("pipeline", "stage") && saw("command", "pipeline"));
}

fn find_cycle(graph: &BTreeMap<usize, BTreeSet<usize>>) -> Option<Vec<usize>> {
    fn visit(
        n: usize,
        graph: &BTreeMap<usize, BTreeSet<usize>>,
        state: &mut BTreeMap<usize, u8>,
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        state.insert(n, 1);
        stack.push(n);
        for &m in graph.get(&n).into_iter().flatten() {
            match state.get(&m) {
                Some(1) => {
                    let start = stack.iter().position(|&x| x == m).unwrap_or(0);
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(m);
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(m, graph, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(n, 2);
        None
    }
    let mut state = BTreeMap::new();
    for &n in graph.keys() {
        if !state.contains_key(&n) {
            let mut stack = Vec::new();
            if let Some(c) = visit(n, graph, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn layers_the_check_catches_an_import_up_a_floor_and_a_cycle() {
    // The parser sees grouped and nested paths, and the cycle finder a circle of three.
    let p = paths_in("use super::{slot, tag, Artifact}; let x = crate::pipeline::Plan::new();");
    assert!(p.contains(&("super".into(), vec!["tag".into()])));
    assert!(p.contains(&(
        "crate".into(),
        vec!["pipeline".into(), "Plan".into(), "new".into()]
    )));
    let graph = BTreeMap::from([
        (0, BTreeSet::from([1])),
        (1, BTreeSet::from([2])),
        (2, BTreeSet::from([0])),
    ]);
    assert_eq!(find_cycle(&graph), Some(vec![0, 1, 2, 0]));
    assert_eq!(
        find_cycle(&BTreeMap::from([(0, BTreeSet::from([1]))])),
        None
    );
}
