//! The scheduler against a made-up machine: GPUs that exist only here, a
//! launch that records what started (the test ends runs itself).

use super::*;
use mnist_events::GpuStats;
use mnist_train::BackendChoice;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Default)]
struct Fake {
    devices: Option<Devices>,
    elsewhere: Vec<(Slot, String)>,
    launched: Mutex<Vec<(String, Slot)>>,
    fail_launch: bool,
    changes: AtomicUsize,
}

impl Fake {
    fn with_gpus(n: u32) -> Self {
        let cuda = (0..n)
            .map(|index| GpuStats {
                index,
                memory_used_bytes: Some(1 << 30),
                memory_total_bytes: Some(80 << 30),
                utilization_percent: Some(0),
                ..Default::default()
            })
            .collect();
        Self {
            devices: Some(Devices {
                cuda,
                own_pid: 7,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn launched(&self) -> Vec<(String, Slot)> {
        self.launched.locked().clone()
    }
}

impl Machine for Fake {
    fn devices(&self, _gpu: bool) -> Result<Devices, String> {
        self.devices
            .clone()
            .ok_or_else(|| "the data set cannot be read".into())
    }
    fn held_elsewhere(&self) -> Vec<(Slot, String)> {
        self.elsewhere.clone()
    }
    fn is_taken(&self, _run_id: &str) -> bool {
        false
    }
    fn resumed_hub(&self, run_id: &str) -> Arc<RunHub> {
        RunHub::resuming(run_id, Vec::new())
    }
    fn launch(&self, start: Start) -> Result<(), String> {
        if self.fail_launch {
            return Err("no threads left".into());
        }
        let id = start.item.run_id.clone();
        self.launched.locked().push((id, start.run.slot));
        Ok(())
    }
    fn runs_changed(&self) {
        self.changes.fetch_add(1, Ordering::SeqCst);
    }
}

fn scheduler() -> (Scheduler, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Scheduler::new(Queue::load(dir.path())), dir)
}

fn on(backend: BackendChoice) -> Submission {
    Submission::new(TrainConfig {
        backend,
        ..Default::default()
    })
}

#[test]
fn two_gpus_train_two_runs_and_the_third_starts_when_one_ends() {
    let (s, _dir) = scheduler();
    let m = Fake::with_gpus(2);
    let (a, sa) = s.submit(&m, on(BackendChoice::Cuda)).unwrap();
    let (b, sb) = s.submit(&m, on(BackendChoice::Cuda)).unwrap();
    let (c, sc) = s.submit(&m, on(BackendChoice::Cuda)).unwrap();
    assert_eq!(
        (sa, sb, sc),
        (Submitted::Started, Submitted::Started, Submitted::Queued(1))
    );
    let slots: Vec<Slot> = m.launched().into_iter().map(|(_, slot)| slot).collect();
    assert_eq!(slots, [Slot::Cuda(0), Slot::Cuda(1)]);
    let waiting = s.waiting_for(&m);
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].0, c);
    assert!(waiting[0].1.contains(&format!("run {a}")), "{waiting:?}");
    assert_eq!(s.current_hub().unwrap().run_id, a, "pages follow the first");

    s.on_run_ended(&m, &a);
    assert_eq!(m.launched()[2], (c.clone(), Slot::Cuda(0)), "the freed GPU");
    assert!(s.queued().is_empty());
    assert_eq!(
        s.current_hub().unwrap().run_id,
        b,
        "pages move to a run that trains"
    );
    let mut ids = s.training_ids();
    ids.sort();
    let mut want = vec![b.clone(), c.clone()];
    want.sort();
    assert_eq!(ids, want);
}

#[test]
fn a_gpu_run_does_not_wait_behind_a_cpu_run_that_waits() {
    let (s, _dir) = scheduler();
    let m = Fake::with_gpus(1);
    let (first, _) = s.submit(&m, on(BackendChoice::Cpu)).unwrap();
    let (second, placed) = s.submit(&m, on(BackendChoice::Cpu)).unwrap();
    assert_eq!(placed, Submitted::Queued(1));
    let (gpu, placed) = s.submit(&m, on(BackendChoice::Cuda)).unwrap();
    assert_eq!(placed, Submitted::Started, "the GPU is free");
    assert_eq!(s.queued().len(), 1);
    assert_eq!(s.queued()[0].run_id, second);
    let why = &s.waiting_for(&m)[0].1;
    assert!(why.contains(&format!("run {first}")), "{why}");
    assert_eq!(m.launched()[1], (gpu, Slot::Cuda(0)));
}

#[test]
fn a_device_another_process_holds_is_waited_for_and_says_who() {
    let (s, _dir) = scheduler();
    let mut m = Fake::with_gpus(0);
    m.elsewhere = vec![(Slot::Cpu, "shell-run".into())];
    let (id, placed) = s.submit(&m, on(BackendChoice::Cpu)).unwrap();
    assert_eq!(placed, Submitted::Queued(1));
    let why = &s.waiting_for(&m)[0];
    assert_eq!(why.0, id);
    assert!(why.1.contains("run shell-run (another process)"), "{why:?}");
    assert!(m.launched().is_empty());
}

#[test]
fn a_resumption_of_a_queued_or_training_run_is_refused() {
    let (s, _dir) = scheduler();
    let m = Fake::with_gpus(0);
    let (id, _) = s.submit(&m, on(BackendChoice::Cpu)).unwrap();
    let again = Submission {
        origin: Origin::Resume,
        run_id: Some(id.clone()),
        ..on(BackendChoice::Cpu)
    };
    assert!(matches!(s.submit(&m, again), Err(SubmitError::Busy(b)) if b == id));
    s.on_run_ended(&m, &id);
    let again = Submission {
        origin: Origin::Resume,
        run_id: Some(id.clone()),
        ..on(BackendChoice::Cpu)
    };
    let (resumed, placed) = s.submit(&m, again).unwrap();
    assert_eq!((resumed, placed), (id.clone(), Submitted::Started));
    assert_eq!(s.queued().len(), 0);
    assert_eq!(m.launched().len(), 2);
}

#[test]
fn a_launch_that_fails_fails_the_run_and_frees_its_device() {
    let (s, _dir) = scheduler();
    let mut m = Fake::with_gpus(0);
    m.fail_launch = true;
    let (id, _) = s.submit(&m, on(BackendChoice::Cpu)).unwrap();
    let hub = s.current_hub().expect("shown");
    assert!(hub.is_finished());
    let error = hub.with_state(|st| st.summary().error).unwrap();
    assert!(error.contains("no threads left"), "{error}");
    assert!(s.training_ids().is_empty(), "run {id} holds no device");
    assert!(s.trainer(&id).unwrap().finished);
}

#[test]
fn without_data_nothing_starts_and_the_queue_says_why() {
    let (s, _dir) = scheduler();
    let m = Fake::default();
    let (_, placed) = s.submit(&m, on(BackendChoice::Cpu)).unwrap();
    assert_eq!(placed, Submitted::Queued(1));
    assert_eq!(s.waiting_for(&m)[0].1, "the data set cannot be read");
    assert!(s.current_hub().is_none());
}

#[test]
fn controls_reach_a_training_run_and_a_cancelled_run_leaves_the_queue() {
    let (s, _dir) = scheduler();
    let m = Fake::with_gpus(0);
    let (a, _) = s.submit(&m, on(BackendChoice::Cpu)).unwrap();
    let (b, _) = s.submit(&m, on(BackendChoice::Cpu)).unwrap();
    let trainer = s.trainer(&a).unwrap();
    assert!(!trainer.finished && trainer.controls.is_some());
    assert!(s.trainer(&b).is_none(), "a queued run has no trainer yet");
    assert!(s.is_queued(&b));
    assert_eq!(s.cancel(&b).unwrap().unwrap().run_id, b);
    assert!(!s.is_queued(&b));
    s.on_run_ended(&m, &a);
    assert_eq!(m.launched().len(), 1, "nothing left to start");
    assert!(m.changes.load(Ordering::SeqCst) >= 2);
}
