//! `--pin`: each worker thread runs on one CPU of the process's affinity mask, a different one
//! per thread while there are enough, and the server still echoes.

use std::io::{Read, Write};
use std::net::TcpStream;

use ringecho_server::{start, Backend, Config};

/// The CPUs a thread of this process may run on, from /proc.
fn allowed(task: &std::path::Path) -> String {
    let status = std::fs::read_to_string(task.join("status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn pinned_workers_each_run_on_one_cpu() {
    let cores = ringecho_common::allowed_cores().unwrap();
    for backend in [Backend::Epoll, Backend::EpollLoop, Backend::Multishot] {
        let mut cfg = Config::new("127.0.0.1:0".parse().unwrap(), backend);
        cfg.threads = Some(2);
        cfg.pin = true;
        let srv = start(&cfg).expect("server starts");
        let mut pinned = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let task = task.unwrap().path();
            let comm = std::fs::read_to_string(task.join("comm")).unwrap();
            if comm.starts_with("ringecho-") {
                pinned.push(allowed(&task));
            }
        }
        pinned.sort();
        let mut want: Vec<String> = (0..2).map(|i| cores[i % cores.len()].to_string()).collect();
        want.sort();
        assert_eq!(pinned, want, "{backend:?}: worker threads' CPUs");
        let mut s = TcpStream::connect(srv.local_addr()).unwrap();
        s.write_all(b"pinned").unwrap();
        let mut back = [0u8; 6];
        s.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"pinned");
        drop(s);
        srv.shutdown().unwrap();
    }
}
