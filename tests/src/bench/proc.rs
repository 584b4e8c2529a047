//! Process figures from `/proc/self`: CPU per thread group (controller vs simulators) and
//! resident memory.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fs;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

/// The system allocator, counting live heap bytes (`zlh-bench` installs it as its global
/// allocator). In-process the controller's RSS cannot be told apart from the simulators';
/// its heap can: live heap with the controller running minus live heap once the controller
/// and the store are dropped.
pub struct CountingAlloc;

/// Counters striped by thread, each on its own cache line: one shared counter made every
/// allocation a cache-line transfer between the cores, which showed up as a tenth of the
/// controller's CPU in the bench's own figures.
const STRIPES: usize = 32;

#[repr(align(64))]
struct Stripe {
    /// Bytes allocated minus bytes freed on the threads of this stripe (negative when they
    /// free what others allocated).
    live: AtomicIsize,
    /// Bytes freed on simulator threads (see `mark_sim_thread`), to tell which side gives
    /// memory back when something is dropped.
    freed_on_sims: AtomicUsize,
}

static STRIPE: [Stripe; STRIPES] = [const {
    Stripe {
        live: AtomicIsize::new(0),
        freed_on_sims: AtomicUsize::new(0),
    }
}; STRIPES];
static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SIM_THREAD: Cell<bool> = const { Cell::new(false) };
    static MY_STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Mark the current thread as a simulator thread (`on_thread_start` of the sims' runtime).
pub fn mark_sim_thread() {
    SIM_THREAD.with(|c| c.set(true));
}

fn on_sim_thread() -> bool {
    SIM_THREAD.try_with(|c| c.get()).unwrap_or(false)
}

/// This thread's stripe (assigned round-robin on first use; stripe 0 while the thread-local
/// is being torn down).
fn stripe() -> &'static Stripe {
    let i = MY_STRIPE
        .try_with(|c| {
            if c.get() == usize::MAX {
                c.set(NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES);
            }
            c.get()
        })
        .unwrap_or(0);
    &STRIPE[i]
}

fn add_live(bytes: usize) {
    stripe().live.fetch_add(bytes as isize, Ordering::Relaxed);
}

fn sub_live(bytes: usize) {
    let s = stripe();
    s.live.fetch_sub(bytes as isize, Ordering::Relaxed);
    if on_sim_thread() {
        s.freed_on_sims.fetch_add(bytes, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to `System`; only a counter is added.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: same contract as `System.alloc`.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            add_live(l.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: same contract as `System.alloc_zeroed`.
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            add_live(l.size());
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as `System.dealloc`.
        unsafe { System.dealloc(p, l) };
        sub_live(l.size());
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: same contract as `System.realloc`.
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            let s = stripe();
            s.live
                .fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
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
    let freed: usize = STRIPE
        .iter()
        .map(|s| s.freed_on_sims.load(Ordering::Relaxed))
        .sum();
    freed as f64 / (1024.0 * 1024.0)
}

/// Live heap bytes in MiB if `CountingAlloc` is the global allocator (else 0).
pub fn live_heap_mib() -> f64 {
    let live: isize = STRIPE.iter().map(|s| s.live.load(Ordering::Relaxed)).sum();
    live.max(0) as f64 / (1024.0 * 1024.0)
}

/// `struct timespec` on 64-bit Linux.
#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

unsafe extern "C" {
    fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
}

/// `CLOCK_PROCESS_CPUTIME_ID`: every thread of the process, including exited ones.
const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;

/// CPU seconds of a POSIX clock, in nanosecond resolution (`/proc/*/stat` counts 10 ms ticks,
/// too coarse for a resync of a few thousand servers).
fn cpu_clock(clock: i32) -> Option<f64> {
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; an invalid clock id only returns -1.
    let ok = unsafe { clock_gettime(clock, &mut ts) } == 0;
    ok.then_some(ts.sec as f64 + ts.nsec as f64 * 1e-9)
}

/// The CPU clock of thread `tid` of this process: Linux's `MAKE_THREAD_CPUCLOCK(tid,
/// CPUCLOCK_SCHED)` (what `pthread_getcpuclockid` returns, without needing a `pthread_t`).
fn thread_clock(tid: i32) -> i32 {
    ((!(tid as u32)) << 3) as i32 | 6
}

/// CPU seconds: (whole process, threads named `sim*`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    pub total: f64,
    pub sims: f64,
}

impl Cpu {
    pub fn now() -> Cpu {
        let total = cpu_clock(CLOCK_PROCESS_CPUTIME_ID).unwrap_or(0.0);
        let mut sims = 0.0;
        if let Ok(dir) = fs::read_dir("/proc/self/task") {
            for t in dir.flatten() {
                let comm = fs::read_to_string(t.path().join("comm")).unwrap_or_default();
                let tid = t.file_name().to_str().and_then(|s| s.parse().ok());
                if comm.starts_with("sim")
                    && let Some(tid) = tid
                {
                    // A thread that exited meanwhile has no clock: its time is lost to both
                    // sides alike (sim threads live as long as the simulators).
                    sims += cpu_clock(thread_clock(tid)).unwrap_or(0.0);
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
    use super::*;

    fn gettid() -> i32 {
        fs::read_link("/proc/thread-self")
            .ok()
            .and_then(|p| p.file_name()?.to_str()?.parse().ok())
            .unwrap()
    }

    #[test]
    fn thread_clock_counts_this_threads_work() {
        // The per-thread clock id must name this thread: it grows with work done here, and
        // never exceeds the whole process's clock.
        let clock = thread_clock(gettid());
        let before = cpu_clock(clock).expect("thread clock readable");
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let after = cpu_clock(clock).unwrap();
        assert!(after > before, "{before} -> {after}");
        assert!(cpu_clock(CLOCK_PROCESS_CPUTIME_ID).unwrap() >= after);
    }
}
