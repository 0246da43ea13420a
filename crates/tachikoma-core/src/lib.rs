//! The logic behind tachikoma: text digests, text statistics and the facts of the build.
//!
//! Both front ends call this crate: the `tachikoma` CLI and the `tachikoma-native`
//! Node module (and through it the Electron UI), so they always agree.

use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// The workspace version, e.g. `0.1.0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How this build was made; fixed at compile time by `build.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildInfo {
    /// The app version (the workspace version).
    pub version: &'static str,
    /// `TACHIKOMA_BUILD_MODE` at build time: development, production or test.
    pub mode: &'static str,
    /// The Rust target triple compiled for.
    pub target: &'static str,
    /// Cargo's profile directory name: `debug` or `release`.
    pub profile: &'static str,
}

/// The facts of this build.
pub fn build_info() -> BuildInfo {
    BuildInfo {
        version: VERSION,
        mode: env!("TACHIKOMA_BUILD_MODE"),
        target: env!("TACHIKOMA_TARGET"),
        profile: env!("TACHIKOMA_PROFILE"),
    }
}

/// The SHA-256 digest of `text`'s UTF-8 bytes as 64 lowercase hex digits.
pub fn sha256_hex(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut hex = String::with_capacity(digest.len() * 2);
    for byte in digest.iter() {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// Counts describing a piece of text, as `wc` would report them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TextStats {
    /// Lines: newline-terminated ones plus a final unterminated one.
    pub lines: usize,
    /// Runs of non-whitespace characters.
    pub words: usize,
    /// Unicode scalar values.
    pub chars: usize,
    /// UTF-8 bytes.
    pub bytes: usize,
}

/// Line, word, character and byte counts of `text`.
pub fn text_stats(text: &str) -> TextStats {
    let newlines = text.matches('\n').count();
    let unterminated = usize::from(!text.is_empty() && !text.ends_with('\n'));
    TextStats {
        lines: newlines + unterminated,
        words: text.split_whitespace().count(),
        chars: text.chars().count(),
        bytes: text.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_empty_string_is_the_known_digest() {
        assert_eq!(
            sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn sha256_of_abc_is_the_fips_180_example() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn sha256_hashes_utf8_bytes() {
        // `printf 'é' | sha256sum`: the digest of the two bytes C3 A9.
        assert_eq!(
            sha256_hex("é"),
            "4a99557e4033c3539de2eb65472017cad5f9557f7a0625a09f1c3f6e2ba69c4c"
        );
    }

    #[test]
    fn stats_count_lines_words_chars_and_bytes() {
        let stats = text_stats("hello world\nça va\n");
        assert_eq!(
            stats,
            TextStats {
                lines: 2,
                words: 4,
                chars: 18,
                bytes: 19
            }
        );
    }

    #[test]
    fn stats_count_a_final_unterminated_line() {
        assert_eq!(text_stats("a\nb").lines, 2);
        assert_eq!(text_stats("").lines, 0);
        assert_eq!(text_stats("\n").lines, 1);
    }

    #[test]
    fn build_info_reports_the_workspace_version_and_a_known_profile() {
        let info = build_info();
        assert_eq!(info.version.split('.').count(), 3, "{info:?}");
        assert!(["debug", "release"].contains(&info.profile), "{info:?}");
        assert!(!info.target.is_empty());
        assert!(!info.mode.is_empty());
    }
}
