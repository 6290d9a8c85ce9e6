//! `mnist-monitor control RUN_ID pause|resume|lr 3e-4|eval|checkpoint|stop-after-epoch`:
//! one control sent to the server that trains the run (`POST
//! /api/runs/{id}/control`), checked there like the page's.

use crate::cli::{ControlArgs, ControlCommand};
use mnist_events::ControlAction;
use mnist_server::protocol::{ControlAccepted, ControlBody};
use std::process::ExitCode;

/// The request body for `command`, as the API takes it.
fn body(command: &ControlCommand) -> ControlBody {
    let action = match command {
        ControlCommand::Pause => ControlAction::Pause,
        ControlCommand::Resume => ControlAction::Resume,
        ControlCommand::Lr { lr, schedule } => ControlAction::SetLr {
            lr: *lr,
            schedule: schedule.clone(),
        },
        ControlCommand::Eval { split } => ControlAction::Eval { split: *split },
        ControlCommand::Checkpoint => ControlAction::Checkpoint,
        ControlCommand::StopAfterEpoch => ControlAction::StopAfterEpoch,
    };
    ControlBody {
        action,
        source: "cli".into(),
    }
}

/// Sends the control; prints the server's answer (JSON) on stdout.
pub fn run(args: ControlArgs) -> anyhow::Result<ExitCode> {
    let token = crate::http::token(args.token_file.as_deref())?;
    let path = format!("/api/runs/{}/control", args.run_id);
    let answer: ControlAccepted =
        crate::http::post_json(&args.server, &path, token.as_deref(), &body(&args.action))?;
    eprintln!(
        "run {}: {} accepted, applied at its next batch boundary",
        args.run_id, answer.action
    );
    println!(
        "{}",
        serde_json::to_string(&answer).expect("the answer serialises")
    );
    Ok(ExitCode::SUCCESS)
}
