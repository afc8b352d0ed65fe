//! The documentation stays true to the program: docs/configuration.md lists exactly the keys the
//! configuration schema accepts, and every file or page that README.md, docs/ and loadtest/ point
//! at exists.
//!
//! The schema's keys are read from the serde types in src/config/ (the `Raw*` structs) and then
//! confirmed by the loader itself: a file setting every one of them must deserialize, and an extra
//! key in each table must be refused with exactly that table's field list in serde's error. So a
//! key added to the schema and not documented, a documented key the loader does not know, and a
//! schema the text reading here misunderstands all fail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use toml::{Table, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

// ---- the schema, read from the serde types -------------------------------------------------

/// What a field holds, as far as the shape of the TOML file is concerned.
#[derive(Debug, Clone)]
enum Kind {
    /// A value: its Rust type, wrappers removed.
    Leaf(String),
    /// A table of the named struct.
    Table(String),
    /// An array of tables (`[[listener]]`, or inline tables in a list).
    Array(String),
    /// A table of named tables (`[upstream.NAME]`).
    Map(String),
}

struct Schema {
    structs: BTreeMap<String, Vec<(String, Kind)>>,
    /// Enums whose variants hold plain values (`SizeValue`): the first variant's type.
    value_enums: BTreeMap<String, String>,
}

/// The file of src/config/ that defines `RawConfig`.
fn schema_source() -> (PathBuf, String) {
    let mut dirs = vec![root().join("src/config")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                if text.contains("pub struct RawConfig") {
                    return (p, text);
                }
            }
        }
    }
    panic!("no `pub struct RawConfig` under src/config/");
}

