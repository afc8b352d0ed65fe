//! Which I/O driver a worker runs on, and why. monoio's `FusionDriver` falls back to epoll
//! without a word when `io_uring_setup` fails (the default seccomp profiles of Docker 25+,
//! containerd and Kubernetes deny it), so the worker builds the runtime for its driver itself and
//! keeps the error that ruled io_uring out: the ready line, `/metrics`, the status page and
//! `ringway check` report what really runs, with what the operator can do about it.

use crate::config::IoDriver;
use crate::observe::DriverReport;
use std::fmt;
use std::io;

/// Ring size: room for every in-flight operation of a busy worker without a submission stall.
const ENTRIES: u32 = 4096;

/// The environment variable monoio honours to force epoll; kept as an override of `auto` so a
/// whole test suite can run on epoll without editing each configuration.
const FORCE_EPOLL_ENV: &str = "MONOIO_FORCE_LEGACY_DRIVER";

pub type WorkerRuntime = monoio::FusionRuntime<
    monoio::time::TimeDriver<monoio::IoUringDriver>,
    monoio::time::TimeDriver<monoio::LegacyDriver>,
>;

/// The driver a runtime was built with.
#[derive(Clone, Debug)]
pub enum Driver {
    IoUring,
    Epoll(Why),
}

/// Why epoll serves instead of io_uring.
#[derive(Clone, Debug)]
pub enum Why {
    /// `io_driver = "epoll"`.
    Configured,
    /// `MONOIO_FORCE_LEGACY_DRIVER` is set (and `io_driver` is `auto`).
    Environment,
    /// `io_uring_setup` failed with this error.
    Unavailable(Cause),
}

/// What made `io_uring_setup` fail, as far as the process can tell.
#[derive(Clone, Debug)]
pub enum Cause {
    /// EPERM while this process runs under a seccomp filter: the container runtime's profile.
    Seccomp,
    /// EPERM with `kernel.io_uring_disabled` = 1 (group-restricted) or 2 (off).
    Sysctl(u8),
    /// EPERM with no seccomp filter and the sysctl at 0 (an LSM policy, most likely).
    Denied,
    /// ENOSYS: a kernel built without io_uring, or older than 5.1.
    NoKernelSupport,
    /// ENOMEM: the locked-memory limit, which rings count against before kernel 5.12.
    Memlock,
    Other(i32),
}

impl Driver {
    pub fn name(&self) -> &'static str {
        match self {
            Driver::IoUring => "io_uring",
            Driver::Epoll(_) => "epoll",
        }
    }
}

impl Why {
    /// A short stable word for the `reason` label of `ringway_io_driver`.
    pub fn code(&self) -> &'static str {
        match self {
            Why::Configured => "configured",
            Why::Environment => "environment",
            Why::Unavailable(Cause::Seccomp) => "seccomp",
            Why::Unavailable(Cause::Sysctl(_)) => "sysctl",
            Why::Unavailable(Cause::Denied) => "denied",
            Why::Unavailable(Cause::NoKernelSupport) => "no_kernel_support",
            Why::Unavailable(Cause::Memlock) => "memlock",
            Why::Unavailable(Cause::Other(_)) => "error",
        }
    }
}

impl Why {
    /// A few words for the ready line; the full sentence is printed just before it.
    pub fn short(&self) -> String {
        match self {
            Why::Configured => "io_driver = \"epoll\"".to_string(),
            Why::Environment => format!("{FORCE_EPOLL_ENV} set"),
            Why::Unavailable(Cause::Seccomp) => "a seccomp filter denies io_uring_setup".to_string(),
            Why::Unavailable(Cause::Sysctl(n)) => format!("kernel.io_uring_disabled = {n}"),
            Why::Unavailable(Cause::Denied) => "io_uring_setup denied (EPERM)".to_string(),
            Why::Unavailable(Cause::NoKernelSupport) => "no io_uring in this kernel".to_string(),
            Why::Unavailable(Cause::Memlock) => "io_uring_setup: locked-memory limit".to_string(),
            Why::Unavailable(Cause::Other(e)) => format!("io_uring_setup: {}", io::Error::from_raw_os_error(*e)),
        }
    }
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Configured => write!(f, "io_driver = \"epoll\" in the configuration"),
            Why::Environment => write!(f, "{FORCE_EPOLL_ENV} is set in the environment"),
            Why::Unavailable(c) => write!(f, "{c}"),
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const ALLOW: &str = "to use io_uring, run under a seccomp profile that also allows io_uring_setup, \
                             io_uring_enter and io_uring_register (docs/containers.md), or set \
                             io_driver = \"epoll\" to choose epoll on purpose";
        match self {
            Cause::Seccomp => write!(
                f,
                "io_uring_setup was refused (EPERM) by this process's seccomp filter, as the default profiles \
                 of Docker 25+, containerd and Kubernetes RuntimeDefault do; {ALLOW}"
            ),
            Cause::Sysctl(2) => write!(
                f,
                "io_uring_setup was refused (EPERM): sysctl kernel.io_uring_disabled = 2 turns io_uring off \
                 on this host; set it to 0 to use io_uring, or io_driver = \"epoll\" to keep epoll"
            ),
            Cause::Sysctl(_) => write!(
                f,
                "io_uring_setup was refused (EPERM): sysctl kernel.io_uring_disabled = 1 allows io_uring only \
                 to the group in kernel.io_uring_group; add ringway's user to that group or set the sysctl to 0"
            ),
            Cause::Denied => write!(
                f,
                "io_uring_setup was refused (EPERM) by a security policy (no seccomp filter here and \
                 kernel.io_uring_disabled is 0: an LSM such as SELinux, most likely); {ALLOW}"
            ),
            Cause::NoKernelSupport => write!(
                f,
                "io_uring_setup does not exist here (ENOSYS): a kernel older than 5.1 or built without \
                 CONFIG_IO_URING (or a seccomp profile answering ENOSYS); epoll is the choice on this host"
            ),
            Cause::Memlock => write!(
                f,
                "io_uring_setup ran out of locked memory (ENOMEM): kernels before 5.12 count rings against \
                 RLIMIT_MEMLOCK; raise it (ulimit -l, systemd LimitMEMLOCK=) or run fewer workers"
            ),
            Cause::Other(errno) => write!(f, "io_uring_setup failed: {}", io::Error::from_raw_os_error(*errno)),
        }
    }
}

