//! The task engine: UPIDs, dispatch, completion with effects, task status and log.

use super::lxc::{resize_refusal, touch};
use super::response::{ok, ok_with, one_param_error};
use super::wording::{E_NO_SUCH_TASK, E_UNPARSABLE_UPID, e_config_missing};
use super::{CloneMode, CtEvent, Effect, Reboot, Shared, Task};
use crate::upid::Upid;
use axum::response::Response;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub(crate) fn new_upid(
    sh: &Shared,
    st: &mut super::State,
    task_type: &str,
    id: u32,
    now: Instant,
) -> Upid {
    st.pid = st.pid.wrapping_add(rand::random_range(1..64));
    let starttime = sh.start_unix + now.duration_since(sh.epoch).as_secs() as i64;
    Upid::new(
        &sh.cfg.nodes[0],
        st.pid,
        0x0123_4567,
        starttime,
        task_type,
        &id.to_string(),
        &sh.cfg.token_id,
    )
}

pub(crate) struct NewTask<'a> {
    pub(crate) endpoint: &'a str,
    pub(crate) task_type: &'a str,
    pub(crate) id: u32,
    pub(crate) node: &'a str,
    pub(crate) effect: Effect,
    pub(crate) duration: Duration,
    pub(crate) error: Option<String>,
}

pub(crate) fn push_task(sh: &Shared, st: &mut super::State, t: NewTask<'_>, now: Instant) -> Upid {
    let NewTask {
        endpoint,
        task_type,
        id,
        node,
        effect,
        duration,
        mut error,
    } = t;
    if error.is_none() {
        error = sh.faults.lock().unwrap().take_task_error(endpoint);
    }
    let mut upid = new_upid(sh, st, task_type, id, now);
    if upid.node != node {
        upid = Upid::new(
            node,
            upid.pid,
            upid.pstart,
            upid.starttime,
            task_type,
            &id.to_string(),
            &upid.user,
        );
    }
    st.tasks.push(Task {
        upid: upid.clone(),
        visible_at: now + sh.scaled(sh.cfg.timings.task_visible_after),
        ends_at: now + sh.scaled(duration),
        effect,
        error,
        exit: None,
        log: vec![],
    });
    upid
}

