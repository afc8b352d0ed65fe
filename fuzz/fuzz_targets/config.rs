//! The configuration loader on arbitrary text: errors, never a panic; a config that compiles
//! gives the state every worker is built from. (Server names in the input are looked up as the
//! loader does at start-up; garbage names fail fast with NXDOMAIN.)
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match ringway::config::load_str(text, Path::new("fuzz.toml")) {
        Ok(plan) => {
            let _ = ringway::auth::WorkerAccess::new(&plan);
            let _ = ringway::upstream::ConnPool::new(&plan);
            let _ = ringway::auth::describe(&plan);
        }
        Err(errors) => {
            for e in errors {
                let _ = e.to_string();
            }
        }
    }
});
