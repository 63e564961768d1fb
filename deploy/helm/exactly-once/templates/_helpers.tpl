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
