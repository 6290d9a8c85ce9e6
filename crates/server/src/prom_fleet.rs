//! The fleet from Prometheus (`serve --fleet-prometheus URL`): instead of
//! one SSH connection per host, one instant query to the Prometheus that
//! scrapes every host's `mnist-monitor exporter` gives the whole fleet —
//! each host up or down (Prometheus' `up`), its CPU and memory, its GPUs
//! with who runs what on them, and the run it trains. A hundred hosts cost
//! one query every few seconds.
//!
//! The answer has the shape of the SSH fleet's (`/api/fleet`), so the page
//! draws either the same way.

use crate::protocol::{
    FleetAnswer, FleetCpu, FleetGpu, FleetMemory, FleetProcess, FleetRun, FleetSource, FleetStats,
    PromHost,
};
use mnist_events::LockExt;
use mnist_remote::fleet::{HostState, HostStatus};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The series the fleet table reads, in one selector.
pub const QUERY: &str = r#"{__name__=~"up|mnist_(cpu_usage_ratio|memory_(used|total)_bytes|gpu_(info|utilization_ratio|memory_(used|total)_bytes|temperature_celsius|process_memory_bytes)|run_active|run_info|train_step|train_loss)"}"#;

/// The fleet as last read from Prometheus.
#[derive(Debug)]
pub struct PromFleet {
    url: String,
    job: String,
    last: Mutex<FleetAnswer<PromHost>>,
}

impl PromFleet {
    /// Starts reading `url` (Prometheus' base URL) every `interval`,
    /// keeping the targets of scrape job `job`.
    pub fn start(url: String, job: String, interval: Duration) -> Arc<Self> {
        let fleet = Arc::new(Self {
            url: url.trim_end_matches('/').to_string(),
            job,
            last: Mutex::new(FleetAnswer {
                source: Some(FleetSource::Prometheus),
                prometheus: None,
                hosts: Vec::new(),
                error: Some("not read yet".into()),
            }),
        });
        let poller = fleet.clone();
        let _ = std::thread::Builder::new()
            .name("fleet-prometheus".into())
            .spawn(move || loop {
                let now = poller.read();
                *poller.last.locked() = now;
                std::thread::sleep(interval);
            });
        fleet
    }

    /// What `/api/fleet` answers: `{"source": "prometheus", "hosts": [...]}`
    /// (and `error` when Prometheus could not be read).
    pub fn snapshot(&self) -> FleetAnswer<PromHost> {
        self.last.locked().clone()
    }

    fn read(&self) -> FleetAnswer<PromHost> {
        let endpoint = format!("{}/api/v1/query", self.url);
        let answer = ureq::get(&endpoint)
            .timeout(Duration::from_secs(10))
            .query("query", QUERY)
            .call()
            .map_err(|e| e.to_string())
            .and_then(|r| r.into_string().map_err(|e| e.to_string()))
            .and_then(|s| serde_json::from_str::<Value>(&s).map_err(|e| e.to_string()));
        let (hosts, error) = match answer {
            Ok(v) if v["status"] == "success" => {
                let series = v["data"]["result"].as_array().cloned().unwrap_or_default();
                (hosts(&series, &self.job), None)
            }
            Ok(v) => (Vec::new(), Some(format!("{endpoint}: {}", v["error"]))),
            Err(e) => (Vec::new(), Some(format!("{endpoint}: {e}"))),
        };
        FleetAnswer {
            source: Some(FleetSource::Prometheus),
            prometheus: Some(self.url.clone()),
            hosts,
            error,
        }
    }
}

/// The fleet's hosts from one query's series: one per `instance` of `job`.
pub fn hosts(series: &[Value], job: &str) -> Vec<PromHost> {
    let mut by_instance: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for s in series {
        let m = &s["metric"];
        if m["job"].as_str() != Some(job) {
            continue;
        }
        if let Some(instance) = m["instance"].as_str() {
            by_instance.entry(instance.to_string()).or_default().push(s);
        }
    }
    by_instance
        .into_iter()
        .map(|(instance, series)| host(&instance, &series))
        .collect()
}

fn value(s: &Value) -> Option<f64> {
    s["value"][1].as_str()?.parse().ok()
}

/// A label's value as text.
fn label(s: &Value, name: &str) -> Option<String> {
    s["metric"][name].as_str().map(str::to_string)
}

