use burn::backend::Flex;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Distribution, Tensor};
use std::time::Instant;
type B = Flex;

fn t<F: FnMut() -> Tensor<B, 4>>(name: &str, mut f: F) {
    let _ = f();
    let mut v = vec![];
    for _ in 0..7 {
        let s = Instant::now();
        let y = f();
        let _ = y.into_data();
        v.push(s.elapsed().as_secs_f64() * 1e3);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    println!("{name:<40} {:8.2} ms", v[3]);
}

fn main() {
    let d = Default::default();
    for (bsz, ci, co, hi) in [
        (64usize, 32usize, 64usize, 26usize),
        (64, 64, 64, 12),
        (64, 64, 64, 10),
        (512, 32, 64, 26),
    ] {
        let ho = hi - 2;
        println!("-- batch {bsz} {ci}->{co} {hi}->{ho}");
        let x = Tensor::<B, 4>::random([bsz, ci, hi, hi], Distribution::Normal(0., 1.), &d);
        let w = Tensor::<B, 4>::random([co, ci, 3, 3], Distribution::Normal(0., 1.), &d);
        let g = Tensor::<B, 4>::random([bsz, co, ho, ho], Distribution::Normal(0., 1.), &d);
        let opt = || ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
        t("fwd conv2d", || conv2d(x.clone(), w.clone(), None, opt()));
        // dx, Burn default: conv_transpose2d
        t("dx conv_transpose2d (burn default)", || {
            burn::tensor::module::conv_transpose2d(
                g.clone(),
                w.clone(),
                None,
                burn::tensor::ops::ConvTransposeOptions::new([1, 1], [0, 0], [0, 0], [1, 1], 1),
            )
        });
        t("dx conv2d(pad 2, flipped w^T)", || {
            let wf = w.clone().flip([2, 3]).swap_dims(0, 1);
            conv2d(
                g.clone(),
                wf,
                None,
                ConvOptions::new([1, 1], [2, 2], [1, 1], 1),
            )
        });
        // dW, Burn default: conv2d with batch/channels swapped
        t("dW conv2d swapped (burn default)", || {
            conv2d(
                x.clone().swap_dims(0, 1),
                g.clone().swap_dims(0, 1),
                None,
                opt(),
            )
            .swap_dims(0, 1)
        });
        t("dW cat 9 shifts + batched matmul", || {
            let p = ho * ho;
            let shifts: Vec<Tensor<B, 4>> = (0..9)
                .map(|k| {
                    x.clone()
                        .slice([0..bsz, 0..ci, k / 3..k / 3 + ho, k % 3..k % 3 + ho])
                })
                .collect();
            let xs = Tensor::cat(shifts, 1).reshape([bsz, 9 * ci, p]); // [B, 9I, P]
            let gr = g.clone().reshape([bsz, co, p]);
            let dw = gr.matmul(xs.swap_dims(1, 2)).sum_dim(0); // [1, O, 9I]
            dw.reshape([co, 3, 3, ci]).permute([0, 3, 1, 2])
        });
        t("dW cat 9 shifts + one matmul (P*B)", || {
            let p = ho * ho;
            let shifts: Vec<Tensor<B, 4>> = (0..9)
                .map(|k| {
                    x.clone()
                        .slice([0..bsz, 0..ci, k / 3..k / 3 + ho, k % 3..k % 3 + ho])
                })
                .collect();
            let xs = Tensor::cat(shifts, 1)
                .reshape([bsz, 9 * ci, p])
                .swap_dims(0, 1)
                .reshape([9 * ci, bsz * p]); // [9I, B*P]
            let gr = g
                .clone()
                .reshape([bsz, co, p])
                .swap_dims(0, 1)
                .reshape([co, bsz * p]);
            let dw = gr.matmul(xs.transpose()); // [O, 9I]
            dw.reshape([co, 3, 3, ci]).permute([0, 3, 1, 2])
        });
    }
}
