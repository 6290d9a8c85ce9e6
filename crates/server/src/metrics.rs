//! `GET /metrics`: the current run and the machine in Prometheus' text
//! exposition format (version 0.0.4).
//!
//! Names follow Prometheus conventions: a `mnist_` prefix, base units in the
//! name (`_bytes`, `_seconds`, `_celsius`, `_watts`, `_hertz`), `_ratio` for
//! 0–1 fractions and `_total` for counters. GPUs are labelled by `index` and
//! `uuid`, so a dashboard survives a reordering of devices.

use crate::protocol::Status;
use crate::AppState;
use actix_web::{web, HttpResponse};
use mnist_events::{
    BatchMetrics, DiskStats, EvalMetrics, EventKind, GpuStats, HardwareSnapshot, NetStats, Split,
};
use std::fmt::Write;

/// Registers `GET /metrics`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics));
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let mut x = Exposition::default();
    training(&state, &mut x);
    match state.opts.hardware.as_ref().and_then(|m| m.latest()) {
        Some(h) => hardware(&h, &mut x),
        None => x.gauge(
            "mnist_hardware_up",
            "Whether hardware samples are available.",
            &[],
            0.0,
        ),
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(x.finish())
}

/// A metric read off a value of type `T`: name, help, and the reader.
/// The tables below are the metrics' one definition: `/metrics` and its
/// documentation (README) follow them.
type Metric<T> = (&'static str, &'static str, fn(&T) -> f64);
/// Like [`Metric`], for values a device may not report.
type MaybeMetric<T> = (&'static str, &'static str, fn(&T) -> Option<f64>);

/// The last batch of the shown run, labelled `run_id`.
const BATCH: &[Metric<BatchMetrics>] = &[
    ("mnist_train_step", "Optimizer steps taken.", |b| {
        b.step as f64
    }),
    ("mnist_train_epoch", "Current epoch (1-based).", |b| {
        b.epoch as f64
    }),
    ("mnist_train_loss", "Loss of the last batch.", |b| b.loss),
    (
        "mnist_train_accuracy_ratio",
        "Accuracy of the last batch.",
        |b| b.accuracy,
    ),
    (
        "mnist_train_f1_macro_ratio",
        "Macro-F1 of the last batch.",
        |b| b.f1_macro,
    ),
    (
        "mnist_train_epoch_loss",
        "Mean loss over the epoch so far.",
        |b| b.epoch_loss,
    ),
    (
        "mnist_train_epoch_accuracy_ratio",
        "Accuracy over the epoch so far.",
        |b| b.epoch_accuracy,
    ),
    ("mnist_train_learning_rate", "Current learning rate.", |b| {
        b.lr
    }),
    (
        "mnist_train_images_per_second",
        "Training throughput.",
        |b| b.images_per_sec,
    ),
    (
        "mnist_train_elapsed_seconds",
        "Seconds spent training in this process.",
        |b| b.elapsed_s,
    ),
];

/// The last evaluation per split, labelled `run_id` and `split`.
const EVAL: &[Metric<EvalMetrics>] = &[
    ("mnist_eval_loss", "Loss of the last evaluation.", |m| {
        m.loss
    }),
    (
        "mnist_eval_accuracy_ratio",
        "Accuracy of the last evaluation.",
        |m| m.accuracy,
    ),
    (
        "mnist_eval_f1_macro_ratio",
        "Macro-F1 of the last evaluation.",
        |m| m.f1_macro,
    ),
];

/// The machine, unlabelled.
const HOST: &[Metric<HardwareSnapshot>] = &[
    (
        "mnist_hardware_up",
        "Whether hardware samples are available.",
        |_| 1.0,
    ),
    (
        "mnist_hardware_sample_timestamp_seconds",
        "When the last hardware sample was taken (Unix time).",
        |h| h.sampled_at_ms as f64 / 1000.0,
    ),
    ("mnist_cpu_cores", "Logical CPU cores.", |h| {
        h.cpu.cores as f64
    }),
    (
        "mnist_cpu_usage_ratio",
        "CPU busy, all cores together.",
        |h| h.cpu.usage_percent as f64 / 100.0,
    ),
    ("mnist_memory_total_bytes", "Host memory.", |h| {
        h.memory.total_bytes as f64
    }),
    ("mnist_memory_used_bytes", "Host memory in use.", |h| {
        h.memory.used_bytes as f64
    }),
    (
        "mnist_memory_available_bytes",
        "Host memory available to new work.",
        |h| h.memory.available_bytes as f64,
    ),
    ("mnist_swap_total_bytes", "Swap space.", |h| {
        h.memory.swap_total_bytes as f64
    }),
    ("mnist_swap_used_bytes", "Swap in use.", |h| {
        h.memory.swap_used_bytes as f64
    }),
    (
        "mnist_process_resident_memory_bytes",
        "Resident memory of the mnist-monitor process.",
        |h| h.process.rss_bytes as f64,
    ),
    (
        "mnist_process_cpu_ratio",
        "CPU used by the mnist-monitor process, in cores.",
        |h| h.process.cpu_percent as f64 / 100.0,
    ),
    (
        "mnist_gpu_count",
        "NVIDIA GPUs NVML reports (0 when there is no driver).",
        |h| h.gpus.len() as f64,
    ),
];

