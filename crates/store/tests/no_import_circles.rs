//! The crate's top-level modules depend on each other one way: no import circles.
//!
//! Reads every `.rs` file under `src/`, maps it to its top-level module (`src/index/query.rs` is
//! `index`), collects the modules it names through `crate::<module>` (use trees included, and names
//! `lib.rs` re-exports mapped to the module they come from) outside `#[cfg(test)]` items and test
//! files, and fails on any strongly connected set of modules, printing a cycle of each.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn top_level_modules_have_no_import_circles() {
    let graph = module_graph();
    let sets: Vec<Vec<String>> = strongly_connected(&graph).into_iter().filter(|set| set.len() > 1).collect();
    if !sets.is_empty() {
        let mut message = String::from("import circles between the top-level modules of crates/store:\n");
        for set in &sets {
            message.push_str(&format!("  {}\n", cycle_in(&graph, set).join(" -> ")));
            message.push_str("    edges inside the set:\n");
            for from in set {
                let inside: Vec<&str> = graph[from].iter().filter(|to| set.contains(to)).map(String::as_str).collect();
                message.push_str(&format!("      {from} -> {}\n", inside.join(", ")));
            }
        }
        panic!("{message}");
    }
}

/// Edges `module -> module it uses`, self-references dropped.
fn module_graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = strip_comments_and_strings(&fs::read_to_string(src.join("lib.rs")).expect("read lib.rs"));
    let modules = declared_modules(&lib);
    let reexports = reexported_names(&lib, &modules);
    let mut graph = Graph::new();
    for module in &modules {
        graph.entry(module.clone()).or_default();
    }
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src");
        let Some(module) = top_module(relative) else { continue };
        if is_test_file(relative) {
            continue;
        }
        let text = strip_comments_and_strings(&fs::read_to_string(&file).expect("read source"));
        let text = strip_cfg_test(&text);
        for used in crate_references(&text) {
            let target = if modules.contains(&used) { Some(used) } else { reexports.get(&used).cloned() };
            if let Some(target) = target
                && target != module
            {
                graph.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    graph
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir).expect("read dir").map(|e| e.expect("entry").path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `index/query.rs` -> `index`, `time.rs` -> `time`; `lib.rs` is the root, not a module.
fn top_module(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?.to_string();
    if first == "lib.rs" {
        return None;
    }
    Some(first.trim_end_matches(".rs").to_string())
}

/// Files that only exist under `#[cfg(test)]`: `tests.rs` and anything in a `tests/` folder.
fn is_test_file(relative: &Path) -> bool {
    relative.components().any(|c| {
        let c = c.as_os_str().to_str().unwrap_or("");
        c == "tests.rs" || c == "tests"
    })
}

/// `mod x;` and `pub mod x;` items of `lib.rs`.
fn declared_modules(lib: &str) -> BTreeSet<String> {
    let mut modules = BTreeSet::new();
    for line in lib.lines() {
        let line = line.trim();
        let rest = line.strip_prefix("pub mod ").or_else(|| line.strip_prefix("mod "));
        if let Some(name) = rest.and_then(|r| r.strip_suffix(';')) {
            modules.insert(name.trim().to_string());
        }
    }
    modules
}

/// Names `lib.rs` re-exports (`pub use module::{A, b as c}`) mapped to their module, so that
/// `crate::Store` counts as a use of `store`.
fn reexported_names(lib: &str, modules: &BTreeSet<String>) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    let mut rest = lib;
    while let Some(at) = rest.find("pub use ") {
        let item = &rest[at + "pub use ".len()..];
        let end = item.find(';').unwrap_or(item.len());
        let tree = &item[..end];
        rest = &item[end..];
        let tree = tree.trim().trim_start_matches("crate::");
        let Some((module, tail)) = tree.split_once("::") else { continue };
        if !modules.contains(module.trim()) {
            continue;
        }
        for leaf in tail.split([',', '{', '}']) {
            let leaf = leaf.trim();
            let leaf = leaf.rsplit(" as ").next().unwrap_or(leaf);
            let leaf = leaf.rsplit("::").next().unwrap_or(leaf).trim();
            if !leaf.is_empty() && leaf != "self" && leaf != "*" {
                names.insert(leaf.to_string(), module.trim().to_string());
            }
        }
    }
    names
}

/// Replaces comments, string and char literals with spaces (keeping newlines), so that braces
/// and `crate::` inside them do not count.
fn strip_comments_and_strings(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if (c == 'r' || c == 'b') && is_raw_string_start(&chars, i) {
            // r"..", r#".."#, br#".."#
            let mut j = i;
            while chars[j] != '#' && chars[j] != '"' {
                out.push(' ');
                j += 1;
            }
            let mut hashes = 0;
            while chars[j] == '#' {
                hashes += 1;
                out.push(' ');
                j += 1;
            }
            out.push(' ');
            j += 1; // opening quote
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (0..hashes).all(|k| chars.get(j + 1 + k) == Some(&'#')) {
                    for _ in 0..=hashes {
                        out.push(' ');
                    }
                    j += 1 + hashes;
                    break;
                }
                out.push(blank(chars[j]));
                j += 1;
            }
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') rather than a lifetime ('a).
            let close = if next == Some('\\') {
                (i + 2..chars.len().min(i + 12)).find(|&k| chars[k] == '\'')
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match close {
                Some(k) => {
                    for _ in i..=k {
                        out.push(' ');
                    }
                    i = k + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_raw_string_start(chars: &[char], i: usize) -> bool {
    if i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_') {
        return false;
    }
    let mut j = i;
    if chars[j] == 'b' {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return false;
    }
    j += 1;
    while chars.get(j) == Some(&'#') {
        j += 1;
    }
    chars.get(j) == Some(&'"')
}

/// Removes every item that follows a `#[cfg(test)]` attribute: up to its `;` or through its
/// brace-balanced body, whichever comes first.
fn strip_cfg_test(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at + "#[cfg(test)]".len()..];
        let mut depth = 0usize;
        let mut end = item.len();
        for (k, c) in item.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = k + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = k + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// The first path segment after every `crate::`, each branch of a `crate::{..}` use tree included.
fn crate_references(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(at) = text[from..].find("crate::") {
        let start = from + at;
        from = start + "crate::".len();
        if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            continue; // e.g. `$crate::` or `mycrate::`
        }
        let after = text[from..].trim_start();
        if let Some(group) = after.strip_prefix('{') {
            // Top-level branches of the use tree.
            let mut depth = 0usize;
            let mut branch_start = true;
            let mut ident = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => branch_start = true,
                    c if branch_start && (c.is_alphanumeric() || c == '_') => ident.push(c),
                    _ => {
                        if branch_start && !ident.is_empty() {
                            found.insert(std::mem::take(&mut ident));
                            branch_start = false;
                        }
                    }
                }
            }
            if !ident.is_empty() {
                found.insert(ident);
            }
        } else {
            let ident: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !ident.is_empty() {
                found.insert(ident);
            }
        }
    }
    found
}

