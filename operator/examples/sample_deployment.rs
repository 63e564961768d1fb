//! Prints the Deployment the operator applies for a sample `ExactlyOnceConsumer`, so a reader
//! can see the pods it produces without a cluster: `cargo run -p operator --example sample_deployment`.

use operator::crd::{ExactlyOnceConsumer, ExactlyOnceConsumerSpec, SecretKeyRef};

fn main() -> anyhow::Result<()> {
    let mut spec = ExactlyOnceConsumerSpec::with_redis_url("unused");
    spec.redis.url = None;
    spec.redis.url_secret_ref = Some(SecretKeyRef {
        name: "redis-auth".into(),
        key: "url".into(),
    });
    let mut cr = ExactlyOnceConsumer::new("inventory", spec);
    cr.metadata.namespace = Some("shop".into());
    // The API server assigns the uid; the owner reference needs one.
    cr.metadata.uid = Some("7f1c2a9e-0000-4000-8000-000000000001".into());
    let deployment = operator::deployment::build_deployment(&cr)?;
    print!("{}", serde_yaml::to_string(&deployment)?);
    Ok(())
}
