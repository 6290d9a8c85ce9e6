//! Websockets: `/ws/runs/{id}` streams one run; `/ws/runs/current` follows
//! whichever run the server is showing.
//!
//! Protocol (server → client, JSON text frames):
//! * `{"type":"snapshot", ...}` first, unless the client asked for `?since=SEQ`
//!   (see [`crate::state::RunState::snapshot`]);
//! * then every event (`run_started`, `batch`, …) with its `seq`, in order;
//! * `{"type":"idle"}` when following `current` and no run exists yet;
//! * `{"type":"run_changed","run_id":…}` when `current` moves to a new run
//!   (a snapshot of the new run follows);
//! * `{"type":"runs_changed"}` when a run appears in, leaves or changes
//!   status in the runs folder (see [`crate::follow`]);
//! * the socket closes with reason `lagged` if the client fell more than
//!   [`crate::hub::VIEWER_QUEUE`] events behind: reconnect with `?since=` the
//!   last `seq` received and nothing is lost.
//!
//! `?since=SEQ` (with `&run=ID` on `current`, so that a reconnect after the
//! current run changed gets a snapshot instead) sends exactly the events
//! after SEQ, then live ones.

use crate::protocol::Envelope;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason, Message, MessageStream, Session};
use serde::Deserialize;
use std::sync::Arc;

/// Registers `/ws/runs/{id}` (`current` included) and `/ws/hardware`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/ws/runs/{id}", web::get().to(open))
        .route("/ws/hardware", web::get().to(open_hardware));
}

