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
    RunStarted, Sample, Samples, Split,
};
use mnist_model::Cnn;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Longest time batch metrics wait on the device before being read back.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Most batches whose metrics wait on the device at once.
const FLUSH_MAX_BATCHES: usize = 256;
/// Batch size for evaluation (no gradients, so larger than training's).
const EVAL_BATCH: usize = 500;
/// Values per batch in the device-side metrics row.
const STATS_WIDTH: usize = 1 + 3 * CLASSES;

type Rec = NamedMpkBytesRecorder<FullPrecisionSettings>;

/// Everything a training job needs besides the device.
pub(crate) struct Job<'a> {
    pub config: &'a TrainConfig,
    pub splits: &'a Splits,
    pub events: &'a mut EventStream,
    /// The label overrides applied to the data, if any.
    pub label_overrides: Option<mnist_events::LabelOverridesUsed>,
    pub checkpoint_dir: PathBuf,
    pub resume: Option<(PathBuf, CheckpointState)>,
    pub stop: mnist_events::Stop,
    pub backend: &'static str,
    pub device_name: String,
    /// Which backend was picked and why, for the run log.
    pub backend_note: String,
}

/// How a job ended.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub stopped: bool,
    /// Why the run could not go on (it ends as failed, keeping its counts).
    pub failure: Option<String>,
    pub epochs_completed: usize,
    pub steps: u64,
    /// Seconds spent in training steps in this process.
    pub train_seconds: f64,
    /// Training seconds over all resumptions.
    pub total_train_seconds: f64,
    pub images_trained: u64,
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

