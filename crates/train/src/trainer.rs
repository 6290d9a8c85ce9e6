//! The training loop, generic over the Burn backend.
//!
//! Metrics stay on the device: each step computes a 31-value row (loss, true
//! positives, predicted and actual counts per class) that is read back in
//! one transfer for many batches at a time ([`FLUSH_EVERY`]), so a GPU is not
//! made to wait for the host after every batch. On the CPU every flush is a
//! single batch anyway, since a batch takes longer than the flush interval.

use crate::checkpoint::{self, CheckpointState};
use crate::config::{OptimizerKind, Schedule, TrainConfig};
use crate::control::{schedule_name, LrPlan};
use crate::metrics::{from_confusion, ClassCounts, CLASSES};
use crate::samples::{png_base64, sample_indices};
use burn::module::AutodiffModule;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, Optimizer, SgdConfig};
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::AutodiffBackend;
use mnist_data::{epoch_order, normalise, MnistSplit, Splits};
use mnist_events::{
    BatchMetrics, CheckpointSaved, EvalMetrics, EventKind, EventStream, LogLevel, LogMessage,
    Phase, PhaseKind, RunStarted, Sample, Samples, Split,
};
use mnist_model::Cnn;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Longest time batch metrics wait on the device before being read back.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Most batches whose metrics wait on the device at once.
const FLUSH_MAX_BATCHES: usize = 256;
/// Values per batch in the device-side metrics row.
const STATS_WIDTH: usize = 1 + 3 * CLASSES;

type Rec = NamedMpkBytesRecorder<FullPrecisionSettings>;

/// Everything a training job needs besides the device.
pub(crate) struct Job<'a> {
    /// The configuration to train with.
    pub config: &'a TrainConfig,
    /// The training, validation and test splits, on the host.
    pub splits: &'a Splits,
    /// The run's event stream: metrics, samples, checkpoints and logs go here.
    pub events: &'a mut EventStream,
    /// The label overrides applied to the data, if any.
    pub label_overrides: Option<mnist_events::LabelOverridesUsed>,
    /// What produced the run, for `run_started`.
    pub provenance: Option<mnist_events::Provenance>,
    /// This run's checkpoint directory (`<checkpoints_dir>/<run-id>`).
    pub checkpoint_dir: PathBuf,
    /// The checkpoint to continue from, and its state; `None` for a new run.
    pub resume: Option<(PathBuf, CheckpointState)>,
    /// Set when `resume` is another run's checkpoint: this new run starts
    /// from it with its own configuration.
    pub fork: Option<mnist_events::Parent>,
    /// Checked before each batch: once requested, the run stops.
    pub stop: mnist_events::Stop,
    /// Checked before each batch, when the run can be steered: pause, a
    /// new learning rate, … (see [`mnist_events::Controls`]).
    pub controls: Option<mnist_events::Controls>,
    /// Controls to apply again at the steps a reproduced run applied them
    /// (`train --reproduce`), in step order.
    pub replay: Vec<(u64, mnist_events::ControlAction)>,
    /// The backend's short name (`cpu`, `wgpu`, `cuda`), for `run_started`.
    pub backend: &'static str,
    /// The device as a user knows it, for `run_started`.
    pub device_name: String,
    /// The device's index within the backend, for `run_started`.
    pub device_index: Option<usize>,
    /// Which backend and device were picked and why, for `run_started` and the run log.
    pub backend_note: String,
}

/// Why training could not go on: the run ends as failed, with this as the
/// error of its `run_finished` event.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TrainFailure {
    /// A checkpoint to resume or fork from could not be read.
    #[error("{}: {source}", .path.display())]
    ReadCheckpoint {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A checkpoint's record did not load into this model or optimiser.
    #[error("cannot load {what} from {}: {source}", .path.display())]
    LoadCheckpoint {
        /// `model` or `optimiser state`.
        what: &'static str,
        /// The checkpoint's folder.
        path: PathBuf,
        /// Burn's reason.
        source: burn::record::RecorderError,
    },
    /// An epoch's checkpoint could not be written (a full disk, say): going
    /// on would train epochs that can never be resumed.
    #[error(
        "epoch {epoch}: the checkpoint could not be written in {}: {source}; {}",
        .dir.display(),
        resume_hint(.last_good, .run_id)
    )]
    WriteCheckpoint {
        /// The epoch.
        epoch: usize,
        /// The run's checkpoint folder.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
        /// The newest checkpoint that was written, if any.
        last_good: Option<PathBuf>,
        /// The run, to name in `--resume`.
        run_id: String,
    },
    /// The backend panicked (an allocation failure on a GPU, say).
    #[error("training panicked: {0}")]
    Panicked(String),
}

/// What a run whose checkpoint could not be written can do next.
fn resume_hint(last_good: &Option<PathBuf>, run_id: &str) -> String {
    match last_good {
        Some(path) => format!(
            "the last good checkpoint is {}: free space, then continue with --resume {run_id}",
            path.display()
        ),
        None => "no earlier checkpoint was saved".to_string(),
    }
}

/// How a job ended.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// A stop was requested before the last epoch finished.
    pub stopped: bool,
    /// Why the run could not go on (it ends as failed, keeping its counts).
    pub failure: Option<TrainFailure>,
    /// Epochs completed, counting those before a resume.
    pub epochs_completed: usize,
    /// Optimiser steps as of the last completed epoch, counting those before a resume.
    pub steps: u64,
    /// Seconds spent in training steps in this process.
    pub train_seconds: f64,
    /// Training seconds over all resumptions.
    pub total_train_seconds: f64,
    /// Training images of the epochs completed in this process.
    pub images_trained: u64,
    /// The latest test-set evaluation, if one ran.
    pub test: Option<EvalMetrics>,
    /// Why a run that did not fail ended before its last epoch.
    pub reason: Option<String>,
}

