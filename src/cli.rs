//! Command-line definitions.

use clap::builder::TypedValueParser;
use clap::{Arg, ArgAction, Args, Parser, Subcommand};
use mnist_train::config::{Field, FieldKind, FIELDS};
use mnist_train::{FieldError, TrainConfig};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "mnist-monitor",
    version,
    about = "Train a four-conv CNN on MNIST with Burn and watch it live"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Train the network headless, with a progress bar (or plain lines when not on a terminal).
    Train(Box<TrainArgs>),
    /// Serve the live web monitor: configure, start and watch runs in the browser.
    Serve(ServeArgs),
    /// Compile and autotune the GPU kernels of a configuration (the train flags) once, so
    /// that its runs start in seconds; a no-op worth seconds on the CPU.
    Warmup(Box<TrainArgs>),
    /// List the compute backends of this build and whether a device answers.
    Backends {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Train on, or watch, a remote host over SSH through an encrypted tunnel.
    #[command(subcommand)]
    Remote(RemoteCommand),
    /// Classify PNG pictures of digits with a trained checkpoint (any size or colour; centred the MNIST way).
    Predict(PredictArgs),
    /// The machine now: CPU, memory, disks, network and NVIDIA GPUs with their users (gpustat-style).
    Stats(StatsArgs),
    /// Train every combination of a grid of settings (or N drawn at random): one after another
    /// here, queued on a running `serve` (--server), or as a Slurm job array (--executor slurm);
    /// the runs share a sweep id (a tag).
    Sweep(SweepArgs),
    /// Serve only /metrics (this machine and the runs in --run-dir) for a Prometheus to scrape: one per GPU host.
    Exporter(ExporterArgs),
    /// Clean up old runs by a policy: the best K of each sweep, failed and stopped runs after N
    /// days, the trash after N days, all but the best checkpoint. Prints what would go and the
    /// disk it frees; --yes does it. Runs tagged `keep`, and runs that train, are never touched.
    Prune(PruneArgs),
    /// Write a run's trained model for other tools: safetensors in PyTorch's names and layout
    /// (`load_state_dict` of the same network in PyTorch predicts the same).
    Export(ExportArgs),
    /// Bring the runs folder's index up to date (or rebuild it from the logs with --rebuild):
    /// the cache `serve` lists, filters and compares runs from.
    Index(IndexArgs),
    /// Write a run as one self-contained HTML file (curves, evaluation, config, provenance; opens offline).
    Report(ReportArgs),
    /// Steer a run while it trains: pause, resume, a new learning rate, an evaluation or a
    /// checkpoint now, stop after the epoch (applied at its next batch boundary).
    Control(ControlArgs),
    /// Print the model's layers, output shapes and parameter counts.
    Model {
        /// Output channels of the four convolutions (each 1-512).
        #[arg(long, value_parser = parse_kernels, default_value = "32,64,64,64")]
        kernels: [usize; 4],
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum RemoteCommand {
    /// Start `mnist-monitor train --serve` on HOST and open its page here through an SSH tunnel.
    Train(RemoteTrainArgs),
    /// Reattach to a run (or server) on HOST through an SSH tunnel; reconnects when SSH drops.
    Watch(RemoteWatchArgs),
}

/// Connecting to the host.
#[derive(Args, Clone)]
pub struct SshArgs {
    /// user@host[:port] or a Host alias from ~/.ssh/config.
    pub host: String,
    /// Private key file to try first (ed25519, ECDSA or RSA; may repeat).
    #[arg(short = 'i', long = "identity", value_name = "KEYFILE")]
    pub identity: Vec<PathBuf>,
    /// Trust a host seen for the first time and record its key in known_hosts.
    #[arg(long)]
    pub accept_new_host_key: bool,
    /// known_hosts file (default ~/.ssh/known_hosts).
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// ssh config file (default ~/.ssh/config).
    #[arg(short = 'F', long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// mnist-monitor on the host: a path, or a name on its PATH.
    #[arg(long, default_value = "mnist-monitor", value_name = "PATH")]
    pub remote_bin: String,
    /// Working directory on the host (relative to the remote home): runs/, checkpoints/, datasets/, remote/.
    #[arg(long, default_value = "mnist-monitor", value_name = "DIR")]
    pub remote_dir: String,
    /// Local port of the tunnel (0 picks a free one; always on 127.0.0.1).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub local_port: u16,
}

#[derive(Args)]
pub struct RemoteTrainArgs {
    #[command(flatten)]
    pub ssh: SshArgs,
    /// Leave the run going when this command ends (its id and port are kept under --remote-dir/remote/).
    #[arg(long)]
    pub detach: bool,
    /// If --remote-bin is missing, copy this binary there (same OS and architecture only).
    #[arg(long)]
    pub upload: bool,
    /// `train` flags for the remote run, after `--`.
    #[arg(last = true, value_name = "TRAIN ARGS")]
    pub train_args: Vec<String>,
}

#[derive(Args)]
pub struct RemoteWatchArgs {
    #[command(flatten)]
    pub ssh: SshArgs,
    /// The run to watch (default: the newest started by `remote train`).
    #[arg(long, value_name = "RUN_ID", conflicts_with = "port")]
    pub run: Option<String>,
    /// Watch whatever monitor listens on this port of the host's loopback (e.g. a `serve` there).
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
}

#[derive(Args)]
pub struct PredictArgs {
    /// An epoch directory (checkpoints/RUN/epoch-NNNN) or a run's checkpoint directory (its best epoch is used).
    #[arg(long, value_name = "PATH")]
    pub checkpoint: PathBuf,
    /// One JSON object per image on stdout.
    #[arg(long)]
    pub json: bool,
    /// PNG files.
    #[arg(required = true, value_name = "IMAGE.png")]
    pub images: Vec<PathBuf>,
}

#[derive(Args)]
pub struct ExporterArgs {
    /// Address to listen on. Anything but loopback requires a token.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub bind: std::net::SocketAddr,
    #[command(flatten)]
    pub access: AccessArgs,
    /// The runs whose training it exports (followed as they are written).
    #[command(flatten)]
    pub run: RunDir,
    /// Seconds between hardware samples (0.2-3600).
    #[arg(long, default_value_t = 1.0, value_parser = parse_hw_interval, value_name = "SECS")]
    pub hw_interval: f64,
}

#[derive(Args)]
pub struct SweepArgs {
    /// A swept field and its values, FIELD=V1,V2,… (kernels: 16,32,32,32:32,64,64,64); repeat for more fields.
    #[arg(long = "grid", value_name = "FIELD=VALUES", required = true)]
    pub grid: Vec<String>,
    /// Train N of the grid's combinations drawn at random (no repeats) instead of all of them.
    #[arg(long, value_name = "N")]
    pub random: Option<usize>,
    /// Seed of --random's draw.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub random_seed: u64,
    /// Queue the runs on the `serve` at URL (its page and queue show them) instead of training here.
    #[arg(long, value_name = "URL", conflicts_with = "executor")]
    pub server: Option<String>,
    /// Where the runs train: here, one after another; or `slurm`: one sbatch job array, a task
    /// per configuration, writing into the runs folder (on the cluster's shared filesystem).
    #[arg(long, value_enum, default_value = "here")]
    pub executor: Executor,
    /// The Slurm job's options (with --executor slurm).
    #[command(flatten)]
    pub slurm: SlurmFlags,
    /// With --server: the server's token (or MNIST_MONITOR_TOKEN).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// `train` flags for every run, after `--`: the base configuration (any field not swept), the data and run folders, the webhook.
    #[arg(last = true, value_name = "TRAIN FLAGS")]
    pub train: Vec<String>,
}

/// Where a sweep's runs train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Executor {
    /// In this process, one after another.
    Here,
    /// As a Slurm job array (sbatch), one task per configuration.
    Slurm,
}

/// `sbatch` options for `sweep --executor slurm`, checked before anything is submitted.
#[derive(Args, Clone, Debug)]
pub struct SlurmFlags {
    /// Slurm partition(s) to run in.
    #[arg(long, value_name = "P", help_heading = "Slurm (--executor slurm)")]
    pub partition: Option<String>,
    /// Generic resources per task, e.g. gpu:1 (one GPU each; Slurm sets CUDA_VISIBLE_DEVICES).
    #[arg(long, value_name = "SPEC", help_heading = "Slurm (--executor slurm)")]
    pub gres: Option<String>,
    /// Each task's time limit: minutes, H:M:S or D-H[:M[:S]].
    #[arg(long, value_name = "LIMIT", help_heading = "Slurm (--executor slurm)")]
    pub time: Option<String>,
    /// CPUs per task.
    #[arg(long, value_name = "N", help_heading = "Slurm (--executor slurm)")]
    pub cpus_per_task: Option<u32>,
    /// Memory for each task (sbatch --mem: each array task is a job of its own), e.g. 16G.
    #[arg(long, value_name = "SIZE", help_heading = "Slurm (--executor slurm)")]
    pub mem: Option<String>,
    /// Account to charge.
    #[arg(long, value_name = "NAME", help_heading = "Slurm (--executor slurm)")]
    pub account: Option<String>,
    /// Run at most N tasks at once (--array=0-K%N).
    #[arg(long, value_name = "N", help_heading = "Slurm (--executor slurm)")]
    pub max_parallel: Option<u32>,
    /// After submitting, print each task's state as it changes until every task has ended;
    /// exit 0 when all completed, 1 otherwise (Ctrl-C stops watching, not the job).
    #[arg(long, help_heading = "Slurm (--executor slurm)")]
    pub wait: bool,
}

impl SlurmFlags {
    /// Whether any Slurm option was given.
    pub fn any(&self) -> bool {
        self.partition.is_some()
            || self.gres.is_some()
            || self.time.is_some()
            || self.cpus_per_task.is_some()
            || self.mem.is_some()
            || self.account.is_some()
            || self.max_parallel.is_some()
            || self.wait
    }
}

/// A sweep id as `train --sweep` takes it: what `sweep` makes (letters,
/// digits, `-` and `_`), at most 64 characters, so it is a safe tag.
fn parse_sweep_id(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(s.to_string())
    } else {
        Err("a sweep id: 1-64 letters, digits, - or _".into())
    }
}

