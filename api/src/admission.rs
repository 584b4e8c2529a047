//! Admission: what a create or a spec change must pass before the store records it (spec
//! shape, the catalog, the caller's customer, standing), shared by the native routes
//! (`crate::routes::servers`) and the Portal's (`crate::portal`).

use crate::auth::Principal;
use crate::extract::check_customer_id;
use crate::problem::{ApiError, ApiResult};
use crate::state::Ctx;
use crate::wire::request_hash;
use model::store::{Created, Idempotency, NewServer, Store};
use model::{Catalog, FieldError, Kind, Role, ServerSpec, Standing};

/// Shape validation, with field paths under `prefix` (`spec.` for `/api/servers`).
pub(crate) fn validate_spec(spec: &ServerSpec, prefix: &str) -> ApiResult<()> {
    spec.validate().map_err(|errs| {
        let errors: Vec<FieldError> = errs
            .into_iter()
            .map(|e| FieldError {
                field: format!("{prefix}{}", e.field),
                message: e.message,
            })
            .collect();
        let detail = errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        ApiError::Invalid {
            detail: format!("the spec is invalid: {detail}"),
            errors,
        }
    })
}

/// A spec change may grow the disk, never shrink it: Proxmox cannot shrink a container volume
/// (`unable to shrink disk size`), so a smaller `diskGib` would be a promise never kept. A 422
/// naming `resources.diskGib` under `prefix`.
pub(crate) fn check_disk_not_shrunk(
    current: &ServerSpec,
    asked: &ServerSpec,
    prefix: &str,
) -> ApiResult<()> {
    let (have, want) = (current.resources.disk_gib, asked.resources.disk_gib);
    if want < have {
        return Err(ApiError::invalid_field(
            &format!("{prefix}resources.diskGib"),
            format!(
                "cannot shrink the disk from {have} GiB to {want} GiB: Proxmox can only grow a \
                 container's disk"
            ),
        ));
    }
    Ok(())
}

/// Whether the catalog offers this spec; a 422 naming `variant`, `runtime` or `version`.
pub(crate) fn check_offered(catalog: &Catalog, spec: &ServerSpec, prefix: &str) -> ApiResult<()> {
    if catalog.template_for(spec).is_some() {
        return Ok(());
    }
    let field = |f: &str| format!("{prefix}{f}");
    let (name, offered): (String, Vec<String>) = match spec.kind {
        Kind::Game => {
            let variants = catalog.game_variants();
            let variant = spec.variant.map(|v| v.as_str()).unwrap_or("");
            match variants.iter().find(|(v, _)| v.as_str() == variant) {
                None => {
                    let list = variants
                        .iter()
                        .map(|(v, _)| v.as_str().to_string())
                        .collect();
                    return Err(not_offered(&field("variant"), variant, list));
                }
                Some((_, versions)) => (format!("{variant} {}", spec.version), versions.clone()),
            }
        }
        Kind::Dev => {
            let runtimes = catalog.dev_runtimes();
            let runtime = spec.runtime.as_deref().unwrap_or("");
            match runtimes.iter().find(|(r, _)| r == runtime) {
                None => {
                    let list = runtimes.iter().map(|(r, _)| r.clone()).collect();
                    return Err(not_offered(&field("runtime"), runtime, list));
                }
                Some((_, versions)) => (format!("{runtime} {}", spec.version), versions.clone()),
            }
        }
    };
    Err(not_offered(&field("version"), &name, offered))
}

fn not_offered(field: &str, what: &str, offered: Vec<String>) -> ApiError {
    let list = if offered.is_empty() {
        "nothing".to_string()
    } else {
        offered.join(", ")
    };
    ApiError::invalid_field(field, format!("'{what}' is not offered (offered: {list})"))
}

/// Which customer a create is for, given the token's scope.
pub(crate) fn resolve_customer(
    p: &Principal,
    named: Option<String>,
    field: &str,
) -> ApiResult<String> {
    let customer = match (&p.scope, named) {
        (Some(own), Some(named)) if *own != named => {
            return Err(ApiError::Forbidden(
                "a customer-scoped token may only create servers for its own customer".into(),
            ));
        }
        (Some(own), _) => own.clone(),
        (None, Some(named)) => named,
        (None, None) => {
            return Err(ApiError::invalid_field(
                field,
                format!("is required for a {} token", p.role),
            ));
        }
    };
    check_customer_id(field, &customer)?;
    Ok(customer)
}

/// Validate, check the catalog, and record the server (standing, quota and idempotency are
/// applied by the store atomically with the insert).
pub(crate) async fn admit(
    ctx: &Ctx,
    customer_id: String,
    spec: ServerSpec,
    key: Option<String>,
    prefix: &str,
) -> ApiResult<Created> {
    validate_spec(&spec, prefix)?;
    check_offered(&ctx.app.catalog, &spec, prefix)?;
    let idempotency = key.map(|key| Idempotency {
        key,
        request_hash: request_hash(&customer_id, &spec),
        retention: ctx.app.config.idempotency_retention,
    });
    let created = ctx
        .app
        .store
        .create_server(NewServer {
            customer_id,
            spec,
            idempotency,
            enforce_quota: true,
        })
        .await?;
    if created.created {
        tracing::info!(server = %created.server.id, customer = %created.server.customer_id, "server requested");
        metrics::counter!(crate::metrics::SERVERS_CREATED).increment(1);
    }
    Ok(created)
}

/// Refuse changes for a customer who is not active (operators may still act).
pub(crate) async fn check_standing(
    ctx: &Ctx,
    p: &Principal,
    customer: &str,
) -> ApiResult<model::Customer> {
    let c = ctx.app.store.get_customer(customer).await?;
    if c.standing != Standing::Active && p.role != Role::Operator {
        return Err(ApiError::CustomerNotActive {
            customer: customer.into(),
            standing: c.standing,
        });
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::Variant;

    #[test]
    fn a_disk_may_grow_or_stay_but_never_shrink() {
        let cases: &[(&str, u32, u32, bool)] = &[
            ("growing is applied by a resize", 16, 32, true),
            ("the same size changes nothing", 16, 16, true),
            ("shrinking is refused: Proxmox cannot", 32, 16, false),
        ];
        for (why, have, want, ok) in cases {
            let mut current = ServerSpec::minecraft(Variant::Paper, "1.21.7");
            current.resources.disk_gib = *have;
            let mut asked = current.clone();
            asked.resources.disk_gib = *want;
            let got = check_disk_not_shrunk(&current, &asked, "spec.");
            assert_eq!(got.is_ok(), *ok, "{why}");
            if let Err(e) = got {
                let text = format!("{e:?}");
                assert!(text.contains("spec.resources.diskGib"), "{why}: {text}");
                assert!(
                    text.contains("cannot shrink the disk from 32 GiB to 16 GiB"),
                    "{why}"
                );
            }
        }
    }
}
