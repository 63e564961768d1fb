//! The committed CRD copies are what users install: `crds/` (`kubectl apply`, and the kustomize
//! install in `deploy/`) and the Helm chart's `crds/`. Each must be exactly what the Rust types
//! print, or the API server validates against a schema the operator no longer speaks.

use std::path::Path;

/// Every generated copy of the CRD, relative to the workspace root.
const CRD_COPIES: [&str; 2] = [
    "crds/exactlyonceconsumers.exactlyonce.dev.yaml",
    "deploy/helm/exactly-once/crds/exactlyonceconsumers.exactlyonce.dev.yaml",
];

#[test]
fn committed_crds_match_the_rust_types() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let generated = operator::crd::crd_yaml().expect("the CRD serializes to YAML");
    let stale: Vec<&str> = CRD_COPIES
        .into_iter()
        .filter(|copy| {
            let path = root.join(copy);
            let committed = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            committed != generated
        })
        .collect();
    assert!(
        stale.is_empty(),
        "{} {} stale: the Rust types in operator/src/crd.rs print a different CRD.\n\
         Regenerate every copy, from the workspace root, with:\n\
         \x20   cargo run -p operator --bin crdgen | tee {} >/dev/null",
        stale.join(" and "),
        if stale.len() == 1 { "is" } else { "are" },
        CRD_COPIES.join(" "),
    );
}
