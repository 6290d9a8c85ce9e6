//! The training configuration and its validation.
//!
//! Field names are the CLI's flags with underscores (`batch_size` for
//! `--batch-size`), so that the CLI, a `--config` TOML file and the web API
//! share one vocabulary and one set of error messages.

use mnist_model::CnnConfig;
use serde::{Deserialize, Serialize};

/// Which optimiser updates the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    Adam,
    Sgd,
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

/// Which compute backend to train on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendChoice {
    /// CUDA if a CUDA device answers, else wgpu if an adapter exists, else CPU.
    Auto,
    Cpu,
    Wgpu,
    Cuda,
}

impl BackendChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Cpu => "cpu",
            BackendChoice::Wgpu => "wgpu",
            BackendChoice::Cuda => "cuda",
        }
    }
}

/// Everything that decides what a run computes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Output channels of the four convolutions, each 1–512.
    pub kernels: [usize; 4],
    pub optimizer: OptimizerKind,
    /// Learning rate, in (0, 10].
    pub lr: f64,
    /// SGD momentum in [0, 1); 0 is plain SGD. Ignored by Adam.
    pub momentum: f64,
    pub batch_size: usize,
    pub epochs: usize,
    pub schedule: Schedule,
    pub backend: BackendChoice,
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
            seed: 42,
            val_size: 5000,
            limit_train: None,
            limit_val: None,
            limit_test: None,
            eval_test_every_epoch: false,
            keep_checkpoints: 3,
            apply_label_overrides: false,
        }
    }
}

/// One invalid field: which, and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// Field name with underscores (`batch_size`); the CLI flag is `--batch-size`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// The CLI flag for this field.
    pub fn flag(&self) -> String {
        format!("--{}", self.field.replace('_', "-"))
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Allowed ranges, shared by validation, the CLI help and the web form.
pub const MAX_BATCH_SIZE: usize = 65_536;
pub const MAX_EPOCHS: usize = 10_000;
pub const MAX_LR: f64 = 10.0;
pub const MAX_VAL_SIZE: usize = 50_000;
pub const MAX_KEEP_CHECKPOINTS: usize = 1_000;

impl TrainConfig {
    /// The model configuration this training configuration builds.
    pub fn model(&self) -> CnnConfig {
        CnnConfig::new().with_kernels(self.kernels)
    }

    /// Checks every field and returns all the invalid ones.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        if let Err(msg) = self.model().validate() {
            errors.push(FieldError::new("kernels", msg));
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= MAX_LR) {
            errors.push(FieldError::new(
                "lr",
                format!("must be a number in (0, {MAX_LR}] (got {})", self.lr),
            ));
        }
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            errors.push(FieldError::new(
                "momentum",
                format!("must be in [0, 1) (got {})", self.momentum),
            ));
        }
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            errors.push(FieldError::new(
                "batch_size",
                format!("must be in 1..={MAX_BATCH_SIZE} (got {})", self.batch_size),
            ));
        }
        if !(1..=MAX_EPOCHS).contains(&self.epochs) {
            errors.push(FieldError::new(
                "epochs",
                format!("must be in 1..={MAX_EPOCHS} (got {})", self.epochs),
            ));
        }
        if self.val_size > MAX_VAL_SIZE {
            errors.push(FieldError::new(
                "val_size",
                format!("must be in 0..={MAX_VAL_SIZE} (got {})", self.val_size),
            ));
        }
        for (field, value) in [
            ("limit_train", self.limit_train),
            ("limit_val", self.limit_val),
            ("limit_test", self.limit_test),
        ] {
            if value == Some(0) {
                errors.push(FieldError::new(
                    field,
                    "must be at least 1 when given (got 0)",
                ));
            }
        }
        if !(1..=MAX_KEEP_CHECKPOINTS).contains(&self.keep_checkpoints) {
            errors.push(FieldError::new(
                "keep_checkpoints",
                format!(
                    "must be in 1..={MAX_KEEP_CHECKPOINTS} (got {})",
                    self.keep_checkpoints
                ),
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
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
    /// and an error for each unknown or ill-typed field.
    fn parse_partial(value: &serde_json::Value) -> (Self, Vec<FieldError>) {
        let Some(object) = value.as_object() else {
            return (
                Self::default(),
                vec![FieldError::new("config", "must be a JSON object")],
            );
        };
        let defaults = serde_json::to_value(TrainConfig::default()).expect("config serialises");
        let mut merged = defaults.as_object().expect("object").clone();
        let mut errors = Vec::new();
        for (key, v) in object {
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

fn type_message(key: &str, serde_message: &str) -> String {
    let expected = match key {
        "kernels" => "four integers, each in 1..=512, e.g. [32, 64, 64, 64]".to_string(),
        "optimizer" => "one of \"adam\", \"sgd\"".to_string(),
        "schedule" => "one of \"constant\", \"cosine\"".to_string(),
        "backend" => "one of \"auto\", \"cpu\", \"wgpu\", \"cuda\"".to_string(),
        "lr" | "momentum" => "a number".to_string(),
        "eval_test_every_epoch" | "apply_label_overrides" => "true or false".to_string(),
        "limit_train" | "limit_val" | "limit_test" => "a positive integer or null".to_string(),
        _ => "a non-negative integer".to_string(),
    };
    format!("must be {expected} ({serde_message})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
