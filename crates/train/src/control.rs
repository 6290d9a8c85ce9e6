//! Controls of a training run, checked the way config fields are, and the
//! learning-rate plan a `set_lr` changes.
//!
//! A request (`{"action": "set_lr", "lr": 3e-4}`) is validated against the
//! config table ([`crate::config::FIELDS`]: `lr` and `schedule` have the
//! ranges a new run's have), so the API, the CLI and the page refuse the
//! same values with the same words.

use crate::config::{FieldError, Schedule, TrainConfig};
use mnist_events::{ControlAction, Split, CONTROL_SOURCES};
use serde::{Deserialize, Serialize};

/// The learning rate from step `from_step` on: `lr` there, then `schedule`
/// to the run's last step. A run starts with its config's plan; a
/// `set_lr` starts a new one at the step it takes effect, which the
/// checkpoint keeps, so a resumed run goes on with the changed rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrPlan {
    /// The rate at `from_step`.
    pub lr: f64,
    /// How it goes on from there.
    pub schedule: Schedule,
    /// The 0-based step the plan starts at.
    pub from_step: u64,
}

impl LrPlan {
    /// The plan a configuration starts with.
    pub fn of(config: &TrainConfig) -> Self {
        Self {
            lr: config.lr,
            schedule: config.schedule,
            from_step: 0,
        }
    }

