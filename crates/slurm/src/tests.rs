use super::*;

fn job(tasks: Vec<Vec<String>>, options: SlurmOptions) -> ArrayJob {
    ArrayJob {
        name: "sweep-20261126-120000".into(),
        chdir: "/shared/work".into(),
        output: "/shared/work/runs/.slurm/sweep-20261126-120000/task-%a.log".into(),
        options,
        tasks,
    }
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|s| s.to_string()).collect()
}

#[test]
fn the_script_has_one_array_task_per_command_and_the_options() {
    let options = SlurmOptions {
        partition: Some("gpu".into()),
        gres: Some("gpu:1".into()),
        time: Some("2:00:00".into()),
        cpus_per_task: Some(4),
        max_parallel: Some(2),
        ..Default::default()
    };
    let script = write_script(&job(
        vec![
            argv(&["/bin/mm", "train", "--lr", "0.001"]),
            argv(&["/bin/mm", "train", "--lr", "0.0003"]),
        ],
        options,
    ))
    .unwrap();
    assert!(script.starts_with("#!/bin/bash\n"));
    for line in [
        "#SBATCH --array=0-1%2",
        "#SBATCH --job-name=sweep-20261126-120000",
        "#SBATCH --partition=gpu",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --time=2:00:00",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --chdir=/shared/work",
        "  1) exec /bin/mm train --lr 0.0003 ;;",
    ] {
        assert!(
            script.lines().any(|l| l == line),
            "{line:?} missing from\n{script}"
        );
    }
    // sbatch reads #SBATCH lines only before the first command.
    let first_command = script.lines().position(|l| l == "set -u").unwrap();
    assert!(script
        .lines()
        .skip(first_command)
        .all(|l| !l.starts_with("#SBATCH")));
}

