{{/* Names, labels and the few derived settings every template shares. */}}

{{- define "ft.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ft.fullname" -}}
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

{{- define "ft.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ft.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ft.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "ft.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: finetune-operator
{{- end }}

{{- define "ft.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ft.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name: name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The namespace a per-team install watches. */}}
{{- define "ft.watchNamespace" -}}
{{- default .Release.Namespace .Values.watchNamespace }}
{{- end }}

{{/* A cluster-scoped name must be unique across per-namespace installs. */}}
{{- define "ft.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "ft.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The image of one component: (dict "root" $ "component" "train"). */}}
{{- define "ft.image" -}}
{{- $images := .root.Values.images }}
{{- $own := index $images .component }}
{{- $repo := default (printf "%s/%s" $images.prefix .component) $own.repository }}
{{- if $own.digest }}
{{- printf "%s@%s" $repo $own.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default (default .root.Chart.AppVersion $images.tag) $own.tag) }}
{{- end }}
{{- end }}

{{- define "ft.minioName" -}}
{{- printf "%s-minio" (include "ft.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The Secret that steps read S3 credentials from. */}}
{{- define "ft.s3SecretName" -}}
{{- if .Values.store.secretName }}
{{- .Values.store.secretName }}
{{- else if .Values.minio.enabled }}
{{- printf "%s-s3" (include "ft.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "ft.storeUri" -}}
{{- if .Values.store.uri }}
{{- .Values.store.uri }}
{{- else if .Values.minio.enabled }}
{{- printf "s3://%s" .Values.minio.bucket }}
{{- end }}
{{- end }}

{{- define "ft.minioEndpoint" -}}
{{- printf "http://%s.%s.svc:9000" (include "ft.minioName" .) .Release.Namespace }}
{{- end }}

{{/* Restricted pod security (Pod Security Standards "restricted"). */}}
{{- define "ft.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "ft.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end }}
