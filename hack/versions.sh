# Pinned versions of the local control plane. Kubernetes matches the minor of the
# `kubernetes` Python client (client 37.x speaks to Kubernetes 1.37).
KUBERNETES_VERSION=v1.37.2
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.7.0
