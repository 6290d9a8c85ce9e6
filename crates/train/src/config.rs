//! The training configuration and its validation.
//!
//! Field names are the CLI's flags with underscores (`batch_size` for
//! `--batch-size`), so that the CLI, a `--config` TOML file and the web API
//! share one vocabulary and one set of error messages.

pub use crate::device::{BackendChoice, MAX_DEVICE};
pub use crate::field::FieldError;
use mnist_model::CnnConfig;
use serde::{Deserialize, Serialize};

/// Which optimiser updates the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// Adam (PyTorch's epsilon, 1e-8); ignores `momentum`.
    Adam,
    /// Stochastic gradient descent, with `momentum` when it is above 0.
    Sgd,
}

impl OptimizerKind {
    /// The names the configuration accepts (serde's spelling).
    pub const NAMES: &'static [&'static str] = &["adam", "sgd"];
}

/// How the learning rate changes over the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// `lr` throughout.
    Constant,
    /// Cosine decay from `lr` at the first step to 0 after the last.
    Cosine,
}

impl Schedule {
    /// The names the configuration accepts (serde's spelling).
    pub const NAMES: &'static [&'static str] = &["constant", "cosine"];
}

/// What early stopping watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EarlyStop {
    /// Train every epoch asked for.
    Off,
    /// Stop when the validation loss stops falling.
    ValLoss,
    /// Stop when the validation accuracy stops rising.
    ValAccuracy,
}

impl EarlyStop {
    /// The names the configuration accepts (serde's spelling).
    pub const NAMES: &'static [&'static str] = &["off", "val_loss", "val_accuracy"];
}

/// Everything that decides what a run computes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Output channels of the four convolutions, each 1–512.
    pub kernels: [usize; 4],
    /// The optimiser: Adam or SGD.
    pub optimizer: OptimizerKind,
    /// Learning rate, in (0, 10].
    pub lr: f64,
    /// SGD momentum in [0, 1); 0 is plain SGD. Ignored by Adam.
    pub momentum: f64,
    /// Images per optimiser step, 1–[`MAX_BATCH_SIZE`]; evaluation batches use it too.
    pub batch_size: usize,
    /// Passes over the training set, 1–[`MAX_EPOCHS`]; a resumed run continues up to it.
    pub epochs: usize,
    /// How the learning rate changes from step to step.
    pub schedule: Schedule,
    /// Where to train; `auto` picks the best backend that answers.
    pub backend: BackendChoice,
    /// The device within `backend`, 0–[`MAX_DEVICE`]: CUDA's ordinal
    /// (`cuda:1`) or the wgpu adapter's place in the best-first list;
    /// `None` lets the backend pick (the GPU with the most free memory).
    /// Configurations written before it existed read as `None`.
    pub device: Option<usize>,
    /// Seeds weight initialisation, dropout and shuffling.
    pub seed: u64,
    /// The last `val_size` training images are the validation set.
    pub val_size: usize,
    /// Train on only the first N training images.
    pub limit_train: Option<usize>,
    /// Validate on only the first N validation images.
    pub limit_val: Option<usize>,
    /// Test on only the first N test images.
    pub limit_test: Option<usize>,
    /// Evaluate on the test set after every epoch, not only at the end.
    pub eval_test_every_epoch: bool,
    /// Checkpoints to keep (the latest N, plus the best).
    pub keep_checkpoints: usize,
    /// Train on the labels as corrected in `<data-dir>/labels-overrides.json`
    /// (relabelled samples, excluded training images left out).
    pub apply_label_overrides: bool,
    /// Stop before the last epoch when this validation metric stops
    /// improving for `patience` evaluations.
    pub early_stop: EarlyStop,
    /// Epoch-end validations without an improvement of at least
    /// `min_delta` before an early stop, 1–[`MAX_PATIENCE`].
    pub patience: usize,
    /// The smallest change of the watched metric that counts as an
    /// improvement, in [0, 1].
    pub min_delta: f64,
    /// Stop once the validation accuracy reaches this, in [0, 1]; 0 is off.
    pub target_accuracy: f64,
    /// Sample every layer's statistics every N steps (and at steps 1, 2,
    /// 4, … before), with histograms at each epoch's end; 0 is off.
    pub layer_stats_every: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            kernels: mnist_model::KERNELS_DEFAULT,
            optimizer: OptimizerKind::Adam,
            lr: 1e-3,
            momentum: 0.0,
            batch_size: 64,
            epochs: 10,
            schedule: Schedule::Constant,
            backend: BackendChoice::Auto,
            device: None,
            seed: 42,
            val_size: 5000,
            limit_train: None,
            limit_val: None,
            limit_test: None,
            eval_test_every_epoch: false,
            keep_checkpoints: 3,
            apply_label_overrides: false,
            early_stop: EarlyStop::Off,
            patience: 3,
            min_delta: 0.0,
            target_accuracy: 0.0,
            layer_stats_every: LAYER_STATS_EVERY,
        }
    }
}

