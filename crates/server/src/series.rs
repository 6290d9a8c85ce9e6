//! The batch series: the one table of what the charts draw ([`SERIES`]),
//! the point each step folds into ([`Point`]), the debiased moving average
//! ([`Ema`]), the min/max bucketing that never hides a spike
//! ([`bucket_extremes`]) and the answer of `GET /api/runs/{id}/series`
//! ([`SeriesAnswer`]).
//!
//! The page reads the table from `GET /api/series/schema` instead of
//! spelling the keys itself, and `web/test/golden/series.json`, written by
//! this module's tests, holds the vectors the page's own folding is tested
//! against (`node --test web/test/`), so the two cannot drift apart.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The batch metrics of one step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    /// Global optimiser step, from 1.
    pub step: u64,
    /// Epoch, from 1.
    pub epoch: usize,
    /// Batch within the epoch, from 1.
    pub batch: usize,
    /// Batches in an epoch.
    pub batches: usize,
    /// When the batch was logged, Unix time in milliseconds.
    pub ts_ms: u64,
    /// Mean cross-entropy loss of the batch.
    pub loss: f64,
    /// Fraction of the batch classified correctly (0–1).
    pub accuracy: f64,
    /// Macro-averaged F1 over the classes in the batch (0–1).
    pub f1_macro: f64,
    /// Learning rate used for this step.
    pub lr: f64,
    /// Training throughput around this batch, images per second.
    pub images_per_sec: f64,
}

/// How a series reads its value off a point.
pub type Reading = fn(&Point) -> f64;

/// One series of the table.
#[derive(Clone, Copy, Serialize)]
pub struct SeriesDef {
    /// Its key in answers and on the page.
    pub key: &'static str,
    /// The chart's title.
    pub title: &'static str,
    /// Whether it has a chart of its own (the others are x axes).
    pub chart: bool,
    /// Whether the page draws its moving average (and buckets keep its
    /// extremes).
    pub smoothed: bool,
    /// How it reads its value off a point.
    #[serde(skip)]
    pub read: Reading,
}

const fn def(key: &'static str, title: &'static str, chart: bool, read: Reading) -> SeriesDef {
    SeriesDef {
        key,
        title,
        chart,
        smoothed: chart,
        read,
    }
}

/// The series the charts draw, in the page's order: the five metrics, then
/// `epoch` (the position in epochs: 1.5 is half-way through the second) and
/// `ts_ms`, the charts' other x axes.
pub const SERIES: [SeriesDef; 7] = [
    def("loss", "Loss", true, |p| p.loss),
    def("accuracy", "Accuracy", true, |p| p.accuracy),
    def("f1_macro", "Macro F1", true, |p| p.f1_macro),
    def("lr", "Learning rate", true, |p| p.lr),
    def("images_per_sec", "Images/s", true, |p| p.images_per_sec),
    def("epoch", "Epoch", false, |p| {
        (p.epoch as f64 - 1.0) + p.batch as f64 / p.batches.max(1) as f64
    }),
    def("ts_ms", "Time", false, |p| p.ts_ms as f64),
];

/// The smoothed series of [`SERIES`].
pub fn smoothed() -> impl Iterator<Item = &'static SeriesDef> {
    SERIES.iter().filter(|s| s.smoothed)
}

/// Most points per series in a snapshot or a series answer. Longer ranges
/// keep, per bucket, their minimum and maximum, so no spike is ever hidden.
pub const MAX_POINTS: usize = 2000;

/// The smoothing the snapshot's series carry (the page's default; it asks
/// `series` again for another).
pub const DEFAULT_SMOOTHING: f64 = 0.8;

/// `GET /api/series/schema`: the table, as the page builds its charts.
#[derive(Serialize)]
pub struct SeriesSchema {
    /// Every series, in order.
    pub series: &'static [SeriesDef],
    /// [`MAX_POINTS`].
    pub max_points: usize,
    /// [`DEFAULT_SMOOTHING`].
    pub default_smoothing: f64,
}

/// The schema answer.
pub fn schema() -> SeriesSchema {
    SeriesSchema {
        series: &SERIES,
        max_points: MAX_POINTS,
        default_smoothing: DEFAULT_SMOOTHING,
    }
}

/// Series on one step axis (`GET /api/runs/{id}/series`, a snapshot's
/// `series`, the index's stored series). A non-finite value is `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesAnswer {
    /// Points the run has.
    pub total: usize,
    /// Points between the asked steps, before bucketing.
    pub in_range: usize,
    /// The moving average's weight.
    pub smoothing: f64,
    /// The steps kept.
    pub step: Vec<u64>,
    /// Each series of [`SERIES`] by key, a value per kept step.
    #[serde(flatten)]
    pub values: BTreeMap<String, Vec<Option<f64>>>,
    /// The moving average of each smoothed series, a value per kept step,
    /// computed on every step from the run's first.
    pub smoothed: BTreeMap<String, Vec<Option<f64>>>,
    /// Each average's state `[sum, weight]` after the range's last step,
    /// which the page continues on live batches.
    pub ema: BTreeMap<String, [f64; 2]>,
}

