//! The statistics against a direct computation on the host, on a tiny
//! model: on the CPU backend, and on wgpu where an adapter answers
//! (lavapipe in CI) within float tolerance.

use super::*;
use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::optim::{Optimizer, SgdConfig};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Distribution, Int};
use mnist_model::CnnConfig;

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data().iter::<f32>().map(|v| v as f64).collect()
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// One SGD step of a tiny network on random images; the decoded sample
/// and the same figures computed on the host from the tensors.
fn sample_and_reference<B: AutodiffBackend>(
    device: &B::Device,
) -> (Vec<LayerSample>, Vec<LayerSample>) {
    B::seed(device, 7);
    let model: Cnn<B> = CnnConfig::new().with_kernels([2, 3, 2, 3]).init(device);
    let images = Tensor::<B, 4>::random([6, 1, 28, 28], Distribution::Normal(0.0, 1.0), device);
    let labels = Tensor::<B, 1, Int>::from_ints([1, 2, 3, 4, 5, 6], device);
    let traced = model.forward_traced(images);
    let targets = labels.one_hot::<2>(10).float();
    let loss =
        -(burn::tensor::activation::log_softmax(traced.logits.clone(), 1) * targets).sum() / 6.0;
    let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &model);
    let before = model.valid();
    let layer_grads = super::grads(&before, &grads);
    let lengths = super::lengths(&before);
    let mut optim = SgdConfig::new().init::<B, Cnn<B>>();
    let after = optim.step(0.5, model, grads).valid();
    let acts = traced.inner();
    let parts = sample(
        params(&before),
        params(&after),
        layer_grads.clone(),
        lengths,
        &acts,
    );
    let row: Vec<f32> = parts.into_iter().flat_map(host).map(|v| v as f32).collect();
    assert_eq!(row.len(), WIDTH);
    let (wb, wa) = (before.weights(), after.weights());
    let reference = (0..6)
        .map(|i| {
            let at: usize = lengths[..i].iter().sum();
            let g = host(layer_grads.clone().narrow(0, at, lengths[i]));
            let b: Vec<f64> = [host(wb[i].1.clone()), host(wb[i].2.clone())].concat();
            let a: Vec<f64> = [host(wa[i].1.clone()), host(wa[i].2.clone())].concat();
            let step: Vec<f64> = a.iter().zip(&b).map(|(a, b)| a - b).collect();
            let act = match i {
                0..=3 => Some((host(acts.convs[i].clone()), acts.convs[i].dims()[0])),
                4 => Some((host(acts.fc1.clone()), acts.fc1.dims()[0])),
                _ => None,
            };
            LayerSample {
                name: LAYERS[i].into(),
                grad_norm: norm(&g),
                weight_norm: norm(&a),
                update_ratio: norm(&step) / norm(&b),
                activations: act.map(|(v, batch)| {
                    let n = v.len() as f64;
                    let mean = v.iter().sum::<f64>() / n;
                    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
                    let units = v.len() / batch;
                    let dead = (0..units)
                        .filter(|u| (0..batch).all(|b| v[b * units + u] == 0.0))
                        .count();
                    ActivationStats {
                        mean,
                        std: var.sqrt(),
                        dead: dead as f64 / units as f64,
                    }
                }),
            }
        })
        .collect();
    (decode(&row), reference)
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

fn assert_agree(got: &[LayerSample], want: &[LayerSample], tol: f64) {
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.name, w.name);
        for (what, x, y) in [
            ("grad_norm", g.grad_norm, w.grad_norm),
            ("weight_norm", g.weight_norm, w.weight_norm),
            ("update_ratio", g.update_ratio, w.update_ratio),
        ] {
            assert!(close(x, y, tol), "{} {what}: {x} vs {y}", g.name);
        }
        assert!(g.grad_norm > 0.0 && g.update_ratio > 0.0, "{g:?}");
        match (g.activations, w.activations) {
            (Some(a), Some(b)) => {
                assert!(close(a.mean, b.mean, tol), "{} mean {a:?} {b:?}", g.name);
                assert!(
                    close(a.std, b.std, 10.0 * tol),
                    "{} std {a:?} {b:?}",
                    g.name
                );
                assert!(
                    (a.dead - b.dead).abs() < 1e-6,
                    "{} dead {a:?} {b:?}",
                    g.name
                );
            }
            (None, None) => {}
            other => panic!("{}: {other:?}", g.name),
        }
    }
}

#[test]
fn the_statistics_equal_a_direct_computation_on_the_cpu() {
    let device = Default::default();
    let (got, want) = sample_and_reference::<Autodiff<burn::backend::Flex>>(&device);
    assert_agree(&got, &want, 1e-5);
    // Some ReLU units of a random tiny network are dead on 6 images, some not.
    assert!(
        got.iter()
            .any(|l| l.activations.is_some_and(|a| a.dead > 0.0 && a.dead < 1.0)),
        "{got:?}"
    );
}

#[cfg(feature = "wgpu")]
#[test]
fn the_statistics_equal_a_direct_computation_on_wgpu() {
    use burn::backend::wgpu::{Wgpu, WgpuDevice};
    let device = WgpuDevice::default();
    let answers = crate::backend::quietly(|| Tensor::<Wgpu, 1>::zeros([1], &device).into_data());
    if answers.is_err() {
        eprintln!("no wgpu adapter answers here: skipped");
        return;
    }
    let (got, want) = sample_and_reference::<Autodiff<Wgpu>>(&device);
    assert_agree(&got, &want, 1e-4);
}

#[test]
fn samples_come_at_powers_of_two_then_every_interval() {
    let steps: Vec<u64> = (1..=70).filter(|&s| due(s, 20)).collect();
    assert_eq!(steps, [1, 2, 4, 8, 16, 20, 40, 60]);
    assert!(!(1..100).any(|s| due(s, 0)), "0 turns sampling off");
}

#[test]
fn histogram_bins_are_fixed_the_first_time() {
    let mut bins = Bins::default();
    let values = vec![(vec![-0.2, 0.1], vec![0.01, -0.03], vec![0.0, 2.0]); 6];
    let first = bins.histograms(&values);
    assert_eq!(first[0].weights.lo, -0.3);
    assert_eq!(first[0].grads.hi, 0.045);
    assert_eq!(first[0].activations.as_ref().unwrap().hi, 3.0);
    let wider = vec![(vec![-5.0, 0.1], vec![0.0], vec![9.0]); 6];
    let second = bins.histograms(&wider);
    assert_eq!(second[0].weights.lo, -0.3, "the same bins");
    assert_eq!(second[0].weights.below, 1);
    assert_eq!(second[0].activations.as_ref().unwrap().above, 1);
}
