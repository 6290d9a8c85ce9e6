//! Terminal output of a run: an event sink that draws an indicatif progress
//! bar on a terminal and prints plain, greppable lines otherwise.

use indicatif::{ProgressBar, ProgressStyle};
use mnist_events::{Event, EventKind, EventSink, LogLevel, ModelSummary, PhaseKind};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Plain-line mode prints a batch line at most this often.
const LINE_EVERY: Duration = Duration::from_secs(2);

pub struct Progress {
    bar: Option<ProgressBar>,
    terminal: bool,
    epochs: usize,
    last_line: Option<Instant>,
    /// The machine in a few words, from the latest `hardware` event.
    machine: String,
}

impl Progress {
    pub fn new() -> Self {
        Self {
            bar: None,
            terminal: std::io::stderr().is_terminal(),
            epochs: 0,
            last_line: None,
            machine: String::new(),
        }
    }

    fn println(&self, line: String) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn epoch_bar(&mut self, epoch: usize, batches: usize) -> &ProgressBar {
        let stale = self
            .bar
            .as_ref()
            .is_some_and(|b| b.length() != Some(batches as u64) || b.is_finished());
        if self.bar.is_none() || stale {
            if let Some(old) = self.bar.take() {
                old.finish_and_clear();
            }
            let bar = ProgressBar::new(batches as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30.cyan/blue}] {pos}/{len} {msg} eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            self.bar = Some(bar);
        }
        let bar = self.bar.as_ref().expect("just set");
        bar.set_prefix(format!("epoch {epoch}/{}", self.epochs));
        bar
    }
}

impl EventSink for Progress {
    fn emit(&mut self, event: &Event) {
        match &event.kind {
            EventKind::RunStarted(s) => self.started(&event.run_id, s),
            EventKind::Batch(b) => self.batch(b),
            EventKind::Eval(e) => self.println(format!(
                "epoch {} {}: loss {:.4} accuracy {:.4} f1 {:.4} mse {:.5} ({} images, {:.1}s)",
                e.epoch,
                e.split.as_str(),
                e.loss,
                e.accuracy,
                e.f1_macro,
                e.mse,
                e.images,
                e.seconds
            )),
            EventKind::Checkpoint(c) => self.println(format!(
                "epoch {} checkpoint {}{}",
                c.epoch,
                c.path,
                if c.best { " (best)" } else { "" }
            )),
            EventKind::Phase(p) => self.phase(p),
            EventKind::Control(c) => self.println(format!("control: {}", c.message)),
            EventKind::Log(l) => {
                let level = match l.level {
                    LogLevel::Info => "info",
                    LogLevel::Warn => "warning",
                    LogLevel::Error => "error",
                };
                self.println(format!("{level}: {}", l.message));
            }
            EventKind::RunFinished(f) => self.finished(&event.run_id, f),
            EventKind::Alert(a) => self.alert(a),
            EventKind::Hardware(h) => self.machine = machine_summary(h),
            // The page and the CSV show these; a terminal line per sample would drown the bar.
            EventKind::Samples(_) | EventKind::Layers(_) | EventKind::Histograms(_) => {}
        }
    }
}

impl Progress {
    fn started(&mut self, run_id: &str, s: &mnist_events::RunStarted) {
        self.epochs = s.config.get("epochs").and_then(|v| v.as_u64()).unwrap_or(0) as usize;
        let resumed = s
            .resumed_from_epoch
            .map(|e| format!(", resuming after epoch {e}"))
            .unwrap_or_default();
        self.println(format!(
            "run {run_id}: {} params on {} ({}), {} train / {} val / {} test images, {} batches per epoch{resumed}",
            s.model.total_params,
            backend_device(&s.backend, s.device_index),
            s.device,
            s.train_size,
            s.val_size,
            s.test_size,
            s.batches_per_epoch
        ));
    }

