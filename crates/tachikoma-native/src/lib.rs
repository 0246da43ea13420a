//! tachikoma-core exposed to Node (and so to Electron's main process) through Node-API.
//!
//! Every function is a thin conversion: the logic lives in tachikoma-core so the CLI and
//! the UI report the same answers.

use napi_derive::napi;

/// The app version (the Cargo workspace version).
#[napi]
pub fn version() -> String {
    tachikoma_core::VERSION.to_owned()
}

/// How the module was built.
#[napi(object)]
pub struct BuildInfo {
    pub version: String,
    /// development, production or test.
    pub mode: String,
    /// The Rust target triple.
    pub target: String,
    /// debug or release.
    pub profile: String,
}

/// The version, build mode, target triple and profile this module was compiled with.
#[napi]
pub fn build_info() -> BuildInfo {
    let info = tachikoma_core::build_info();
    BuildInfo {
        version: info.version.to_owned(),
        mode: info.mode.to_owned(),
        target: info.target.to_owned(),
        profile: info.profile.to_owned(),
    }
}

/// The SHA-256 digest of the string's UTF-8 bytes, as 64 lowercase hex digits.
#[napi]
pub fn hash_text(text: String) -> String {
    tachikoma_core::sha256_hex(&text)
}

/// Line, word, character and byte counts of a string.
#[napi(object)]
pub struct TextStats {
    pub lines: u32,
    pub words: u32,
    pub chars: u32,
    pub bytes: u32,
}

/// Counts of the string's lines, words, characters and UTF-8 bytes.
#[napi]
pub fn text_stats(text: String) -> TextStats {
    let stats = tachikoma_core::text_stats(&text);
    // Strings from JS are far below 4 GiB, so the counts fit in u32.
    let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    TextStats {
        lines: clamp(stats.lines),
        words: clamp(stats.words),
        chars: clamp(stats.chars),
        bytes: clamp(stats.bytes),
    }
}
