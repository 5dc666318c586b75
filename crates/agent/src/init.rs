//! PID-1 duties in a guest kernel.
//!
//! hvbench boots guests with the agent as `/init` of an initramfs it assembled (see
//! `hvbench_core::image`) and a kernel command line carrying `hvbench_init=1` and
//! `hvbench_channel=...`; the kernel hands unknown `key=value` parameters to init as environment
//! variables. As init the agent mounts the pseudo file systems, loads the modules listed in
//! `/modules/order`, opens its channel and, at the end, powers the machine off.
//!
//! Power-off must never be attempted by PID 1 of a mere PID namespace (a container): there
//! `reboot(2)` would kill the namespace, or worse. [`is_guest_init`] therefore requires PID 1,
//! the command-line marker, and the initial PID namespace.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The inode of the initial PID namespace (`PROC_PID_INIT_INO` in the kernel).
const INIT_PID_NS_INO: u64 = 0xEFFF_FFFC;

/// How long to wait for the channel device to appear after its driver loaded.
const CHANNEL_WAIT: Duration = Duration::from_secs(5);
/// How long to wait for the disk and the network interface the host attached.
const DEVICE_WAIT: Duration = Duration::from_secs(10);

/// True only when this process is the init of a guest kernel started by hvbench.
pub fn is_guest_init() -> bool {
    // SAFETY: getpid has no preconditions and cannot fail.
    if unsafe { libc::getpid() } != 1 {
        return false;
    }
    if std::env::var("hvbench_init").as_deref() != Ok("1") {
        return false;
    }
    if !Path::new("/proc/self").exists() {
        let _ = std::fs::create_dir_all("/proc");
        // A failure leaves /proc/self missing, and the check below answers false.
        let _ = mount(
            "proc",
            "/proc",
            "proc",
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        );
    }
    in_initial_pid_namespace()
}

fn in_initial_pid_namespace() -> bool {
    match std::fs::metadata("/proc/self/ns/pid") {
        Ok(m) => m.ino() == INIT_PID_NS_INO,
        // A kernel built without namespaces has no /proc/self/ns, and no PID namespace to be
        // inside of; any other failure (no /proc at all) proves nothing.
        Err(_) => Path::new("/proc/self").exists() && !Path::new("/proc/self/ns").exists(),
    }
}

fn mount(
    source: &str,
    target: &str,
    fstype: &str,
    flags: libc::c_ulong,
) -> Result<(), std::io::Error> {
    let c = |s: &str| {
        CString::new(s).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    };
    let (source, target, fstype) = (c(source)?, c(target)?, c(fstype)?);
    // SAFETY: the three pointers are valid NUL-terminated strings that outlive the call; a null
    // data pointer is allowed for these file system types.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Mounts `fstype` on `target` unless something already is (EBUSY), noting failures.
fn mount_noting(notes: &mut Vec<String>, fstype: &str, target: &str, flags: libc::c_ulong) {
    let _ = std::fs::create_dir_all(target);
    match mount(fstype, target, fstype, flags) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
        Err(e) => notes.push(format!("mount {fstype} on {target}: {e}")),
    }
}