#[derive(Args)]
pub struct ReportArgs {
    /// The run's id (its folder in --run-dir).
    pub run_id: String,
    /// The file to write (default RUN_ID-report.html; - for standard output).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunDir,
}

/// What `prune` (and `serve --prune-every`) lets go.
#[derive(Args, Clone, Default)]
pub struct PolicyArgs {
    /// Keep the best K runs of each sweep by --metric; the others go to the trash.
    #[arg(long, value_name = "K")]
    pub keep_best: Option<usize>,
    /// What best means for --keep-best: acc, val_acc, test_acc, f1 (higher is better), loss (lower), steps.
    #[arg(long, value_name = "KEY")]
    pub metric: Option<String>,
    /// Move failed and stopped runs that ended more than DAYS ago to the trash.
    #[arg(long, value_name = "DAYS")]
    pub trash_after_days: Option<f64>,
    /// Delete runs that have been in the trash for more than DAYS, for good.
    #[arg(long, value_name = "DAYS")]
    pub empty_trash_after_days: Option<f64>,
    /// Keep only the best checkpoint of completed runs.
    #[arg(long)]
    pub best_checkpoint_only: bool,
}

impl PolicyArgs {
    /// The policy, checked; an error names the flag.
    pub fn policy(&self) -> Result<mnist_server::prune::Policy, String> {
        let p = mnist_server::prune::Policy {
            keep_best: self.keep_best,
            metric: self.metric.clone(),
            trash_after_days: self.trash_after_days,
            empty_trash_after_days: self.empty_trash_after_days,
            best_checkpoint_only: self.best_checkpoint_only,
        };
        p.check().map_err(|e| match e.field {
            "policy" => "nothing to prune: give --keep-best, --trash-after-days, --empty-trash-after-days or --best-checkpoint-only".to_string(),
            field => format!("--{}: {}", field.replace('_', "-"), e.message),
        })?;
        Ok(p)
    }

