{{/*
Names and labels shared by every template. Object names are fixed (exactly-once-operator,
order-service, redis, inventory) because other parts rely on them: `redis://redis:6379` names the
Redis Service, and the kustomize install uses the same names.
*/}}

{{/* chart-version, for the helm.sh/chart label. */}}
{{- define "exactly-once.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end }}

{{/*
The labels a workload selects its pods on. Call with (dict "root" $ "name" NAME).
*/}}
{{- define "exactly-once.selectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end }}

{{/*
Every object's labels: the selector labels plus the descriptive ones.
Call with (dict "root" $ "name" NAME "component" COMPONENT).
*/}}
{{- define "exactly-once.labels" -}}
{{ include "exactly-once.selectorLabels" . }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: exactly-once
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ include "exactly-once.chart" .root }}
{{- end }}

{{/*
An image reference from .Values.images.<key>; an empty tag means the chart's appVersion.
Call with (dict "root" $ "key" "operator").
*/}}
{{- define "exactly-once.image" -}}
{{- $image := index .root.Values.images .key -}}
{{- printf "%s:%s" $image.repository (toString (default .root.Chart.AppVersion $image.tag)) -}}
{{- end }}

{{/* Where the sample fleet lives: the watched namespace, else the release's. */}}
{{- define "exactly-once.sampleNamespace" -}}
{{- default .Release.Namespace .Values.watchNamespace -}}
{{- end }}

{{/*
Refuses a Redis configuration that leaves the order service or the sample fleet without one.
*/}}
{{- define "exactly-once.validateRedis" -}}
{{- if and .Values.redis.url .Values.redis.existingSecret -}}
{{- fail "redis: set one of url or existingSecret, not both" -}}
{{- end -}}
{{- if not (or .Values.redis.enabled .Values.redis.url .Values.redis.existingSecret) -}}
{{- fail "redis.enabled is false: set redis.url or redis.existingSecret to the Redis the order service and its consumers share" -}}
{{- end -}}
{{- end }}

{{/*
Refuses Redis credentials or TLS settings that could not work, naming the value: TLS settings
while TLS is off (they would be ignored), TLS to a redis:// URL, and either against the bundled
Redis, which has no TLS, users or password. Never prints the URL: it may hold a password.
*/}}
{{- define "exactly-once.validateRedisAccess" -}}
{{- $redis := .Values.redis -}}
{{- $credentials := $redis.credentialsSecret -}}
{{- $tls := $redis.tls -}}
{{- $bundled := not (or $redis.url $redis.existingSecret) -}}
{{- if and $credentials.usernameKey (not $credentials.name) -}}
{{- fail "redis.credentialsSecret.usernameKey is set but redis.credentialsSecret.name is empty: name the Secret that holds the user and password" -}}
{{- end -}}
{{- if and $credentials.name $bundled -}}
{{- fail "redis.credentialsSecret.name is set but the Redis is the bundled one, which has no users or password: set redis.url or redis.existingSecret to your own Redis" -}}
{{- end -}}
{{- if not $tls.enabled -}}
{{- $settings := dict "redis.tls.caSecret.name" $tls.caSecret.name "redis.tls.clientCertSecret.name" $tls.clientCertSecret.name "redis.tls.insecureSkipVerifyForTestsOnly" $tls.insecureSkipVerifyForTestsOnly -}}
{{- range $field, $value := $settings -}}
{{- if $value -}}
{{- fail (printf "%s is set but redis.tls.enabled is false: set redis.tls.enabled=true, with a rediss:// Redis URL" $field) -}}
{{- end -}}
{{- end -}}
{{- else if $bundled -}}
{{- fail "redis.tls.enabled is true but the Redis is the bundled one, which does not speak TLS: set redis.url (rediss://...) or redis.existingSecret to your own Redis" -}}
{{- else if and $redis.url (not (hasPrefix "rediss://" $redis.url)) -}}
{{- fail "redis.tls.enabled is true but redis.url does not start with rediss://: TLS needs a rediss:// URL" -}}
{{- else if and $tls.insecureSkipVerifyForTestsOnly (or $tls.caSecret.name $tls.clientCertSecret.name) -}}
{{- fail "redis.tls.insecureSkipVerifyForTestsOnly excludes redis.tls.caSecret.name and redis.tls.clientCertSecret.name: skipping verification takes no CA and no client certificate" -}}
{{- end -}}
{{- if and $redis.url (contains "#" $redis.url) -}}
{{- fail "redis.url must not carry a #fragment: #insecure would skip TLS verification (redis.tls.insecureSkipVerifyForTestsOnly is the only way, for tests)" -}}
{{- end -}}
{{- end }}

{{/*
Where the TLS Secrets are mounted, and the file names inside: the consumer's contract
(protocol/src/env.rs TLS_CA_MOUNT_DIR, TLS_CLIENT_MOUNT_DIR and the file names), which the
operator follows for every fleet; tests/tests/deploy_manifests.rs checks the two agree.
*/}}
{{- define "exactly-once.tlsCaFile" -}}/etc/exactly-once/redis-tls/ca/ca.crt{{- end }}
{{- define "exactly-once.tlsClientDir" -}}/etc/exactly-once/redis-tls/client{{- end }}

{{/*
The order service's Redis credentials and TLS environment (the sample fleet gets the same
through its spec.redis); empty when neither is set.
*/}}
{{- define "exactly-once.redisAccessEnv" -}}
{{- $credentials := .Values.redis.credentialsSecret -}}
{{- $tls := .Values.redis.tls -}}
{{- if $credentials.name }}
{{- if $credentials.usernameKey }}
- name: REDIS_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $credentials.name | quote }}
      key: {{ $credentials.usernameKey | quote }}
{{- end }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $credentials.name | quote }}
      key: {{ $credentials.passwordKey | quote }}
{{- end }}
{{- if $tls.enabled }}
{{- if $tls.caSecret.name }}
- name: REDIS_TLS_CA_FILE
  value: {{ include "exactly-once.tlsCaFile" . }}
{{- end }}
{{- if $tls.clientCertSecret.name }}
- name: REDIS_TLS_CERT_FILE
  value: {{ include "exactly-once.tlsClientDir" . }}/tls.crt
