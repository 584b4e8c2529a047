//! The OpenAPI document, generated from the handlers (`utoipa::path` + `utoipa_axum::routes!`)
//! and served at `/openapi.json`.

use crate::problem::{PROBLEM_JSON, Problem};
use std::collections::BTreeMap;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{
    Content, HeaderBuilder, Ref, RefOr, Response, ResponseBuilder, schema::Type,
};
use utoipa::{IntoResponses, Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "zlh API",
        description = "Desired state of game and dev servers, and what the controller has done \
                       about it. Errors are application/problem+json (RFC 9457).",
        license(name = "AGPL-3.0-or-later", identifier = "AGPL-3.0-or-later"),
    ),
    components(schemas(Problem, model::FieldError, model::Phase, model::Step)),
    modifiers(&BearerAuth),
    tags(
        (name = "servers", description = "Desired servers and their status"),
        (name = "operations", description = "Accepted requests to poll"),
        (name = "portal", description = "The Portal's existing contract, unchanged"),
        (name = "catalog", description = "What can be built"),
        (name = "customers", description = "Quota and standing"),
        (name = "tokens", description = "API tokens (operators)"),
        (name = "ops", description = "Health, metrics and controller state"),
    )
)]
pub struct ApiDoc;

/// The derived, read-only fields `model::Server` adds when serialised (its schema is derived
/// from the stored fields only): `phase` always, `step` when there is one.
pub(crate) fn add_derived_server_fields(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::Schema;
    let Some(RefOr::T(Schema::Object(server))) = doc
        .components
        .as_mut()
        .and_then(|c| c.schemas.get_mut("Server"))
    else {
        return;
    };
    let derived = [
        (
            "phase",
            "Phase",
            "Derived from the conditions when served (read-only).",
            true,
        ),
        (
            "step",
            "Step",
            "The step in progress, derived like `phase` (read-only; absent when none).",
            false,
        ),
    ];
    for (name, schema, description, required) in derived {
        server.properties.insert(
            name.into(),
            RefOr::Ref(
                utoipa::openapi::schema::RefBuilder::new()
                    .ref_location_from_schema_name(schema)
                    .description(Some(description))
                    .read_only(true)
                    .build(),
            ),
        );
        if required && !server.required.iter().any(|r| r == name) {
            server.required.push(name.into());
        }
    }
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

fn problem(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            Content::new(Some(Ref::from_schema_name("Problem"))),
        )
        .build()
}

fn with_header(mut r: Response, name: &str, description: &str) -> Response {
    r.headers.insert(
        name.into(),
        HeaderBuilder::new()
            .schema(Some(
                utoipa::openapi::ObjectBuilder::new().schema_type(Type::String),
            ))
            .description(Some(description))
            .build()
            .into(),
    );
    r
}

macro_rules! problem_set {
    ($(#[$doc:meta])* $name:ident { $($status:literal => $desc:expr),* $(,)? }) => {
        $(#[$doc])*
        pub struct $name;
        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                let mut m = BTreeMap::new();
                $(m.insert($status.to_string(), RefOr::T(decorate($status, problem($desc))));)*
                m
            }
        }
    };
}

fn decorate(status: &str, r: Response) -> Response {
    match status {
        "401" => with_header(r, "WWW-Authenticate", "`Bearer`"),
        "429" => with_header(r, "Retry-After", "Seconds to wait"),
        "503" => with_header(r, "Retry-After", "Seconds to wait"),
        _ => r,
    }
}

problem_set!(
    /// Every authenticated route.
    AuthProblems {
        "401" => "Missing, malformed or unknown bearer token",
        "403" => "The token's role may not do this",
        "429" => "Rate limit exceeded: per token, or per client address for a token not known valid",
        "503" => "The store is unavailable or the request timed out",
    }
);
problem_set!(
    /// Routes addressing one resource by id.
    IdProblems {
        "400" => "The id is malformed: not a UUID (servers: nor a VMID)",
        "404" => "No such resource, or not visible to this token",
    }
);
problem_set!(
    /// Routes with a JSON body.
    BodyProblems {
        "400" => "Malformed JSON or a bad header",
        "413" => "Body larger than the limit",
        "415" => "Body is not application/json",
        "422" => "The body does not validate; `errors` names the fields",
    }
);
problem_set!(
    /// The Portal's power routes (no body: the signal is in the path).
    PowerPathProblems {
        "422" => "The signal is not start, stop or restart (`kill` is not supported), or a dev container has no game; `errors` names the field",
    }
);
problem_set!(
    /// Writes that can conflict.
    ConflictProblems {
        "409" => "Idempotency-Key reused with another request, a different server still in progress, a stale resourceVersion, or the server is being deleted",
    }
);
problem_set!(
    /// Routes with query parameters.
    QueryProblems {
        "400" => "Bad query parameter",
    }
);
problem_set!(
    /// Creation admission.
    AdmissionProblems {
        "403" => "The token's role may not do this, the customer is not active (overdue/suspended), or a quota is exceeded",
    }
);
