//! Configuration files: `Config::parse` accepts or refuses with a one-line message at a line
//! and column inside the text; an accepted file compiles into rules, as `premain check-config`
//! and a reload promise.
#![no_main]

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use monitor::{
    detect::Rules,
    kernel::decode::Header,
    ops::config::Config,
    process::{
        event::{Action, Event, ProcessInfo},
        table::{ProcessTable, Resolution},
    },
};

/// `action` by pid 0, which has no root to look programs up in.
fn event(action: Action) -> Event {
    let header = Header {
        ktime_ns: 0,
        cgroup_id: 0,
        start_ns: 0,
        pid: 0,
        tid: 0,
        ppid: 0,
        uid: 0,
        gid: 0,
        flags: 0,
        comm: Vec::new(),
    };
    Event { header, process: ProcessInfo::default(), action }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut config = match Config::parse("fuzz.toml", text) {
        Ok(config) => config,
        Err(e) => {
            let lines = text.split('\n').collect::<Vec<_>>();
            assert!((1..=lines.len()).contains(&e.line), "{e} is past the last line");
            let width = lines[e.line - 1].chars().count();
            assert!((1..=width + 1).contains(&e.column), "{e} is past its line's end");
            let shown = e.to_string();
            assert!(!shown.contains(['\n', '\r']), "{shown:?} is not one line");
            return;
        }
    };
    // Host names would be resolved by a background thread: DNS traffic in a fuzzer. Literal
    // addresses and networks take the same path as in the daemon.
    config.install.index_hosts.retain(|h| h.parse::<IpNet>().is_ok() || h.parse::<IpAddr>().is_ok());
    let rules = Rules::from_config(&config).unwrap_or_else(|e| panic!("valid config, rules refused: {e}"));
    let table = ProcessTable::new(8);
    // Matching runs the compiled globs and destinations.
    for path in ["/home/a/.aws/credentials", "/etc/corp/x.key", "/srv/app/.env.example"] {
        let _ = rules.credential(Path::new(path));
        let open = Action::Open {
            path: PathBuf::from(path),
            requested: None,
            resolution: Resolution::Absolute,
            dirfd: -100,
            flags: 0o101,
            mode: 0,
            result: 3,
            syscall: 1,
            file: None,
            alias_of: None,
        };
        let _ = rules.evaluate(&event(open), false, &table);
    }
    let v4 = [2u8, 0, 1, 187, 10, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0].to_vec();
    let _ = rules.evaluate(&event(Action::Connect { addr: v4, requested: None, fd: 3, result: 0 }), true, &table);
    let exec = Action::Exec {
        path: PathBuf::from("/usr/bin/gcc"),
        resolution: Resolution::Absolute,
        argv: Vec::new(),
        result: 0,
        file: None,
        image: None,
    };
    let _ = rules.evaluate(&event(exec), true, &table);
    let _ = rules.allowed(Some(Path::new("/usr/bin/python3")), &[Path::new("/v/site.pth")], Some("Foo_Bar"));
});
