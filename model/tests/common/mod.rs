//! Fresh databases for the store tests of this directory: a SQLite file, or a PostgreSQL
//! database created through `DATABASE_URL` (default: the loopback server with trust auth);
//! PostgreSQL tests fail loudly, never skip, when it is unreachable.

use sqlx::Connection;
use std::path::PathBuf;

const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub enum Db {
    Sqlite(PathBuf),
    Pg { admin: String, name: String },
}

impl Db {
    /// A fresh SQLite file.
    pub fn sqlite(prefix: &str) -> (Db, String) {
        let path = std::env::temp_dir().join(format!(
            "zlh-{prefix}-test-{}.db",
            uuid::Uuid::now_v7().simple()
        ));
        let url = format!("sqlite:{}", path.display());
        (Db::Sqlite(path), url)
    }

    /// A fresh database; fails loudly (never skips) without PostgreSQL.
    pub async fn postgres(prefix: &str) -> (Db, String) {
        let admin = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.into());
        let name = format!("zlh_{prefix}_{}", uuid::Uuid::now_v7().simple());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at DATABASE_URL is required: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("CREATE DATABASE");
        let (base, query) = match admin.split_once('?') {
            Some((b, q)) => (b, format!("?{q}")),
            None => (admin.as_str(), String::new()),
        };
        let (server, _) = base
            .rsplit_once('/')
            .expect("DATABASE_URL names a database");
        let url = format!("{server}/{name}{query}");
        (Db::Pg { admin, name }, url)
    }

    pub async fn drop_db(self) {
        match self {
            Db::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Db::Pg { admin, name } => {
                let mut conn = sqlx::PgConnection::connect(&admin).await.expect("admin");
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .expect("DROP DATABASE");
            }
        }
    }
}