- name: REDIS_TLS_KEY_FILE
  value: {{ include "exactly-once.tlsClientDir" . }}/tls.key
{{- end }}
{{- if $tls.insecureSkipVerifyForTestsOnly }}
- name: REDIS_TLS_INSECURE_SKIP_VERIFY_FOR_TESTS_ONLY
  value: "true"
{{- end }}
{{- end }}
{{- end }}

{{/*
The order service's TLS Secret volumes and their read-only mounts; empty without TLS files.
Mode 0440 (288): readable by the pod's fsGroup, which the kubelet gives the files, and by no
one else.
*/}}
{{- define "exactly-once.redisTlsVolumes" -}}
{{- $tls := .Values.redis.tls -}}
{{- if and $tls.enabled $tls.caSecret.name }}
- name: redis-tls-ca
  secret:
    secretName: {{ $tls.caSecret.name | quote }}
    defaultMode: 288
    items:
      - key: {{ $tls.caSecret.key | quote }}
        path: ca.crt
{{- end }}
{{- if and $tls.enabled $tls.clientCertSecret.name }}
- name: redis-tls-client
  secret:
    secretName: {{ $tls.clientCertSecret.name | quote }}
    defaultMode: 288
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
{{- end }}
{{- end }}

{{- define "exactly-once.redisTlsVolumeMounts" -}}
{{- $tls := .Values.redis.tls -}}
{{- if and $tls.enabled $tls.caSecret.name }}
- name: redis-tls-ca
  mountPath: {{ include "exactly-once.tlsCaFile" . | dir }}
  readOnly: true
{{- end }}
{{- if and $tls.enabled $tls.clientCertSecret.name }}
- name: redis-tls-client
  mountPath: {{ include "exactly-once.tlsClientDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{/*
The sample fleet's spec.redis credentials and TLS: the same Secrets as the order service's, in
the CRD's terms (the operator mounts them at the same paths).
*/}}
{{- define "exactly-once.sampleRedisAccess" -}}
{{- $credentials := .Values.redis.credentialsSecret -}}
{{- $tls := .Values.redis.tls -}}
{{- $access := dict -}}
{{- if $credentials.name -}}
{{- $ref := dict "name" $credentials.name "passwordKey" $credentials.passwordKey -}}
{{- with $credentials.usernameKey }}{{ $_ := set $ref "usernameKey" . }}{{ end -}}
{{- $_ := set $access "credentialsSecretRef" $ref -}}
{{- end -}}
{{- if $tls.enabled -}}
{{- /* `tls: {}` is TLS with the system roots. */ -}}
{{- $spec := dict -}}
{{- with $tls.caSecret.name }}{{ $_ := set $spec "caSecretRef" (dict "name" . "key" $tls.caSecret.key) }}{{ end -}}
{{- with $tls.clientCertSecret.name }}{{ $_ := set $spec "clientCertSecretRef" (dict "name" .) }}{{ end -}}
{{- if $tls.insecureSkipVerifyForTestsOnly }}{{ $_ := set $spec "insecureSkipVerifyForTestsOnly" true }}{{ end -}}
{{- $_ := set $access "tls" $spec -}}
{{- end -}}
{{- with $access }}{{ toYaml . }}{{ end -}}
{{- end }}

{{/*
The Redis URL the order service and the sample fleet share when no Secret holds it: redis.url,
else the bundled Redis (by its short name when the sample fleet shares its namespace).
*/}}
{{- define "exactly-once.redisUrl" -}}
{{- if .Values.redis.url -}}
{{- .Values.redis.url -}}
{{- else if eq (include "exactly-once.sampleNamespace" .) .Release.Namespace -}}
redis://redis:6379
{{- else -}}
{{- printf "redis://redis.%s.svc:6379" .Release.Namespace -}}
{{- end -}}
{{- end }}

{{/* The pod and container security settings every pod of the release shares. */}}
{{- define "exactly-once.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "exactly-once.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end }}