fn host(instance: &str, series: &[&Value]) -> PromHost {
    let find = |name: &str| -> Vec<&Value> {
        series
            .iter()
            .copied()
            .filter(|s| s["metric"]["__name__"] == name)
            .collect()
    };
    let one = |name: &str| find(name).first().and_then(|s| value(s));
    let up = one("up") == Some(1.0);
    let stamp = series
        .iter()
        .filter_map(|s| s["value"][0].as_f64())
        .fold(0.0, f64::max);
    if !up {
        return PromHost {
            status: HostStatus {
                host: instance.to_string(),
                state: HostState::Down,
                error: Some("Prometheus cannot scrape it (up = 0)".into()),
                last_ok_ms: None,
                stats: None,
            },
            run: None,
        };
    }
    let mut gpus: BTreeMap<String, FleetGpu> = BTreeMap::new();
    for s in series {
        let m = &s["metric"];
        let (Some(name), Some(index)) = (m["__name__"].as_str(), m["index"].as_str()) else {
            continue;
        };
        let gpu = gpus.entry(index.to_string()).or_insert_with(|| FleetGpu {
            index: index.parse::<u64>().unwrap_or(0),
            ..Default::default()
        });
        let v = value(s);
        match name {
            "mnist_gpu_info" => gpu.name = label(s, "name"),
            "mnist_gpu_utilization_ratio" => {
                gpu.utilization_percent = v.map(|v| (v * 100.0).round());
            }
            "mnist_gpu_memory_used_bytes" => gpu.memory_used_bytes = v,
            "mnist_gpu_memory_total_bytes" => gpu.memory_total_bytes = v,
            "mnist_gpu_temperature_celsius" => gpu.temperature_celsius = v,
            "mnist_gpu_process_memory_bytes" => gpu.processes.push(FleetProcess {
                pid: m["pid"].as_str().and_then(|p| p.parse::<u64>().ok()),
                user: label(s, "user"),
                command: label(s, "command"),
                gpu_memory_bytes: v,
            }),
            _ => {}
        }
    }
    let run = find("mnist_run_info").first().map(|s| {
        let id = &s["metric"]["run_id"];
        let by_run = |name: &str| {
            find(name)
                .into_iter()
                .find(|x| x["metric"]["run_id"] == *id)
                .and_then(value)
        };
        FleetRun {
            run_id: label(s, "run_id"),
            active: one("mnist_run_active") == Some(1.0),
            step: by_run("mnist_train_step"),
            loss: by_run("mnist_train_loss"),
        }
    });
    let stats = FleetStats {
        cpu: FleetCpu {
            usage_percent: one("mnist_cpu_usage_ratio").map_or(0.0, |v| v * 100.0),
        },
        memory: FleetMemory {
            used_bytes: one("mnist_memory_used_bytes"),
            total_bytes: one("mnist_memory_total_bytes"),
        },
        gpus: gpus.into_values().collect(),
        gpu_error: find("mnist_gpu_info")
            .is_empty()
            .then(|| "no NVIDIA GPU reported".to_string()),
    };
    PromHost {
        status: HostStatus {
            host: instance.to_string(),
            state: HostState::Up,
            error: None,
            last_ok_ms: Some((stamp * 1000.0) as u64),
            stats: Some(stats),
        },
        run,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn s(labels: Value, v: &str) -> Value {
        json!({"metric": labels, "value": [1700000000.5, v]})
    }

    #[test]
    fn one_querys_series_become_hosts_with_their_gpus_users_and_run() {
        let series = vec![
            s(
                json!({"__name__": "up", "job": "mnist-monitor", "instance": "a:9464"}),
                "1",
            ),
            s(
                json!({"__name__": "up", "job": "mnist-monitor", "instance": "b:9464"}),
                "0",
            ),
            s(
                json!({"__name__": "up", "job": "node", "instance": "c:9100"}),
                "1",
            ),
            s(
                json!({"__name__": "mnist_cpu_usage_ratio", "job": "mnist-monitor", "instance": "a:9464"}),
                "0.25",
            ),
            s(
                json!({"__name__": "mnist_gpu_info", "job": "mnist-monitor", "instance": "a:9464", "index": "1", "name": "H100"}),
                "1",
            ),
            s(
                json!({"__name__": "mnist_gpu_utilization_ratio", "job": "mnist-monitor", "instance": "a:9464", "index": "1"}),
                "0.93",
            ),
            s(
                json!({"__name__": "mnist_gpu_process_memory_bytes", "job": "mnist-monitor", "instance": "a:9464", "index": "1", "pid": "42", "user": "ana", "command": "python"}),
                "1073741824",
            ),
            s(
                json!({"__name__": "mnist_run_info", "job": "mnist-monitor", "instance": "a:9464", "run_id": "r1"}),
                "1",
            ),
            s(
                json!({"__name__": "mnist_train_step", "job": "mnist-monitor", "instance": "a:9464", "run_id": "r1"}),
                "120",
            ),
        ];
        let hosts = serde_json::to_value(hosts(&series, "mnist-monitor")).unwrap();
        let hosts = hosts.as_array().unwrap();
        assert_eq!(hosts.len(), 2, "{hosts:?}");
        let a = &hosts[0];
        assert_eq!(a["state"], "up");
        assert_eq!(a["stats"]["cpu"]["usage_percent"], 25.0);
        let gpu = &a["stats"]["gpus"][0];
        assert_eq!(gpu["index"], 1);
        assert_eq!(gpu["name"], "H100");
        assert_eq!(gpu["utilization_percent"], 93.0);
        assert_eq!(gpu["processes"][0]["user"], "ana");
        assert_eq!(a["run"]["run_id"], "r1");
        assert_eq!(a["run"]["step"], 120.0);
        assert_eq!(hosts[1]["state"], "down");
        // The shape of an SSH host's row, nulls included.
        assert!(
            a["error"].is_null() && a["stats"]["gpu_error"].is_null(),
            "{a}"
        );
        assert_eq!(a["last_ok_ms"], 1_700_000_000_500_u64);
        assert!(hosts[1]["stats"].is_null() && hosts[1]["last_ok_ms"].is_null());
        assert!(gpu["processes"][0]["gpu_memory_bytes"].is_number());
    }
}
