//! Slurm as the cluster executor: what a sweep hands to the scheduler most
//! university GPU clusters run, instead of a home-made one.
//!
//! This crate owns the conversation with Slurm's own commands: it writes one
//! `sbatch` job array (one task per configuration, [`write_script`]),
//! submits it ([`submit`]), records which task trains which run beside the
//! runs ([`SweepJob`], `<runs>/.slurm/<sweep id>/job.json`), reads each
//! task's state back ([`query`]: `squeue`, then `sacct` for tasks `squeue`
//! has forgotten) and cancels tasks ([`cancel`]: `scancel`).
//!
//! The runs themselves are ordinary `mnist-monitor train` runs writing into
//! a runs folder on the cluster's shared filesystem, so `serve` follows
//! them like any other run and shows their curves live; it adds the task
//! states read here.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where a sweep's Slurm files live: `<runs>/.slurm/<sweep id>/`.
pub const SLURM_DIR: &str = ".slurm";

/// The record's file name inside a sweep's Slurm folder.
pub const JOB_FILE: &str = "job.json";

/// Something Slurm (or its commands) refused or could not do.
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    /// A `--partition`, `--gres`, `--time`, … value Slurm would not take.
    #[error("--{field}: {message}")]
    Option {
        /// The flag, without dashes (`gres`).
        field: &'static str,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// A Slurm command is not installed here.
    #[error("`{command}` was not found: run this on a Slurm login node (Debian/Ubuntu: apt install slurm-client), or check PATH")]
    Missing {
        /// `sbatch`, `squeue`, `sacct` or `scancel`.
        command: &'static str,
    },
    /// A Slurm command ran and failed.
    #[error("`{command}` failed: {message}")]
    Failed {
        /// The command line, shortened.
        command: String,
        /// Its standard error (or output), trimmed.
        message: String,
    },
    /// Reading or writing the sweep's files.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// The `sbatch` options a sweep passes on, checked before anything is
/// written so that a typo fails here, not in the queue an hour later.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlurmOptions {
    /// `--partition`: one or more partitions, comma-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// `--gres`, e.g. `gpu:1` or `gpu:a100:1`: what each task needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gres: Option<String>,
    /// `--time`, each task's limit in one of Slurm's forms (`30`, `2:00:00`, `1-12`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// `--cpus-per-task`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus_per_task: Option<u32>,
    /// `--mem`, e.g. `8G`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem: Option<String>,
    /// `--account`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// At most this many tasks at once (`--array=0-N%max`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u32>,
}

fn option_error(field: &'static str, message: impl Into<String>) -> SlurmError {
    SlurmError::Option {
        field,
        message: message.into(),
    }
}

/// A name-like value: letters, digits and `_ . - , :` only, 1–200 characters
/// (what partitions, accounts and GRES specs are made of; it also keeps
/// `#SBATCH` lines one line each).
fn check_word(field: &'static str, value: &str, what: &str) -> Result<(), SlurmError> {
    let ok = !value.is_empty()
        && value.len() <= 200
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-,:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(option_error(
            field,
            format!("{value:?} is not {what} (letters, digits and _ . - , : only)"),
        ))
    }
}

/// Slurm's time forms: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`.
fn check_time(value: &str) -> Result<(), SlurmError> {
    let numbers = |s: &str, most: usize| {
        let parts: Vec<&str> = s.split(':').collect();
        parts.len() <= most
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 6 && p.bytes().all(|b| b.is_ascii_digit()))
    };
    let ok = match value.split_once('-') {
        Some((days, rest)) => numbers(days, 1) && numbers(rest, 3),
        None => numbers(value, 3),
    };
    // All zeros is "no limit" to Slurm: say so rather than pass it on.
    let zero = value.bytes().all(|b| matches!(b, b'0' | b':' | b'-'));
    if ok && !zero {
        Ok(())
    } else {
        Err(option_error(
            "time",
            format!("{value:?} is not a Slurm time limit: minutes (30), H:M:S (2:00:00) or D-H[:M[:S]] (1-12)"),
        ))
    }
}