/// Trains on `device` with the optimiser the config names.
pub(crate) fn train<B: AutodiffBackend>(
    device: B::Device,
    job: Job<'_>,
) -> Result<Outcome, TrainFailure> {
    B::seed(&device, job.config.seed);
    mnist_kernels::seed(job.config.seed);
    let model: Cnn<B> = job.config.model().init(&device);
    match job.config.optimizer {
        OptimizerKind::Adam => {
            // PyTorch's epsilon, so results compare with the reference script.
            let optim = AdamConfig::new().with_epsilon(1e-8).init::<B, Cnn<B>>();
            run_loop(device, job, model, optim)
        }
        OptimizerKind::Sgd => {
            let momentum = (job.config.momentum > 0.0).then(|| {
                MomentumConfig::new()
                    .with_momentum(job.config.momentum)
                    .with_dampening(0.0)
            });
            let optim = SgdConfig::new().with_momentum(momentum).init::<B, Cnn<B>>();
            run_loop(device, job, model, optim)
        }
    }
}

/// A split uploaded to the device: normalised images and labels.
struct DeviceSplit<B: Backend> {
    images: Tensor<B, 4>,
    labels: Tensor<B, 1, Int>,
    len: usize,
}

fn upload<B: Backend>(split: &MnistSplit, device: &B::Device) -> DeviceSplit<B> {
    let len = split.len();
    let images = Tensor::from_data(
        TensorData::new(normalise(&split.images), [len, 1, 28, 28]),
        device,
    );
    let labels: Vec<i32> = split.labels.iter().map(|&l| l as i32).collect();
    let labels = Tensor::from_data(TensorData::new(labels, [len]), device);
    DeviceSplit {
        images,
        labels,
        len,
    }
}

fn int_tensor<B: Backend>(values: Vec<i32>, device: &B::Device) -> Tensor<B, 1, Int> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n]), device)
}

/// Rows `lo..hi` of `order` as a full batch of `batch` indices: a short
/// last batch is filled up with the split's first image, and the mask
/// (1 for real rows, 0 for filler) keeps the filler out of the loss, the
/// gradients and the metrics. Every step then has one shape, so a GPU
/// backend compiles and autotunes its kernels once per run, not again for
/// the last batch of each epoch.
fn full_batch<B: Backend>(
    order: &Tensor<B, 1, Int>,
    lo: usize,
    hi: usize,
    batch: usize,
    device: &B::Device,
) -> (Tensor<B, 1, Int>, Option<Tensor<B, 2>>) {
    let idx = order.clone().slice(s![lo..hi]);
    let real = hi - lo;
    if real == batch {
        return (idx, None);
    }
    let filler = Tensor::<B, 1, Int>::zeros([batch - real], device);
    let mask: Vec<f32> = (0..batch).map(|i| f32::from(u8::from(i < real))).collect();
    let mask = Tensor::<B, 1>::from_data(TensorData::new(mask, [batch]), device);
    (
        Tensor::cat(vec![idx, filler], 0),
        Some(mask.reshape([batch, 1])),
    )
}

/// Learning rate at 0-based step `step` of `total` steps, as the
/// configuration plans it (a `set_lr` control replans from its step: see
/// [`LrPlan`]).
pub fn learning_rate(config: &TrainConfig, step: u64, total: u64) -> f64 {
    LrPlan::of(config).rate(step, total)
}

/// Batch metrics waiting on the device to be read back.
struct PendingBatch<B: Backend> {
    epoch: usize,
    batch: usize,
    batches: usize,
    step: u64,
    size: usize,
    lr: f64,
    stepped: Stepped<B>,
}

/// What one step leaves on the device: its metrics row, and on a sampled
/// step the parts of the layers' row (at an epoch's end also their
/// histograms' values).
struct Stepped<B: Backend> {
    stats: Tensor<B, 2>,
    layers: Option<Vec<Tensor<B, 1>>>,
    histograms: Option<(Tensor<B, 1>, Vec<[usize; 3]>)>,
}

/// What a step looks at besides its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Off,
    Layers,
    LayersAndHistograms,
}

/// Host-side running totals over the current epoch.
#[derive(Default)]
struct EpochTotals {
    counts: ClassCounts,
    loss_sum: f64,
    images: usize,
}

/// Where a run stands between epochs (restored from a checkpoint on resume).
struct Progress {
    start_epoch: usize,
    step: u64,
    /// The best epoch so far and its score.
    best: (usize, f64),
    /// Training seconds of earlier attempts (before a resume).
    previous_seconds: f64,
    /// Batches of epoch `start_epoch + 1` a mid-epoch checkpoint had
    /// trained already (0 after an epoch's checkpoint).
    skip_batches: usize,
    /// The learning rate from here on.
    lr_plan: LrPlan,
    /// What early stopping has seen so far.
    watch: crate::early_stop::Watch,
    /// Each layer's histogram bins, fixed at their first histograms.
    bins: crate::layer_stats::Bins,
}

/// The splits on the device, and the fixed sample images.
struct OnDevice<B: AutodiffBackend> {
    train: DeviceSplit<B>,
    val: DeviceSplit<B::InnerBackend>,
    test: DeviceSplit<B::InnerBackend>,
    sample_positions: Vec<usize>,
    sample_images: Tensor<B::InnerBackend, 4>,
}