/// The script really runs each task's command line, quoting intact.
#[test]
fn each_task_runs_its_own_command_with_its_arguments_intact() {
    let tasks = vec![
        argv(&[
            "printf",
            "%s|",
            "plain",
            "two words",
            "it's",
            "$HOME",
            "`id`",
        ]),
        argv(&["printf", "%s|", "second"]),
    ];
    let script = write_script(&job(tasks, SlurmOptions::default())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.sbatch");
    std::fs::write(&path, script).unwrap();
    let run = |task: &str| {
        let out = Command::new("bash")
            .arg(&path)
            .env("SLURM_ARRAY_TASK_ID", task)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert_eq!(
        run("0"),
        (Some(0), "plain|two words|it's|$HOME|`id`|".into())
    );
    assert_eq!(run("1"), (Some(0), "second|".into()));
    assert_eq!(run("2").0, Some(2));
}

#[test]
fn bad_options_name_their_flag() {
    let cases = [
        (
            SlurmOptions {
                gres: Some("1:gpu".into()),
                ..Default::default()
            },
            "gres",
        ),
        (
            SlurmOptions {
                gres: Some("gpu:1\n#SBATCH --x".into()),
                ..Default::default()
            },
            "gres",
        ),
        (
            SlurmOptions {
                time: Some("two hours".into()),
                ..Default::default()
            },
            "time",
        ),
        (
            SlurmOptions {
                time: Some("1:2:3:4".into()),
                ..Default::default()
            },
            "time",
        ),
        (
            SlurmOptions {
                partition: Some("gpu queue".into()),
                ..Default::default()
            },
            "partition",
        ),
        (
            SlurmOptions {
                mem: Some("lots".into()),
                ..Default::default()
            },
            "mem",
        ),
        (
            SlurmOptions {
                cpus_per_task: Some(0),
                ..Default::default()
            },
            "cpus-per-task",
        ),
        (
            SlurmOptions {
                max_parallel: Some(0),
                ..Default::default()
            },
            "max-parallel",
        ),
    ];
    for (options, flag) in cases {
        match options.check() {
            Err(SlurmError::Option { field, .. }) => assert_eq!(field, flag),
            other => panic!("{options:?}: {other:?}"),
        }
    }
    for time in ["30", "30:00", "2:00:00", "1-12", "1-12:30", "1-0:0:1"] {
        let options = SlurmOptions {
            time: Some(time.into()),
            ..Default::default()
        };
        assert!(options.check().is_ok(), "{time}");
    }
    for gres in ["gpu:1", "gpu:a100:2", "gpu", "gpu:1,shard:2"] {
        let options = SlurmOptions {
            gres: Some(gres.into()),
            ..Default::default()
        };
        assert!(options.check().is_ok(), "{gres}");
    }
}

#[test]
fn a_folder_with_a_space_is_refused_before_anything_is_written() {
    let mut j = job(vec![argv(&["true"])], SlurmOptions::default());
    j.chdir = "/home/me/my work".into();
    assert!(matches!(
        write_script(&j),
        Err(SlurmError::Option { field: "chdir", .. })
    ));
}

#[test]
fn sbatch_answers_parse() {
    assert_eq!(
        parse_submitted("12345\n"),
        Some(Submitted {
            job_id: "12345".into(),
            cluster: None
        })
    );
    assert_eq!(
        parse_submitted("77;cluster2"),
        Some(Submitted {
            job_id: "77".into(),
            cluster: Some("cluster2".into())
        })
    );
    assert_eq!(parse_submitted("sbatch: error: x"), None);
    assert_eq!(parse_submitted(""), None);
}

/// As Slurm 22.05's squeue printed it for a running array and a finished one.
#[test]
fn squeue_rows_parse_into_task_states() {
    let text = "5|2|PENDING|Resources||0:00|sweep-a\n5|0|RUNNING|None|localhost|0:02|sweep-a\n1|3|COMPLETED|None|localhost|0:03|sweep-b\n9|N/A|RUNNING|None|n1|0:01|x\n";
    let states = parse_squeue(text);
    assert_eq!(states.len(), 3, "the non-array row is skipped");
    assert_eq!(
        states[0],
        TaskState {
            job_id: "5".into(),
            task: 2,
            state: "PENDING".into(),
            reason: Some("Resources".into()),
            node: None,
            elapsed: Some("0:00".into()),
            name: "sweep-a".into(),
        }
    );
    assert_eq!(states[1].node.as_deref(), Some("localhost"));
    assert_eq!(states[1].reason, None);
    assert!(!is_final(&states[1].state));
    assert!(is_final(&states[2].state));
}

#[test]
fn sacct_rows_parse_and_cancelled_by_loses_its_uid() {
    let text = "12_0|COMPLETED|node1|00:01:02|s\n12_1|CANCELLED by 0|node2|00:00:10|s\n12|COMPLETED|node1|00:01:02|s\n12_2|PENDING|None assigned|00:00:00|s\n";
    let states = parse_sacct(text);
    assert_eq!(states.len(), 3);
    assert_eq!(states[1].state, "CANCELLED");
    assert_eq!(states[2].node, None);
    assert!(is_final("CANCELLED") && is_final("TIMEOUT") && is_final("OUT_OF_MEMORY"));
}

#[test]
fn a_sweep_job_record_round_trips_and_names_its_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let record = SweepJob {
        sweep_id: "sweep-a".into(),
        job_id: "42".into(),
        cluster: None,
        submitted_at: 1.0,
        script: "job.sbatch".into(),
        options: SlurmOptions::default(),
        runs: vec!["sweep-a-01".into(), "sweep-a-02".into()],
    };
    record.save(dir.path()).unwrap();
    std::fs::create_dir_all(dir.path().join(SLURM_DIR).join("junk")).unwrap();
    let all = SweepJob::load_all(dir.path());
    assert_eq!(all, vec![record.clone()]);
    assert_eq!(all[0].task_of("sweep-a-02"), Some(1));
    assert_eq!(all[0].task_of("other"), None);
}

#[test]
fn cancel_refuses_what_is_not_a_job_id() {
    assert!(matches!(
        cancel("12", "a name; rm", None),
        Err(SlurmError::Option {
            field: "job-name",
            ..
        })
    ));
    assert!(matches!(
        cancel("12; rm -rf /", "sweep-a", None),
        Err(SlurmError::Option { field: "job", .. })
    ));
}

#[test]
fn a_percent_in_a_folder_is_literal_and_a_zero_time_limit_is_refused() {
    let mut j = job(vec![argv(&["true"])], SlurmOptions::default());
    j.chdir = "/work/100%j".into();
    j.output = "/work/100%j/runs/.slurm/s/task-%a.log".into();
    let script = write_script(&j).unwrap();
    assert!(
        script.contains("#SBATCH --chdir=/work/100%%j\n"),
        "{script}"
    );
    assert!(
        script.contains("#SBATCH --output=/work/100%%j/runs/.slurm/s/task-%a.log\n"),
        "{script}"
    );
    j.chdir = "/work/a\\b".into();
    assert!(
        write_script(&j).is_err(),
        "a backslash turns Slurm's patterns off"
    );
    for zero in ["0", "00", "0:00", "0-0"] {
        let options = SlurmOptions {
            time: Some(zero.into()),
            ..Default::default()
        };
        assert!(options.check().is_err(), "{zero}");
    }
}

#[test]
fn records_that_are_not_plain_sane_files_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let record = |id: &str, job: &str, runs: Vec<String>| SweepJob {
        sweep_id: id.into(),
        job_id: job.into(),
        cluster: None,
        submitted_at: 1.0,
        script: "job.sbatch".into(),
        options: SlurmOptions::default(),
        runs,
    };
    record("good", "7", vec!["good-01".into()])
        .save(dir.path())
        .unwrap();
    record("empty", "8", vec![]).save(dir.path()).unwrap();
    record("word", "1;x", vec!["w-01".into()])
        .save(dir.path())
        .unwrap();
    // A FIFO would block a plain read for ever.
    let fifo_dir = dir.path().join(SLURM_DIR).join("fifo");
    std::fs::create_dir_all(&fifo_dir).unwrap();
    let made = Command::new("mkfifo")
        .arg(fifo_dir.join(JOB_FILE))
        .status()
        .unwrap();
    assert!(made.success());
    let loaded: Vec<String> = SweepJob::load_all(dir.path())
        .into_iter()
        .map(|j| j.sweep_id)
        .collect();
    assert_eq!(loaded, ["good"]);
}