fn run_loop<B, O>(
    device: B::Device,
    job: Job<'_>,
    mut model: Cnn<B>,
    mut optim: O,
) -> Result<Outcome, String>
where
    B: AutodiffBackend,
    O: Optimizer<Cnn<B>, B>,
{
    let config = job.config;
    let events = job.events;
    let recorder = Rec::default();

    let mut start_epoch = 0;
    let mut step: u64 = 0;
    let mut best = (0usize, f64::NEG_INFINITY);
    let mut previous_seconds = 0.0;
    if let Some((path, state)) = &job.resume {
        let model_bytes = std::fs::read(path.join(checkpoint::MODEL_FILE))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let optim_bytes = std::fs::read(path.join(checkpoint::OPTIM_FILE))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let record = recorder
            .load(model_bytes, &device)
            .map_err(|e| format!("cannot load model from {}: {e}", path.display()))?;
        model = model.load_record(record);
        let record = recorder
            .load(optim_bytes, &device)
            .map_err(|e| format!("cannot load optimiser state from {}: {e}", path.display()))?;
        optim = optim.load_record(record);
        start_epoch = state.epoch;
        step = state.step;
        best = (state.best_epoch, state.best_score);
        previous_seconds = state.train_seconds;
    }

    let train: DeviceSplit<B> = upload(&job.splits.train, &device);
    let val: DeviceSplit<B::InnerBackend> = upload(&job.splits.val, &device);
    let test: DeviceSplit<B::InnerBackend> = upload(&job.splits.test, &device);
    let sample_positions = sample_indices(test.len);
    let sample_images = test.images.clone().select(
        0,
        Tensor::from_data(
            TensorData::new(
                sample_positions
                    .iter()
                    .map(|&i| i as i32)
                    .collect::<Vec<_>>(),
                [sample_positions.len()],
            ),
            &device,
        ),
    );

    let batches = train.len.div_ceil(config.batch_size);
    let total_steps = (batches * config.epochs) as u64;
    events.emit(EventKind::RunStarted(RunStarted {
        config: serde_json::to_value(config).expect("config serialises"),
        model: config.model().summary(),
        backend: job.backend.to_string(),
        device: job.device_name.clone(),
        train_size: train.len,
        val_size: val.len,
        test_size: test.len,
        batches_per_epoch: batches,
        resumed_from_epoch: job.resume.as_ref().map(|(_, s)| s.epoch),
        resumed_from_step: job.resume.as_ref().map(|(_, s)| s.step),
        label_overrides: job.label_overrides.clone(),
    }));
    events.emit(EventKind::Log(LogMessage {
        level: LogLevel::Info,
        message: job.backend_note.clone(),
    }));

    if job.backend != "cpu" {
        // The page and the progress bar show this while the GPU backend
        // compiles its kernels and autotunes before the first step.
        events.emit(EventKind::Log(LogMessage {
            level: LogLevel::Info,
            message: "compiling GPU kernels and autotuning before the first batch: minutes on a fresh machine, seconds once cached".into(),
        }));
    }
    let started = Instant::now();
    let mut first_batch_logged = false;
    let mut outcome = Outcome {
        epochs_completed: start_epoch,
        steps: step,
        ..Outcome::default()
    };
    let mut train_time = Duration::ZERO;

    'epochs: for epoch in start_epoch + 1..=config.epochs {
        // Dropout draws from the backend RNG: reseed per epoch so a resumed
        // run continues exactly as an uninterrupted one would.
        B::seed(&device, config.seed.wrapping_add(epoch as u64));
        mnist_kernels::seed(config.seed.wrapping_add(epoch as u64));
        let order: Vec<i32> = epoch_order(train.len, config.seed, epoch)
            .into_iter()
            .map(|i| i as i32)
            .collect();
        let order = Tensor::<B, 1, Int>::from_data(TensorData::new(order, [train.len]), &device);
        let mut totals = EpochTotals::default();
        let mut pending: Vec<PendingBatch<B::InnerBackend>> = Vec::new();
        let epoch_started = Instant::now();
        let mut last_flush = Instant::now();

        for batch in 0..batches {
            if job.stop.is_requested() {
                flush(&mut pending, &mut totals, events, &mut last_flush, started);
                outcome.stopped = true;
                break 'epochs;
            }
            let lo = batch * config.batch_size;
            let hi = (lo + config.batch_size).min(train.len);
            let idx = order.clone().slice([lo..hi]);
            let images = train.images.clone().select(0, idx.clone());
            let labels = train.labels.clone().select(0, idx);
            let lr = learning_rate(config, step, total_steps);

            let logits = model.forward(images);
            let targets = labels.one_hot::<2>(CLASSES).float();
            let loss = -(log_softmax(logits.clone(), 1) * targets.clone()).sum() / (hi - lo) as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
            step += 1;

            pending.push(PendingBatch {
                epoch,
                batch: batch + 1,
                batches,
                step,
                size: hi - lo,
                lr,
                stats: batch_stats(logits.inner(), targets.inner(), loss.inner()),
            });
            if last_flush.elapsed() >= FLUSH_EVERY
                || pending.len() >= FLUSH_MAX_BATCHES
                || batch + 1 == batches
            {
                flush(&mut pending, &mut totals, events, &mut last_flush, started);
                if !first_batch_logged {
                    first_batch_logged = true;
                    events.emit(EventKind::Log(LogMessage {
                        level: LogLevel::Info,
                        message: format!(
                            "first batch {:.1} s after training started (start-up: kernel compilation, autotune, first allocation)",
                            started.elapsed().as_secs_f64()
                        ),
                    }));
                }
            }
        }
        let epoch_seconds = epoch_started.elapsed();
        train_time += epoch_seconds;
        outcome.images_trained += totals.images as u64;
        outcome.steps = step;
        outcome.epochs_completed = epoch;
        if !totals.loss_sum.is_finite() {
            events.emit(EventKind::Log(LogMessage {
                level: LogLevel::Warn,
                message: format!(
                    "epoch {epoch}: training loss is not finite; try a lower learning rate"
                ),
            }));
        }

        let inference = model.valid();
        let val_metrics =
            (val.len > 0).then(|| evaluate(&inference, &val, Split::Val, epoch, step));
        if let Some(m) = &val_metrics {
            events.emit(EventKind::Eval(m.clone()));
        }
        if config.eval_test_every_epoch || epoch == config.epochs {
            let m = evaluate(&inference, &test, Split::Test, epoch, step);
            events.emit(EventKind::Eval(m.clone()));
            outcome.test = Some(m);
        }
        if !sample_positions.is_empty() {
            let samples = predict_samples(
                &inference,
                sample_images.clone(),
                &sample_positions,
                &job.splits.test,
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
        let is_best = score > best.1;
        if is_best {
            best = (epoch, score);
        }
        let state = CheckpointState {
            run_id: events.run_id().to_string(),
            epoch,
            step,
            config: config.clone(),
            val_accuracy: val_metrics.as_ref().map(|m| m.accuracy),
            best_epoch: best.0,
            best_score: best.1,
            train_seconds: previous_seconds + train_time.as_secs_f64(),
        };
        let model_bytes = recorder
            .record(model.clone().into_record(), ())
            .map_err(|e| e.to_string())?;
        let optim_bytes = recorder
            .record(optim.to_record(), ())
            .map_err(|e| e.to_string())?;
        match checkpoint::save(&job.checkpoint_dir, &model_bytes, &optim_bytes, &state).and_then(
            |path| {
                Ok((
                    path,
                    checkpoint::prune(&job.checkpoint_dir, config.keep_checkpoints, best.0)?,
                ))
            },
        ) {
            Ok((path, removed)) => {
                events.emit(EventKind::Checkpoint(CheckpointSaved {
                    epoch,
                    step,
                    path: path.display().to_string(),
                    best: is_best,
                    removed: removed.iter().map(|p| p.display().to_string()).collect(),
                }));
            }
            // A checkpoint that cannot be written (a full disk) fails the
            // run: going on would train epochs that can never be resumed.
            Err(e) => {
                outcome.failure = Some(format!(
                    "epoch {epoch}: the checkpoint could not be written in {}: {e}; {}",
                    job.checkpoint_dir.display(),
                    match checkpoint::latest(&job.checkpoint_dir) {
                        Ok(Some((path, _))) => format!(
                            "the last good checkpoint is {}: free space, then continue with --resume {}",
                            path.display(),
                            events.run_id()
                        ),
                        _ => "no earlier checkpoint was saved".to_string(),
                    }
                ));
                break 'epochs;
            }
        }
    }
    outcome.train_seconds = train_time.as_secs_f64();
    outcome.total_train_seconds = previous_seconds + outcome.train_seconds;
    Ok(outcome)
}

/// The 31-value metrics row of one batch: `[loss, tp×10, predicted×10, actual×10]`.
fn batch_stats<B: Backend>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 2>,
    loss: Tensor<B, 1>,
) -> Tensor<B, 2> {
    let predicted = logits
        .argmax(1)
        .squeeze_dim::<1>(1)
        .one_hot::<2>(CLASSES)
        .float();
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

/// Evaluates `model` on a whole split, accumulating on the device and reading
/// back once.
fn evaluate<B: Backend>(
    model: &Cnn<B>,
    split: &DeviceSplit<B>,
    which: Split,
    epoch: usize,
    step: u64,
) -> EvalMetrics {
    let started = Instant::now();
    let device = split.images.device();
    let mut sums = Tensor::<B, 1>::zeros([2], &device);
    let mut confusion = Tensor::<B, 2>::zeros([CLASSES, CLASSES], &device);
    for lo in (0..split.len).step_by(EVAL_BATCH) {
        let hi = (lo + EVAL_BATCH).min(split.len);
        let images = split.images.clone().slice([lo..hi]);
        let targets = split
            .labels
            .clone()
            .slice([lo..hi])
            .one_hot::<2>(CLASSES)
            .float();
        let log_probs = log_softmax(model.forward(images), 1);
        let loss = -(log_probs.clone() * targets.clone()).sum();
        let mse = (log_probs.clone().exp() - targets.clone())
            .powi_scalar(2)
            .sum();
        let predicted = log_probs
            .argmax(1)
            .squeeze_dim::<1>(1)
            .one_hot::<2>(CLASSES)
            .float();
        confusion = confusion + targets.transpose().matmul(predicted);
        sums = sums + Tensor::cat(vec![loss, mse], 0);
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

/// Predicts the fixed sample images.
fn predict_samples<B: Backend>(
    model: &Cnn<B>,
    images: Tensor<B, 4>,
    positions: &[usize],
    test: &MnistSplit,
) -> Vec<Sample> {
    let probs: Vec<f32> = burn::tensor::activation::softmax(model.forward(images), 1)
        .into_data()
        .iter::<f32>()
        .collect();
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
