# MinIO for the store's integration tests: the real S3 server, built from Go modules at a pinned
# version into a cache kept across clones, so a warm `make test` skips the build.
# Needs Go (`go version`); the Go module proxy serves MinIO's pseudo-versions only.

MINIO_VERSION ?= v0.0.0-20260212201848-7aac2a2c5b7c
TOOLS_DIR ?= $(HOME)/.cache/finetune-operator/bin
MINIO_BIN := $(TOOLS_DIR)/minio-$(MINIO_VERSION)

.PHONY: minio
minio: $(MINIO_BIN)

$(MINIO_BIN):
	mkdir -p $(TOOLS_DIR)/build
	GOBIN=$(TOOLS_DIR)/build CGO_ENABLED=0 go install github.com/minio/minio@$(MINIO_VERSION)
	mv $(TOOLS_DIR)/build/minio $@