impl<B: AutodiffBackend> OnDevice<B> {
    fn upload(splits: &Splits, device: &B::Device) -> Self {
        let train = upload(&splits.train, device);
        let val = upload(&splits.val, device);
        let test: DeviceSplit<B::InnerBackend> = upload(&splits.test, device);
        let sample_positions = sample_indices(test.len);
        let positions = sample_positions.iter().map(|&i| i as i32).collect();
        let sample_images = test.images.clone().select(0, int_tensor(positions, device));
        Self {
            train,
            val,
            test,
            sample_positions,
            sample_images,
        }
    }
}

/// One training run: the model and optimiser, the data on the device, and
/// the loop split the way `burn-train` splits it: [`Trainer::restore`],
/// [`Trainer::train_epoch`], [`Trainer::end_epoch`].
struct Trainer<'a, B: AutodiffBackend, O> {
    job: Job<'a>,
    device: B::Device,
    /// Taken and put back by each optimiser step (which consumes it).
    model: Option<Cnn<B>>,
    optim: O,
    data: OnDevice<B>,
    progress: Progress,
    outcome: Outcome,
    /// When training (this process) started.
    started: Instant,
    train_time: Duration,
    first_batch_logged: bool,
    /// A person asked to stop once the epoch in progress ends.
    stop_after_epoch: Option<String>,
    /// Early stopping (or the target accuracy) ends the run after this
    /// epoch, for this reason.
    early_stop: Option<String>,
    /// Where the next replayed control is in `job.replay`.
    next_replay: usize,
}

fn run_loop<B, O>(
    device: B::Device,
    job: Job<'_>,
    model: Cnn<B>,
    optim: O,
) -> Result<Outcome, TrainFailure>
where
    B: AutodiffBackend,
    O: Optimizer<Cnn<B>, B>,
{
    let (model, optim, progress) = restore(&job, &device, model, optim)?;
    let data = OnDevice::upload(job.splits, &device);
    let mut trainer = Trainer {
        outcome: Outcome {
            epochs_completed: progress.start_epoch,
            steps: progress.step,
            ..Outcome::default()
        },
        job,
        device,
        model: Some(model),
        optim,
        data,
        progress,
        started: Instant::now(),
        train_time: Duration::ZERO,
        first_batch_logged: false,
        stop_after_epoch: None,
        early_stop: None,
        next_replay: 0,
    };
    trainer.announce();
    for epoch in trainer.progress.start_epoch + 1..=trainer.job.config.epochs {
        let Some(totals) = trainer.train_epoch(epoch) else {
            trainer.outcome.stopped = true;
            break;
        };
        if let Err(failure) = trainer.end_epoch(epoch, totals) {
            trainer.outcome.failure = Some(failure);
            break;
        }
        if let Some(reason) = trainer.early_stop.take() {
            trainer.outcome.reason = Some(reason);
            break;
        }
        if let Some(source) = trainer.stop_after_epoch.take() {
            if epoch < trainer.job.config.epochs {
                trainer.outcome.stopped = true;
                trainer.outcome.reason =
                    Some(format!("stopped after epoch {epoch}, as asked ({source})"));
                break;
            }
        }
    }
    let outcome = &mut trainer.outcome;
    outcome.train_seconds = trainer.train_time.as_secs_f64();
    outcome.total_train_seconds = trainer.progress.previous_seconds + outcome.train_seconds;
    Ok(trainer.outcome)
}

/// The model, optimiser and progress to start from: fresh, or the
/// checkpoint a resumed run continues.
fn restore<B, O>(
    job: &Job<'_>,
    device: &B::Device,
    mut model: Cnn<B>,
    mut optim: O,
) -> Result<(Cnn<B>, O, Progress), TrainFailure>
where
    B: AutodiffBackend,
    O: Optimizer<Cnn<B>, B>,
{
    let mut progress = Progress {
        start_epoch: 0,
        step: 0,
        best: (0, f64::NEG_INFINITY),
        previous_seconds: 0.0,
        skip_batches: 0,
        lr_plan: LrPlan::of(job.config),
        watch: Default::default(),
        bins: Default::default(),
    };
    let Some((path, state)) = &job.resume else {
        return Ok((model, optim, progress));
    };
    let recorder = Rec::default();
    let read = |file: &str| {
        let path = path.join(file);
        std::fs::read(&path).map_err(|source| TrainFailure::ReadCheckpoint { path, source })
    };
    let load = |what| {
        move |source| TrainFailure::LoadCheckpoint {
            what,
            path: path.clone(),
            source,
        }
    };
    let record = recorder
        .load(read(checkpoint::MODEL_FILE)?, device)
        .map_err(load("model"))?;
    model = model.load_record(record);
    if job.fork.as_ref().is_none_or(|f| f.optimizer_state) {
        let record = recorder
            .load(read(checkpoint::OPTIM_FILE)?, device)
            .map_err(load("optimiser state"))?;
        optim = optim.load_record(record);
    }
    progress.start_epoch = state.epoch;
    progress.step = state.step;
    progress.best = (state.best_epoch, state.best_score);
    progress.previous_seconds = state.train_seconds;
    progress.skip_batches = state.batches_into_epoch;
    progress.lr_plan = state.lr_plan.unwrap_or(progress.lr_plan);
    progress.watch = state.early_stop;
    progress.bins = state.histogram_bins.clone();
    if job.fork.is_some() {
        // A new run: its own best, time and learning rate (from this step).
        progress.best = (0, f64::NEG_INFINITY);
        progress.previous_seconds = 0.0;
        progress.watch = Default::default();
        progress.lr_plan = LrPlan {
            from_step: state.step,
            ..LrPlan::of(job.config)
        };
    }
    Ok((model, optim, progress))
}

