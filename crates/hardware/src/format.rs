//! gpustat-style text for the terminal: a host line, then one line per GPU
//! with its users.

use mnist_events::{GpuStats, HardwareSnapshot};
use std::fmt::Write;

/// Bytes in binary units, e.g. `3.1 GiB`.
pub fn bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>, suffix: &str) -> String {
    v.map_or_else(|| "?".into(), |v| format!("{v}{suffix}"))
}

/// One GPU as a gpustat line: index, name, temperature, utilisation, memory,
/// power, then `user/pid(memory)` for each process.
pub fn gpu_line(g: &GpuStats) -> String {
    let mib = |b: Option<u64>| opt(b.map(|b| b / (1024 * 1024)), "");
    let mut line = format!(
        "[{}] {:<24} | {:>4}, {:>4} | {:>6} / {:>6} MiB | {:>4} / {:>4} W |",
        g.index,
        g.name.as_deref().unwrap_or("?"),
        opt(g.temperature_celsius, "°C"),
        opt(g.utilization_percent, " %"),
        mib(g.memory_used_bytes),
        mib(g.memory_total_bytes),
        opt(g.power_watts.map(|w| w.round() as i64), ""),
        opt(g.power_limit_watts.map(|w| w.round() as i64), ""),
    );
    if g.processes.is_empty() {
        line.push_str(" (free)");
    }
    for p in &g.processes {
        let _ = write!(
            line,
            " {}/{}:{}({})",
            p.user.as_deref().unwrap_or("?"),
            p.command.as_deref().unwrap_or("?"),
            p.pid,
            p.gpu_memory_bytes
                .map_or_else(|| "?".into(), |b| format!("{}M", b / (1024 * 1024)))
        );
    }
    line
}

/// The whole snapshot: host, CPU, memory, network, disks, GPUs.
pub fn snapshot(s: &HardwareSnapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}  CPU {:5.1}% of {} cores ({}), load {:.2} {:.2} {:.2}",
        s.host,
        s.cpu.usage_percent,
        s.cpu.cores,
        s.cpu.model,
        s.cpu.load_avg[0],
        s.cpu.load_avg[1],
        s.cpu.load_avg[2]
    );
    let _ = writeln!(
        out,
        "memory {} / {} used, swap {} / {}",
        bytes(s.memory.used_bytes as f64),
        bytes(s.memory.total_bytes as f64),
        bytes(s.memory.swap_used_bytes as f64),
        bytes(s.memory.swap_total_bytes as f64)
    );
    let busy: Vec<String> = s
        .network
        .iter()
        .filter(|n| n.interface != "lo")
        .map(|n| {
            format!(
                "{} rx {}/s tx {}/s",
                n.interface,
                bytes(n.rx_bytes_per_sec),
                bytes(n.tx_bytes_per_sec)
            )
        })
        .collect();
    if !busy.is_empty() {
        let _ = writeln!(out, "network {}", busy.join(", "));
    }
    for d in s.disks.iter().filter(|d| !d.holds.is_empty()) {
        let _ = writeln!(
            out,
            "disk {} ({}): {} free of {}, read {}/s write {}/s",
            d.mount,
            d.holds.join(", "),
            bytes(d.available_bytes as f64),
            bytes(d.total_bytes as f64),
            bytes(d.read_bytes_per_sec),
            bytes(d.write_bytes_per_sec)
        );
    }
    match &s.gpu_error {
        Some(e) => {
            let _ = writeln!(out, "{e}");
        }
        None => {
            for g in &s.gpus {
                let _ = writeln!(out, "{}", gpu_line(g));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mnist_events::GpuProcess;

    #[test]
    fn long_user_names_are_kept_whole() {
        let g = GpuStats {
            index: 0,
            name: Some("NVIDIA H100 80GB HBM3".into()),
            uuid: Some("GPU-1".into()),
            utilization_percent: Some(97),
            memory_utilization_percent: Some(40),
            memory_used_bytes: Some(12 << 30),
            memory_total_bytes: Some(80 << 30),
            temperature_celsius: Some(61),
            power_watts: Some(350.4),
            power_limit_watts: Some(700.0),
            processes: vec![GpuProcess {
                pid: 4242,
                kind: "compute".into(),
                user: Some("a_very_long_research_username".into()),
                command: Some("python3".into()),
                gpu_memory_bytes: Some(11 << 30),
            }],
            ..Default::default()
        };
        let line = gpu_line(&g);
        assert!(
            line.contains("a_very_long_research_username/python3:4242(11264M)"),
            "{line}"
        );
        assert!(
            line.contains("61°C") && line.contains("97 %") && line.contains("350 /  700 W"),
            "{line}"
        );
        assert!(!g.is_free());
    }

    #[test]
    fn bytes_use_binary_units() {
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(bytes(3.0 * 1024.0 * 1024.0 * 1024.0), "3.0 GiB");
    }
}
