//! The Slurm executor against a real single-node Slurm: Debian's
//! `slurmctld` and `slurmd` (with `munge` for authentication) started by
//! the test on loopback ports, in a folder of its own. `.ci/run` installs
//! them.

use crate::common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// munged, slurmctld and slurmd, killed on drop.
struct Slurm {
    daemons: Vec<Child>,
    conf: PathBuf,
}

impl Drop for Slurm {
    fn drop(&mut self) {
        for child in self.daemons.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn need(program: &str) -> String {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let path = Path::new(dir).join(program);
        if path.exists() {
            return path.display().to_string();
        }
    }
    panic!("{program} is missing: install Debian's slurmctld, slurmd, slurm-client and munge (as .ci/run does)");
}

fn user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn daemon(program: &str, args: &[&str], log: &Path) -> Child {
    Command::new(need(program))
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("start {program}: {e}"))
}

impl Slurm {
    /// A one-node cluster named after the test, its node as many CPUs as this machine.
    fn start(dir: &Path) -> Slurm {
        for d in ["munge", "state", "spool", "log"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let key: Vec<u8> = (0..1024).map(|i| (i * 7919 % 251) as u8).collect();
        let key_file = dir.join("munge/munge.key");
        std::fs::write(&key_file, key).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let socket = dir.join("munge/munge.socket");
        let mut daemons = vec![daemon(
            "munged",
            &[
                "-F",
                "--force",
                &format!("--socket={}", socket.display()),
                &format!("--key-file={}", key_file.display()),
                &format!("--pid-file={}", dir.join("munge/munged.pid").display()),
                &format!("--seed-file={}", dir.join("munge/seed").display()),
                &format!("--log-file={}", dir.join("log/munged.log").display()),
            ],
            &dir.join("log/munged.err"),
        )];
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let me = user();
        let d = dir.display();
        let conf = dir.join("slurm.conf");
        std::fs::write(
            &conf,
            format!(
                "ClusterName=mnisttest\nSlurmctldHost=localhost\nSlurmctldPort={}\nSlurmdPort={}\n\
                 AuthType=auth/munge\nAuthInfo=socket={}\nCredType=cred/munge\n\
                 SlurmUser={me}\nSlurmdUser={me}\nStateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\n\
                 SlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd.pid\n\
                 SlurmctldLogFile={d}/log/slurmctld.log\nSlurmdLogFile={d}/log/slurmd.log\n\
                 ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nJobAcctGatherType=jobacct_gather/none\n\
                 AccountingStorageType=accounting_storage/none\nSchedulerType=sched/builtin\n\
                 SelectType=select/cons_tres\nSelectTypeParameters=CR_Core\nReturnToService=2\nMpiDefault=none\n\
                 NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN\n\
                 PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP\n",
                free_port(),
                free_port(),
                socket.display(),
            ),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "munged did not start: {}",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let conf_arg = conf.display().to_string();
        daemons.push(daemon(
            "slurmctld",
            &["-D", "-f", &conf_arg],
            &dir.join("log/ctld.err"),
        ));
        std::thread::sleep(Duration::from_millis(500));
        daemons.push(daemon(
            "slurmd",
            &["-D", "-f", &conf_arg, "-N", "localhost"],
            &dir.join("log/d.err"),
        ));
        let slurm = Slurm { daemons, conf };
        slurm.wait_idle(dir);
        slurm
    }

    /// A Slurm client command aimed at this cluster.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", &self.conf);
        c
    }

    fn wait_idle(&self, dir: &Path) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self
                .command("sinfo")
                .args(["-h", "-o", "%T"])
                .output()
                .unwrap();
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if state == "idle" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the Slurm node is {state:?}, not idle; logs in {}: {}",
                dir.display(),
                std::fs::read_to_string(dir.join("log/slurmd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// `GET /api/slurm`'s sweep `sweep_id`.
fn slurm_sweep(base: &str, sweep_id: &str) -> Value {
    let (code, body) = get(&format!("{base}/api/slurm"));
    assert_eq!(code, 200, "{body}");
    let all: Value = serde_json::from_str(&body).unwrap();
    all["sweeps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sweep_id"] == sweep_id)
        .cloned()
        .unwrap_or(Value::Null)
}

fn run_status(base: &str, run_id: &str) -> Option<String> {
    let (code, body) = get(&format!("{base}/api/runs/{run_id}"));
    (code == 200).then(|| {
        let v: Value = serde_json::from_str(&body).unwrap();
        v["status"].as_str().unwrap_or("").to_string()
    })
}

/// Polls until `done` says yes about the sweep, or panics with what was seen.
fn wait_for(
    base: &str,
    sweep_id: &str,
    what: &str,
    secs: u64,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let sweep = slurm_sweep(base, sweep_id);
        if done(&sweep) {
            return sweep;
        }
        assert!(Instant::now() < deadline, "{what}: never; last {sweep:#}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `sweep --executor slurm` with `extra` sweep flags: its JSON answer and its stderr.
fn submit(
    slurm: &Slurm,
    work: &Path,
    data: &Path,
    grid: &[&str],
    extra: &[&str],
    train: &[&str],
) -> (Value, String) {
    let mut cmd = bin();
    cmd.env("SLURM_CONF", &slurm.conf)
        .current_dir(work)
        .arg("sweep");
    for g in grid {
        cmd.args(["--grid", g]);
    }
    cmd.args([
        "--executor",
        "slurm",
        "--cpus-per-task",
        "1",
        "--time",
        "10",
    ])
    .args(extra)
    .arg("--")
    .args(train)
    .args([
        "--val-size",
        "60",
        "--backend",
        "cpu",
        "--skip-verify",
        "--hw-interval",
        "0",
    ])
    .arg("--data-dir")
    .arg(data)
    .args(work_dirs(work));
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let answer = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim())
        .unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    (answer, stderr(&out))
}

#[test]
fn a_four_config_sweep_runs_through_a_real_slurm_and_shows_its_task_states() {
    let work = tempfile::tempdir().unwrap();
    let slurm = Slurm::start(&work.path().join("slurm"));
    let data = work.path().join("data");
    write_synthetic(&data, 400, 60);
    let server = spawn_server_with(
        {
            let mut c = bin();
            c.env("SLURM_CONF", &slurm.conf);
            c
        },
        serve_in(&data, work.path()),
    );
    let base = &server.base;

    // --wait: the command follows the tasks until every one has ended.
    let (job, watched) = submit(
        &slurm,
        work.path(),
        &data,
        &["lr=0.001,0.003", "batch_size=20,40"],
        &["--wait"],
        &["--epochs", "1"],
    );
    assert!(
        watched.contains("every task has ended, all completed"),
        "{watched}"
    );
    for task in 0..4 {
        assert!(
            watched.contains(&format!("_{task} ")) && watched.contains("COMPLETED on localhost"),
            "{watched}"
        );
    }
    let sweep_id = job["sweep_id"].as_str().unwrap();
    let runs: Vec<&str> = job["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(runs.len(), 4);
    let script = std::fs::read_to_string(job["script"].as_str().unwrap()).unwrap();
    assert!(script.contains("#SBATCH --array=0-3"), "{script}");

    // Every task ends COMPLETED in Slurm, its run completed on the page.
    let sweep = wait_for(base, sweep_id, "all four tasks COMPLETED", 180, |s| {
        s["tasks"]
            .as_array()
            .is_some_and(|t| t.len() == 4 && t.iter().all(|t| t["state"] == "COMPLETED"))
    });
    assert_eq!(sweep["job_id"], job["job_id"]);
    for (i, task) in sweep["tasks"].as_array().unwrap().iter().enumerate() {
        assert_eq!(task["task"], i);
        assert_eq!(task["run_id"], runs[i]);
        assert_eq!(task["node"], "localhost");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for run in &runs {
        while run_status(base, run).as_deref() != Some("completed") {
            assert!(
                Instant::now() < deadline,
                "{run}: {:?}",
                run_status(base, run)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let meta =
            std::fs::read_to_string(work.path().join("runs").join(run).join("meta.json")).unwrap();
        assert!(
            meta.contains(sweep_id),
            "{run} is tagged with its sweep: {meta}"
        );
    }
    // Each task trained its own configuration.
    let (_, list) = get(&format!("{base}/api/runs"));
    let list: Value = serde_json::from_str(&list).unwrap();
    let list = list["runs"].as_array().unwrap();
    let mut combos: Vec<(String, u64)> = list
        .iter()
        .filter(|r| runs.contains(&r["run_id"].as_str().unwrap()))
        .map(|r| {
            (
                r["config"]["lr"].to_string(),
                r["config"]["batch_size"].as_u64().unwrap(),
            )
        })
        .collect();
    combos.sort();
    assert_eq!(
        combos,
        [
            ("0.001".into(), 20),
            ("0.001".into(), 40),
            ("0.003".into(), 20),
            ("0.003".into(), 40)
        ]
    );

    // The page shows the four tasks with their Slurm states.
    // KEEP_SCREENSHOTS=DIR keeps the page's screenshot to look at.
    let shot = std::env::var("KEEP_SCREENSHOTS")
        .map(|d| PathBuf::from(d).join("slurm.png"))
        .unwrap_or_else(|_| work.path().join("slurm.png"));
    let seen = run_e2e(
        "slurm.mjs",
        [base.as_str(), sweep_id, shot.to_str().unwrap()],
    );
    eprintln!("page: {seen}");

    // Stop on a Slurm run cancels its task with scancel.
    let (long, _) = submit(
        &slurm,
        work.path(),
        &data,
        &["lr=0.001"],
        &[],
        &["--epochs", "500"],
    );
    let long_id = long["sweep_id"].as_str().unwrap();
    let run = long["runs"][0].as_str().unwrap();
    wait_for(base, long_id, "the long task RUNNING", 60, |s| {
        s["tasks"][0]["state"] == "RUNNING"
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while run_status(base, run).as_deref() != Some("running") {
        assert!(
            Instant::now() < deadline,
            "{run}: {:?}",
            run_status(base, run)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, body) = post(&format!("{base}/api/runs/{run}/stop"), &Value::Null);
    assert_eq!(code, 202, "{body}");
    assert_eq!(
        body["slurm"],
        format!("{}_0", long["job_id"].as_str().unwrap())
    );
    wait_for(base, long_id, "the task CANCELLED", 60, |s| {
        s["tasks"][0]["state"] == "CANCELLED"
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while run_status(base, run).as_deref() == Some("running") {
        assert!(
            Instant::now() < deadline,
            "{run} still running after scancel"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        run_status(base, run).as_deref(),
        Some("stopped"),
        "SIGTERM from scancel ends the run as stopped"
    );

    // What Slurm itself refuses (a partition it does not have) is its
    // message, and no half sweep is left behind.
    let mut cmd = bin();
    cmd.env("SLURM_CONF", &slurm.conf)
        .current_dir(work.path())
        .args([
            "sweep",
            "--grid",
            "lr=0.001,0.01",
            "--executor",
            "slurm",
            "--partition",
            "nosuch",
            "--",
            "--epochs",
            "1",
        ])
        .args(work_dirs(work.path()));
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("sbatch") && stderr(&out).contains("partition"),
        "{}",
        stderr(&out)
    );
    let sweeps = std::fs::read_dir(work.path().join("runs/.slurm"))
        .unwrap()
        .count();
    assert_eq!(sweeps, 2, "only the two submitted sweeps have folders");

    // Bad input names its field.
    let (code, body) = post(
        &format!("{base}/api/slurm/{long_id}/cancel"),
        &serde_json::json!({"task": 9}),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.to_string().contains("task"), "{body}");
    let (code, _) = post(
        &format!("{base}/api/slurm/sweep-nope/cancel"),
        &serde_json::json!({}),
    );
    assert_eq!(code, 404);
    // A body that is not {"task": N} is refused, never read as "the whole job".
    let (code, body) = post(
        &format!("{base}/api/slurm/{long_id}/cancel"),
        &serde_json::json!({"task": "0"}),
    );
    assert_eq!(code, 400, "{body}");
    // The finished sweep has nothing left to cancel, nor has the stopped run.
    let (code, body) = post(
        &format!("{base}/api/slurm/{sweep_id}/cancel"),
        &serde_json::json!({}),
    );
    assert_eq!(code, 409, "{body}");
    let (code, body) = post(&format!("{base}/api/runs/{}/stop", runs[0]), &Value::Null);
    assert_eq!(code, 409, "{body}");
}

#[test]
fn bad_slurm_options_are_refused_before_anything_is_submitted() {
    let work = tempfile::tempdir().unwrap();
    let sweep = |flags: &[&str]| {
        bin()
            .current_dir(work.path())
            .args(["sweep", "--grid", "lr=0.001,0.01", "--executor", "slurm"])
            .args(flags)
            .args(["--", "--epochs", "1"])
            .output()
            .unwrap()
    };
    let out = sweep(&["--gres", "1:gpu"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--gres"), "{}", stderr(&out));
    assert!(!work.path().join("runs/.slurm").exists(), "nothing written");
    let out = sweep(&["--server", "http://127.0.0.1:1"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--server"), "{}", stderr(&out));
}
