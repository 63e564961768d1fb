//! Prints the `ExactlyOnceConsumer` CRD as YAML:
//! `cargo run -p operator --bin crdgen > crds/exactlyonceconsumers.exactlyonce.dev.yaml`.

use std::io::Write;

fn main() -> anyhow::Result<()> {
    let yaml = operator::crd::crd_yaml()?;
    std::io::stdout().lock().write_all(yaml.as_bytes())?;
    Ok(())
}
