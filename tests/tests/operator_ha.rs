//! The operator as a process that comes and goes: a restart must not rewrite what is
//! already right, a standby must stay idle until the leader dies and then take over, and a
//! settled fleet must not keep writing its status (the reconcile storm).
//!
//! Run: `cargo build --workspace --bins && cargo test -p e2e --test operator_ha`

use std::time::Duration;

use anyhow::ensure;
use e2e::control_plane::eventually;
use e2e::control_plane::fleet::{FleetEnv as Env, TIMEOUT};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::DeleteParams;

#[tokio::test]
async fn operator_restart_leaves_the_deployment_untouched() {
    let mut env = Env::start("eoc-restart", &[]).await;
    let name = "steady";
    env.run_fleet(name, 2).await;
    let dname = env.deployment_name(name).await;
    let deployments = env.ns.api::<Deployment>();
    let before = deployments
        .get(&dname)
        .await
        .unwrap()
        .metadata
        .resource_version;

    let mut old = env.operators.remove(0);
    let status = old.process.terminate(Duration::from_secs(60));
    assert!(
        status.success(),
        "the operator exited with {status} on SIGTERM"
    );
    env.add_operator().await;
    // The new operator reconciles what it finds at start (`steady` first); a CR created
    // afterwards and reconciled proves it got past `steady`.
    env.run_fleet("witness", 1).await;
    let reconciles = env.operators[0].reconciles().await;
    assert!(
        reconciles >= 2,
        "the new operator reconciled {reconciles} times"
    );
    let after = deployments
        .get(&dname)
        .await
        .unwrap()
        .metadata
        .resource_version;
    assert_eq!(
        before, after,
        "the restarted operator rewrote an unchanged Deployment"
    );
}

#[tokio::test]
async fn only_the_leader_reconciles_and_a_standby_takes_over() {
    let mut env = Env::start("eoc-leader", &[]).await;
    let name = "led";
    env.run_fleet(name, 1).await;
    let first = env.operators[0].identity.clone();
    env.wait_leader(&first).await;
    env.add_operator().await;
    // The standby has read the lease and decided to wait before anything changes; otherwise
    // the scale below could finish before the standby even took part in the election.
    let standby = &env.operators[1];
    eventually(
        &format!("{} to report standby on /readyz", standby.identity),
        TIMEOUT,
        || standby.standby(),
    )
    .await;
    // While the leader lives, the standby must not reconcile: a change is applied (by the
    // leader) and the standby's reconcile counter stays at zero.
    env.scale(name, 2).await;
    env.wait_available(name, 2).await;
    assert_eq!(
        env.operators[1].reconciles().await,
        0,
        "the standby reconciled while the leader was alive:\n{}",
        env.operator_log_tails().await
    );
    assert!(
        env.operators[1].ready().await.is_err(),
        "the standby says it is ready (leader)"
    );

    // SIGKILL: no graceful lease release, the standby must wait the lease out and take over.
    env.operators[0].process.kill();
    let second = env.operators[1].identity.clone();
    env.wait_leader(&second).await;
    env.scale(name, 3).await;
    env.wait_available(name, 3).await;
    assert!(env.operators[1].reconciles().await > 0);
}

#[tokio::test]
async fn status_settles_and_a_deleted_deployment_comes_back() {
    // The classic reconcile storm: a status write that differs every time re-triggers
    // reconcile forever. Once the fleet is Available the CR must stop changing.
    let env = Env::start("eoc-settle", &[]).await;
    let name = "calm";
    env.run_fleet(name, 1).await;
    let api = env.eoc_api();
    eventually("the CR to stay unchanged for 5 s", TIMEOUT, || async {
        let before = api.get(name).await?.metadata.resource_version;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let after = api.get(name).await?.metadata.resource_version;
        ensure!(before == after, "resourceVersion {before:?} -> {after:?}");
        Ok(())
    })
    .await;

    let deployments = env.ns.api::<Deployment>();
    let dname = env.deployment_name(name).await;
    let old_uid = deployments.get(&dname).await.unwrap().metadata.uid;
    deployments
        .delete(&dname, &DeleteParams::default())
        .await
        .expect("delete the deployment by hand");
    eventually(
        "the operator to recreate the deployment",
        TIMEOUT,
        || async {
            let uid = deployments.get(&dname).await?.metadata.uid;
            ensure!(uid != old_uid, "still the old deployment");
            Ok(())
        },
    )
    .await;
    env.wait_available(name, 1).await;
}