/// Sets the guest up and opens the agent channel: returns its reading and writing halves.
pub fn setup(notes: &mut Vec<String>) -> Result<(File, File), String> {
    let t0 = Instant::now();
    let nosuid_nodev = libc::MS_NOSUID | libc::MS_NODEV;
    if !Path::new("/proc/self").exists() {
        mount_noting(notes, "proc", "/proc", nosuid_nodev | libc::MS_NOEXEC);
    }
    mount_noting(notes, "sysfs", "/sys", nosuid_nodev | libc::MS_NOEXEC);
    mount_noting(notes, "devtmpfs", "/dev", libc::MS_NOSUID);
    mount_noting(notes, "tmpfs", "/tmp", nosuid_nodev);

    load_modules(Path::new("/modules"), notes);
    if let Err(e) = loopback_up() {
        notes.push(format!("loopback not up: {e}"));
    }
    if let Ok(spec) = std::env::var("hvbench_ip") {
        match configure_network(&spec) {
            Ok(done) => notes.push(format!("network: {done}")),
            Err(e) => notes.push(format!("network not configured: {e}")),
        }
    }
    if let Ok(disk) = std::env::var("hvbench_disk") {
        if let Err(e) = wait_for_disk(&disk) {
            notes.push(e);
        }
    }

    let spec = std::env::var("hvbench_channel").unwrap_or_else(|_| "console".into());
    let file = open_channel(&spec)?;
    notes.push(format!(
        "setup took {} ms; channel {spec}",
        t0.elapsed().as_millis()
    ));
    let out = file
        .try_clone()
        .map_err(|e| format!("cannot duplicate the channel {spec}: {e}"))?;
    Ok((file, out))
}

/// Loads every module named in `dir/order`, in that order, and removes the files (the root
/// file system is memory).
fn load_modules(dir: &Path, notes: &mut Vec<String>) {
    let Ok(order) = std::fs::read_to_string(dir.join("order")) else {
        notes.push("no /modules/order: no modules loaded".into());
        return;
    };
    let t0 = Instant::now();
    let mut loaded = Vec::new();
    for name in order.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let path = dir.join(name);
        match finit_module(&path) {
            Ok(()) => loaded.push(name.to_string()),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                loaded.push(format!("{name} (already loaded)"))
            }
            Err(e) => notes.push(format!("module {name}: {e}")),
        }
        let _ = std::fs::remove_file(&path);
    }
    notes.push(format!(
        "loaded {} modules in {} ms: {}",
        loaded.len(),
        t0.elapsed().as_millis(),
        loaded.join(" ")
    ));
}

fn finit_module(path: &Path) -> std::io::Result<()> {
    let f = File::open(path)?;
    let params = c"";
    // SAFETY: finit_module reads the module from a file descriptor that stays open for the
    // call, and a valid NUL-terminated parameter string; no memory of ours is written.
    let rc = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), params.as_ptr(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Brings the loopback interface up, for workloads that talk to themselves over TCP.
fn loopback_up() -> std::io::Result<()> {
    let sock = ioctl_socket()?;
    interface_up(&sock, "lo")
}

/// A datagram socket to issue interface ioctls on.
fn ioctl_socket() -> std::io::Result<std::os::fd::OwnedFd> {
    // SAFETY: socket has no memory-safety preconditions.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a socket we just opened and own; OwnedFd closes it exactly once.
    Ok(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// An ifreq naming `name` (at most IFNAMSIZ - 1 bytes), otherwise zeroed.
fn ifreq(name: &str) -> std::io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.is_empty() || name.len() >= req.ifr_name.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?}"),
        ));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

