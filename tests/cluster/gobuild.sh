#!/usr/bin/env bash
# Build a command of a Go module whose go.mod replaces its sibling modules with local folders
# (Kubernetes' staging repos, etcd's api/client/pkg), from the Go module proxy alone.
#
#   tests/cluster/gobuild.sh MODULE VERSION PACKAGE OUT [SIBLING_VERSION]
#   e.g. gobuild.sh k8s.io/kubernetes v1.34.4 k8s.io/kubernetes/cmd/kube-apiserver bin/kube-apiserver v0.34.4
#        gobuild.sh go.etcd.io/etcd/server/v3 v3.6.5 go.etcd.io/etcd/server/v3 bin/etcd
#
# `go install PACKAGE@VERSION` refuses such a module, and its zip lacks the folders. A wrapper
# module requires it and pins each locally replaced module to its published SIBLING_VERSION
# (default VERSION); then `go build` works. OUT is written atomically; an existing OUT is kept.
set -euo pipefail
module=$1 version=$2 package=$3 out=$4 sibling=${5:-$2}
[ -x "$out" ] && exit 0
mkdir -p "$(dirname "$out")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
go mod init ft.local/gobuild >/dev/null 2>&1
go mod download "$module@$version"
gomod="$(go env GOMODCACHE)/cache/download/$(go mod download -json "$module@$version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p' | sed "s|$(go env GOMODCACHE)/cache/download/||")"
go mod edit -require="$module@$version"
# `X => ./path` or `X => ../path`, in a replace block or on one line; etcd's guards against bad
# imports (`=> ./FORBIDDEN_DEPENDENCY`) stay out.
for m in $(grep -v FORBIDDEN_DEPENDENCY "$gomod" | sed -n -E 's/^[[:space:]]*(replace[[:space:]]+)?([^[:space:]]+)[[:space:]]+=>[[:space:]]+\.\.?\/.*/\2/p'); do
  go mod edit -replace="$m=$m@$sibling"
done
printf 'package main\n\nimport _ "%s"\n' "$package" > tools.go
go mod tidy >/dev/null 2>&1 || true  # tidy objects to importing a main package, but records the requirements
CGO_ENABLED=0 go build -trimpath -o "$out.tmp" "$package"
mv "$out.tmp" "$out"
