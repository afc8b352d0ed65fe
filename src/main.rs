//! Command line: `ringway [--config PATH]` runs the proxy; `check` validates and prints the
//! compiled table; `route` explains what a request would do. Exit status 2 for configuration and
//! usage errors.

use mimalloc::MiMalloc;
use ringway::{config, inspect, server};
use std::path::PathBuf;
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

const USAGE: &str = "usage:
  ringway [--config PATH]                       run the proxy (default config/ringway.toml)
  ringway check [--config PATH]                 validate and print the compiled table
  ringway route [--config PATH] [-X METHOD] URL [-H 'Name: value']...
                                                show what a request would do
  ringway --version";

struct Args {
    command: String,
    config: PathBuf,
    url: Option<String>,
    method: String,
    headers: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        command: "run".into(),
        config: PathBuf::from("config/ringway.toml"),
        url: None,
        method: "GET".into(),
        headers: Vec::new(),
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
            "--version" | "-V" => args.command = "version".into(),
            "--help" | "-h" => args.command = "help".into(),
            _ if a.starts_with("--config=") => args.config = a["--config=".len()..].into(),
            _ if args.command == "route" && args.url.is_none() && !a.starts_with('-') => args.url = Some(a),
            _ => return Err(format!("unexpected argument `{a}`")),
        }
        first = false;
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
        "route" => match inspect::explain(&plan, &args.method, args.url.as_deref().unwrap_or("/"), &args.headers) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ringway: {e}");
                ExitCode::from(2)
            }
        },
        _ => match server::run(plan) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ringway: {e}");
                ExitCode::from(2)
            }
        },
    }
}