/// Per network interface, labelled `interface` (counters).
const NETWORK: &[Metric<NetStats>] = &[
    (
        "mnist_network_receive_bytes_total",
        "Bytes received per interface.",
        |n| n.rx_total_bytes as f64,
    ),
    (
        "mnist_network_transmit_bytes_total",
        "Bytes sent per interface.",
        |n| n.tx_total_bytes as f64,
    ),
];

/// Per watched file system, labelled `mount` and `device`.
const DISK: &[Metric<DiskStats>] = &[
    ("mnist_disk_size_bytes", "Size of the file system.", |d| {
        d.total_bytes as f64
    }),
    (
        "mnist_disk_available_bytes",
        "Free space available to this user.",
        |d| d.available_bytes as f64,
    ),
    (
        "mnist_disk_read_bytes_per_second",
        "Disk reads over the last sample interval.",
        |d| d.read_bytes_per_sec,
    ),
    (
        "mnist_disk_write_bytes_per_second",
        "Disk writes over the last sample interval.",
        |d| d.write_bytes_per_sec,
    ),
];

/// Per GPU, labelled `index` and `uuid`; absent when NVML cannot read it.
const GPU: &[MaybeMetric<GpuStats>] = &[
    (
        "mnist_gpu_utilization_ratio",
        "GPU busy (kernels running).",
        |g| g.utilization_percent.map(|v| v as f64 / 100.0),
    ),
    (
        "mnist_gpu_memory_utilization_ratio",
        "GPU memory bandwidth busy.",
        |g| g.memory_utilization_percent.map(|v| v as f64 / 100.0),
    ),
    ("mnist_gpu_memory_used_bytes", "GPU memory in use.", |g| {
        g.memory_used_bytes.map(|v| v as f64)
    }),
    ("mnist_gpu_memory_total_bytes", "GPU memory.", |g| {
        g.memory_total_bytes.map(|v| v as f64)
    }),
    ("mnist_gpu_temperature_celsius", "GPU temperature.", |g| {
        g.temperature_celsius.map(|v| v as f64)
    }),
    ("mnist_gpu_power_watts", "GPU power draw.", |g| {
        g.power_watts
    }),
    (
        "mnist_gpu_power_limit_watts",
        "GPU enforced power limit.",
        |g| g.power_limit_watts,
    ),
    ("mnist_gpu_fan_ratio", "GPU fan speed.", |g| {
        g.fan_percent.map(|v| v as f64 / 100.0)
    }),
    ("mnist_gpu_sm_clock_hertz", "GPU SM clock.", |g| {
        g.sm_clock_mhz.map(|v| v as f64 * 1e6)
    }),
    ("mnist_gpu_memory_clock_hertz", "GPU memory clock.", |g| {
        g.memory_clock_mhz.map(|v| v as f64 * 1e6)
    }),
    (
        "mnist_gpu_pcie_receive_bytes_per_second",
        "PCIe traffic to the GPU.",
        |g| g.pcie_rx_bytes_per_sec,
    ),
    (
        "mnist_gpu_pcie_transmit_bytes_per_second",
        "PCIe traffic from the GPU.",
        |g| g.pcie_tx_bytes_per_sec,
    ),
    ("mnist_gpu_processes", "Processes using the GPU.", |g| {
        Some(g.processes.len() as f64)
    }),
];

fn training(state: &AppState, x: &mut Exposition) {
    let active = "Whether a run is training now.";
    let Some(hub) = state.current_hub() else {
        x.gauge("mnist_run_active", active, &[], 0.0);
        return;
    };
    let (s, last_batch, evals, alerts) = hub.with_state(|state| {
        (
            state.summary(),
            state.last_batch().cloned(),
            [Split::Val, Split::Test].map(|split| state.last_eval(split).cloned()),
            state.alert_counts().to_vec(),
        )
    });
    x.gauge(
        "mnist_run_active",
        active,
        &[],
        f64::from(u8::from(s.status.is_training())),
    );
    let id = hub.run_id.as_str();
    for status in Status::ALL {
        x.gauge(
            "mnist_run_status",
            "The shown run's status: 1 for its current status, 0 for the others.",
            &[("run_id", id), ("status", status.as_str())],
            f64::from(u8::from(s.status == status)),
        );
    }
    let info = [
        ("run_id", id),
        ("backend", s.backend.as_deref().unwrap_or("")),
        ("device", s.device.as_deref().unwrap_or("")),
    ];
    x.gauge(
        "mnist_run_info",
        "The shown run's backend and device (value is always 1).",
        &info,
        1.0,
    );
    if let Some(p) = s.params {
        x.gauge(
            "mnist_model_parameters",
            "Trainable parameters of the model.",
            &[("run_id", id)],
            p as f64,
        );
    }
    if let Some(EventKind::Batch(b)) = last_batch.as_deref().map(|e| &e.kind) {
        for (name, help, read) in BATCH {
            x.gauge(name, help, &[("run_id", id)], read(b));
        }
    }
    for m in evals.iter().flatten() {
        for (name, help, read) in EVAL {
            x.gauge(
                name,
                help,
                &[("run_id", id), ("split", m.split.as_str())],
                read(m),
            );
        }
    }
    for (rule, n) in alerts {
        let labels = [("run_id", id), ("rule", rule.as_str())];
        x.counter(
            "mnist_alerts_total",
            "Alerts fired in the shown run, by rule.",
            &labels,
            n as f64,
        );
    }
}