/// `name[:type]:count` (or `name[:type]`), as `--gres` takes it.
fn check_gres(value: &str) -> Result<(), SlurmError> {
    check_word("gres", value, "a GRES spec such as gpu:1")?;
    let first = value.split(',').all(|one| {
        one.split(':')
            .next()
            .is_some_and(|n| n.starts_with(|c: char| c.is_ascii_alphabetic()))
    });
    if first {
        Ok(())
    } else {
        Err(option_error(
            "gres",
            format!("{value:?} is not a GRES spec: name[:type][:count], e.g. gpu:1 or gpu:a100:2"),
        ))
    }
}

impl SlurmOptions {
    /// Checks every value, naming the flag of the first bad one.
    pub fn check(&self) -> Result<(), SlurmError> {
        if let Some(p) = &self.partition {
            check_word("partition", p, "a partition name")?;
        }
        if let Some(g) = &self.gres {
            check_gres(g)?;
        }
        if let Some(t) = &self.time {
            check_time(t)?;
        }
        if let Some(m) = &self.mem {
            let digits = m.trim_end_matches(|c: char| "KMGTkmgt".contains(c));
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || m.len() > 12 {
                return Err(option_error(
                    "mem",
                    format!(
                        "{m:?} is not a memory size: a number with an optional K, M, G or T (8G)"
                    ),
                ));
            }
        }
        if let Some(a) = &self.account {
            check_word("account", a, "an account name")?;
        }
        if self.cpus_per_task == Some(0) {
            return Err(option_error("cpus-per-task", "must be at least 1"));
        }
        if self.max_parallel == Some(0) {
            return Err(option_error("max-parallel", "must be at least 1"));
        }
        Ok(())
    }

    /// The `#SBATCH` lines these options make (without the array and names).
    fn directives(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let mut add = |flag: &str, value: &Option<String>| {
            if let Some(v) = value {
                lines.push(format!("#SBATCH --{flag}={v}"));
            }
        };
        add("partition", &self.partition);
        add("gres", &self.gres);
        add("time", &self.time);
        add("mem", &self.mem);
        add("account", &self.account);
        add("cpus-per-task", &self.cpus_per_task.map(|n| n.to_string()));
        lines
    }
}

/// Everything an array job's script says: its name, where it runs, where
/// each task's output goes, and each task's command line.
#[derive(Debug, Clone)]
pub struct ArrayJob {
    /// The job's name (`--job-name`): the sweep id, so `squeue` shows it.
    pub name: String,
    /// The tasks' working directory (`--chdir`), on the shared filesystem.
    pub chdir: PathBuf,
    /// Each task's output file; `%a` becomes the task index.
    pub output: PathBuf,
    /// The options passed on.
    pub options: SlurmOptions,
    /// Task `i` runs `tasks[i]` (a program and its arguments).
    pub tasks: Vec<Vec<String>>,
}

/// A path `#SBATCH` can hold: no whitespace, quotes or backslashes (a
/// backslash turns Slurm's `%` patterns off), and a literal `%` doubled so
/// that Slurm does not read `%j` in a folder's name as the job id.
fn sbatch_path(field: &'static str, path: &Path) -> Result<String, SlurmError> {
    let s = path.to_string_lossy();
    if s.chars()
        .any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == '\\')
    {
        return Err(option_error(
            field,
            format!("{s:?} has a space, a quote or a backslash, which an #SBATCH line cannot hold: use a folder without one"),
        ));
    }
    Ok(s.replace('%', "%%"))
}

