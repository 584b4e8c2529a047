// New migration files must trigger a rebuild, or `sqlx::migrate!` embeds a stale set.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
