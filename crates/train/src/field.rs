//! One invalid field of a configuration or a request: which, and what is
//! allowed. Every check names its field with this, so that the CLI, the
//! API and the page say the same.

use serde::{Deserialize, Serialize};

/// One invalid field: which, and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// Field name with underscores (`batch_size`); the CLI flag is `--batch-size`.
    pub field: String,
    /// What is wrong and what is allowed, as a sentence for the user.
    pub message: String,
}

impl FieldError {
    /// An error for `field` (its underscored name) saying `message`.
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
