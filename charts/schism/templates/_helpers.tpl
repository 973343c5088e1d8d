{{/* The chart name. */}}
{{- define "schism.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every resource name. */}}
{{- define "schism.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "schism.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every resource. */}}
{{- define "schism.labels" -}}
helm.sh/chart: {{ include "schism.chart" . }}
app.kubernetes.io/name: {{ include "schism.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels; callers add app.kubernetes.io/component. */}}
{{- define "schism.selectorLabels" -}}
app.kubernetes.io/name: {{ include "schism.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "schism.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "schism.controllerServiceAccount" -}}
{{- default (printf "%s-controller" (include "schism.fullname" .)) .Values.serviceAccount.controller }}
{{- end }}

{{- define "schism.agentServiceAccount" -}}
{{- default (printf "%s-agent" (include "schism.fullname" .)) .Values.serviceAccount.agent }}
{{- end }}

{{- define "schism.runnerServiceAccount" -}}
{{- default (printf "%s-runner" (include "schism.fullname" .)) .Values.serviceAccount.runner }}
{{- end }}

{{/*
Namespaces prepared for runner pods (a ServiceAccount and a RoleBinding each), as a JSON list:
where experiments may run, plus runner.namespaces.
*/}}
{{- define "schism.runnerNamespaces" -}}
{{- concat (include "schism.targetNamespaces" . | fromJsonArray) .Values.runner.namespaces | uniq | toJson }}
{{- end }}

{{/* The coordination Lease the controller replicas compete for. */}}
{{- define "schism.leaderLease" -}}
{{- printf "%s-controller" (include "schism.fullname" .) }}
{{- end }}

{{/*
Namespaces where the controller's rights on target workloads are granted, as a JSON list;
empty means cluster-wide.
*/}}
{{- define "schism.targetNamespaces" -}}
{{- if .Values.controller.allowedNamespaces }}
{{- .Values.controller.allowedNamespaces | uniq | toJson }}
{{- else if .Values.controller.watchNamespace }}
{{- list .Values.controller.watchNamespace | toJson }}
{{- else }}
{{- list | toJson }}
{{- end }}
{{- end }}

{{/*
Checks on values that would otherwise make an unsafe or broken installation. values.schema.json
refuses these values first; the checks stay for installs that skip it (--skip-schema-validation).
*/}}
{{- define "schism.validate" -}}
{{- if lt (int .Values.controller.maxPods) 1 }}
{{- fail "controller.maxPods must be at least 1" }}
{{- end }}
{{- range .Values.controller.allowedNamespaces }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" .) }}
{{- fail (printf "controller.allowedNamespaces: %q is not a namespace name" .) }}
{{- end }}
{{- end }}
{{- range .Values.runner.namespaces }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" .) }}
{{- fail (printf "runner.namespaces: %q is not a namespace name" .) }}
{{- end }}
{{- end }}
{{- range .Values.runner.secrets }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$" .) }}
{{- fail (printf "runner.secrets: %q is not a Secret name" .) }}
{{- end }}
{{- end }}
{{- end }}
