//! The training loop, generic over the Burn backend.
//!
//! Metrics stay on the device: each step computes a 31-value row (loss, true
//! positives, predicted and actual counts per class) that is read back in
//! one transfer for many batches at a time ([`FLUSH_EVERY`]), so a GPU is not
//! made to wait for the host after every batch. On the CPU every flush is a
//! single batch anyway, since a batch takes longer than the flush interval.

use crate::checkpoint::{self, CheckpointState};
use crate::config::{OptimizerKind, Schedule, TrainConfig};
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
    /// Checked before each batch: once requested, the run stops.
    pub stop: mnist_events::Stop,
    /// The backend's short name (`cpu`, `wgpu`, `cuda`), for `run_started`.
    pub backend: &'static str,
    /// The device as a user knows it, for `run_started`.
    pub device_name: String,
    /// The device's index within the backend, for `run_started`.
    pub device_index: Option<usize>,
    /// Which backend and device were picked and why, for `run_started` and the run log.
    pub backend_note: String,
}

/// How a job ended.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// A stop was requested before the last epoch finished.
    pub stopped: bool,
    /// Why the run could not go on (it ends as failed, keeping its counts).
    pub failure: Option<String>,
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
}

/// Trains on `device` with the optimiser the config names.
pub(crate) fn train<B: AutodiffBackend>(
    device: B::Device,
    job: Job<'_>,
) -> Result<Outcome, String> {
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

/// Learning rate at 0-based step `step` of `total` steps.
pub fn learning_rate(config: &TrainConfig, step: u64, total: u64) -> f64 {
    match config.schedule {
        Schedule::Constant => config.lr,
        Schedule::Cosine => {
            let t = (step as f64 / total.max(1) as f64).min(1.0);
            config.lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
        }
    }
}

/// Batch metrics waiting on the device to be read back.
struct PendingBatch<B: Backend> {
    epoch: usize,
    batch: usize,
    batches: usize,
    step: u64,
    size: usize,
    lr: f64,
    stats: Tensor<B, 2>,
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
}

fn run_loop<B, O>(
    device: B::Device,
    job: Job<'_>,
    model: Cnn<B>,
    optim: O,
) -> Result<Outcome, String>
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
) -> Result<(Cnn<B>, O, Progress), String>
where
    B: AutodiffBackend,
    O: Optimizer<Cnn<B>, B>,
{
    let mut progress = Progress {
        start_epoch: 0,
        step: 0,
        best: (0, f64::NEG_INFINITY),
        previous_seconds: 0.0,
    };
    let Some((path, state)) = &job.resume else {
        return Ok((model, optim, progress));
    };
    let recorder = Rec::default();
    let read = |file: &str| {
        std::fs::read(path.join(file)).map_err(|e| format!("{}: {e}", path.join(file).display()))
    };
    let record = recorder
        .load(read(checkpoint::MODEL_FILE)?, device)
        .map_err(|e| format!("cannot load model from {}: {e}", path.display()))?;
    model = model.load_record(record);
    let record = recorder
        .load(read(checkpoint::OPTIM_FILE)?, device)
        .map_err(|e| format!("cannot load optimiser state from {}: {e}", path.display()))?;
    optim = optim.load_record(record);
    progress.start_epoch = state.epoch;
    progress.step = state.step;
    progress.best = (state.best_epoch, state.best_score);
    progress.previous_seconds = state.train_seconds;
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
        let resume = self.job.resume.as_ref().map(|(_, s)| s);
        let batches = self.batches();
        let events = &mut *self.job.events;
        events.emit(EventKind::RunStarted(RunStarted {
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
        }));
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
        let epoch_started = Instant::now();
        let mut last_flush = Instant::now();
        for batch in 0..batches {
            if self.job.stop.is_requested() {
                flush(
                    &mut pending,
                    &mut totals,
                    self.job.events,
                    &mut last_flush,
                    self.started,
                );
                self.train_time += epoch_started.elapsed();
                return None;
            }
            let lo = batch * config.batch_size;
            let hi = (lo + config.batch_size).min(self.data.train.len);
            let lr = learning_rate(config, self.progress.step, total_steps);
            let stats = self.step(&order, lo, hi, lr);
            self.progress.step += 1;
            pending.push(PendingBatch {
                epoch,
                batch: batch + 1,
                batches,
                step: self.progress.step,
                size: hi - lo,
                lr,
                stats,
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
                );
                self.note_first_batch();
            }
        }
        self.train_time += epoch_started.elapsed();
        Some(totals)
    }

    /// One optimiser step on the rows `lo..hi` of `order`; returns the
    /// batch's metrics row, left on the device.
    fn step(
        &mut self,
        order: &Tensor<B, 1, Int>,
        lo: usize,
        hi: usize,
        lr: f64,
    ) -> Tensor<B::InnerBackend, 2> {
        let (idx, mask) = full_batch(order, lo, hi, self.job.config.batch_size, &self.device);
        let images = self.data.train.images.clone().select(0, idx.clone());
        let labels = self.data.train.labels.clone().select(0, idx);
        let model = self
            .model
            .take()
            .expect("the model is put back after every step");
        let logits = model.forward(images);
        let mut targets = labels.one_hot::<2>(CLASSES).float();
        if let Some(mask) = &mask {
            targets = targets * mask.clone();
        }
        let loss = -(log_softmax(logits.clone(), 1) * targets.clone()).sum() / (hi - lo) as f64;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        self.model = Some(self.optim.step(lr, model, grads));
        batch_stats(
            logits.inner(),
            targets.inner(),
            loss.inner(),
            mask.map(|m| m.inner()),
        )
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
    fn end_epoch(&mut self, epoch: usize, totals: EpochTotals) -> Result<(), String> {
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
        }
        if config.eval_test_every_epoch || epoch == config.epochs {
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
    ) -> Result<(), String> {
        let config = self.job.config;
        let recorder = Rec::default();
        let model = self.model.as_ref().expect("model present between steps");
        let state = CheckpointState {
            run_id: self.job.events.run_id().to_string(),
            epoch,
            step: self.progress.step,
            config: config.clone(),
            val_accuracy,
            best_epoch: self.progress.best.0,
            best_score: self.progress.best.1,
            train_seconds: self.progress.previous_seconds + self.train_time.as_secs_f64(),
        };
        let model_bytes = recorder
            .record(model.clone().into_record(), ())
            .map_err(|e| e.to_string())?;
        let optim_bytes = recorder
            .record(self.optim.to_record(), ())
            .map_err(|e| e.to_string())?;
        let dir = &self.job.checkpoint_dir;
        let saved = checkpoint::save(dir, &model_bytes, &optim_bytes, &state).and_then(|path| {
            Ok((
                path,
                checkpoint::prune(dir, config.keep_checkpoints, self.progress.best.0)?,
            ))
        });
        match saved {
            Ok((path, removed)) => {
                self.job.events.emit(EventKind::Checkpoint(CheckpointSaved {
                    epoch,
                    step: self.progress.step,
                    path: path.display().to_string(),
                    best: is_best,
                    removed: removed.iter().map(|p| p.display().to_string()).collect(),
                }));
                Ok(())
            }
            Err(e) => Err(format!(
                "epoch {epoch}: the checkpoint could not be written in {}: {e}; {}",
                dir.display(),
                match checkpoint::latest(dir) {
                    Ok(Some((path, _))) => format!(
                        "the last good checkpoint is {}: free space, then continue with --resume {}",
                        path.display(),
                        self.job.events.run_id()
                    ),
                    _ => "no earlier checkpoint was saved".to_string(),
                }
            )),
        }
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

/// Reads back every pending batch's metrics in one transfer and emits them.
fn flush<B: Backend>(
    pending: &mut Vec<PendingBatch<B>>,
    totals: &mut EpochTotals,
    events: &mut EventStream,
    last_flush: &mut Instant,
    started: Instant,
) {
    if pending.is_empty() {
        return;
    }
    let rows: Vec<Tensor<B, 2>> = pending.iter().map(|p| p.stats.clone()).collect();
    let values: Vec<f32> = Tensor::cat(rows, 0).into_data().iter::<f32>().collect();
    let images: usize = pending.iter().map(|p| p.size).sum();
    let seconds = last_flush.elapsed().as_secs_f64().max(1e-9);
    let images_per_sec = images as f64 / seconds;
    for (p, row) in pending.drain(..).zip(values.chunks(STATS_WIDTH)) {
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
    *last_flush = Instant::now();
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
