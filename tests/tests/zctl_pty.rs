//! `zctl`'s live `--wait` display as a person sees it: zctl runs under a pseudo-terminal
//! against a real `zlhd dev`, and a terminal emulator (vt100) replays every byte it wrote.
//! At 40 and 160 columns, with and without colour, every row on the screen is one server's
//! line (a row that wrapped, or one a redraw left behind, is not) and each server has one
//! row; at the end each row shows the outcome. Also: `zlhd`'s text logs in a file carry no
//! ANSI, and colours follow `--color`, `NO_COLOR` and `CLICOLOR_FORCE`.

use api::ApiClient;
use api::wire::CreateServerRequest;
use model::{Server, ServerId, ServerSpec, Variant};
use secrecy::SecretString;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;
use tokio::sync::mpsc;
use zlh_tests::process::{spawn_dev, zctl_path};

/// A bound on every wait: a hang fails the test (no test asserts on timing).
const T: Duration = Duration::from_secs(60);

/// Rows of the emulated terminal: more than any test draws, so nothing scrolls away.
const ROWS: u16 = 30;

/// `zlhd dev` in a temp dir, killed on drop.
struct Dev {
    child: Child,
    dir: PathBuf,
    url: String,
    token: String,
    client: ApiClient,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Dev {
    async fn start() -> Dev {
        let dir = std::env::temp_dir().join(format!("zlh-pty-{}", ServerId::new()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = spawn_dev(&dir, "dev.log");
        let deadline = tokio::time::Instant::now() + T;
        let (url, token) = loop {
            if let Ok(text) = std::fs::read_to_string(dir.join("dev.json"))
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            {
                break (
                    v["api_url"].as_str().unwrap().to_string(),
                    v["operator_token"].as_str().unwrap().to_string(),
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "zlhd dev did not write dev.json"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let client = ApiClient::new(&url, Some(SecretString::from(token.clone()))).unwrap();
        Dev {
            child,
            dir,
            url,
            token,
            client,
        }
    }

    /// A new server of `customer` (at most 5 each), paused at once so that it waits for
    /// the test.
    async fn paused_server(&self, customer: &str, n: u32) -> Server {
        let spec = ServerSpec::minecraft(Variant::Paper, "1.21.7");
        let req = CreateServerRequest {
            customer_id: Some(customer.into()),
            spec,
        };
        let key = format!("pty-{n}-{}", ServerId::new());
        let s = self.client.create(&req, Some(&key)).await.unwrap().server;
        self.client.pause(s.id).await.unwrap()
    }

    /// `zctl ARGS` under a pseudo-terminal of `cols` columns, its output sent chunk by
    /// chunk to the returned channel (closed at the end); the exit code on `exit`.
    fn zctl_pty(
        &self,
        cols: u16,
        args: &[&str],
        env: &[(&str, &str)],
        stdout_to_null: bool,
    ) -> (
        mpsc::UnboundedReceiver<Vec<u8>>,
        tokio::sync::oneshot::Receiver<i32>,
    ) {
        // The pty library sets 80x24 once the child has started; the child waits (bounded)
        // until it sees the size set below, so zctl's first draw already has it.
        let redirect = if stdout_to_null { " >/dev/null" } else { "" };
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c")
            .arg(format!(
                "i=0; while [ \"$(stty size)\" != \"{ROWS} {cols}\" ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done; exec \"$0\" \"$@\"{redirect}"
            ))
            .arg(zctl_path())
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.dir)
            .env("TERM", "xterm-256color")
            .env("ZLH_API_URL", &self.url)
            .env("ZLH_TOKEN", &self.token)
            .current_dir(&self.dir);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut session = expectrl::Session::spawn(cmd).expect("spawn zctl in a pty");
        session
            .get_process_mut()
            .set_window_size(cols, ROWS)
            .expect("set the pty's size");
        let (tx, rx) = mpsc::unbounded_channel();
        let (code_tx, code_rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Reading ends with EOF or EIO once zctl exits and the pty closes.
            while let Ok(n) = session.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
            let code = match session.get_process().wait() {
                Ok(expectrl::process::unix::WaitStatus::Exited(_, c)) => c,
                other => panic!("zctl did not exit normally: {other:?}"),
            };
            let _ = code_tx.send(code);
        });
        (rx, code_rx)
    }
}

/// The screen as zctl left it so far, checked after every chunk of output.
struct Screen {
    parser: vt100::Parser,
    cols: u16,
    /// Each server's short id (the first thing on its row).
    ids: Vec<String>,
    raw: Vec<u8>,
}

impl Screen {
    fn new(cols: u16, servers: &[Server]) -> Self {
        Screen {
            parser: vt100::Parser::new(ROWS.try_into().unwrap(), cols.try_into().unwrap(), 0),
            cols,
            ids: servers.iter().map(short_id).collect(),
            raw: Vec::new(),
        }
    }

    fn rows(&self) -> Vec<String> {
        self.parser
            .screen()
            .rows(0, self.cols)
            .map(|r| r.trim_end().to_string())
            .collect()
    }

    /// The row that shows server `i`, if any.
    fn row_of(&self, i: usize) -> Option<String> {
        self.rows()
            .into_iter()
            .find(|r| r.starts_with(&self.ids[i]))
    }

    /// Feed one chunk; every non-empty row must start with a server's id, no id twice.
    fn feed(&mut self, chunk: &[u8]) {
        self.raw.extend_from_slice(chunk);
        self.parser.process(chunk);
        let rows = self.rows();
        for (n, r) in rows.iter().enumerate().filter(|(_, r)| !r.is_empty()) {
            assert!(
                self.ids.iter().any(|id| r.starts_with(id)),
                "row {n} is not a server's line (a wrapped line or a ghost) at {} columns: {r:?}\nscreen:\n{}",
                self.cols,
                rows.join("\n")
            );
        }
        for id in &self.ids {
            let count = rows.iter().filter(|r| r.starts_with(id)).count();
            assert!(
                count <= 1,
                "{id} is on {count} rows at {} columns (ghost lines):\n{}",
                self.cols,
                rows.join("\n")
            );
        }
    }

    /// Whether the output set any colour (SGR other than a reset).
    fn colored(&self) -> bool {
        sgr_params(&self.raw)
            .iter()
            .any(|p| !p.is_empty() && p != "0")
    }
}

/// The parameters of every SGR sequence (`ESC [ params m`) in `raw`.
fn sgr_params(raw: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < raw.len() {
        if raw[i] == 0x1b && raw[i + 1] == b'[' {
            let start = i + 2;
            let mut j = start;
            while j < raw.len() && !(0x40..=0x7e).contains(&raw[j]) {
                j += 1;
            }
            if j < raw.len() && raw[j] == b'm' {
                out.push(String::from_utf8_lossy(&raw[start..j]).into_owned());
            }
            i = j;
        }
        i += 1;
    }
    out
}

/// The row of a server that ended Ready: `ID  HOSTNAME  ready`, cut to the width.
fn final_row(s: &Server, cols: u16) -> String {
    let line = format!(
        "{}  {:<16}  ready",
        short_id(s),
        s.status.hostname.as_deref().unwrap_or("-")
    );
    line.chars()
        .take(cols.into())
        .collect::<String>()
        .trim_end()
        .to_string()
}

fn short_id(s: &Server) -> String {
    let id = s.id.to_string();
    id[id.len() - 8..].to_string()
}

/// The next chunk of output, or `None` when zctl has closed the terminal.
async fn next_chunk(rx: &mut mpsc::UnboundedReceiver<Vec<u8>>) -> Option<Vec<u8>> {
    tokio::time::timeout(T, rx.recv())
        .await
        .expect("zctl printed nothing for a minute")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_display_fits_the_terminal_and_leaves_no_ghost_lines() {
    let dev = Dev::start().await;
    // (columns, extra arguments, environment, colours expected, why)
    type Case = (
        u16,
        &'static [&'static str],
        &'static [(&'static str, &'static str)],
        bool,
        &'static str,
    );
    let cases: &[Case] = &[
        (
            40,
            &["--color", "always"],
            &[("NO_COLOR", "1")],
            true,
            "narrow, colours forced over NO_COLOR",
        ),
        (40, &[], &[("NO_COLOR", "1")], false, "narrow, NO_COLOR"),
        (160, &[], &[], true, "wide, a terminal colours by default"),
        (
            160,
            &["--color", "never"],
            &[("CLICOLOR_FORCE", "1")],
            false,
            "wide, never beats CLICOLOR_FORCE",
        ),
    ];
    for (case, (cols, extra, env, want_color, why)) in cases.iter().enumerate() {
        let customer = format!("u{case:03}");
        let mut servers = Vec::new();
        for n in 0..3 {
            servers.push(dev.paused_server(&customer, n).await);
        }
        let mut args: Vec<String> = vec!["wait".into()];
        args.extend(servers.iter().map(|s| s.id.to_string()));
        args.extend(["--for=phase=ready".into(), "--timeout".into(), "2m".into()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (mut rx, code) = dev.zctl_pty(*cols, &args, env, false);
        let mut screen = Screen::new(*cols, &servers);
        let mut resumed = false;
        while let Some(chunk) = next_chunk(&mut rx).await {
            screen.feed(&chunk);
            // Once every row shows the server's state (the watch is connected), let them go:
            // the rows are then redrawn through provisioning to ready.
            if !resumed
                && (0..servers.len())
                    .all(|i| screen.row_of(i).is_some_and(|r| !r.contains("waiting")))
            {
                for s in &servers {
                    dev.client.resume(s.id).await.unwrap();
                }
                resumed = true;
            }
        }
        let code = tokio::time::timeout(T, code).await.unwrap().unwrap();
        let rows = screen.rows().join("\n");
        assert!(
            resumed,
            "{why}: the rows never showed the paused state:\n{rows}"
        );
        assert_eq!(code, 0, "{why}: zctl wait exit code; screen:\n{rows}");
        // Each row is exactly the final line: nothing of a longer earlier state is left.
        for (i, s) in servers.iter().enumerate() {
            let s = dev.client.get(s.id).await.unwrap();
            let row = screen.row_of(i).unwrap_or_default();
            assert_eq!(row, final_row(&s, *cols), "{why}: final row {i}\n{rows}");
        }
        assert_eq!(screen.colored(), *want_color, "{why}: colours in {rows}");
    }

    // create --wait draws the same display (stdout, the accepted line, goes elsewhere).
    let spec = dev.dir.join("spec.yaml");
    std::fs::write(
        &spec,
        "customerId: u100\nspec:\n  kind: game\n  game: minecraft\n  variant: paper\n  version: \"1.21.7\"\n",
    )
    .unwrap();
    let (mut rx, code) = dev.zctl_pty(
        40,
        &[
            "create",
            "-f",
            spec.to_str().unwrap(),
            "--wait",
            "--color",
            "always",
        ],
        &[],
        true,
    );
    let mut raw = Vec::new();
    while let Some(chunk) = next_chunk(&mut rx).await {
        raw.extend(chunk);
    }
    assert_eq!(tokio::time::timeout(T, code).await.unwrap().unwrap(), 0);
    let created = dev.client.list_all(&Default::default()).await.unwrap();
    let newest = created.iter().max_by_key(|s| s.created_at).unwrap().clone();
    let mut screen = Screen::new(40, std::slice::from_ref(&newest));
    screen.feed(&raw);
    assert_eq!(screen.row_of(0).unwrap_or_default(), final_row(&newest, 40));
    assert!(screen.colored());

    // zlhd's text logs went to a file: no ANSI in them.
    let log = std::fs::read(dev.dir.join("dev.log")).unwrap();
    assert!(
        log.windows(7).any(|w| w == b"zlh dev"),
        "the log has zlhd's output"
    );
    assert!(!log.contains(&0x1b), "zlhd wrote ANSI escapes to a file");
}

/// Colours in a pipe: none by default, CLICOLOR_FORCE forces them, `--color never` wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colours_in_a_pipe_follow_the_environment() {
    let dev = Dev::start().await;
    let s = dev.paused_server("u000", 0).await;
    dev.client.resume(s.id).await.unwrap();
    let id = s.id.to_string();
    type Case = (
        &'static [&'static str],
        &'static [(&'static str, &'static str)],
        bool,
        &'static str,
    );
    let cases: &[Case] = &[
        (&[], &[], false, "a pipe is not a terminal"),
        (
            &[],
            &[("CLICOLOR_FORCE", "1")],
            true,
            "CLICOLOR_FORCE colours a pipe",
        ),
        (
            &["--color", "always"],
            &[],
            true,
            "--color always colours a pipe",
        ),
        (
            &["--color", "never"],
            &[("CLICOLOR_FORCE", "1")],
            false,
            "--color never wins",
        ),
        (
            &[],
            &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")],
            false,
            "NO_COLOR wins over CLICOLOR_FORCE",
        ),
    ];
    for (extra, env, want, why) in cases {
        let mut cmd = tokio::process::Command::new(zctl_path());
        cmd.args(["wait", &id, "--timeout", "2m"])
            .args(*extra)
            .env_clear()
            .env("HOME", &dev.dir)
            .env("TERM", "xterm-256color")
            .env("ZLH_API_URL", &dev.url)
            .env("ZLH_TOKEN", &dev.token)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        for (k, v) in *env {
            cmd.env(k, v);
        }
        let out = tokio::time::timeout(T, cmd.output())
            .await
            .unwrap()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{why}: {err}");
        assert!(err.contains("ready"), "{why}: a line per change: {err}");
        let colored = sgr_params(&out.stderr)
            .iter()
            .any(|p| !p.is_empty() && p != "0");
        assert_eq!(colored, *want, "{why}: {err:?}");
    }
}

/// The other half of the log rule: on a terminal zlhd's text logs are coloured (so the
/// file check above is not empty), and `NO_COLOR` turns that off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zlhd_colours_its_logs_only_on_a_terminal() {
    // (environment, colours expected in log lines, why)
    type Case = (&'static [(&'static str, &'static str)], bool, &'static str);
    let cases: &[Case] = &[
        (&[], true, "a terminal"),
        (&[("NO_COLOR", "1")], false, "a terminal with NO_COLOR"),
    ];
    for (env, want, why) in cases {
        let dir = std::env::temp_dir().join(format!("zlh-pty-log-{}", ServerId::new()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmd = std::process::Command::new(zlh_tests::process::zlhd_path());
        cmd.args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--time-scale",
            "100",
            "--data-dir",
        ])
        .arg(&dir)
        .env_remove("ZLH_CONFIG")
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .env("TERM", "xterm-256color");
        for (k, v) in *env {
            cmd.env(k, v);
        }
        let mut session = expectrl::Session::spawn(cmd).expect("spawn zlhd in a pty");
        let pid = session.get_process().pid();
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = session.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        // Read until a log line that zlhd writes once it is up.
        let mut raw = Vec::new();
        let log_lines = |raw: &[u8]| -> Vec<String> {
            String::from_utf8_lossy(raw)
                .lines()
                .filter(|l| l.contains("INFO"))
                .map(str::to_string)
                .collect()
        };
        while log_lines(&raw).len() < 2 {
            match next_chunk(&mut rx).await {
                Some(c) => raw.extend(c),
                None => panic!("{why}: zlhd exited: {}", String::from_utf8_lossy(&raw)),
            }
        }
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let colored = log_lines(&raw).iter().any(|l| l.contains('\x1b'));
        assert_eq!(colored, *want, "{why}: {:?}", log_lines(&raw));
        while next_chunk(&mut rx).await.is_some() {}
        let _ = std::fs::remove_dir_all(&dir);
    }
}
