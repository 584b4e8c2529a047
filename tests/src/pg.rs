//! Fresh PostgreSQL databases for tests: `DATABASE_URL` (default: the loopback server with
//! trust auth that CI starts) names a server and a database to connect through; each test
//! gets its own database, dropped when the guard goes.

use sqlx::Connection;

pub fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub struct FreshDb {
    pub url: String,
    name: String,
}

/// Create `<prefix>_<uuid>`; fails loudly (never skips) when PostgreSQL is unreachable.
pub async fn fresh_database(prefix: &str) -> FreshDb {
    let admin = admin_url();
    let name = format!("{prefix}_{}", model::ServerId::new().0.simple());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at DATABASE_URL is required for this test: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let _ = conn.close().await;
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (admin.as_str(), String::new()),
    };
    let prefix = base.rsplit_once('/').map(|(p, _)| p).unwrap_or(base);
    FreshDb {
        url: format!("{prefix}/{name}{query}"),
        name,
    }
}

impl FreshDb {
    /// Drop the database (connections are closed by `WITH (FORCE)`).
    pub async fn drop_db(self) {
        if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url()).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut conn)
            .await;
            let _ = conn.close().await;
        }
    }
}
