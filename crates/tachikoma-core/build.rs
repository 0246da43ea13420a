//! Embeds how this build was made (mode, target triple, cargo profile) so the CLI,
//! the native module and the UI can report it without any runtime lookup.

use std::env;

fn main() {
    println!("cargo:rerun-if-env-changed=TACHIKOMA_BUILD_MODE");
    let mode = env::var("TACHIKOMA_BUILD_MODE")
        .ok()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "development".to_owned());
    // TARGET and PROFILE are set by cargo for every build script.
    let target = env::var("TARGET").expect("cargo sets TARGET for build scripts");
    let profile = env::var("PROFILE").expect("cargo sets PROFILE for build scripts");
    println!("cargo:rustc-env=TACHIKOMA_BUILD_MODE={mode}");
    println!("cargo:rustc-env=TACHIKOMA_TARGET={target}");
    println!("cargo:rustc-env=TACHIKOMA_PROFILE={profile}");
}
