//! The runs list's filter and sort language, applied on the server to the
//! run index's rows (`GET /api/runs?q=&sort=&order=`).
//!
//! A query is terms separated by spaces; a run matches when every term
//! does:
//! - a plain word (`adam`, `failed`, `0.001`) appears, case-insensitively,
//!   in the run's id, name, tags, status, backend or any configuration
//!   value: the words the page always accepted;
//! - `key:value` is equal to it, `key:~value` contains it (`status:completed`,
//!   `tag:baseline`, `sweep:sweep-2026…`, `name:~adam`, `optimizer:sgd`);
//! - `key>N`, `>=`, `<`, `<=`, `=`, `!=` compare numbers (`acc>0.99`,
//!   `lr<=0.001`, `k1>=16`; `acc>99%` is the same as `acc>0.99`).
//!
//! Keys are every field of the config table ([`mnist_train::config::FIELDS`]),
//! `k1`…`k4` (the four kernel counts), the results and the run's own
//! ([`KEYS`]). A term that does not parse, or names no key, is an error
//! naming that term.

pub use crate::protocol::Cell;
use crate::protocol::RunSummary;
use serde_json::Value;
use std::cmp::Ordering;
use std::collections::HashMap;

/// The keys besides the config fields: (name, what it is). Sortable and
/// filterable like the config fields.
pub const KEYS: &[(&str, &str)] = &[
    ("id", "the run id"),
    ("name", "the run's name"),
    ("tag", "one of its tags"),
    ("sweep", "its sweep's id"),
    ("parent", "the run it was forked from"),
    (
        "status",
        "running, paused, completed, stopped, failed or interrupted",
    ),
    (
        "ran_on",
        "the backend and device it ran on (cpu, wgpu:0, cuda:1)",
    ),
    ("device_name", "the device it ran on"),
    ("k1", "conv1's kernels (k2, k3, k4 likewise)"),
    ("acc", "test accuracy, else validation accuracy (0-1)"),
    ("test_acc", "test accuracy (0-1)"),
    ("val_acc", "validation accuracy (0-1)"),
    ("f1", "test macro-F1 (0-1)"),
    ("loss", "the last batch's loss"),
    ("steps", "steps trained"),
    ("epochs_done", "epochs completed"),
    ("params", "the model's parameters"),
    ("started", "start, Unix ms"),
    ("finished", "end, Unix ms"),
    ("bytes", "disk used by the run and its checkpoints"),
    ("checkpoints", "checkpoints kept"),
];

/// Old names the page's columns use, mapped to keys.
const ALIASES: &[(&str, &str)] = &[
    ("run", "id"),
    ("run_id", "id"),
    ("opt", "optimizer"),
    ("batch", "batch_size"),
    ("backend_used", "ran_on"),
    ("test_accuracy", "test_acc"),
    ("val_accuracy", "val_acc"),
    ("f1_macro", "f1"),
    ("test_f1_macro", "f1"),
    ("last_loss", "loss"),
    ("epochs_completed", "epochs_done"),
    ("tags", "tag"),
];

/// A term that is not understood, with why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("term `{term}`: {why}")]
pub struct QueryError {
    /// The term as written.
    pub term: String,
    /// What is wrong with it and what is allowed.
    pub why: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

#[derive(Debug, Clone, PartialEq)]
enum Term {
    Word(String),
    Is(String, String),
    Contains(String, String),
    Compare(String, Op, f64),
}

/// A parsed filter: every term must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    terms: Vec<Term>,
}

/// Resolves a key as written (an alias, a config field, one of [`KEYS`]).
pub fn key(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    let name = ALIASES
        .iter()
        .find(|(a, _)| *a == lower)
        .map_or(lower.as_str(), |(_, k)| k);
    let config = mnist_train::config::FIELDS.iter().map(|f| f.name);
    let ours = KEYS.iter().map(|(k, _)| *k).chain(["k2", "k3", "k4"]);
    config.chain(ours).find(|k| *k == name)
}

fn unknown_key(name: &str) -> String {
    let mut keys: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
    keys.extend(mnist_train::config::FIELDS.iter().map(|f| f.name));
    format!("no key `{name}`: use one of {}", keys.join(", "))
}

fn number(text: &str) -> Option<f64> {
    match text.strip_suffix('%') {
        Some(pct) => pct.trim().parse::<f64>().ok().map(|v| v / 100.0),
        None => text.parse::<f64>().ok(),
    }
    .filter(|v| v.is_finite())
}