    /// Whether any policy flag was given.
    pub fn any(&self) -> bool {
        self.keep_best.is_some()
            || self.metric.is_some()
            || self.trash_after_days.is_some()
            || self.empty_trash_after_days.is_some()
            || self.best_checkpoint_only
    }
}

#[derive(Args)]
pub struct PruneArgs {
    /// The runs folder (its trash is .trash inside it) and the checkpoints.
    #[command(flatten)]
    pub runs: RunDirs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Do it (without it, only say what would go).
    #[arg(long)]
    pub yes: bool,
    /// Print the plan (and what was done) as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ExportArgs {
    /// The run whose model to write (its folder in --checkpoint-dir).
    pub run_id: String,
    /// The epoch's checkpoint (default: the run's best, else its newest).
    #[arg(long, value_name = "N")]
    pub epoch: Option<usize>,
    /// The file's format.
    #[arg(long, value_enum, default_value = "safetensors")]
    pub format: ExportFormat,
    /// The file to write.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    #[command(flatten)]
    pub checkpoint: CheckpointDir,
}

/// What `export` writes.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    /// safetensors, PyTorch's names and layout, the normalisation in its metadata.
    Safetensors,
    /// ONNX (opset 13) for onnxruntime: input [N,1,28,28] normalised, outputs logits and probabilities.
    Onnx,
}