fn interface_up(sock: &std::os::fd::OwnedFd, name: &str) -> std::io::Result<()> {
    let mut req = ifreq(name)?;
    // SAFETY: `req` is a valid ifreq naming the interface; SIOCGIFFLAGS writes only its flags.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS filled ifru_flags, the union member read and written here.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: `req` is a valid ifreq with the name and the new flags.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Sets an IPv4 address (`SIOCSIFADDR`) or netmask (`SIOCSIFNETMASK`) of an interface.
fn set_ipv4(
    sock: &std::os::fd::OwnedFd,
    name: &str,
    request: libc::Ioctl,
    addr: Ipv4Addr,
) -> std::io::Result<()> {
    let mut req = ifreq(name)?;
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(addr).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in fits in the sockaddr union member (16 bytes each); we write it whole
    // into the union, which is what the kernel reads for these requests.
    unsafe {
        std::ptr::write(
            std::ptr::addr_of_mut!(req.ifr_ifru.ifru_addr).cast::<libc::sockaddr_in>(),
            sin,
        );
    }
    // SAFETY: `req` is a valid ifreq with the name and an AF_INET address.
    if unsafe { libc::ioctl(sock.as_raw_fd(), request, &req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The network the host asked for with `hvbench_ip=IFACE:ADDR/PREFIX` (IFACE may be `auto`:
/// the first interface other than `lo`).
#[derive(Debug, PartialEq)]
struct NetRequest {
    iface: Option<String>,
    addr: Ipv4Addr,
    prefix: u8,
}

fn parse_net_request(spec: &str) -> Result<NetRequest, String> {
    let bad =
        || format!("bad hvbench_ip {spec:?}: expected IFACE:ADDR/PREFIX, e.g. auto:10.0.2.15/24");
    let (iface, cidr) = spec.split_once(':').ok_or_else(bad)?;
    let (addr, prefix) = cidr.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    if prefix > 32 || iface.is_empty() {
        return Err(bad());
    }
    Ok(NetRequest {
        iface: (iface != "auto").then(|| iface.to_string()),
        addr,
        prefix,
    })
}

/// Waits (bounded) for the network interface to appear, then gives it its address.
fn configure_network(spec: &str) -> Result<String, String> {
    let req = parse_net_request(spec)?;
    let deadline = Instant::now() + DEVICE_WAIT;
    let iface = loop {
        let found = match &req.iface {
            Some(name) => Path::new("/sys/class/net")
                .join(name)
                .exists()
                .then(|| name.clone()),
            None => first_interface(),
        };
        if let Some(name) = found {
            break name;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no network interface{} appeared within {DEVICE_WAIT:?}: the guest kernel lacks the NIC's driver",
                req.iface.as_deref().map(|n| format!(" {n}")).unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mask = if req.prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(req.prefix))
    };
    let sock = ioctl_socket().map_err(|e| format!("socket: {e}"))?;
    set_ipv4(&sock, &iface, libc::SIOCSIFADDR, req.addr)
        .and_then(|()| set_ipv4(&sock, &iface, libc::SIOCSIFNETMASK, Ipv4Addr::from(mask)))
        .and_then(|()| interface_up(&sock, &iface))
        .map_err(|e| format!("cannot configure {iface}: {e}"))?;
    Ok(format!("{iface} {}/{}", req.addr, req.prefix))
}

fn first_interface() -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n != "lo")
        .collect();
    names.sort();
    names.into_iter().next()
}

/// Waits (bounded) for the disk device the host attached (`hvbench_disk=/dev/vda`): drivers
/// probe asynchronously, and a workload must not find the device missing by racing them.
fn wait_for_disk(path: &str) -> Result<(), String> {
    let deadline = Instant::now() + DEVICE_WAIT;
    while !Path::new(path).exists() {
        if Instant::now() >= deadline {
            return Err(format!(
                "the disk {path} did not appear within {DEVICE_WAIT:?}: the guest kernel lacks the disk model's driver"
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Opens the channel the kernel command line names: `virtio:NAME` (a virtio-serial port),
/// `console`, `hvc0`, `ttyS0` or `tty1` (a device in /dev: UML gives the agent its console
/// line 1), or an absolute path. Terminals are put in raw mode.
fn open_channel(spec: &str) -> Result<File, String> {
    let path = if let Some(name) = spec.strip_prefix("virtio:") {
        wait_for_virtio_port(name)?
    } else if spec.starts_with('/') {
        PathBuf::from(spec)
    } else if !spec.is_empty() && spec.chars().all(|c| c.is_ascii_alphanumeric()) {
        Path::new("/dev").join(spec)
    } else {
        return Err(format!(
            "unknown hvbench_channel {spec:?}: expected virtio:NAME, a device name in /dev (console, hvc0, tty1) or a path"
        ));
    };
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&path)
        .map_err(|e| format!("cannot open the channel {}: {e}", path.display()))?;
    make_raw_if_tty(&f);
    Ok(f)
}

/// Waits until a virtio-serial port named `name` appears and returns its device node.
fn wait_for_virtio_port(name: &str) -> Result<PathBuf, String> {
    let deadline = Instant::now() + CHANNEL_WAIT;
    loop {
        if let Some(dev) = find_virtio_port(name) {
            let node = Path::new("/dev").join(&dev);
            if node.exists() {
                return Ok(node);
            }
        }
        if Instant::now() >= deadline {
            let seen: Vec<String> = std::fs::read_dir("/sys/class/virtio-ports")
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            return Err(format!(
                "no virtio-serial port named {name} within {CHANNEL_WAIT:?} (ports seen: {}); is virtio_console loaded?",
                if seen.is_empty() { "none".to_string() } else { seen.join(", ") }
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn find_virtio_port(name: &str) -> Option<String> {
    std::fs::read_dir("/sys/class/virtio-ports")
        .ok()?
        .filter_map(|e| e.ok())
        .find_map(|e| {
            let n = std::fs::read_to_string(e.path().join("name")).ok()?;
            (n.trim() == name).then(|| e.file_name().to_string_lossy().into_owned())
        })
}

/// Puts a terminal into raw mode (no echo, no line editing, no CR/LF translation), so that the
/// host's lines are not echoed back as output. Not a terminal: nothing to do.
fn make_raw_if_tty(f: &File) {
    let fd = f.as_raw_fd();
    // SAFETY: termios is plain old data; all-zero is a valid value for tcgetattr to overwrite.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open for the duration of the call and `t` is a valid termios.
    if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
        return;
    }
    // SAFETY: `t` is a valid termios that tcgetattr filled.
    unsafe { libc::cfmakeraw(&mut t) };
    // SAFETY: `fd` is open and `t` is a valid termios.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) };
}

/// Powers the guest off; never returns. If the kernel refuses, init exits, the kernel panics
/// ("Attempted to kill init"), and `panic=-1` with QEMU's `-no-reboot` ends the machine.
pub fn power_off() -> ! {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    // SAFETY: only reached when is_guest_init() proved this is init of the initial PID namespace
    // of a kernel hvbench booted; powering that machine off is the intent.
    let rc = unsafe { libc::reboot(libc::RB_POWER_OFF) };
    eprintln!(
        "hvbench-agent: power-off failed ({rc}: {}); exiting",
        std::io::Error::last_os_error()
    );
    std::process::exit(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_init_on_the_host() {
        // The test process is never PID 1 of the initial namespace.
        assert!(!is_guest_init());
    }

    #[test]
    fn channel_spec_is_checked() {
        assert!(open_channel("bad spec!")
            .unwrap_err()
            .contains("unknown hvbench_channel"));
        assert!(open_channel("/nonexistent/channel")
            .unwrap_err()
            .contains("cannot open the channel"));
    }

    #[test]
    fn load_modules_notes_missing_order() {
        let mut notes = Vec::new();
        load_modules(Path::new("/nonexistent-hvbench-modules"), &mut notes);
        assert!(notes[0].contains("no /modules/order"));
    }

    #[test]
    fn network_requests_are_parsed_and_checked() {
        assert_eq!(
            parse_net_request("auto:10.0.2.15/24").unwrap(),
            NetRequest {
                iface: None,
                addr: Ipv4Addr::new(10, 0, 2, 15),
                prefix: 24
            }
        );
        assert_eq!(
            parse_net_request("vec0:10.77.0.2/30")
                .unwrap()
                .iface
                .as_deref(),
            Some("vec0")
        );
        for bad in [
            "10.0.2.15/24",
            "auto:10.0.2.15",
            "auto:10.0.2/24",
            "auto:1.2.3.4/33",
            ":1.2.3.4/8",
        ] {
            assert!(
                parse_net_request(bad).unwrap_err().contains("hvbench_ip"),
                "{bad}"
            );
        }
    }

    #[test]
    fn raw_mode_ignores_non_terminals() {
        let f = File::open("/proc/self/status").unwrap();
        make_raw_if_tty(&f);
    }
}