/// Allowed ranges (the [`FIELDS`] table uses them; so do error messages elsewhere).
pub const MAX_BATCH_SIZE: usize = 65_536;
/// Largest `epochs`.
pub const MAX_EPOCHS: usize = 10_000;
/// Largest `lr`: the range is (0, `MAX_LR`].
pub const MAX_LR: f64 = 10.0;
/// Largest `val_size` (MNIST's training files hold 60,000 images).
pub const MAX_VAL_SIZE: usize = 50_000;
/// The default `layer_stats_every`: measured to cost under 2% of images/s
/// on the CPU (`examples/overhead.rs layers`, BENCHMARKS.md).
pub const LAYER_STATS_EVERY: u64 = 50;
/// Largest `layer_stats_every`.
pub const MAX_LAYER_STATS_EVERY: u64 = 1_000_000;
/// Largest `patience`.
pub const MAX_PATIENCE: usize = 1_000;
/// Largest `keep_checkpoints`.
pub const MAX_KEEP_CHECKPOINTS: usize = 1_000;
/// Largest `limit_*` (more than MNIST has is allowed and means "all").
pub const MAX_LIMIT: u64 = 1 << 32;

/// What values a configuration field takes: the one statement of each
/// field's type and range, read by validation, the CLI's flags and help, the
/// TOML file and `GET /api/config/schema` (the web form's limits).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FieldKind {
    /// An integer in `min..=max`.
    Integer {
        /// Smallest allowed value.
        min: u64,
        /// Largest allowed value.
        max: u64,
    },
    /// An integer in `min..=max`, or absent (`null`) for "all of them".
    OptionalInteger {
        /// Smallest allowed value when present.
        min: u64,
        /// Largest allowed value when present.
        max: u64,
    },
    /// A number in `min..max`, each end open or closed.
    Number {
        /// Lower end of the range.
        min: f64,
        /// Whether `min` itself is allowed.
        min_inclusive: bool,
        /// Upper end of the range.
        max: f64,
        /// Whether `max` itself is allowed.
        max_inclusive: bool,
    },
    /// One of `choices`.
    Choice {
        /// The accepted names, as serde spells them.
        choices: &'static [&'static str],
    },
    /// `true` or `false` (a flag on the command line).
    Flag,
    /// A device index in `min..=max`, or absent (`null`) to let the
    /// backend pick; text such as `"cuda:1"` names the backend too (see
    /// [`crate::device::DeviceSpec`]).
    Device {
        /// Smallest index.
        min: u64,
        /// Largest index.
        max: u64,
    },
    /// Four integers, each in `min..=max` (the convolutions' channels).
    Kernels {
        /// Fewest output channels a convolution may have.
        min: u64,
        /// Most output channels a convolution may have.
        max: u64,
    },
}