/// Splits on spaces, keeping `"quoted text"` whole.
fn split_terms(q: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in q.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    terms.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        terms.push(cur);
    }
    terms
}

fn parse_term(term: &str) -> Result<Term, String> {
    const OPS: [(&str, Op); 6] = [
        (">=", Op::Ge),
        ("<=", Op::Le),
        ("!=", Op::Ne),
        (">", Op::Gt),
        ("<", Op::Lt),
        ("=", Op::Eq),
    ];
    let op_at = term.find(['<', '>', '=', '!']);
    let colon_at = term.find(':');
    if let Some(at) = op_at.filter(|&at| colon_at.is_none_or(|c| at < c)) {
        let (name, rest) = term.split_at(at);
        let (sym, op) = OPS
            .iter()
            .find(|(s, _)| rest.starts_with(s))
            .ok_or_else(|| "use one of > >= < <= = !=".to_string())?;
        let k = key(name).ok_or_else(|| unknown_key(name))?;
        let value = &rest[sym.len()..];
        let v = number(value)
            .ok_or_else(|| format!("`{value}` is not a number (compare {k} as {k}{sym}0.5)"))?;
        return Ok(Term::Compare(k.to_string(), *op, v));
    }
    if let Some(at) = colon_at {
        let (name, value) = (&term[..at], &term[at + 1..]);
        let k = key(name).ok_or_else(|| unknown_key(name))?;
        return Ok(match value.strip_prefix('~') {
            Some(v) => Term::Contains(k.to_string(), v.to_lowercase()),
            None => Term::Is(k.to_string(), value.to_lowercase()),
        });
    }
    Ok(Term::Word(term.to_lowercase()))
}

