"""A real node for the control plane of apiserver.py: kube-scheduler, a kubelet and a containerd
of its own, with pods on a CNI bridge of their own.

- containerd is Debian's (it comes with docker.io), started with its own root, state and socket and
  its CRI plugin on, so the Docker engine's containerd is left alone. Images get into it from the
  Docker engine (`docker save` | `ctr import`): nothing is pulled, no registry is reachable.
- The pause image is built here: a static Go program that waits for SIGTERM, `docker import`ed.
- Pods live on the bridge `ftbr0` (10.244.0.0/24, Debian's CNI plugins) with no route out of it:
  they reach what listens on the bridge's own address (10.244.0.1: MinIO, the API server) and
  nothing else. There is no kube-proxy, so Services have no ClusterIP traffic; pods are given the
  bridge address instead.
- The kubelet authenticates with a token of group system:nodes (the API server runs the Node
  authorizer beside RBAC) and uses the cgroupfs driver, without QoS cgroups: these machines
  have cgroup v1 and no systemd.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.cluster.apiserver import KUBERNETES_VERSION, ControlPlane, stop_processes, wait_running
from tests.miniokit import CACHE_BIN, free_port

BRIDGE, BRIDGE_IP, POD_SUBNET = "ftbr0", "10.244.0.1", "10.244.0.0/24"
NODE_NAME = "ft-node"
PAUSE_IMAGE = "finetune-operator/pause:local"
CONTAINERD_NS = "k8s.io"  # the namespace the CRI plugin keeps its images in


def binaries() -> tuple[Path, Path] | None:
    """kube-scheduler and kubelet if `make cluster-bin` built them, and containerd, runc and the
    CNI bridge plugin if Debian's packages are installed."""
    kube = CACHE_BIN / f"kubernetes-{KUBERNETES_VERSION}"
    found = (kube / "kube-scheduler", kube / "kubelet")
    system = [shutil.which("containerd"), shutil.which("runc"), shutil.which("ctr"), shutil.which("ip")]
    if not all(p.is_file() for p in found) or None in system or not Path("/usr/lib/cni/bridge").is_file():
        return None
    return found


@dataclass
class Node:
    name: str
    address: str
    containerd_socket: Path
    root: Path
    procs: list[subprocess.Popen]

    def ctr(self, *args: str, stdin=None) -> subprocess.CompletedProcess:
        return subprocess.run(["ctr", "--address", str(self.containerd_socket), "--namespace", CONTAINERD_NS, *args],
                              stdin=stdin, capture_output=True, check=True, timeout=900)

    def load_image(self, image: str) -> None:
        """Copy an image from the Docker engine into the node's containerd."""
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        try:
            self.ctr("images", "import", "-", stdin=save.stdout)  # unpacked now, not at the first pod
        finally:
            save.stdout.close()
            if save.wait(timeout=900) != 0:
                raise RuntimeError(f"docker save {image} exited with {save.returncode}")

    def has_image(self, image: str) -> bool:
        listed = self.ctr("images", "list", "--quiet").stdout.decode().split()
        return any(name.endswith("/" + image) for name in listed)

    def stop(self) -> None:
        stop_processes(self.procs)
        # Pods the kubelet left: their shims and containers go with the containerd that ran them.
        subprocess.run(["pkill", "-f", f"containerd-shim.*{self.containerd_socket}"], check=False)
        # The kubelet bind-mounts its root dir onto itself, and volumes and rootfs under it.
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
        for point in sorted((m for m in mounts if m.startswith(f"{self.root}/")), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], check=False)


def try_bridge() -> bool:
    """Make the pods' bridge with its address, before anything binds to that address; False
    where this user may not."""
    try:
        ensure_bridge()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return False
    return True


def ensure_bridge() -> None:
    if subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode != 0:
        subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], check=True)
    shown = subprocess.run(["ip", "-o", "addr", "show", "dev", BRIDGE], capture_output=True, text=True).stdout
    if f" {BRIDGE_IP}/" not in shown:
        subprocess.run(["ip", "addr", "add", f"{BRIDGE_IP}/24", "dev", BRIDGE], check=True)
    subprocess.run(["ip", "link", "set", BRIDGE, "up"], check=True)


def _cni_config(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "10-ft.conflist").write_text(json.dumps({
        "cniVersion": "1.0.0", "name": "ft-pods",
        "plugins": [
            # No default route and no masquerade: a pod reaches the bridge's subnet only.
            {"type": "bridge", "bridge": BRIDGE, "isGateway": False, "ipMasq": False, "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_SUBNET, "rangeStart": "10.244.0.10",
                                                          "gateway": BRIDGE_IP}]], "dataDir": str(path / "ipam")}},
            {"type": "loopback"},
        ],
    }))


def _containerd_config(root: Path, socket: Path, cni: Path) -> Path:
    config = root / "containerd.toml"
    config.write_text(textwrap.dedent(f"""\
        version = 2
        root = "{root / 'containerd'}"
        state = "{root / 'containerd-state'}"
        [grpc]
          address = "{socket}"
        [plugins."io.containerd.grpc.v1.cri"]
          sandbox_image = "docker.io/{PAUSE_IMAGE}"
          enable_selinux = false
          # These machines lack CAP_SYS_RESOURCE: the kubelet's negative OOM scores are raised to ours.
          restrict_oom_score_adj = true
          [plugins."io.containerd.grpc.v1.cri".containerd]
            snapshotter = "overlayfs"
            default_runtime_name = "runc"
            [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
              runtime_type = "io.containerd.runc.v2"
              [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
                SystemdCgroup = false
          [plugins."io.containerd.grpc.v1.cri".cni]
            bin_dir = "/usr/lib/cni"
            conf_dir = "{cni}"
        """))
    return config


