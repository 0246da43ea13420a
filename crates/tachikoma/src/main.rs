//! `tachikoma`: the command-line face of tachikoma-core.

use std::io::{self, Read};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Hash and measure text, and tell how this binary was built.
#[derive(Debug, Parser)]
#[command(name = "tachikoma", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the version, build mode, target triple and cargo profile of this binary.
    Info,
    /// Print the SHA-256 digest of TEXT (or of standard input when TEXT is omitted).
    Hash {
        /// The text to hash; its UTF-8 bytes are hashed, with no trailing newline added.
        text: Option<String>,
    },
    /// Print line, word, character and byte counts of TEXT (or of standard input).
    Stats {
        /// The text to measure.
        text: Option<String>,
    },
}

fn text_or_stdin(text: Option<String>) -> io::Result<String> {
    match text {
        Some(text) => Ok(text),
        None => {
            let mut buffer = String::new();
            io::stdin().read_to_string(&mut buffer)?;
            Ok(buffer)
        }
    }
}

fn run(cli: Cli) -> io::Result<()> {
    match cli.command {
        Command::Info => {
            let info = tachikoma_core::build_info();
            println!("tachikoma {}", info.version);
            println!("mode: {}", info.mode);
            println!("target: {}", info.target);
            println!("profile: {}", info.profile);
        }
        Command::Hash { text } => println!("{}", tachikoma_core::sha256_hex(&text_or_stdin(text)?)),
        Command::Stats { text } => {
            let stats = tachikoma_core::text_stats(&text_or_stdin(text)?);
            println!(
                "lines: {}\nwords: {}\nchars: {}\nbytes: {}",
                stats.lines, stats.words, stats.chars, stats.bytes
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tachikoma: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn hash_takes_an_optional_text() {
        let cli = Cli::try_parse_from(["tachikoma", "hash", "abc"]).unwrap();
        assert!(matches!(cli.command, Command::Hash { text: Some(ref t) } if t == "abc"));
        let cli = Cli::try_parse_from(["tachikoma", "hash"]).unwrap();
        assert!(matches!(cli.command, Command::Hash { text: None }));
    }

    #[test]
    fn a_subcommand_is_required() {
        assert!(Cli::try_parse_from(["tachikoma"]).is_err());
    }
}