impl Filter {
    /// Parses `q`; the first bad term is the error.
    pub fn parse(q: &str) -> Result<Self, QueryError> {
        let terms = split_terms(q)
            .into_iter()
            .map(|t| {
                parse_term(&t).map_err(|why| QueryError {
                    term: t.clone(),
                    why,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Filter { terms })
    }

    /// Whether the filter lets every run through.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether `row` passes every term.
    pub fn matches(&self, row: &RunSummary) -> bool {
        let mut text: Option<String> = None;
        self.terms.iter().all(|t| match t {
            Term::Word(w) => text
                .get_or_insert_with(|| search_text(row))
                .contains(w.as_str()),
            Term::Is(k, v) => texts(&cell(row, k)).iter().any(|t| t == v),
            Term::Contains(k, v) => texts(&cell(row, k)).iter().any(|t| t.contains(v.as_str())),
            Term::Compare(k, op, v) => match cell(row, k) {
                Cell::Num(x) => compare(x, *op, *v),
                Cell::Text(s) => number(&s).is_some_and(|x| compare(x, *op, *v)),
                _ => false,
            },
        })
    }
}

fn compare(x: f64, op: Op, v: f64) -> bool {
    match op {
        Op::Lt => x < v,
        Op::Le => x <= v,
        Op::Gt => x > v,
        Op::Ge => x >= v,
        // Within rounding: 0.1+0.2 = 0.3 for a person typing lr=0.3.
        Op::Eq => (x - v).abs() <= 1e-12 * v.abs().max(1.0),
        Op::Ne => (x - v).abs() > 1e-12 * v.abs().max(1.0),
    }
}

fn texts(c: &Cell) -> Vec<String> {
    match c {
        Cell::Missing => vec![],
        Cell::Num(v) => vec![v.to_string()],
        Cell::Text(s) => vec![s.to_lowercase()],
        Cell::Many(v) => v.iter().map(|s| s.to_lowercase()).collect(),
    }
}

/// A config value as text: `kernels` as `4,8,8,8`.
fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(a) => Some(
            a.iter()
                .map(|x| value_text(x).unwrap_or_default())
                .collect::<Vec<_>>()
                .join(","),
        ),
        v => Some(v.to_string()),
    }
}

/// What the plain words search: id, name, tags, status, where it ran and
/// every configuration value.
fn search_text(row: &RunSummary) -> String {
    let mut t = format!(
        "{} {} {} {} {} {}",
        row.run_id,
        row.meta.name.as_deref().unwrap_or(""),
        row.meta.tags.join(" "),
        row.status.as_str(),
        row.backend.as_deref().unwrap_or(""),
        row.device.as_deref().unwrap_or(""),
    );
    if let Some(config) = row.config.as_object() {
        for v in config.values().filter_map(value_text) {
            t.push(' ');
            t.push_str(&v);
        }
    }
    t.to_lowercase()
}

fn opt(v: Option<f64>) -> Cell {
    v.map_or(Cell::Missing, Cell::Num)
}

/// The value of key `k` (as [`key`] resolved it) on `row`.
pub fn cell(row: &RunSummary, k: &str) -> Cell {
    let text = |s: Option<&str>| s.map_or(Cell::Missing, |s| Cell::Text(s.to_string()));
    match k {
        "id" => Cell::Text(row.run_id.clone()),
        "name" => text(row.meta.name.as_deref()),
        "tag" => Cell::Many(row.meta.tags.clone()),
        "sweep" => text(row.sweep.as_deref()),
        "parent" => text(row.parent.as_ref().map(|p| p.run_id.as_str())),
        "status" => Cell::Text(row.status.as_str().into()),
        // `cuda:1`, as the page shows it: sorts by backend, then index.
        "ran_on" => match (&row.backend, row.device_index) {
            (Some(b), Some(i)) => Cell::Text(format!("{b}:{i}")),
            (b, _) => text(b.as_deref()),
        },
        "device_name" => text(row.device.as_deref()),
        "k1" | "k2" | "k3" | "k4" => {
            let i = (k.as_bytes()[1] - b'1') as usize;
            opt(row
                .config
                .get("kernels")
                .and_then(|a| a.get(i))
                .and_then(Value::as_f64))
        }
        "acc" => opt(row.test_accuracy.or(row.val_accuracy)),
        "test_acc" => opt(row.test_accuracy),
        "val_acc" => opt(row.val_accuracy),
        "f1" => opt(row.test_f1_macro),
        "loss" => opt(row.last_loss),
        "steps" => Cell::Num(row.steps as f64),
        "epochs_done" => Cell::Num(row.epochs_completed as f64),
        "params" => opt(row.params.map(|p| p as f64)),
        "started" => Cell::Num(row.started_ms as f64),
        "finished" => opt(row.finished_ms.map(|v| v as f64)),
        "bytes" => Cell::Num((row.disk.run_bytes + row.disk.checkpoint_bytes) as f64),
        "checkpoints" => Cell::Num(row.disk.checkpoint_epochs.len() as f64),
        field => match row.config.get(field) {
            None | Some(Value::Null) => Cell::Missing,
            Some(Value::Number(n)) => opt(n.as_f64()),
            Some(Value::Bool(b)) => Cell::Text(b.to_string()),
            Some(v) => text(value_text(v).as_deref()),
        },
    }
}

/// Orders two cells: numbers by value, text naturally (`run-9` before
/// `run-10`), missing values last whatever the direction (applied by
/// [`sort_rows`]).
fn order(a: &Cell, b: &Cell) -> Ordering {
    match (a, b) {
        (Cell::Num(x), Cell::Num(y)) => x.total_cmp(y),
        (Cell::Num(_), _) => Ordering::Less,
        (_, Cell::Num(_)) => Ordering::Greater,
        _ => natural(&texts(a).join(" "), &texts(b).join(" ")),
    }
}

/// Compares text with runs of digits by their value.
fn natural(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, _) => return Ordering::Less,
            (_, None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (na, nb) = (trim_zeros(&a[..da]), trim_zeros(&b[..db]));
                let o = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
                if o != Ordering::Equal {
                    return o;
                }
                (a, b) = (&a[da..], &b[db..]);
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                (a, b) = (&a[1..], &b[1..]);
            }
        }
    }
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let i = d.iter().position(|&c| c != b'0').unwrap_or(d.len());
    &d[i..]
}

/// Sorts `rows` by key `k` (ascending unless `descending`), missing values
/// last, ties by run id (newest first) so pages are stable.
pub fn sort_rows<T>(
    rows: &mut [T],
    k: &str,
    descending: bool,
    summary: impl Fn(&T) -> &RunSummary,
) {
    let mut keyed: Vec<(Cell, usize)> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (cell(summary(r), k), i))
        .collect();
    keyed.sort_by(|(a, ia), (b, ib)| {
        let missing = matches!(a, Cell::Missing).cmp(&matches!(b, Cell::Missing));
        let by = if descending { order(b, a) } else { order(a, b) };
        let tie = || summary(&rows[*ib]).run_id.cmp(&summary(&rows[*ia]).run_id);
        missing.then(by).then_with(tie)
    });
    let order: Vec<usize> = keyed.into_iter().map(|(_, i)| i).collect();
    apply_permutation(rows, order);
}

