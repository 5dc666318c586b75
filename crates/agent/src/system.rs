//! What the agent tells the host about the system it runs in.

use hvbench_protocol::Hello;

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn uname() -> String {
    // SAFETY: utsname is plain old data; uname fills it and NUL-terminates every field.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return "unknown".into();
    }
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    format!("{} {}", field(&u.release), field(&u.version))
}

/// The hello message for the system the agent runs in.
pub fn hello(is_init: bool, setup_notes: Vec<String>) -> Hello {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    let mem_total_kib = read_trim("/proc/meminfo")
        .and_then(|m| {
            m.lines()
                .find_map(|l| {
                    l.strip_prefix("MemTotal:")
                        .map(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                })
                .flatten()
        })
        .unwrap_or(0);
    let uptime_s = read_trim("/proc/uptime")
        .and_then(|u| {
            u.split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
        })
        .filter(|u| u.is_finite() && *u >= 0.0);
    Hello {
        agent_version: env!("CARGO_PKG_VERSION").into(),
        build_id: String::new(),
        kernel: uname(),
        cpus,
        mem_total_kib,
        clocksource: read_trim("/sys/devices/system/clocksource/clocksource0/current_clocksource"),
        uptime_s,
        is_init,
        setup_notes,
    }
}