/// The points between steps `from` and `to` (inclusive), reduced to about
/// `max` by [`bucket_extremes`], with their moving averages (weight
/// `smoothing`) computed on every step from the first, so the curve is the
/// same at any zoom.
pub fn answer(points: &[Point], from: u64, to: u64, max: usize, smoothing: f64) -> SeriesAnswer {
    let lo = points.partition_point(|p| p.step < from);
    let hi = points.partition_point(|p| p.step <= to);
    let keep = bucket_extremes(&points[lo..hi], max);
    let picked: Vec<&Point> = keep.iter().map(|&i| &points[lo + i]).collect();
    let finite = |v: f64| v.is_finite().then_some(v);
    let values = SERIES
        .iter()
        .map(|s| {
            let column = picked.iter().map(|p| finite((s.read)(p))).collect();
            (s.key.to_string(), column)
        })
        .collect();
    let mut smoothed_values = BTreeMap::new();
    let mut ema = BTreeMap::new();
    for s in smoothed() {
        let mut avg = Ema::over(&points[..lo], smoothing, s.read);
        let mut column = Vec::with_capacity(keep.len());
        let mut next = keep.iter().peekable();
        for (i, p) in points[lo..hi].iter().enumerate() {
            let v = avg.push((s.read)(p));
            if next.next_if(|&&k| k == i).is_some() {
                column.push(v);
            }
        }
        smoothed_values.insert(s.key.to_string(), column);
        ema.insert(s.key.to_string(), [avg.sum, avg.weight]);
    }
    SeriesAnswer {
        total: points.len(),
        in_range: hi - lo,
        smoothing,
        step: picked.iter().map(|p| p.step).collect(),
        values,
        smoothed: smoothed_values,
        ema,
    }
}

/// The indices of `points` to keep for about `max` points: all of them
/// when they fit, else, per bucket of consecutive steps (`max / 4` of
/// them), those where a smoothed series has its minimum or maximum (NaN
/// counts as a maximum, so a NaN loss stays visible), in step order. A
/// bucket keeps at most ten, so the answer stays under 2.5 × `max`.
pub fn bucket_extremes(points: &[Point], max: usize) -> Vec<usize> {
    if points.len() <= max || max < 4 {
        return (0..points.len()).collect();
    }
    let buckets = max / 4;
    let mut out = Vec::with_capacity(max * 2);
    for b in 0..buckets {
        let lo = b * points.len() / buckets;
        let hi = ((b + 1) * points.len() / buckets).max(lo + 1);
        let bucket = &points[lo..hi];
        let mut picked: Vec<usize> = Vec::with_capacity(10);
        for s in smoothed() {
            picked.extend(extremes(bucket, s.read));
        }
        picked.sort_unstable();
        picked.dedup();
        out.extend(picked.into_iter().map(|i| lo + i));
    }
    out
}

/// The first index of `bucket`'s minimum and of its maximum (a NaN counts
/// as a maximum; a NaN is never a minimum unless all are).
fn extremes(bucket: &[Point], read: Reading) -> [usize; 2] {
    let (mut imin, mut imax) = (0, 0);
    for (i, p) in bucket.iter().enumerate() {
        let v = read(p);
        let min = read(&bucket[imin]);
        if v < min || (min.is_nan() && !v.is_nan()) {
            imin = i;
        }
        let max = read(&bucket[imax]);
        if v > max || (v.is_nan() && !max.is_nan()) {
            imax = i;
        }
    }
    [imin, imax]
}

/// TensorBoard's debiased exponential moving average: `sum / weight` is the
/// smoothed value; non-finite values are skipped (they'd poison the rest).
#[derive(Debug, Clone, Copy)]
pub struct Ema {
    alpha: f64,
    /// The weighted sum of the values so far.
    pub sum: f64,
    /// The sum of the weights so far (debiases the start).
    pub weight: f64,
}

impl Ema {
    /// An average of nothing yet, with weight `alpha` for the past.
    pub fn new(alpha: f64) -> Self {
        Self {
            alpha,
            sum: 0.0,
            weight: 0.0,
        }
    }

    /// The average after `points`, read by `read`.
    pub fn over(points: &[Point], alpha: f64, read: Reading) -> Self {
        let mut ema = Self::new(alpha);
        for p in points {
            ema.push(read(p));
        }
        ema
    }

    /// Adds a value; the smoothed value after it (None while there is none,
    /// or for a non-finite value).
    pub fn push(&mut self, v: f64) -> Option<f64> {
        if !v.is_finite() {
            return None;
        }
        self.sum = self.sum * self.alpha + (1.0 - self.alpha) * v;
        self.weight = self.weight * self.alpha + (1.0 - self.alpha);
        Some(self.sum / self.weight)
    }
}

/// One hardware sample of a run, as the charts draw it over the run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HwPoint {
    /// When it was sampled, Unix time in milliseconds.
    pub ts_ms: u64,
    /// The machine's CPU busy, percent.
    pub cpu_percent: f64,
    /// The process's resident memory, bytes.
    pub rss_bytes: f64,
    /// The busiest GPU's utilisation, percent (None without GPUs).
    pub gpu_percent: Option<f64>,
    /// GPU memory used, summed over the GPUs, bytes.
    pub gpu_memory_bytes: Option<f64>,
}

impl HwPoint {
    pub(crate) fn of(h: &mnist_events::HardwareSnapshot) -> Self {
        let gpus = !h.gpus.is_empty();
        Self {
            ts_ms: h.sampled_at_ms,
            cpu_percent: h.cpu.usage_percent as f64,
            rss_bytes: h.process.rss_bytes as f64,
            gpu_percent: gpus.then(|| {
                h.gpus
                    .iter()
                    .filter_map(|g| g.utilization_percent)
                    .max()
                    .unwrap_or(0) as f64
            }),
            gpu_memory_bytes: gpus.then(|| {
                h.gpus
                    .iter()
                    .filter_map(|g| g.memory_used_bytes)
                    .sum::<u64>() as f64
            }),
        }
    }
}
