"""``/v1/check`` on loopback against the raw embedder, in one run.

    python benchmarks/load_check.py [--requests 160] [--seconds 60]

First the embedder alone, in this process, on the same photos: the model on ready tensors, and
the whole path from JPEG bytes (decode, transform, model) in batches of 16. Then a real
``cfd serve`` per configuration (alignment on or off, micro-batching on or off): closed loops of
1, 4 and 16 clients, then an open loop at half the 16-client throughput (requests sent on a fixed
schedule, whatever the answers), whose p99 is the latency at half load. The load generator sends
prebuilt HTTP/1.1 requests over keep-alive sockets, so it costs the 2 cores little next to the
server. Every loop is bounded in request count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.service.helpers import Server, auth, make_keys  # noqa: E402
from tests.synthetic import STYLES, product_photo  # noqa: E402

CONCURRENCY = (1, 4, 16)
CONFIGS = {"alignment, micro-batching (default)": ["--max-wait-ms", "5"],
           "no alignment, micro-batching": ["--no-alignment", "--max-wait-ms", "5"],
           "alignment, no micro-batching": ["--no-micro-batching"]}
BOUNDARY = "cfd-load-check"
REUSE_IDLE_S = 2.0  # uvicorn closes a keep-alive connection idle for 5 s


def _photos() -> list[bytes]:
    return [product_photo(brand, 9000 + i, size=256, fmt="JPEG") for i in range(8) for brand in STYLES]


# --- the embedder alone ---


def embedder_throughput(photos: list[bytes], passes: int = 3) -> dict:
    """Images a second through the service's embedder (its batch size and precision), best of
    ``passes``: on ready tensors, and from JPEG bytes (decode and transform included)."""
    import torch

    from detector.memory import keep_freed_memory
    from detector.images import load_image
    from detector.model_folder import load_model

    keep_freed_memory()  # as `cfd serve` does
    embedder = load_model().embedder()
    batch = embedder.batch_size
    tensors = embedder.preprocess([load_image(p) for p in photos])
    embedder.embed_tensor(tensors[:batch])  # warm-up

    def best(run) -> float:
        times = []
        for _ in range(passes):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        return round(len(photos) / min(times), 1)

    def from_bytes() -> None:
        for i in range(0, len(photos), batch):
            embedder.embed([load_image(p) for p in photos[i : i + batch]])

    return {"precision": embedder.precision, "batch_size": batch, "threads": torch.get_num_threads(),
            "model_images_per_s": best(lambda: embedder.embed_tensor(tensors)),
            "from_jpeg_images_per_s": best(from_bytes)}


# --- the load generator ---


def _request(host: str, port: int, key: str, photo: bytes) -> bytes:
    body = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="brand"\r\n\r\nacme\r\n'
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="p.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n").encode() + photo + f"\r\n--{BOUNDARY}--\r\n".encode()
    headers = {"Host": f"{host}:{port}", **auth(key), "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
               "Content-Length": str(len(body))}
    lines = ["POST /v1/check HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode() + body


class _Connection:
    """One keep-alive HTTP/1.1 connection sending prebuilt requests."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> "_Connection":
        return cls(*await asyncio.open_connection(host, port))

    async def send(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
        await self.reader.readexactly(length)
        return int(lines[0].split()[1])

    def close(self) -> None:
        self.writer.close()


class _Load:
    def __init__(self, url: str, key: str, photos: list[bytes]):
        self.host, port = url.removeprefix("http://").split(":")
        self.port = int(port)
        self.requests = [_request(self.host, self.port, key, p) for p in photos]

    async def closed_loop(self, clients: int, count: int, seconds: float) -> dict:
        """``clients`` connections, each sending its next request when the last is answered."""
        latencies, errors, counter = [], 0, iter(range(count))
        deadline = time.perf_counter() + seconds

        async def client() -> None:
            nonlocal errors
            connection = await _Connection.open(self.host, self.port)
            try:
                for i in counter:
                    if time.perf_counter() > deadline:
                        return
                    start = time.perf_counter()
                    status = await connection.send(self.requests[i % len(self.requests)])
                    latencies.append(time.perf_counter() - start)
                    errors += status != 200
            finally:
                connection.close()

        begin = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return _summary({"clients": clients}, latencies, errors, time.perf_counter() - begin)

    async def open_loop(self, rate: float, count: int) -> dict:
        """``count`` requests sent ``1/rate`` seconds apart, each on an idle connection (or a new one).
        A connection idle for ``REUSE_IDLE_S`` is closed, not reused: the server may have closed it."""
        latencies, errors, idle = [], 0, []

        async def connection_for_next() -> _Connection:
            while idle:
                connection, since = idle.pop()
                if time.perf_counter() - since < REUSE_IDLE_S:
                    return connection
                connection.close()
            return await _Connection.open(self.host, self.port)

        async def one(i: int) -> None:
            nonlocal errors
            connection = await connection_for_next()
            start = time.perf_counter()
            status = await connection.send(self.requests[i % len(self.requests)])
            latencies.append(time.perf_counter() - start)
            errors += status != 200
            idle.append((connection, time.perf_counter()))

        begin = time.perf_counter()
        tasks = []
        for i in range(count):
            await asyncio.sleep(max(0.0, begin + i / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        for connection, _ in idle:
            connection.close()
        return _summary({"rate_rps": round(rate, 2)}, latencies, errors, time.perf_counter() - begin)


def _summary(row: dict, latencies: list[float], errors: int, elapsed: float) -> dict:
    latencies = sorted(latencies)
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
    return {**row, "requests": len(latencies), "errors": errors, "seconds": round(elapsed, 2),
            "throughput_rps": round(len(latencies) / elapsed, 2), "p50_ms": round(pick(0.5), 1),
            "p95_ms": round(pick(0.95), 1), "p99_ms": round(pick(0.99), 1),
            "mean_ms": round(statistics.mean(latencies) * 1000, 1)}


def ready_load(server: Server, keys: dict, photos: list[bytes]) -> _Load:
    """Four references for each brand on ``server``, and a load of ``photos`` on it, warmed up."""
    with httpx.Client(timeout=120) as client:
        for brand in STYLES:
            client.post(f"{server.url}/v1/brands/{brand}/references", headers=auth(keys["admin"]),
                        files=[("files", (f"{s}.png", product_photo(brand, s), "image/png")) for s in range(4)])
    load = _Load(server.url, keys["pipeline"], photos)
    asyncio.run(load.closed_loop(2, 16, 30))  # warm-up
    return load


def serve_and_load(data_dir: Path, keys: dict, flags: list[str], photos: list[bytes], requests: int, seconds: float) -> dict:
    server = Server(data_dir, *flags).start()
    try:
        load = ready_load(server, keys, photos)
        loops = [asyncio.run(load.closed_loop(c, requests, seconds)) for c in CONCURRENCY]
        half = asyncio.run(load.open_loop(loops[-1]["throughput_rps"] / 2, min(requests, int(loops[-1]["throughput_rps"] * seconds / 2))))
        return {"closed_loop": loops, "half_load": half}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=160, help="requests per load level")
    parser.add_argument("--seconds", type=float, default=60, help="time bound per load level")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    photos = _photos()
    embedder = embedder_throughput(photos)
    print(f"embedder ({embedder['precision']}, batch {embedder['batch_size']}, {embedder['threads']} threads): "
          f"{embedder['model_images_per_s']} img/s on tensors, {embedder['from_jpeg_images_per_s']} img/s from JPEG bytes")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, flags) in enumerate(CONFIGS.items()):
            data_dir = Path(tmp) / f"var{i}"
            results[name] = serve_and_load(data_dir, make_keys(data_dir, brands=tuple(STYLES)), flags, photos,
                                           args.requests, args.seconds)
    base = embedder["from_jpeg_images_per_s"]
    print(f"{'configuration':<38}{'clients':>8}{'req':>6}{'err':>5}{'rps':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for name, r in results.items():
        for row in r["closed_loop"]:
            print(f"{name:<38}{row['clients']:>8}{row['requests']:>6}{row['errors']:>5}{row['throughput_rps']:>9}"
                  f"{row['p50_ms']:>9}{row['p95_ms']:>9}{row['p99_ms']:>9}")
        h = r["half_load"]
        print(f"{name:<38}{'half':>8}{h['requests']:>6}{h['errors']:>5}{h['throughput_rps']:>9}{h['p50_ms']:>9}{h['p95_ms']:>9}{h['p99_ms']:>9}")
        r["ratio_16_clients_vs_embedder"] = round(r["closed_loop"][-1]["throughput_rps"] / base, 2)
        print(f"{'':<38}16 clients / embedder from JPEG bytes: {r['ratio_16_clients_vs_embedder']}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "load_check.json").write_text(json.dumps({"embedder": embedder, "results": results}, indent=2) + "\n")
    _plot(embedder, results, args.out / "load_check.png")


def _plot(embedder: dict, results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, r in results.items():
        clients = [row["clients"] for row in r["closed_loop"]]
        axes[0].plot(clients, [row["throughput_rps"] for row in r["closed_loop"]], marker="o", label=name)
        axes[1].plot(clients, [row["p99_ms"] for row in r["closed_loop"]], marker="o", label=name)
    axes[0].axhline(embedder["from_jpeg_images_per_s"], color="grey", ls="--", label="embedder alone, from JPEG bytes")
    axes[0].axhline(0.8 * embedder["from_jpeg_images_per_s"], color="grey", ls=":", label="80% of it")
    for ax, label in zip(axes, ("throughput (requests/s)", "p99 latency (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(CONCURRENCY), [str(c) for c in CONCURRENCY])
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    fig.suptitle("/v1/check on loopback, 1 photo per request")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
