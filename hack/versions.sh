# Pinned versions of the local control plane. Kubernetes matches the minor of the
# `kubernetes` Python client (client 37.x speaks to Kubernetes 1.37).
KUBERNETES_VERSION=v1.37.2
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.7.0
# The real node's stack (hack/build-node-stack.sh); the kubelet is KUBERNETES_VERSION.
CONTAINERD_VERSION=v2.4.2
RUNC_VERSION=v1.5.3
CNI_PLUGINS_VERSION=v1.10.0
CRICTL_VERSION=v1.37.0
REGISTRY_VERSION=v3.1.2
CRANE_VERSION=v0.22.1
# The chart's and the monitoring pack's tools (hack/build-helm-tools.sh).
HELM_VERSION=v4.3.2
PROMETHEUS_VERSION=v0.316.0