impl FieldKind {
    /// The allowed values in words, as error messages and help print them.
    pub fn range(&self) -> String {
        match *self {
            FieldKind::Integer {
                min: 0,
                max: u64::MAX,
            } => "0..=2^64-1".into(),
            FieldKind::Integer { min, max } => format!("{min}..={max}"),
            FieldKind::OptionalInteger { min, max } => {
                format!("{min}..={max}, or absent for all")
            }
            FieldKind::Device { min, max } => {
                format!(
                    "{min}..={max}, or absent to pick one (as text: auto, cpu, cuda[:N], wgpu[:N])"
                )
            }
            FieldKind::Number {
                min,
                min_inclusive,
                max,
                max_inclusive,
            } => format!(
                "{}{min}, {max}{}",
                if min_inclusive { '[' } else { '(' },
                if max_inclusive { ']' } else { ')' }
            ),
            FieldKind::Choice { choices } => choices
                .iter()
                .map(|c| format!("{c:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            FieldKind::Flag => "true or false".into(),
            FieldKind::Kernels { min, max } => format!("four integers, each {min}..={max}"),
        }
    }

    /// Whether `value` (of the right JSON type) is in range.
    fn admits(&self, value: &serde_json::Value) -> bool {
        let in_int = |v: &serde_json::Value, min: u64, max: u64| {
            v.as_u64().is_some_and(|n| (min..=max).contains(&n))
        };
        match *self {
            FieldKind::Integer { min, max } => in_int(value, min, max),
            FieldKind::OptionalInteger { min, max } | FieldKind::Device { min, max } => {
                value.is_null() || in_int(value, min, max)
            }
            FieldKind::Number {
                min,
                min_inclusive,
                max,
                max_inclusive,
            } => value.as_f64().is_some_and(|x| {
                x.is_finite()
                    && if min_inclusive { x >= min } else { x > min }
                    && if max_inclusive { x <= max } else { x < max }
            }),
            FieldKind::Choice { choices } => value.as_str().is_some_and(|s| choices.contains(&s)),
            FieldKind::Flag => value.is_boolean(),
            FieldKind::Kernels { min, max } => value
                .as_array()
                .is_some_and(|ks| ks.len() == 4 && ks.iter().all(|k| in_int(k, min, max))),
        }
    }
}

/// One configuration field: its name (the CLI flag with underscores), what
/// it means and what it takes. Defaults come from [`TrainConfig::default`].
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Field {
    /// The field's name in [`TrainConfig`], JSON and TOML; the CLI flag with `-` for `_`.
    pub name: &'static str,
    /// One line saying what it does, for `--help` and the web form.
    pub help: &'static str,
    /// The values it takes (flattened into its schema entry as `type` and the bounds).
    #[serde(flatten)]
    pub kind: FieldKind,
}

const fn int(min: u64, max: u64) -> FieldKind {
    FieldKind::Integer { min, max }
}

/// The config table's field called `name` (underscored), if there is one.
pub fn field(name: &str) -> Option<&'static Field> {
    FIELDS.iter().find(|f| f.name == name)
}

/// Every field of [`TrainConfig`], in the order help and the schema list them.
pub const FIELDS: &[Field] = &[
    Field {
        name: "kernels",
        help: "Output channels of the four convolutions (small preset: 16,32,32,32)",
        kind: FieldKind::Kernels {
            min: *mnist_model::KERNEL_RANGE.start() as u64,
            max: *mnist_model::KERNEL_RANGE.end() as u64,
        },
    },
    Field {
        name: "optimizer",
        help: "Optimiser",
        kind: FieldKind::Choice {
            choices: OptimizerKind::NAMES,
        },
    },
    Field {
        name: "lr",
        help: "Learning rate",
        kind: FieldKind::Number {
            min: 0.0,
            min_inclusive: false,
            max: MAX_LR,
            max_inclusive: true,
        },
    },
    Field {
        name: "momentum",
        help: "SGD momentum; 0 is plain SGD, Adam ignores it",
        kind: FieldKind::Number {
            min: 0.0,
            min_inclusive: true,
            max: 1.0,
            max_inclusive: false,
        },
    },
    Field {
        name: "batch_size",
        help: "Images per batch",
        kind: int(1, MAX_BATCH_SIZE as u64),
    },
    Field {
        name: "epochs",
        help: "Passes over the training set",
        kind: int(1, MAX_EPOCHS as u64),
    },
    Field {
        name: "schedule",
        help: "Learning-rate schedule (cosine decays to 0 after the last step)",
        kind: FieldKind::Choice {
            choices: Schedule::NAMES,
        },
    },
    Field {
        name: "backend",
        help: "Compute backend; auto picks CUDA (the GPU with the most free memory), then a hardware wgpu adapter, then the CPU",
        kind: FieldKind::Choice {
            choices: BackendChoice::NAMES,
        },
    },
    Field {
        name: "device",
        help: "The device: cpu, cuda, cuda:N, wgpu, wgpu:N (each sets the backend too), auto, or an index N within the --backend given; cuda and auto pick the GPU with the most free memory, then the least busy",
        kind: FieldKind::Device {
            min: 0,
            max: MAX_DEVICE,
        },
    },
    Field {
        name: "seed",
        help: "Seed for initialisation, dropout and shuffling",
        kind: int(0, u64::MAX),
    },
    Field {
        name: "val_size",
        help: "The last N training images form the validation set",
        kind: int(0, MAX_VAL_SIZE as u64),
    },
    Field {
        name: "limit_train",
        help: "Train on only the first N training images",
        kind: FieldKind::OptionalInteger {
            min: 1,
            max: MAX_LIMIT,
        },
    },
    Field {
        name: "limit_val",
        help: "Validate on only the first N validation images",
        kind: FieldKind::OptionalInteger {
            min: 1,
            max: MAX_LIMIT,
        },
    },
    Field {
        name: "limit_test",
        help: "Test on only the first N test images",
        kind: FieldKind::OptionalInteger {
            min: 1,
            max: MAX_LIMIT,
        },
    },
    Field {
        name: "eval_test_every_epoch",
        help: "Evaluate on the test set after every epoch, not only after the last",
        kind: FieldKind::Flag,
    },
    Field {
        name: "keep_checkpoints",
        help: "Checkpoints to keep: the newest N plus the best",
        kind: int(1, MAX_KEEP_CHECKPOINTS as u64),
    },
    Field {
        name: "apply_label_overrides",
        help: "Train on the labels as corrected in <data-dir>/labels-overrides.json (the review page writes it)",
        kind: FieldKind::Flag,
    },
    Field {
        name: "early_stop",
        help: "Stop before the last epoch when this validation metric stops improving for --patience epochs (off trains every epoch)",
        kind: FieldKind::Choice {
            choices: EarlyStop::NAMES,
        },
    },
    Field {
        name: "patience",
        help: "Epoch-end validations without improvement before --early-stop stops the run",
        kind: int(1, MAX_PATIENCE as u64),
    },
    Field {
        name: "min_delta",
        help: "The smallest change of the --early-stop metric that counts as an improvement",
        kind: FieldKind::Number {
            min: 0.0,
            min_inclusive: true,
            max: 1.0,
            max_inclusive: true,
        },
    },
    Field {
        name: "target_accuracy",
        help: "Stop once the validation accuracy reaches this fraction (0 is off)",
        kind: FieldKind::Number {
            min: 0.0,
            min_inclusive: true,
            max: 1.0,
            max_inclusive: true,
        },
    },
    Field {
        name: "layer_stats_every",
        help: "Sample each layer's gradient, weight and update norms and its activations every N steps (and at steps 1, 2, 4, ... before), with histograms at each epoch's end (0 is off)",
        kind: int(0, MAX_LAYER_STATS_EVERY),
    },
];

/// The table with each field's default, as `GET /api/config/schema` serves
/// it: `[{name, help, type, ...range, default}]`.
pub fn schema() -> serde_json::Value {
    let defaults = serde_json::to_value(TrainConfig::default()).expect("config serialises");
    FIELDS
        .iter()
        .map(|field| {
            let mut entry = serde_json::to_value(field).expect("field serialises");
            entry["default"] = defaults[field.name].clone();
            entry["range"] = field.kind.range().into();
            entry
        })
        .collect()
}

impl TrainConfig {
    /// The model configuration this training configuration builds.
    pub fn model(&self) -> CnnConfig {
        CnnConfig::new().with_kernels(self.kernels)
    }