/// The job array's batch script: `#SBATCH` lines, then one `case` branch
/// per task that `exec`s its command line.
pub fn write_script(job: &ArrayJob) -> Result<String, SlurmError> {
    job.options.check()?;
    check_word("job-name", &job.name, "a job name")?;
    if job.tasks.is_empty() {
        return Err(option_error("array", "a sweep needs at least one task"));
    }
    let last = job.tasks.len() - 1;
    let throttle = job
        .options
        .max_parallel
        .map_or(String::new(), |n| format!("%{n}"));
    let mut s = String::from("#!/bin/bash\n");
    s.push_str(&format!(
        "# Written by mnist-monitor for sweep {}: one task per configuration.\n# Resubmit with: sbatch <this file>\n",
        job.name
    ));
    s.push_str(&format!("#SBATCH --job-name={}\n", job.name));
    s.push_str(&format!("#SBATCH --array=0-{last}{throttle}\n"));
    s.push_str(&format!(
        "#SBATCH --chdir={}\n",
        sbatch_path("chdir", &job.chdir)?
    ));
    // `%a` (the task's index) is the one pattern the output file keeps.
    let output = sbatch_path("output", &job.output)?.replace("%%a", "%a");
    s.push_str(&format!("#SBATCH --output={output}\n"));
    for line in job.options.directives() {
        s.push_str(&line);
        s.push('\n');
    }
    s.push_str("set -u\ncase \"${SLURM_ARRAY_TASK_ID:-}\" in\n");
    for (i, argv) in job.tasks.iter().enumerate() {
        // The quoting remote commands over SSH use: the same POSIX shell rules.
        let line: Vec<String> = argv
            .iter()
            .map(|a| mnist_remote::exec::shell_quote(a))
            .collect();
        s.push_str(&format!("  {i}) exec {} ;;\n", line.join(" ")));
    }
    s.push_str("  *) echo \"task ${SLURM_ARRAY_TASK_ID:-(none)} is not part of this sweep\" >&2; exit 2 ;;\nesac\n");
    Ok(s)
}

/// Which run each task of a submitted sweep trains: `<runs>/.slurm/<sweep id>/job.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepJob {
    /// The sweep id (also the job's name).
    pub sweep_id: String,
    /// Slurm's id of the array job.
    pub job_id: String,
    /// The cluster, when `sbatch` named one (multi-cluster setups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// When it was submitted, seconds since the Unix epoch.
    pub submitted_at: f64,
    /// The batch script submitted.
    pub script: PathBuf,
    /// The options it was submitted with.
    pub options: SlurmOptions,
    /// Task `i` trains `runs[i]`.
    pub runs: Vec<String>,
}

/// Largest `job.json` read: a record is a few hundred bytes per task.
pub const MAX_RECORD_BYTES: u64 = 4 << 20;

/// Most tasks one record may name.
pub const MAX_TASKS: usize = 10_000;

/// A sweep's Slurm folder: `<runs>/.slurm/<sweep id>`.
pub fn sweep_dir(runs: &Path, sweep_id: &str) -> PathBuf {
    runs.join(SLURM_DIR).join(sweep_id)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SlurmError + '_ {
    move |source| SlurmError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl SweepJob {
    /// Writes the record atomically into its sweep's folder under `runs`.
    pub fn save(&self, runs: &Path) -> Result<PathBuf, SlurmError> {
        let dir = sweep_dir(runs, &self.sweep_id);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = dir.join(JOB_FILE);
        let tmp = dir.join(format!(".{JOB_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self).expect("a sweep job serialises");
        std::fs::write(&tmp, text).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        Ok(path)
    }

    /// Every sweep submitted into `runs`, oldest first. A record that is
    /// not a plain file (a FIFO would block the reader), is larger than
    /// [`MAX_RECORD_BYTES`], does not parse, or names no task, too many or
    /// a job id that is not a number, is skipped.
    pub fn load_all(runs: &Path) -> Vec<SweepJob> {
        let Ok(dirs) = std::fs::read_dir(runs.join(SLURM_DIR)) else {
            return Vec::new();
        };
        let mut jobs: Vec<SweepJob> = dirs
            .flatten()
            .filter_map(|d| Self::load(&d.path().join(JOB_FILE)))
            .collect();
        jobs.sort_by(|a, b| a.submitted_at.total_cmp(&b.submitted_at));
        jobs
    }

    fn load(path: &Path) -> Option<SweepJob> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        if !meta.file_type().is_file() || meta.len() > MAX_RECORD_BYTES {
            return None;
        }
        let job: SweepJob = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        let sane = !job.runs.is_empty()
            && job.runs.len() <= MAX_TASKS
            && !job.job_id.is_empty()
            && job.job_id.bytes().all(|b| b.is_ascii_digit());
        sane.then_some(job)
    }

    /// The task that trains `run_id`.
    pub fn task_of(&self, run_id: &str) -> Option<u32> {
        self.runs.iter().position(|r| r == run_id).map(|i| i as u32)
    }
}

/// Runs a Slurm command, turning "not installed" and a non-zero exit into errors.
fn slurm_command(program: &'static str, args: &[String]) -> Result<String, SlurmError> {
    let output = Command::new(program).args(args).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            SlurmError::Missing { command: program }
        } else {
            SlurmError::Failed {
                command: program.to_string(),
                message: e.to_string(),
            }
        }
    })?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let message = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr.into_owned()
    };
    Err(SlurmError::Failed {
        command: format!("{program} {}", args.join(" "))
            .chars()
            .take(200)
            .collect(),
        message: message.trim().chars().take(500).collect(),
    })
}

