//! Where does a CPU training step go? Times each layer of the default
//! network on Burn's `flex` backend, forward and backward apart, at the
//! shapes one training step sees, and prints each as a share of the step.
//!
//!   cargo run --release -p mnist-train --example flex_ops -- [BATCH] [REPEATS] [burn]
//!
//! Convolutions, pools and dropout run as the model runs them
//! (`mnist-kernels`), or with `burn` as Burn's own modules (and the default
//! allocator settings), to compare. The whole step is always the model's.
//!
//! `flex` runs each op eagerly on the calling thread (and rayon), so wall
//! time around an op is its cost.

use burn::backend::{Autodiff, Flex};
use burn::module::Module;
use burn::tensor::{Distribution, Tensor};
use std::time::Instant;

type B = Autodiff<Flex>;

/// Median seconds of forward and of backward of `f` on a fresh input.
/// One layer under test: its name, input shape and forward pass.
type Layer<'a> = Box<dyn Fn(Tensor<B, 4>) -> Tensor<B, 4> + 'a>;

fn time_layer(
    shape: [usize; 4],
    repeats: usize,
    f: &dyn Fn(Tensor<B, 4>) -> Tensor<B, 4>,
) -> (f64, f64) {
    let device = burn::tensor::Device::<B>::default();
    let mut fwd = Vec::new();
    let mut bwd = Vec::new();
    for i in 0..repeats + 1 {
        let x =
            Tensor::<B, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device).require_grad();
        let t = Instant::now();
        let y = f(x.clone());
        let t_fwd = t.elapsed().as_secs_f64();
        let loss = y.sum();
        let t = Instant::now();
        let grads = loss.backward();
        let _ = x.grad(&grads);
        let t_bwd = t.elapsed().as_secs_f64();
        if i > 0 {
            fwd.push(t_fwd);
            bwd.push(t_bwd);
        }
    }
    (median(&mut fwd), median(&mut bwd))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let batch: usize = args.get(1).map_or(64, |s| s.parse().expect("BATCH"));
    let repeats: usize = args.get(2).map_or(10, |s| s.parse().expect("REPEATS"));
    let device = burn::tensor::Device::<B>::default();
    let model = mnist_model::CnnConfig::new().init::<B>(&device);
    let [k1, k2, k3, k4] = mnist_model::KERNELS_DEFAULT;

    let burn_conv = args.get(3).is_some_and(|a| a == "burn");
    let conv = |layer: &burn::nn::conv::Conv2d<B>, x: Tensor<B, 4>| {
        if burn_conv {
            layer.forward(x)
        } else {
            mnist_kernels::conv2d_3x3(x, layer.weight.val(), layer.bias.as_ref().map(|b| b.val()))
        }
    };
    if !burn_conv {
        mnist_kernels::tune_allocator();
    }
    let pool = |x: Tensor<B, 4>| {
        if burn_conv {
            model.pool.forward(x)
        } else {
            mnist_kernels::max_pool_2x2(x)
        }
    };
    let dropout = |x: Tensor<B, 4>| {
        if burn_conv {
            model.dropout1.forward(x)
        } else {
            mnist_kernels::dropout(x, model.dropout1.prob)
        }
    };
    let relu = |x: Tensor<B, 4>| burn::tensor::activation::relu(x);
    let rows: Vec<(&str, [usize; 4], Layer<'_>)> = vec![
        (
            "conv1 1→32 28→26",
            [batch, 1, 28, 28],
            Box::new(|x| conv(&model.conv1, x)),
        ),
        ("relu 32×26×26", [batch, k1, 26, 26], Box::new(relu)),
        (
            "conv2 32→64 26→24",
            [batch, k1, 26, 26],
            Box::new(|x| conv(&model.conv2, x)),
        ),
        ("relu 64×24×24", [batch, k2, 24, 24], Box::new(relu)),
        ("maxpool 24→12", [batch, k2, 24, 24], Box::new(pool)),
        ("dropout 64×12×12", [batch, k2, 12, 12], Box::new(dropout)),
        (
            "conv3 64→64 12→10",
            [batch, k2, 12, 12],
            Box::new(|x| conv(&model.conv3, x)),
        ),
        ("relu 64×10×10", [batch, k3, 10, 10], Box::new(relu)),
        (
            "conv4 64→64 10→8",
            [batch, k3, 10, 10],
            Box::new(|x| conv(&model.conv4, x)),
        ),
        ("relu 64×8×8", [batch, k4, 8, 8], Box::new(relu)),
        ("maxpool 8→4", [batch, k4, 8, 8], Box::new(pool)),
        (
            "fc1+relu+fc2",
            [batch, k4, 4, 4],
            Box::new(|x| {
                let x: Tensor<B, 2> = x.flatten(1, 3);
                let x = burn::tensor::activation::relu(model.fc1.forward(x));
                model.fc2.forward(x).unsqueeze::<4>()
            }),
        ),
    ];
    let mut results = Vec::new();
    for (name, shape, f) in &rows {
        let (fwd, bwd) = time_layer(*shape, repeats, f.as_ref());
        results.push((*name, fwd, bwd));
    }

    // The whole step, for comparison with the sum of its parts.
    let x = Tensor::<B, 4>::random([batch, 1, 28, 28], Distribution::Normal(0.0, 1.0), &device);
    let mut steps = Vec::new();
    for _ in 0..repeats + 1 {
        let t = Instant::now();
        let loss = model.forward(x.clone()).sum();
        let grads = loss.backward();
        let _ = model.conv1.weight.grad(&grads);
        steps.push(t.elapsed().as_secs_f64());
    }
    let step = median(&mut steps[1..]);

    let total: f64 = results.iter().map(|(_, f, b)| f + b).sum();
    println!(
        "batch {batch}, median of {repeats}, threads {}, convs: {}",
        rayon_threads(),
        if burn_conv { "burn" } else { "mnist-kernels" }
    );
    println!(
        "{:<20} {:>9} {:>9} {:>7}",
        "layer", "fwd ms", "bwd ms", "share"
    );
    for (name, f, b) in &results {
        println!(
            "{name:<20} {:>9.2} {:>9.2} {:>6.1}%",
            f * 1e3,
            b * 1e3,
            100.0 * (f + b) / total
        );
    }
    println!("{:<20} {:>19.2}", "sum of layers", total * 1e3);
    println!(
        "{:<20} {:>19.2}  ({:.0} img/s without the optimiser)",
        "whole step",
        step * 1e3,
        batch as f64 / step
    );
    let _ = model.num_params();
}

fn rayon_threads() -> String {
    std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into())
}