impl<B, O> Trainer<'_, B, O>
where
    B: AutodiffBackend,
    O: Optimizer<Cnn<B>, B>,
{
    fn batches(&self) -> usize {
        self.data.train.len.div_ceil(self.job.config.batch_size)
    }

    /// `run_started` (with where a resume picks up) and the backend note.
    fn announce(&mut self) {
        let config = self.job.config;
        let resume = self
            .job
            .resume
            .as_ref()
            .map(|(_, s)| s)
            .filter(|_| self.job.fork.is_none());
        let batches = self.batches();
        let events = &mut *self.job.events;
        events.emit(EventKind::RunStarted(Box::new(RunStarted {
            config: serde_json::to_value(config).expect("config serialises"),
            model: config.model().summary(),
            backend: self.job.backend.to_string(),
            device: self.job.device_name.clone(),
            device_index: self.job.device_index,
            device_reason: Some(self.job.backend_note.clone()),
            train_size: self.data.train.len,
            val_size: self.data.val.len,
            test_size: self.data.test.len,
            batches_per_epoch: batches,
            resumed_from_epoch: resume.map(|s| s.epoch),
            resumed_from_step: resume.map(|s| s.step),
            label_overrides: self.job.label_overrides.clone(),
            provenance: self.job.provenance.clone(),
            parent: self.job.fork.clone(),
        })));
        events.emit(EventKind::Log(LogMessage {
            level: LogLevel::Info,
            message: self.job.backend_note.clone(),
        }));
        if self.job.backend != "cpu" {
            // The page and the progress bar show this while the GPU backend
            // compiles its kernels and autotunes before the first step.
            events.emit(EventKind::Phase(Phase {
                phase: PhaseKind::Compiling,
                message: "compiling GPU kernels and autotuning before the first batch: minutes the first time on this GPU, seconds once cached".into(),
            }));
        }
    }

    /// One pass over the training set; `None` when a stop was requested.
    fn train_epoch(&mut self, epoch: usize) -> Option<EpochTotals> {
        let config = self.job.config;
        // Dropout draws from the backend RNG: reseed per epoch so a resumed
        // run continues exactly as an uninterrupted one would.
        B::seed(&self.device, config.seed.wrapping_add(epoch as u64));
        mnist_kernels::seed(config.seed.wrapping_add(epoch as u64));
        let order = epoch_order(self.data.train.len, config.seed, epoch);
        let order = int_tensor::<B>(order.into_iter().map(|i| i as i32).collect(), &self.device);
        let batches = self.batches();
        let total_steps = (batches * config.epochs) as u64;
        let mut totals = EpochTotals::default();
        let mut pending: Vec<PendingBatch<B::InnerBackend>> = Vec::new();
        let mut epoch_started = Instant::now();
        let mut last_flush = Instant::now();
        // A mid-epoch checkpoint resumes where it was taken.
        let first = std::mem::take(&mut self.progress.skip_batches).min(batches);
        for batch in first..batches {
            let asked = self.job.controls.as_ref().is_some_and(|c| c.has_pending());
            if asked || self.replay_due() {
                flush(
                    &mut pending,
                    &mut totals,
                    self.job.events,
                    &mut last_flush,
                    self.started,
                    &mut self.progress.bins,
                );
                // Paused time counts in neither images/s nor elapsed_s.
                let paused = self.steer(epoch, batch, total_steps);
                epoch_started += paused;
                self.started += paused;
                last_flush = Instant::now();
            }
            if self.job.stop.is_requested() {
                flush(
                    &mut pending,
                    &mut totals,
                    self.job.events,
                    &mut last_flush,
                    self.started,
                    &mut self.progress.bins,
                );
                self.train_time += epoch_started.elapsed();
                return None;
            }
            let lo = batch * config.batch_size;
            let hi = (lo + config.batch_size).min(self.data.train.len);
            let lr = self.progress.lr_plan.rate(self.progress.step, total_steps);
            let probe = self.probe(batch + 1 == batches);
            let stepped = self.step(&order, lo, hi, lr, probe);
            self.progress.step += 1;
            pending.push(PendingBatch {
                epoch,
                batch: batch + 1,
                batches,
                step: self.progress.step,
                size: hi - lo,
                lr,
                stepped,
            });
            if last_flush.elapsed() >= FLUSH_EVERY
                || pending.len() >= FLUSH_MAX_BATCHES
                || batch + 1 == batches
            {
                flush(
                    &mut pending,
                    &mut totals,
                    self.job.events,
                    &mut last_flush,
                    self.started,
                    &mut self.progress.bins,
                );
                self.note_first_batch();
            }
        }
        self.train_time += epoch_started.elapsed();
        Some(totals)
    }

    /// What the next step (the epoch's last when `last`) looks at: the
    /// layers every `layer_stats_every` steps (and at 1, 2, 4, …), their
    /// histograms too on an epoch's last step.
    fn probe(&self, last: bool) -> Probe {
        let every = self.job.config.layer_stats_every;
        let due = crate::layer_stats::due(self.progress.step + 1, every);
        match (every > 0 && last, due) {
            (true, _) => Probe::LayersAndHistograms,
            (false, true) => Probe::Layers,
            (false, false) => Probe::Off,
        }
    }

    /// One optimiser step on the rows `lo..hi` of `order`: its metrics row
    /// and whatever `probe` asks, left on the device.
    fn step(
        &mut self,
        order: &Tensor<B, 1, Int>,
        lo: usize,
        hi: usize,
        lr: f64,
        probe: Probe,
    ) -> Stepped<B::InnerBackend> {
        let (idx, mask) = full_batch(order, lo, hi, self.job.config.batch_size, &self.device);
        let images = self.data.train.images.clone().select(0, idx.clone());
        let labels = self.data.train.labels.clone().select(0, idx);
        let model = self
            .model
            .take()
            .expect("the model is put back after every step");
        let (logits, traced) = match probe {
            Probe::Off => (model.forward(images), None),
            _ => {
                let t = model.forward_traced(images);
                (t.logits.clone(), Some(t))
            }
        };
        let mut targets = labels.one_hot::<2>(CLASSES).float();
        if let Some(mask) = &mask {
            targets = targets * mask.clone();
        }
        let loss = -(log_softmax(logits.clone(), 1) * targets.clone()).sum() / (hi - lo) as f64;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        // Gradients are taken before the optimiser consumes them.
        let before = traced.as_ref().map(|_| {
            let valid = model.valid();
            let g = crate::layer_stats::grads(&valid, &grads);
            (crate::layer_stats::params(&valid), g)
        });
        let model = self.optim.step(lr, model, grads);
        let stats = batch_stats(
            logits.inner(),
            targets.inner(),
            loss.inner(),
            mask.map(|m| m.inner()),
        );
        let mut stepped = Stepped {
            stats,
            layers: None,
            histograms: None,
        };
        if let (Some(t), Some((before, g))) = (traced, before) {
            let after = model.valid();
            let acts = t.inner();
            let (params, lengths) = (
                crate::layer_stats::params(&after),
                crate::layer_stats::lengths(&after),
            );
            if probe == Probe::LayersAndHistograms {
                let values = crate::layer_stats::histogram_values(&params, &g, lengths, &acts);
                stepped.histograms = Some(values);
            }
            let parts = crate::layer_stats::sample(before, params, g, lengths, &acts);
            stepped.layers = Some(parts);
        }
        self.model = Some(model);
        stepped
    }

    fn note_first_batch(&mut self) {
        if self.first_batch_logged {
            return;
        }
        self.first_batch_logged = true;
        self.job.events.emit(EventKind::Phase(Phase {
            phase: PhaseKind::Training,
            message: format!(
                "first batch {:.1} s after training started (start-up: kernel compilation, autotune, first allocation)",
                self.started.elapsed().as_secs_f64()
            ),
        }));
    }

    /// Evaluation, sample predictions and the checkpoint after `epoch`;
    /// `Err` when the checkpoint cannot be written (the run fails).
    fn end_epoch(&mut self, epoch: usize, totals: EpochTotals) -> Result<(), TrainFailure> {
        let config = self.job.config;
        let step = self.progress.step;
        self.outcome.images_trained += totals.images as u64;
        self.outcome.steps = step;
        self.outcome.epochs_completed = epoch;
        let events = &mut *self.job.events;
        if !totals.loss_sum.is_finite() {
            events.emit(EventKind::Log(LogMessage {
                level: LogLevel::Warn,
                message: format!(
                    "epoch {epoch}: training loss is not finite; try a lower learning rate"
                ),
            }));
        }
        let inference = self
            .model
            .as_ref()
            .expect("model present between steps")
            .valid();
        let batch = config.batch_size;
        let val_metrics = (self.data.val.len > 0)
            .then(|| evaluate(&inference, &self.data.val, Split::Val, epoch, step, batch));
        if let Some(m) = &val_metrics {
            events.emit(EventKind::Eval(m.clone()));
            if epoch < config.epochs {
                self.early_stop = self.progress.watch.observe(config, epoch, m);
            }
        }
        // The run's last epoch, whether asked for or stopped early, is tested.
        let last = epoch == config.epochs || self.early_stop.is_some();
        if config.eval_test_every_epoch || last {
            let m = evaluate(&inference, &self.data.test, Split::Test, epoch, step, batch);
            events.emit(EventKind::Eval(m.clone()));
            self.outcome.test = Some(m);
        }
        if !self.data.sample_positions.is_empty() {
            let samples = predict_samples(
                &inference,
                self.data.sample_images.clone(),
                &self.data.sample_positions,
                &self.job.splits.test,
                batch,
            );
            events.emit(EventKind::Samples(Samples {
                epoch,
                step,
                samples,
            }));
        }
        let score = val_metrics
            .as_ref()
            .map_or(totals.counts.accuracy(), |m| m.accuracy);
        let is_best = score > self.progress.best.1;
        if is_best {
            self.progress.best = (epoch, score);
        }
        self.save_checkpoint(epoch, val_metrics.map(|m| m.accuracy), is_best)
    }

    /// Writes the checkpoint of `epoch` and prunes old ones; a checkpoint
    /// that cannot be written (a full disk) fails the run: going on would
    /// train epochs that can never be resumed.
    fn save_checkpoint(
        &mut self,
        epoch: usize,
        val_accuracy: Option<f64>,
        is_best: bool,
    ) -> Result<(), TrainFailure> {
        let state = self.checkpoint_state(epoch, val_accuracy, 0);
        let dir = &self.job.checkpoint_dir;
        let keep = self.job.config.keep_checkpoints;
        let saved = self
            .write_checkpoint(&state)
            .and_then(|path| Ok((path, checkpoint::prune(dir, keep, self.progress.best.0)?)));
        match saved {
            Ok((path, removed)) => {
                self.job.events.emit(EventKind::Checkpoint(CheckpointSaved {
                    epoch,
                    step: self.progress.step,
                    path: path.display().to_string(),
                    best: is_best,
                    removed: removed.iter().map(|p| p.display().to_string()).collect(),
                    batches_into_epoch: None,
                }));
                Ok(())
            }
            Err(source) => Err(TrainFailure::WriteCheckpoint {
                epoch,
                dir: dir.clone(),
                source,
                last_good: checkpoint::latest(dir).ok().flatten().map(|(path, _)| path),
                run_id: self.job.events.run_id().to_string(),
            }),
        }
    }

    /// What a checkpoint after `epoch` epochs and `batches_into_epoch`
    /// batches of the next one records.
    fn checkpoint_state(
        &self,
        epoch: usize,
        val_accuracy: Option<f64>,
        batches_into_epoch: usize,
    ) -> CheckpointState {
        CheckpointState {
            run_id: self.job.events.run_id().to_string(),
            epoch,
            step: self.progress.step,
            config: self.job.config.clone(),
            val_accuracy,
            best_epoch: self.progress.best.0,
            best_score: self.progress.best.1,
            train_seconds: self.progress.previous_seconds + self.train_time.as_secs_f64(),
            batches_into_epoch,
            between_batches: false,
            lr_plan: Some(self.progress.lr_plan),
            early_stop: self.progress.watch,
            histogram_bins: self.progress.bins.clone(),
        }
    }

    /// The model and optimiser as they are now, written atomically.
    fn write_checkpoint(&self, state: &CheckpointState) -> std::io::Result<PathBuf> {
        let recorder = Rec::default();
        let model = self.model.as_ref().expect("model present between steps");
        let model_bytes = recorder
            .record(model.clone().into_record(), ())
            .map_err(std::io::Error::other)?;
        let optim_bytes = recorder
            .record(self.optim.to_record(), ())
            .map_err(std::io::Error::other)?;
        checkpoint::save(&self.job.checkpoint_dir, &model_bytes, &optim_bytes, state)
    }

    /// Whether a control of the run being reproduced falls due now.
    fn replay_due(&self) -> bool {
        self.job
            .replay
            .get(self.next_replay)
            .is_some_and(|(step, _)| *step <= self.progress.step)
    }

    /// Applies every control asked since the last batch (and those a
    /// reproduced run applied at this step), `batch` batches into `epoch`;
    /// holds the run while it is paused. Returns how long it was paused.
    fn steer(&mut self, epoch: usize, batch: usize, total_steps: u64) -> Duration {
        let mut requests = self
            .job
            .controls
            .as_ref()
            .map_or_else(Vec::new, |c| c.take());
        while self.replay_due() {
            let (_, action) = self.job.replay[self.next_replay].clone();
            self.next_replay += 1;
            requests.push(mnist_events::ControlRequest {
                action,
                source: "reproduce".into(),
            });
        }
        let mut paused_at: Option<Instant> = None;
        let mut paused = Duration::ZERO;
        loop {
            for request in requests.drain(..) {
                self.apply(
                    request,
                    epoch,
                    batch,
                    total_steps,
                    &mut paused_at,
                    &mut paused,
                );
            }
            if paused_at.is_none() || self.job.stop.is_requested() {
                break;
            }
            // Woken at once by the next request; a stop is seen within this.
            let Some(controls) = &self.job.controls else {
                break; // Only a control pauses, and only a control resumes.
            };
            requests = controls.wait(Duration::from_millis(200));
        }
        paused + paused_at.map_or(Duration::ZERO, |t| t.elapsed())
    }

    /// Applies one control and records it as a `control` event.
    fn apply(
        &mut self,
        request: mnist_events::ControlRequest,
        epoch: usize,
        batch: usize,
        total_steps: u64,
        paused_at: &mut Option<Instant>,
        paused: &mut Duration,
    ) {
        use mnist_events::ControlAction as A;
        let step = self.progress.step;
        let mut control = mnist_events::Control {
            action: request.action.clone(),
            step,
            epoch,
            source: request.source.clone(),
            old_lr: None,
            old_schedule: None,
            paused_seconds: None,
            message: String::new(),
        };
        let by = &request.source;
        control.message = match &request.action {
            A::Pause if paused_at.is_some() => return,
            A::Pause => {
                *paused_at = Some(Instant::now());
                format!("paused at step {step} ({by})")
            }
            A::Resume => {
                let Some(at) = paused_at.take() else { return };
                let held = at.elapsed();
                *paused += held;
                control.paused_seconds = Some(held.as_secs_f64());
                format!(
                    "resumed at step {step} after {:.1} s paused ({by})",
                    held.as_secs_f64()
                )
            }
            A::SetLr { lr, schedule } => {
                let old = self.progress.lr_plan;
                let schedule = match schedule.as_deref() {
                    Some("cosine") => Schedule::Cosine,
                    Some(_) => Schedule::Constant,
                    None => old.schedule,
                };
                control.old_lr = Some(old.rate(step, total_steps));
                control.old_schedule = Some(schedule_name(old.schedule));
                self.progress.lr_plan = LrPlan {
                    lr: *lr,
                    schedule,
                    from_step: step,
                };
                format!(
                    "learning rate {:.3e} → {lr:.3e} ({}) from step {} ({by})",
                    old.rate(step, total_steps),
                    schedule_name(schedule),
                    step + 1
                )
            }
            A::Eval { split } => format!("{} evaluation at step {step} ({by})", split.as_str()),
            A::Checkpoint => format!("checkpoint at step {step} ({by})"),
            A::StopAfterEpoch => {
                self.stop_after_epoch = Some(by.clone());
                format!("stopping after epoch {epoch} ({by})")
            }
        };
        self.job.events.emit(EventKind::Control(control));
        match request.action {
            A::Eval { split } => self.evaluate_now(split, epoch),
            A::Checkpoint => self.checkpoint_now(epoch, batch),
            _ => {}
        }
    }

    /// An evaluation between batches, asked for by a person.
    fn evaluate_now(&mut self, split: Split, epoch: usize) {
        let data = match split {
            Split::Test => &self.data.test,
            _ => &self.data.val,
        };
        if data.len == 0 {
            self.job.events.emit(EventKind::Log(LogMessage {
                level: LogLevel::Warn,
                message: "no validation set to evaluate (val_size is 0)".into(),
            }));
            return;
        }
        let inference = self
            .model
            .as_ref()
            .expect("model present between steps")
            .valid();
        let batch = self.job.config.batch_size;
        let m = evaluate(
            &inference,
            data,
            split,
            epoch.saturating_sub(1),
            self.progress.step,
            batch,
        );
        if split == Split::Test {
            self.outcome.test = Some(m.clone());
        }
        self.job.events.emit(EventKind::Eval(m));
    }

    /// A checkpoint between batches, `batch` batches into `epoch`: a resume
    /// continues from it; the epoch's own checkpoint replaces it.
    fn checkpoint_now(&mut self, epoch: usize, batch: usize) {
        let state = CheckpointState {
            between_batches: true,
            ..self.checkpoint_state(epoch - 1, None, batch)
        };
        let kept = self.job.config.keep_checkpoints;
        let written = self.write_checkpoint(&state).and_then(|path| {
            let removed = checkpoint::prune(&self.job.checkpoint_dir, kept, self.progress.best.0)?;
            Ok((path, removed))
        });
        let kind = match written {
            Ok((path, removed)) => EventKind::Checkpoint(CheckpointSaved {
                epoch: epoch - 1,
                step: self.progress.step,
                path: path.display().to_string(),
                best: false,
                removed: removed.iter().map(|p| p.display().to_string()).collect(),
                batches_into_epoch: Some(batch),
            }),
            // Not fatal here: the epoch's own checkpoint will say if the disk is full.
            Err(e) => EventKind::Log(LogMessage {
                level: LogLevel::Warn,
                message: format!(
                    "the checkpoint asked for at step {} could not be written: {e}",
                    self.progress.step
                ),
            }),
        };
        self.job.events.emit(kind);
    }
}

