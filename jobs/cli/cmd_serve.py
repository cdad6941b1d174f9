"""ftctl serve: the OpenAI-compatible fine-tuning API, running jobs on this machine.

    ftctl serve --keys keys.yaml [--template template.yaml] [--port 8000]
    ftctl serve --backend cluster ...   # jobs become FineTuneRuns in the key's namespace (the chart's api)

Point the openai SDK at it: OpenAI(base_url="http://127.0.0.1:8000/v1", api_key=<a key in keys.yaml>).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from jobs.cli.local_store import store_uri
from jobs.common.errors import InvalidInput


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the OpenAI-compatible fine-tuning API (files, fine_tuning.jobs)")
    p.add_argument("--keys", type=Path, default=os.environ.get("FT_API_KEYS_FILE"),
                   help="YAML/JSON mapping API key -> namespace (default: FT_API_KEYS_FILE)")
    p.add_argument("--template", type=Path, help="job template (default: the packaged jobs/api/default_template.yaml)")
    p.add_argument("--store", help="store URI (default: FT_STORE_URI, ./ft-store)")
    p.add_argument("--work-dir", type=Path, default=Path(".ft-work/api"), help="scratch and logs of the runs")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-upload-mb", type=int, default=512, help="largest accepted upload (default 512 MiB)")
    p.add_argument("--backend", choices=("local", "cluster"), default=os.environ.get("FT_API_BACKEND", "local"),
                   help="local: run jobs here, one at a time; cluster: create FineTuneRuns through the "
                   "Kubernetes API (in-cluster config or $KUBECONFIG) for the controller to run")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from jobs.api.app import Settings, create_app
        from jobs.api.template import DEFAULT_TEMPLATE, JobTemplate
        from jobs.api.tenants import KeyRing
    except ImportError as err:
        raise InvalidInput(f"ftctl serve needs the api extra (pip install 'finetune-operator[api]'): {err}") from None
    from jobs.common.store import open_store

    if args.keys is None:
        raise InvalidInput("--keys (or FT_API_KEYS_FILE) is required: the API has no anonymous access")
    if args.backend == "cluster":
        from kubernetes.config import ConfigException

        from controller.kube import load_config

        try:
            load_config()
        except ConfigException as err:
            raise InvalidInput(f"--backend cluster: no cluster to talk to (in-cluster config or $KUBECONFIG): {err}") from None
    settings = Settings(
        store=open_store(store_uri(None, args.store)),
        keyring=KeyRing.from_file(args.keys),
        template=JobTemplate.from_file(args.template or DEFAULT_TEMPLATE),
        work_root=args.work_dir.resolve(),
        max_upload_bytes=args.max_upload_mb * 1024 * 1024,
        cluster=args.backend == "cluster",
    )
    uvicorn.run(create_app(settings), host=args.host, port=args.port)
    return 0
