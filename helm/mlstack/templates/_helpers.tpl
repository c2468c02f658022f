{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "mlstack.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: <release>-<chart> unless the release name already has it. */}}
{{- define "mlstack.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Chart name and version for the helm.sh/chart label. */}}
{{- define "mlstack.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Common labels. */}}
{{- define "mlstack.labels" -}}
helm.sh/chart: {{ include "mlstack.chart" . }}
{{ include "mlstack.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mlstack
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of the release. */}}
{{- define "mlstack.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mlstack.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component: pass (dict "ctx" $ "component" "mlflow"). */}}
{{- define "mlstack.componentLabels" -}}
{{ include "mlstack.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Selector labels of one component: pass (dict "ctx" $ "component" "mlflow"). */}}
{{- define "mlstack.componentSelector" -}}
{{ include "mlstack.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The mlstack image: by digest when one is given, else by tag (default: appVersion). */}}
{{- define "mlstack.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Name of a component's ServiceAccount: pass (dict "ctx" $ "component" "mlflow"). */}}
{{- define "mlstack.serviceAccountName" -}}
{{- printf "%s-%s" (include "mlstack.fullname" .ctx) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The SA a monitoring CronJob (drift check, materialization) runs as: the shared
`serviceAccounts.monitoring` when set, else its component's. Pass (dict "ctx" $ "component" …). */}}
{{- define "mlstack.monitoringServiceAccount" -}}
{{- default (include "mlstack.serviceAccountName" .) .ctx.Values.serviceAccounts.monitoring }}
{{- end }}

{{/* A CronJob's schedule and run limits: pass the job's values. */}}
{{- define "mlstack.cronJobSchedule" -}}
schedule: {{ .schedule | quote }}
concurrencyPolicy: Forbid
startingDeadlineSeconds: {{ .startingDeadlineSeconds }}
successfulJobsHistoryLimit: {{ .successfulJobsHistoryLimit }}
failedJobsHistoryLimit: {{ .failedJobsHistoryLimit }}
{{- end }}

{{/* The SA KFP pipeline runs use. */}}
{{- define "mlstack.pipelineServiceAccount" -}}
{{- default (printf "%s-pipeline" (include "mlstack.fullname" .)) .Values.serviceAccounts.pipeline }}
{{- end }}

{{/* In-cluster URL of the MLflow service. */}}
{{- define "mlstack.mlflowUrl" -}}
{{- if .Values.mlflow.externalUrl }}
{{- .Values.mlflow.externalUrl }}
{{- else }}
{{- printf "http://%s-mlflow.%s.svc.cluster.local:%v" (include "mlstack.fullname" .) .Release.Namespace .Values.mlflow.port }}
{{- end }}
{{- end }}

{{/* host:port of the Redis online store (in-chart or external). */}}
{{- define "mlstack.redisAddress" -}}
{{- if .Values.redis.enabled }}
{{- printf "%s-redis:%v" (include "mlstack.fullname" .) .Values.redis.port }}
{{- else }}
{{- printf "%s:%v" (required "redis.external.host is required when redis.enabled is false" .Values.redis.external.host) .Values.redis.external.port }}
{{- end }}
{{- end }}

{{/* Pod-level settings shared by every pod. */}}
{{- define "mlstack.podSecurity" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end }}

{{/* Object store credentials and endpoint as env vars (S3 / MinIO). */}}
{{- define "mlstack.objectStoreEnv" -}}
- name: MLSTACK_STATE_URI
  value: {{ .Values.stateUri | quote }}
{{- if .Values.objectStore.endpointUrl }}
- name: MLSTACK_OBJECT_STORE__ENDPOINT_URL
  value: {{ .Values.objectStore.endpointUrl | quote }}
- name: MLFLOW_S3_ENDPOINT_URL
  value: {{ .Values.objectStore.endpointUrl | quote }}
- name: AWS_ENDPOINT_URL
  value: {{ .Values.objectStore.endpointUrl | quote }}
{{- end }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .Values.objectStore.existingSecret }}
      key: {{ .Values.objectStore.accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.objectStore.existingSecret }}
      key: {{ .Values.objectStore.secretAccessKeyKey }}
{{- end }}

{{/* How the offline source is partitioned: a pod reading it as one file would not find it. */}}
{{- define "mlstack.shardsEnv" -}}
- name: MLSTACK_FEATURES__SHARDS
  value: {{ .Values.feast.shards | quote }}
{{- end }}

{{/* Redis password env var, when a Secret is named. */}}
{{- define "mlstack.redisPasswordEnv" -}}
{{- if .Values.redis.existingSecret }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret }}
      key: {{ .Values.redis.passwordKey }}
{{- end }}
{{- end }}

{{/* Feast on the cluster: the image's feature repo with feature_store.cluster.yaml, which
expands these variables (see feature_repo/feature_store.cluster.yaml). */}}
{{- define "mlstack.feastEnv" -}}
{{- include "mlstack.redisPasswordEnv" . }}
- name: MLSTACK_FEAST__CONFIG_FILE
  value: {{ .Values.feast.configFile | quote }}
- name: MLSTACK_FEAST_REGISTRY
  value: {{ .Values.feast.registryPath | quote }}
- name: MLSTACK_FEAST__DATA_DIR
  value: /tmp/feast
{{ include "mlstack.shardsEnv" . }}
- name: MLSTACK_FEAST_REDIS_CONNECTION
  value: "{{ include "mlstack.redisAddress" . }}{{ if .Values.redis.existingSecret }},password=$(REDIS_PASSWORD){{ end }}"
{{- end }}
