//! `/api/catalog/*`: what can be built, in the Portal's exact shapes.

use crate::auth::Reader;
use crate::openapi::AuthProblems;
use crate::state::Ctx;
use crate::wire::{CatalogEntry, CatalogGame, DevCatalog, GameCatalog};
use axum::Json;
use axum::extract::State;
use model::Catalog;
use model::spec::GAME_MINECRAFT;
use std::sync::Arc;

pub fn game_catalog(c: &Catalog) -> GameCatalog {
    let variants: Vec<CatalogEntry> = c
        .game_variants()
        .into_iter()
        .map(|(v, versions)| CatalogEntry {
            id: v.as_str().into(),
            versions,
        })
        .collect();
    GameCatalog {
        games: if variants.is_empty() {
            vec![]
        } else {
            vec![CatalogGame {
                id: GAME_MINECRAFT.into(),
                variants,
            }]
        },
    }
}

pub fn dev_catalog(c: &Catalog) -> DevCatalog {
    DevCatalog {
        runtimes: c
            .dev_runtimes()
            .into_iter()
            .map(|(id, versions)| CatalogEntry { id, versions })
            .collect(),
    }
}

/// Games, variants and versions the controller can build.
#[utoipa::path(
    get, path = "/api/catalog/game", tag = "catalog",
    responses((status = 200, description = "Games and variants", body = GameCatalog), AuthProblems),
    security(("bearer" = []))
)]
pub async fn get_game_catalog(State(ctx): State<Arc<Ctx>>, _caller: Reader) -> Json<GameCatalog> {
    Json(game_catalog(&ctx.app.catalog))
}

/// Dev runtimes and versions the controller can build.
#[utoipa::path(
    get, path = "/api/catalog/dev", tag = "catalog",
    responses((status = 200, description = "Dev runtimes", body = DevCatalog), AuthProblems),
    security(("bearer" = []))
)]
pub async fn get_dev_catalog(State(ctx): State<Arc<Ctx>>, _caller: Reader) -> Json<DevCatalog> {
    Json(dev_catalog(&ctx.app.catalog))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portal_shapes() {
        let g = serde_json::to_value(game_catalog(&Catalog::example())).unwrap();
        assert_eq!(g["games"][0]["id"], "minecraft");
        assert_eq!(g["games"][0]["variants"][0]["id"], "vanilla");
        assert_eq!(g["games"][0]["variants"][0]["versions"][2], "1.21.7");
        let d = serde_json::to_value(dev_catalog(&Catalog::example())).unwrap();
        assert_eq!(
            d["runtimes"][0],
            serde_json::json!({"id": "node", "versions": ["20", "22"]})
        );
        let empty = serde_json::to_value(game_catalog(&Catalog::default())).unwrap();
        assert_eq!(empty, serde_json::json!({"games": []}));
    }
}