/// What `sbatch --parsable` answered: the job id, and the cluster on multi-cluster setups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The array job's id.
    pub job_id: String,
    /// The cluster, when named.
    pub cluster: Option<String>,
}

/// Parses `sbatch --parsable`'s answer: `123` or `123;cluster`.
pub fn parse_submitted(answer: &str) -> Option<Submitted> {
    let line = answer.lines().rev().find(|l| !l.trim().is_empty())?.trim();
    let (id, cluster) = match line.split_once(';') {
        Some((id, c)) => (id, Some(c.to_string())),
        None => (line, None),
    };
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then(|| Submitted {
        job_id: id.to_string(),
        cluster,
    })
}

/// Submits a batch script with `sbatch`.
pub fn submit(script: &Path) -> Result<Submitted, SlurmError> {
    let answer = slurm_command(
        "sbatch",
        &["--parsable".into(), script.display().to_string()],
    )?;
    parse_submitted(&answer).ok_or_else(|| SlurmError::Failed {
        command: "sbatch --parsable".into(),
        message: format!("answered {:?}, not a job id", answer.trim()),
    })
}

/// One array task as Slurm reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskState {
    /// The array job's id.
    pub job_id: String,
    /// The task's index in the array.
    pub task: u32,
    /// Slurm's state word: `PENDING`, `RUNNING`, `COMPLETED`, `FAILED`, `CANCELLED`, `TIMEOUT`, …
    pub state: String,
    /// Why it waits (`Resources`, `Priority`, …), while pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The node it runs or ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Time used, as Slurm prints it (`1:02:03`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed: Option<String>,
    /// The job's name (a sweep's id): job ids restart on a new or wiped
    /// cluster, so a task is ours only when both match.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// A state after which the task will not change again.
pub fn is_final(state: &str) -> bool {
    !matches!(
        state,
        "PENDING"
            | "RUNNING"
            | "CONFIGURING"
            | "COMPLETING"
            | "SUSPENDED"
            | "REQUEUED"
            | "RESIZING"
            | "SIGNALING"
            | "STAGE_OUT"
            | "STOPPED"
            | "RESV_DEL_HOLD"
            | "REQUEUE_FED"
            | "REQUEUE_HOLD"
    )
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty() && s != "None" && s != "(null)" && s != "N/A").then(|| s.to_string())
}

/// The `squeue` format [`parse_squeue`] reads: array job id, task, state,
/// reason, nodes, time used, job name.
pub const SQUEUE_FORMAT: &str = "%F|%K|%T|%r|%N|%M|%j";

/// Parses `squeue -h -r -o` [`SQUEUE_FORMAT`]; rows that are not array tasks are skipped.
pub fn parse_squeue(text: &str) -> Vec<TaskState> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.trim().split('|').collect();
            let [job, task, state, reason, node, elapsed, name] = f[..] else {
                return None;
            };
            Some(TaskState {
                job_id: job.trim().to_string(),
                task: task.trim().parse().ok()?,
                state: state.trim().to_string(),
                reason: non_empty(reason),
                node: non_empty(node),
                elapsed: non_empty(elapsed),
                name: name.trim().to_string(),
            })
        })
        .collect()
}

