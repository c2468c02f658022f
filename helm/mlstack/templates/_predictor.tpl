{{/* The predictor's environment before `inferenceService.env` overrides: the server's
settings, the model's location, Feast, the object store and the optional bearer token. */}}
{{- define "mlstack.predictorEnv" -}}
{{- $isvc := .Values.inferenceService -}}
- name: MLSTACK_SERVING__HOST
  value: 0.0.0.0
- name: MLSTACK_SERVING__PORT
  value: {{ $isvc.port | quote }}
- name: MLSTACK_SERVING__MODEL_NAME
  value: {{ $isvc.modelName | quote }}
- name: MLSTACK_SERVING__MODEL_ALIAS
  value: {{ $isvc.modelAlias | quote }}
- name: MLSTACK_MLFLOW__TRACKING_URI
  value: {{ default (include "mlstack.mlflowUrl" .) $isvc.trackingUri | quote }}
- name: MLSTACK_MLFLOW__REGISTERED_MODEL
  value: {{ $isvc.registeredModel | quote }}
- name: MLSTACK_FEAST__FEATURE_SERVICE
  value: {{ $isvc.featureService | quote }}
{{- if $isvc.storageUri }}
{{- /* KServe's storage initializer downloads the artifacts to /mnt/models. */}}
- name: STORAGE_URI
  value: {{ $isvc.storageUri | quote }}
- name: MLSTACK_SERVING__STORAGE_URI
  value: /mnt/models
{{- end }}
{{ include "mlstack.feastEnv" . }}
{{ include "mlstack.objectStoreEnv" . }}
{{- with $isvc.auth.secretName }}
- name: MLSTACK_SERVING__AUTH_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $isvc.auth.secretKey }}
{{- end }}
{{- end }}
