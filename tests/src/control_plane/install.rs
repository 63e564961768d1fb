//! Installing the product as a user does, from `deploy/`: `kubectl apply -k` of the kustomize
//! entry points or `helm install` of the chart, then waiting for what the install promises (the
//! operator elected, Redis and the order service ready, the sample fleet Available). The
//! operator runs in-cluster under the RBAC `deploy/` grants, never as the test's admin.

use std::time::Duration;

use anyhow::{Context, anyhow, ensure};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use protocol::{DeliveryMode, Keys};

use super::fleet::{consumer_resource, wait_eoc_available};
use super::port_forward::PortForward;
use super::{ControlPlane, KubectlOutput, eventually};

/// Pods start in seconds here; images are local, but Redis and the order service start in
/// order and a rollout replaces pods one by one.
pub const TIMEOUT: Duration = Duration::from_secs(180);
const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");
/// The namespace the kustomize entry points install into.
const KUSTOMIZE_NAMESPACE: &str = "exactly-once";
/// The Helm release (and its namespace) the tests install.
const HELM_RELEASE: &str = "eo";
const HELM_NAMESPACE: &str = "eo-helm";
/// The sample fleet `deploy/` ships.
pub const SAMPLE: &str = "inventory";
const LEASE_NAME: &str = "exactly-once-operator";
const CRD_NAME: &str = "exactlyonceconsumers.exactlyonce.dev";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installer {
    Kustomize,
    Helm,
}

/// What the operator watches: every namespace (ClusterRole) or only its own (Role).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Cluster,
    Namespace,
}

pub struct Installation<'a> {
    pub cluster: &'a ControlPlane,
    pub namespace: String,
    client: kube::Client,
    installer: Installer,
    scope: Scope,
    mode: DeliveryMode,
}

impl<'a> Installation<'a> {
    /// Installs and waits until the sample fleet is Available with its 3 replicas.
    pub async fn install(
        cluster: &'a ControlPlane,
        installer: Installer,
        scope: Scope,
        mode: DeliveryMode,
    ) -> Self {
        let namespace = match installer {
            Installer::Kustomize => KUSTOMIZE_NAMESPACE,
            Installer::Helm => HELM_NAMESPACE,
        };
        remove_leftovers(cluster).await;
        let install = Installation {
            cluster,
            namespace: namespace.to_owned(),
            client: cluster.client().await,
            installer,
            scope,
            mode,
        };
        match installer {
            Installer::Kustomize => install.kustomize_apply().await,
            Installer::Helm => install.helm_install().await,
        }
        install.wait_installed().await;
        install
    }

    /// The kustomize entry point for this scope and mode.
    fn kustomization(&self) -> String {
        match (self.scope, self.mode) {
            (Scope::Cluster, DeliveryMode::Pubsub) => DEPLOY.to_owned(),
            (Scope::Cluster, DeliveryMode::Streams) => format!("{DEPLOY}/variants/streams"),
            (Scope::Namespace, DeliveryMode::Pubsub) => format!("{DEPLOY}/variants/namespaced"),
            (Scope::Namespace, DeliveryMode::Streams) => {
                panic!("no kustomize variant is both namespaced and streams")
            }
        }
    }

    /// As deploy/README.md tells users: the CRD first (a CR cannot be applied before its
    /// CRD is served), then the install.
    async fn kustomize_apply(&self) {
        let crds = format!("{DEPLOY}/../crds");
        self.cluster
            .kubectl(&["apply", "--server-side", "-k", &crds])
            .await
            .expect_success("apply -k crds/");
        self.cluster
            .kubectl(&[
                "wait",
                "--for=condition=Established",
                &format!("crd/{CRD_NAME}"),
                "--timeout=60s",
            ])
            .await
            .expect_success("wait for the CRD");
        let dir = self.kustomization();
        self.cluster
            .kubectl(&["apply", "--server-side", "-k", &dir])
            .await
            .expect_success(&format!("apply -k {dir}"));
    }