fn hardware(h: &HardwareSnapshot, x: &mut Exposition) {
    for (name, help, read) in HOST {
        x.gauge(name, help, &[], read(h));
    }
    for (i, p) in h.cpu.per_core_percent.iter().enumerate() {
        let core = i.to_string();
        x.gauge(
            "mnist_cpu_core_usage_ratio",
            "CPU busy, per logical core.",
            &[("cpu", &core)],
            *p as f64 / 100.0,
        );
    }
    for (window, v) in ["1m", "5m", "15m"].iter().zip(h.cpu.load_avg) {
        x.gauge(
            "mnist_cpu_load_average",
            "Load average.",
            &[("window", window)],
            v,
        );
    }
    for n in &h.network {
        for (name, help, read) in NETWORK {
            x.counter(name, help, &[("interface", n.interface.as_str())], read(n));
        }
    }
    for d in &h.disks {
        for (name, help, read) in DISK {
            x.gauge(
                name,
                help,
                &[("mount", d.mount.as_str()), ("device", d.name.as_str())],
                read(d),
            );
        }
    }
    for g in &h.gpus {
        gpu(g, x);
    }
}

fn gpu(g: &GpuStats, x: &mut Exposition) {
    let index = g.index.to_string();
    let uuid = g.uuid.clone().unwrap_or_default();
    let name = g.name.as_deref().unwrap_or("");
    let info = [
        ("index", index.as_str()),
        ("uuid", uuid.as_str()),
        ("name", name),
    ];
    x.gauge(
        "mnist_gpu_info",
        "GPU identity (value is always 1).",
        &info,
        1.0,
    );
    let labels = [("index", index.as_str()), ("uuid", uuid.as_str())];
    for (metric, help, read) in GPU {
        if let Some(v) = read(g) {
            x.gauge(metric, help, &labels, v);
        }
    }
    for p in &g.processes {
        let pid = p.pid.to_string();
        let labels = [
            ("index", index.as_str()),
            ("uuid", uuid.as_str()),
            ("pid", pid.as_str()),
            ("user", p.user.as_deref().unwrap_or("")),
            ("command", p.command.as_deref().unwrap_or("")),
        ];
        x.gauge(
            "mnist_gpu_process_memory_bytes",
            "GPU memory per process, labelled with its owner.",
            &labels,
            p.gpu_memory_bytes.unwrap_or(0) as f64,
        );
    }
}

/// Builds the text format. Samples of one metric family must be contiguous,
/// so samples are grouped by name, in the order names first appear.
#[derive(Default)]
pub struct Exposition {
    families: Vec<(String, &'static str, &'static str, Vec<String>)>,
}

impl Exposition {
    /// Adds a sample of gauge `name` (a value that may go up or down).
    pub fn gauge(&mut self, name: &str, help: &'static str, labels: &[(&str, &str)], value: f64) {
        self.sample(name, help, "gauge", labels, value)
    }

    /// Adds a sample of counter `name` (a `_total` that only grows).
    pub fn counter(&mut self, name: &str, help: &'static str, labels: &[(&str, &str)], value: f64) {
        self.sample(name, help, "counter", labels, value)
    }

    fn sample(
        &mut self,
        name: &str,
        help: &'static str,
        kind: &'static str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        let mut line = name.to_string();
        if !labels.is_empty() {
            line.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                let _ = write!(line, "{k}=\"{}\"", escape(v));
            }
            line.push('}');
        }
        let _ = write!(line, " {}", number(value));
        match self.families.iter_mut().find(|f| f.0 == name) {
            Some(f) => f.3.push(line),
            None => self
                .families
                .push((name.to_string(), help, kind, vec![line])),
        }
    }

    /// The exposition text: per family, its `# HELP` and `# TYPE` lines,
    /// then its samples.
    pub fn finish(self) -> String {
        let mut out = String::new();
        for (name, help, kind, lines) in self.families {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for l in lines {
                out.push_str(&l);
                out.push('\n');
            }
        }
        out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_contiguous_and_labels_escaped() {
        let mut x = Exposition::default();
        x.gauge("a", "A.", &[("k", "1")], 1.0);
        x.gauge("b", "B.", &[], f64::NAN);
        x.gauge("a", "A.", &[("k", "say \"hi\"\n")], 2.5);
        let text = x.finish();
        assert_eq!(
            text,
            "# HELP a A.\n# TYPE a gauge\na{k=\"1\"} 1\na{k=\"say \\\"hi\\\"\\n\"} 2.5\n# HELP b B.\n# TYPE b gauge\nb NaN\n"
        );
    }
}