/// The 31-value metrics row of one batch: `[loss, tp×10, predicted×10, actual×10]`
/// (`targets` already masked; `mask` keeps filler rows out of the predictions).
fn batch_stats<B: Backend>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 2>,
    loss: Tensor<B, 1>,
    mask: Option<Tensor<B, 2>>,
) -> Tensor<B, 2> {
    let mut predicted = logits
        .argmax(1)
        .squeeze_dim::<1>(1)
        .one_hot::<2>(CLASSES)
        .float();
    if let Some(mask) = mask {
        predicted = predicted * mask;
    }
    let tp = (predicted.clone() * targets.clone()).sum_dim(0);
    Tensor::cat(
        vec![
            loss.reshape([1, 1]),
            tp,
            predicted.sum_dim(0),
            targets.sum_dim(0),
        ],
        1,
    )
}

/// Reads back every pending batch's metrics (and layer samples) in one
/// transfer and emits them; an epoch's histograms are read apart, once.
fn flush<B: Backend>(
    pending: &mut Vec<PendingBatch<B>>,
    totals: &mut EpochTotals,
    events: &mut EventStream,
    last_flush: &mut Instant,
    started: Instant,
    bins: &mut crate::layer_stats::Bins,
) {
    if pending.is_empty() {
        return;
    }
    // One transaction reads every tensor at once (one wait for the device,
    // and no kernel to join them first).
    let mut read = burn::tensor::Transaction::default();
    for p in pending.iter() {
        read = read.register(p.stepped.stats.clone());
        for part in p.stepped.layers.iter().flatten() {
            read = read.register(part.clone());
        }
    }
    let mut values = read
        .execute()
        .into_iter()
        .map(|data| data.iter::<f32>().collect::<Vec<f32>>());
    let images: usize = pending.iter().map(|p| p.size).sum();
    let seconds = last_flush.elapsed().as_secs_f64().max(1e-9);
    let images_per_sec = images as f64 / seconds;
    for p in pending.drain(..) {
        let row = values.next().expect("a row per batch");
        debug_assert_eq!(row.len(), STATS_WIDTH);
        // A step's layer sample before its batch: an alert on the batch's
        // loss can then say which layer's gradient rose on that step.
        if let Some(parts) = &p.stepped.layers {
            let layers: Vec<f32> = values.by_ref().take(parts.len()).flatten().collect();
            events.emit(EventKind::Layers(mnist_events::LayerStats {
                step: p.step,
                epoch: p.epoch,
                lr: p.lr,
                layers: crate::layer_stats::decode(&layers),
            }));
        }
        emit_batch(&p, &row, totals, events, images_per_sec, started);
        if let Some((tensor, lengths)) = p.stepped.histograms {
            let values: Vec<f32> = tensor.into_data().iter::<f32>().collect();
            let split = crate::layer_stats::split_values(&values, &lengths);
            events.emit(EventKind::Histograms(mnist_events::Histograms {
                step: p.step,
                epoch: p.epoch,
                layers: bins.histograms(&split),
            }));
        }
    }
    *last_flush = Instant::now();
}

