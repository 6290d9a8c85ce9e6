//! The page is embedded from `web/static` (rust-embed): a file added there
//! must rebuild the crate too, not only a changed one.

fn main() {
    println!("cargo:rerun-if-changed=../../web/static");
}
