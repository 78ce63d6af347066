"""imagepuller: keeps container images cached on every Kubernetes node."""

__version__ = "0.1.0"
