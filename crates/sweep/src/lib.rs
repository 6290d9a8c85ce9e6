//! # mnist-sweep: hyperparameter sweeps
//!
//! A sweep is a base configuration and, for some of its fields, lists of
//! values ([`Grid`]): every combination (a grid search), or `random` of
//! them drawn without repetition (a random search over the grid, seeded).
//! Each combination is the base with those fields replaced, checked by the
//! same table as any run (`mnist_train::config::FIELDS`), so a bad value
//! is refused before anything trains, naming the field, the value and the
//! allowed range. The sweep id ([`new_sweep_id`]) groups its runs: the
//! executors (the server's queue, the `sweep` command, Slurm) tag each run
//! with it.
//!
//! On the command line a grid is `field=v1,v2,…`; kernels, whose values
//! hold commas, separate their values with `:`
//! (`kernels=16,32,32,32:32,64,64,64`).

use mnist_train::{config::FieldKind, FieldError, TrainConfig};
use serde_json::Value;

/// Most configurations one sweep may expand to.
pub const MAX_RUNS: usize = 1000;

/// The swept fields and their values, in the order given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grid(pub Vec<(String, Vec<Value>)>);

/// Why a sweep cannot run.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SweepError {
    /// A `--grid` that is not `field=v1,v2,…`, or names no field.
    #[error("--grid {spec:?}: {why}")]
    Spec {
        /// The grid as given.
        spec: String,
        /// What is wrong with it.
        why: String,
    },
    /// A combination the configuration table refuses.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    /// Nothing to sweep, or too much: the grid's size.
    #[error("{0}")]
    Size(String),
    /// `random` out of its range.
    #[error("{0}")]
    Random(String),
}

impl Grid {
    /// Parses `field=v1,v2,…` (kernels: `k1,k2,k3,k4:k1,…`) and adds it.
    pub fn add_spec(&mut self, spec: &str) -> Result<(), SweepError> {
        let bad = |why: String| SweepError::Spec {
            spec: spec.into(),
            why,
        };
        let (name, values) = spec
            .split_once('=')
            .ok_or_else(|| bad("expected field=value1,value2,…".into()))?;
        let name = name.trim().replace('-', "_");
        let field = mnist_train::config::FIELDS
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = mnist_train::config::FIELDS.iter().map(|f| f.name).collect();
                bad(format!(
                    "no field {name:?}; the fields are {}",
                    names.join(", ")
                ))
            })?;
        let parsed: Vec<Value> = match field.kind {
            FieldKind::Kernels { .. } => values
                .split(':')
                .map(|k| {
                    k.split(',')
                        .map(|n| n.trim().parse::<u64>().map(Value::from))
                        .collect::<Result<Vec<_>, _>>()
                        .map(Value::Array)
                        .map_err(|_| {
                            bad(format!("{k:?} is not four comma-separated kernel counts"))
                        })
                })
                .collect::<Result<_, _>>()?,
            _ => values
                .split(',')
                .map(|v| text_value(v.trim(), field.kind))
                .collect(),
        };
        if parsed.is_empty() || values.trim().is_empty() {
            return Err(bad("no values".into()));
        }
        self.set(&name, parsed);
        Ok(())
    }

    /// Sets `field`'s values (replacing earlier ones), e.g. from JSON.
    pub fn set(&mut self, field: &str, values: Vec<Value>) {
        self.0.retain(|(f, _)| f != field);
        self.0.push((field.to_string(), values));
    }

    /// How many combinations the grid has.
    pub fn combinations(&self) -> usize {
        self.0.iter().map(|(_, v)| v.len().max(1)).product()
    }

    /// The `i`-th combination (`i < combinations()`), as field → value.
    fn combination(&self, mut i: usize) -> Vec<(&str, &Value)> {
        let mut out = Vec::with_capacity(self.0.len());
        for (field, values) in self.0.iter().rev() {
            out.push((field.as_str(), &values[i % values.len()]));
            i /= values.len();
        }
        out.reverse();
        out
    }
}

/// A text value as JSON for a field of `kind`: numbers as numbers, choices
/// as strings, flags as booleans; what does not parse stays a string, for
/// validation to refuse with the field's range.
fn text_value(v: &str, kind: FieldKind) -> Value {
    match kind {
        FieldKind::Choice { .. } => Value::from(v),
        FieldKind::Flag => match v {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::from(v),
        },
        _ => serde_json::from_str::<Value>(v)
            .ok()
            .filter(Value::is_number)
            .unwrap_or_else(|| Value::from(v)),
    }
}

