//! The I/O shell around the pure builders: dereference (the Secret) -> validate -> build ->
//! server-side apply -> status. Kept short; every decision lives in `deployment`, `status` and
//! the small pure helpers here.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::crd::{ExactlyOnceConsumer, ExactlyOnceConsumerStatus, RedisSpec};
use crate::deployment::{BuildError, build_deployment, deployment_name};
use crate::metrics::Metrics;
use crate::redis_access::{KeyContent, SecretNeed, secret_needs};
use crate::status::{Problem, build_status, needs_write};

/// The one field manager for everything the operator applies, so its ownership is stable and
/// a forced apply takes back fields someone edited by hand.
pub const FIELD_MANAGER: &str = "exactly-once-operator";
/// Periodic re-check: Secrets are not watched (that would need list/watch on every Secret).
const RESYNC: Duration = Duration::from_secs(300);
const DEGRADED_RETRY: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Build(#[from] BuildError),
    #[error("reading Secret {name} ({field}): {source}")]
    ReadSecret {
        name: String,
        field: &'static str,
        source: kube::Error,
    },
    #[error("reading Deployment {name}: {source}")]
    ReadDeployment { name: String, source: kube::Error },
    #[error("applying Deployment {name}: {source}")]
    ApplyDeployment { name: String, source: kube::Error },
    #[error("writing status of {name}: {source}")]
    WriteStatus { name: String, source: kube::Error },
}

impl Error {
    /// CamelCase reason for the Warning event and the error metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Build(_) => "InvalidResource",
            Error::ReadSecret { .. } => "SecretReadFailed",
            Error::ReadDeployment { .. } => "DeploymentReadFailed",
            Error::ApplyDeployment { .. } => "ApplyFailed",
            Error::WriteStatus { .. } => "StatusWriteFailed",
        }
    }
}

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Consecutive failures per object (`namespace/name`), for per-object backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(client: Client, recorder: Recorder, metrics: Arc<Metrics>) -> Self {
        Context {
            client,
            recorder,
            metrics,
            failures: Mutex::default(),
        }
    }

    fn record_failure(&self, key: String) -> u32 {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let n = failures.entry(key).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    fn clear_failures(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(key);
    }
}

fn key(cr: &ExactlyOnceConsumer) -> String {
    format!("{}/{}", cr.namespace().unwrap_or_default(), cr.name_any())
}

/// 2 s, 4 s, 8 s ... capped at 5 minutes: a broken object retries slowly, others are unaffected.
pub fn backoff_delay(consecutive_failures: u32) -> Duration {
    let exponent = consecutive_failures.saturating_sub(1).min(8);
    Duration::from_secs(2u64 << exponent).min(Duration::from_secs(300))
}

/// Why a Secret the pods read cannot give them what they need, if it cannot: the Secret
/// missing, a key missing, or a URL that is not one. The one check for every Secret reference
/// (`redis_access::secret_needs` lists them); messages name the field to fix and never carry a
/// Secret's value.
pub fn secret_problem(secret: Option<&Secret>, need: &SecretNeed) -> Option<Problem> {
    let Some(secret) = secret else {
        return Some(Problem {
            reason: "SecretNotFound".into(),
            message: format!("secret {} not found ({})", need.name, need.name_field),
        });
    };
    for needed in &need.keys {
        let value = secret.data.as_ref().and_then(|d| d.get(&needed.key));
        let Some(value) = value else {
            return Some(Problem {
                reason: "SecretKeyNotFound".into(),
                message: format!(
                    "secret {} has no key {} ({})",
                    need.name, needed.key, needed.field
                ),
            });
        };
        if let KeyContent::RedisUrl { tls } = needed.content {
            // The CRD's CEL rules make the same demands of an inline URL.
            let (schemes, rule): (&[&str], &str) = if tls {
                (
                    &["rediss://"],
                    "must hold a rediss:// URL because spec.redis.tls is set",
                )
            } else {
                (
                    &["redis://", "rediss://"],
                    "must hold a redis:// or rediss:// URL",
                )
            };
            let url = String::from_utf8_lossy(&value.0);
            // A `#insecure` fragment would skip TLS verification; the consumer refuses any.
            let (url, rule) = if url.contains('#') {
                (
                    "",
                    "must not carry a #fragment (spec.redis.tls.insecureSkipVerifyForTestsOnly is the only way to skip verification)",
                )
            } else {
                (url.as_ref(), rule)
            };
            if !schemes.iter().any(|s| url.trim().starts_with(s)) {
                return Some(Problem {
                    reason: "InvalidRedisUrl".into(),
                    message: format!(
                        "secret {} key {} {rule} ({})",
                        need.name, needed.key, needed.field
                    ),
                });
            }
        }
    }
    None
}

/// The controller's reconcile: runs one pass and turns every error into a Warning event.
pub async fn reconcile(cr: Arc<ExactlyOnceConsumer>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started();
    let result = reconcile_once(&cr, &ctx).await;
    match &result {
        Ok(_) => ctx.clear_failures(&key(&cr)),
        Err(e) => {
            ctx.metrics.failed(e.reason());
            publish(
                &ctx,
                &cr,
                EventType::Warning,
                e.reason(),
                "Reconcile",
                e.to_string(),
            )
            .await;
        }
    }
    result
}