    /// Checks every field against [`FIELDS`] and returns all the invalid ones.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let values = serde_json::to_value(self).expect("config serialises");
        let mut errors: Vec<FieldError> = FIELDS
            .iter()
            .filter(|field| !field.kind.admits(&values[field.name]))
            .map(|field| out_of_range(field, &values[field.name]))
            .collect();
        errors.extend(self.device_error());
        errors.extend(self.early_stop_error());
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Early stopping and a target watch the validation set: without one
    /// they would never act.
    fn early_stop_error(&self) -> Option<FieldError> {
        if self.val_size > 0 {
            return None;
        }
        let field = match (self.early_stop, self.target_accuracy > 0.0) {
            (EarlyStop::Off, false) => return None,
            (EarlyStop::Off, true) => "target_accuracy",
            _ => "early_stop",
        };
        Some(FieldError::new(
            field,
            "watches the validation set, but val_size is 0: give val_size a few thousand images",
        ))
    }

    /// A device index the backend cannot take: the CPU has none, and
    /// `auto` picks its own.
    fn device_error(&self) -> Option<FieldError> {
        let index = self.device?;
        let why = match self.backend {
            BackendChoice::Cpu => {
                "cpu has no device index; drop it, or name a GPU: cuda:N or wgpu:N"
            }
            BackendChoice::Auto => {
                "auto picks the device itself; name the backend with the index: cuda:N or wgpu:N"
            }
            BackendChoice::Cuda | BackendChoice::Wgpu => return None,
        };
        Some(FieldError::new(
            "device",
            format!("{why} (got {index} with backend {})", self.backend.as_str()),
        ))
    }

