//! Where README lists what a code table defines, the two stay equal: the
//! events, the configuration fields (the train flags), the `/metrics`
//! names it mentions, and the runs filter's keys.

use std::path::Path;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

/// The backticked words of README's line that holds `marker`.
fn listed(readme: &str, marker: &str) -> Vec<String> {
    let line = readme
        .lines()
        .find(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("README has no line with {marker}"));
    line.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn readme_lists_every_event_and_no_other() {
    let text = readme();
    let words = listed(
        &text,
        "the run event stream: the one typed, documented schema",
    );
    let mut named: Vec<&str> = words
        .iter()
        .map(String::as_str)
        .filter(|w| !["seq", "ts_ms", "mnist-events", "crates/events"].contains(w))
        .collect();
    let mut code = mnist_events::EventKind::NAMES.to_vec();
    named.sort();
    code.sort();
    assert_eq!(
        named, code,
        "README's event list and EventKind::NAMES differ"
    );
}

#[test]
fn readme_has_a_train_flag_for_every_config_field() {
    let text = readme();
    for field in mnist_train::config::FIELDS {
        let flag = format!("`--{}", field.name.replace('_', "-"));
        assert!(text.contains(&flag), "README's train flags lack {flag}`");
    }
}

#[test]
fn every_metric_readme_names_is_served() {
    let text = readme();
    let source = include_str!("../../crates/server/src/metrics.rs");
    let row = text
        .lines()
        .find(|l| l.starts_with("| `GET /metrics`"))
        .expect("README's API table has /metrics");
    let mut names: Vec<&str> = row
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("mnist_") && w.len() > "mnist_".len() + 3)
        .collect();
    names.sort();
    names.dedup();
    assert!(names.len() >= 10, "{names:?}");
    for name in names {
        assert!(
            source.contains(&format!("\"{name}\"")),
            "README names {name}, which /metrics does not serve"
        );
    }
}

#[test]
fn readme_documents_every_key_of_the_runs_filter() {
    let text = readme();
    for (key, _) in mnist_server::query::KEYS {
        assert!(
            text.contains(&format!("`{key}`")),
            "README's filter keys lack `{key}`"
        );
    }
}
