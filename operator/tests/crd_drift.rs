//! The committed CRD in `crds/` is what users `kubectl apply`; it must be exactly what the Rust
//! types print, or the API server validates against a schema the operator no longer speaks.

use std::path::Path;

const CRD_FILE: &str = "exactlyonceconsumers.exactlyonce.dev.yaml";

#[test]
fn committed_crd_matches_the_rust_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crds")
        .join(CRD_FILE);
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let generated = operator::crd::crd_yaml().expect("the CRD serializes to YAML");
    assert!(
        committed == generated,
        "crds/{CRD_FILE} is stale: the Rust types in operator/src/crd.rs print a different CRD.\n\
         Regenerate it with:\n\
         \x20   cargo run -p operator --bin crdgen > crds/{CRD_FILE}"
    );
}
