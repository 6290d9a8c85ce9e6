//! What one layer-statistics sample costs against one training step, on
//! the device, steady state: plain steps (forward, loss, backward, Adam,
//! the loss read back) alternate with sampled ones (the same, with the
//! sample read back in the same transaction, as the trainer does), many
//! times after a warm-up; the sample's cost is the difference of the
//! medians.
//!
//!   cargo run --release -p mnist-train --features wgpu,cuda --example sample_cost -- \
//!       [BACKEND] [BATCH] [REPS] [KERNELS]
//!
//! BACKEND: cpu (default), wgpu or cuda; BATCH: 128; REPS: 50; KERNELS:
//! the four convolutions' widths, `32,64,64,64` (tiny ones on lavapipe
//! leave mostly the per-op and per-launch costs, as on a fast GPU). Prints the
//! median step and sample times and what a sample every N steps costs
//! (sample / (N × step)) at the default interval and at a few others.
//! With `CUBECL_DEBUG_LOG=FILE CUBECL_DEBUG_OPTION=profile` a GPU backend
//! also writes a per-kernel table of one sample's launches to FILE.

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Distribution, Int, Tensor};
use mnist_model::{Cnn, CnnConfig};
use mnist_train::backend::resolve;
use mnist_train::layer_stats;
use mnist_train::{BackendChoice, Resolved};
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let backend: BackendChoice = args
        .next()
        .map_or(BackendChoice::Cpu, |a| a.parse().expect("BACKEND"));
    let batch: usize = args.next().map_or(128, |a| a.parse().expect("BATCH"));
    let reps: usize = args.next().map_or(50, |a| a.parse().expect("REPS"));
    let kernels: [usize; 4] = args.next().map_or(mnist_model::KERNELS_DEFAULT, |a| {
        let k: Vec<usize> = a.split(',').map(|k| k.parse().expect("KERNELS")).collect();
        k.try_into().expect("four KERNELS")
    });
    let picked = resolve(backend, None).expect("the backend starts");
    println!(
        "backend {} ({}), batch {batch}, kernels {kernels:?}, {reps} reps",
        picked.backend.name(),
        picked.device
    );
    let (step, sample) = match picked.backend {
        Resolved::Cpu => {
            measure::<Autodiff<burn::backend::Flex>>(Default::default(), batch, reps, kernels)
        }
        #[cfg(feature = "wgpu")]
        Resolved::Wgpu(device) => {
            measure::<Autodiff<burn::backend::Wgpu>>(device, batch, reps, kernels)
        }
        #[cfg(feature = "cuda")]
        Resolved::Cuda(index) => measure::<Autodiff<burn::backend::Cuda>>(
            burn::backend::cuda::CudaDevice::new(index),
            batch,
            reps,
            kernels,
        ),
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "median step {:.3} ms, a sample adds {:.3} ms",
        ms(step),
        ms(sample)
    );
    for every in [mnist_train::config::LAYER_STATS_EVERY, 10, 100, 500] {
        let cost = sample.as_secs_f64() / (every as f64 * step.as_secs_f64());
        println!(
            "a sample every {every:>4} steps: {:.2}% of training time (images/s ratio {:.3})",
            100.0 * cost,
            1.0 / (1.0 + cost)
        );
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median time of a plain step, and how much longer a sampled step takes
/// (its traced forward, the gradients and parameters gathered before and
/// after, the sample, read back with the loss in one transaction).
fn measure<B: AutodiffBackend>(
    device: B::Device,
    batch: usize,
    reps: usize,
    kernels: [usize; 4],
) -> (Duration, Duration) {
    B::seed(&device, 1);
    let mut model: Cnn<B> = CnnConfig::new().with_kernels(kernels).init(&device);
    let mut optim = AdamConfig::new().init::<B, Cnn<B>>();
    let images =
        Tensor::<B, 4>::random([batch, 1, 28, 28], Distribution::Normal(0.0, 1.0), &device);
    let labels = Tensor::<B, 1, Int>::random([batch], Distribution::Uniform(0.0, 10.0), &device);
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut step = |sampled: bool| {
        let t0 = Instant::now();
        let (logits, traced) = match sampled {
            false => (model.forward(images.clone()), None),
            true => {
                let t = model.forward_traced(images.clone());
                (t.logits.clone(), Some(t))
            }
        };
        let loss = loss_fn.forward(logits, labels.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let before = traced.as_ref().map(|_| {
            let valid = model.valid();
            let g = layer_stats::grads(&valid, &grads);
            (layer_stats::params(&valid), g, layer_stats::lengths(&valid))
        });
        model = optim.step(1e-3, model.clone(), grads);
        let mut read = burn::tensor::Transaction::default().register(loss.inner());
        if let (Some(t), Some((before, g, lengths))) = (traced, before) {
            let acts = t.inner();
            let after = layer_stats::params(&model.valid());
            for part in layer_stats::sample(before, after, g, lengths, &acts) {
                read = read.register(part);
            }
        }
        read.execute();
        t0.elapsed()
    };
    let (mut plain, mut sampled) = (Vec::new(), Vec::new());
    for rep in 0..reps + 3 {
        // Alternate which goes first, so a drift favours neither.
        let (a, b) = match rep % 2 {
            0 => (step(false), step(true)),
            _ => {
                let b = step(true);
                (step(false), b)
            }
        };
        if rep >= 3 {
            plain.push(a);
            sampled.push(b);
        }
    }
    // Ends a GPU backend's profile (CubeCL prints it at a sync).
    B::sync(&device).expect("the device syncs");
    let (plain, sampled) = (median(plain), median(sampled));
    (plain, sampled.saturating_sub(plain))
}