/// Finish every task whose time has come, in order, applying its effect.
pub(crate) fn advance(sh: &Shared, now: Instant) {
    let mut events = Vec::new();
    {
        let mut st = sh.state.lock().unwrap();
        // The shutdown half of every reboot whose time has come (before any task ends, so a
        // reboot due now goes down before it comes back up).
        for i in 0..st.tasks.len() {
            let Effect::Reboot(mut r) = st.tasks[i].effect else {
                continue;
            };
            if r.was_up.is_some() || st.tasks[i].exit.is_some() || r.down_at > now {
                continue;
            }
            let was_up = st.cts.get_mut(&r.vmid).is_some_and(|ct| {
                let up = ct.running;
                ct.running = false;
                ct.started_at = None;
                up
            });
            if was_up {
                events.push(CtEvent::Stopped { vmid: r.vmid });
            }
            r.was_up = Some(was_up);
            st.tasks[i].effect = Effect::Reboot(r);
        }
        let mut due: Vec<usize> = (0..st.tasks.len())
            .filter(|&i| st.tasks[i].exit.is_none() && st.tasks[i].ends_at <= now)
            .collect();
        due.sort_by_key(|&i| st.tasks[i].ends_at);
        for i in due {
            let task = st.tasks[i].clone();
            let ok = task.error.is_none();
            let mut log = Vec::new();
            let mut late_error: Option<String> = None;
            match task.effect {
                Effect::Clone {
                    source,
                    newid,
                    mode,
                    ref volid,
                } => {
                    if let Some(src) = st.cts.get_mut(&source)
                        && src.lock.as_deref() == Some("disk")
                    {
                        src.lock = None;
                    }
                    log.push(format!(
                        "creating a clone of container {source} with ID {newid}"
                    ));
                    // Quirk: "mountpoint" in one message, "mount point" in the other.
                    log.push(match mode {
                        CloneMode::Full => {
                            format!("create full clone of mountpoint rootfs ({volid})")
                        }
                        CloneMode::Linked => {
                            format!("create linked clone of mount point rootfs ({volid})")
                        }
                    });
                    if ok {
                        if let Some(ct) = st.cts.get_mut(&newid) {
                            ct.lock = None;
                            touch(ct, 1);
                        }
                    } else if st
                        .cts
                        .get(&newid)
                        .is_some_and(|c| c.lock.as_deref() == Some("create"))
                    {
                        // PVE destroys the half-made CT when the clone worker fails.
                        st.cts.remove(&newid);
                    }
                }
                Effect::Start { vmid } if ok => {
                    if let Some(ct) = st.cts.get_mut(&vmid) {
                        ct.running = true;
                        ct.started_at = Some(task.ends_at);
                        events.push(CtEvent::Started {
                            vmid,
                            ip: sh.ip_for(vmid),
                        });
                    }
                }
                Effect::Stop { vmid } if ok => {
                    if let Some(ct) = st.cts.get_mut(&vmid)
                        && ct.running
                    {
                        ct.running = false;
                        ct.started_at = None;
                        events.push(CtEvent::Stopped { vmid });
                    }
                }
                // PVE's worker does nothing for a CT that is no longer running.
                Effect::Reboot(Reboot {
                    vmid,
                    was_up: Some(true),
                    ..
                }) if ok => {
                    if let Some(ct) = st.cts.get_mut(&vmid) {
                        ct.running = true;
                        ct.started_at = Some(task.ends_at);
                        events.push(CtEvent::Started {
                            vmid,
                            ip: sh.ip_for(vmid),
                        });
                    }
                }
                Effect::Resize { vmid, bytes } if ok => {
                    // The worker checks again under the config flock.
                    match st.cts.get_mut(&vmid) {
                        Some(ct) => match resize_refusal(ct.rootfs.bytes, bytes) {
                            None => {
                                ct.rootfs.bytes = bytes;
                                touch(ct, 3);
                                log.push(format!("resize rootfs to {bytes} bytes"));
                            }
                            Some(e) => late_error = Some(e.to_string()),
                        },
                        None => late_error = Some(e_config_missing(&task.upid.node, vmid)),
                    }
                }
                Effect::Destroy { vmid } => {
                    if ok {
                        if let Some(ct) = st.cts.remove(&vmid) {
                            if ct.running {
                                events.push(CtEvent::Stopped { vmid });
                            }
                            events.push(CtEvent::Destroyed { vmid });
                        }
                    } else if let Some(ct) = st.cts.get_mut(&vmid)
                        && ct.lock.as_deref() == Some("destroyed")
                    {
                        ct.lock = None;
                    }
                }
                _ => {}
            }
            let error = task.error.clone().or(late_error);
            let ok = error.is_none();
            let exit = match &error {
                None => "OK".to_string(),
                Some(e) => e.clone(),
            };
            if ok {
                log.push("TASK OK".into());
            } else {
                log.push(format!("TASK ERROR: {exit}"));
                if crate::classify(None, &exit) == model::ErrorClass::Locked {
                    sh.counters.lock().unwrap().lock_errors += 1;
                }
            }
            st.tasks[i].log = log;
            st.tasks[i].exit = Some(exit);
        }
        // Forget old finished tasks (bounded memory for long `zlhd dev` runs).
        if st.tasks.len() > 4096 {
            let cut = st.tasks.len() - 4096;
            let mut n = 0;
            st.tasks.retain(|t| {
                let drop = t.exit.is_some() && n < cut;
                if drop {
                    n += 1;
                }
                !drop
            });
        }
    }
    for e in events {
        sh.emit(e);
    }
}

pub(crate) fn find_task<'a>(
    st: &'a super::State,
    upid: &str,
    now: Instant,
) -> Result<&'a Task, &'static str> {
    if upid.parse::<Upid>().is_err() {
        return Err(E_UNPARSABLE_UPID);
    }
    // Quirk: right after dispatch the task log may not exist yet: 400 `no such task`.
    st.tasks
        .iter()
        .find(|t| t.upid.as_str() == upid && now >= t.visible_at)
        .ok_or(E_NO_SUCH_TASK)
}

pub(crate) fn task_status(sh: &Shared, upid: &str, now: Instant) -> Response {
    let st = sh.state.lock().unwrap();
    let t = match find_task(&st, upid, now) {
        Ok(t) => t,
        Err(e) => return one_param_error("upid", e),
    };
    let u = &t.upid;
    let (user, tokenid) = match u.user.split_once('!') {
        Some((user, tok)) => (user.to_string(), Some(tok.to_string())),
        None => (u.user.clone(), None),
    };
    let mut m = json!({
        "upid": u.to_string(), "node": u.node, "pid": u.pid, "pstart": u.pstart,
        "starttime": u.starttime, "type": u.task_type, "id": u.id, "user": user,
        "status": if t.exit.is_some() { "stopped" } else { "running" },
    });
    if let Some(tok) = tokenid {
        m["tokenid"] = json!(tok);
    }
    if let Some(e) = &t.exit {
        m["exitstatus"] = json!(e);
    }
    ok(m)
}