/// Per-object exponential backoff; the Warning event was already published by `reconcile`.
pub fn error_policy(cr: Arc<ExactlyOnceConsumer>, error: &Error, ctx: Arc<Context>) -> Action {
    let failures = ctx.record_failure(key(&cr));
    let delay = backoff_delay(failures);
    warn!(consumer = %key(&cr), error = %error, failures, retry_in_s = delay.as_secs(), "reconcile failed");
    Action::requeue(delay)
}

async fn reconcile_once(cr: &ExactlyOnceConsumer, ctx: &Context) -> Result<Action, Error> {
    // Garbage collection removes the Deployment through its owner reference; applying now
    // would only race it.
    if cr.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = cr.name_any();
    let namespace = cr
        .namespace()
        .ok_or_else(|| BuildError::MissingNamespace(name.clone()))?;
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
    let deploy_name = deployment_name(&name);
    let existing =
        deployments
            .get_opt(&deploy_name)
            .await
            .map_err(|source| Error::ReadDeployment {
                name: deploy_name.clone(),
                source,
            })?;

    // Dereference and validate: a Secret that cannot give the pods what they need is the
    // user's to fix, so it becomes a Degraded status and a Warning, retried slowly, not an
    // error loop. The first problem is reported; fixing it reveals the next.
    if let Some(problem) = first_secret_problem(ctx, &namespace, &cr.spec.redis).await? {
        warn!(consumer = %key(cr), reason = %problem.reason, "{}", problem.message);
        publish(
            ctx,
            cr,
            EventType::Warning,
            &problem.reason,
            "ValidateSpec",
            problem.message.clone(),
        )
        .await;
        write_status(
            ctx,
            cr,
            build_status(cr, existing.as_ref(), Some(&problem), now()),
        )
        .await?;
        ctx.metrics.reconciled("degraded");
        return Ok(Action::requeue(DEGRADED_RETRY));
    }

    let desired = build_deployment(cr)?;
    let applied = deployments
        .patch(
            &deploy_name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&desired),
        )
        .await
        .map_err(|source| Error::ApplyDeployment {
            name: deploy_name.clone(),
            source,
        })?;
    announce_changes(ctx, cr, existing.as_ref(), &desired).await;

    write_status(ctx, cr, build_status(cr, Some(&applied), None, now())).await?;
    ctx.metrics.reconciled("ok");
    Ok(Action::requeue(RESYNC))
}

/// Reads each Secret `spec.redis` references (once, however many fields name it) and returns
/// the first that cannot serve the pods.
async fn first_secret_problem(
    ctx: &Context,
    namespace: &str,
    redis: &RedisSpec,
) -> Result<Option<Problem>, Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let mut read: BTreeMap<String, Option<Secret>> = BTreeMap::new();
    for need in secret_needs(redis) {
        if !read.contains_key(&need.name) {
            let secret = secrets
                .get_opt(&need.name)
                .await
                .map_err(|source| Error::ReadSecret {
                    name: need.name.clone(),
                    field: need.name_field,
                    source,
                })?;
            read.insert(need.name.clone(), secret);
        }
        let secret = read.get(&need.name).and_then(Option::as_ref);
        if let Some(problem) = secret_problem(secret, &need) {
            return Ok(Some(problem));
        }
    }
    Ok(None)
}

/// Normal events for the changes a person wants to see in `kubectl describe eoc`.
async fn announce_changes(
    ctx: &Context,
    cr: &ExactlyOnceConsumer,
    before: Option<&Deployment>,
    desired: &Deployment,
) {
    let name = desired.metadata.name.clone().unwrap_or_default();
    let want = desired.spec.replicas.unwrap_or_default();
    match before.map(|d| d.spec.replicas.unwrap_or(1)) {
        None => {
            info!(consumer = %key(cr), deployment = %name, replicas = want, "created Deployment");
            let note = format!("created Deployment {name} with {want} replicas");
            publish(
                ctx,
                cr,
                EventType::Normal,
                "Created",
                "CreateDeployment",
                note,
            )
            .await;
        }
        Some(had) if had != want => {
            info!(consumer = %key(cr), deployment = %name, from = had, to = want, "scaled Deployment");
            let note = format!("scaled Deployment {name} from {had} to {want} replicas");
            publish(
                ctx,
                cr,
                EventType::Normal,
                "Scaled",
                "ScaleDeployment",
                note,
            )
            .await;
        }
        Some(_) => {}
    }
}

async fn write_status(
    ctx: &Context,
    cr: &ExactlyOnceConsumer,
    status: ExactlyOnceConsumerStatus,
) -> Result<(), Error> {
    if !needs_write(cr, &status) {
        return Ok(());
    }
    let name = cr.name_any();
    let api: Api<ExactlyOnceConsumer> =
        Api::namespaced(ctx.client.clone(), &cr.namespace().unwrap_or_default());
    let body = json!({
        "apiVersion": ExactlyOnceConsumer::api_version(&()),
        "kind": ExactlyOnceConsumer::kind(&()),
        "status": status,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|source| Error::WriteStatus { name, source })?;
    Ok(())
}

async fn publish(
    ctx: &Context,
    cr: &ExactlyOnceConsumer,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: action.to_owned(),
        secondary: None,
    };
    // An event that cannot be written must not fail the reconcile it describes.
    if let Err(e) = ctx.recorder.publish(&event, &cr.object_ref(&())).await {
        warn!(consumer = %key(cr), error = %e, reason, "could not publish event");
    }
}

/// Whole seconds: the API server stores condition times at that precision, so a finer `now`
/// would differ from what it reads back.
fn now() -> Timestamp {
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