PAUSE_GO = """package main

import (
	"os"
	"os/signal"
	"syscall"
)

// The pod sandbox's process: hold the namespaces until the kubelet stops it, reaping orphans.
func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	child := make(chan os.Signal, 8)
	signal.Notify(child, syscall.SIGCHLD)
	for {
		select {
		case <-stop:
			return
		case <-child:
			for {
				if pid, _ := syscall.Wait4(-1, nil, syscall.WNOHANG, nil); pid <= 0 {
					break
				}
			}
		}
	}
}
"""


def build_pause_image() -> None:
    """The sandbox image, once per Docker engine: a static binary in an otherwise empty image."""
    if subprocess.run(["docker", "image", "inspect", PAUSE_IMAGE], capture_output=True).returncode == 0:
        return
    with tempfile.TemporaryDirectory() as work:
        src, rootfs = Path(work) / "src", Path(work) / "rootfs"
        src.mkdir()
        rootfs.mkdir()
        (src / "go.mod").write_text("module ft.local/pause\n\ngo 1.21\n")
        (src / "main.go").write_text(PAUSE_GO)
        subprocess.run(["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(rootfs / "pause"), "."],
                       cwd=src, env={**os.environ, "CGO_ENABLED": "0"}, check=True, timeout=600)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["docker", "import", "--change", 'ENTRYPOINT ["/pause"]', "--change", "USER 65535:65535",
                        "-", PAUSE_IMAGE], stdin=tar.stdout, check=True, capture_output=True, timeout=300)
        tar.stdout.close()
        tar.wait()


def _kubelet_config(root: Path, socket: Path, client_ca: Path) -> Path:
    config = root / "kubelet.yaml"
    config.write_text(yaml.safe_dump({
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "address": BRIDGE_IP, "port": free_port(), "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": free_port(),
        # Its API answers the API server's client certificate only (pod logs, exec).
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                           "x509": {"clientCAFile": str(client_ca)}},
        "authorization": {"mode": "AlwaysAllow"},
        "containerRuntimeEndpoint": f"unix://{socket}",
        "cgroupDriver": "cgroupfs", "cgroupsPerQOS": False, "enforceNodeAllocatable": [],
        "failCgroupV1": False, "failSwapOn": False,
        "podLogsDir": str(root / "pod-logs"),
        "serializeImagePulls": False, "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        # A test machine's disk is shared with much else; the kubelet must not evict for it.
        "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "localStorageCapacityIsolation": False,
        "makeIPTablesUtilChains": False,
        "syncFrequency": "5s", "fileCheckFrequency": "5s", "nodeStatusUpdateFrequency": "2s",
        "resolvConf": "", "maxPods": 64,
    }))
    return config


def start_node(plane: ControlPlane, scheduler: Path, kubelet: Path, root: Path | None = None,
               timeout: float = 120) -> Node:
    # The containerd socket's path must stay under the kernel's 108 bytes.
    root = root or Path(tempfile.mkdtemp(prefix="ft-node-", dir="/var/tmp"))
    build_pause_image()
    cni = root / "cni"
    _cni_config(cni)
    socket = root / "containerd.sock"
    procs: list[subprocess.Popen] = []
    node = Node(NODE_NAME, BRIDGE_IP, socket, root, procs)
    try:
        log = root / "containerd.log"
        procs.append(subprocess.Popen(["containerd", "--config", str(_containerd_config(root, socket, cni))],
                                      stdout=log.open("wb"), stderr=subprocess.STDOUT))
        wait_running("containerd", socket.exists, procs[-1], log, timeout)
        node.load_image(PAUSE_IMAGE)

        log = root / "kube-scheduler.log"
        procs.append(subprocess.Popen(
            [str(scheduler), "--kubeconfig", str(plane.kubeconfig(root / "scheduler.kubeconfig")),
             "--leader-elect=false", "--secure-port=0"],
            stdout=log.open("wb"), stderr=subprocess.STDOUT))

        log = root / "kubelet.log"
        procs.append(subprocess.Popen(
            [str(kubelet), "--kubeconfig", str(plane.kubeconfig(root / "kubelet.kubeconfig", plane.node_token)),
             "--config", str(_kubelet_config(root, socket, plane.ca_file.parent / "kubelet-ca.crt")), "--root-dir", str(root / "kubelet"),
             "--cert-dir", str(root / "kubelet-pki"), "--hostname-override", NODE_NAME, "--node-ip", BRIDGE_IP],
            stdout=log.open("wb"), stderr=subprocess.STDOUT))
        core = _core(plane)

        def ready() -> bool:
            try:
                conds = core.read_node(NODE_NAME).status.conditions or []
            except Exception:  # not registered yet
                return False
            return any(c.type == "Ready" and c.status == "True" for c in conds)

        wait_running("the kubelet's node to be Ready", ready, procs[-1], log, timeout)
    except BaseException:
        node.stop()
        raise
    return node


def _core(plane: ControlPlane):
    from kubernetes import client

    return client.CoreV1Api(plane.client())
