//! `mnist-monitor predict --checkpoint PATH image.png…`: classify pictures
//! of digits with a trained checkpoint, on the CPU.

use crate::cli::PredictArgs;
use mnist_train::infer::{argmax, png_to_mnist, Predictor};
use std::process::ExitCode;

/// One image's line of `--json`.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Line {
    /// The digit it shows, and each digit's probability.
    Predicted {
        file: String,
        predicted: usize,
        probs: [f32; mnist_data::CLASSES],
    },
    /// Why it could not be classified.
    Failed { file: String, error: String },
}

fn line(l: &Line) {
    println!("{}", serde_json::to_string(l).expect("a line serialises"));
}

/// Exit codes: 0 all classified, 1 some files could not be read; no model
/// is an error (2, from `main`).
pub fn run(args: PredictArgs) -> anyhow::Result<ExitCode> {
    let predictor = Predictor::load(&args.checkpoint)
        .map_err(|e| anyhow::anyhow!("--checkpoint {}: {e}", args.checkpoint.display()))?;
    if !args.json {
        eprintln!(
            "model: {} (epoch {})",
            predictor.checkpoint.display(),
            predictor.state.epoch
        );
    }
    let mut failed = 0;
    for path in &args.images {
        let result = std::fs::read(path)
            .map_err(|e| format!("cannot read it: {e}"))
            .and_then(|bytes| png_to_mnist(&bytes).map_err(|e| e.to_string()));
        match result {
            Ok(pixels) => {
                let probs = predictor.probabilities(&pixels).remove(0);
                let digit = argmax(&probs);
                if args.json {
                    line(&Line::Predicted {
                        file: path.display().to_string(),
                        predicted: digit,
                        probs,
                    });
                } else {
                    let bars: Vec<String> = probs.iter().map(|p| format!("{p:.3}")).collect();
                    println!(
                        "{}: {digit} (p = {:.3})  [{}]",
                        path.display(),
                        probs[digit],
                        bars.join(" ")
                    );
                }
            }
            Err(e) => {
                failed += 1;
                if args.json {
                    line(&Line::Failed {
                        file: path.display().to_string(),
                        error: e,
                    });
                } else {
                    eprintln!("error: {}: {e}", path.display());
                }
            }
        }
    }
    Ok(ExitCode::from(u8::from(failed > 0)))
}
