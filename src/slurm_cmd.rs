//! `mnist-monitor sweep --executor slurm`: the sweep as one Slurm job array,
//! a task per configuration, each an ordinary `mnist-monitor train` writing
//! into the runs folder on the shared filesystem (so a `serve` on the
//! login node, or one tunnelled to, shows them live with their task states).
//!
//! Files, in `<runs>/.slurm/<sweep id>/`: `<run id>.toml` (each task's
//! configuration), `job.sbatch` (the script, resubmittable by hand),
//! `task-N.log` (each task's output) and `job.json` (the job id and which
//! task trains which run, for `serve`).

use crate::cli::{SlurmFlags, TrainArgs};
use anyhow::Context;
use mnist_slurm::{ArrayJob, SlurmOptions, SweepJob};
use mnist_train::TrainConfig;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

impl SlurmFlags {
    /// The flags as the options the job is submitted with.
    pub fn options(&self) -> SlurmOptions {
        SlurmOptions {
            partition: self.partition.clone(),
            gres: self.gres.clone(),
            time: self.time.clone(),
            cpus_per_task: self.cpus_per_task,
            mem: self.mem.clone(),
            account: self.account.clone(),
            max_parallel: self.max_parallel,
        }
    }
}

/// Writes and submits the job array; returns once Slurm has accepted it.
/// Whatever fails, nothing is left behind: no folder, no half a sweep.
pub fn submit(
    flags: &SlurmFlags,
    train: &TrainArgs,
    train_flags: &[String],
    configs: Vec<TrainConfig>,
) -> anyhow::Result<ExitCode> {
    let options = flags.options();
    options.check()?;
    if options.gres.is_some() && configs.iter().any(|c| c.device.is_some()) {
        eprintln!("warning: --gres gives each task its own GPU as cuda:0 (CUDA_VISIBLE_DEVICES); a --device index other than 0 will not exist in the tasks");
    }
    let sweep_id = mnist_sweep::new_sweep_id();
    let cwd = std::env::current_dir().context("the current folder")?;
    let runs = absolute(&cwd, train.dirs.run_dir());
    let slurm_dir = runs.join(mnist_slurm::SLURM_DIR);
    let fresh_slurm_dir = !slurm_dir.exists();
    let dir = mnist_slurm::sweep_dir(&runs, &sweep_id);
    let written = write_and_submit(&dir, &cwd, &sweep_id, options, train_flags, &configs);
    let record = match written {
        Ok(record) => record,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            if fresh_slurm_dir {
                let _ = std::fs::remove_dir(&slurm_dir);
            }
            return Err(e);
        }
    };
    record.save(&runs)?;
    report(&record, &runs);
    if flags.wait {
        return wait(&record);
    }
    Ok(ExitCode::SUCCESS)
}

/// How often `--wait` asks Slurm.
const WAIT_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// A task Slurm has not listed this long after submission has ended and
/// been purged (or never existed).
const UNLISTED_S: u64 = 30;

