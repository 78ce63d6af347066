# The README's two commands come first: `make run` and `make test`.
# Both install what they need into .venv; the control plane is built once into
# ~/.cache/imagepuller (see hack/build-control-plane.sh).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
NODES  ?= 3
REAL_NODES ?= 0

.PHONY: run test unit lint control-plane helm-tools node-stack cluster-up cluster-down sleep image bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test,lint]'
	rm -f $(VENV)/.installed-* && touch $@

## run: the controller in the foreground; without KUBECONFIG, against a local cluster of 5 simulated nodes
## and REAL_NODES (default 1) real ones (the local cluster builds its binaries first when they are not
## cached; with KUBECONFIG nothing is built)
run: $(STAMP)
	$(PY) -m localcluster.run_local

## test: every test, unit, chart, monitoring, cluster and real-node (builds the control plane, the
## node stack, helm and promtool first when they are not cached)
test: $(STAMP) sleep
	@bash hack/build-control-plane.sh >/dev/null || \
	  echo "make test: building the control plane failed; the cluster tests will report it" >&2
	@bash hack/build-bundle-validate.sh >/dev/null || \
	  echo "make test: building the OLM bundle validator failed; its test will report it" >&2
	@bash hack/build-node-stack.sh >/dev/null || \
	  echo "make test: building the real node's stack failed; the real-node tests will report it" >&2
	@bash hack/build-helm-tools.sh >/dev/null || \
	  echo "make test: building helm and promtool failed; the chart and monitoring tests will report it" >&2
	$(PY) -m pytest

## unit: only the tests that need no cluster, no Go-built tool and no process of their own
## (under 30 s on 2 cores)
unit: $(STAMP)
	$(PY) -m pytest -m "not cluster and not tools and not process"

lint: $(STAMP)
	$(VENV)/bin/ruff check imagepuller localcluster tests benchmarks
	$(VENV)/bin/ruff format --check imagepuller localcluster tests benchmarks
	$(VENV)/bin/mypy imagepuller localcluster
	$(VENV)/bin/lint-imports --no-cache

control-plane:
	@bash hack/build-control-plane.sh >/dev/null

## helm-tools: helm and promtool, which check the chart (charts/imagepuller) and the monitoring pack
helm-tools:
	@bash hack/build-helm-tools.sh >/dev/null

## node-stack: what a real node needs (kubelet, containerd, runc, CNI, crictl, registry, crane)
node-stack:
	@bash hack/build-node-stack.sh >/dev/null

## cluster-up / cluster-down: a local cluster with NODES simulated nodes and REAL_NODES real ones
## (kubelet + containerd + a local registry; the node stack is built first); kubeconfig in
## .cluster/kubeconfig. cluster-down puts back everything a real node changed on the machine.
cluster-up: $(STAMP) control-plane
	@if [ "$(REAL_NODES)" != 0 ]; then bash hack/build-node-stack.sh >/dev/null; fi
	$(PY) -m localcluster up --nodes $(NODES) --real-nodes $(REAL_NODES) --dir .cluster

cluster-down: $(STAMP)
	$(PY) -m localcluster down --dir .cluster

## sleep: the static sleep binary that the init container copies (build/sleep)
sleep:
	@bash hack/build-sleep.sh build/sleep

## image: the puller's container image (needs podman or docker with a running engine)
image:
	@bash hack/build-image.sh

## bench: start-up, CPU and memory before and after issue 11 side by side (with the Python version
## and the machine); controller start-up, memory over refresh cycles, readiness latency; holding
## during rolling vs recreate refreshes, ConfigMap edit latency, API requests, RSS over refreshes;
## RSS with metrics on vs off; operator mode with 50 resources on 20 nodes; the endpoints' RSS with
## 3000 idle connections; on a real node, a workspace pod's start cold vs held through a throttled
## registry, registry requests per refresh, the kubelet's image GC, the cost of a real node (all print
## figures; about 35 minutes in all)
bench: $(STAMP) control-plane node-stack
	$(PY) benchmarks/bench_startup.py
	$(PY) benchmarks/bench_controller.py
	$(PY) benchmarks/bench_refresh.py --nodes 50,200 --refreshes 100
	$(PY) benchmarks/bench_metrics.py
	$(PY) benchmarks/bench_operator.py
	$(PY) benchmarks/bench_endpoints.py --connections 3000
	$(PY) benchmarks/bench_realnode.py

clean:
	rm -rf $(VENV) build .cluster
