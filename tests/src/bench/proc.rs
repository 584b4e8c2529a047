//! Process figures from `/proc/self`: CPU per thread group (controller vs simulators) and
//! resident memory.

use std::fs;

/// Clock ticks per second for `/proc/*/stat` times (`getconf CLK_TCK`; 100 on Linux).
const CLK_TCK: f64 = 100.0;

/// utime + stime in seconds from a `stat` line (fields 14 and 15, counted after `comm`).
fn stat_cpu(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After `comm`: state is field 3, so utime (14) is index 11 and stime (15) index 12.
    let ut: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    Some((ut + st) / CLK_TCK)
}

/// CPU seconds: (whole process, threads named `sim*`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    pub total: f64,
    pub sims: f64,
}

impl Cpu {
    pub fn now() -> Cpu {
        let total = fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| stat_cpu(&s))
            .unwrap_or(0.0);
        let mut sims = 0.0;
        if let Ok(dir) = fs::read_dir("/proc/self/task") {
            for t in dir.flatten() {
                let p = t.path();
                let comm = fs::read_to_string(p.join("comm")).unwrap_or_default();
                if comm.starts_with("sim") {
                    sims += fs::read_to_string(p.join("stat"))
                        .ok()
                        .and_then(|s| stat_cpu(&s))
                        .unwrap_or(0.0);
                }
            }
        }
        Cpu { total, sims }
    }

    /// CPU of everything but the simulators (controller, store, bench bookkeeping).
    pub fn controller(&self) -> f64 {
        (self.total - self.sims).max(0.0)
    }

    pub fn since(&self, earlier: &Cpu) -> Cpu {
        Cpu {
            total: self.total - earlier.total,
            sims: self.sims - earlier.sims,
        }
    }
}

fn status_kib(key: &str) -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Peak resident set (VmHWM), MiB.
pub fn peak_rss_mib() -> f64 {
    status_kib("VmHWM:") as f64 / 1024.0
}

/// Current resident set (VmRSS), MiB.
pub fn rss_mib() -> f64 {
    status_kib("VmRSS:") as f64 / 1024.0
}

/// Reset VmHWM to the current RSS (Linux: `echo 5 > /proc/self/clear_refs`).
pub fn reset_peak_rss() {
    let _ = fs::write("/proc/self/clear_refs", "5");
}

/// Raise the open-file limit (10,000 simulated containers hold two listeners each); uses
/// util-linux `prlimit` on this process. Returns the soft limit now in force.
pub fn raise_nofile(want: u64) -> u64 {
    let pid = std::process::id().to_string();
    let _ = std::process::Command::new("prlimit")
        .args(["--pid", &pid, &format!("--nofile={want}:{want}")])
        .output();
    fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_stat() {
        let s = "123 (tokio worker) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0";
        assert_eq!(super::stat_cpu(s), Some(3.0));
    }
}