    /// Parses a configuration from JSON, reporting every problem by field:
    /// unknown fields, wrong types and out-of-range values alike. Missing
    /// fields take their defaults.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, Vec<FieldError>> {
        let (config, mut errors) = Self::parse_partial(value);
        if let Err(range_errors) = config.validate() {
            // A field with a bad type kept its default; don't report it twice.
            let typed: Vec<String> = errors.iter().map(|e| e.field.clone()).collect();
            errors.extend(
                range_errors
                    .into_iter()
                    .filter(|e| !typed.contains(&e.field)),
            );
        }
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }

    /// Like [`from_json`](Self::from_json) but checks only names and types,
    /// for a partial configuration that other settings (CLI flags) complete
    /// before [`validate`](Self::validate).
    pub fn parse_json(value: &serde_json::Value) -> Result<Self, Vec<FieldError>> {
        match Self::parse_partial(value) {
            (config, errors) if errors.is_empty() => Ok(config),
            (_, errors) => Err(errors),
        }
    }

    /// The configuration from every well-typed field (defaults elsewhere),
    /// and an error for each unknown or ill-typed field. A `device` given
    /// as text (`"cuda:1"`) sets `backend` too.
    fn parse_partial(value: &serde_json::Value) -> (Self, Vec<FieldError>) {
        let Some(object) = value.as_object() else {
            return (
                Self::default(),
                vec![FieldError::new("config", "must be a JSON object")],
            );
        };
        let mut object = object.clone();
        let mut errors = Vec::new();
        let backend_given = object.contains_key("backend");
        if let Err(e) = crate::device::expand_spec(&mut object, backend_given) {
            object.remove("device");
            errors.push(e);
        }
        let defaults = serde_json::to_value(TrainConfig::default()).expect("config serialises");
        let mut merged = defaults.as_object().expect("object").clone();
        for (key, v) in &object {
            if !merged.contains_key(key) {
                errors.push(FieldError::new(key, "unknown field"));
                continue;
            }
            // Check each field alone so that one bad type doesn't hide the rest.
            let mut probe = defaults.clone();
            probe[key] = v.clone();
            if let Err(err) = serde_json::from_value::<TrainConfig>(probe) {
                errors.push(FieldError::new(key, type_message(key, &err.to_string())));
                continue;
            }
            merged.insert(key.clone(), v.clone());
        }
        let config = serde_json::from_value(serde_json::Value::Object(merged))
            .expect("each field was checked");
        (config, errors)
    }

