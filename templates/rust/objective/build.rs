// build.rs — link flags for the plugin (docs/abi.md rule 2.3): on Linux, link with
// -Wl,--no-undefined so a symbol the library does not resolve fails the build, not the
// host's dlopen. (rustc already exports only `keel_plugin_entry` from a cdylib: it passes
// the linker a version script listing the #[no_mangle] extern "C" functions.)
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,--no-undefined");
    }
}
