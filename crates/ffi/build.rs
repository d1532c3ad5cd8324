//! Gives the shared library its soname, `libframebus.so.<ABI major>`, so a
//! program linked against one ABI major never loads a library of another.

fn main() {
    // Keep in step with FRAMEBUS_ABI_VERSION_MAJOR in src/lib.rs (the
    // header test checks the installed name against it).
    const ABI_MAJOR: u32 = 1;
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libframebus.so.{ABI_MAJOR}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
