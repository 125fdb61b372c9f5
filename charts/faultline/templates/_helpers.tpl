{{- define "faultline.labels" -}}
app.kubernetes.io/name: faultline-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "faultline.selector" -}}
app.kubernetes.io/name: faultline-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "faultline.operatorImage" -}}
{{ .Values.operator.image.repository }}:{{ .Values.operator.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "faultline.agentImage" -}}
{{ .Values.agent.image.repository }}:{{ .Values.agent.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "faultline.scheme" -}}
{{ if .Values.tls.enabled }}https{{ else }}http{{ end }}
{{- end -}}

{{- define "faultline.tlsSecret" -}}
{{ .Values.tls.existingSecret | default "faultline-operator-tls" }}
{{- end -}}

{{- define "faultline.pullSecretNames" -}}
{{- $names := list }}{{ range .Values.imagePullSecrets }}{{ $names = append $names .name }}{{ end }}{{ join "," $names }}
{{- end -}}
