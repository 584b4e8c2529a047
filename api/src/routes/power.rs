//! `POST /api/servers/{id}/power`: start, stop or restart the game or the container.
//!
//! Power is declarative: a request changes the spec (`process`, `power`, `restarts`) through
//! the same store update as PATCH, and the controller converges the world. A restart is a
//! counter increment, so it is recorded once however often the controller crashes before
//! carrying it out. A request that would not change the spec writes nothing and answers 200.

use crate::admission::check_standing;
use crate::auth::{Principal, Writer};
use crate::extract::{ApiJson, ServerPath, ServerRef, if_match};
use crate::openapi::{AdmissionProblems, AuthProblems, BodyProblems, ConflictProblems, IdProblems};
use crate::problem::{ApiError, ApiResult, kind};
use crate::routes::servers::{SERVER_ID_DOC, accepted, visible_server, with_etag};
use crate::state::Ctx;
use crate::wire::{Accepted, PowerRequest, PowerSignal, PowerTarget, power_msg};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use model::store::{Store, StoreError};
use model::{Kind, Operation, Power, Process, Server, ServerSpec};
use std::sync::Arc;

/// The event recorded when a request changed the spec.
pub const POWER_REQUESTED: &str = crate::audit::reason::POWER_REQUESTED;

/// Re-reads after a concurrent write (usually a controller status write) before giving up.
const STALE_RETRIES: usize = 5;

/// What a power request did.
#[derive(Debug)]
pub(crate) enum PowerOutcome {
    /// The spec changed (generation + 1): the update operation.
    Changed(Server, Operation),
    /// Already so: nothing was written.
    Unchanged(Server),
}

/// The target a request acts on; 422 naming `target` for a dev container's game.
fn target_for(kind: Kind, asked: Option<PowerTarget>) -> ApiResult<PowerTarget> {
    match (kind, asked) {
        (Kind::Dev, Some(PowerTarget::Game)) => Err(ApiError::invalid_field(
            "target",
            power_msg::DEV_HAS_NO_GAME,
        )),
        (_, Some(t)) => Ok(t),
        (kind, None) => Ok(PowerTarget::default_for(kind)),
    }
}

/// The spec after the request, or `None` if it is already so (a restart always changes it).
pub(crate) fn powered(
    spec: &ServerSpec,
    signal: PowerSignal,
    target: PowerTarget,
) -> Option<ServerSpec> {
    let mut s = spec.clone();
    // Absent `process` means running: leave it absent rather than write the default.
    let set_process = |s: &mut ServerSpec, p: Process| {
        if s.process() != p {
            s.process = Some(p);
        }
    };
    match (target, signal) {
        // A game runs only in a running container: starting it powers the container on.
        (PowerTarget::Game, PowerSignal::Start) => {
            set_process(&mut s, Process::Running);
            s.power = Power::Running;
        }
        (PowerTarget::Game, PowerSignal::Stop) => set_process(&mut s, Process::Stopped),
        (PowerTarget::Game, PowerSignal::Restart) => {
            set_process(&mut s, Process::Running);
            s.power = Power::Running;
            s.restarts.game = s.restarts.game.saturating_add(1);
        }
        (PowerTarget::Container, PowerSignal::Start) => s.power = Power::Running,
        (PowerTarget::Container, PowerSignal::Stop) => s.power = Power::Stopped,
        (PowerTarget::Container, PowerSignal::Restart) => {
            s.power = Power::Running;
            s.restarts.container = s.restarts.container.saturating_add(1);
        }
    }
    (s != *spec).then_some(s)
}

/// Who asked, for the event: role, customer scope and token name.
fn deleting(server: &Server) -> ApiError {
    ApiError::Conflict {
        kind: kind::CONFLICT,
        detail: format!("server {} is being deleted", server.id),
        operation: None,
    }
}

