//! The committed C header is what cbindgen generates from this crate: a
//! change to the exported API without regenerating the header fails here.
//! `FRAMEBUS_BLESS=1 cargo test -p framebus-ffi --test header` rewrites it.

use std::path::Path;

fn generate() -> String {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .unwrap_or_else(|e| panic!("cannot read cbindgen.toml: {e}"));
    let bindings = cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .unwrap_or_else(|e| panic!("cbindgen failed: {e}"));
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("cbindgen writes UTF-8")
}

#[test]
fn committed_header_matches_cbindgen() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/framebus.h");
    let fresh = generate();
    if std::env::var_os("FRAMEBUS_BLESS").is_some() {
        std::fs::write(&path, &fresh)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return;
    }
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    if committed != fresh {
        let line = committed
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(fresh.lines().count()));
        panic!(
            "{} is out of date with the Rust API (first difference at line {}):\n  committed: {:?}\n  generated: {:?}\n\
             regenerate it: FRAMEBUS_BLESS=1 cargo test -p framebus-ffi --test header",
            path.display(),
            line + 1,
            committed.lines().nth(line).unwrap_or("<end>"),
            fresh.lines().nth(line).unwrap_or("<end>"),
        );
    }
}

#[test]
fn soname_major_matches_the_abi_major() {
    let build = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("build.rs"))
        .expect("read build.rs");
    let line = format!(
        "const ABI_MAJOR: u32 = {};",
        framebus::FRAMEBUS_ABI_VERSION_MAJOR
    );
    assert!(
        build.contains(&line),
        "build.rs must say `{line}` (the soname follows the ABI major)"
    );
}