/// The `sort=tree` order: each run followed by the runs forked from it
/// (depth first, oldest child first), roots by start time (newest first
/// when `descending`); a run whose parent is not among `rows` is a root.
/// Returns the rows in that order with their depth (0 for a root). A
/// parent loop (only a hand-edited log can make one) is broken where it
/// is first met, so every row is listed once.
pub fn tree_rows<'a>(rows: &[&'a RunSummary], descending: bool) -> Vec<(&'a RunSummary, usize)> {
    let index: HashMap<&str, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (r.run_id.as_str(), i))
        .collect();
    let parent_of = |r: &RunSummary| {
        r.parent
            .as_ref()
            .and_then(|p| index.get(p.run_id.as_str()).copied())
    };
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); rows.len()];
    let mut roots = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        match parent_of(r).filter(|&p| p != i) {
            Some(p) => children[p].push(i),
            None => roots.push(i),
        }
    }
    let started = |i: &usize| (rows[*i].started_ms, rows[*i].run_id.as_str());
    for c in &mut children {
        c.sort_by_key(started);
    }
    roots.sort_by_key(started);
    if descending {
        roots.reverse();
    }
    let mut seen = vec![false; rows.len()];
    let mut out = Vec::with_capacity(rows.len());
    // Rows only a loop reaches come last, as roots of their own.
    let rest: Vec<usize> = (0..rows.len()).collect();
    for root in roots.into_iter().chain(rest) {
        let mut stack = vec![(root, 0)];
        while let Some((i, depth)) = stack.pop() {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            out.push((rows[i], depth));
            stack.extend(children[i].iter().rev().map(|&c| (c, depth + 1)));
        }
    }
    out
}

