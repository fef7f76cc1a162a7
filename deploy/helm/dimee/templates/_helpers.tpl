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

{{/* An image reference from a repository and a tag or a digest (sha256:…): REPO:TAG or REPO@sha256:…. The
     schema refuses `latest`, so every image is pinned. */}}
{{- define "dimee.ref" -}}
{{- if hasPrefix "sha256:" .tag -}}
{{- printf "%s@%s" .repository .tag -}}
{{- else -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}
{{- end -}}

{{/* The image of a role: the GPU image for a GPU worker where one is set. */}}
{{- define "dimee.image" -}}
{{- $image := .root.Values.image -}}
{{- $tag := $image.tag | default .root.Chart.AppVersion -}}
{{- if and .gpu $image.gpuRepository -}}
{{- include "dimee.ref" (dict "repository" $image.gpuRepository "tag" ($image.gpuTag | default $tag)) -}}
{{- else -}}
{{- include "dimee.ref" (dict "repository" $image.repository "tag" $tag) -}}
{{- end -}}
{{- end -}}

{{/* The Kafka roles, each with a principal of its own where kafka.sasl.roleSecrets names its Secret
     ("autoscaling": KEDA's TriggerAuthentication). */}}
{{- define "dimee.kafkaRoles" -}}
{{- $v := .Values -}}
{{- $roles := list "router" "worker-mobile" "worker-edge" "worker-cloud" "sink" -}}
{{- if $v.dashboard.enabled -}}{{- $roles = append $roles "dashboard" -}}{{- end -}}
{{- $scaled := $v.router.autoscaling.enabled -}}
{{- range $tier := list "mobile" "edge" "cloud" -}}
{{- if (index $v.workers $tier).autoscaling.enabled -}}{{- $scaled = true -}}{{- end -}}
{{- end -}}
{{- if and $v.autoscaling.keda.enabled $scaled -}}{{- $roles = append $roles "autoscaling" -}}{{- end -}}
{{- join " " $roles -}}
{{- end -}}

{{/* The Secret holding a role's Kafka username and password: its own, else the shared one. */}}
{{- define "dimee.kafkaSecret" -}}
{{- $sasl := .root.Values.kafka.sasl -}}
{{- get ($sasl.roleSecrets | default dict) .role | default $sasl.existingSecret -}}
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
{{- if $v.kafka.sasl.mechanism -}}
{{- range $role := splitList " " (include "dimee.kafkaRoles" .) -}}
{{- if not (include "dimee.kafkaSecret" (dict "root" $ "role" $role)) -}}
{{- fail (printf "kafka.sasl.mechanism is set but %s has no Secret: name one with its username and password in kafka.sasl.roleSecrets.%s, or one for every role in kafka.sasl.existingSecret" $role $role) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and (hasPrefix "SASL" $v.kafka.securityProtocol) (not $v.kafka.sasl.mechanism) -}}
{{- fail (printf "kafka.securityProtocol %s needs kafka.sasl.mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)" $v.kafka.securityProtocol) -}}
{{- end -}}
{{- if and (not $v.artifacts.image.repository) (not $v.artifacts.volume) -}}
{{- fail "artifacts: give artifacts.volume (a volume holding the work folder) or artifacts.image.repository" -}}
{{- end -}}
{{- if and $v.artifacts.image.repository (not $v.artifacts.image.tag) -}}
{{- fail "artifacts.image.tag: pin the artefact image's tag (or its digest, sha256:…); latest is refused" -}}
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

{{/* Whether a tier's workers record their audit copies in Redis (workers/audit_copies.py), so that they get
     DIMEE_STATE and egress to Redis: a tier below the cloud (the last tier, which audits the others and makes no
     copy), with audits on (auditRate > 0) and the controller that consumes the records running (router.control).
     Without the controller nobody reads them: the workers keep no Redis access, as the sink. "true" or "". */}}
{{- define "dimee.recordsAuditCopies" -}}
{{- $v := .root.Values -}}
{{- if and (ne .tier "cloud") $v.router.control (gt (float64 $v.auditRate) 0.0) -}}true{{- end -}}
{{- end -}}

{{/* The connection settings of a role, as the environment (dimee/streaming/config.py Settings): Kafka's for
     the roles that read it (.kafka), its own principal where it has one (.role), Redis's for those that use the
     state store (.state; .readOnlyState: the dashboard's read-only user; .workerState: the workers' user, which
     may only record audit copies). */}}
{{- define "dimee.env" -}}
{{- $v := .root.Values -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- include "dimee.scratchEnv" . }}
{{- if .kafka }}
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
{{- $secret := include "dimee.kafkaSecret" . }}
{{- with $v.kafka.sasl }}
{{- if .mechanism }}
- name: DIMEE_KAFKA_SASL_MECHANISM
  value: {{ .mechanism | quote }}
- name: DIMEE_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .usernameKey }}
- name: DIMEE_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
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
{{- end }}
{{- if .state }}
{{- if $v.redis.existingSecret }}
{{- $key := $v.redis.urlKey }}
{{- if .readOnlyState }}{{- $key = $v.redis.readOnlyUrlKey | default $v.redis.urlKey }}{{- end }}
{{- if .workerState }}{{- $key = $v.redis.workerUrlKey | default $v.redis.urlKey }}{{- end }}
- name: DIMEE_STATE
  valueFrom:
    secretKeyRef:
      name: {{ $v.redis.existingSecret }}
      key: {{ $key }}
{{- else }}
- name: DIMEE_STATE
  value: {{ $v.redis.url | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The root filesystem is read-only: what a role writes goes to two emptyDirs, /tmp (TMPDIR: temporary
     files, SQLite's) and /var/cache/dimee, made HOME and the cache folder of every library a role loads
     (Hugging Face, torch, Triton's and CUDA's kernels for a GPU worker), so that none writes the image. */}}
{{- define "dimee.scratchEnv" -}}
{{- $cache := "/var/cache/dimee" }}
{{- $paths := dict "HOME" "" "XDG_CACHE_HOME" "" "HF_HOME" "/huggingface" "TORCH_HOME" "/torch" }}
{{- $paths = merge $paths (dict "TRITON_CACHE_DIR" "/triton" "CUDA_CACHE_PATH" "/nv") }}
{{- range $name, $path := $paths }}
- name: {{ $name }}
  value: {{ printf "%s%s" $cache $path | quote }}
{{- end }}
- name: TMPDIR
  value: /tmp
- name: PYTHONDONTWRITEBYTECODE  # the image's site-packages were compiled at build; never try to write there
  value: "1"
{{- end -}}

{{/* Volumes: the scratch folders, the work folder (a volume, or an emptyDir an init container fills) and the
     Kafka TLS files. */}}
{{- define "dimee.volumes" -}}
{{- $v := .root.Values -}}
{{- range $name := list "tmp" "cache" }}
- name: {{ $name }}
  emptyDir:
    sizeLimit: {{ $v.scratch.sizeLimit }}
{{- end }}
{{- if .artifacts }}
- name: artifacts
{{- if $v.artifacts.image.repository }}
  emptyDir: {}
{{- else }}
{{ toYaml $v.artifacts.volume | indent 2 }}
{{- end }}
{{- end }}
{{- if and .kafka $v.kafka.tls.existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ $v.kafka.tls.existingSecret }}
    defaultMode: 0400
{{- end }}
{{- end -}}

{{- define "dimee.volumeMounts" -}}
{{- $v := .root.Values -}}
- name: tmp
  mountPath: /tmp
- name: cache
  mountPath: /var/cache/dimee
{{- if .artifacts }}
- name: artifacts
  mountPath: {{ $v.artifacts.mountPath }}
  readOnly: true
{{- end }}
{{- if and .kafka $v.kafka.tls.existingSecret }}
- name: kafka-tls
  mountPath: /etc/dimee/kafka-tls
  readOnly: true
{{- end }}
{{- end -}}

{{/* The container securityContext (the restricted Pod Security Standard by default: values.yaml). */}}
{{- define "dimee.containerSecurity" -}}
{{- with .root.Values.securityContext -}}
securityContext:
{{ toYaml . | indent 2 }}
{{- end -}}
{{- end -}}

{{/* An init container that copies the work folder out of an artefact image, where one is given. `cp -R`, not
     `cp -a`: it runs as the pods' user, which may not give the files the image's owners. Its requests equal its
     limits, as the roles' do, so the pod keeps the Guaranteed QoS class. */}}
{{- define "dimee.artifactInit" -}}
{{- $a := .root.Values.artifacts -}}
{{- if and .artifacts $a.image.repository }}
initContainers:
  - name: artifacts
    image: {{ include "dimee.ref" $a.image | quote }}
    command: ["sh", "-c", {{ printf "cp -R %s/. /into/" $a.image.path | quote }}]
    resources:
      requests: {cpu: {{ $a.image.cpu | quote }}, memory: {{ $a.image.memory }}}
      limits: {cpu: {{ $a.image.cpu | quote }}, memory: {{ $a.image.memory }}}
    {{- include "dimee.containerSecurity" . | nindent 4 }}
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

{{/* Pod-level settings, shared: no service-account token (no role calls the Kubernetes API), the pod
     securityContext, scheduling (a GPU worker adds its node selector and tolerations), pull secrets. */}}
{{- define "dimee.scheduling" -}}
{{- $v := .root.Values -}}
automountServiceAccountToken: false
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
