//! `mnist-monitor control RUN_ID pause|resume|lr 3e-4|eval|checkpoint|stop-after-epoch`:
//! one control sent to the server that trains the run (`POST
//! /api/runs/{id}/control`), checked there like the page's.

use crate::cli::{ControlArgs, ControlCommand};
use std::process::ExitCode;

/// The request body for `command`, as the API takes it.
fn body(command: &ControlCommand) -> serde_json::Value {
    let mut body = match command {
        ControlCommand::Pause => serde_json::json!({ "action": "pause" }),
        ControlCommand::Resume => serde_json::json!({ "action": "resume" }),
        ControlCommand::Lr { lr, schedule } => {
            let mut b = serde_json::json!({ "action": "set_lr", "lr": lr });
            if let Some(s) = schedule {
                b["schedule"] = s.clone().into();
            }
            b
        }
        ControlCommand::Eval { split } => serde_json::json!({ "action": "eval", "split": split }),
        ControlCommand::Checkpoint => serde_json::json!({ "action": "checkpoint" }),
        ControlCommand::StopAfterEpoch => serde_json::json!({ "action": "stop_after_epoch" }),
    };
    body["source"] = "cli".into();
    body
}

/// Sends the control; prints the server's answer (JSON) on stdout.
pub fn run(args: ControlArgs) -> anyhow::Result<ExitCode> {
    let token = crate::http::token(args.token_file.as_deref())?;
    let path = format!("/api/runs/{}/control", args.run_id);
    let answer =
        crate::http::post_json(&args.server, &path, token.as_deref(), &body(&args.action))?;
    eprintln!(
        "run {}: {} accepted, applied at its next batch boundary",
        args.run_id,
        answer["action"].as_str().unwrap_or("control")
    );
    println!("{answer}");
    Ok(ExitCode::SUCCESS)
}
