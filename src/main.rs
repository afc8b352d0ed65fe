//! Command line: `ringway [--config PATH]` runs the proxy; `check` validates and prints the
//! compiled table; `route` explains what a request would do. Exit status 2 for configuration and
//! usage errors.

use mimalloc::MiMalloc;
use ringway::{config, inspect, server};
use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;
use std::path::PathBuf;
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: PlainFirstMimalloc = PlainFirstMimalloc;

/// mimalloc, asked through its plain entry points whenever any block meets the alignment. The
/// `mimalloc` crate passes every request to `mi_malloc_aligned`, which serves a block over 1 KiB
/// whose size class is not a power of two by over-allocating on its generic path: the per-request
/// futures (2-3 KB) paid that on every request.
struct PlainFirstMimalloc;

/// Every mimalloc block is aligned to at least a machine word.
const WORD: usize = std::mem::size_of::<usize>();

// SAFETY: each call forwards to mimalloc, whose plain functions return blocks aligned to at least
// `WORD` (taken only for layouts asking no more) and the `MiMalloc` ones honour any alignment;
// `mi_free` takes blocks from either.
unsafe impl GlobalAlloc for PlainFirstMimalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= WORD {
            unsafe { libmimalloc_sys::mi_malloc(layout.size()) as *mut u8 }
        } else {
            unsafe { MiMalloc.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= WORD {
            unsafe { libmimalloc_sys::mi_zalloc(layout.size()) as *mut u8 }
        } else {
            unsafe { MiMalloc.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        unsafe { libmimalloc_sys::mi_free(ptr as *mut c_void) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= WORD {
            unsafe { libmimalloc_sys::mi_realloc(ptr as *mut c_void, new_size) as *mut u8 }
        } else {
            unsafe { MiMalloc.realloc(ptr, layout, new_size) }
        }
    }
}

const USAGE: &str = "usage:
  ringway [--config PATH]                       run the proxy (default config/ringway.toml)
  ringway [--config PATH] --takeover SOCKET [--detach]
                                                replace the ringway serving SOCKET (its
                                                [server] control_socket) without dropping
                                                a connection; --detach returns once serving
  ringway check [--config PATH]                 validate and print the compiled table
  ringway route [--config PATH] [--listener NAME] [-X METHOD] URL [-H 'Name: value']...
                                                show what a request would do (on the
                                                listener NAME; default: the first one
                                                of the URL's scheme)
  ringway --version";

struct Args {
    command: String,
    config: PathBuf,
    url: Option<String>,
    method: String,
    headers: Vec<String>,
    listener: Option<String>,
    takeover: Option<PathBuf>,
    detach: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        command: "run".into(),
        config: PathBuf::from("config/ringway.toml"),
        url: None,
        method: "GET".into(),
        headers: Vec::new(),
        listener: None,
        takeover: None,
        detach: false,
    };
    let mut it = std::env::args().skip(1);
    let mut first = true;
    while let Some(a) = it.next() {
        match a.as_str() {
            "run" | "check" | "route" if first => args.command = a,
            "--config" | "-c" => args.config = it.next().ok_or("--config needs a path")?.into(),
            "-H" | "--header" if args.command == "route" => {
                args.headers.push(it.next().ok_or("-H needs 'Name: value'")?)
            }
            "-X" | "--method" if args.command == "route" => args.method = it.next().ok_or("-X needs a method")?,
            "--listener" | "-l" if args.command == "route" => {
                args.listener = Some(it.next().ok_or("--listener needs a listener name")?)
            }
            "--version" | "-V" => args.command = "version".into(),
            "--takeover" if args.command == "run" => {
                args.takeover = Some(it.next().ok_or("--takeover needs the control socket path")?.into())
            }
            "--detach" if args.command == "run" => args.detach = true,
            "--help" | "-h" => args.command = "help".into(),
            _ if a.starts_with("--config=") => args.config = a["--config=".len()..].into(),
            _ if args.command == "route" && args.url.is_none() && !a.starts_with('-') => args.url = Some(a),
            _ => return Err(format!("unexpected argument `{a}`")),
        }
        first = false;
    }
    if args.detach && args.takeover.is_none() {
        return Err("--detach goes with --takeover (it is the reload command's way to return)".into());
    }
    if args.command == "route" && args.url.is_none() {
        return Err("route needs a URL, e.g. ringway route http://example.com/grafana/api/health".into());
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ringway: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match args.command.as_str() {
        "version" => {
            println!("ringway {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        "help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let mut start = server::Start {
        takeover: args.takeover.clone(),
        ready_pipe: None,
    };
    if args.detach {
        // Before anything starts a thread: only the forking thread lives on in the child.
        match server::detach::detach() {
            Ok(server::detach::Detached::Child(pipe)) => start.ready_pipe = Some(pipe),
            Ok(server::detach::Detached::Parent(code)) => return code,
            Err(e) => {
                eprintln!("ringway: --detach: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let plan = match config::load(&args.config) {
        Ok(p) => p,
        Err(errors) => {
            for e in &errors {
                eprintln!("ringway: {e}");
            }
            eprintln!("ringway: {} error(s) in {}", errors.len(), args.config.display());
            return ExitCode::from(2);
        }
    };
    for w in &plan.warnings {
        eprintln!("ringway: warning: {w}");
    }
    match args.command.as_str() {
        "check" => {
            print!("{}", inspect::describe(&plan));
            ExitCode::SUCCESS
        }
        "route" => match inspect::explain(
            &plan,
            &args.method,
            args.url.as_deref().unwrap_or("/"),
            &args.headers,
            args.listener.as_deref(),
        ) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ringway: {e}");
                ExitCode::from(2)
            }
        },
        _ => match server::run(plan, start) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ringway: {e}");
                ExitCode::from(2)
            }
        },
    }
}
