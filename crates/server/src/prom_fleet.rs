//! The fleet from Prometheus (`serve --fleet-prometheus URL`): instead of
//! one SSH connection per host, one instant query to the Prometheus that
//! scrapes every host's `mnist-monitor exporter` gives the whole fleet —
//! each host up or down (Prometheus' `up`), its CPU and memory, its GPUs
//! with who runs what on them, and the run it trains. A hundred hosts cost
//! one query every few seconds.
//!
//! The answer has the shape of the SSH fleet's (`/api/fleet`), so the page
//! draws either the same way.

use mnist_events::LockExt;
use serde_json::{json, Map, Value};
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
    last: Mutex<Value>,
}

impl PromFleet {
    /// Starts reading `url` (Prometheus' base URL) every `interval`,
    /// keeping the targets of scrape job `job`.
    pub fn start(url: String, job: String, interval: Duration) -> Arc<Self> {
        let fleet = Arc::new(Self {
            url: url.trim_end_matches('/').to_string(),
            job,
            last: Mutex::new(json!({"hosts": [], "source": "prometheus", "error": "not read yet"})),
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
    pub fn snapshot(&self) -> Value {
        self.last.locked().clone()
    }

    fn read(&self) -> Value {
        let endpoint = format!("{}/api/v1/query", self.url);
        let answer = ureq::get(&endpoint)
            .timeout(Duration::from_secs(10))
            .query("query", QUERY)
            .call()
            .map_err(|e| e.to_string())
            .and_then(|r| r.into_string().map_err(|e| e.to_string()))
            .and_then(|s| serde_json::from_str::<Value>(&s).map_err(|e| e.to_string()));
        match answer {
            Ok(v) if v["status"] == "success" => {
                let series = v["data"]["result"].as_array().cloned().unwrap_or_default();
                json!({"source": "prometheus", "prometheus": self.url, "hosts": hosts(&series, &self.job)})
            }
            Ok(v) => {
                json!({"source": "prometheus", "prometheus": self.url, "hosts": [], "error": format!("{endpoint}: {}", v["error"])})
            }
            Err(e) => {
                json!({"source": "prometheus", "prometheus": self.url, "hosts": [], "error": format!("{endpoint}: {e}")})
            }
        }
    }
}

/// The fleet's hosts from one query's series: one per `instance` of `job`.
pub fn hosts(series: &[Value], job: &str) -> Vec<Value> {
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

fn host(instance: &str, series: &[&Value]) -> Value {
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
        return json!({"host": instance, "state": "down", "error": "Prometheus cannot scrape it (up = 0)", "last_ok_ms": null, "stats": null});
    }
    let mut gpus: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for s in series {
        let m = &s["metric"];
        let (Some(name), Some(index)) = (m["__name__"].as_str(), m["index"].as_str()) else {
            continue;
        };
        let gpu = gpus.entry(index.to_string()).or_insert_with(|| {
            let mut g = Map::new();
            g.insert("index".into(), json!(index.parse::<u64>().unwrap_or(0)));
            g.insert("processes".into(), json!([]));
            g
        });
        let v = value(s);
        match name {
            "mnist_gpu_info" => {
                gpu.insert("name".into(), m["name"].clone());
            }
            "mnist_gpu_utilization_ratio" => {
                gpu.insert(
                    "utilization_percent".into(),
                    json!(v.map(|v| (v * 100.0).round())),
                );
            }
            "mnist_gpu_memory_used_bytes" => {
                gpu.insert("memory_used_bytes".into(), json!(v));
            }
            "mnist_gpu_memory_total_bytes" => {
                gpu.insert("memory_total_bytes".into(), json!(v));
            }
            "mnist_gpu_temperature_celsius" => {
                gpu.insert("temperature_celsius".into(), json!(v));
            }
            "mnist_gpu_process_memory_bytes" => {
                let p = json!({"pid": m["pid"].as_str().and_then(|p| p.parse::<u64>().ok()), "user": m["user"], "command": m["command"], "gpu_memory_bytes": v});
                if let Some(list) = gpu.get_mut("processes").and_then(Value::as_array_mut) {
                    list.push(p);
                }
            }
            _ => {}
        }
    }
    let run = find("mnist_run_info").first().map(|s| {
        let id = s["metric"]["run_id"].clone();
        let by_run = |name: &str| {
            find(name)
                .into_iter()
                .find(|x| x["metric"]["run_id"] == id)
                .and_then(value)
        };
        json!({
            "run_id": id,
            "active": one("mnist_run_active") == Some(1.0),
            "step": by_run("mnist_train_step"),
            "loss": by_run("mnist_train_loss"),
        })
    });
    json!({
        "host": instance,
        "state": "up",
        "error": null,
        "last_ok_ms": (stamp * 1000.0) as u64,
        "stats": {
            "cpu": {"usage_percent": one("mnist_cpu_usage_ratio").map_or(0.0, |v| v * 100.0)},
            "memory": {"used_bytes": one("mnist_memory_used_bytes"), "total_bytes": one("mnist_memory_total_bytes")},
            "gpus": gpus.into_values().collect::<Vec<_>>(),
            "gpu_error": if find("mnist_gpu_info").is_empty() { json!("no NVIDIA GPU reported") } else { Value::Null },
        },
        "run": run,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let hosts = hosts(&series, "mnist-monitor");
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
    }
}