impl From<ExportFormat> for mnist_train::export::Format {
    fn from(f: ExportFormat) -> Self {
        match f {
            ExportFormat::Safetensors => Self::Safetensors,
            ExportFormat::Onnx => Self::Onnx,
        }
    }
}

#[derive(Args)]
pub struct IndexArgs {
    /// The runs folder (the index lives in its .index folder) and the
    /// checkpoints (their disk use is indexed).
    #[command(flatten)]
    pub runs: RunDirs,
    /// Delete the index first and read every log again.
    #[arg(long)]
    pub rebuild: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct StatsArgs {
    /// Print one JSON snapshot (with --watch: one JSON object per line).
    #[arg(long)]
    pub json: bool,
    /// Keep printing a fresh snapshot every --interval seconds until Ctrl-C.
    #[arg(long)]
    pub watch: bool,
    /// Seconds between snapshots with --watch (0.2-3600).
    #[arg(long, default_value_t = 1.0, value_parser = parse_stats_interval)]
    pub interval: f64,
    /// Directories whose disk's free space to report.
    #[arg(long, default_values = ["runs", "checkpoints"])]
    pub watch_dir: Vec<PathBuf>,
}

/// Hardware sampling and alerts, shared by `train` and `serve`.
#[derive(Args, Clone)]
pub struct WatchArgs {
    /// Seconds between hardware samples (0 turns sampling off, else 0.2-3600).
    #[arg(long, default_value_t = 1.0, value_parser = parse_hw_interval, value_name = "SECS")]
    pub hw_interval: f64,
    /// POST every alert and the run's end (completed, failed, stopped) to this URL.
    #[arg(long, value_name = "URL")]
    pub alert_webhook: Option<String>,
    /// The webhook's body: slack, discord, json, or auto (Slack for hooks.slack.com, Discord for discord.com/api/webhooks, else JSON).
    #[arg(long, default_value = "auto", value_name = "FORMAT")]
    pub webhook_format: mnist_alerts::WebhookFormat,
    /// Alert (and notify) when a training run makes no progress for this many minutes (0 turns it off; 0.5-1440).
    #[arg(long, default_value_t = 10.0, value_parser = parse_stall_minutes, value_name = "MIN")]
    pub stall_minutes: f64,
    /// Stop a run (as failed) when its loss becomes NaN or infinite.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "true|false")]
    pub stop_on_nan: bool,
}

fn parse_stall_minutes(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of minutes"))?;
    if v == 0.0 || (0.5..=1440.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "{v} is out of range: 0 (off) or 0.5..=1440 minutes"
        ))
    }
}

impl WatchArgs {
    /// `--alert-webhook` with its format, checked (an http(s) URL).
    pub fn webhook(&self) -> Result<Option<mnist_alerts::Webhook>, mnist_alerts::WebhookError> {
        self.alert_webhook
            .as_deref()
            .map(|url| mnist_alerts::Webhook::new(url, self.webhook_format))
            .transpose()
    }

    /// The alert rules, with `--stall-minutes`.
    pub fn rules(&self) -> mnist_alerts::AlertRules {
        mnist_alerts::AlertRules {
            stall_seconds: self.stall_minutes * 60.0,
            ..Default::default()
        }
    }

    /// Starts the sampler, or `None` with `--hw-interval 0`.
    pub fn monitor(&self, watch: Vec<PathBuf>) -> Option<std::sync::Arc<mnist_hardware::Monitor>> {
        (self.hw_interval > 0.0).then(|| {
            mnist_hardware::Monitor::start(
                std::time::Duration::from_secs_f64(self.hw_interval),
                watch,
            )
        })
    }
}