    async fn helm_install(&self) {
        let chart = format!("{DEPLOY}/helm/exactly-once");
        let mut args = vec![
            "install".to_owned(),
            HELM_RELEASE.to_owned(),
            chart,
            "--namespace".to_owned(),
            self.namespace.clone(),
            "--create-namespace".to_owned(),
            "--set".to_owned(),
            format!("deliveryMode={}", self.mode.as_str()),
        ];
        if self.scope == Scope::Namespace {
            args.extend([
                "--set".to_owned(),
                format!("watchNamespace={}", self.namespace),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.cluster
            .helm(&args)
            .await
            .expect_success("helm install");
    }

    /// The operator holds its lease, Redis and the order service are ready, and the sample
    /// fleet is Available with 3 ready consumers.
    async fn wait_installed(&self) {
        let leases: Api<Lease> = self.api();
        eventually("the operator's leader lease", TIMEOUT, || async {
            let lease = leases.get(LEASE_NAME).await?;
            lease
                .spec
                .and_then(|s| s.holder_identity)
                .filter(|h| !h.is_empty())
                .context("no holder yet")
        })
        .await;
        let sets: Api<StatefulSet> = self.api();
        eventually("statefulset/redis ready", TIMEOUT, || async {
            let set = sets.get("redis").await?;
            let ready = set.status.and_then(|s| s.ready_replicas).unwrap_or(0);
            ensure!(ready == 1, "{ready} ready");
            Ok(())
        })
        .await;
        self.wait_deployment_ready("order-service").await;
        self.wait_available(SAMPLE, 3).await;
    }

    async fn wait_deployment_ready(&self, name: &str) {
        let deployments: Api<Deployment> = self.api();
        eventually(&format!("deployment/{name} ready"), TIMEOUT, || async {
            let d = deployments.get(name).await?;
            let want = d.spec.replicas.unwrap_or(1);
            let status = d.status.unwrap_or_default();
            ensure!(
                status.ready_replicas.unwrap_or(0) == want
                    && status.updated_replicas.unwrap_or(0) == want
                    && status.replicas.unwrap_or(0) == want,
                "{status:?}"
            );
            Ok(())
        })
        .await;
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// `kubectl -n <namespace> ARGS...`.
    pub async fn kubectl(&self, args: &[&str]) -> KubectlOutput {
        let mut all = vec!["-n", self.namespace.as_str()];
        all.extend_from_slice(args);
        self.cluster.kubectl(&all).await
    }

    /// `kubectl port-forward` to `target` (e.g. `svc/order-service`) in this namespace.
    pub async fn port_forward(&self, target: &str, port: u16) -> PortForward {
        PortForward::open(self.cluster, &self.namespace, target, port).await
    }

    /// The key layout of the sample fleet's channel (the one `deploy/` configures).
    pub fn keys(&self) -> Keys {
        Keys::new(
            &protocol::env::DEFAULT_CHANNEL
                .parse()
                .expect("the default channel is valid"),
        )
    }

    /// Status says the fleet is complete and current (see [`wait_eoc_available`]).
    pub async fn wait_available(&self, name: &str, replicas: i32) {
        let api = Api::namespaced_with(self.client.clone(), &self.namespace, &consumer_resource());
        wait_eoc_available(&api, name, replicas, TIMEOUT).await;
    }

    /// Every pod in `old` is gone and the fleet is Available again: the rollout replaced them.
    pub async fn wait_rolled_out(&self, name: &str, old: &[(String, String)]) {
        let pods: Api<Pod> = self.api();
        let selector = format!("app.kubernetes.io/instance={name}");
        eventually(
            &format!("eoc/{name}'s old pods replaced"),
            TIMEOUT,
            || async {
                let now = pods.list(&ListParams::default().labels(&selector)).await?;
                let left: Vec<String> = now
                    .items
                    .into_iter()
                    .filter_map(|p| p.metadata.name)
                    .filter(|n| old.iter().any(|(o, _)| o == n))
                    .collect();
                ensure!(left.is_empty(), "still there: {left:?}");
                Ok(())
            },
        )
        .await;
        self.wait_available(name, self.replicas(name).await).await;
    }

    async fn replicas(&self, name: &str) -> i32 {
        let out = self
            .kubectl(&[
                "get",
                &format!("eoc/{name}"),
                "-o",
                "jsonpath={.spec.replicas}",
            ])
            .await
            .expect_success("read spec.replicas");
        out.trim().parse().expect("spec.replicas is a number")
    }

    /// Running consumer pods of fleet `name`: (pod name, container id).
    pub async fn consumer_pods(&self, name: &str) -> Vec<(String, String)> {
        let pods: Api<Pod> = self.api();
        let list = pods
            .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={name}")))
            .await
            .expect("listing consumer pods");
        list.items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| {
                let id = p
                    .status?
                    .container_statuses?
                    .first()?
                    .container_id
                    .clone()?;
                Some((p.metadata.name?, id))
            })
            .collect()
    }

    pub async fn pod_uid(&self, name: &str) -> String {
        let pod = self.api::<Pod>().get(name).await.expect("the pod exists");
        pod.metadata.uid.expect("a stored pod has a uid")
    }

    /// A new pod named `name` (a StatefulSet's) replaced the one with `old_uid`, and is Ready.
    pub async fn wait_pod_replaced(&self, name: &str, old_uid: &str) {
        let pods: Api<Pod> = self.api();
        eventually(
            &format!("pod {name} replaced and Ready"),
            TIMEOUT,
            || async {
                let pod = pods.get(name).await?;
                ensure!(
                    pod.metadata.uid.as_deref() != Some(old_uid),
                    "still the old pod"
                );
                ensure!(pod_ready(&pod), "not Ready yet");
                Ok(())
            },
        )
        .await;
    }

    /// How many times kubelet restarted the pod's container.
    pub async fn restarts(&self, name: &str) -> i32 {
        let pod = self.api::<Pod>().get(name).await.expect("the pod exists");
        pod.status
            .and_then(|s| s.container_statuses)
            .and_then(|c| c.first().map(|c| c.restart_count))
            .unwrap_or(0)
    }

    /// The pod's container was restarted by kubelet after dying (more restarts than `before`),
    /// and is Ready again.
    pub async fn wait_restarted(&self, name: &str, before: i32) {
        let pods: Api<Pod> = self.api();
        eventually(
            &format!("pod {name} restarted and Ready"),
            TIMEOUT,
            || async {
                let pod = pods.get(name).await?;
                let restarts = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .and_then(|c| c.first())
                    .map(|c| c.restart_count)
                    .ok_or_else(|| anyhow!("no container status"))?;
                ensure!(restarts > before, "restarts {restarts}");
                ensure!(pod_ready(&pod), "not Ready yet");
                Ok(())
            },
        )
        .await;
    }

    /// What a failing assertion shows: the namespace's pods and events, and the node's logs.
    pub async fn diagnostics(&self) -> String {
        let pods = self.kubectl(&["get", "pods", "-o", "wide"]).await;
        let events = self
            .kubectl(&["get", "events", "--sort-by=.lastTimestamp"])
            .await;
        let eoc = self.kubectl(&["get", "eoc", "-o", "yaml"]).await;
        format!(
            "pods:\n{}\nevents:\n{}\neoc:\n{}\n{}",
            pods.stdout,
            events.stdout,
            eoc.stdout,
            self.cluster.logs(20)
        )
    }

    /// Removes what the install created, and waits until its namespace (and, for kustomize,
    /// the CRD) is gone, so the next install starts from nothing. `helm uninstall` leaves the
    /// CRD, as Helm does with every chart's `crds/`.
    pub async fn uninstall(self) {
        match self.installer {
            Installer::Kustomize => {
                self.cluster
                    .kubectl(&[
                        "delete",
                        "-k",
                        &self.kustomization(),
                        "--ignore-not-found",
                        "--wait=false",
                    ])
                    .await
                    .expect_success("kubectl delete -k");
                self.cluster
                    .kubectl(&[
                        "wait",
                        "--for=delete",
                        &format!("crd/{CRD_NAME}"),
                        "--timeout=180s",
                    ])
                    .await;
            }
            Installer::Helm => {
                self.cluster
                    .helm(&[
                        "uninstall",
                        HELM_RELEASE,
                        "--namespace",
                        &self.namespace,
                        "--wait",
                    ])
                    .await
                    .expect_success("helm uninstall");
                self.cluster
                    .kubectl(&[
                        "delete",
                        "namespace",
                        &self.namespace,
                        "--ignore-not-found",
                        "--wait=false",
                    ])
                    .await;
            }
        }
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        eventually(
            &format!("namespace {} gone", self.namespace),
            TIMEOUT,
            || async {
                match namespaces.get_opt(&self.namespace).await? {
                    None => Ok(()),
                    Some(_) => Err(anyhow!("still terminating")),
                }
            },
        )
        .await;
    }
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Removes what a failed test left (an install is removed only when its test passes), so the
/// next test starts from nothing instead of from another test's objects and orders.
async fn remove_leftovers(cluster: &ControlPlane) {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(cluster.client().await);
    let mut left = Vec::new();
    for ns in [KUSTOMIZE_NAMESPACE, HELM_NAMESPACE] {
        if namespaces.get_opt(ns).await.ok().flatten().is_some() {
            left.push(ns);
        }
    }
    if left.is_empty() {
        return;
    }
    eprintln!("removing what an earlier test left in {left:?}");
    let _ = cluster
        .helm(&[
            "uninstall",
            HELM_RELEASE,
            "--namespace",
            HELM_NAMESPACE,
            "--ignore-not-found",
            "--wait",
        ])
        .await;
    for dir in [DEPLOY.to_owned(), format!("{DEPLOY}/variants/namespaced")] {
        let _ = cluster
            .kubectl(&["delete", "-k", &dir, "--ignore-not-found", "--wait=false"])
            .await;
    }
    for ns in &left {
        let _ = cluster
            .kubectl(&[
                "delete",
                "namespace",
                ns,
                "--ignore-not-found",
                "--wait=false",
            ])
            .await;
    }
    for ns in left {
        eventually(&format!("namespace {ns} gone"), TIMEOUT, || async {
            match namespaces.get_opt(ns).await? {
                None => Ok(()),
                Some(_) => Err(anyhow!("still terminating")),
            }
        })
        .await;
    }
}
