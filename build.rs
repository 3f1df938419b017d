//! Embeds the sample registry (`samples/registry/*/config.json`) in the binary, so that
//! `mcp-healthd demo` works from any directory and from the Debian package. Also makes a change
//! to `migrations/` rebuild the crate (`sqlx::migrate!` embeds them at compile time).

use std::path::Path;

fn main() {
    let dir = Path::new("samples/registry");
    println!("cargo::rerun-if-changed=samples/registry");
    println!("cargo::rerun-if-changed=migrations");
    let mut services: Vec<String> = std::fs::read_dir(dir)
        .expect("samples/registry is part of the source tree")
        .filter_map(Result::ok)
        .filter(|e| e.path().join("config.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    services.sort();
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo");
    let mut out = String::from("/// (service directory, config.json text) of every sample.\n");
    out.push_str("pub const SAMPLES: &[(&str, &str)] = &[\n");
    for s in &services {
        let file = Path::new(&manifest).join(dir).join(s).join("config.json");
        out.push_str(&format!(
            "    ({s:?}, include_str!({:?})),\n",
            file.display().to_string()
        ));
    }
    out.push_str("];\n");
    let target = Path::new(&std::env::var("OUT_DIR").expect("set by cargo")).join("samples.rs");
    std::fs::write(target, out).expect("write OUT_DIR/samples.rs");
}
