{{/* The chart's name: "carapace" unless nameOverride. */}}
{{- define "carapace.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's base name. A release whose name already holds the chart's name (the usual
`helm install carapace`) is not repeated: carapace, not carapace-carapace. Kept to 54
characters so that the longest suffix ("-operator") still fits a 63-character name.
*/}}
{{- define "carapace.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 54 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The operator's Deployment, ServiceAccount, roles and Lease: carapace-operator by default. */}}
{{- define "carapace.operatorName" -}}
{{- printf "%s-operator" (include "carapace.fullname" .) }}
{{- end }}

{{/* The metrics Service: carapace-operator-metrics by default (as deploy/default). */}}
{{- define "carapace.metricsServiceName" -}}
{{- printf "%s-metrics" (include "carapace.operatorName" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "carapace.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object of the chart carries. */}}
{{- define "carapace.commonLabels" -}}
helm.sh/chart: {{ include "carapace.chart" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ include "carapace.name" . }}
{{- end }}

{{/* Labels of objects that are not the operator's (monitoring, dashboards). */}}
{{- define "carapace.labels" -}}
{{ include "carapace.commonLabels" . }}
app.kubernetes.io/name: {{ include "carapace.name" . }}
{{- end }}

{{/*
The operator pods' selector. The name label is carapace-operator, as in deploy/default and
beside the workers' carapace-worker (deploy/monitoring's ServiceMonitor selects it).
*/}}
{{- define "carapace.operatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "carapace.name" . }}-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "carapace.operatorLabels" -}}
{{ include "carapace.commonLabels" . }}
app.kubernetes.io/name: {{ include "carapace.name" . }}-operator
app.kubernetes.io/component: operator
{{- end }}

{{- define "carapace.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "carapace.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
A scalar value as the string Kubernetes needs (an image tag, a label or annotation value).
`--set image.tag=20240101` hands the template an int64, and `tag: 20240101` in a values
file a float64, which toString would print as 2.0240101e+07: whole numbers are printed as
integers, anything else as Go prints it.
*/}}
{{- define "carapace.string" -}}
{{- if kindIs "string" . }}
{{- . }}
{{- else if and (kindIs "float64" .) (eq (float64 (int64 .)) .) }}
{{- int64 . }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/* A map of labels or annotations, every value quoted (numbers and booleans included). */}}
{{- define "carapace.stringMap" -}}
{{- range $key, $value := . }}
{{ $key | quote }}: {{ include "carapace.string" $value | quote }}
{{- end }}
{{- end }}

{{- define "carapace.operatorImage" -}}
{{- printf "%s:%s" .Values.image.repository (include "carapace.string" .Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{- define "carapace.workerImage" -}}
{{- printf "%s:%s" .Values.workerImage.repository (include "carapace.string" .Values.workerImage.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
The rules of an RBAC file of deploy/rbac (files/rbac in the chart): the operator's tests
enforce exactly those files, so the chart reads them rather than keeping a copy.
*/}}
{{- define "carapace.rbacRules" -}}
{{- $path := printf "files/rbac/%s" .file }}
{{- $doc := .root.Files.Get $path | fromYaml }}
{{- if or (not $doc) $doc.Error (not $doc.rules) }}
{{- fail (printf "%s (deploy/rbac) is missing or has no rules" $path) }}
{{- end }}
{{- toYaml $doc.rules }}
{{- end }}

{{/*
Whether to render the `helm test` pod: "true" or "". A release made before test.enabled
existed and upgraded with --reuse-values has no such key; it keeps its test pod.
*/}}
{{- define "carapace.testEnabled" -}}
{{- if or (not (hasKey .Values.test "enabled")) .Values.test.enabled }}true{{ end }}
{{- end }}
