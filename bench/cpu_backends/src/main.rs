//! Which of Burn 0.21's CPU backends trains this network fastest?
//!
//! Trains the default network (kernels 32,64,64,64, Adam 1e-3, batch 64) on
//! real MNIST images for a fixed number of steps on `flex`, `ndarray` and
//! `candle`, each in a child process with a time limit (a backend that
//! stalls or panics is reported, not waited for), and prints images/s.
//!
//!   cd bench/cpu_backends && cargo run --release -- [STEPS] [LIMIT_S]
//!
//! (run from there, it reads ../../datasets/mnist)

// Candle is deprecated in Burn 0.21; it is here only to be measured.
#![allow(deprecated)]

use burn::backend::{Autodiff, Candle, Flex, NdArray};
use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor, TensorData};
use std::time::{Duration, Instant};

fn train<B: AutodiffBackend>(steps: usize) -> (f64, f32) {
    let device = B::Device::default();
    let data = mnist_data::load_dir(
        std::path::Path::new("../../datasets/mnist"),
        mnist_data::Verify::Skip,
    )
    .expect("real MNIST in datasets/mnist");
    let batch = 64;
    let n = batch * steps.min(200);
    let images = Tensor::<B, 4>::from_data(
        TensorData::new(
            mnist_data::normalise(&data.train_images[..n * 784]),
            [n, 1, 28, 28],
        ),
        &device,
    );
    let labels: Vec<i64> = data.train_labels[..n].iter().map(|&l| l as i64).collect();
    let labels = Tensor::<B, 1, Int>::from_data(TensorData::new(labels, [n]), &device);
    let mut model = mnist_model::CnnConfig::new().init::<B>(&device);
    let mut optim = AdamConfig::new().with_epsilon(1e-8).init();
    let mut last = 0.0;
    let mut started = None;
    for step in 0..steps {
        // The first step (allocation, warm-up) is not timed.
        if step == 1 {
            started = Some(Instant::now());
        }
        let lo = (step * batch) % n;
        let x = images.clone().slice([lo..lo + batch]);
        let y = labels.clone().slice([lo..lo + batch]);
        let logits = model.forward(x);
        let targets = y.one_hot::<2>(10).float();
        let loss = -(log_softmax(logits, 1) * targets).sum() / batch as f64;
        last = loss
            .clone()
            .into_scalar()
            .to_string()
            .parse()
            .unwrap_or(f32::NAN);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-3, model, grads);
    }
    let _ = model.valid();
    let secs = started.map_or(f64::NAN, |s| s.elapsed().as_secs_f64());
    ((steps - 1) as f64 * batch as f64 / secs, last)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() > 1 && args[1] == "--child" {
        let steps: usize = args[3].parse().unwrap();
        let (ips, loss) = match args[2].as_str() {
            "flex" => train::<Autodiff<Flex>>(steps),
            "ndarray" => train::<Autodiff<NdArray>>(steps),
            "candle" => train::<Autodiff<Candle>>(steps),
            other => panic!("unknown backend {other}"),
        };
        println!("{ips:.1} {loss:.4}");
        return;
    }
    let steps: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(60);
    let limit = Duration::from_secs(args.get(2).and_then(|s| s.parse().ok()).unwrap_or(120));
    println!(
        "{steps} steps of batch 64 (first untimed), limit {} s per backend",
        limit.as_secs()
    );
    for backend in ["flex", "ndarray", "candle"] {
        let started = Instant::now();
        let mut child = std::process::Command::new(&args[0])
            .args(["--child", backend, &steps.to_string()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        match status {
            None => println!(
                "{backend:8} did not finish within {} s (stalled or too slow)",
                limit.as_secs()
            ),
            Some(s) if s.success() => {
                let mut it = stdout.split_whitespace();
                println!(
                    "{backend:8} {:>8} images/s, last loss {}, {:.1} s in all",
                    it.next().unwrap_or("?"),
                    it.next().unwrap_or("?"),
                    started.elapsed().as_secs_f64()
                );
            }
            Some(_) => {
                // The panic message is the line after "panicked at …".
                let mut lines = stderr.lines().skip_while(|l| !l.contains("panicked"));
                let why = lines.nth(1).unwrap_or("failed without a message");
                println!("{backend:8} failed: {}", why.trim());
            }
        }
    }
}