/// Apply a power request: checks, then the spec update (shared by the native and the Portal's
/// routes). `expected` is the caller's `If-Match`.
pub(crate) async fn power(
    ctx: &Ctx,
    p: &Principal,
    r: ServerRef,
    signal: PowerSignal,
    target: Option<PowerTarget>,
    expected: Option<i64>,
) -> ApiResult<PowerOutcome> {
    let mut server = visible_server(ctx, p, r).await?;
    let target = target_for(server.spec.kind, target)?;
    // Stopping is always allowed: it costs nothing, and a customer in arrears may want to.
    if signal != PowerSignal::Stop {
        check_standing(ctx, p, &server.customer_id).await?;
    }
    let mut retries = 0;
    loop {
        if server.is_deleting() {
            return Err(deleting(&server));
        }
        if expected.is_some_and(|rv| rv != server.resource_version) {
            return Err(StoreError::Stale.into());
        }
        let Some(spec) = powered(&server.spec, signal, target) else {
            return Ok(PowerOutcome::Unchanged(server));
        };
        // Always conditional: the new spec is computed from this read, so a concurrent PATCH
        // must not be overwritten.
        let rv = expected.unwrap_or(server.resource_version);
        match ctx.app.store.update_spec(server.id, spec, Some(rv)).await {
            Ok((server, op)) => {
                // The spec is recorded; failing the request now would invite a retry that
                // restarts twice: the record is best effort.
                crate::audit::record(
                    ctx,
                    p,
                    crate::audit::Action::ServerPower,
                    Some(server.id),
                    &format!("{signal} {target}"),
                )
                .await;
                tracing::info!(server = %server.id, %signal, %target, generation = server.generation, "power requested");
                return Ok(PowerOutcome::Changed(server, op));
            }
            Err(StoreError::Stale) if expected.is_none() && retries < STALE_RETRIES => {
                retries += 1;
                server = visible_server(ctx, p, ServerRef::Id(server.id)).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Start, stop or restart the game process or the container, by changing the spec.
///
/// Target `game`: start → `process: running`, stop → `process: stopped`, restart →
/// `process: running` and `restarts.game + 1`. Target `container`: the same with `power` and
/// `restarts.container`. A changed spec answers 202 with the update operation (generation + 1);
/// one already so answers 200 with the server and writes nothing. Customers who are not active
/// may stop but not start or restart. `If-Match: "<resourceVersion>"` makes it conditional.
#[utoipa::path(
    post, path = "/api/servers/{id}/power", tag = "servers",
    params(
        ("id" = String, Path, description = SERVER_ID_DOC),
        ("If-Match" = Option<String>, Header, description = "\"<resourceVersion>\": refuse (409) if the server changed since"),
    ),
    request_body = PowerRequest,
    responses(
        (status = 202, description = "The spec changed: the update operation to poll", body = Accepted,
         headers(("Location" = String, description = "The status URL"))),
        (status = 200, description = "Already so: nothing written, no operation", body = Server,
         headers(("ETag" = String, description = "\"<resourceVersion>\""))),
        AuthProblems, AdmissionProblems, IdProblems, BodyProblems, ConflictProblems,
    ),
    security(("bearer" = []))
)]
pub async fn power_server(
    State(ctx): State<Arc<Ctx>>,
    Writer(p): Writer,
    ServerPath(r): ServerPath,
    headers: HeaderMap,
    ApiJson(req): ApiJson<PowerRequest>,
) -> ApiResult<Response> {
    let expected = if_match(&headers)?;
    Ok(
        match power(&ctx, &p, r, req.signal, req.target, expected).await? {
            PowerOutcome::Changed(server, op) => accepted(crate::redact::server(&p, server), &op),
            PowerOutcome::Unchanged(server) => with_etag(crate::redact::server(&p, server)),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{Restarts, Variant};

    fn game(process: Option<Process>, power: Power) -> ServerSpec {
        ServerSpec {
            process,
            power,
            ..ServerSpec::minecraft(Variant::Paper, "1.21.7")
        }
    }

    #[test]
    fn power_requests_map_onto_the_spec() {
        use PowerSignal::*;
        use PowerTarget::*;
        let on = Power::Running;
        let off = Power::Stopped;
        let run = Some(Process::Running);
        let stopped = Some(Process::Stopped);
        let r = |game, container| Restarts { game, container };
        // (reason, process before, power before, signal, target, after: None = unchanged)
        type Case = (
            &'static str,
            Option<Process>,
            Power,
            PowerSignal,
            PowerTarget,
            Option<(Option<Process>, Power, Restarts)>,
        );
        let cases: &[Case] = &[
            (
                "start a running game: nothing to do",
                None,
                on,
                Start,
                Game,
                None,
            ),
            (
                "an explicit running is running too",
                run,
                on,
                Start,
                Game,
                None,
            ),
            (
                "start a stopped game",
                stopped,
                on,
                Start,
                Game,
                Some((run, on, r(0, 0))),
            ),
            (
                "stop a running game",
                None,
                on,
                Stop,
                Game,
                Some((stopped, on, r(0, 0))),
            ),
            (
                "stop a stopped game: nothing to do",
                stopped,
                on,
                Stop,
                Game,
                None,
            ),
            (
                "restart counts, process stays implicit",
                None,
                on,
                Restart,
                Game,
                Some((None, on, r(1, 0))),
            ),
            (
                "restart a stopped game runs it",
                stopped,
                on,
                Restart,
                Game,
                Some((run, on, r(1, 0))),
            ),
            (
                "start a running container: nothing to do",
                None,
                on,
                Start,
                Container,
                None,
            ),
            (
                "stop the container",
                None,
                on,
                Stop,
                Container,
                Some((None, off, r(0, 0))),
            ),
            (
                "stop a stopped container: nothing to do",
                None,
                off,
                Stop,
                Container,
                None,
            ),
            (
                "start a stopped container",
                None,
                off,
                Start,
                Container,
                Some((None, on, r(0, 0))),
            ),
            (
                "restart the container",
                None,
                on,
                Restart,
                Container,
                Some((None, on, r(0, 1))),
            ),
            (
                "restart a stopped container starts it",
                None,
                off,
                Restart,
                Container,
                Some((None, on, r(0, 1))),
            ),
            (
                "starting the game powers its stopped container on",
                stopped,
                off,
                Start,
                Game,
                Some((Some(Process::Running), on, r(0, 0))),
            ),
            (
                "container power leaves the game alone",
                stopped,
                on,
                Stop,
                Container,
                Some((stopped, off, r(0, 0))),
            ),
        ];
        for (reason, process, power, signal, target, want) in cases {
            let before = game(*process, *power);
            let got = powered(&before, *signal, *target).map(|s| (s.process, s.power, s.restarts));
            assert_eq!(got, *want, "{reason}");
        }
    }

    #[test]
    fn the_target_defaults_by_kind_and_a_dev_has_no_game() {
        assert_eq!(target_for(Kind::Game, None).unwrap(), PowerTarget::Game);
        assert_eq!(target_for(Kind::Dev, None).unwrap(), PowerTarget::Container);
        assert_eq!(
            target_for(Kind::Game, Some(PowerTarget::Container)).unwrap(),
            PowerTarget::Container
        );
        match target_for(Kind::Dev, Some(PowerTarget::Game)) {
            Err(ApiError::Invalid { errors, .. }) => assert_eq!(errors[0].field, "target"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_powered_game_spec_stays_valid() {
        for signal in PowerSignal::ALL {
            for target in [PowerTarget::Game, PowerTarget::Container] {
                if let Some(s) = powered(&game(None, Power::Running), signal, target) {
                    assert!(s.validate().is_ok(), "{signal} {target}");
                }
            }
        }
        // A dev container's power never names a process (validate would refuse it).
        let dev = ServerSpec::dev("node", "22");
        for signal in PowerSignal::ALL {
            if let Some(s) = powered(&dev, signal, PowerTarget::Container) {
                assert!(s.validate().is_ok(), "dev {signal}");
            }
        }
    }
}
