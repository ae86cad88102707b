{{/* Labels of the control plane's pods (also its selector). */}}
{{- define "meshtrace.control.selector" -}}
app.kubernetes.io/name: meshtrace-control
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of the injector's pods (also its selector). */}}
{{- define "meshtrace.injector.selector" -}}
app.kubernetes.io/name: meshtrace-injector
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels every object carries besides its selector labels. */}}
{{- define "meshtrace.common" -}}
app.kubernetes.io/part-of: meshtrace
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "meshtrace.control.labels" -}}
{{ include "meshtrace.control.selector" . }}
{{ include "meshtrace.common" . }}
{{- end }}

{{- define "meshtrace.injector.labels" -}}
{{ include "meshtrace.injector.selector" . }}
{{ include "meshtrace.common" . }}
{{- end }}

{{/* The control plane image. */}}
{{- define "meshtrace.control.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The injector image: its own values, else the control plane's. */}}
{{- define "meshtrace.injector.image" -}}
{{ .Values.injector.image.repository | default .Values.image.repository }}:{{ .Values.injector.image.tag | default .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The sidecar image written into the injector's config. */}}
{{- define "meshtrace.sidecar.image" -}}
{{ .Values.sidecar.image.repository }}:{{ .Values.sidecar.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The injector's Service: its name is fixed (the webhook and the serving certificate name it). */}}
{{- define "meshtrace.injector.service" -}}
meshtrace-injector
{{- end }}

{{/* The injector's HTTPS port in its container (the Service's 443 targets it). */}}
{{- define "meshtrace.injector.port" -}}
15017
{{- end }}

{{/* DNS names of the injector's Service, for its serving certificate. */}}
{{- define "meshtrace.injector.dnsNames" -}}
{{- $svc := include "meshtrace.injector.service" . -}}
{{- list $svc (printf "%s.%s" $svc .Release.Namespace) (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.cluster.local" $svc .Release.Namespace) | toJson }}
{{- end }}

{{/* Pod hardening shared by both deployments. */}}
{{- define "meshtrace.podSecurity" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile: {type: RuntimeDefault}
{{- end }}

{{- define "meshtrace.containerSecurity" -}}
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities: {drop: [ALL]}
{{- end }}

{{/* Preferred anti-affinity across nodes over the given selector labels. */}}
{{- define "meshtrace.antiAffinity" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
{{ . | indent 12 }}
{{- end }}