/// Parses `sacct -n -P -X -o JobID,State,NodeList,Elapsed,JobName`:
/// `123_4|COMPLETED|node1|00:01:02|sweep-…`.
/// `CANCELLED by 0` becomes `CANCELLED`; rows that are not single array tasks are skipped.
pub fn parse_sacct(text: &str) -> Vec<TaskState> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.trim().split('|').collect();
            let [id, state, node, elapsed, name] = f[..] else {
                return None;
            };
            let (job, task) = id.split_once('_')?;
            Some(TaskState {
                job_id: job.to_string(),
                task: task.parse().ok()?,
                state: state.split_whitespace().next()?.to_string(),
                reason: None,
                node: non_empty(node).filter(|n| n != "None assigned"),
                elapsed: non_empty(elapsed),
                name: name.trim().to_string(),
            })
        })
        .collect()
}

/// Job names asked about in one `squeue`: a command line has a length limit.
const NAMES_PER_QUERY: usize = 200;

/// The state of every task of these sweeps' jobs that Slurm still knows:
/// `squeue` for the live ones (by job name, so an id Slurm has purged
/// breaks nothing), then `sacct` for tasks `squeue` no longer lists, where
/// accounting is on. A task is ours when its job id and its job's name (the
/// sweep id) both match. `Err` only when `squeue` itself cannot run.
pub fn query(jobs: &[&SweepJob]) -> Result<Vec<TaskState>, SlurmError> {
    let ours = |t: &TaskState| {
        jobs.iter()
            .any(|j| j.job_id == t.job_id && j.sweep_id == t.name)
    };
    let mut states = Vec::new();
    for chunk in jobs.chunks(NAMES_PER_QUERY) {
        let names: Vec<&str> = chunk.iter().map(|j| j.sweep_id.as_str()).collect();
        let args = [
            "-h".into(),
            "-r".into(),
            "-t".into(),
            "all".into(),
            format!("--name={}", names.join(",")),
            "-o".into(),
            SQUEUE_FORMAT.into(),
        ];
        let text = slurm_command("squeue", &args)?;
        states.extend(parse_squeue(&text).into_iter().filter(ours));
    }
    let forgotten: Vec<&str> = jobs
        .iter()
        .filter(|j| {
            (0..j.runs.len() as u32)
                .any(|i| !states.iter().any(|s| s.job_id == j.job_id && s.task == i))
        })
        .map(|j| j.job_id.as_str())
        .collect();
    for chunk in forgotten.chunks(NAMES_PER_QUERY) {
        let args = [
            "-n".into(),
            "-P".into(),
            "-X".into(),
            "-j".into(),
            chunk.join(","),
            "-o".into(),
            "JobID,State,NodeList,Elapsed,JobName".into(),
        ];
        // Accounting is optional in Slurm; without it a finished task's
        // state is what its run's log says.
        let Ok(text) = slurm_command("sacct", &args) else {
            break;
        };
        for t in parse_sacct(&text).into_iter().filter(ours) {
            if !states
                .iter()
                .any(|s| s.job_id == t.job_id && s.task == t.task)
            {
                states.push(t);
            }
        }
    }
    Ok(states)
}

/// Cancels a whole array job, or one of its tasks, with `scancel`, only
/// while the job still has the sweep's name (`--name`: a reused job id,
/// someone else's job now, is left alone).
pub fn cancel(job_id: &str, name: &str, task: Option<u32>) -> Result<(), SlurmError> {
    if job_id.is_empty() || !job_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(option_error(
            "job",
            format!("{job_id:?} is not a Slurm job id"),
        ));
    }
    let target = match task {
        Some(t) => format!("{job_id}_{t}"),
        None => job_id.to_string(),
    };
    check_word("job-name", name, "a job name")?;
    slurm_command("scancel", &[format!("--name={name}"), target]).map(|_| ())
}

#[cfg(test)]
mod tests;
