// sqlx::migrate! embeds the migrations at compile time: rebuild when one is added or changed
// (without this, a new migration file is silently left out of an incremental build).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
