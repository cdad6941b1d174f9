# Real servers for the tests, built from Go modules at pinned versions into a cache kept across
# clones, so a warm `make test` skips the builds.
#
# Needs Go (`go version`).
#
# MinIO for the store's integration tests; the Go module proxy serves its pseudo-versions only.

MINIO_VERSION ?= v0.0.0-20260212201848-7aac2a2c5b7c
TOOLS_DIR ?= $(HOME)/.cache/finetune-operator/bin
MINIO_BIN := $(TOOLS_DIR)/minio-$(MINIO_VERSION)

.PHONY: minio
minio: $(MINIO_BIN)

$(MINIO_BIN):
	mkdir -p $(TOOLS_DIR)/build
	GOBIN=$(TOOLS_DIR)/build CGO_ENABLED=0 go install github.com/minio/minio@$(MINIO_VERSION)
	mv $(TOOLS_DIR)/build/minio $@

# etcd, kube-apiserver and kube-controller-manager of one pinned release for tests/cluster, from Go modules
# (tests/cluster/gobuild.sh explains why `go install` alone cannot build them).
KUBERNETES_VERSION ?= v1.34.4
ETCD_VERSION ?= v3.6.5
ETCD_BIN := $(TOOLS_DIR)/etcd-$(ETCD_VERSION)
KUBE_DIR := $(TOOLS_DIR)/kubernetes-$(KUBERNETES_VERSION)
KUBE_BINS := $(KUBE_DIR)/kube-apiserver $(KUBE_DIR)/kube-controller-manager $(KUBE_DIR)/kube-scheduler $(KUBE_DIR)/kubelet

.PHONY: cluster-bin
cluster-bin: $(ETCD_BIN) $(KUBE_BINS)

$(ETCD_BIN):
	bash tests/cluster/gobuild.sh go.etcd.io/etcd/server/v3 $(ETCD_VERSION) go.etcd.io/etcd/server/v3 $@

$(KUBE_DIR)/%:
	bash tests/cluster/gobuild.sh k8s.io/kubernetes $(KUBERNETES_VERSION) k8s.io/kubernetes/cmd/$* $@ \
		v0.$(patsubst v1.%,%,$(KUBERNETES_VERSION))

# kwok's fake nodes for bench.controller_scale_cluster (not needed by the tests).
KWOK_VERSION ?= v0.7.0
KWOK_BIN := $(TOOLS_DIR)/kwok-$(KWOK_VERSION)

.PHONY: kwok
kwok: $(KWOK_BIN)

$(KWOK_BIN):
	mkdir -p $(TOOLS_DIR)/build-kwok
	GOBIN=$(TOOLS_DIR)/build-kwok CGO_ENABLED=0 go install sigs.k8s.io/kwok/cmd/kwok@$(KWOK_VERSION)
	mv $(TOOLS_DIR)/build-kwok/kwok $@