    /// The epoch bar on a terminal, a line every few seconds otherwise.
    fn batch(&mut self, b: &mnist_events::BatchMetrics) {
        let msg = format!(
            "loss {:.4} acc {:.3} f1 {:.3} {:.0} img/s{}",
            b.epoch_loss, b.epoch_accuracy, b.epoch_f1_macro, b.images_per_sec, self.machine
        );
        if self.terminal {
            let bar = self.epoch_bar(b.epoch, b.batches);
            bar.set_position(b.batch as u64);
            bar.set_message(msg);
        } else if self.last_line.is_none_or(|t| t.elapsed() >= LINE_EVERY) || b.batch == b.batches {
            self.last_line = Some(Instant::now());
            eprintln!(
                "epoch {}/{} batch {}/{} {msg}",
                b.epoch, self.epochs, b.batch, b.batches
            );
        }
    }

    /// A spinner while GPU kernels compile (the first batch replaces it
    /// with the epoch bar); a line otherwise.
    fn phase(&mut self, p: &mnist_events::Phase) {
        if p.phase == PhaseKind::Compiling && self.terminal {
            let spinner = ProgressBar::new_spinner();
            spinner.set_message(p.message.clone());
            spinner.enable_steady_tick(Duration::from_millis(120));
            if let Some(old) = self.bar.replace(spinner) {
                old.finish_and_clear();
            }
        } else {
            self.println(format!("info: {}", p.message));
        }
    }

    fn finished(&mut self, run_id: &str, f: &mnist_events::RunFinished) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        eprintln!(
            "run {run_id} {:?} after {} epochs, {:.1}s training{}",
            f.status,
            f.epochs_completed,
            f.train_seconds,
            f.test_accuracy
                .map(|a| format!(", test accuracy {a:.4}"))
                .unwrap_or_default()
        );
    }

    fn alert(&self, a: &mnist_events::Alert) {
        let severity = match a.severity {
            mnist_events::AlertSeverity::Warning => "warning",
            mnist_events::AlertSeverity::Critical => "CRITICAL",
        };
        let action = a
            .action
            .as_ref()
            .map(|x| format!(" [{x}]"))
            .unwrap_or_default();
        self.println(format!(
            "alert ({severity}) {}: {}{action}",
            a.rule, a.message
        ));
    }
}

/// " | GPU0 97% 61°C 40.1/79.6G" per GPU, or the CPU when there is none.
fn machine_summary(h: &mnist_events::HardwareSnapshot) -> String {
    if h.gpus.is_empty() {
        return format!(" | CPU {:.0}%", h.cpu.usage_percent);
    }
    h.gpus
        .iter()
        .map(|g| {
            let gib = |b: Option<u64>| {
                b.map_or("?".into(), |b| {
                    format!("{:.1}", b as f64 / (1u64 << 30) as f64)
                })
            };
            format!(
                " | GPU{} {}% {}°C {}/{}G",
                g.index,
                g.utilization_percent.map_or("?".into(), |u| u.to_string()),
                g.temperature_celsius.map_or("?".into(), |t| t.to_string()),
                gib(g.memory_used_bytes),
                gib(g.memory_total_bytes)
            )
        })
        .collect()
}

/// A model summary as an aligned table.
pub fn format_summary(s: &ModelSummary) -> String {
    let mut out = format!(
        "{:<9} {:<28} {:>14} {:>9}\n",
        "layer", "kind", "output", "params"
    );
    for l in &s.layers {
        let shape = l
            .output_shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("x");
        out += &format!(
            "{:<9} {:<28} {:>14} {:>9}\n",
            l.name, l.kind, shape, l.params
        );
    }
    out += &format!(
        "{:<9} {:<28} {:>14} {:>9}\n",
        "total", "", "", s.total_params
    );
    out
}

/// `cuda:1` for a device with an index, else the backend alone (`cpu`).
pub fn backend_device(backend: &str, index: Option<usize>) -> String {
    match index {
        Some(i) => format!("{backend}:{i}"),
        None => backend.to_string(),
    }
}
