//! Running a command for a benchmark: its wall time and peak memory.

use std::process::Command;
use std::time::Instant;

/// One finished run of a measured command.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    /// Wall seconds.
    pub wall: f64,
    /// Peak resident set size in KiB (`/usr/bin/time`'s report; 0 when unavailable).
    pub rss_kib: u64,
    /// Exit status (-1 when killed by a signal).
    pub code: i32,
}

/// Run `cmd` under `/usr/bin/time -v` (for its peak memory), its standard output discarded.
pub fn measure(cmd: &Command) -> Measured {
    let started = Instant::now();
    let out = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdout(std::process::Stdio::null())
        .output()
        .expect("run /usr/bin/time");
    let wall = started.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stderr);
    let rss_kib = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Measured {
        wall,
        rss_kib,
        code: out.status.code().unwrap_or(-1),
    }
}
