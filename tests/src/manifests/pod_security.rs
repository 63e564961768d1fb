//! The `restricted` Pod Security Standard, read off a pod spec: what it would refuse, and the
//! mounted files a non-root user could not read.

use serde_json::Value;

use super::{array, containers, text};

/// The only volume types the `restricted` Pod Security Standard admits.
pub const RESTRICTED_VOLUMES: [&str; 8] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// What the `restricted` Pod Security Standard would refuse in this pod, plus the settings
/// README promises (a uid, RuntimeDefault, a read-only root filesystem) it only allows.
pub fn restricted_violations(pod: &Value) -> Vec<String> {
    let mut found = Vec::new();
    for key in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod[key] == true {
            found.push(format!("{key}: true"));
        }
    }
    for volume in array(&pod["volumes"]) {
        let kinds = volume.as_object().into_iter().flat_map(|v| v.keys());
        for kind in kinds.filter(|k| *k != "name") {
            if !RESTRICTED_VOLUMES.contains(&kind.as_str()) {
                found.push(format!("volume {} is {kind}", text(&volume["name"])));
            }
        }
    }
    for (container, _) in containers(pod) {
        let name = text(&container["name"]);
        let own = &container["securityContext"];
        // A container's setting overrides the pod's.
        let effective = |key: &str| match &own[key] {
            Value::Null => &pod["securityContext"][key],
            set => set,
        };
        let mut check = |ok: bool, rule: &str| {
            if !ok {
                found.push(format!("container {name}: {rule}"));
            }
        };
        check(effective("runAsNonRoot") == true, "runAsNonRoot: true");
        check(
            effective("runAsUser").as_u64().is_some_and(|uid| uid != 0),
            "a non-zero runAsUser",
        );
        check(
            effective("seccompProfile")["type"] == "RuntimeDefault",
            "seccompProfile RuntimeDefault",
        );
        check(
            own["allowPrivilegeEscalation"] == false,
            "allowPrivilegeEscalation: false",
        );
        check(
            own["readOnlyRootFilesystem"] == true,
            "readOnlyRootFilesystem: true",
        );
        check(own["privileged"] != true, "not privileged");
        check(
            array(&own["capabilities"]["drop"]).any(|c| c == "ALL"),
            "capabilities drop ALL",
        );
        check(
            array(&own["capabilities"]["add"]).all(|c| c == "NET_BIND_SERVICE"),
            "adds no capability but NET_BIND_SERVICE",
        );
        check(
            array(&container["ports"]).all(|p| p["hostPort"].as_u64().unwrap_or(0) == 0),
            "no hostPort",
        );
    }
    found
}

/// Secret and ConfigMap files in `pod` that its user could not read. The kubelet writes them as
/// root: a non-root uid reads them through the "other" bits, or through the group bits when an
/// fsGroup gives the files the pod's group.
pub fn unreadable_files(pod: &Value) -> Vec<String> {
    let fs_group = pod["securityContext"]["fsGroup"].is_u64();
    let mut found = Vec::new();
    for volume in array(&pod["volumes"]) {
        for kind in ["secret", "configMap"] {
            let source = &volume[kind];
            if source.is_null() {
                continue;
            }
            // The API's default mode is 0644.
            let default = source["defaultMode"].as_u64().unwrap_or(0o644);
            let mut modes: Vec<u64> = array(&source["items"])
                .map(|item| item["mode"].as_u64().unwrap_or(default))
                .collect();
            if modes.is_empty() {
                modes.push(default);
            }
            for mode in modes {
                if mode & 0o004 == 0 && !(mode & 0o040 != 0 && fs_group) {
                    found.push(format!(
                        "volume {}: mode {mode:#o} without {}",
                        text(&volume["name"]),
                        if fs_group { "group read" } else { "an fsGroup" }
                    ));
                }
            }
        }
    }
    found
}
