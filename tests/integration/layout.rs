//! The house's layout: no module of a crate reaches back to itself through
//! the modules it uses (`crate::x` paths, doc links included), so each can
//! be read, and changed, on its own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module of the crate rooted at `src`, with its text
/// (a folder module's files joined).
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(src).unwrap();
                let top = rel
                    .components()
                    .next()
                    .unwrap()
                    .as_os_str()
                    .to_string_lossy();
                let name = top.trim_end_matches(".rs").to_string();
                out.entry(name)
                    .or_default()
                    .push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    out
}

/// The modules `text` names as `crate::name` or inside `use crate::{…}`.
fn uses(text: &str, names: &BTreeSet<String>) -> BTreeSet<String> {
    let word = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + 7..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            found.extend(group.split([',', ' ', '\n']).map(word));
        } else {
            found.insert(word(rest));
        }
    }
    found.retain(|n| names.contains(n));
    found
}

fn crate_roots() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut roots = vec![root.join("src")];
    for entry in std::fs::read_dir(root.join("crates")).unwrap().flatten() {
        if entry.path().join("src").is_dir() {
            roots.push(entry.path().join("src"));
        }
    }
    roots
}

/// The modules of `mods` that reach back to themselves.
fn loops_in(mods: &BTreeMap<String, String>) -> Vec<String> {
    let names: BTreeSet<String> = mods.keys().cloned().collect();
    let edges: BTreeMap<&String, BTreeSet<String>> = mods
        .iter()
        .map(|(m, text)| {
            let mut used = uses(text, &names);
            used.remove(m);
            (m, used)
        })
        .collect();
    let mut loops = Vec::new();
    for start in edges.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&String> = edges[start].iter().collect();
        while let Some(m) = stack.pop() {
            if m == *start {
                loops.push(start.to_string());
                break;
            }
            if seen.insert(m.clone()) {
                stack.extend(edges[m].iter());
            }
        }
    }
    loops
}

#[test]
fn no_module_reaches_back_to_itself() {
    let loops: Vec<String> = crate_roots()
        .iter()
        .flat_map(|src| {
            let found = loops_in(&modules(src));
            found
                .into_iter()
                .map(move |m| format!("{}: {m}", src.display()))
        })
        .collect();
    assert!(
        loops.is_empty(),
        "modules that reach back to themselves: {loops:#?}"
    );
}

#[test]
fn the_layout_check_sees_a_loop() {
    let mods: BTreeMap<String, String> = [
        ("a", "use crate::{b::X, c};"),
        ("b", "/// See [`crate::c`]."),
        ("c", "fn f() { crate::a::g() }"),
        ("d", "use crate::a;"),
    ]
    .iter()
    .map(|(m, t)| (m.to_string(), t.to_string()))
    .collect();
    assert_eq!(loops_in(&mods), ["a", "b", "c"]);
}