fn parse_seconds(s: &str, min: f64, allow_zero: bool) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if (allow_zero && v == 0.0) || (min..=3600.0).contains(&v) {
        Ok(v)
    } else if allow_zero {
        Err(format!(
            "{v} is out of range: 0 (off) or {min}..=3600 seconds"
        ))
    } else {
        Err(format!("{v} is out of range: {min}..=3600 seconds"))
    }
}

fn parse_hw_interval(s: &str) -> Result<f64, String> {
    parse_seconds(s, 0.2, true)
}

fn parse_stats_interval(s: &str) -> Result<f64, String> {
    parse_seconds(s, 0.2, false)
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on. Anything but loopback requires a token.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub bind: std::net::SocketAddr,
    #[command(flatten)]
    pub access: AccessArgs,
    #[command(flatten)]
    pub dirs: DirArgs,
    #[command(flatten)]
    pub watch: WatchArgs,
    /// GPU hosts for the fleet view, comma-separated (user@host[:port] or ~/.ssh/config aliases; keys from ssh-agent or the config, host keys must be in known_hosts).
    #[arg(long, value_delimiter = ',', value_name = "HOSTS")]
    pub hosts: Vec<String>,
    /// Seconds between fleet polls (1-3600).
    #[arg(long, default_value_t = 5.0, value_parser = parse_fleet_interval, value_name = "SECS")]
    pub fleet_interval: f64,
    /// mnist-monitor on the fleet hosts: a path, or a name on their PATH.
    #[arg(long, default_value = "mnist-monitor", value_name = "PATH")]
    pub fleet_remote_bin: String,
    /// Build the fleet table from this Prometheus (its base URL) instead of SSH: one query for every host's `exporter`.
    #[arg(long, value_name = "URL", conflicts_with = "hosts")]
    pub fleet_prometheus: Option<String>,
    /// With --fleet-prometheus: the scrape job of the exporters.
    #[arg(long, default_value = "mnist-monitor", value_name = "JOB")]
    pub fleet_job: String,
    /// Prune the runs folder every HOURS (0.001-8760) with the policy flags below, as `prune --yes` does.
    #[arg(long, value_name = "HOURS", value_parser = parse_prune_every)]
    pub prune_every: Option<f64>,
    #[command(flatten)]
    pub prune: PolicyArgs,
}

/// Who may use the web server: its token and the origins it trusts.
#[derive(Args, Clone, Default)]
pub struct AccessArgs {
    /// Token every request must carry (open the page with ?token=…); required
    /// off loopback. Visible to other users in `ps`: prefer --token-file or
    /// MNIST_MONITOR_TOKEN.
    #[arg(long, env = "MNIST_MONITOR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Read the token from this file (its first line).
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
    /// An origin besides the server's own that may use it from a browser
    /// (e.g. https://monitor.lab.example behind a reverse proxy); repeatable.
    #[arg(long, value_name = "ORIGIN")]
    pub allow_origin: Vec<String>,
}

impl AccessArgs {
    /// The token from the flag, the environment or the file; warns when it
    /// was given on the command line, where `ps` shows it.
    pub fn token(&self) -> Result<Option<String>, String> {
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--token-file {}: {e}", path.display()))?;
            let token = text.lines().next().unwrap_or("").trim().to_string();
            if token.is_empty() {
                return Err(format!(
                    "--token-file {}: the file is empty",
                    path.display()
                ));
            }
            return Ok(Some(token));
        }
        let token = self.token.clone().filter(|t| !t.is_empty());
        if token.is_some() && std::env::var("MNIST_MONITOR_TOKEN").ok() != token {
            eprintln!(
                "warning: a token given with --token is visible to every user of this machine in `ps`; \
                 use --token-file FILE or MNIST_MONITOR_TOKEN instead"
            );
        }
        Ok(token)
    }

    /// The options of a server in `mode` for the users these flags let in;
    /// the caller sets the rest.
    pub fn server_options(
        &self,
        mode: mnist_server::ServerMode,
    ) -> anyhow::Result<mnist_server::ServerOptions> {
        Ok(mnist_server::ServerOptions {
            token: self.token().map_err(anyhow::Error::msg)?,
            allowed_origins: self.allowed_origins().map_err(anyhow::Error::msg)?,
            ..mnist_server::ServerOptions::new(mode)
        })
    }

    /// Checks every --allow-origin.
    pub fn allowed_origins(&self) -> Result<Vec<String>, mnist_server::guard::BadOrigin> {
        self.allow_origin
            .iter()
            .map(|o| mnist_server::guard::normalise_origin(o))
            .collect()
    }
}