pub(crate) fn task_log(
    sh: &Shared,
    upid: &str,
    params: &BTreeMap<String, String>,
    now: Instant,
) -> Response {
    let st = sh.state.lock().unwrap();
    let t = match find_task(&st, upid, now) {
        Ok(t) => t,
        Err(e) => return one_param_error("upid", e),
    };
    let start: usize = params
        .get("start")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let limit: usize = params
        .get("limit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let lines: Vec<Value> = t
        .log
        .iter()
        .enumerate()
        .skip(start)
        .take(limit)
        .map(|(i, l)| json!({"n": i + 1, "t": l}))
        .collect();
    ok_with(Value::Array(lines), Some(t.log.len()))
}

/// A finished task's `endtime`, in Unix seconds.
fn unix(sh: &Shared, at: Instant) -> i64 {
    sh.start_unix + at.saturating_duration_since(sh.epoch).as_secs() as i64
}

/// `upid_normalize_status_type`: what `statusfilter` matches (`RUNNING` counts as unknown).
fn status_type(exit: Option<&str>) -> &'static str {
    match exit {
        None => "unknown",
        Some("OK") => "ok",
        Some(e) if e.starts_with("WARNINGS: ") => "warning",
        Some("unexpected status") => "unknown",
        Some(_) => "error",
    }
}

/// `GET /nodes/{node}/tasks` (`node_tasks`): the active tasks (`status: RUNNING`), then the
/// archive (newest first, with `endtime` and the exit status), filtered as PVE does; `total`
/// counts every match, `start`/`limit` page. The simulator archives a task when it ends, so a
/// finished task is never in the active list.
pub(crate) fn task_list(sh: &Shared, node: &str, params: &BTreeMap<String, String>) -> Response {
    let st = sh.state.lock().unwrap();
    let get = |k: &str| params.get(k).map(String::as_str);
    let num = |k: &str| get(k).and_then(|v| v.parse::<i64>().ok());
    let source = get("source").unwrap_or("archive");
    let start = num("start").unwrap_or(0).max(0) as usize;
    let limit = num("limit").unwrap_or(50).max(0) as usize;
    let errors = get("errors") == Some("1");
    let mut statuses = vec!["ok", "warning", "error", "unknown"];
    if let Some(f) = get("statusfilter").filter(|_| !errors) {
        let wanted: Vec<String> = f
            .split([',', ';', ' '])
            .filter(|s| !s.is_empty())
            .map(str::to_lowercase)
            .collect();
        statuses.retain(|s| wanted.iter().any(|w| w == s));
    } else if errors {
        statuses.retain(|s| *s != "ok");
    }
    let (since, until) = (num("since"), num("until"));
    let matches = |t: &&Task| {
        let u = &t.upid;
        let user = u.user.split('!').next().unwrap_or("");
        u.node == node
            && get("userfilter").is_none_or(|f| user.to_lowercase().contains(&f.to_lowercase()))
            && get("typefilter").is_none_or(|f| u.task_type == f)
            && get("vmid").is_none_or(|v| u.id == v)
            && since.is_none_or(|s| u.starttime >= s)
            && until.is_none_or(|s| u.starttime <= s)
            && statuses.contains(&status_type(t.exit.as_deref()))
    };
    let mut active: Vec<&Task> = Vec::new();
    let mut archive: Vec<&Task> = Vec::new();
    if source != "archive" {
        active = st.tasks.iter().filter(|t| t.exit.is_none()).collect();
        active.sort_by_key(|t| std::cmp::Reverse(t.upid.starttime));
    }
    if source != "active" {
        archive = st.tasks.iter().filter(|t| t.exit.is_some()).collect();
        archive.sort_by_key(|t| std::cmp::Reverse(t.ends_at));
    }
    let all: Vec<&Task> = active.into_iter().chain(archive).filter(matches).collect();
    let rows: Vec<Value> = all
        .iter()
        .skip(start)
        .take(limit)
        .map(|t| {
            let u = &t.upid;
            let (user, tokenid) = match u.user.split_once('!') {
                Some((user, tok)) => (user, Some(tok)),
                None => (u.user.as_str(), None),
            };
            let mut m = json!({
                "upid": u.to_string(), "node": u.node, "pid": u.pid, "pstart": u.pstart,
                "starttime": u.starttime, "type": u.task_type, "id": u.id, "user": user,
                "status": t.exit.as_deref().unwrap_or("RUNNING"),
            });
            if let Some(tok) = tokenid {
                m["tokenid"] = json!(tok);
            }
            if t.exit.is_some() {
                m["endtime"] = json!(unix(sh, t.ends_at));
            }
            m
        })
        .collect();
    ok_with(Value::Array(rows), Some(all.len()))
}