    /// Parses a TOML configuration file's text (same fields as the JSON
    /// form), checking names and types; ranges are checked by
    /// [`validate`](Self::validate) once flags have been applied.
    pub fn from_toml(text: &str) -> Result<Self, Vec<FieldError>> {
        let value: toml::Value =
            toml::from_str(text).map_err(|e| vec![FieldError::new("config", e.to_string())])?;
        let json = serde_json::to_value(value)
            .map_err(|e| vec![FieldError::new("config", e.to_string())])?;
        Self::parse_json(&json)
    }
}

/// The message for a field whose JSON value has the wrong type.
fn type_message(key: &str, serde_message: &str) -> String {
    let expected = match FIELDS.iter().find(|f| f.name == key).map(|f| f.kind) {
        Some(kind @ FieldKind::Choice { .. }) => format!("one of {}", kind.range()),
        Some(FieldKind::Kernels { min, max }) => {
            format!("four integers, each in {min}..={max}, e.g. [32, 64, 64, 64]")
        }
        Some(FieldKind::Number { .. }) => "a number".into(),
        Some(FieldKind::Flag) => "true or false".into(),
        Some(FieldKind::OptionalInteger { .. }) => "a positive integer or null".into(),
        Some(FieldKind::Device { min, max }) => {
            format!("an index in {min}..={max}, null, or text such as \"cuda:1\"")
        }
        Some(FieldKind::Integer { .. }) | None => "a non-negative integer".into(),
    };
    format!("must be {expected} ({serde_message})")
}

