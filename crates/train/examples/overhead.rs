//! What looking inside the loop costs: images/s of the same short
//! training with and without one of the trainer's looks, in alternating
//! rounds in one invocation, so that the machine's noise falls on both.
//!
//!   cargo run --release -p mnist-train --features wgpu,cuda --example overhead -- \
//!       control|layers [ROUNDS] [IMAGES] [EVERY] [BACKEND] [BATCH]
//!
//! Both forms are trained once before the rounds (a warm-up round), so a
//! GPU backend's kernels, compiled once per process, are compiled before
//! the rounds: the rounds measure the steady cost of a look, which a long
//! run pays; the warm-up's two figures show what compiling the look's own
//! kernels costs once. BACKEND: cpu (default), wgpu or cuda; BATCH: 64.
//!
//! `control`: the per-batch control check (a steerable run, as the
//! server's and `train --serve`'s are) against none (a plain `train`).
//! `layers`: per-layer statistics every EVERY steps (default: the config's
//! default) against none. Prints each round's two figures and the median
//! ratio (with / without); 1.00 means no measurable cost. Needs MNIST in
//! datasets/mnist.

use mnist_train::{run, BackendChoice, RunOptions, TrainConfig};
use std::sync::Arc;

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "control".into());
    let rounds: usize = args.next().map_or(6, |a| a.parse().expect("ROUNDS"));
    let images: usize = args.next().map_or(12_800, |a| a.parse().expect("IMAGES"));
    let every: u64 = args
        .next()
        .map_or(mnist_train::config::LAYER_STATS_EVERY, |a| {
            a.parse().expect("EVERY")
        });
    let backend: BackendChoice = args
        .next()
        .map_or(BackendChoice::Cpu, |a| a.parse().expect("BACKEND"));
    let batch_size: usize = args.next().map_or(64, |a| a.parse().expect("BATCH"));
    assert!(what == "control" || what == "layers", "control or layers");
    let data = mnist_data::load_dir(
        std::path::Path::new("datasets/mnist"),
        mnist_data::Verify::Skip,
    )
    .expect("MNIST in datasets/mnist");
    let data = Arc::new(data);
    let scratch = tempfile::tempdir().expect("a scratch folder");
    let base = TrainConfig {
        kernels: [16, 32, 32, 32],
        backend,
        epochs: 1,
        batch_size,
        limit_train: Some(images),
        val_size: 0,
        limit_test: Some(64),
        layer_stats_every: 0,
        ..Default::default()
    };
    let train = |with: bool, round: usize| -> f64 {
        let config = TrainConfig {
            layer_stats_every: if with && what == "layers" { every } else { 0 },
            ..base.clone()
        };
        let opts = RunOptions {
            runs_dir: scratch.path().join("runs"),
            checkpoints_dir: scratch.path().join("ckpt"),
            run_id: Some(format!("r{round}-{with}")),
            data: Some(data.clone()),
            controls: (with && what == "control").then(mnist_events::Controls::new),
            ..Default::default()
        };
        run(config, opts).expect("the run trains").images_per_sec
    };
    // Warm caches, the allocator and (on a GPU) both forms' kernels.
    let (cold_with, cold_without) = (train(true, 0), train(false, 0));
    println!(
        "warm-up  with {cold_with:.0}, without {cold_without:.0} images/s (compiling included)"
    );
    let mut ratios = Vec::new();
    println!("round  with {what:<7} without  ratio");
    for round in 1..=rounds {
        // Alternate which goes first, so a drift favours neither.
        let (with, without) = match round % 2 {
            0 => (train(true, round), train(false, round)),
            _ => {
                let without = train(false, round);
                (train(true, round), without)
            }
        };
        ratios.push(with / without);
        println!(
            "{round:>5}  {with:>12.0}  {without:>7.0}  {:.3}",
            with / without
        );
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    let (lo, hi) = (ratios[0], ratios[ratios.len() - 1]);
    let detail = match what.as_str() {
        "layers" => format!(" (layer statistics every {every} steps)"),
        _ => " (the control check)".into(),
    };
    println!("median images/s ratio with/without{detail}: {median:.3} (range {lo:.3}-{hi:.3}, {rounds} rounds of {images} images)");
}
