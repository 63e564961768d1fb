//! `exactly-once-operator`: connects to the cluster, serves health and metrics, waits for the
//! leader lease, then runs the ExactlyOnceConsumer controller until SIGTERM or lost leadership.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client, Config};
use operator::crd::ExactlyOnceConsumer;
use operator::deployment::{MANAGED_BY, MANAGED_BY_LABEL};
use operator::http::{self, Health, Role};
use operator::leader::{LeaderElector, Timings};
use operator::metrics::Metrics;
use operator::reconcile::{self, Context};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

/// Runs ExactlyOnceConsumer resources as consumer Deployments.
#[derive(Debug, Parser)]
#[command(name = "exactly-once-operator", version, about)]
struct Args {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,

    /// Address of /healthz, /readyz and /metrics (port 0 picks a free port; the log says which).
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,

    /// Namespace of the leader-election Lease (default: the watched namespace, else the
    /// kubeconfig's or service account's namespace).
    #[arg(long, env = "LEADER_ELECTION_NAMESPACE")]
    leader_election_namespace: Option<String>,

    /// Name of the leader-election Lease; replicas sharing it elect one leader.
    #[arg(long, env = "LEASE_NAME", default_value = "exactly-once-operator")]
    lease_name: String,

    /// This replica's identity in the Lease (default: POD_NAME, else `<hostname>-<pid>`).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,

    /// Reconciles run at once.
    #[arg(long, env = "CONCURRENCY", default_value_t = 4)]
    concurrency: u16,

    #[command(flatten)]
    log: service::telemetry::LogArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    service::telemetry::init_logging(&args.log, "info,kube=warn");

    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let shutdown = async move {
        tokio::select! {
            _ = sigterm.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        }
    };
    tokio::pin!(shutdown);

    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::new(metrics.clone()));
    let listener = TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("binding {}", args.http_addr))?;
    let http_addr = listener
        .local_addr()
        .context("reading the bound HTTP address")?;
    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http_server = tokio::spawn(http::run(listener, health.clone(), async {
        let _ = http_stopped.await;
    }));
    info!(%http_addr, "serving /healthz, /readyz and /metrics");

    let config = Config::infer()
        .await
        .context("loading Kubernetes config (in-cluster or KUBECONFIG)")?;
    let default_namespace = config.default_namespace.clone();
    let cluster_url = config.cluster_url.to_string();
    let client = Client::try_from(config).context("building the Kubernetes client")?;
    let version = client
        .apiserver_version()
        .await
        .with_context(|| format!("reaching the API server at {cluster_url}"))?;
    info!(cluster = %cluster_url, server_version = %version.git_version, namespace = args.namespace.as_deref().unwrap_or("<all>"), "connected");

    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let lease_namespace = args
        .leader_election_namespace
        .clone()
        .or_else(|| args.namespace.clone())
        .unwrap_or(default_namespace);
    let elector = LeaderElector::new(
        Api::namespaced(client.clone(), &lease_namespace),
        &args.lease_name,
        &identity,
        Timings::default(),
    );
    // The role stays `starting` until an election round has read the lease: `standby` means
    // "another replica holds it and is alive", never "not asked yet".
    info!(lease = %args.lease_name, %lease_namespace, %identity, "waiting for the leader lease");

    let outcome = tokio::select! {
        signal = &mut shutdown => {
            info!(signal, "shutting down before becoming leader");
            Ok(())
        }
        acquired_at = elector.acquire(|| health.set_role(Role::Standby)) => {
            health.set_role(Role::Leader);
            info!(lease = %args.lease_name, %identity, "became leader; starting the controller");
            lead(&args, client, metrics, &identity, &elector, acquired_at, &mut shutdown).await
        }
    };

    health.set_role(Role::Stopping);
    let _ = http_stop.send(());
    match http_server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "HTTP server stopped with an error"),
        Err(e) => warn!(error = %e, "HTTP server task failed"),
    }
    info!("stopped");
    outcome
}

/// Runs the controller while this replica leads. Returns Ok on a signal (after handing the
/// lease over), Err when leadership was lost, so the process restarts as a clean follower.
async fn lead(
    args: &Args,
    client: Client,
    metrics: Arc<Metrics>,
    identity: &str,
    elector: &LeaderElector,
    acquired_at: tokio::time::Instant,
    shutdown: &mut (impl std::future::Future<Output = &'static str> + Unpin),
) -> anyhow::Result<()> {
    let (crs, deployments): (Api<ExactlyOnceConsumer>, Api<Deployment>) = match &args.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let reporter = Reporter {
        controller: MANAGED_BY.to_owned(),
        instance: Some(identity.to_owned()),
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        Recorder::new(client, reporter),
        metrics,
    ));
    let (stop_tx, stop_rx) = futures::channel::oneshot::channel::<()>();

    let controller = Controller::new(crs, watcher::Config::default().any_semantic())
        // Only our Deployments: a hand edit to one of them triggers a reconcile that puts it back.
        .owns(
            deployments,
            watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}")),
        )
        .with_config(controller::Config::default().concurrency(args.concurrency))
        .graceful_shutdown_on(async move {
            let _ = stop_rx.await;
        })
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(consumer = %object, "reconciled"),
                Err(controller::Error::ReconcilerFailed(e, object)) => {
                    tracing::debug!(consumer = %object, error = %e, "reconcile failed")
                }
                Err(e) => warn!(error = %e, "controller error"),
            }
        });
    tokio::pin!(controller);

    let lost = tokio::select! {
        () = &mut controller => {
            // The stream only ends on shutdown; anything else is a bug worth a restart.
            bail!("the controller stopped unexpectedly");
        }
        signal = &mut *shutdown => {
            info!(signal, "stopping the controller (in-flight reconciles finish)");
            None
        }
        reason = elector.hold(acquired_at) => {
            error!(%reason, "lost leadership; stopping the controller");
            Some(reason)
        }
    };
    let _ = stop_tx.send(());
    controller.await;
    match lost {
        Some(reason) => bail!("lost leadership: {reason}"),
        None => {
            if let Err(e) = elector.release().await {
                warn!(error = %e, "could not release the lease; a standby takes over when it expires");
            }
            Ok(())
        }
    }
}

fn default_identity() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    // The pid keeps two operators on one machine (tests, local runs) from sharing an identity.
    format!("{host}-{}", std::process::id())
}
