"""The few Kubernetes API calls the controller makes, on plain dicts.

Blocking (the kubernetes client is synchronous); the handlers run them in a thread
pool. Jobs go through CustomObjectsApi, which takes any group/version/plural and
plain dicts, so a Job is never round-tripped through the client's typed models.
Every call here has a matching rule in `controller.rbac.RULES`.
"""

from __future__ import annotations

import json
from typing import Any

import kubernetes.client
import kubernetes.config
from kubernetes.client.exceptions import ApiException

from jobs.common.names import GROUP, PLURAL, VERSION

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


def load_config() -> None:
    """In a pod: the service account; elsewhere: $KUBECONFIG or ~/.kube/config."""
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()


def _created(call: Any, *args: Any, **kwargs: Any) -> bool:
    """Make a create call; False when an object of that name already exists."""
    try:
        call(*args, **kwargs)
    except ApiException as err:
        if err.status == 409:
            return False
        raise
    return True


def _found(call: Any, *args: Any, **kwargs: Any) -> Any | None:
    """Make a read call; None when the object does not exist."""
    try:
        return call(*args, **kwargs)
    except ApiException as err:
        if err.status == 404:
            return None
        raise


class Conflict(Exception):
    """A write whose resourceVersion precondition failed: the object changed since it was read."""


# (connect, read) seconds. The client waits forever by default, and a call that never returns
# would hold its run's lock and a worker thread for good.
REQUEST_TIMEOUT = (10.0, 30.0)


class Kube:
    def __init__(self, pool_size: int = 16, timeout: tuple[float, float] = REQUEST_TIMEOUT):
        config = kubernetes.client.Configuration.get_default_copy()
        config.connection_pool_maxsize = pool_size
        client = kubernetes.client.ApiClient(config)
        self.custom = kubernetes.client.CustomObjectsApi(client)
        self.core = kubernetes.client.CoreV1Api(client)
        self.timeout = timeout

    # --- FineTuneRuns ------------------------------------------------------------------

    def get_run(self, namespace: str, name: str) -> dict[str, Any] | None:
        return _found(self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name,
                      _request_timeout=self.timeout)

    def patch_run(self, namespace: str, name: str, patch: dict[str, Any], resource_version: str | None = None) -> dict[str, Any]:
        """Merge-patch the run; with `resource_version`, only if it is still that version
        (else `Conflict`). The run as written."""
        return self._patch(self.custom.patch_namespaced_custom_object, namespace, name, patch, resource_version)

    def patch_run_status(self, namespace: str, name: str, status_patch: dict[str, Any],
                         resource_version: str | None = None) -> dict[str, Any]:
        """The same on the status subresource."""
        return self._patch(self.custom.patch_namespaced_custom_object_status, namespace, name,
                           {"status": status_patch}, resource_version)

    def _patch(self, call: Any, namespace: str, name: str, patch: dict[str, Any], resource_version: str | None) -> dict[str, Any]:
        if resource_version is not None:
            # A resourceVersion in a merge patch is a precondition: the server answers 409 if it moved on.
            patch = {**patch, "metadata": {**patch.get("metadata", {}), "resourceVersion": resource_version}}
        try:
            return call(GROUP, VERSION, namespace, PLURAL, name, patch, _request_timeout=self.timeout)
        except ApiException as err:
            if err.status == 409:
                raise Conflict(f"{namespace}/{name}: changed since it was read") from err
            raise

    def set_run_suspend(self, namespace: str, name: str, suspend: bool) -> None:
        self.patch_run(namespace, name, {"spec": {"suspend": suspend}})

    # --- Jobs --------------------------------------------------------------------------

    def create_job(self, namespace: str, job: dict[str, Any]) -> bool:
        """Create the Job; False when one of that name already exists."""
        return _created(self.custom.create_namespaced_custom_object, "batch", "v1", namespace, "jobs", job,
                        _request_timeout=self.timeout)

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return _found(self.custom.get_namespaced_custom_object, "batch", "v1", namespace, "jobs", name,
                      _request_timeout=self.timeout)

    def delete_job(self, namespace: str, name: str) -> None:
        try:
            # Background: the Job goes at once, its pods right after.
            self.custom.delete_namespaced_custom_object(
                "batch", "v1", namespace, "jobs", name, propagation_policy="Background",
                _request_timeout=self.timeout,
            )
        except ApiException as err:
            if err.status != 404:
                raise

    def job_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        resp = self.core.list_namespaced_pod(
            namespace, label_selector=f"{JOB_NAME_LABEL}={job}", _preload_content=False,
            _request_timeout=self.timeout,
        )
        items = json.loads(resp.data).get("items", [])
        # Filtered again here: a selector a server ignores must not hand us other Jobs' pods.
        return [p for p in items if (p.get("metadata", {}).get("labels") or {}).get(JOB_NAME_LABEL) == job]

    # --- Services ----------------------------------------------------------------------

    def create_service(self, namespace: str, service: dict[str, Any]) -> bool:
        """Create the Service; False when one of that name already exists."""
        return _created(self.core.create_namespaced_service, namespace, service, _request_timeout=self.timeout)

    def get_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        resp = _found(self.core.read_namespaced_service, name, namespace, _preload_content=False,
                      _request_timeout=self.timeout)
        return json.loads(resp.data) if resp is not None else None

    # --- Secrets -----------------------------------------------------------------------

    def secret_keys(self, namespace: str, name: str) -> set[str] | None:
        """The keys a Secret holds (never its values), or None when it does not exist."""
        resp = _found(self.core.read_namespaced_secret, name, namespace, _preload_content=False,
                      _request_timeout=self.timeout)
        if resp is None:
            return None
        body = json.loads(resp.data)
        return set(body.get("data") or {}) | set(body.get("stringData") or {})
