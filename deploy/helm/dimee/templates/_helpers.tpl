{{/* Names, labels and the pieces every role's pod shares. */}}

{{- define "dimee.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "dimee.labels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{- define "dimee.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{/* The image of a role: the GPU image for a GPU worker where one is set. */}}
{{- define "dimee.image" -}}
{{- $image := .root.Values.image -}}
{{- $tag := $image.tag | default .root.Chart.AppVersion -}}
{{- if and .gpu $image.gpuRepository -}}
{{- printf "%s:%s" $image.gpuRepository ($image.gpuTag | default $tag) -}}
{{- else -}}
{{- printf "%s:%s" $image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Refusals a schema cannot express, each one line naming the value (rendered once, from stages.yaml). */}}
{{- define "dimee.checks" -}}
{{- $v := .Values -}}
{{- if not $v.kafka.bootstrapServers -}}
{{- fail "kafka.bootstrapServers: give the brokers as HOST:PORT[,HOST:PORT]" -}}
{{- end -}}
{{- if or (hasKey $v.kafka.sasl "password") (hasKey $v.kafka "password") (hasKey $v.redis "password") -}}
{{- fail "a password in values: create a Secret and name it in kafka.sasl.existingSecret or redis.existingSecret (values are stored in the release in clear)" -}}
{{- end -}}
{{- if and (not $v.redis.existingSecret) (contains "@" $v.redis.url) -}}
{{- fail "redis.url holds credentials: put the whole URL in a Secret and name it in redis.existingSecret" -}}
{{- end -}}
{{- if and $v.kafka.sasl.mechanism (not $v.kafka.sasl.existingSecret) -}}
{{- fail "kafka.sasl.mechanism is set but kafka.sasl.existingSecret is not: name the Secret with the username and password" -}}
{{- end -}}
{{- if and (hasPrefix "SASL" $v.kafka.securityProtocol) (not $v.kafka.sasl.mechanism) -}}
{{- fail (printf "kafka.securityProtocol %s needs kafka.sasl.mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)" $v.kafka.securityProtocol) -}}
{{- end -}}
{{- if and (not $v.artifacts.image.repository) (not $v.artifacts.volume) -}}
{{- fail "artifacts: give artifacts.volume (a volume holding the work folder) or artifacts.image.repository" -}}
{{- end -}}
{{- end -}}

{{/* Partitions bound the useful instances of a role: refuse more. */}}
{{- define "dimee.withinPartitions" -}}
{{- $most := .values.replicas -}}
{{- if dig "autoscaling" "enabled" false .values -}}{{- $most = max $most .values.autoscaling.maxReplicas -}}{{- end -}}
{{- if gt (int $most) (int .partitions) -}}
{{- fail (printf "%s: up to %d pods but topics.%s has %d partitions, so %d would sit idle: raise topics.%s or lower the replicas" .name (int $most) .topic (int .partitions) (sub (int $most) (int .partitions)) .topic) -}}
{{- end -}}
{{- end -}}

{{/* The connection settings of every role, as the environment (dimee/streaming/config.py Settings). */}}
{{- define "dimee.env" -}}
{{- $v := .root.Values -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: DIMEE_BROKER
  value: {{ printf "kafka://%s" $v.kafka.bootstrapServers | quote }}
- name: DIMEE_TOPIC_PREFIX
  value: {{ $v.topicPrefix | quote }}
- name: DIMEE_GUARANTEE
  value: {{ $v.guarantee | quote }}
- name: DIMEE_REPLICATION_FACTOR
  value: {{ $v.kafka.replicationFactor | quote }}
- name: DIMEE_METRICS_HOST  # probes and Prometheus reach the pod's address, not its loopback
  value: "0.0.0.0"
{{- if $v.kafka.apiVersion }}
- name: DIMEE_KAFKA_API_VERSION
  value: {{ $v.kafka.apiVersion | quote }}
{{- end }}
- name: DIMEE_KAFKA_SECURITY_PROTOCOL
  value: {{ $v.kafka.securityProtocol | quote }}
{{- with $v.kafka.sasl }}
{{- if .mechanism }}
- name: DIMEE_KAFKA_SASL_MECHANISM
  value: {{ .mechanism | quote }}
- name: DIMEE_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .usernameKey }}
- name: DIMEE_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .passwordKey }}
{{- end }}
{{- end }}
{{- with $v.kafka.tls }}
{{- if .existingSecret }}
- name: DIMEE_KAFKA_SSL_CAFILE
  value: {{ printf "/etc/dimee/kafka-tls/%s" .caKey | quote }}
{{- if .certKey }}
- name: DIMEE_KAFKA_SSL_CERTFILE
  value: {{ printf "/etc/dimee/kafka-tls/%s" .certKey | quote }}
- name: DIMEE_KAFKA_SSL_KEYFILE
  value: {{ printf "/etc/dimee/kafka-tls/%s" .keyKey | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- if .state }}
{{- if $v.redis.existingSecret }}
- name: DIMEE_STATE
  valueFrom:
    secretKeyRef:
      name: {{ $v.redis.existingSecret }}
      key: {{ $v.redis.urlKey }}
{{- else }}
- name: DIMEE_STATE
  value: {{ $v.redis.url | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Volumes: the work folder (a volume, or an emptyDir an init container fills) and the Kafka TLS files. */}}
{{- define "dimee.volumes" -}}
{{- $v := .root.Values -}}
{{- if .artifacts }}
- name: artifacts
{{- if $v.artifacts.image.repository }}
  emptyDir: {}
{{- else }}
{{ toYaml $v.artifacts.volume | indent 2 }}
{{- end }}
{{- end }}
{{- if $v.kafka.tls.existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ $v.kafka.tls.existingSecret }}
    defaultMode: 0400
{{- end }}
{{- end -}}

{{- define "dimee.volumeMounts" -}}
{{- $v := .root.Values -}}
{{- if .artifacts }}
- name: artifacts
  mountPath: {{ $v.artifacts.mountPath }}
  readOnly: true
{{- end }}
{{- if $v.kafka.tls.existingSecret }}
- name: kafka-tls
  mountPath: /etc/dimee/kafka-tls
  readOnly: true
{{- end }}
{{- end -}}

{{/* An init container that copies the work folder out of an artefact image, where one is given. */}}
{{- define "dimee.artifactInit" -}}
{{- $a := .root.Values.artifacts -}}
{{- if and .artifacts $a.image.repository }}
initContainers:
  - name: artifacts
    image: {{ printf "%s:%s" $a.image.repository $a.image.tag | quote }}
    command: ["sh", "-c", {{ printf "cp -a %s/. /into/" $a.image.path | quote }}]
    volumeMounts:
      - name: artifacts
        mountPath: /into
{{- end }}
{{- end -}}

{{/* Liveness on /healthz (the loop turns), readiness on /readyz (model loaded, group joined, Redis
     answering): dimee/streaming/health.py, served on `--metrics-port`. */}}
{{- define "dimee.probes" -}}
startupProbe:  # a worker imports torch and loads its partition first: up to 5 minutes before liveness counts
  httpGet: {path: /healthz, port: metrics}
  periodSeconds: 5
  failureThreshold: 60
livenessProbe:
  httpGet: {path: /healthz, port: metrics}
  periodSeconds: 15
  timeoutSeconds: 5
  failureThreshold: 4
readinessProbe:
  httpGet: {path: /readyz, port: metrics}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
{{- end -}}

{{/* Scheduling, shared; a GPU worker adds its node selector and tolerations. */}}
{{- define "dimee.scheduling" -}}
{{- $v := .root.Values -}}
{{- $selector := deepCopy ($v.nodeSelector | default dict) -}}
{{- $tolerations := $v.tolerations | default list -}}
{{- if .gpu -}}
{{- $selector = merge $selector (.gpu.nodeSelector | default dict) -}}
{{- $tolerations = concat $tolerations (.gpu.tolerations | default list) -}}
{{- end -}}
{{- with $selector }}
nodeSelector:
{{ toYaml . | indent 2 }}
{{- end }}
{{- with $tolerations }}
tolerations:
{{ toYaml . | indent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
{{ toYaml . | indent 2 }}
{{- end }}
{{- with $v.podSecurityContext }}
securityContext:
{{ toYaml . | indent 2 }}
{{- end }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
{{ toYaml . | indent 2 }}
{{- end }}
{{- end -}}