/// Tarjan's strongly connected components.
fn strongly_connected(graph: &Graph) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        let graph = s.graph;
        for w in graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut set = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                set.push(w.to_string());
                if w == v {
                    break;
                }
            }
            set.sort();
            s.out.push(set);
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

/// One cycle through the first module of a strongly connected set (shortest, by breadth-first
/// search), printed with the whole set: `a -> b -> a   (set: a, b, c)`.
fn cycle_in(graph: &Graph, set: &[String]) -> Vec<String> {
    let members: BTreeSet<&String> = set.iter().collect();
    let start = &set[0];
    let mut parent: BTreeMap<&String, &String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    let mut closing = None;
    'search: while let Some(v) = queue.pop_front() {
        for w in graph.get(v).into_iter().flatten() {
            if !members.contains(w) {
                continue;
            }
            if w == start {
                closing = Some(v);
                break 'search;
            }
            if !parent.contains_key(w) {
                parent.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    let mut path = vec![start.clone()];
    let mut v = closing.expect("a strongly connected set has a cycle");
    let mut back = Vec::new();
    while v != start {
        back.push(v.clone());
        v = parent[v];
    }
    back.reverse();
    path.extend(back);
    path.push(start.clone());
    let last = path.pop().unwrap_or_default();
    path.push(format!("{last}   (set: {})", set.join(", ")));
    path
}

#[test]
fn the_reader_sees_use_trees_and_skips_test_code() {
    let text = strip_cfg_test(&strip_comments_and_strings(
        "use crate::{a::X, b::{Y, Z}, c};\n// crate::d\nlet s = \"crate::e\";\n#[cfg(test)]\nmod tests { use crate::f; }\nfn g() { crate::h::k(); }\n",
    ));
    let refs: Vec<String> = crate_references(&text).into_iter().collect();
    assert_eq!(refs, ["a", "b", "c", "h"]);
    let mut graph = Graph::new();
    graph.insert("a".into(), ["b".into()].into());
    graph.insert("b".into(), ["a".into()].into());
    graph.insert("c".into(), ["a".into()].into());
    let sets: Vec<_> = strongly_connected(&graph).into_iter().filter(|s| s.len() > 1).collect();
    assert_eq!(sets, [vec!["a".to_string(), "b".to_string()]]);
}