fn apply_permutation<T>(rows: &mut [T], mut order: Vec<usize>) {
    // Cycle-following in place: rows[i] takes rows[order[i]].
    for i in 0..rows.len() {
        let mut cur = i;
        while order[cur] != i {
            let next = order[cur];
            rows.swap(cur, next);
            order[cur] = cur;
            cur = next;
        }
        order[cur] = cur;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Status;
    use serde_json::json;

    fn row(id: &str, status: Status, lr: f64, acc: Option<f64>, tags: &[&str]) -> RunSummary {
        RunSummary {
            run_id: id.into(),
            status,
            started_ms: 0,
            finished_ms: None,
            config: json!({"lr": lr, "optimizer": "adam", "kernels": [4, 8, 16, 32], "batch_size": 64}),
            backend: Some("cpu".into()),
            device: None,
            device_index: None,
            device_reason: None,
            params: Some(1000),
            epochs_completed: 1,
            steps: 10,
            last_loss: Some(0.1),
            val_accuracy: None,
            test_accuracy: acc,
            test_f1_macro: None,
            error: None,
            sweep: tags
                .iter()
                .find(|t| t.starts_with("sweep-"))
                .map(|t| t.to_string()),
            parent: None,
            meta: crate::protocol::RunMeta {
                name: Some(format!("{id} with Adam")),
                notes: String::new(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
            },
            disk: Default::default(),
        }
    }

    fn ids(q: &str, rows: &[RunSummary]) -> Vec<String> {
        let f = Filter::parse(q).unwrap();
        rows.iter()
            .filter(|r| f.matches(r))
            .map(|r| r.run_id.clone())
            .collect()
    }

    #[test]
    fn comparisons_keys_and_words_select_the_right_runs() {
        let rows = vec![
            row("a", Status::Completed, 1e-3, Some(0.995), &["baseline"]),
            row("b", Status::Failed, 3e-4, Some(0.98), &["sweep-1"]),
            row("c", Status::Completed, 3e-3, None, &["sweep-1", "keep"]),
        ];
        assert_eq!(ids("acc>0.99", &rows), ["a"]);
        assert_eq!(ids("acc>99%", &rows), ["a"]);
        assert_eq!(ids("lr<=0.001", &rows), ["a", "b"]);
        assert_eq!(ids("lr=0.003", &rows), ["c"]);
        assert_eq!(ids("status:completed", &rows), ["a", "c"]);
        assert_eq!(ids("tag:keep", &rows), ["c"]);
        assert_eq!(ids("sweep:sweep-1 status:failed", &rows), ["b"]);
        assert_eq!(ids("name:~adam", &rows).len(), 3);
        assert_eq!(ids("k4>=32 k1<5", &rows).len(), 3);
        assert_eq!(ids("kernels:4,8,16,32", &rows).len(), 3);
        assert_eq!(ids("FAILED", &rows), ["b"], "words as before, any case");
        assert_eq!(
            ids("optimizer:adam acc<0.99", &rows),
            ["b"],
            "no accuracy: no match"
        );
        assert_eq!(
            ids("opt:adam batch=64", &rows).len(),
            3,
            "the page's column names"
        );
        assert_eq!(
            ids("\"with adam\"", &rows).len(),
            3,
            "quoted words keep their space"
        );
    }

    #[test]
    fn a_bad_term_is_named_with_what_is_allowed() {
        let e = Filter::parse("status:completed acc>>1").unwrap_err();
        assert_eq!(e.term, "acc>>1");
        assert!(e.why.contains("not a number"), "{e}");
        let e = Filter::parse("accuracy>0.9").unwrap_err();
        assert_eq!(e.term, "accuracy>0.9");
        assert!(
            e.why.contains("no key `accuracy`") && e.why.contains("acc"),
            "{e}"
        );
        let e = Filter::parse("lr<abc").unwrap_err();
        assert!(e.to_string().starts_with("term `lr<abc`"), "{e}");
        assert!(Filter::parse("lr!0.1").is_err());
        assert!(Filter::parse("").unwrap().is_empty());
    }

    #[test]
    fn sorting_puts_missing_values_last_and_orders_text_naturally() {
        let mut rows = vec![
            row("run-10", Status::Completed, 1e-3, None, &[]),
            row("run-9", Status::Completed, 3e-4, Some(0.9), &[]),
            row("run-11", Status::Completed, 3e-3, Some(0.99), &[]),
        ];
        sort_rows(&mut rows, "acc", true, |r| r);
        let got: Vec<&str> = rows.iter().map(|r| r.run_id.as_str()).collect();
        assert_eq!(got, ["run-11", "run-9", "run-10"]);
        sort_rows(&mut rows, "acc", false, |r| r);
        let got: Vec<&str> = rows.iter().map(|r| r.run_id.as_str()).collect();
        assert_eq!(
            got,
            ["run-9", "run-11", "run-10"],
            "missing last either way"
        );
        sort_rows(&mut rows, "id", false, |r| r);
        let got: Vec<&str> = rows.iter().map(|r| r.run_id.as_str()).collect();
        assert_eq!(got, ["run-9", "run-10", "run-11"]);
        assert_eq!(key("opt"), Some("optimizer"));
        assert_eq!(key("nope"), None);
    }

    #[test]
    fn the_tree_lists_each_run_before_its_forks_with_their_depth() {
        let fork = |id: &str, parent: &str, started: u64| {
            let mut r = row(id, Status::Completed, 1e-3, None, &[]);
            r.started_ms = started;
            if !parent.is_empty() {
                r.parent = Some(mnist_events::Parent {
                    run_id: parent.into(),
                    epoch: 1,
                    step: 10,
                    optimizer_state: true,
                });
            }
            r
        };
        let rows = [
            fork("b1", "a", 30),
            fork("a", "", 10),
            fork("c", "", 20),
            fork("b0", "a", 25),
            fork("b0x", "b0", 40),
            fork("orphan", "gone", 5),
            // A loop (hand-edited logs): each listed once all the same.
            fork("l1", "l2", 1),
            fork("l2", "l1", 2),
        ];
        let refs: Vec<&RunSummary> = rows.iter().collect();
        let listed = |desc| -> Vec<(String, usize)> {
            tree_rows(&refs, desc)
                .into_iter()
                .map(|(r, d)| (r.run_id.clone(), d))
                .collect()
        };
        let want = |v: &[(&str, usize)]| -> Vec<(String, usize)> {
            v.iter().map(|(id, d)| (id.to_string(), *d)).collect()
        };
        assert_eq!(
            listed(true),
            want(&[
                ("c", 0),
                ("a", 0),
                ("b0", 1),
                ("b0x", 2),
                ("b1", 1),
                ("orphan", 0),
                ("l1", 0),
                ("l2", 1)
            ])
        );
        assert_eq!(listed(false)[..2], want(&[("orphan", 0), ("a", 0)])[..]);
        assert_eq!(listed(false).len(), rows.len());
    }
}