impl Cause {
    fn of(e: &io::Error) -> Cause {
        match e.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => match sysctl_disabled() {
                Some(n @ 1..) => Cause::Sysctl(n),
                _ if under_seccomp() => Cause::Seccomp,
                _ => Cause::Denied,
            },
            Some(libc::ENOSYS) => Cause::NoKernelSupport,
            Some(libc::ENOMEM) => Cause::Memlock,
            Some(errno) => Cause::Other(errno),
            None => Cause::Other(0),
        }
    }
}

/// `kernel.io_uring_disabled` (kernels 6.6+); `None` where the sysctl does not exist.
fn sysctl_disabled() -> Option<u8> {
    std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether this process runs under a seccomp filter (`Seccomp: 2` in /proc/self/status).
fn under_seccomp() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Seccomp:"))
            .is_some_and(|v| v.trim() == "2")
    })
}

/// What the operator asked for once `MONOIO_FORCE_LEGACY_DRIVER` is taken into account: it turns
/// `auto` into epoll; an explicit `io_driver` wins over it.
fn wanted(choice: IoDriver) -> Result<IoDriver, Why> {
    match choice {
        IoDriver::Epoll => Err(Why::Configured),
        IoDriver::Auto if std::env::var_os(FORCE_EPOLL_ENV).is_some() => Err(Why::Environment),
        c => Ok(c),
    }
}

/// Builds a worker's runtime for `choice`. With `io_uring` a ring that cannot be set up is an
/// error naming the cause; with `auto` it means epoll, and the returned driver says why.
///
/// On io_uring, completions (readiness of idle tunnels, mostly) are handed to the worker as task
/// work; COOP_TASKRUN lets it run that work on its next ring entry, which it makes every tick,
/// instead of being interrupted for each completion (an inter-processor interrupt when the peer
/// runs on the other core: expensive on a VM). Kernels before 5.19 lack the flag and get the
/// default ring.
pub fn build(choice: IoDriver) -> io::Result<(WorkerRuntime, Driver)> {
    let why = match wanted(choice) {
        Err(why) => why,
        Ok(choice) => {
            let uring = |coop: bool| {
                let mut urb = io_uring::IoUring::builder();
                if coop {
                    urb.setup_coop_taskrun();
                }
                monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                    .with_entries(ENTRIES)
                    .uring_builder(urb)
                    .enable_timer()
                    .build()
            };
            match uring(true).or_else(|_| uring(false)) {
                Ok(rt) => return Ok((rt.into(), Driver::IoUring)),
                Err(e) if choice == IoDriver::IoUring => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("io_driver = \"io_uring\" but {}", Cause::of(&e)),
                    ))
                }
                Err(e) => Why::Unavailable(Cause::of(&e)),
            }
        }
    };
    let rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .with_entries(ENTRIES)
        .enable_timer()
        .build()?;
    Ok((rt.into(), Driver::Epoll(why)))
}

/// What a worker on this host would run on, by building (and dropping) one runtime the same way:
/// the answer `ringway check` gives.
pub fn probe(choice: IoDriver) -> io::Result<Driver> {
    build(choice).map(|(_, driver)| driver)
}

/// One line for the ready message and `ringway check`: the driver, and for epoll why.
pub fn describe(driver: &Driver) -> String {
    match driver {
        Driver::IoUring => "io_uring".to_string(),
        Driver::Epoll(why) => format!("epoll ({why})"),
    }
}

/// The workers' drivers as the admin endpoints show them.
pub fn report(drivers: &[Driver]) -> DriverReport {
    let uring = drivers.iter().filter(|d| matches!(d, Driver::IoUring)).count();
    let why = drivers.iter().find_map(|d| match d {
        Driver::Epoll(why) => Some(why),
        Driver::IoUring => None,
    });
    DriverReport {
        io_uring_workers: uring,
        epoll_workers: drivers.len() - uring,
        reason_code: why.map_or("", Why::code),
        reason: why.map(|w| w.to_string()).unwrap_or_default(),
        summary: why.map(Why::short).unwrap_or_default(),
    }
}