/// The message for a well-typed value out of its field's range.
fn out_of_range(field: &Field, value: &serde_json::Value) -> FieldError {
    let got = match (field.kind, value) {
        (FieldKind::Kernels { min, max }, serde_json::Value::Array(ks)) => ks
            .iter()
            .enumerate()
            .filter(|(_, k)| !k.as_u64().is_some_and(|k| (min..=max).contains(&k)))
            .map(|(i, k)| format!("k{} = {k}", i + 1))
            .collect::<Vec<_>>()
            .join(", "),
        (FieldKind::Number { .. }, serde_json::Value::Null) => "not a finite number".into(),
        _ => value.to_string(),
    };
    let message = match field.kind {
        FieldKind::Kernels { min, max } => {
            format!("each of the four kernel counts must be in {min}..={max} (got {got})")
        }
        FieldKind::Number { .. } => {
            format!("must be a number in {} (got {got})", field.kind.range())
        }
        kind => format!("must be in {} (got {got})", kind.range()),
    };
    FieldError::new(field.name, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn defaults_are_valid() {
        assert_eq!(TrainConfig::default().validate(), Ok(()));
    }

    #[test]
    fn every_bad_field_is_named_with_its_range() {
        let config = TrainConfig {
            kernels: [32, 0, 64, 64],
            lr: -1.0,
            batch_size: 0,
            epochs: 0,
            momentum: 1.0,
            limit_train: Some(0),
            ..TrainConfig::default()
        };
        let errors = config.validate().unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "kernels",
                "lr",
                "momentum",
                "batch_size",
                "epochs",
                "limit_train"
            ]
        );
        let batch = &errors[3];
        assert_eq!(batch.flag(), "--batch-size");
        assert!(batch.message.contains("1..=65536"), "{}", batch.message);
        assert!(
            errors[1].message.contains("(0, 10]"),
            "{}",
            errors[1].message
        );
        assert!(
            errors[0].message.contains("k2 = 0"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn the_table_names_every_field_once_and_each_choice_as_serde_spells_it() {
        let defaults = serde_json::to_value(TrainConfig::default()).unwrap();
        let names: Vec<&str> = FIELDS.iter().map(|f| f.name).collect();
        let mut keys: Vec<&str> = defaults
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        keys.sort();
        assert_eq!(sorted, keys);
        for (kind, names) in [
            (
                OptimizerKind::NAMES,
                vec![json!(OptimizerKind::Adam), json!(OptimizerKind::Sgd)],
            ),
            (
                Schedule::NAMES,
                vec![json!(Schedule::Constant), json!(Schedule::Cosine)],
            ),
            (
                BackendChoice::NAMES,
                [
                    BackendChoice::Auto,
                    BackendChoice::Cpu,
                    BackendChoice::Wgpu,
                    BackendChoice::Cuda,
                ]
                .iter()
                .map(|b| json!(b.as_str()))
                .collect(),
            ),
        ] {
            let spelled: Vec<Value> = kind.iter().map(|n| json!(n)).collect();
            assert_eq!(spelled, names);
        }
        for field in schema().as_array().unwrap() {
            assert_eq!(field["default"], defaults[field["name"].as_str().unwrap()]);
        }
    }

    #[test]
    fn each_range_end_is_checked_by_the_table() {
        let at = |f: fn(&mut TrainConfig)| {
            let mut c = TrainConfig::default();
            f(&mut c);
            c.validate().err().map(|e| e[0].field.clone())
        };
        assert_eq!(at(|c| c.lr = MAX_LR), None);
        assert_eq!(at(|c| c.lr = 0.0).as_deref(), Some("lr"));
        assert_eq!(at(|c| c.momentum = 0.0), None);
        assert_eq!(at(|c| c.batch_size = MAX_BATCH_SIZE), None);
        assert_eq!(
            at(|c| c.batch_size = MAX_BATCH_SIZE + 1).as_deref(),
            Some("batch_size")
        );
        assert_eq!(at(|c| c.val_size = 0), None);
        assert_eq!(
            at(|c| c.keep_checkpoints = 0).as_deref(),
            Some("keep_checkpoints")
        );
    }

    #[test]
    fn nan_lr_is_rejected() {
        let config = TrainConfig {
            lr: f64::NAN,
            ..TrainConfig::default()
        };
        assert_eq!(config.validate().unwrap_err()[0].field, "lr");
    }

    #[test]
    fn json_errors_name_every_field() {
        let errors = TrainConfig::from_json(&json!({
            "kernels": [32, 64],
            "optimizer": "rmsprop",
            "batch_size": -3,
            "colour": "blue",
            "lr": 0.5,
            "epochs": 0
        }))
        .unwrap_err();
        let mut fields: Vec<_> = errors.iter().map(|e| e.field.clone()).collect();
        fields.sort();
        assert_eq!(
            fields,
            ["batch_size", "colour", "epochs", "kernels", "optimizer"]
        );
        let optimizer = errors.iter().find(|e| e.field == "optimizer").unwrap();
        assert!(
            optimizer.message.contains("\"adam\", \"sgd\""),
            "{}",
            optimizer.message
        );
    }

    #[test]
    fn json_fills_defaults_and_validates_ranges() {
        let config = TrainConfig::from_json(&json!({"epochs": 2, "backend": "cpu"})).unwrap();
        assert_eq!(config.epochs, 2);
        assert_eq!(config.backend, BackendChoice::Cpu);
        assert_eq!(config.batch_size, 64);
        let errors = TrainConfig::from_json(&json!({"kernels": [1, 2, 3, 600]})).unwrap_err();
        assert_eq!(errors[0].field, "kernels");
        assert!(errors[0].message.contains("k4 = 600"));
    }

    #[test]
    fn a_device_index_needs_a_gpu_backend() {
        let with = |backend, device| TrainConfig {
            backend,
            device,
            ..TrainConfig::default()
        };
        let errors = with(BackendChoice::Cpu, Some(0)).validate().unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "device");
        assert!(
            errors[0].message.starts_with("cpu has no device index"),
            "{}",
            errors[0].message
        );
        let errors = with(BackendChoice::Auto, Some(1)).validate().unwrap_err();
        assert_eq!(errors[0].field, "device");
        assert!(
            errors[0].message.contains("cuda:N"),
            "{}",
            errors[0].message
        );
        assert_eq!(with(BackendChoice::Cuda, Some(1)).validate(), Ok(()));
        assert_eq!(with(BackendChoice::Wgpu, Some(0)).validate(), Ok(()));
        assert_eq!(with(BackendChoice::Cpu, None).validate(), Ok(()));
        let errors = with(BackendChoice::Cuda, Some(64)).validate().unwrap_err();
        assert_eq!(errors[0].field, "device");
        assert!(
            errors[0].message.contains("0..=63"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn json_takes_a_device_as_an_index_or_as_text() {
        let config = TrainConfig::from_json(&json!({"device": "cuda:1"})).unwrap();
        assert_eq!(
            (config.backend, config.device),
            (BackendChoice::Cuda, Some(1))
        );
        let config = TrainConfig::from_json(&json!({"backend": "wgpu", "device": 0})).unwrap();
        assert_eq!(
            (config.backend, config.device),
            (BackendChoice::Wgpu, Some(0))
        );
        for (bad, says) in [
            (json!({"device": "cuda:x"}), "0..=63"),
            (json!({"device": "tpu"}), "cuda:N"),
            (json!({"backend": "wgpu", "device": "cuda:0"}), "\"wgpu\""),
            (
                json!({"backend": "cpu", "device": 0}),
                "cpu has no device index",
            ),
            (json!({"backend": "cuda", "device": -1}), "0..=63"),
            (json!({"backend": "cuda", "device": 99}), "0..=63"),
        ] {
            let errors = TrainConfig::from_json(&bad).unwrap_err();
            assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
            assert_eq!(errors[0].field, "device", "{bad}");
            assert!(
                errors[0].message.contains(says),
                "{bad}: {}",
                errors[0].message
            );
        }
    }

    #[test]
    fn configs_from_before_device_still_load() {
        let mut old = serde_json::to_value(TrainConfig::default()).unwrap();
        old.as_object_mut().unwrap().remove("device");
        let config: TrainConfig = serde_json::from_value(old).unwrap();
        assert_eq!(config.device, None);
        let config = TrainConfig::from_toml("backend = \"cuda\"\ndevice = 2\n").unwrap();
        assert_eq!(
            (config.backend, config.device),
            (BackendChoice::Cuda, Some(2))
        );
    }

    #[test]
    fn toml_files_use_the_same_fields() {
        let config = TrainConfig::from_toml(
            "epochs = 3\noptimizer = \"sgd\"\nmomentum = 0.9\nkernels = [16, 32, 32, 32]\n",
        )
        .unwrap();
        assert_eq!(config.optimizer, OptimizerKind::Sgd);
        assert_eq!(config.kernels, [16, 32, 32, 32]);
        let errors = TrainConfig::from_toml("batch_size = \"big\"").unwrap_err();
        assert_eq!(errors[0].field, "batch_size");
        let partial = TrainConfig::from_toml("batch_size = 0").unwrap();
        assert_eq!(partial.validate().unwrap_err()[0].field, "batch_size");
    }
}

/// Fuzzing the configuration parsers: any JSON or TOML gets an answer, and
/// whatever they accept is valid.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[a-z_]{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("kernels".to_string()),
                        Just("batch_size".to_string()),
                        Just("lr".to_string()),
                        Just("optimizer".to_string()),
                        Just("limit_test".to_string()),
                        "[a-z_]{1,10}",
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_json_is_answered_and_what_passes_is_valid(value in json()) {
            match TrainConfig::from_json(&value) {
                Ok(config) => prop_assert!(config.validate().is_ok()),
                Err(errors) => {
                    prop_assert!(!errors.is_empty());
                    prop_assert!(errors.iter().all(|e| !e.field.is_empty() && !e.message.is_empty()));
                }
            }
        }

        #[test]
        fn any_toml_is_answered(text in "([a-z_]{1,12} = (-?[0-9]{1,6}|\"[a-z]{0,6}\"|\\[[0-9, ]{0,12}\\]|true|[0-9.e-]{1,8})\n){0,6}") {
            if let Err(errors) = TrainConfig::from_toml(&text) {
                prop_assert!(errors.iter().all(|e| !e.field.is_empty()));
            }
        }
    }
}
