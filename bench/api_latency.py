"""OpenAI-compatible API: latency of jobs.create, jobs.retrieve and jobs.list_events under 100
concurrent openai clients (p50/p99), against `ftctl serve`'s app on 127.0.0.1.

    python -m bench.api_latency [--clients 100] [--rounds 5]

Jobs are recorded but not executed (the worker's submit is a no-op here): this times the API
path (auth, validation, template, store writes), not training.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

KEY = "sk-bench-key-0123456789abcdef"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start_server(prefix: str):
    """The API app with the shipped template and an empty file store under uvicorn on a free
    127.0.0.1 port, in a thread: (the server, its /v1 URL)."""
    import uvicorn

    from jobs.api.app import Settings, create_app
    from jobs.api.template import JobTemplate
    from jobs.api.tenants import KeyRing
    from jobs.common.store import open_store

    root = Path(tempfile.mkdtemp(prefix=prefix))
    app = create_app(Settings(store=open_store((root / "store").as_uri()), keyring=KeyRing({KEY: "bench"}),
                              template=JobTemplate.from_file(), work_root=root / "work"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]  # port 0: the kernel picked a free one
    return server, f"http://127.0.0.1:{port}/v1"


def main(argv: Sequence[str] | None = None) -> int:
    import openai

    from jobs.api import worker

    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    worker.LocalWorker.submit = lambda self, ns, job_id, run: None
    server, base = start_server("bench-api-")
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
            for i in range(20)]
    setup = openai.OpenAI(base_url=base, api_key=KEY, max_retries=0)
    f = setup.files.create(file=("t.jsonl", io.BytesIO("".join(json.dumps(r) + "\n" for r in rows).encode())),
                           purpose="fine-tune")
    times: dict[str, list[float]] = {"create": [], "retrieve": [], "list_events": []}

    def client_work(_: int) -> None:
        client = openai.OpenAI(base_url=base, api_key=KEY, max_retries=0)
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            job = client.fine_tuning.jobs.create(training_file=f.id, model="SmolLM2-135M-Instruct")
            t1 = time.perf_counter()
            client.fine_tuning.jobs.retrieve(job.id)
            t2 = time.perf_counter()
            client.fine_tuning.jobs.list_events(job.id, limit=20)
            t3 = time.perf_counter()
            times["create"].append(t1 - t0)
            times["retrieve"].append(t2 - t1)
            times["list_events"].append(t3 - t2)

    started = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        list(pool.map(client_work, range(args.clients)))
    wall = time.perf_counter() - started
    for name, values in times.items():
        print(f"{name:12} n={len(values)} p50={statistics.median(values) * 1000:.0f} ms "
              f"p99={_percentile(values, 0.99) * 1000:.0f} ms")
    print(f"{args.clients} clients x {args.rounds} rounds in {wall:.1f}s")
    server.should_exit = True
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