/// The text between the braces that follow `at`.
fn braced(text: &str, at: usize) -> &str {
    let open = at + text[at..].find('{').unwrap();
    let mut depth = 0;
    for (i, c) in text[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return &text[open + 1..open + i];
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced braces");
}

/// Items separated by commas outside `<>` and `()`, with comments and attributes removed.
fn items(body: &str) -> Vec<String> {
    let clean: String = body
        .lines()
        .map(|l| l.trim())
        .filter(|l| !l.starts_with("//") && !l.starts_with("#["))
        .collect::<Vec<_>>()
        .join(" ");
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0);
    for c in clean.chars() {
        match c {
            '<' | '(' => depth += 1,
            '>' | ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The type without the wrappers that do not change the file's shape.
fn unwrap_type(mut t: &str) -> &str {
    loop {
        t = t.trim();
        let inner = ["Option<", "S<", "Spanned<", "toml::Spanned<"]
            .iter()
            .find_map(|w| t.strip_prefix(w).and_then(|r| r.strip_suffix('>')));
        match inner {
            Some(i) => t = i,
            None => return t,
        }
    }
}

fn schema() -> Schema {
    let (path, text) = schema_source();
    for attr in ["rename", "alias", "flatten"] {
        assert!(
            !text.contains(&format!("serde({attr}")) && !text.contains(&format!(", {attr}")),
            "{}: serde `{attr}` changes key names; teach tests/docs.rs to read it",
            path.display()
        );
    }
    let mut raw_structs = BTreeMap::new();
    let mut enums: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (at, _) in text.match_indices("pub struct ") {
        let name: String = text[at + 11..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let fields: Vec<(String, String)> = items(braced(&text, at))
            .into_iter()
            .map(|f| {
                let f = f.strip_prefix("pub ").unwrap_or(&f).to_string();
                let (n, t) = f.split_once(':').unwrap_or_else(|| panic!("field `{f}` of {name}"));
                (n.trim().to_string(), t.trim().to_string())
            })
            .collect();
        raw_structs.insert(name, fields);
    }
    for (at, _) in text.match_indices("pub enum ") {
        let name: String = text[at + 9..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let variants = items(braced(&text, at))
            .into_iter()
            .map(|v| {
                let inner = v.split_once('(').map(|(_, r)| r.trim_end_matches(')').to_string());
                inner.unwrap_or_else(|| panic!("enum {name}: unit variant `{v}` has no TOML shape"))
            })
            .collect();
        enums.insert(name, variants);
    }
    // An enum with a struct variant is a table shape (an untagged `{ addr = …, weight = … }`).
    let shape = |t: &str| -> Option<String> {
        let t = unwrap_type(t);
        if raw_structs.contains_key(t) {
            return Some(t.to_string());
        }
        enums
            .get(t)?
            .iter()
            .map(|v| unwrap_type(v))
            .find(|v| raw_structs.contains_key(*v))
            .map(str::to_string)
    };
    let mut structs = BTreeMap::new();
    for (name, fields) in &raw_structs {
        let kinds = fields
            .iter()
            .map(|(n, t)| {
                let u = unwrap_type(t);
                let kind = if let Some(inner) = u.strip_prefix("Vec<").and_then(|r| r.strip_suffix('>')) {
                    shape(inner).map(Kind::Array)
                } else if let Some(inner) = u.strip_prefix("BTreeMap<String,").and_then(|r| r.strip_suffix('>')) {
                    shape(inner).map(Kind::Map)
                } else {
                    shape(u).map(Kind::Table)
                };
                (n.clone(), kind.unwrap_or_else(|| Kind::Leaf(u.to_string())))
            })
            .collect();
        structs.insert(name.clone(), kinds);
    }
    let value_enums = enums
        .iter()
        .filter(|(_, vs)| vs.iter().all(|v| shape(v).is_none()))
        .map(|(n, vs)| (n.clone(), unwrap_type(&vs[0]).to_string()))
        .collect();
    Schema { structs, value_enums }
}

impl Schema {
    /// Every key as a dotted path (`upstream.*.health.path`), tables included.
    fn keys(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        self.walk("RawConfig", "", &mut |path, _| {
            out.insert(path.to_string());
        });
        out
    }

    /// Calls `f(path, struct)` for each table of the file, below `prefix`.
    fn walk(&self, st: &str, prefix: &str, f: &mut dyn FnMut(&str, Option<&str>)) {
        for (name, kind) in &self.structs[st] {
            let path = format!("{prefix}{name}");
            f(&path, None);
            match kind {
                Kind::Leaf(_) => {}
                Kind::Table(s) | Kind::Array(s) => {
                    f(&path, Some(s));
                    self.walk(s, &format!("{path}."), f);
                }
                Kind::Map(s) => {
                    let path = format!("{path}.*");
                    f(&path, Some(s));
                    self.walk(s, &format!("{path}."), f);
                }
            }
        }
    }

    /// A value of the right type for a leaf field.
    fn value(&self, t: &str) -> Value {
        let t = unwrap_type(t);
        if let Some(first) = self.value_enums.get(t) {
            return self.value(first);
        }
        if let Some(inner) = t.strip_prefix("Vec<").and_then(|r| r.strip_suffix('>')) {
            return Value::Array(vec![self.value(inner)]);
        }
        if let Some(inner) = t.strip_prefix("BTreeMap<String,").and_then(|r| r.strip_suffix('>')) {
            let mut m = Table::new();
            m.insert("X-Docs-Test".into(), self.value(inner));
            return Value::Table(m);
        }
        match t {
            "String" => Value::String("docs-test".into()),
            "bool" => Value::Boolean(true),
            "i64" | "u64" | "u32" | "usize" => Value::Integer(1),
            "f64" => Value::Float(1.5),
            other => panic!("tests/docs.rs has no TOML value for the type `{other}`"),
        }
    }

    /// A table of `st` with every field set; `poison` adds an unknown key at that table's path.
    fn build(&self, st: &str, path: &str, poison: &str) -> Table {
        let mut t = Table::new();
        if path == poison {
            t.insert("zz_not_a_key".into(), Value::Integer(1));
        }
        for (name, kind) in &self.structs[st] {
            let p = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            let v = match kind {
                Kind::Leaf(ty) => self.value(ty),
                Kind::Table(s) => Value::Table(self.build(s, &p, poison)),
                Kind::Array(s) => Value::Array(vec![Value::Table(self.build(s, &p, poison))]),
                Kind::Map(s) => {
                    let mut m = Table::new();
                    m.insert("n".into(), Value::Table(self.build(s, &format!("{p}.*"), poison)));
                    Value::Table(m)
                }
            };
            t.insert(name.clone(), v);
        }
        t
    }
}

/// The loader's errors from deserializing (no key: the TOML did not fit the schema), as text.
fn deserialize_errors(text: &str) -> Vec<String> {
    match ringway::config::load_str(text, Path::new("docs-test.toml")) {
        Ok(_) => Vec::new(),
        Err(errs) => errs
            .iter()
            .filter(|e| e.key.is_empty())
            .map(|e| e.message.clone())
            .collect(),
    }
}

// ---- the documented keys ------------------------------------------------------------------

/// `section.key` for every table row of docs/configuration.md whose first cell is a `key`,
/// under a `## `[section]`` heading; `[upstream.NAME]` is the section `upstream.*`.
fn documented_keys() -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut keys, mut sections) = (BTreeSet::new(), BTreeSet::new());
    let mut section: Option<String> = None;
    for line in read("docs/configuration.md").lines() {
        if let Some(h) = line.strip_prefix("## ") {
            section = h.strip_prefix("`[").and_then(|r| r.split_once("]`")).map(|(s, _)| {
                let s = s.trim_matches(|c| c == '[' || c == ']');
                s.split('.')
                    .map(|seg| {
                        if seg.chars().all(|c| c.is_ascii_uppercase()) {
                            "*"
                        } else {
                            seg
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(".")
            });
            if let Some(s) = &section {
                sections.insert(s.clone());
            }
            continue;
        }
        let (Some(s), Some(row)) = (&section, line.strip_prefix("| `")) else {
            continue;
        };
        let key = row.split('`').next().unwrap();
        keys.insert(format!("{s}.{key}"));
    }
    (keys, sections)
}

#[test]
fn configuration_reference_lists_exactly_the_schema_keys() {
    let schema = schema();
    let all = schema.keys();
    let (documented, sections) = documented_keys();
    // Sections are the headings (`upstream.*` for `[upstream.NAME]`); their keys are table rows.
    let top = &schema.structs["RawConfig"];
    let top_sections: BTreeSet<String> = top
        .iter()
        .map(|(n, k)| match k {
            Kind::Map(_) => format!("{n}.*"),
            _ => n.clone(),
        })
        .collect();
    assert_eq!(
        sections, top_sections,
        "docs/configuration.md sections vs the schema's top-level tables"
    );
    let in_sections: BTreeSet<String> = all
        .iter()
        .filter(|k| !top_sections.contains(*k) && !top.iter().any(|(n, _)| n == *k))
        .cloned()
        .collect();
    let undocumented: Vec<_> = in_sections.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&in_sections).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "docs/configuration.md is out of step with the configuration schema:\n\
         keys the program accepts that the page does not list: {undocumented:?}\n\
         keys the page lists that the program does not accept: {unknown:?}"
    );
    assert!(
        documented.len() > 80,
        "only {} documented keys found: is the table format still `| `key` |`?",
        documented.len()
    );
}

#[test]
fn the_loader_accepts_every_schema_key_and_refuses_others() {
    let schema = schema();
    let full = toml::to_string(&schema.build("RawConfig", "", "-")).unwrap();
    let errs = deserialize_errors(&full);
    assert!(
        errs.is_empty(),
        "a file setting every schema key was refused: {errs:?}\n{full}"
    );

    // Every table refuses a key it does not have, and serde's list of the keys it does have is the
    // one read from the source.
    let mut tables = Vec::new();
    schema.walk("RawConfig", "", &mut |path, st| {
        if let Some(st) = st {
            tables.push((path.to_string(), st.to_string()));
        }
    });
    tables.push((String::new(), "RawConfig".into()));
    assert!(tables.len() > 15, "only {} tables found in the schema", tables.len());
    for (path, st) in tables {
        let text = toml::to_string(&schema.build("RawConfig", "", &path)).unwrap();
        let errs = deserialize_errors(&text);
        let msg = errs
            .first()
            .unwrap_or_else(|| panic!("an unknown key in `{path}` was accepted"));
        let Some(expected) = msg.split_once("unknown field `zz_not_a_key`, expected ") else {
            // Inside an untagged enum serde only says that no variant matched.
            assert!(msg.contains("did not match any variant"), "`{path}`: {msg}");
            continue;
        };
        let listed: BTreeSet<&str> = expected.1.split('`').skip(1).step_by(2).collect();
        let read: BTreeSet<&str> = schema.structs[&st].iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(listed, read, "`{path}`: the loader's keys vs the keys read from {st}");
    }
}

// ---- what the pages point at ----------------------------------------------------------------

/// README.md, docs/*.md and the markdown under loadtest/, as (path, text).
fn pages() -> Vec<(String, String)> {
    let mut rels = vec!["README.md".to_string(), "loadtest/README.md".to_string()];
    for dir in ["docs", "loadtest/results"] {
        let mut v: Vec<String> = std::fs::read_dir(root().join(dir))
            .unwrap()
            .flatten()
            .map(|e| format!("{dir}/{}", e.file_name().to_string_lossy()))
            .filter(|p| p.ends_with(".md"))
            .collect();
        v.sort();
        rels.extend(v);
    }
    rels.into_iter().map(|r| (r.clone(), read(&r))).collect()
}

#[test]
fn every_linked_file_exists() {
    let mut missing = Vec::new();
    let mut count = 0;
    for (page, text) in pages() {
        let dir = Path::new(&page).parent().unwrap().to_path_buf();
        for (i, _) in text.match_indices("](") {
            let target = text[i + 2..].split(')').next().unwrap();
            let target = target.split('#').next().unwrap().trim();
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            count += 1;
            let path = root().join(&dir).join(target);
            let rel = path
                .strip_prefix(root())
                .map(|p| p.to_path_buf())
                .unwrap_or(path.clone());
            let normalized: PathBuf = rel.components().fold(PathBuf::new(), |mut acc, c| {
                match c {
                    std::path::Component::ParentDir => {
                        acc.pop();
                    }
                    std::path::Component::CurDir => {}
                    c => acc.push(c),
                }
                acc
            });
            if !root().join(&normalized).exists() {
                missing.push(format!("{page}: ({target})"));
            }
        }
    }
    assert!(count > 30, "only {count} links found");
    assert!(missing.is_empty(), "links to files that do not exist: {missing:#?}");
}

/// docs/architecture.md and the other pages name source files by path (`src/exchange/route.rs`,
/// `src/auth/`): each must exist, so a moved or renamed module fails here until the page follows.
#[test]
fn every_source_path_named_exists() {
    let mut missing = Vec::new();
    let mut count = 0;
    for (page, text) in pages() {
        for (i, _) in text.match_indices("`src/") {
            let name = text[i + 1..].split('`').next().unwrap();
            let name = name.split_whitespace().next().unwrap();
            count += 1;
            if !root().join(name).exists() {
                missing.push(format!("{page}: {name}"));
            }
        }
    }
    assert!(count > 30, "only {count} source paths named");
    assert!(
        missing.is_empty(),
        "source paths named in the docs that do not exist: {missing:#?}"
    );
}

#[test]
fn every_config_path_named_exists_and_every_example_is_in_the_readme() {
    let mut missing = Vec::new();
    for (page, text) in pages() {
        for (i, _) in text.match_indices("config/") {
            // `src/config/…` and the like are not example files.
            let before = text[..i].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || "/_-.".contains(c)) {
                continue;
            }
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || "/_-.".contains(*c))
                .collect();
            let name = name.trim_end_matches('.');
            if name != "config/" && !root().join(name).exists() {
                missing.push(format!("{page}: {name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "config paths named in the docs that do not exist: {missing:#?}"
    );

    let readme = read("README.md");
    let mut unlisted = Vec::new();
    for e in std::fs::read_dir(root().join("config")).unwrap().flatten() {
        let name = format!("config/{}", e.file_name().to_string_lossy());
        if name.ends_with(".toml") && !readme.contains(&name) {
            unlisted.push(name);
        }
    }
    assert!(
        unlisted.is_empty(),
        "example configs README.md does not show: {unlisted:?}"
    );
}
