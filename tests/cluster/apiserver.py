"""A real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver and kube-controller-manager
of one pinned release, built from Go modules by `make cluster-bin` (tests/cluster/gobuild.sh),
with RBAC authorization, service-account tokens and the PodSecurity admission. The
controller-manager runs the Job controller and the garbage collector. Without the node of
node.py (kube-scheduler, kubelet), pods are created and stay Pending. It proves what the emulator cannot (schema
admission, the status subresource, RBAC, tokens, owner references collected for real)."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.miniokit import CACHE_BIN, free_port

KUBERNETES_VERSION = os.environ.get("FT_KUBERNETES_VERSION", "v1.34.4")
ETCD_VERSION = os.environ.get("FT_ETCD_VERSION", "v3.6.5")
# A range the API server allocates Service IPs from; no traffic is ever sent to it.
SERVICE_RANGE = "10.96.0.0/24"


def binaries() -> tuple[Path, Path, Path] | None:
    """etcd, kube-apiserver and kube-controller-manager, if `make cluster-bin` built them."""
    kube = CACHE_BIN / f"kubernetes-{KUBERNETES_VERSION}"
    found = (CACHE_BIN / f"etcd-{ETCD_VERSION}", kube / "kube-apiserver", kube / "kube-controller-manager")
    return found if all(p.is_file() for p in found) else None


def _signing_key(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    path.with_suffix(".pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def _kubelet_client_cert(certs: Path) -> None:
    """A CA the kubelet trusts for its API, and the API server's client certificate from it
    (pod logs, exec): kubelet-ca.crt, kubelet-client.crt and kubelet-client.key."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(cn: str, org: str | None = None) -> x509.Name:
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        return x509.Name(attrs + ([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)] if org else []))

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def cert(subject: x509.Name, public_key, ca: bool) -> x509.Certificate:
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(name("ft-kubelet-ca"))
                .public_key(public_key).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                .sign(ca_key, hashes.SHA256()))

    pem = serialization.Encoding.PEM
    (certs / "kubelet-ca.crt").write_bytes(cert(name("ft-kubelet-ca"), ca_key.public_key(), True).public_bytes(pem))
    (certs / "kubelet-client.crt").write_bytes(
        cert(name("kube-apiserver-kubelet-client", "system:masters"), key.public_key(), False).public_bytes(pem))
    (certs / "kubelet-client.key").write_bytes(key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


@dataclass
class ControlPlane:
    host: str
    url: str
    ca_file: Path
    admin_token: str
    node_token: str
    root: Path
    procs: list[subprocess.Popen]

    def kubeconfig(self, path: Path, token: str | None = None) -> Path:
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "ft",
            "clusters": [{"name": "ft", "cluster": {"server": self.url, "certificate-authority": str(self.ca_file)}}],
            "users": [{"name": "ft", "user": {"token": token or self.admin_token}}],
            "contexts": [{"name": "ft", "context": {"cluster": "ft", "user": "ft"}}],
        }))
        return path

    def client(self, token: str | None = None):
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(str(self.kubeconfig(self.root / f"kc-{uuid.uuid4().hex[:6]}", token)),
                                client_configuration=cfg)
        return client.ApiClient(cfg)

    def requests_by(self, username: str) -> dict[str, int]:
        """Requests `username` (a ServiceAccount) made so far, by verb and resource[/subresource]."""
        counts: dict[str, int] = {}
        audit = self.root / "audit.log"
        for line in audit.read_text().splitlines() if audit.exists() else []:
            event = json.loads(line)
            if event["user"]["username"] == username:
                ref = event.get("objectRef") or {}
                what = "/".join(p for p in (ref.get("resource"), ref.get("subresource")) if p)
                key = f"{event['verb']} {what}"
                counts[key] = counts.get(key, 0) + 1
        return counts

    def stop(self) -> None:
        stop_processes(self.procs)


