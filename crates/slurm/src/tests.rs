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
    let text = "5|2|PENDING|Resources||0:00\n5|0|RUNNING|None|localhost|0:02\n1|3|COMPLETED|None|localhost|0:03\n9|N/A|RUNNING|None|n1|0:01\n";
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
        }
    );
    assert_eq!(states[1].node.as_deref(), Some("localhost"));
    assert_eq!(states[1].reason, None);
    assert!(!is_final(&states[1].state));
    assert!(is_final(&states[2].state));
}

#[test]
fn sacct_rows_parse_and_cancelled_by_loses_its_uid() {
    let text = "12_0|COMPLETED|node1|00:01:02\n12_1|CANCELLED by 0|node2|00:00:10\n12|COMPLETED|node1|00:01:02\n12_2|PENDING|None assigned|00:00:00\n";
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
        cancel("12; rm -rf /", None),
        Err(SlurmError::Option { field: "job", .. })
    ));
}
