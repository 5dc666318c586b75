//! `hvbench-agent`: runs hvbench jobs and streams their samples.
//!
//! The same static executable runs on the host (as a child of `hvbench`, protocol on
//! stdin/stdout) and in every guest. When it is the init of a guest kernel it first sets the
//! guest up (see [`init`]) and powers it off at the end; as PID 1 of a mere PID namespace it never
//! does either.
//!
//! This crate is the agent's logic; the executable is the `hvbench-agent` binary of the
//! `hvbench` package (crates/cli/src/bin), so that one `cargo build -p hvbench` builds both
//! programs side by side and tests of the command line find the agent they were built with.

mod clocks;
mod counters;
mod init;
mod serve;
mod system;

use std::io::{BufReader, Write};

/// The agent's entry point.
pub fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--version" || a == "-V") {
        println!("hvbench-agent {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "hvbench-agent {}: the benchmark agent of hvbench.\n\
             It speaks the hvbench protocol on stdin/stdout (or on the channel given with\n\
             --channel PATH); `hvbench` starts it, on the host and in guests. It is not meant\n\
             to be run by hand.",
            env!("CARGO_PKG_VERSION")
        );
        return;
    }
    let channel_arg = args
        .windows(2)
        .find(|w| w[0] == "--channel")
        .map(|w| w[1].clone());

    if init::is_guest_init() {
        // PID 1 of a guest kernel: set up, serve, and always power off, also after an error.
        let mut notes = Vec::new();
        let channel = init::setup(&mut notes);
        let result = match channel {
            Ok((input, mut output)) => {
                let hello = system::hello(true, notes);
                serve::serve(BufReader::new(input), &mut output, hello).map_err(|e| e.to_string())
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            eprintln!("hvbench-agent: {e}");
        }
        init::power_off();
    }

    let result = match channel_arg {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path);
            match file {
                Ok(f) => match f.try_clone() {
                    Ok(mut out) => serve::serve(
                        BufReader::new(f),
                        &mut out,
                        system::hello(false, Vec::new()),
                    ),
                    Err(e) => Err(e),
                },
                Err(e) => Err(std::io::Error::new(
                    e.kind(),
                    format!("cannot open channel {path}: {e}"),
                )),
            }
        }
        None => {
            let stdin = std::io::stdin().lock();
            let mut stdout = std::io::stdout().lock();
            let r = serve::serve(stdin, &mut stdout, system::hello(false, Vec::new()));
            let _ = stdout.flush();
            r
        }
    };
    if let Err(e) = result {
        eprintln!("hvbench-agent: {e}");
        std::process::exit(1);
    }
}
