//! What the binary's tests share: a real `m1 serve` on a free loopback port.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running `m1 serve`; dropping it kills the process.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Server {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `m1` binary with `$M1_HOME` set to `home` (and no remote from the environment).
pub fn m1(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_m1"));
    c.env("M1_HOME", home).env_remove("M1_REMOTE");
    c
}

/// Starts `m1 serve -port 0` over the catalog in `home` and waits until it listens.
pub fn start_server(home: &Path) -> Server {
    start_server_with(home, &[])
}

/// [`start_server`] with more `m1 serve` options.
pub fn start_server_with(home: &Path, options: &[&str]) -> Server {
    let mut child = m1(home)
        .args(["serve", "-port", "0"])
        .args(options)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = lines.next().expect("m1 serve printed nothing").unwrap();
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no address in '{line}'"))
        .to_string();
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, base }
}
