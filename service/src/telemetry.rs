//! Logging, the same for every binary: JSON lines on stdout when it is not a terminal
//! (containers, CI, log shippers) or when asked, readable text on a terminal. `RUST_LOG`
//! filters; each binary names its default filter.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, fields flattened: what log shippers parse.
    Json,
    /// Human-readable lines.
    Text,
}

/// The logging flags every binary takes (`#[command(flatten)]`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LogArgs {
    /// `json` or `text`; default: text on a terminal, JSON otherwise.
    #[arg(long, env = "LOG_FORMAT", value_enum, global = true)]
    pub log_format: Option<LogFormat>,
}

impl LogArgs {
    /// The format to write: the flag, else by whether stdout is a terminal.
    pub fn format(&self) -> LogFormat {
        self.log_format
            .unwrap_or(if std::io::stdout().is_terminal() {
                LogFormat::Text
            } else {
                LogFormat::Json
            })
    }
}

/// Installs the global subscriber. `default_filter` applies when `RUST_LOG` is unset.
pub fn init_logging(args: &LogArgs, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match args.format() {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        log: LogArgs,
    }

    #[test]
    fn the_format_flag_takes_json_or_text_and_names_the_choices_otherwise() {
        let json = Cli::try_parse_from(["bin", "--log-format", "json"]).unwrap();
        assert_eq!(json.log.format(), LogFormat::Json);
        let text = Cli::try_parse_from(["bin", "--log-format", "text"]).unwrap();
        assert_eq!(text.log.format(), LogFormat::Text);
        let err = Cli::try_parse_from(["bin", "--log-format", "yaml"])
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("json") && err.contains("text"), "{err}");
    }
}