/// `--wait`: each task's state as it changes, until every task has ended.
fn wait(record: &SweepJob) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let tasks = record.runs.len() as u32;
    let mut last: std::collections::HashMap<u32, String> = Default::default();
    loop {
        for t in mnist_slurm::query(&[record])? {
            if last.get(&t.task) != Some(&t.state) {
                eprintln!(
                    "{}_{} {}: {}{}",
                    record.job_id,
                    t.task,
                    record.runs[t.task as usize],
                    t.state,
                    t.node
                        .as_deref()
                        .map_or(String::new(), |n| format!(" on {n}"))
                );
                last.insert(t.task, t.state);
            }
        }
        let purged = started.elapsed().as_secs() > UNLISTED_S;
        let ended = |t: u32| last.get(&t).map_or(purged, |s| mnist_slurm::is_final(s));
        if (0..tasks).all(ended) {
            let completed =
                (0..tasks).all(|t| last.get(&t).map(String::as_str) == Some("COMPLETED"));
            eprintln!(
                "{}: every task has ended{}",
                record.sweep_id,
                if completed { ", all completed" } else { "" }
            );
            return Ok(if completed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        std::thread::sleep(WAIT_POLL);
    }
}

/// The sweep's files in `dir`, then `sbatch`: the record to save.
fn write_and_submit(
    dir: &Path,
    cwd: &Path,
    sweep_id: &str,
    options: SlurmOptions,
    train_flags: &[String],
    configs: &[TrainConfig],
) -> anyhow::Result<SweepJob> {
    std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    let program = std::env::current_exe().context("this program's path")?;
    let forwarded = without_config_flag(train_flags);
    let mut runs_of_tasks = Vec::new();
    let mut tasks = Vec::new();
    for (i, config) in configs.iter().enumerate() {
        let run_id = format!("{sweep_id}-{:02}", i + 1);
        let file = dir.join(format!("{run_id}.toml"));
        let text = toml::to_string(config).context("a configuration as TOML")?;
        std::fs::write(&file, text).with_context(|| file.display().to_string())?;
        tasks.push(task_command(&program, &file, &run_id, sweep_id, &forwarded));
        runs_of_tasks.push(run_id);
    }
    let job = ArrayJob {
        name: sweep_id.to_string(),
        chdir: cwd.to_path_buf(),
        output: dir.join("task-%a.log"),
        options: options.clone(),
        tasks,
    };
    let script_path = dir.join("job.sbatch");
    let script = mnist_slurm::write_script(&job)?;
    std::fs::write(&script_path, script).with_context(|| script_path.display().to_string())?;
    let submitted = mnist_slurm::submit(&script_path)?;
    Ok(SweepJob {
        sweep_id: sweep_id.to_string(),
        job_id: submitted.job_id,
        cluster: submitted.cluster,
        submitted_at: mnist_events::now_ms() as f64 / 1000.0,
        script: script_path,
        options,
        runs: runs_of_tasks,
    })
}

/// One task's command line: `train` with its configuration file, run id
/// and sweep tag, and the sweep's other train flags.
fn task_command(
    program: &Path,
    config: &Path,
    run_id: &str,
    sweep_id: &str,
    forwarded: &[String],
) -> Vec<String> {
    let mut argv = vec![
        program.display().to_string(),
        "train".into(),
        "--config".into(),
        config.display().to_string(),
        "--run-id".into(),
        run_id.into(),
        "--sweep".into(),
        sweep_id.into(),
    ];
    argv.extend(forwarded.iter().cloned());
    argv
}

/// The train flags without `--config FILE` (each task's file holds it, merged).
fn without_config_flag(flags: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip_next = false;
    for flag in flags {
        if std::mem::take(&mut skip_next) {
            continue;
        }
        if flag == "--config" {
            skip_next = true;
        } else if !flag.starts_with("--config=") {
            out.push(flag.clone());
        }
    }
    out
}

fn absolute(cwd: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    }
}

/// Tells the user what was submitted, where it writes and how to watch and cancel it.
fn report(record: &SweepJob, runs: &Path) {
    eprintln!(
        "{}: Slurm job {} submitted, {} tasks (one per configuration)",
        record.sweep_id,
        record.job_id,
        record.runs.len()
    );
    eprintln!("  script:  {}", record.script.display());
    eprintln!("  runs:    {}/{}-NN", runs.display(), record.sweep_id);
    eprintln!(
        "  watch:   mnist-monitor serve --runs-dir {}   then /?sweep={}",
        runs.display(),
        record.sweep_id
    );
    eprintln!("  cancel:  scancel {} (or Stop on the page)", record.job_id);
    let submitted = Submitted {
        sweep_id: &record.sweep_id,
        job_id: &record.job_id,
        runs: &record.runs,
        script: &record.script,
    };
    println!("{}", serde_json::to_string(&submitted).expect("serialises"));
}

/// What `sweep --executor slurm` prints on stdout once Slurm took the job.
#[derive(serde::Serialize)]
struct Submitted<'a> {
    /// The sweep id (the job's name, each run's tag).
    sweep_id: &'a str,
    /// Slurm's id of the array job.
    job_id: &'a str,
    /// Task `i` trains `runs[i]`.
    runs: &'a [String],
    /// The batch script submitted.
    script: &'a Path,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_flag_is_dropped_in_both_spellings() {
        let flags: Vec<String> = [
            "--epochs",
            "1",
            "--config",
            "a.toml",
            "--config=b.toml",
            "--quiet",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(without_config_flag(&flags), ["--epochs", "1", "--quiet"]);
    }
}
