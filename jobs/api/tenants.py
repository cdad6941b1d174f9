"""API keys: each bearer key maps to one tenant, whose namespace prefixes its runs and files.

The keys file (a mounted Secret in a cluster) is YAML or JSON: `{<key>: <namespace>}`. Keys are
compared in constant time and never logged or echoed; a tenant is named by its namespace only.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from jobs.common.errors import InvalidInput

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
MIN_KEY_LENGTH = 20


@dataclass(frozen=True)
class Tenant:
    namespace: str


class KeyRing:
    def __init__(self, keys: dict[str, str]):
        if not keys:
            raise InvalidInput("the API keys file lists no keys; anonymous access is not offered")
        for i, (key, namespace) in enumerate(keys.items(), start=1):
            if not isinstance(key, str) or len(key) < MIN_KEY_LENGTH:
                raise InvalidInput(f"API key #{i}: keys must be strings of at least {MIN_KEY_LENGTH} characters")
            if not isinstance(namespace, str) or not DNS_LABEL.match(namespace):
                raise InvalidInput(f"API key #{i}: namespace {namespace!r} is not a DNS label")
        self._keys = [(k.encode(), Tenant(ns)) for k, ns in keys.items()]

    @classmethod
    def from_file(cls, path: Path) -> KeyRing:
        try:
            loaded = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise InvalidInput(f"{path}: cannot read the API keys file: {err}") from None
        if not isinstance(loaded, dict):
            raise InvalidInput(f"{path}: expected a mapping of API key to namespace")
        return cls(loaded)

    def namespaces(self) -> list[str]:
        return sorted({t.namespace for _, t in self._keys})

    def tenant(self, presented: str) -> Tenant | None:
        given = presented.encode()
        found = None
        for key, tenant in self._keys:  # no early exit: the time does not depend on which key matched
            if hmac.compare_digest(key, given):
                found = tenant
        return found
