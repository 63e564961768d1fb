//! The "CRD reference" section of `operator/README.md` documents every field of the committed
//! CRD, so a new spec or status field cannot ship without its row, and a removed one cannot
//! leave a stale row behind. Objects this project defines are documented field by field;
//! embedded Kubernetes types are named, and `kubectl explain` covers their insides.

use std::collections::BTreeSet;
use std::path::Path;

use serde_yaml::{Mapping, Value};

const CRD_FILE: &str = "crds/exactlyonceconsumers.exactlyonce.dev.yaml";
const README_FILE: &str = "operator/README.md";
const SECTION_HEADING: &str = "## CRD reference";

/// Objects defined in `src/crd.rs`, whose properties the reference lists one by one.
const PROJECT_OBJECTS: [&str; 8] = [
    "spec",
    "spec.redis",
    "spec.redis.urlSecretRef",
    "spec.redis.credentialsSecretRef",
    "spec.redis.tls",
    "spec.redis.tls.caSecretRef",
    "spec.redis.tls.clientCertSecretRef",
    "status",
];

/// Kubernetes types embedded in the schema, with the type name their row must mention. The walk
/// stops at them; upstream documents their fields.
const EMBEDDED_TYPES: [(&str, &str); 5] = [
    ("spec.resources", "ResourceRequirements"),
    ("spec.tolerations", "Toleration"),
    ("spec.affinity", "Affinity"),
    ("spec.imagePullSecrets", "LocalObjectReference"),
    ("status.conditions", "Condition"),
];

/// What the walk of the schema found.
struct Fields {
    /// Every documented path, e.g. `spec.redis.urlSecretRef.key`.
    paths: BTreeSet<String>,
    /// Objects with their own properties that neither list above classifies.
    unclassified: Vec<String>,
}

fn workspace_file(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn crd_versions() -> Vec<Value> {
    let crd: Value = serde_yaml::from_str(&workspace_file(CRD_FILE))
        .unwrap_or_else(|e| panic!("{CRD_FILE} is not YAML: {e}"));
    crd["spec"]["versions"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{CRD_FILE} has no spec.versions"))
        .clone()
}

/// The section from its heading to the next `## ` heading (its `###` subsections included).
fn reference_section() -> String {
    let readme = workspace_file(README_FILE);
    let mut lines = readme
        .lines()
        .skip_while(|line| line.trim() != SECTION_HEADING);
    let heading = lines.next().unwrap_or_else(|| {
        panic!("{README_FILE} has no `{SECTION_HEADING}` section documenting {CRD_FILE}")
    });
    std::iter::once(heading)
        .chain(lines.take_while(|line| !line.starts_with("## ")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The properties of an object, or of the items of an array of objects.
fn properties(node: &Value) -> Option<&Mapping> {
    node["properties"]
        .as_mapping()
        .or_else(|| node["items"]["properties"].as_mapping())
}

fn walk(prefix: &str, object: &Value, fields: &mut Fields) {
    for (name, node) in properties(object).into_iter().flatten() {
        let name = name.as_str().unwrap_or_else(|| {
            panic!("{CRD_FILE}: a property name under {prefix} is not a string")
        });
        let path = format!("{prefix}.{name}");
        if PROJECT_OBJECTS.contains(&path.as_str()) {
            walk(&path, node, fields);
        } else if properties(node).is_some()
            && !EMBEDDED_TYPES.iter().any(|(embedded, _)| *embedded == path)
        {
            fields.unclassified.push(path.clone());
        }
        fields.paths.insert(path);
    }
}

fn crd_fields() -> Fields {
    let mut fields = Fields {
        paths: BTreeSet::new(),
        unclassified: Vec::new(),
    };
    for version in crd_versions() {
        let schema = &version["schema"]["openAPIV3Schema"]["properties"];
        for root in ["spec", "status"] {
            walk(root, &schema[root], &mut fields);
        }
    }
    assert!(
        !fields.paths.is_empty(),
        "{CRD_FILE}: found no properties under spec or status"
    );
    fields
}

/// The table row documenting `path`: the line whose first cell is it as `code`.
fn row<'a>(section: &'a str, path: &str) -> Option<&'a str> {
    let first_cell = format!("| `{path}` |");
    section.lines().find(|line| line.starts_with(&first_cell))
}

#[test]
fn every_crd_field_has_a_row_in_the_readme() {
    let fields = crd_fields();
    assert!(
        fields.unclassified.is_empty(),
        "{CRD_FILE}: objects with fields of their own that the reference does not classify: {}. \
         In operator/tests/crd_reference.rs, add each to PROJECT_OBJECTS (an object from \
         operator/src/crd.rs, documented field by field) or to EMBEDDED_TYPES (a Kubernetes \
         type, documented by name)",
        fields.unclassified.join(", "),
    );
    let section = reference_section();
    let undocumented: Vec<&String> = fields
        .paths
        .iter()
        .filter(|path| row(&section, path).is_none())
        .collect();
    assert!(
        undocumented.is_empty(),
        "{README_FILE}, section `{SECTION_HEADING}`, has no row for {}. Add a table row starting \
         with the field as `code`, with its type, default, validation and what it does (from its \
         doc comment in operator/src/crd.rs)",
        undocumented
            .iter()
            .map(|path| format!("`{path}`"))
            .collect::<Vec<_>>()
            .join(", "),
    );
}

#[test]
fn every_readme_row_is_a_crd_field() {
    let fields = crd_fields();
    let section = reference_section();
    let stale: Vec<&str> = section
        .lines()
        .filter_map(|line| line.strip_prefix("| `")?.split_once("` |"))
        .map(|(path, _)| path)
        .filter(|path| path.starts_with("spec.") || path.starts_with("status."))
        .filter(|path| !fields.paths.contains(*path))
        .collect();
    assert!(
        stale.is_empty(),
        "{README_FILE}, section `{SECTION_HEADING}`, has rows for {}, which {CRD_FILE} does not \
         have: remove them",
        stale
            .iter()
            .map(|path| format!("`{path}`"))
            .collect::<Vec<_>>()
            .join(", "),
    );
}

#[test]
fn embedded_kubernetes_types_are_named_and_the_lists_are_current() {
    let fields = crd_fields();
    let section = reference_section();
    for path in PROJECT_OBJECTS.iter().filter(|path| path.contains('.')) {
        assert!(
            fields.paths.contains(*path),
            "PROJECT_OBJECTS in operator/tests/crd_reference.rs lists `{path}`, which {CRD_FILE} \
             does not have"
        );
    }
    for (path, type_name) in EMBEDDED_TYPES {
        assert!(
            fields.paths.contains(path),
            "EMBEDDED_TYPES in operator/tests/crd_reference.rs lists `{path}`, which {CRD_FILE} \
             does not have"
        );
        let line = row(&section, path).unwrap_or_default();
        assert!(
            line.contains(type_name),
            "{README_FILE}: the row of `{path}` must name its Kubernetes type `{type_name}`"
        );
    }
}

#[test]
fn every_printer_column_is_in_the_readme() {
    let section = reference_section();
    for version in crd_versions() {
        let columns = version["additionalPrinterColumns"]
            .as_sequence()
            .cloned()
            .unwrap_or_default();
        for column in columns {
            let json_path = column["jsonPath"].as_str().unwrap_or_else(|| {
                panic!("{CRD_FILE}: a printer column has no jsonPath: {column:?}")
            });
            assert!(
                section.contains(&format!("`{json_path}`")),
                "{README_FILE}, section `{SECTION_HEADING}`, does not list the printer column \
                 `{json_path}` (`kubectl get eoc`)"
            );
        }
    }
}