fn parse_fleet_interval(s: &str) -> Result<f64, String> {
    parse_seconds(s, 1.0, false)
}

/// Flags of `train`. Training flags are optional so that a `--config` file
/// supplies what the command line leaves out; defaults are TrainConfig's.
#[derive(Args)]
pub struct TrainArgs {
    /// One flag per field of mnist-train's configuration table.
    #[command(flatten)]
    pub fields: ConfigFlags,
    /// A TOML file with any of the fields above (underscored: batch_size = 128); flags override it.
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    /// Continue RUN_ID from its newest checkpoint, with its stored configuration.
    #[arg(long, value_name = "RUN_ID", conflicts_with = "reproduce")]
    pub resume: Option<String>,
    /// Train RUN_ID again as a new run, with its stored configuration and seed (flags given
    /// override it, e.g. --epochs 1), and say whether the first epoch matches (exit code 4 if not).
    #[arg(long, value_name = "RUN_ID", conflicts_with = "config")]
    pub reproduce: Option<String>,
    #[command(flatten)]
    pub dirs: DirArgs,
    /// Don't download missing MNIST files.
    #[arg(long)]
    pub no_download: bool,
    /// Name the run instead of using a timestamp.
    #[arg(long)]
    pub run_id: Option<String>,
    /// Tag the run as part of sweep SWEEP_ID (what `sweep --executor slurm` gives its tasks).
    #[arg(long, value_name = "SWEEP_ID", value_parser = parse_sweep_id)]
    pub sweep: Option<String>,
    /// Also serve the live page for this run at ADDR (e.g. 127.0.0.1:8080; port 0 picks one).
    #[arg(long, value_name = "ADDR")]
    pub serve: Option<std::net::SocketAddr>,
    /// With --serve: once the page listens, write {"port", "pid", "run_id"} as JSON to FILE
    /// (atomically), for a launcher to wait on (`remote train` does).
    #[arg(long, value_name = "FILE", requires = "serve")]
    pub ready_file: Option<PathBuf>,
    #[command(flatten)]
    pub access: AccessArgs,
    #[command(flatten)]
    pub watch: WatchArgs,
    /// Print one JSON summary on stdout when the run ends.
    #[arg(long)]
    pub json: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

/// The training flags, made from [`mnist_train::config::FIELDS`]: each
/// field is a flag (`batch_size` is `--batch-size`) whose help states its
/// range and default from the same table validation reads. What the command
/// line set is kept as JSON, typed but not range-checked, so that validation
/// reports it with the others.
#[derive(Clone, Default)]
pub struct ConfigFlags {
    given: serde_json::Map<String, serde_json::Value>,
}

impl ConfigFlags {
    /// `base` with the flags that were given on top. `--device cuda:1`
    /// sets the backend too, and must agree with a `--backend` given with
    /// it; a `--backend` alone that changes the backend drops the base's
    /// device index (it numbered the other backend's devices).
    pub fn apply(&self, base: &TrainConfig) -> Result<TrainConfig, Vec<FieldError>> {
        let mut merged = serde_json::to_value(base).expect("config serialises");
        let object = merged.as_object_mut().expect("config is an object");
        let base_backend = serde_json::Value::from(base.backend.as_str());
        if self
            .given
            .get("backend")
            .is_some_and(|b| *b != base_backend)
        {
            object.insert("device".into(), serde_json::Value::Null);
        }
        for (name, value) in &self.given {
            object.insert(name.clone(), value.clone());
        }
        mnist_train::device::expand_spec(object, self.sets("backend")).map_err(|e| vec![e])?;
        TrainConfig::parse_json(&merged)
    }

