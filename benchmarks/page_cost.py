"""What new memory costs on this machine: the first write to a 4 KiB page, fresh and reused.

A history keeps every step's attention rows (``engine/row_store.py``): at 2k context SmolLM2's
are 2.2 MiB a step, so each step of a long run needs 2.2 MiB of memory the process never had.
What a new page costs depends on the machine, not on lmscope: on bare metal the kernel zeroes
it (a fraction of a microsecond); in a virtual machine whose memory the host backs lazily, the
first touch of a guest page also faults into the host. This script measures, in one run:

* ``fresh``: pages of a new anonymous mapping kept alive, so that each round takes memory the
  process did not have before (as a growing history does);
* ``reused``: a mapping freed and made again, so that its pages are ones the kernel just got back;
* ``store``: :class:`RowStore` writes of 2.2 MiB (one SmolLM2 step's rows at 2k), into new chunks
  through the page cache (``LMSCOPE_ROW_WRITES=buffered``), then straight to the disk (``O_DIRECT``,
  the store's default for a large write into pages not prepared: a continue's hand-over), then
  into pages ``RowStore.prepare`` zeroed before each (as the app does between single steps).

Which pages a round gets is the kernel's choice (a "fresh" round may get pages another process
just freed), so rounds differ; the store's writes are the steady figure.

    python benchmarks/page_cost.py [--mib 512] [--rounds 3]
"""

from __future__ import annotations

import argparse
import mmap
import statistics
import time

import numpy as np

from lmscope.engine.row_store import RowStore

PAGE = 4096
STEP_ROWS = (30, 9, 1, 2048)  # SmolLM2's [layer, head, query, key_pos] at 2k context


def touch_us(mapping: mmap.mmap) -> float:
    """Microseconds a page to write one byte into every page of ``mapping``."""
    pages = np.frombuffer(mapping, dtype=np.uint8)
    began = time.perf_counter()
    pages[::PAGE] = 1
    seconds = time.perf_counter() - began
    del pages  # a mapping with a live view cannot be closed
    return seconds / (len(mapping) // PAGE) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=512, help="memory touched a round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = args.mib << 20
    kept, fresh, reused = [], [], []
    for _ in range(args.rounds):
        mapping = mmap.mmap(-1, size)
        fresh.append(touch_us(mapping))
        kept.append(mapping)  # kept: the next round must take memory of its own
    for _ in range(args.rounds):
        mapping = mmap.mmap(-1, size)
        reused.append(touch_us(mapping))
        mapping.close()  # closed: the next round gets these pages back
    rows = np.random.default_rng(0).random(STEP_ROWS, dtype=np.float32)
    steps = args.mib * 2 // 3  # 2/3 of a step per MiB: about 1.4 times the bytes of a round above
    writes = store_writes(rows, steps, prepare=False, direct=False)
    direct_writes = store_writes(rows, steps, prepare=False, direct=True)
    prepared_writes = store_writes(rows, steps, prepare=True, direct=True)
    print(f"first write to a page, fresh memory:  {statistics.median(fresh):6.2f} us (rounds: "
          + ", ".join(f"{value:.2f}" for value in fresh) + ")")
    print(f"first write to a page, reused memory: {statistics.median(reused):6.2f} us (rounds: "
          + ", ".join(f"{value:.2f}" for value in reused) + ")")
    print(f"RowStore write of one 2k step's rows ({rows.nbytes / 2**20:.1f} MiB), buffered: median "
          f"{statistics.median(writes):.2f} ms, mean {statistics.mean(writes):.2f} ms, max {max(writes):.2f} ms "
          f"over {len(writes)} steps")
    print(f"the same, straight to the disk (O_DIRECT): median "
          f"{statistics.median(direct_writes):.2f} ms, mean {statistics.mean(direct_writes):.2f} ms, "
          f"max {max(direct_writes):.2f} ms")
    print(f"the same, each into pages prepared between steps (RowStore.prepare): median "
          f"{statistics.median(prepared_writes):.2f} ms, max {max(prepared_writes):.2f} ms")
    print(f"fresh_page_us={statistics.median(fresh):.2f} reused_page_us={statistics.median(reused):.2f} "
          f"store_write_ms={statistics.median(writes):.2f} "
          f"direct_store_write_ms={statistics.median(direct_writes):.2f} "
          f"prepared_store_write_ms={statistics.median(prepared_writes):.2f}")


def store_writes(rows: np.ndarray, steps: int, prepare: bool, direct: bool) -> list[float]:
    """Milliseconds of each of ``steps`` RowStore writes of ``rows`` (one step's), every one kept
    as a history keeps its steps; with ``prepare``, each after an untimed ``RowStore.prepare``
    of its bytes, as the app prepares the next step's pages between steps; ``direct``: large
    writes into pages not prepared go straight to the disk, where the file system allows."""
    store, views, writes = RowStore(direct=direct), [], []
    for _ in range(steps):
        if prepare:
            store.prepare(rows.nbytes)
        slot = store.reserve(rows.shape)
        began = time.perf_counter()
        store.write_array(slot, rows)
        writes.append((time.perf_counter() - began) * 1e3)
        views.append(store.view(slot))
    return writes


if __name__ == "__main__":
    main()
