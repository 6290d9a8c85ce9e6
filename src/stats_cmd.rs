//! `mnist-monitor stats`: the machine now, gpustat-style or as JSON.

use crate::cli::StatsArgs;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

pub fn run(args: StatsArgs) -> anyhow::Result<ExitCode> {
    if !args.watch {
        let snapshot = mnist_hardware::snapshot_once(args.watch_dir);
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&snapshot).expect("serialises")
            );
        } else {
            print!("{}", mnist_hardware::format::snapshot(&snapshot));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut sampler = mnist_hardware::Sampler::new(args.watch_dir);
    let interval = Duration::from_secs_f64(args.interval);
    // The first sample's CPU figures need a short window.
    std::thread::sleep(Duration::from_millis(200).min(interval));
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    loop {
        let started = std::time::Instant::now();
        let snapshot = sampler.sample();
        let mut out = std::io::stdout().lock();
        let written = if args.json {
            writeln!(
                out,
                "{}",
                serde_json::to_string(&snapshot).expect("serialises")
            )
        } else {
            let clear = if tty { "\x1b[2J\x1b[H" } else { "" };
            write!(
                out,
                "{clear}{}",
                mnist_hardware::format::snapshot(&snapshot)
            )
            .and_then(|_| if tty { Ok(()) } else { writeln!(out) })
        };
        // A closed pipe (`| head`) ends the watch quietly.
        if written.and_then(|_| out.flush()).is_err() {
            return Ok(ExitCode::SUCCESS);
        }
        drop(out);
        std::thread::sleep(interval.saturating_sub(started.elapsed()));
    }
}
