use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = consumer::Config::parse();
    service::telemetry::init_logging();
    let shutdown = service::shutdown_token()?;
    consumer::run(config, shutdown).await
}
