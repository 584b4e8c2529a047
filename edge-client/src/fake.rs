//! In-memory fakes of [`Agent`], [`DnsProvider`] and [`Proxy`] for unit tests of the code that
//! drives them (feature `fake`). Each keeps its state behind a `Mutex`, records every call in
//! order (failed ones included) and can be told to fail: `fail_next(method, err)` makes the
//! next call of that method return `err` without effect (several queue up), and
//! `fail_always(method, Some(err))` fails every call until `fail_always(method, None)`.
//! They answer at once and never touch the network.

use crate::agent::{Agent, AgentPayload, AgentState, AgentStatus};
use crate::dns::{DesiredRecords, DnsProvider, ObservedRecords, normalize};
use crate::error::{Backend, EdgeError, MSG_CONNECT};
use crate::velocity::{Proxy, Registration};
use model::ErrorClass;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};

/// What a transport failure looks like (`Transient`, no HTTP status): the answer of an Agent
/// whose container is not up, or of any backend during an outage.
pub fn connection_refused(backend: Backend) -> EdgeError {
    EdgeError::new(
        backend,
        ErrorClass::Transient,
        None,
        format!("{MSG_CONNECT}: connection refused"),
    )
}

/// Injected failures, per method.
#[derive(Debug)]
struct Faults<M> {
    next: HashMap<M, VecDeque<EdgeError>>,
    always: HashMap<M, EdgeError>,
}

impl<M> Default for Faults<M> {
    fn default() -> Self {
        Faults {
            next: HashMap::new(),
            always: HashMap::new(),
        }
    }
}

impl<M: Eq + Hash + Copy> Faults<M> {
    fn push_next(&mut self, m: M, e: EdgeError) {
        self.next.entry(m).or_default().push_back(e);
    }

    fn set_always(&mut self, m: M, e: Option<EdgeError>) {
        match e {
            Some(e) => self.always.insert(m, e),
            None => self.always.remove(&m),
        };
    }

    /// The error this call must return, if any (queued ones first).
    fn take(&mut self, m: M) -> Option<EdgeError> {
        self.next
            .get_mut(&m)
            .and_then(VecDeque::pop_front)
            .or_else(|| self.always.get(&m).cloned())
    }
}

/// State shared by the three fakes: the fake's own data, its call log and its faults.
#[derive(Debug)]
struct Inner<S, C, M> {
    state: S,
    calls: Vec<C>,
    faults: Faults<M>,
}

impl<S: Default, C, M> Default for Inner<S, C, M> {
    fn default() -> Self {
        Inner {
            state: S::default(),
            calls: Vec::new(),
            faults: Faults::default(),
        }
    }
}

