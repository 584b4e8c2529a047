//! Running zctl as a process in the zctl test binaries (`zctl.rs`, `zctl_verbs.rs`): what a
//! run printed and how it exited, bounded so a hang fails the test.

use std::process::Output;
use std::time::Duration;
use tokio::process::{Child, Command};

/// A bound on how long any one zctl run or wait may take: a hang fails the test instead of
/// blocking the suite (no test asserts on timing).
pub const HANG: Duration = Duration::from_secs(60);

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn of(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

pub async fn run(mut c: Command) -> Run {
    let out = tokio::time::timeout(HANG, c.output())
        .await
        .expect("zctl hung")
        .expect("zctl runs");
    Run::of(out)
}

pub async fn finish(child: Child) -> Run {
    let out = tokio::time::timeout(HANG, child.wait_with_output())
        .await
        .expect("zctl hung")
        .expect("zctl runs");
    Run::of(out)
}
