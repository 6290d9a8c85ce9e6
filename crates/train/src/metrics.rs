//! Classification metrics from counts.
//!
//! The device computes counts (true positives, predicted and actual class
//! totals, the confusion matrix); this module turns counts into precision,
//! recall and F1 on the host. Keeping the device side to sums means a batch's
//! metrics cost one small read-back, batched with others.

use mnist_events::ClassMetrics;

/// Number of classes: the digits 0–9.
pub const CLASSES: usize = 10;

/// Per-class counts: enough for accuracy and macro-F1.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ClassCounts {
    /// Images of each class predicted correctly.
    pub true_positive: [f64; CLASSES],
    /// Images predicted as each class.
    pub predicted: [f64; CLASSES],
    /// Images labelled with each class.
    pub actual: [f64; CLASSES],
}

impl ClassCounts {
    /// From the device layout `[tp; 10] ++ [predicted; 10] ++ [actual; 10]`.
    pub fn from_slice(v: &[f32]) -> Self {
        let mut c = Self::default();
        for k in 0..CLASSES {
            c.true_positive[k] = v[k] as f64;
            c.predicted[k] = v[CLASSES + k] as f64;
            c.actual[k] = v[2 * CLASSES + k] as f64;
        }
        c
    }

    /// Adds `other`'s counts to these (batches into an epoch's totals).
    pub fn add(&mut self, other: &Self) {
        for k in 0..CLASSES {
            self.true_positive[k] += other.true_positive[k];
            self.predicted[k] += other.predicted[k];
            self.actual[k] += other.actual[k];
        }
    }

    /// Number of images counted.
    pub fn total(&self) -> f64 {
        self.actual.iter().sum()
    }

    /// Fraction of images predicted correctly (0–1); 0 when none were counted.
    pub fn accuracy(&self) -> f64 {
        let total = self.total();
        if total == 0.0 {
            0.0
        } else {
            self.true_positive.iter().sum::<f64>() / total
        }
    }

    /// Macro-F1 over the classes that occur (as label or prediction), the
    /// usual convention for a batch that lacks some classes.
    pub fn f1_macro(&self) -> f64 {
        let f1s: Vec<f64> = (0..CLASSES)
            .filter(|&k| self.actual[k] + self.predicted[k] > 0.0)
            .map(|k| f1(self.true_positive[k], self.predicted[k], self.actual[k]))
            .collect();
        if f1s.is_empty() {
            0.0
        } else {
            f1s.iter().sum::<f64>() / f1s.len() as f64
        }
    }
}

/// F1 = 2·tp / (predicted + actual); 0 when both are 0.
pub fn f1(tp: f64, predicted: f64, actual: f64) -> f64 {
    let denom = predicted + actual;
    if denom == 0.0 {
        0.0
    } else {
        2.0 * tp / denom
    }
}

/// Metrics of a 10×10 confusion matrix `confusion[true][predicted]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfusionMetrics {
    /// Fraction of images on the diagonal (0–1).
    pub accuracy: f64,
    /// Mean F1 over the classes that occur, as [`ClassCounts::f1_macro`].
    pub f1_macro: f64,
    /// Precision, recall, F1 and support of each of the 10 classes, in order.
    pub per_class: Vec<ClassMetrics>,
}

/// Accuracy, macro-F1 and per-class metrics of a confusion matrix `confusion[true][predicted]`.
pub fn from_confusion(confusion: &[Vec<u64>]) -> ConfusionMetrics {
    let mut counts = ClassCounts::default();
    for (t, row) in confusion.iter().enumerate() {
        for (p, &n) in row.iter().enumerate() {
            counts.actual[t] += n as f64;
            counts.predicted[p] += n as f64;
            if t == p {
                counts.true_positive[t] += n as f64;
            }
        }
    }
    let per_class = (0..CLASSES)
        .map(|k| {
            let tp = counts.true_positive[k];
            ClassMetrics {
                class: k,
                precision: if counts.predicted[k] > 0.0 {
                    tp / counts.predicted[k]
                } else {
                    0.0
                },
                recall: if counts.actual[k] > 0.0 {
                    tp / counts.actual[k]
                } else {
                    0.0
                },
                f1: f1(tp, counts.predicted[k], counts.actual[k]),
                support: counts.actual[k] as u64,
            }
        })
        .collect();
    ConfusionMetrics {
        accuracy: counts.accuracy(),
        f1_macro: counts.f1_macro(),
        per_class,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_give_accuracy_and_macro_f1() {
        // labels 0,0,1,1 predicted 0,1,1,1
        let mut c = ClassCounts::default();
        c.true_positive[0] = 1.0;
        c.true_positive[1] = 2.0;
        c.predicted[0] = 1.0;
        c.predicted[1] = 3.0;
        c.actual[0] = 2.0;
        c.actual[1] = 2.0;
        assert!((c.accuracy() - 0.75).abs() < 1e-12);
        // F1(0) = 2/3, F1(1) = 4/5; classes 2..9 absent are ignored.
        assert!((c.f1_macro() - (2.0 / 3.0 + 0.8) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn confusion_matrix_metrics() {
        let mut m = vec![vec![0u64; 10]; 10];
        m[0][0] = 8;
        m[0][6] = 2;
        m[6][6] = 5;
        let r = from_confusion(&m);
        assert!((r.accuracy - 13.0 / 15.0).abs() < 1e-12);
        assert_eq!(r.per_class[0].support, 10);
        assert!((r.per_class[0].recall - 0.8).abs() < 1e-12);
        assert!((r.per_class[6].precision - 5.0 / 7.0).abs() < 1e-12);
        assert_eq!(r.per_class[3].f1, 0.0);
    }
}
