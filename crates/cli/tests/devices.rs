//! Disks and networks end to end: the data-safety refusals, the io and net suites on the host
//! and in guests, the emulated device models, and the error of a guest whose disk cannot be
//! attached. Properties only (a run is measured or refused, files are unchanged), no timings.

mod support;
use support::{documents, hvbench, only_document, text, tmpdir};

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

/// A user's file with recognizable content, and its bytes.
fn users_file(dir: &Path) -> (PathBuf, Vec<u8>) {
    let f = dir.join("precious.img");
    let bytes: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8 + 1).collect();
    std::fs::write(&f, &bytes).unwrap();
    (f, bytes)
}

/// Runs `hvbench run` with short repetitions into `out`, plus `args`.
fn run_hvbench(out: &Path, args: &[&str]) -> Output {
    hvbench()
        .args([
            "run",
            "--reps",
            "2",
            "--warmup",
            "0",
            "--duration",
            "0.05",
            "--max-reps",
            "2",
            "-q",
            "--out",
        ])
        .arg(out)
        .args(args)
        .output()
        .unwrap()
}

/// The configuration settings of the first guest of `backend`.
fn guest_settings<'a>(doc: &'a Value, backend: &str) -> &'a Value {
    let b = doc["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == backend)
        .unwrap();
    &b["guests"][0]["config"]["settings"]
}

fn runs<'a>(doc: &'a Value, backend: &str) -> Vec<&'a Value> {
    doc["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["backend"] == backend)
        .collect()
}

fn backend_available(doc: &Value, name: &str) -> bool {
    doc["backends"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["name"] == name && b["availability"]["status"] == "available")
}