impl<S, C, M: Eq + Hash + Copy> Inner<S, C, M> {
    /// Log the call, then either return the injected error or run `f`.
    fn call<T>(
        &mut self,
        m: M,
        c: C,
        f: impl FnOnce(&mut S) -> Result<T, EdgeError>,
    ) -> Result<T, EdgeError> {
        self.calls.push(c);
        match self.faults.take(m) {
            Some(e) => Err(e),
            None => f(&mut self.state),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock must not hide its own failure behind ours.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------- Agent ----------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentMethod {
    Status,
    SendConfig,
    Start,
    Stop,
    Restart,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentCall {
    Status { ip: String },
    SendConfig { ip: String, vmid: u32 },
    Start { ip: String },
    Stop { ip: String },
    Restart { ip: String },
}

#[derive(Debug)]
struct Agents {
    states: HashMap<String, AgentState>,
    sent: HashMap<String, Vec<AgentPayload>>,
    install_on_config: bool,
}

impl Default for Agents {
    fn default() -> Self {
        Agents {
            states: HashMap::new(),
            sent: HashMap::new(),
            install_on_config: true,
        }
    }
}

/// Agents by IP. An IP without a state answers like an Agent that is not up (connection
/// refused, `Transient`). By default an accepted config switches that IP to `Installing`;
/// tests move it on with `set_state`. Power calls (`start`, `stop`, `restart`) are only
/// recorded: the state stays as it is until the test sets it.
#[derive(Debug, Default)]
pub struct FakeAgent {
    inner: Mutex<Inner<Agents, AgentCall, AgentMethod>>,
}

impl FakeAgent {
    pub fn new() -> Self {
        Self::default()
    }

    /// The Agent at `ip` is up and reports `state`.
    pub fn set_state(&self, ip: &str, state: AgentState) {
        lock(&self.inner).state.states.insert(ip.into(), state);
    }

    /// The Agent at `ip` goes away (its container stopped): calls are refused again.
    pub fn clear_state(&self, ip: &str) {
        lock(&self.inner).state.states.remove(ip);
    }

    pub fn state(&self, ip: &str) -> Option<AgentState> {
        lock(&self.inner).state.states.get(ip).cloned()
    }

    /// Whether an accepted config switches the IP to `Installing` (default true).
    pub fn set_installs_on_config(&self, yes: bool) {
        lock(&self.inner).state.install_on_config = yes;
    }

    /// Every payload accepted at `ip`, oldest first.
    pub fn sent(&self, ip: &str) -> Vec<AgentPayload> {
        lock(&self.inner)
            .state
            .sent
            .get(ip)
            .cloned()
            .unwrap_or_default()
    }

    pub fn calls(&self) -> Vec<AgentCall> {
        lock(&self.inner).calls.clone()
    }

    pub fn clear_calls(&self) {
        lock(&self.inner).calls.clear();
    }

    pub fn fail_next(&self, m: AgentMethod, e: EdgeError) {
        lock(&self.inner).faults.push_next(m, e);
    }

    pub fn fail_always(&self, m: AgentMethod, e: Option<EdgeError>) {
        lock(&self.inner).faults.set_always(m, e);
    }

    /// Accepted when the Agent is up; what the game process does next is the test's to say.
    fn power(&self, ip: &str, m: AgentMethod, call: AgentCall) -> Result<(), EdgeError> {
        lock(&self.inner).call(m, call, |s| {
            if s.states.contains_key(ip) {
                Ok(())
            } else {
                Err(connection_refused(Backend::Agent))
            }
        })
    }
}

impl Agent for FakeAgent {
    async fn status(&self, ip: &str) -> Result<AgentStatus, EdgeError> {
        let call = AgentCall::Status { ip: ip.into() };
        lock(&self.inner).call(AgentMethod::Status, call, |s| {
            s.states
                .get(ip)
                .map(|state| AgentStatus {
                    state: state.clone(),
                })
                .ok_or_else(|| connection_refused(Backend::Agent))
        })
    }

    async fn send_config(&self, ip: &str, payload: &AgentPayload) -> Result<(), EdgeError> {
        let call = AgentCall::SendConfig {
            ip: ip.into(),
            vmid: payload.vmid(),
        };
        lock(&self.inner).call(AgentMethod::SendConfig, call, |s| {
            let Some(state) = s.states.get_mut(ip) else {
                return Err(connection_refused(Backend::Agent));
            };
            if s.install_on_config {
                *state = AgentState::Installing {
                    step: None,
                    progress: None,
                };
            }
            s.sent.entry(ip.into()).or_default().push(payload.clone());
            Ok(())
        })
    }

    async fn start(&self, ip: &str) -> Result<(), EdgeError> {
        self.power(ip, AgentMethod::Start, AgentCall::Start { ip: ip.into() })
    }

    async fn stop(&self, ip: &str) -> Result<(), EdgeError> {
        self.power(ip, AgentMethod::Stop, AgentCall::Stop { ip: ip.into() })
    }

    async fn restart(&self, ip: &str) -> Result<(), EdgeError> {
        self.power(
            ip,
            AgentMethod::Restart,
            AgentCall::Restart { ip: ip.into() },
        )
    }
}

// ---------- DNS ----------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DnsMethod {
    Observe,
    ListZone,
    Ensure,
    Remove,
}

/// Host names are logged normalized (lower case, no trailing dot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsCall {
    Observe {
        host: String,
    },
    ListZone,
    Ensure {
        host: String,
        desired: DesiredRecords,
    },
    Remove {
        host: String,
    },
}

/// One DNS view: normalized host → its A and SRV records.
#[derive(Debug)]
pub struct FakeDns {
    name: &'static str,
    inner: Mutex<Inner<HashMap<String, ObservedRecords>, DnsCall, DnsMethod>>,
}

impl FakeDns {
    /// `name` is what `DnsProvider::name` reports: `"technitium"` or `"cloudflare"`.
    pub fn new(name: &'static str) -> Self {
        FakeDns {
            name,
            inner: Mutex::default(),
        }
    }

    /// The backend this view stands for (`Cloudflare` for `"cloudflare"`, else `Technitium`),
    /// for building errors to inject.
    pub fn backend(&self) -> Backend {
        if self.name == "cloudflare" {
            Backend::Cloudflare
        } else {
            Backend::Technitium
        }
    }

    /// Replace what exists for `host` (drift, duplicates, records made by someone else).
    /// Empty records remove the host.
    pub fn set_records(&self, host: &str, records: ObservedRecords) {
        let mut g = lock(&self.inner);
        if records.is_empty() {
            g.state.remove(&normalize(host));
        } else {
            g.state.insert(normalize(host), records);
        }
    }

    /// What exists for `host` (empty when nothing).
    pub fn records(&self, host: &str) -> ObservedRecords {
        lock(&self.inner)
            .state
            .get(&normalize(host))
            .cloned()
            .unwrap_or_default()
    }

    /// Every host with records.
    pub fn zone(&self) -> HashMap<String, ObservedRecords> {
        lock(&self.inner).state.clone()
    }

    pub fn calls(&self) -> Vec<DnsCall> {
        lock(&self.inner).calls.clone()
    }

    pub fn clear_calls(&self) {
        lock(&self.inner).calls.clear();
    }

    pub fn fail_next(&self, m: DnsMethod, e: EdgeError) {
        lock(&self.inner).faults.push_next(m, e);
    }

    pub fn fail_always(&self, m: DnsMethod, e: Option<EdgeError>) {
        lock(&self.inner).faults.set_always(m, e);
    }
}

impl DnsProvider for FakeDns {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn observe(&self, host_fqdn: &str) -> Result<ObservedRecords, EdgeError> {
        let host = normalize(host_fqdn);
        let call = DnsCall::Observe { host: host.clone() };
        lock(&self.inner).call(DnsMethod::Observe, call, |z| {
            Ok(z.get(&host).cloned().unwrap_or_default())
        })
    }

    async fn list_zone(&self) -> Result<HashMap<String, ObservedRecords>, EdgeError> {
        lock(&self.inner).call(DnsMethod::ListZone, DnsCall::ListZone, |z| Ok(z.clone()))
    }

    async fn ensure(&self, host_fqdn: &str, desired: &DesiredRecords) -> Result<bool, EdgeError> {
        let host = normalize(host_fqdn);
        let call = DnsCall::Ensure {
            host: host.clone(),
            desired: desired.clone(),
        };
        lock(&self.inner).call(DnsMethod::Ensure, call, |z| {
            if z.get(&host).is_some_and(|o| o.matches(desired)) {
                return Ok(false);
            }
            let records = ObservedRecords {
                a: vec![desired.a],
                srv: desired.srv.iter().cloned().collect(),
            };
            z.insert(host, records);
            Ok(true)
        })
    }

    async fn remove(&self, host_fqdn: &str) -> Result<bool, EdgeError> {
        let host = normalize(host_fqdn);
        let call = DnsCall::Remove { host: host.clone() };
        lock(&self.inner).call(DnsMethod::Remove, call, |z| {
            Ok(z.remove(&host).is_some_and(|o| !o.is_empty()))
        })
    }
}

// ---------- Velocity ----------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyMethod {
    List,
    Observe,
    Ensure,
    Remove,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyCall {
    List,
    Observe {
        name: String,
    },
    Ensure {
        name: String,
        address: String,
        port: u16,
    },
    Remove {
        name: String,
    },
}

/// The Velocity bridge: registrations by name, case-insensitive as in Velocity. `ensure`
/// keeps the name as given; a different address or port replaces the registration (what the
/// real client does with unregister + register).
#[derive(Debug, Default)]
pub struct FakeProxy {
    /// Keyed by the lower-cased name; `list` comes out sorted by it.
    inner: Mutex<Inner<BTreeMap<String, Registration>, ProxyCall, ProxyMethod>>,
}

impl FakeProxy {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add or replace a registration (made behind zlh's back).
    pub fn set_registration(&self, r: Registration) {
        lock(&self.inner)
            .state
            .insert(r.name.to_ascii_lowercase(), r);
    }

    pub fn registration(&self, name: &str) -> Option<Registration> {
        lock(&self.inner)
            .state
            .get(&name.to_ascii_lowercase())
            .cloned()
    }

    pub fn registrations(&self) -> Vec<Registration> {
        lock(&self.inner).state.values().cloned().collect()
    }

    /// A proxy restart: registrations live only in the proxy's memory.
    pub fn forget_all(&self) {
        lock(&self.inner).state.clear();
    }

    pub fn calls(&self) -> Vec<ProxyCall> {
        lock(&self.inner).calls.clone()
    }

    pub fn clear_calls(&self) {
        lock(&self.inner).calls.clear();
    }

    pub fn fail_next(&self, m: ProxyMethod, e: EdgeError) {
        lock(&self.inner).faults.push_next(m, e);
    }

    pub fn fail_always(&self, m: ProxyMethod, e: Option<EdgeError>) {
        lock(&self.inner).faults.set_always(m, e);
    }
}

impl Proxy for FakeProxy {
    async fn list(&self) -> Result<Vec<Registration>, EdgeError> {
        lock(&self.inner).call(ProxyMethod::List, ProxyCall::List, |r| {
            Ok(r.values().cloned().collect())
        })
    }

    async fn observe(&self, name: &str) -> Result<Option<Registration>, EdgeError> {
        let call = ProxyCall::Observe { name: name.into() };
        lock(&self.inner).call(ProxyMethod::Observe, call, |r| {
            Ok(r.get(&name.to_ascii_lowercase()).cloned())
        })
    }

    async fn ensure(&self, name: &str, address: &str, port: u16) -> Result<bool, EdgeError> {
        let call = ProxyCall::Ensure {
            name: name.into(),
            address: address.into(),
            port,
        };
        lock(&self.inner).call(ProxyMethod::Ensure, call, |r| {
            let key = name.to_ascii_lowercase();
            // Same rule as `VelocityClient::ensure`: a listed entry without a port matches any.
            if r.get(&key)
                .is_some_and(|x| x.address == address && x.port.is_none_or(|p| p == port))
            {
                return Ok(false);
            }
            let reg = Registration {
                name: name.into(),
                address: address.into(),
                port: Some(port),
            };
            r.insert(key, reg);
            Ok(true)
        })
    }

    async fn remove(&self, name: &str) -> Result<bool, EdgeError> {
        let call = ProxyCall::Remove { name: name.into() };
        lock(&self.inner).call(ProxyMethod::Remove, call, |r| {
            Ok(r.remove(&name.to_ascii_lowercase()).is_some())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::SrvRecord;
    use std::net::Ipv4Addr;

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn payload(vmid: u32) -> AgentPayload {
        AgentPayload::Dev {
            vmid,
            runtime: "node".into(),
            version: "22".into(),
            memory_mb: 512,
        }
    }

    #[test]
    fn agent_unreachable_until_up_then_installs() {
        block_on(async {
            let a = FakeAgent::new();
            let e = a.status("10.0.0.5").await.unwrap_err();
            assert!(
                e.is_transient(),
                "no state answers like a refused connection"
            );
            assert!(a.send_config("10.0.0.5", &payload(105)).await.is_err());
            assert!(
                a.sent("10.0.0.5").is_empty(),
                "a refused config is not recorded"
            );

            a.set_state("10.0.0.5", AgentState::Idle);
            a.send_config("10.0.0.5", &payload(105)).await.unwrap();
            assert_eq!(
                a.status("10.0.0.5").await.unwrap().state.as_str(),
                "installing"
            );
            assert_eq!(a.sent("10.0.0.5")[0].vmid(), 105);
            assert_eq!(
                a.calls()[2],
                AgentCall::SendConfig {
                    ip: "10.0.0.5".into(),
                    vmid: 105
                }
            );
        });
    }

    #[test]
    fn agent_fail_next_has_no_effect() {
        block_on(async {
            let a = FakeAgent::new();
            a.set_state("ip", AgentState::Idle);
            let boom = EdgeError::new(Backend::Agent, ErrorClass::Transient, Some(503), "busy");
            a.fail_next(AgentMethod::SendConfig, boom.clone());
            assert_eq!(a.send_config("ip", &payload(1)).await, Err(boom));
            assert_eq!(a.state("ip"), Some(AgentState::Idle));
            assert!(
                a.send_config("ip", &payload(1)).await.is_ok(),
                "only one fails"
            );

            a.fail_always(
                AgentMethod::Status,
                Some(connection_refused(Backend::Agent)),
            );
            assert!(a.status("ip").await.is_err());
            assert!(a.status("ip").await.is_err());
            a.fail_always(AgentMethod::Status, None);
            assert!(a.status("ip").await.is_ok());
        });
    }

    /// Power calls are logged, refused while the Agent is down, and never move the state.
    #[test]
    fn agent_power_is_recorded_not_acted_on() {
        block_on(async {
            let a = FakeAgent::new();
            assert!(a.restart("ip").await.unwrap_err().is_transient());
            a.set_state("ip", AgentState::Running);
            a.stop("ip").await.unwrap();
            a.start("ip").await.unwrap();
            a.restart("ip").await.unwrap();
            assert_eq!(a.state("ip"), Some(AgentState::Running));
            let ip = || "ip".to_string();
            assert_eq!(
                a.calls(),
                vec![
                    AgentCall::Restart { ip: ip() },
                    AgentCall::Stop { ip: ip() },
                    AgentCall::Start { ip: ip() },
                    AgentCall::Restart { ip: ip() },
                ]
            );
            let boom = EdgeError::new(Backend::Agent, ErrorClass::Transient, Some(503), "busy");
            a.fail_next(AgentMethod::Stop, boom.clone());
            assert_eq!(a.stop("ip").await, Err(boom));
        });
    }

    #[test]
    fn dns_ensure_makes_exactly_desired() {
        block_on(async {
            let d = FakeDns::new("technitium");
            assert_eq!(d.name(), "technitium");
            let ip = Ipv4Addr::new(10, 0, 0, 5);
            let srv = SrvRecord {
                priority: 0,
                weight: 0,
                port: 25565,
                target: "mc-a.zlh.test".into(),
            };
            // Drift: a duplicate A and a stray SRV.
            d.set_records(
                "MC-A.zlh.test.",
                ObservedRecords {
                    a: vec![ip, ip],
                    srv: vec![srv.clone()],
                },
            );
            let want = DesiredRecords { a: ip, srv: None };
            assert!(d.ensure("mc-a.zlh.test", &want).await.unwrap());
            assert!(d.records("mc-a.zlh.test").matches(&want));
            assert!(
                !d.ensure("mc-a.zlh.test.", &want).await.unwrap(),
                "equal: no-op"
            );
            assert_eq!(d.list_zone().await.unwrap().len(), 1);
            assert!(d.remove("mc-a.zlh.test").await.unwrap());
            assert!(
                !d.remove("mc-a.zlh.test").await.unwrap(),
                "absent is success"
            );
            assert!(d.observe("mc-a.zlh.test").await.unwrap().is_empty());
            assert_eq!(
                d.calls()[0],
                DnsCall::Ensure {
                    host: "mc-a.zlh.test".into(),
                    desired: want
                }
            );

            d.fail_next(DnsMethod::Ensure, connection_refused(d.backend()));
            let e = d
                .ensure("x.zlh.test", &DesiredRecords { a: ip, srv: None })
                .await
                .unwrap_err();
            assert_eq!(e.backend, Backend::Technitium);
            assert!(d.zone().is_empty(), "a failed call has no effect");
        });
    }

    #[test]
    fn proxy_ensure_moves_and_is_case_insensitive() {
        block_on(async {
            let p = FakeProxy::new();
            assert!(p.ensure("mc-a", "10.0.0.5", 25565).await.unwrap());
            assert!(!p.ensure("MC-A", "10.0.0.5", 25565).await.unwrap());
            assert!(p.ensure("mc-a", "10.0.0.6", 25565).await.unwrap(), "move");
            assert_eq!(
                p.observe("Mc-A").await.unwrap().unwrap().address,
                "10.0.0.6"
            );
            p.forget_all();
            assert!(p.list().await.unwrap().is_empty());
            assert!(!p.remove("mc-a").await.unwrap());
            p.fail_next(
                ProxyMethod::Ensure,
                EdgeError::new(Backend::Velocity, ErrorClass::Conflict, Some(409), "taken"),
            );
            assert!(p.ensure("mc-a", "10.0.0.5", 25565).await.is_err());
            assert!(p.registrations().is_empty());
            assert_eq!(p.calls().len(), 7);
        });
    }
}