    /// Whether the command line sets config field `field` (underscored name).
    pub fn sets(&self, field: &str) -> bool {
        self.given.contains_key(field)
    }
}

fn flag_for(field: &'static Field, default: &serde_json::Value) -> Arg {
    let kind = field.kind;
    let shown_default = match (kind, default) {
        (FieldKind::Kernels { .. }, serde_json::Value::Array(ks)) => ks
            .iter()
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .join(","),
        (_, serde_json::Value::String(s)) => s.clone(),
        (FieldKind::Device { .. }, serde_json::Value::Null) => "auto".into(),
        (_, serde_json::Value::Null) => "all".into(),
        (_, v) => v.to_string(),
    };
    let help = match kind {
        FieldKind::Flag => format!("{}.", field.help),
        FieldKind::Choice { .. } | FieldKind::Device { .. } => {
            format!("{} [default: {shown_default}].", field.help)
        }
        FieldKind::Kernels { .. } => format!(
            "{}: {} [default: {shown_default}].",
            field.help,
            kind.range()
        ),
        _ => format!(
            "{}, in {} [default: {shown_default}].",
            field.help,
            kind.range()
        ),
    };
    // clap keeps flag names as &'static str; these few are made once per process.
    let long: &'static str = Box::leak(field.name.replace('_', "-").into_boxed_str());
    let arg = Arg::new(field.name)
        .long(long)
        .help(help)
        .help_heading("Training configuration");
    match kind {
        FieldKind::Flag => arg.action(ArgAction::SetTrue),
        FieldKind::Choice { choices } => arg.value_parser(
            clap::builder::PossibleValuesParser::new(choices).map(serde_json::Value::from),
        ),
        FieldKind::Kernels { .. } => arg
            .value_name("K1,K2,K3,K4")
            .value_parser(|s: &str| parse_kernels(s).map(|k| serde_json::Value::from(k.to_vec()))),
        // Kept as text: applying it sets the backend too.
        FieldKind::Device { .. } => arg.value_name("SPEC").value_parser(|s: &str| {
            s.parse::<mnist_train::DeviceSpec>()
                .map(|spec| serde_json::Value::from(spec.to_string()))
                .map_err(|e| e.to_string())
        }),
        FieldKind::Number { .. } => arg.allow_negative_numbers(true).value_parser(|s: &str| {
            s.parse::<f64>()
                .map(serde_json::Value::from)
                .map_err(|_| format!("{s:?} is not a number"))
        }),
        FieldKind::Integer { .. } | FieldKind::OptionalInteger { .. } => {
            arg.value_name("N").value_parser(|s: &str| {
                s.parse::<u64>()
                    .map(serde_json::Value::from)
                    .map_err(|_| format!("{s:?} is not a non-negative integer"))
            })
        }
    }
}

impl clap::Args for ConfigFlags {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let defaults = serde_json::to_value(TrainConfig::default()).expect("config serialises");
        FIELDS.iter().fold(cmd, |cmd, field| {
            cmd.arg(flag_for(field, &defaults[field.name]))
        })
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for ConfigFlags {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut flags = Self::default();
        flags.update_from_arg_matches(matches)?;
        Ok(flags)
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        for field in FIELDS {
            let value = match field.kind {
                FieldKind::Flag => matches.get_flag(field.name).then_some(true.into()),
                _ => matches.get_one::<serde_json::Value>(field.name).cloned(),
            };
            if let Some(value) = value {
                self.given.insert(field.name.to_string(), value);
            }
        }
        Ok(())
    }
}

/// Parses `32,64,64,64` (range checks happen in validation, with the others).
pub fn parse_kernels(s: &str) -> Result<[usize; 4], String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let values: Result<Vec<usize>, _> = parts.iter().map(|p| p.parse::<usize>()).collect();
    match values {
        Ok(v) if v.len() == 4 => Ok([v[0], v[1], v[2], v[3]]),
        _ => Err(format!(
            "expected four comma-separated integers, each 1-512, e.g. 32,64,64,64 (got {s:?})"
        )),
    }
}

fn parse_prune_every(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(h) if (0.001..=8760.0).contains(&h) => Ok(h),
        _ => Err(format!("must be hours in 0.001-8760 (got {s})")),
    }
}

#[derive(Args)]
pub struct ControlArgs {
    /// The run to steer (it must be training on the server).
    pub run_id: String,
    /// What to do.
    #[command(subcommand)]
    pub action: ControlCommand,
    /// The server that trains it: a `serve`, or a `train --serve` (its own port), or a tunnel's
    /// local end (`remote watch`).
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub server: String,
    /// The server's token (or MNIST_MONITOR_TOKEN).
    #[arg(long, value_name = "FILE", global = true)]
    pub token_file: Option<PathBuf>,
}