/// `/ws/hardware`: the machine, live, whatever run is shown (and when none
/// is). First `{"type":"hardware_history","interval_s":…,"samples":[…]}`
/// (the last few minutes, for sparklines), then each new sample as
/// `{"type":"hardware",…}`; `{"type":"hardware_off"}` when sampling is off.
/// A viewer that falls 64 samples behind is dropped.
async fn open_hardware(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> actix_web::Result<HttpResponse> {
    let (response, mut session, mut stream) = actix_ws::handle(&req, body)?;
    let monitor = state.opts.hardware.clone();
    let open = state.clone().into_inner().socket_opened();
    let mut closing = state.closing();
    actix_web::rt::spawn(async move {
        let _open = open;
        let Some(monitor) = monitor else {
            let _ = send(&mut session, &Envelope::HardwareOff).await;
            return;
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let (history, _subscription) = monitor.subscribe_with_history(move |s| {
            let _ = tx.try_send(s.clone());
        });
        let first = Envelope::HardwareHistory {
            interval_s: monitor.interval().as_secs_f64(),
            samples: history,
        };
        if !send(&mut session, &first).await {
            return;
        }
        loop {
            tokio::select! {
                sample = rx.recv() => {
                    let Some(sample) = sample else { break };
                    if !send(&mut session, &Envelope::Hardware(sample)).await {
                        return;
                    }
                }
                msg = stream.recv() => {
                    if !client_alive(msg, &mut session).await {
                        return;
                    }
                }
                _ = closing.wait_for(|c| *c) => {
                    let _ = session.close(Some(server_exiting())).await;
                    return;
                }
            }
        }
        let _ = session.close(Some(CloseCode::Again.into())).await;
    });
    Ok(response)
}

#[derive(Deserialize)]
struct Query {
    since: Option<u64>,
    run: Option<String>,
}

async fn open(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    id: web::Path<String>,
    q: web::Query<Query>,
) -> actix_web::Result<HttpResponse> {
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let q = q.into_inner();
    let state = state.into_inner();
    let open = state.socket_opened();
    actix_web::rt::spawn(async move {
        serve(state, id.into_inner(), q.since, q.run, session, stream).await;
        drop(open);
    });
    Ok(response)
}

/// The close reason when the process is exiting (`train --serve` after its
/// run): the page says so instead of "disconnected".
fn server_exiting() -> CloseReason {
    CloseReason {
        code: CloseCode::Away,
        description: Some("server exiting".into()),
    }
}

enum Next {
    /// The socket is done.
    Close(Option<CloseReason>),
    /// `current` moved to another run: start over with a snapshot.
    Switch,
}

async fn send(session: &mut Session, value: &impl serde::Serialize) -> bool {
    session
        .text(serde_json::to_string(value).expect("serialises"))
        .await
        .is_ok()
}

async fn serve(
    state: Arc<AppState>,
    id: String,
    mut since: Option<u64>,
    run: Option<String>,
    mut session: Session,
    mut stream: MessageStream,
) {
    let follow = id == "current";
    let mut wakers = Wakers {
        changes: state.scheduler.current_changes(),
        closing: state.closing(),
        runs: state.runs_changed(),
    };
    // On `current`, `since` only applies to the run the client last saw.
    if follow && run.is_some() && run != state.current_hub().map(|h| h.run_id.clone()) {
        since = None;
    }
    loop {
        wakers.changes.borrow_and_update();
        let hub = if follow {
            state.current_hub()
        } else {
            state.hub(&id)
        };
        let next = match hub {
            None if !follow => {
                let _ = send(
                    &mut session,
                    &Envelope::Error {
                        error: format!("no run {id}"),
                    },
                )
                .await;
                Next::Close(Some(CloseCode::Normal.into()))
            }
            None => {
                if !send(&mut session, &Envelope::Idle).await {
                    return;
                }
                wait_for_change(&mut wakers, &mut stream, &mut session).await
            }
            Some(hub) => {
                let (ok, rx) = match since {
                    None => {
                        let (snapshot, rx) = hub.subscribe_snapshot();
                        (send(&mut session, &snapshot).await, rx)
                    }
                    Some(since) => {
                        let (backlog, rx) = hub.subscribe(since);
                        let mut ok = true;
                        for event in &backlog {
                            ok = ok && send(&mut session, &**event).await;
                        }
                        (ok, rx)
                    }
                };
                if !ok {
                    return;
                }
                stream_live(&hub, rx, follow, &mut wakers, &mut stream, &mut session).await
            }
        };
        match next {
            Next::Close(reason) => {
                let _ = session.close(reason).await;
                return;
            }
            Next::Switch => {
                since = None;
                let run_id = state.current_hub().map(|h| h.run_id.clone());
                if !send(&mut session, &Envelope::RunChanged { run_id }).await {
                    return;
                }
            }
        }
    }
}

/// What wakes a websocket besides its run's events.
struct Wakers {
    /// The run `current` shows changed.
    changes: tokio::sync::watch::Receiver<Option<String>>,
    /// The server is closing.
    closing: tokio::sync::watch::Receiver<bool>,
    /// The runs folder changed (see [`crate::follow`]).
    runs: tokio::sync::watch::Receiver<u64>,
}

/// Forwards live events until the run ends, the viewer lags, the client
/// leaves, the server closes or (when following) the current run changes.
async fn stream_live(
    hub: &crate::hub::RunHub,
    rx: Option<tokio::sync::mpsc::Receiver<Arc<mnist_events::Event>>>,
    follow: bool,
    wakers: &mut Wakers,
    stream: &mut MessageStream,
    session: &mut Session,
) -> Next {
    let Wakers {
        changes,
        closing,
        runs,
    } = wakers;
    if let Some(mut rx) = rx {
        loop {
            tokio::select! {
                event = rx.recv() => match event {
                    Some(event) => {
                        if !send(session, &*event).await {
                            return Next::Close(None);
                        }
                    }
                    None if hub.is_finished() => break,
                    None => {
                        return Next::Close(Some(CloseReason {
                            code: CloseCode::Again,
                            description: Some("lagged".into()),
                        }))
                    }
                },
                msg = stream.recv() => {
                    if !client_alive(msg, session).await {
                        return Next::Close(None);
                    }
                }
                Ok(()) = runs.changed() => {
                    if !send(session, &Envelope::RunsChanged).await {
                        return Next::Close(None);
                    }
                }
                changed = changes.changed(), if follow => {
                    if changed.is_err() {
                        return Next::Close(None);
                    }
                    return Next::Switch;
                }
                _ = closing.wait_for(|c| *c) => {
                    // Send what is already queued, then go.
                    while let Ok(event) = rx.try_recv() {
                        if !send(session, &*event).await {
                            return Next::Close(None);
                        }
                    }
                    return Next::Close(Some(server_exiting()));
                }
            }
        }
    }
    // The run is over: a `current` viewer waits for the next one.
    if follow {
        wait_for_change(wakers, stream, session).await
    } else {
        Next::Close(Some(CloseCode::Normal.into()))
    }
}

async fn wait_for_change(
    wakers: &mut Wakers,
    stream: &mut MessageStream,
    session: &mut Session,
) -> Next {
    let Wakers {
        changes,
        closing,
        runs,
    } = wakers;
    loop {
        tokio::select! {
            changed = changes.changed() => {
                return if changed.is_ok() { Next::Switch } else { Next::Close(None) };
            }
            _ = closing.wait_for(|c| *c) => return Next::Close(Some(server_exiting())),
            Ok(()) = runs.changed() => {
                if !send(session, &Envelope::RunsChanged).await {
                    return Next::Close(None);
                }
            }
            msg = stream.recv() => {
                if !client_alive(msg, session).await {
                    return Next::Close(None);
                }
            }
        }
    }
}

/// Answers pings; false once the client has gone.
async fn client_alive(
    msg: Option<Result<Message, actix_ws::ProtocolError>>,
    session: &mut Session,
) -> bool {
    match msg {
        Some(Ok(Message::Ping(bytes))) => session.pong(&bytes).await.is_ok(),
        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => false,
        Some(Ok(_)) => true,
    }
}
