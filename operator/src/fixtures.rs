//! Test fixtures: CRs as the API server would hand them to the reconciler (namespace, uid and
//! generation set, defaults applied).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::crd::{ExactlyOnceConsumer, ExactlyOnceConsumerSpec, SecretKeyRef};

pub const NAME: &str = "inventory";
pub const NAMESPACE: &str = "shop";
pub const UID: &str = "7f1c2a9e-0000-4000-8000-000000000001";

pub fn consumer(spec: ExactlyOnceConsumerSpec) -> ExactlyOnceConsumer {
    ExactlyOnceConsumer {
        metadata: ObjectMeta {
            name: Some(NAME.to_owned()),
            namespace: Some(NAMESPACE.to_owned()),
            uid: Some(UID.to_owned()),
            generation: Some(4),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

pub fn with_url() -> ExactlyOnceConsumer {
    consumer(ExactlyOnceConsumerSpec::with_redis_url(
        "redis://redis:6379",
    ))
}

pub fn with_secret() -> ExactlyOnceConsumer {
    let mut spec = ExactlyOnceConsumerSpec::with_redis_url("unused");
    spec.redis.url = None;
    spec.redis.url_secret_ref = Some(SecretKeyRef {
        name: "redis-auth".to_owned(),
        key: "url".to_owned(),
    });
    consumer(spec)
}