    /// The rate at 0-based step `step` of `total` steps.
    pub fn rate(&self, step: u64, total: u64) -> f64 {
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Cosine => {
                let span = total.saturating_sub(self.from_step).max(1);
                let t = (step.saturating_sub(self.from_step) as f64 / span as f64).min(1.0);
                self.lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

/// The serde name of a schedule (`constant`, `cosine`).
pub fn schedule_name(schedule: Schedule) -> String {
    serde_json::to_value(schedule)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A control request as sent (`POST /api/runs/{id}/control`), checked:
/// the action, its values in the config table's ranges, who sends it.
/// Every problem is reported, each naming its field.
pub fn parse(body: &serde_json::Value) -> Result<(ControlAction, String), Vec<FieldError>> {
    let Some(object) = body.as_object() else {
        return Err(vec![FieldError::new("body", "must be a JSON object")]);
    };
    let mut errors = Vec::new();
    let text = |key: &str| object.get(key).map(|v| v.as_str().ok_or(v));
    let action = match text("action") {
        None => Err(format!("is required: one of {}", actions())),
        Some(Err(v)) => Err(format!("must be one of {} (got {v})", actions())),
        Some(Ok(a)) if !ControlAction::NAMES.contains(&a) => {
            Err(format!("must be one of {} (got {a:?})", actions()))
        }
        Some(Ok(a)) => Ok(a),
    };
    let action = action.unwrap_or_else(|m| {
        errors.push(FieldError::new("action", m));
        ""
    });
    let source = match text("source") {
        None => "api".to_string(),
        Some(Ok(s)) if CONTROL_SOURCES.contains(&s) => s.to_string(),
        Some(got) => {
            let got = got.map_or_else(|v| v.to_string(), |s| format!("{s:?}"));
            let message = format!("must be one of {} (got {got})", CONTROL_SOURCES.join(", "));
            errors.push(FieldError::new("source", message));
            String::new()
        }
    };
    let allowed: &[&str] = match action {
        "set_lr" => &["action", "source", "lr", "schedule"],
        "eval" => &["action", "source", "split"],
        _ => &["action", "source"],
    };
    for key in object.keys().filter(|k| !allowed.contains(&k.as_str())) {
        let message = match action {
            "" => "is not a control field".to_string(),
            a => format!(
                "is not a field of {a} (it takes {})",
                allowed[2..].join(", ")
            ),
        };
        errors.push(FieldError::new(key, message));
    }
    let parsed = match action {
        "set_lr" => set_lr(object, &mut errors),
        "eval" => eval(object, &mut errors),
        "" => None,
        name => serde_json::from_value(serde_json::json!({ "action": name })).ok(),
    };
    match parsed {
        Some(a) if errors.is_empty() => Ok((a, source)),
        _ => Err(errors),
    }
}

fn actions() -> String {
    ControlAction::NAMES.join(", ")
}

/// `lr` (required) and `schedule`, checked by the config table.
fn set_lr(
    object: &serde_json::Map<String, serde_json::Value>,
    errors: &mut Vec<FieldError>,
) -> Option<ControlAction> {
    let Some(lr) = object.get("lr") else {
        let range = crate::config::field("lr").map(|f| f.kind.range());
        let message = format!("is required: {}", range.unwrap_or_default());
        errors.push(FieldError::new("lr", message));
        return None;
    };
    let mut asked = serde_json::json!({ "lr": lr });
    if let Some(s) = object.get("schedule") {
        asked["schedule"] = s.clone();
    }
    match TrainConfig::from_json(&asked) {
        Err(e) => {
            errors.extend(e);
            None
        }
        Ok(c) => Some(ControlAction::SetLr {
            lr: c.lr,
            schedule: object.get("schedule").map(|_| schedule_name(c.schedule)),
        }),
    }
}

/// `split`: `val` (the default) or `test`.
fn eval(
    object: &serde_json::Map<String, serde_json::Value>,
    errors: &mut Vec<FieldError>,
) -> Option<ControlAction> {
    let split = match object.get("split").map(|v| v.as_str()) {
        None | Some(Some("val")) => Split::Val,
        Some(Some("test")) => Split::Test,
        Some(_) => {
            let got = &object["split"];
            errors.push(FieldError::new(
                "split",
                format!("must be \"val\" or \"test\" (got {got})"),
            ));
            return None;
        }
    };
    Some(ControlAction::Eval { split })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(body: serde_json::Value) -> Vec<String> {
        parse(&body)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn each_action_parses_and_bad_values_name_their_field() {
        let (a, source) =
            parse(&json!({"action": "set_lr", "lr": 3e-4, "source": "page"})).unwrap();
        assert_eq!(
            a,
            ControlAction::SetLr {
                lr: 3e-4,
                schedule: None
            }
        );
        assert_eq!(source, "page");
        let (a, _) = parse(&json!({"action": "eval", "split": "test"})).unwrap();
        assert_eq!(a, ControlAction::Eval { split: Split::Test });
        for name in ControlAction::NAMES {
            let mut body = json!({ "action": name });
            if name == "set_lr" {
                body["lr"] = json!(0.01);
            }
            assert_eq!(parse(&body).unwrap().0.name(), name);
        }
        assert_eq!(fields(json!({"action": "set_lr", "lr": 0})), ["lr"]);
        assert_eq!(fields(json!({"action": "set_lr", "lr": "NaN"})), ["lr"]);
        assert_eq!(fields(json!({"action": "set_lr"})), ["lr"]);
        assert_eq!(
            fields(json!({"action": "set_lr", "lr": 0.1, "schedule": "step"})),
            ["schedule"]
        );
        assert_eq!(fields(json!({"action": "jump"})), ["action"]);
        assert_eq!(fields(json!({})), ["action"]);
        assert_eq!(fields(json!({"action": "pause", "lr": 1})), ["lr"]);
        assert_eq!(
            fields(json!({"action": "eval", "split": "train"})),
            ["split"]
        );
        assert_eq!(
            fields(json!({"action": "pause", "source": "evil"})),
            ["source"]
        );
        let lr0 = parse(&json!({"action": "set_lr", "lr": 0})).unwrap_err();
        assert!(lr0[0].message.contains("(0, 10]"), "{}", lr0[0].message);
    }

    #[test]
    fn a_new_rate_starts_its_schedule_where_it_is_set() {
        let plan = LrPlan {
            lr: 1e-3,
            schedule: Schedule::Constant,
            from_step: 0,
        };
        assert_eq!(plan.rate(500, 1000), 1e-3);
        let cosine = LrPlan {
            lr: 1.0,
            schedule: Schedule::Cosine,
            from_step: 600,
        };
        assert!((cosine.rate(600, 1000) - 1.0).abs() < 1e-12);
        assert!((cosine.rate(800, 1000) - 0.5).abs() < 1e-12);
        assert!(cosine.rate(1000, 1000).abs() < 1e-12);
        let from_start = LrPlan {
            from_step: 0,
            ..cosine
        };
        let config = TrainConfig {
            lr: 1.0,
            schedule: Schedule::Cosine,
            ..TrainConfig::default()
        };
        assert_eq!(
            from_start.rate(250, 1000),
            LrPlan::of(&config).rate(250, 1000)
        );
    }
}
