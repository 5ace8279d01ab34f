"""Ray: connect to a cluster (``--ray-address``) or start a local instance, and run a callable class
over items as an actor pool, yielding result batches as they finish.

A local instance gets no dashboard, a bounded object store and no usage reporting. Ray's own
servers listen on every interface of the machine (its options do not confine them); the tests and
benchmarks run it in a network namespace whose only interface is loopback (see docs/scaling.md).
"""

from __future__ import annotations

import os
from typing import Any, Iterator

from detector.errors import InvalidInputError

OBJECT_STORE_BYTES = 512 * 1024 * 1024  # a local instance's shared memory for batches in flight


def start_ray(address: str | None, *, cpus: int) -> None:
    try:
        import ray
    except ImportError:
        raise InvalidInputError("batch work needs Ray: pip install 'counterfeit-detector[batch]'") from None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports leave the machine unless asked for
    if address is not None:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=cpus, include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES, log_to_driver=False)


def stop_ray() -> None:
    import ray

    ray.shutdown()


def map_with_actors(items: list[dict[str, Any]], actor_class: type, constructor: dict[str, Any], *, actors: int,
                    cpus_per_actor: float, batch_size: int) -> Iterator[Any]:
    """``actor_class(**constructor)`` in ``actors`` Ray actors, each called on batches of ``items``
    (a dict of columns); yields each result batch as a pyarrow table when it is done."""
    import ray.data

    dataset = ray.data.from_items(items, override_num_blocks=max(1, -(-len(items) // batch_size)))
    mapped = dataset.map_batches(actor_class, fn_constructor_kwargs=constructor, concurrency=actors, num_cpus=cpus_per_actor,
                                 batch_size=batch_size, batch_format="numpy")
    yield from mapped.iter_batches(batch_size=None, batch_format="pyarrow")
