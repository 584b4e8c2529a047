//! Process figures from `/proc/self`: CPU per thread group (controller vs simulators) and
//! resident memory.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counting live heap bytes (`zlh-bench` installs it as its global
/// allocator). In-process the controller's RSS cannot be told apart from the simulators';
/// its heap can: live heap with the controller running minus live heap once the controller
/// and the store are dropped.
pub struct CountingAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Bytes freed on simulator threads (see `mark_sim_thread`), to tell which side gives memory
/// back when something is dropped.
static FREED_ON_SIMS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SIM_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Mark the current thread as a simulator thread (`on_thread_start` of the sims' runtime).
pub fn mark_sim_thread() {
    SIM_THREAD.with(|c| c.set(true));
}

fn on_sim_thread() -> bool {
    SIM_THREAD.try_with(|c| c.get()).unwrap_or(false)
}

// SAFETY: every call is forwarded unchanged to `System`; only a counter is added.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: same contract as `System.alloc`.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            LIVE.fetch_add(l.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: same contract as `System.alloc_zeroed`.
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            LIVE.fetch_add(l.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as `System.dealloc`.
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        if on_sim_thread() {
            FREED_ON_SIMS.fetch_add(l.size(), Ordering::Relaxed);
        }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: same contract as `System.realloc`.
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            LIVE.fetch_sub(l.size(), Ordering::Relaxed);
            LIVE.fetch_add(new, Ordering::Relaxed);
        }
        q
    }
}

/// Give freed heap back to the system (glibc `malloc_trim`), so RSS reflects live memory.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim takes a byte count and only releases free memory.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Bytes freed so far on simulator threads, MiB.
pub fn freed_on_sims_mib() -> f64 {
    FREED_ON_SIMS.load(Ordering::Relaxed) as f64 / (1024.0 * 1024.0)
}

/// Live heap bytes in MiB if `CountingAlloc` is the global allocator (else 0).
pub fn live_heap_mib() -> f64 {
    LIVE.load(Ordering::Relaxed) as f64 / (1024.0 * 1024.0)
}

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