/// The controls `mnist-monitor control RUN_ID …` sends.
#[derive(clap::Subcommand, Debug, Clone, PartialEq)]
pub enum ControlCommand {
    /// Hold the run between batches (its device stays its own).
    Pause,
    /// Go on after a pause.
    Resume,
    /// Train on with this learning rate from the next step.
    Lr {
        /// The new learning rate, in (0, 10].
        #[arg(allow_negative_numbers = true)]
        lr: f64,
        /// constant, or cosine from the new rate to 0 at the last step (default: the run's own).
        #[arg(long, value_name = "SCHEDULE")]
        schedule: Option<String>,
    },
    /// Evaluate now.
    Eval {
        /// val or test.
        #[arg(long, default_value = "val", value_parser = parse_eval_split)]
        split: mnist_events::Split,
    },
    /// Write a checkpoint now (a resume continues from it).
    Checkpoint,
    /// Finish the epoch in progress (evaluation and checkpoint included), then stop.
    StopAfterEpoch,
}

/// `val` or `test`: the splits a run evaluates on request.
fn parse_eval_split(s: &str) -> Result<mnist_events::Split, String> {
    match s {
        "val" => Ok(mnist_events::Split::Val),
        "test" => Ok(mnist_events::Split::Test),
        _ => Err(format!("must be val or test (got {s:?})")),
    }
}

/// The runs folder.
#[derive(Args, Clone, Debug)]
pub struct RunDir {
    /// Folder of run logs, <run-dir>/<run-id>/events.jsonl (`--runs-dir`, its old name, still works).
    #[arg(long, alias = "runs-dir", default_value = "runs", value_name = "DIR")]
    pub run_dir: PathBuf,
}

/// The checkpoints folder.
#[derive(Args, Clone, Debug)]
pub struct CheckpointDir {
    /// Folder of checkpoints, <checkpoint-dir>/<run-id>/epoch-NNNN/.
    #[arg(long, default_value = "checkpoints", value_name = "DIR")]
    pub checkpoint_dir: PathBuf,
}

/// The runs folder and the checkpoints folder: what `prune` and `index`
/// (and with the data, `train` and `serve`) read and write.
#[derive(Args, Clone, Debug)]
pub struct RunDirs {
    #[command(flatten)]
    pub run: RunDir,
    #[command(flatten)]
    pub checkpoint: CheckpointDir,
}

impl RunDirs {
    /// Where runs' event logs are.
    pub fn run_dir(&self) -> &std::path::Path {
        &self.run.run_dir
    }

    /// Where runs' checkpoints are.
    pub fn checkpoint_dir(&self) -> &std::path::Path {
        &self.checkpoint.checkpoint_dir
    }

    /// The two folders as the server's index names them.
    pub fn folders(&self) -> mnist_server::index::Folders {
        mnist_server::index::Folders {
            runs: self.run_dir().to_path_buf(),
            checkpoints: self.checkpoint_dir().to_path_buf(),
        }
    }
}

/// The data set and the folders a run reads and writes: `train`, `serve`
/// (and `warmup`, and the `train` flags of `sweep`).
#[derive(Args, Clone, Debug)]
pub struct DirArgs {
    /// Directory with the four MNIST IDX files, gzipped or raw.
    #[arg(long, default_value = "datasets/mnist", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Don't check the files against MNIST's SHA-256 (for other data sets in IDX format).
    #[arg(long)]
    pub skip_verify: bool,
    #[command(flatten)]
    pub runs: RunDirs,
}

impl DirArgs {
    /// Whether loading the data checks it (`--skip-verify` says not).
    pub fn verify(&self) -> mnist_data::Verify {
        if self.skip_verify {
            mnist_data::Verify::Skip
        } else {
            mnist_data::Verify::Sha256
        }
    }

    /// Where runs' event logs go.
    pub fn run_dir(&self) -> &std::path::Path {
        self.runs.run_dir()
    }

    /// Where runs' checkpoints go.
    pub fn checkpoint_dir(&self) -> &std::path::Path {
        self.runs.checkpoint_dir()
    }

    /// The options of a server in `mode` over this data and these
    /// folders, for the users `access` lets in; the caller sets the rest.
    pub fn server_options(
        &self,
        mode: mnist_server::ServerMode,
        access: &AccessArgs,
    ) -> anyhow::Result<mnist_server::ServerOptions> {
        Ok(mnist_server::ServerOptions {
            data_dir: self.data_dir.clone(),
            verify: self.verify(),
            runs_dir: self.run_dir().to_path_buf(),
            checkpoints_dir: self.checkpoint_dir().to_path_buf(),
            ..access.server_options(mode)?
        })
    }
}
