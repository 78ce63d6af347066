{{/* A ConfigMap value: text as it is; a map or a list (NODE_SELECTOR, AFFINITY, TOLERATIONS,
DAEMONSET_ANNOTATIONS) written as JSON, as the controller reads them. */}}
{{- define "imagepuller.setting" -}}
{{- if kindIs "string" . -}}{{ . }}{{- else if or (kindIs "map" .) (kindIs "slice" .) -}}{{ toJson . }}{{- else -}}{{ toString . }}{{- end -}}
{{- end -}}

{{/* The namespace the DaemonSet is created in: NAMESPACE, or the release's. */}}
{{- define "imagepuller.pullerNamespace" -}}
{{- .Values.puller.config.NAMESPACE | default .Release.Namespace -}}
{{- end -}}

{{/* Labels of the single puller's objects (as manifests/kubernetes). */}}
{{- define "imagepuller.pullerLabels" -}}
app.kubernetes.io/name: kubernetes-image-puller
app.kubernetes.io/component: controller
{{- end -}}

{{/* Labels of the operator's objects (as manifests/operator). */}}
{{- define "imagepuller.operatorLabels" -}}
app.kubernetes.io/name: imagepuller-operator
app.kubernetes.io/component: operator
{{- end -}}

{{/* The pod's security context of this mode, without the keys set to null (OpenShift: no
runAsUser). */}}
{{- define "imagepuller.podSecurityContext" -}}
{{- $context := dict -}}
{{- $given := ternary .Values.puller.podSecurityContext .Values.operator.podSecurityContext (eq .Values.mode "puller") -}}
{{- range $key, $value := $given -}}
{{- if not (kindIs "invalid" $value) -}}{{- $_ := set $context $key $value -}}{{- end -}}
{{- end -}}
{{- toYaml $context -}}
{{- end -}}

{{/* What the controller's and the operator's containers share: probes, limits, hardening. */}}
{{- define "imagepuller.containerCommon" -}}
ports:
- name: metrics
  containerPort: {{ .Values.metricsPort }}
  protocol: TCP
livenessProbe:
  httpGet:
    path: /healthz
    port: metrics
  initialDelaySeconds: 10
  periodSeconds: 20
  timeoutSeconds: 5
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: metrics
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
resources:
  {{- toYaml .Values.resources | nindent 2 }}
securityContext:
  runAsNonRoot: true
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: ["ALL"]
  seccompProfile:
    type: RuntimeDefault
volumeMounts:
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* The pod spec's tail both Deployments share. */}}
{{- define "imagepuller.podCommon" -}}
terminationGracePeriodSeconds: 30
securityContext:
  {{- include "imagepuller.podSecurityContext" . | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
- name: tmp
  emptyDir:
    sizeLimit: 16Mi
{{- end -}}
