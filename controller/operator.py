"""Run the controller: kopf with the handlers, a liveness endpoint and metrics.

    ftctl controller            # or: python -m controller
"""

from __future__ import annotations

import asyncio
import logging
import threading

import kopf

from controller.handlers import build_registry
from controller.settings import ControllerSettings


async def serve(settings: ControllerSettings, stop_flag: asyncio.Event | threading.Event | None = None) -> None:
    """The operator until it is stopped (SIGTERM/SIGINT, or `stop_flag`)."""
    await kopf.operator(
        registry=build_registry(settings),
        standalone=True,  # one replica (Deployment strategy Recreate): no peering needed
        clusterwide=settings.clusterwide,
        namespaces=settings.namespaces,
        liveness_endpoint=settings.liveness,
        stop_flag=stop_flag,
    )


def main(namespaces: list[str] | None = None, verbose: bool = False) -> None:
    settings = ControllerSettings.from_env()
    if namespaces:
        settings = settings.model_copy(update={"namespaces": tuple(namespaces), "clusterwide": False})
    kopf.configure(verbose=verbose)
    if not verbose:
        # kopf logs every handler call at INFO: with many runs, that is most of the log.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    asyncio.run(serve(settings))
