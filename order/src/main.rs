use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = order::Config::parse();
    service::telemetry::init_logging(&config.log, "info");
    let shutdown = service::shutdown_token()?;
    order::run(config, shutdown).await
}
