use std::process::ExitCode;

use clap::Parser;
use consumer::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        None => {
            service::telemetry::init_logging(&cli.log, "info");
            let shutdown = service::shutdown_token()?;
            consumer::run(cli.config, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::DeadLetters(command)) => {
            let all_done =
                consumer::dead_letters::run(&cli.config, &command, &mut std::io::stdout().lock())
                    .await?;
            Ok(if all_done {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
