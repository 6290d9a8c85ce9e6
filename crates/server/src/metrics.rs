//! `GET /metrics`: the current run and the machine in Prometheus' text
//! exposition format (version 0.0.4).
//!
//! Names follow Prometheus conventions: a `mnist_` prefix, base units in the
//! name (`_bytes`, `_seconds`, `_celsius`, `_watts`, `_hertz`), `_ratio` for
//! 0–1 fractions and `_total` for counters. GPUs are labelled by `index` and
//! `uuid`, so a dashboard survives a reordering of devices.

use crate::state::Status;
use crate::AppState;
use actix_web::{web, HttpResponse};
use mnist_events::{EventKind, HardwareSnapshot, Split};
use std::fmt::Write;

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

fn training(state: &AppState, x: &mut Exposition) {
    let Some(hub) = state.current_hub() else {
        x.gauge(
            "mnist_run_active",
            "Whether a run is training now.",
            &[],
            0.0,
        );
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
        "Whether a run is training now.",
        &[],
        if s.status == Status::Running {
            1.0
        } else {
            0.0
        },
    );
    let id = hub.run_id.as_str();
    for status in Status::ALL {
        x.gauge(
            "mnist_run_status",
            "The shown run's status: 1 for its current status, 0 for the others.",
            &[("run_id", id), ("status", status.as_str())],
            if s.status == status { 1.0 } else { 0.0 },
        );
    }
    x.gauge(
        "mnist_run_info",
        "The shown run's backend and device (value is always 1).",
        &[
            ("run_id", id),
            ("backend", s.backend.as_deref().unwrap_or("")),
            ("device", s.device.as_deref().unwrap_or("")),
        ],
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
    let last_batch = last_batch.and_then(|e| match &e.kind {
        EventKind::Batch(b) => Some(b.clone()),
        _ => None,
    });
    if let Some(b) = last_batch {
        let l = [("run_id", id)];
        x.gauge(
            "mnist_train_step",
            "Optimizer steps taken.",
            &l,
            b.step as f64,
        );
        x.gauge(
            "mnist_train_epoch",
            "Current epoch (1-based).",
            &l,
            b.epoch as f64,
        );
        x.gauge("mnist_train_loss", "Loss of the last batch.", &l, b.loss);
        x.gauge(
            "mnist_train_accuracy_ratio",
            "Accuracy of the last batch.",
            &l,
            b.accuracy,
        );
        x.gauge(
            "mnist_train_f1_macro_ratio",
            "Macro-F1 of the last batch.",
            &l,
            b.f1_macro,
        );
        x.gauge(
            "mnist_train_epoch_loss",
            "Mean loss over the epoch so far.",
            &l,
            b.epoch_loss,
        );
        x.gauge(
            "mnist_train_epoch_accuracy_ratio",
            "Accuracy over the epoch so far.",
            &l,
            b.epoch_accuracy,
        );
        x.gauge(
            "mnist_train_learning_rate",
            "Current learning rate.",
            &l,
            b.lr,
        );
        x.gauge(
            "mnist_train_images_per_second",
            "Training throughput.",
            &l,
            b.images_per_sec,
        );
        x.gauge(
            "mnist_train_elapsed_seconds",
            "Seconds spent training in this process.",
            &l,
            b.elapsed_s,
        );
    }
    for m in evals.into_iter().flatten() {
        {
            let l = [("run_id", id), ("split", m.split.as_str())];
            x.gauge(
                "mnist_eval_loss",
                "Loss of the last evaluation.",
                &l,
                m.loss,
            );
            x.gauge(
                "mnist_eval_accuracy_ratio",
                "Accuracy of the last evaluation.",
                &l,
                m.accuracy,
            );
            x.gauge(
                "mnist_eval_f1_macro_ratio",
                "Macro-F1 of the last evaluation.",
                &l,
                m.f1_macro,
            );
        }
    }
    for (rule, n) in alerts {
        x.counter(
            "mnist_alerts_total",
            "Alerts fired in the shown run, by rule.",
            &[("run_id", id), ("rule", &rule)],
            n as f64,
        );
    }
}

fn hardware(h: &HardwareSnapshot, x: &mut Exposition) {
    x.gauge(
        "mnist_hardware_up",
        "Whether hardware samples are available.",
        &[],
        1.0,
    );
    x.gauge(
        "mnist_hardware_sample_timestamp_seconds",
        "When the last hardware sample was taken (Unix time).",
        &[],
        h.sampled_at_ms as f64 / 1000.0,
    );
    x.gauge(
        "mnist_cpu_cores",
        "Logical CPU cores.",
        &[],
        h.cpu.cores as f64,
    );
    x.gauge(
        "mnist_cpu_usage_ratio",
        "CPU busy, all cores together.",
        &[],
        h.cpu.usage_percent as f64 / 100.0,
    );
    for (i, p) in h.cpu.per_core_percent.iter().enumerate() {
        x.gauge(
            "mnist_cpu_core_usage_ratio",
            "CPU busy, per logical core.",
            &[("cpu", &i.to_string())],
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
    let m = &h.memory;
    x.gauge(
        "mnist_memory_total_bytes",
        "Host memory.",
        &[],
        m.total_bytes as f64,
    );
    x.gauge(
        "mnist_memory_used_bytes",
        "Host memory in use.",
        &[],
        m.used_bytes as f64,
    );
    x.gauge(
        "mnist_memory_available_bytes",
        "Host memory available to new work.",
        &[],
        m.available_bytes as f64,
    );
    x.gauge(
        "mnist_swap_total_bytes",
        "Swap space.",
        &[],
        m.swap_total_bytes as f64,
    );
    x.gauge(
        "mnist_swap_used_bytes",
        "Swap in use.",
        &[],
        m.swap_used_bytes as f64,
    );
    x.gauge(
        "mnist_process_resident_memory_bytes",
        "Resident memory of the mnist-monitor process.",
        &[],
        h.process.rss_bytes as f64,
    );
    x.gauge(
        "mnist_process_cpu_ratio",
        "CPU used by the mnist-monitor process, in cores.",
        &[],
        h.process.cpu_percent as f64 / 100.0,
    );
    for n in &h.network {
        let l = [("interface", n.interface.as_str())];
        x.counter(
            "mnist_network_receive_bytes_total",
            "Bytes received per interface.",
            &l,
            n.rx_total_bytes as f64,
        );
        x.counter(
            "mnist_network_transmit_bytes_total",
            "Bytes sent per interface.",
            &l,
            n.tx_total_bytes as f64,
        );
    }
    for d in &h.disks {
        let l = [("mount", d.mount.as_str()), ("device", d.name.as_str())];
        x.gauge(
            "mnist_disk_size_bytes",
            "Size of the file system.",
            &l,
            d.total_bytes as f64,
        );
        x.gauge(
            "mnist_disk_available_bytes",
            "Free space available to this user.",
            &l,
            d.available_bytes as f64,
        );
        x.gauge(
            "mnist_disk_read_bytes_per_second",
            "Disk reads over the last sample interval.",
            &l,
            d.read_bytes_per_sec,
        );
        x.gauge(
            "mnist_disk_write_bytes_per_second",
            "Disk writes over the last sample interval.",
            &l,
            d.write_bytes_per_sec,
        );
    }
    x.gauge(
        "mnist_gpu_count",
        "NVIDIA GPUs NVML reports (0 when there is no driver).",
        &[],
        h.gpus.len() as f64,
    );
    for g in &h.gpus {
        let index = g.index.to_string();
        let uuid = g.uuid.clone().unwrap_or_default();
        let l = [("index", index.as_str()), ("uuid", uuid.as_str())];
        x.gauge(
            "mnist_gpu_info",
            "GPU identity (value is always 1).",
            &[
                ("index", &index),
                ("uuid", &uuid),
                ("name", g.name.as_deref().unwrap_or("")),
            ],
            1.0,
        );
        let mut opt = |name: &'static str, help: &'static str, v: Option<f64>| {
            if let Some(v) = v {
                x.gauge(name, help, &l, v);
            }
        };
        opt(
            "mnist_gpu_utilization_ratio",
            "GPU busy (kernels running).",
            g.utilization_percent.map(|v| v as f64 / 100.0),
        );
        opt(
            "mnist_gpu_memory_utilization_ratio",
            "GPU memory bandwidth busy.",
            g.memory_utilization_percent.map(|v| v as f64 / 100.0),
        );
        opt(
            "mnist_gpu_memory_used_bytes",
            "GPU memory in use.",
            g.memory_used_bytes.map(|v| v as f64),
        );
        opt(
            "mnist_gpu_memory_total_bytes",
            "GPU memory.",
            g.memory_total_bytes.map(|v| v as f64),
        );
        opt(
            "mnist_gpu_temperature_celsius",
            "GPU temperature.",
            g.temperature_celsius.map(|v| v as f64),
        );
        opt("mnist_gpu_power_watts", "GPU power draw.", g.power_watts);
        opt(
            "mnist_gpu_power_limit_watts",
            "GPU enforced power limit.",
            g.power_limit_watts,
        );
        opt(
            "mnist_gpu_fan_ratio",
            "GPU fan speed.",
            g.fan_percent.map(|v| v as f64 / 100.0),
        );
        opt(
            "mnist_gpu_sm_clock_hertz",
            "GPU SM clock.",
            g.sm_clock_mhz.map(|v| v as f64 * 1e6),
        );
        opt(
            "mnist_gpu_memory_clock_hertz",
            "GPU memory clock.",
            g.memory_clock_mhz.map(|v| v as f64 * 1e6),
        );
        opt(
            "mnist_gpu_pcie_receive_bytes_per_second",
            "PCIe traffic to the GPU.",
            g.pcie_rx_bytes_per_sec,
        );
        opt(
            "mnist_gpu_pcie_transmit_bytes_per_second",
            "PCIe traffic from the GPU.",
            g.pcie_tx_bytes_per_sec,
        );
        opt(
            "mnist_gpu_processes",
            "Processes using the GPU.",
            Some(g.processes.len() as f64),
        );
        for p in &g.processes {
            x.gauge(
                "mnist_gpu_process_memory_bytes",
                "GPU memory per process, labelled with its owner.",
                &[
                    ("index", &index),
                    ("uuid", &uuid),
                    ("pid", &p.pid.to_string()),
                    ("user", p.user.as_deref().unwrap_or("")),
                    ("command", p.command.as_deref().unwrap_or("")),
                ],
                p.gpu_memory_bytes.unwrap_or(0) as f64,
            );
        }
    }
}

/// Builds the text format. Samples of one metric family must be contiguous,
/// so samples are grouped by name, in the order names first appear.
#[derive(Default)]
pub struct Exposition {
    families: Vec<(String, &'static str, &'static str, Vec<String>)>,
}

impl Exposition {
    pub fn gauge(&mut self, name: &str, help: &'static str, labels: &[(&str, &str)], value: f64) {
        self.sample(name, help, "gauge", labels, value)
    }

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