/// One batch's `batch` event, from its metrics row, into the epoch's totals.
fn emit_batch<B: Backend>(
    p: &PendingBatch<B>,
    row: &[f32],
    totals: &mut EpochTotals,
    events: &mut EventStream,
    images_per_sec: f64,
    started: Instant,
) {
    let loss = row[0] as f64;
    let counts = ClassCounts::from_slice(&row[1..]);
    totals.counts.add(&counts);
    totals.loss_sum += loss * p.size as f64;
    totals.images += p.size;
    events.emit(EventKind::Batch(BatchMetrics {
        epoch: p.epoch,
        batch: p.batch,
        batches: p.batches,
        step: p.step,
        size: p.size,
        loss,
        accuracy: counts.accuracy(),
        f1_macro: counts.f1_macro(),
        epoch_loss: totals.loss_sum / totals.images as f64,
        epoch_accuracy: totals.counts.accuracy(),
        epoch_f1_macro: totals.counts.f1_macro(),
        lr: p.lr,
        images_per_sec,
        elapsed_s: started.elapsed().as_secs_f64(),
    }));
}

/// Evaluates `model` on a whole split in batches of the training batch
/// size (filled up like training's last batch, so no new kernel shapes),
/// accumulating on the device and reading back once.
fn evaluate<B: Backend>(
    model: &Cnn<B>,
    split: &DeviceSplit<B>,
    which: Split,
    epoch: usize,
    step: u64,
    batch: usize,
) -> EvalMetrics {
    let started = Instant::now();
    let device = split.images.device();
    let order = Tensor::<B, 1, Int>::arange(0..split.len as i64, &device);
    let mut sums = Tensor::<B, 1>::zeros([2], &device);
    let mut confusion = Tensor::<B, 2>::zeros([CLASSES, CLASSES], &device);
    for lo in (0..split.len).step_by(batch) {
        let hi = (lo + batch).min(split.len);
        let (idx, mask) = full_batch(&order, lo, hi, batch, &device);
        let images = split.images.clone().select(0, idx.clone());
        let mut targets = split
            .labels
            .clone()
            .select(0, idx)
            .one_hot::<2>(CLASSES)
            .float();
        if let Some(mask) = &mask {
            targets = targets * mask.clone();
        }
        let log_probs = log_softmax(model.forward(images), 1);
        let loss = -(log_probs.clone() * targets.clone()).sum();
        let mut squared = (log_probs.clone().exp() - targets.clone()).powi_scalar(2);
        if let Some(mask) = &mask {
            squared = squared * mask.clone();
        }
        let predicted = log_probs
            .argmax(1)
            .squeeze_dim::<1>(1)
            .one_hot::<2>(CLASSES)
            .float();
        confusion = confusion + targets.transpose().matmul(predicted);
        sums = sums + Tensor::cat(vec![loss, squared.sum()], 0);
    }
    let values: Vec<f32> = Tensor::cat(vec![sums, confusion.reshape([CLASSES * CLASSES])], 0)
        .into_data()
        .iter::<f32>()
        .collect();
    let n = split.len.max(1) as f64;
    let confusion: Vec<Vec<u64>> = values[2..]
        .chunks(CLASSES)
        .map(|row| row.iter().map(|&v| v.round() as u64).collect())
        .collect();
    let m = from_confusion(&confusion);
    EvalMetrics {
        split: which,
        epoch,
        step,
        images: split.len,
        loss: values[0] as f64 / n,
        accuracy: m.accuracy,
        f1_macro: m.f1_macro,
        mse: values[1] as f64 / (n * CLASSES as f64),
        per_class: m.per_class,
        confusion,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Predicts the fixed sample images, in full batches like evaluation.
fn predict_samples<B: Backend>(
    model: &Cnn<B>,
    images: Tensor<B, 4>,
    positions: &[usize],
    test: &MnistSplit,
    batch: usize,
) -> Vec<Sample> {
    let device = images.device();
    let n = positions.len();
    let order = Tensor::<B, 1, Int>::arange(0..n as i64, &device);
    let mut probs: Vec<f32> = Vec::with_capacity(n * CLASSES);
    for lo in (0..n).step_by(batch) {
        let hi = (lo + batch).min(n);
        let (idx, _) = full_batch(&order, lo, hi, batch, &device);
        let logits = model
            .forward(images.clone().select(0, idx))
            .slice(s![0..hi - lo]);
        probs.extend(
            burn::tensor::activation::softmax(logits, 1)
                .into_data()
                .iter::<f32>(),
        );
    }
    positions
        .iter()
        .zip(probs.chunks(CLASSES))
        .map(|(&i, p)| {
            let predicted = crate::infer::argmax(p);
            let confidence = p[predicted];
            Sample {
                index: test.first_index + i,
                png_base64: png_base64(test.image(i)),
                label: test.labels[i],
                predicted: predicted as u8,
                confidence: confidence as f64,
            }
        })
        .collect()
}
