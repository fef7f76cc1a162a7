{{/*
One stage role (router, a tier's worker, sink): a StatefulSet, its headless Service and its
PodDisruptionBudget. Called from stages.yaml with a dict:
  root    the chart's context        name    the role's name (router, worker-mobile, …, sink)
  values  the role's values          args    the command line after `dimee`, without the shared flags
  topic   its input topic's key in `topics`            state   whether it reads Redis (DIMEE_STATE)
  workerState  with state: Redis as the workers' user (redis.workerUrlKey)
  artifacts  whether it reads the work folder          gpu     the worker's gpu values, if enabled

Why a StatefulSet: exactly-once fencing needs an instance id that a replacement pod inherits. The pod name of a
StatefulSet (NAME-0, NAME-1, …) stays the same when its pod is rescheduled, and Kubernetes never runs two pods of
one name at once; `--instance-id $(POD_NAME)` makes it the stage's transactional id, so a replacement fences
whatever its predecessor left open at once instead of leaving read_committed readers waiting for the transaction
timeout. A Deployment's pod names are random per pod and cannot do this.
*/}}
{{- define "dimee.stage" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $name := printf "%s-%s" (include "dimee.fullname" $root) .name -}}
{{- $ctx := dict "root" $root "role" .name -}}
{{- $threads := int (.values.threads | default 1) -}}
{{- $scaled := dig "autoscaling" "enabled" false .values -}}
{{- $pod := dict "root" $root "role" .name "kafka" true "state" .state "workerState" .workerState "artifacts" .artifacts "gpu" .gpu -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  labels:
    {{- include "dimee.labels" $ctx | nindent 4 }}
spec:
  clusterIP: None  # headless: the StatefulSet's pods get stable DNS names; nothing is load-balanced
  selector:
    {{- include "dimee.selector" $ctx | nindent 4 }}
  ports:
    - name: metrics
      port: {{ $v.metricsPort }}
      targetPort: metrics
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ $name }}
  labels:
    {{- include "dimee.labels" $ctx | nindent 4 }}
spec:
  serviceName: {{ $name }}
  {{- if not $scaled }}
  replicas: {{ .values.replicas }}
  {{- end }}
  # Parallel: pods start and stop together (no ordering is needed; the consumer group shares out partitions).
  podManagementPolicy: Parallel
  updateStrategy:
    type: RollingUpdate
  selector:
    matchLabels:
      {{- include "dimee.selector" $ctx | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "dimee.labels" $ctx | nindent 8 }}
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ $v.metricsPort | quote }}
        prometheus.io/path: /metrics
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      {{- include "dimee.scheduling" $pod | nindent 6 }}
      {{- include "dimee.artifactInit" $pod | nindent 6 }}
      containers:
        - name: {{ .name }}
          image: {{ include "dimee.image" $pod | quote }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          args:
            {{- range .args }}
            - {{ . | quote }}
            {{- end }}
            - --metrics-port
            - {{ $v.metricsPort | quote }}
            - --instance-id
            - "$(POD_NAME)"
            - --partitions
            - {{ index $v.topics .topic | quote }}
            {{- range .values.extraArgs }}
            - {{ . | quote }}
            {{- end }}
          env:
            {{- include "dimee.env" $pod | nindent 12 }}
          ports:
            - name: metrics
              containerPort: {{ $v.metricsPort }}
          {{- include "dimee.probes" $pod | nindent 10 }}
          resources:  # as many CPUs as --threads: the threads neither starve nor take turns
            requests:
              cpu: {{ $threads | quote }}
              memory: {{ .values.memory }}
              {{- if .gpu }}
              {{ .gpu.resource }}: {{ .gpu.count | quote }}
              {{- end }}
            limits:
              cpu: {{ $threads | quote }}
              memory: {{ .values.memory }}
              {{- if .gpu }}
              {{ .gpu.resource }}: {{ .gpu.count | quote }}
              {{- end }}
          {{- include "dimee.containerSecurity" $pod | nindent 10 }}
          volumeMounts:
            {{- include "dimee.volumeMounts" $pod | nindent 12 }}
            {{- if .data }}
            - name: data
              mountPath: /data
            {{- end }}
      volumes:
        {{- include "dimee.volumes" $pod | nindent 8 }}
        {{- if and .data (not .values.persistence.enabled) }}
        - name: data
          emptyDir: {}
        {{- end }}
  {{- if and .data .values.persistence.enabled }}
  volumeClaimTemplates:
    - metadata:
        name: data
      spec:
        accessModes: ["ReadWriteOnce"]
        {{- with .values.persistence.storageClassName }}
        storageClassName: {{ . }}
        {{- end }}
        resources:
          requests:
            storage: {{ .values.persistence.size }}
  {{- end }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $name }}
  labels:
    {{- include "dimee.labels" $ctx | nindent 4 }}
spec:
  maxUnavailable: {{ $v.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "dimee.selector" $ctx | nindent 6 }}
{{- end -}}