#[test]
fn writes_to_a_users_disk_are_refused_before_anything_runs() {
    let dir = tmpdir("dev-test", "refuse-write");
    let (f, bytes) = users_file(&dir);
    let out = dir.join("out");
    let o = run_hvbench(
        &out,
        &[
            "--backend",
            "native",
            "--workload",
            "io.randwrite",
            "--disk",
            f.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("--allow-destructive-writes"), "{t}");
    assert!(t.contains("io.randwrite"), "{t}");
    assert!(documents(&out).is_empty(), "nothing ran");
    assert_eq!(std::fs::read(&f).unwrap(), bytes, "the file is untouched");

    // The flag means nothing without a disk of the user's.
    let o = run_hvbench(
        &out,
        &["--workload", "io.randwrite", "--allow-destructive-writes"],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("--disk"), "{}", text(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reads_of_a_users_disk_never_change_it_and_writes_need_the_flag() {
    let dir = tmpdir("dev-test", "read-user");
    let (f, bytes) = users_file(&dir);
    let out = dir.join("out");
    let o = run_hvbench(
        &out,
        &[
            "--backend",
            "native",
            "--workload",
            "io.randread",
            "--disk",
            f.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let doc = only_document(&out);
    let r = runs(&doc, "native")[0];
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["labels"]["engine"], "psync");
    assert!(r["host_cpu_per_op"]["unit"] == "µs/op", "{r}");
    assert!(doc["settings"]["devices"]["disk"]
        .as_str()
        .unwrap()
        .contains("read-only"));
    assert_eq!(
        std::fs::read(&f).unwrap(),
        bytes,
        "reads leave it as it was"
    );

    // With the flag, writes run (and may change it: the user said so).
    let out2 = dir.join("out2");
    let o = run_hvbench(
        &out2,
        &[
            "--backend",
            "native",
            "--workload",
            "io.randwrite",
            "--allow-destructive-writes",
            "--disk",
            f.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(runs(&only_document(&out2), "native")[0]["status"], "ok");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_or_mounted_disk_is_refused() {
    let dir = tmpdir("dev-test", "missing");
    let out = dir.join("out");
    let o = run_hvbench(
        &out,
        &[
            "--backend",
            "native",
            "--workload",
            "io.randread",
            "--disk",
            dir.join("no-such.img").to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("no-such.img"), "{}", text(&o));

    // The block device of a mounted file system, if this machine has one.
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let dev = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .find(|d| {
            use std::os::unix::fs::FileTypeExt;
            d.starts_with("/dev/")
                && std::fs::metadata(d).is_ok_and(|m| m.file_type().is_block_device())
        });
    match dev {
        Some(dev) => {
            let o = run_hvbench(
                &out,
                &[
                    "--backend",
                    "native",
                    "--workload",
                    "io.randread",
                    "--disk",
                    dev,
                ],
            );
            assert!(!o.status.success(), "{}", text(&o));
            assert!(text(&o).contains("mounted"), "{}", text(&o));
        }
        None => eprintln!("no mounted block device here: the mounted case is not exercised"),
    }
    assert!(documents(&out).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn io_and_net_suites_run_on_the_host_and_under_qemu_tcg() {
    let dir = tmpdir("dev-test", "suites");
    for (suite, extra) in [("io", vec!["--disk-size", "16M"]), ("net", vec![])] {
        let out = dir.join(suite);
        let mut args = vec!["--backend", "qemu-tcg", "--suite", suite];
        args.extend(&extra);
        let o = run_hvbench(&out, &args);
        assert!(o.status.success(), "{}", text(&o));
        let doc = only_document(&out);
        if !backend_available(&doc, "qemu-tcg") {
            eprintln!("qemu-tcg unavailable here: only the host was measured");
        }
        for backend in ["native", "qemu-tcg"] {
            if backend != "native" && !backend_available(&doc, backend) {
                continue;
            }
            let rs = runs(&doc, backend);
            assert_eq!(rs.len(), if suite == "io" { 5 } else { 3 }, "{backend}");
            for r in rs {
                assert_eq!(r["status"], "ok", "{backend} {suite}: {r}");
                assert_eq!(r["samples"].as_array().unwrap().len(), 2);
                let unit = r["host_cpu_per_op"]["unit"].as_str().unwrap();
                let per_mb = r["unit"] == "MB/s" || r["unit"] == "Gbit/s";
                assert_eq!(unit, if per_mb { "µs/MB" } else { "µs/op" }, "{r}");
                if r["workload"] == "net.rr" || r["workload"] == "io.randread" {
                    let (p50, p99) = (&r["extras"]["lat_p50_us"], &r["extras"]["lat_p99_us"]);
                    assert!(p50.as_f64().unwrap() <= p99.as_f64().unwrap(), "{r}");
                }
            }
        }
        if suite == "io" && backend_available(&doc, "qemu-tcg") {
            let g = guest_settings(&doc, "qemu-tcg");
            assert_eq!(g["disk_model"], "virtio");
            assert!(g["disk_cache"].as_str().unwrap().starts_with("none"));
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn emulated_devices_run_under_qemu_tcg() {
    let dir = tmpdir("dev-test", "emulated");
    for (args, workload) in [
        (["--disk-model", "ide"], "io.randread"),
        (["--disk-model", "ahci"], "io.randread"),
        (["--nic", "e1000"], "net.rr"),
    ] {
        let out = dir.join(args[1]);
        let o = run_hvbench(
            &out,
            &[
                "--backend",
                "qemu-tcg",
                "--disk-size",
                "16M",
                "--workload",
                workload,
                args[0],
                args[1],
            ],
        );
        assert!(o.status.success(), "{}", text(&o));
        let doc = only_document(&out);
        if !backend_available(&doc, "qemu-tcg") {
            eprintln!("qemu-tcg unavailable here: skipped");
            continue;
        }
        let r = runs(&doc, "qemu-tcg")[0];
        assert_eq!(r["status"], "ok", "{args:?}: {r}");
        let settings = guest_settings(&doc, "qemu-tcg");
        let key = if args[0] == "--nic" {
            "nic"
        } else {
            "disk_model"
        };
        assert_eq!(settings[key], args[1]);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_kernel_without_the_disk_driver_is_a_clear_failure() {
    // The cloud kernel has no AHCI driver: asked for it explicitly, the guest cannot get its
    // disk, and the run says which driver is missing and how to get it.
    let Some(cloud) = std::fs::read_dir("/boot").ok().and_then(|rd| {
        rd.flatten().map(|e| e.path()).find(|p| {
            p.to_string_lossy().contains("vmlinuz-")
                && p.to_string_lossy().ends_with("-cloud-amd64")
        })
    }) else {
        eprintln!("no cloud kernel in /boot: skipped");
        return;
    };
    let dir = tmpdir("dev-test", "no-driver");
    let out = dir.join("out");
    let o = run_hvbench(
        &out,
        &[
            "--backend",
            "qemu-tcg",
            "--disk-size",
            "16M",
            "--workload",
            "io.randread",
            "--disk-model",
            "ahci",
            "--kernel",
            cloud.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let doc = only_document(&out);
    if !backend_available(&doc, "qemu-tcg") {
        eprintln!("qemu-tcg unavailable here: skipped");
        return;
    }
    let r = runs(&doc, "qemu-tcg")[0];
    assert_eq!(r["status"], "failed", "{r}");
    let reason = r["reason"].as_str().unwrap();
    assert!(reason.contains("ahci"), "{reason}");
    assert!(
        reason.contains("apt-get install linux-image-amd64"),
        "{reason}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn io_and_net_run_in_namespace_gvisor_and_uml() {
    let dir = tmpdir("dev-test", "others");
    let out = dir.join("out");
    let o = run_hvbench(
        &out,
        &[
            "--backend",
            "namespace",
            "--backend",
            "gvisor",
            "--backend",
            "uml",
            "--disk-size",
            "16M",
            "--workload",
            "io.randread",
            "--workload",
            "io.seqwrite",
            "--workload",
            "net.stream.rx",
            "--workload",
            "net.rr",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let doc = only_document(&out);
    for backend in ["namespace", "gvisor", "uml"] {
        if !backend_available(&doc, backend) {
            eprintln!("{backend} unavailable here: skipped");
            continue;
        }
        let rs = runs(&doc, backend);
        assert_eq!(rs.len(), 4, "{backend}");
        for r in rs {
            assert_eq!(r["status"], "ok", "{backend}: {r}");
            assert!(r["host_cpu_per_op"]["value"].as_f64().unwrap() > 0.0, "{r}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