def stop_processes(procs: list[subprocess.Popen], timeout: float = 20) -> None:
    """Last started, first stopped: SIGTERM, then SIGKILL after `timeout`."""
    for proc in reversed(procs):
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_running(what: str, check, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if check():
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def start(root: Path, etcd: Path, apiserver: Path, controller_manager: Path, host: str = "127.0.0.1",
          timeout: float = 120) -> ControlPlane:
    """The control plane; the API server listens on `host` only (loopback, or the pod bridge's
    address so that pods reach it too)."""
    import ssl
    import urllib.request

    root.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen] = []
    client_port, peer_port, secure_port = free_port(), free_port(), free_port()
    etcd_url = f"http://127.0.0.1:{client_port}"
    etcd_log = root / "etcd.log"
    procs.append(subprocess.Popen(
        [str(etcd), "--data-dir", str(root / "etcd"), "--listen-client-urls", etcd_url,
         "--advertise-client-urls", etcd_url, "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
         "--initial-cluster", f"default=http://127.0.0.1:{peer_port}", "--log-level", "warn"],
        stdout=etcd_log.open("wb"), stderr=subprocess.STDOUT))

    def etcd_ok() -> bool:
        try:
            with urllib.request.urlopen(f"{etcd_url}/health", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        wait_running("etcd", etcd_ok, procs[0], etcd_log, timeout)
        certs = root / "certs"
        certs.mkdir()
        _signing_key(certs / "sa.key")
        _kubelet_client_cert(certs)
        admin_token, node_token = uuid.uuid4().hex, uuid.uuid4().hex
        (root / "tokens.csv").write_text(f'{admin_token},ft-admin,ft-admin,"system:masters"\n'
                                         f'{node_token},system:node:ft-node,ft-node,"system:nodes"\n')
        # One audit line per request of a ServiceAccount (the controller's): requests counted by who made them.
        (root / "audit-policy.yaml").write_text(yaml.safe_dump({
            "apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived", "ResponseStarted"],
            "rules": [{"level": "Metadata", "userGroups": ["system:serviceaccounts"]}, {"level": "None"}]}))
        api_log = root / "kube-apiserver.log"
        procs.append(subprocess.Popen(
            [str(apiserver), "--etcd-servers", etcd_url, "--bind-address", host,
             "--advertise-address", host, "--secure-port", str(secure_port), "--cert-dir", str(certs),
             "--service-cluster-ip-range", SERVICE_RANGE, "--authorization-mode", "Node,RBAC",
             "--token-auth-file", str(root / "tokens.csv"),
             "--service-account-issuer", "https://kubernetes.default.svc",
             "--service-account-key-file", str(certs / "sa.pub"),
             "--service-account-signing-key-file", str(certs / "sa.key"),
             "--enable-admission-plugins", "PodSecurity,ServiceAccount,NamespaceLifecycle,NodeRestriction",
             "--allow-privileged=false", "--profiling=false",
             "--audit-policy-file", str(root / "audit-policy.yaml"), "--audit-log-path", str(root / "audit.log"),
             "--audit-log-mode", "blocking",
             # Node names do not resolve here; the kubelet is reached at its address.
             "--kubelet-preferred-address-types", "InternalIP",
             "--kubelet-client-certificate", str(certs / "kubelet-client.crt"),
             "--kubelet-client-key", str(certs / "kubelet-client.key")],
            stdout=api_log.open("wb"), stderr=subprocess.STDOUT))
        url = f"https://{host}:{secure_port}"
        insecure = ssl.create_default_context()
        insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE

        def api_ok() -> bool:
            req = urllib.request.Request(f"{url}/readyz", headers={"Authorization": f"Bearer {admin_token}"})
            try:
                with urllib.request.urlopen(req, timeout=2, context=insecure) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_running("kube-apiserver", api_ok, procs[1], api_log, timeout)
        # The serving certificate the API server made for itself, CA included: clients verify it.
        plane = ControlPlane(host, url, certs / "apiserver.crt", admin_token, node_token, root, procs)
        kcm_log = root / "kube-controller-manager.log"
        procs.append(subprocess.Popen(
            [str(controller_manager), "--kubeconfig", str(plane.kubeconfig(root / "admin.kubeconfig")),
             "--leader-elect=false", "--secure-port=0", "--controllers=*",
             "--service-account-private-key-file", str(certs / "sa.key"), "--root-ca-file", str(certs / "apiserver.crt"),
             "--concurrent-job-syncs=20", "--concurrent-gc-syncs=20"],
            stdout=kcm_log.open("wb"), stderr=subprocess.STDOUT))
        time.sleep(0.5)
        if procs[2].poll() is not None:
            raise RuntimeError(f"kube-controller-manager exited:\n{kcm_log.read_text()[-3000:]}")
    except BaseException:
        for p in procs:
            p.kill()
        raise
    return plane