/// The sweep's configurations: `base` with each combination of `grid` (all
/// of them, or `random` drawn without repetition with `seed`), each checked.
pub fn expand(
    base: &TrainConfig,
    grid: &Grid,
    random: Option<usize>,
    seed: u64,
) -> Result<Vec<TrainConfig>, SweepError> {
    let total = grid.combinations();
    if grid.0.is_empty() {
        return Err(SweepError::Size(
            "nothing to sweep: give at least one --grid field=v1,v2".into(),
        ));
    }
    let picks: Vec<usize> = match random {
        None if total > MAX_RUNS => {
            return Err(SweepError::Size(format!(
            "the grid has {total} combinations, more than {MAX_RUNS}: sample some with --random N"
        )))
        }
        None => (0..total).collect(),
        Some(n) if n == 0 || n > total.min(MAX_RUNS) => {
            return Err(SweepError::Random(format!(
                "--random must be in 1..={} (the grid's combinations, at most {MAX_RUNS}; got {n})",
                total.min(MAX_RUNS)
            )))
        }
        Some(n) => sample(total, n, seed),
    };
    let base = serde_json::to_value(base).expect("config serialises");
    picks
        .into_iter()
        .map(|i| {
            let mut config = base.clone();
            for (field, value) in grid.combination(i) {
                config[field] = value.clone();
            }
            TrainConfig::from_json(&config).map_err(|errors| {
                SweepError::Invalid(
                    errors
                        .into_iter()
                        .map(|e| {
                            let value = config.get(&e.field).cloned().unwrap_or(Value::Null);
                            FieldError::new(&e.field, format!("sweep value {value}: {}", e.message))
                        })
                        .collect(),
                )
            })
        })
        .collect()
}

/// `n` distinct indices below `total`, drawn with `seed` (Floyd's
/// algorithm over splitmix64), in increasing order.
fn sample(total: usize, n: usize, seed: u64) -> Vec<usize> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut chosen = std::collections::BTreeSet::new();
    for j in total - n..total {
        let t = (next() % (j as u64 + 1)) as usize;
        if !chosen.insert(t) {
            chosen.insert(j);
        }
    }
    chosen.into_iter().collect()
}

/// A new sweep's id: `sweep-` and the same UTC time stamp as run ids.
pub fn new_sweep_id() -> String {
    format!("sweep-{}", mnist_train::new_run_id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(specs: &[&str]) -> Grid {
        let mut g = Grid::default();
        for s in specs {
            g.add_spec(s).unwrap();
        }
        g
    }

    #[test]
    fn a_grid_expands_to_every_combination_in_order() {
        let g = grid(&[
            "lr=1e-3,3e-4",
            "kernels=16,32,32,32:32,64,64,64",
            "optimizer=adam,sgd",
        ]);
        let configs = expand(&TrainConfig::default(), &g, None, 0).unwrap();
        assert_eq!(configs.len(), 8);
        assert_eq!(configs[0].lr, 1e-3);
        assert_eq!(configs[0].kernels, [16, 32, 32, 32]);
        assert_eq!(configs[1].optimizer, mnist_train::OptimizerKind::Sgd);
        assert_eq!(configs[7].lr, 3e-4);
        assert_eq!(configs[7].kernels, [32, 64, 64, 64]);
        assert!(
            configs
                .iter()
                .all(|c| c.epochs == TrainConfig::default().epochs),
            "the base stays"
        );
    }

    #[test]
    fn random_draws_distinct_combinations_reproducibly() {
        let g = grid(&["lr=0.1,0.01,0.001,0.0001", "batch_size=16,32,64,128,256"]);
        let a = expand(&TrainConfig::default(), &g, Some(6), 7).unwrap();
        let b = expand(&TrainConfig::default(), &g, Some(6), 7).unwrap();
        assert_eq!(a, b, "the same seed, the same runs");
        let mut seen: Vec<(u64, usize)> =
            a.iter().map(|c| (c.lr.to_bits(), c.batch_size)).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 6, "no repeats");
        assert_eq!(sample(20, 20, 1), (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn bad_sweeps_name_the_field_the_value_and_the_range() {
        let mut g = Grid::default();
        let e = g.add_spec("learning=0.1").unwrap_err().to_string();
        assert!(
            e.contains("no field \"learning\"") && e.contains("lr"),
            "{e}"
        );
        assert!(g
            .add_spec("lr")
            .unwrap_err()
            .to_string()
            .contains("field=value1"));
        assert!(g
            .add_spec("kernels=16,x,32,32")
            .unwrap_err()
            .to_string()
            .contains("kernel counts"));
        // Two counts where four belong: refused by the table when expanded.
        let short = grid(&["kernels=16,32:8,8,8,8"]);
        let e = expand(&TrainConfig::default(), &short, None, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("kernels"), "{e}");
        let g = grid(&["lr=0.001,20"]);
        let e = expand(&TrainConfig::default(), &g, None, 0)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("lr") && e.contains("sweep value 20") && e.contains("(0, 10]"),
            "{e}"
        );
        let g = grid(&["optimizer=adam,rmsprop"]);
        let e = expand(&TrainConfig::default(), &g, None, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("rmsprop"), "{e}");
        let g = grid(&["lr=0.1,0.2"]);
        let e = expand(&TrainConfig::default(), &g, Some(3), 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--random must be in 1..=2"), "{e}");
        assert!(expand(&TrainConfig::default(), &Grid::default(), None, 0).is_err());
    }
}
