//! The OpenAPI document: every route is in it, and a snapshot keeps it honest.

#[test]
fn every_route_is_documented() {
    let doc = serde_json::to_value(api::openapi()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let want: &[(&str, &[&str])] = &[
        ("/api/servers", &["get", "post"]),
        ("/api/servers/{id}", &["get", "patch", "delete"]),
        ("/api/servers/{id}/reconcile", &["post"]),
        ("/api/servers:reconcile", &["post"]),
        ("/api/servers/{id}/pause", &["post"]),
        ("/api/servers/{id}/resume", &["post"]),
        ("/api/servers/{id}/events", &["get"]),
        ("/api/servers/{id}/stats", &["get"]),
        ("/api/servers/{id}/power", &["post"]),
        ("/api/servers/{id}/console/ticket", &["post"]),
        ("/api/servers/{id}/console", &["get"]),
        ("/api/servers/{id}/command", &["post"]),
        ("/api/servers/{id}/game/{signal}", &["post"]),
        ("/api/servers/{id}/host/{signal}", &["post"]),
        ("/api/operations/{id}", &["get"]),
        ("/api/controller", &["get"]),
        ("/api/orphans", &["get"]),
        ("/api/pools", &["get"]),
        ("/api/sd/targets", &["get"]),
        ("/sd/exporters", &["get"]),
        ("/api/customers/{id}", &["get", "put"]),
        ("/api/tokens", &["get", "post"]),
        ("/api/tokens/{id}", &["delete"]),
        ("/api/audit", &["get"]),
        ("/api/catalog/game", &["get"]),
        ("/api/catalog/dev", &["get"]),
        ("/api/instances", &["get", "post"]),
        ("/api/containers/{vmid}", &["delete"]),
        ("/api/health", &["get"]),
        ("/api/instances/operations/{operationId}", &["get"]),
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
        ("/metrics", &["get"]),
        ("/openapi.json", &["get"]),
    ];
    assert_eq!(
        paths.len(),
        want.len(),
        "{:?}",
        paths.keys().collect::<Vec<_>>()
    );
    for (path, methods) in want {
        for m in *methods {
            let op = &paths[*path][*m];
            assert!(op.is_object(), "{m} {path} is documented");
            // Authenticated routes document their problem responses.
            // (`/api/health` is the previous API's `/healthz`: no token.)
            if path.starts_with("/api/") && *path != "/api/health" {
                for status in ["401", "403", "429"] {
                    let r = &op["responses"][status]["content"]["application/problem+json"];
                    assert!(r.is_object(), "{m} {path} documents {status}");
                }
            }
        }
    }
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    // The server's derived fields, read-only, `phase` always present.
    let server = &doc["components"]["schemas"]["Server"];
    for field in ["phase", "step"] {
        assert_eq!(server["properties"][field]["readOnly"], true, "{field}");
    }
    assert!(
        server["required"]
            .as_array()
            .unwrap()
            .contains(&"phase".into())
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[test]
fn every_reference_resolves_and_every_response_is_described() {
    fn walk(v: &serde_json::Value, refs: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(|r| r.as_str()) {
                    refs.push(r.to_string());
                }
                m.values().for_each(|x| walk(x, refs));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, refs)),
            _ => {}
        }
    }
    let doc = serde_json::to_value(api::openapi()).unwrap();
    let mut refs = Vec::new();
    walk(&doc, &mut refs);
    for r in refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .expect("a schema ref");
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{r} resolves"
        );
    }
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (m, op) in ops.as_object().unwrap() {
            for (status, r) in op["responses"].as_object().unwrap() {
                let d = r["description"].as_str().unwrap_or("");
                assert!(!d.is_empty(), "{m} {path} {status} has a description");
            }
        }
    }
}

#[test]
fn openapi_snapshot() {
    // An absolute snapshot path: insta otherwise asks `cargo metadata` for the workspace root,
    // and when that is not answered (parallel test processes) it looks in the wrong place.
    insta::with_settings!({
        snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/snapshots"),
        omit_expression => false,
    }, {
        insta::assert_json_snapshot!("openapi", api::openapi());
    });
}

/// The served document passes an independent validator (`openapi-spec-validator` from PyPI,
/// which `.ci/run` installs): a 3.2 keyword in a 3.1 document, say, is caught here. Fails,
/// never skips, when the validator is missing.
#[tokio::test]
async fn the_served_document_passes_an_openapi_validator() {
    let api = crate::common::Harness::start().await;
    let body = reqwest::get(api.url("/openapi.json"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dir = tempfile_dir();
    let path = dir.join("openapi.json");
    std::fs::write(&path, &body).unwrap();
    let validator =
        std::env::var("ZLH_OPENAPI_VALIDATOR").unwrap_or_else(|_| "openapi-spec-validator".into());
    let out = std::process::Command::new(&validator)
        .arg(&path)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{validator} is not runnable ({e}); install it: pip install openapi-spec-validator"
            )
        });
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "the validator rejects /openapi.json:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("zlh-openapi-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `/docs` is a browsable page whose assets come from the binary itself and which reads the
/// served document: a page that needed a CDN, or pointed elsewhere, would fail here.
#[tokio::test]
async fn the_docs_page_is_served_from_vendored_assets() {
    let api = crate::common::Harness::start().await;
    let get = |path: &str| reqwest::get(api.url(path));
    let page = get("/docs/").await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(
        !html.contains("https://"),
        "the page loads nothing remote: {html}"
    );
    let init = get("/docs/swagger-initializer.js").await.unwrap();
    assert_eq!(init.status(), 200);
    assert!(init.text().await.unwrap().contains("/openapi.json"));
    let bundle = get("/docs/swagger-ui-bundle.js").await.unwrap();
    assert_eq!(bundle.status(), 200);
    assert!(bundle.bytes().await.unwrap().len() > 100_000);
}
