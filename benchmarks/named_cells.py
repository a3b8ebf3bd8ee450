"""Named cells (issue 14): warm-edit times and module sizes, measured through
``compile_cell`` on the shared runtime. Run: ``python benchmarks/named_cells.py [--repeat 5]``.

Each timed build is a new cell text (a constant changed), so every one is a cache miss
with the dependency build warm: (a) a plain cell, (b) a cell using a named cell
upstream, (c) the named cell itself (a dylib)."""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

from ipy_rustasync._pipeline.cells import compile_cell

UPSTREAM = """
use std::sync::atomic::{{AtomicU64, Ordering}};
use pyo3::prelude::*;
pub static COUNTER: AtomicU64 = AtomicU64::new({k});
pub fn bump() -> u64 {{ COUNTER.fetch_add(1, Ordering::SeqCst) + 1 }}
#[pyclass]
pub struct Ticket {{ pub n: u64 }}
pub fn ticket(n: u64) -> Ticket {{ Ticket {{ n }} }}
pub async fn later(n: u64) -> u64 {{ tokio::time::sleep(std::time::Duration::from_millis(1)).await; n }}
"""
PLAIN = "pub async fn f(x: u64) -> u64 {{ x + {k} }}\npub fn g() -> u64 {{ {k} }}\n"
DOWN = "use orders::{{bump, Ticket}};\nuse pyo3::prelude::*;\npub fn g() -> u64 {{ bump() + {k} }}\npub fn read(t: PyRef<Ticket>) -> u64 {{ t.n + {k} }}\n"


def timed(source: str, **kw: object) -> tuple[float, int, object]:
    start = time.perf_counter()
    c = compile_cell(source, first_line=2, **kw)  # type: ignore[arg-type]
    assert not c.build.cached
    return time.perf_counter() - start, c.build.path.stat().st_size, c


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:8]
    runs: dict[str, list[float]] = {"plain cell": [], "cell using a named cell": [], "the named cell (dylib)": []}
    sizes: dict[str, int] = {}
    _, _, up = timed(UPSTREAM.format(k=0) + f"// {tag} warm\n", name="orders")
    known = {"orders": up.spec.as_upstream()}  # type: ignore[attr-defined]
    timed(PLAIN.format(k=0) + f"// {tag} warm\n")
    for i in range(1, args.repeat + 1):
        s, sizes["plain cell"], _ = timed(PLAIN.format(k=i) + f"// {tag}\n")
        runs["plain cell"].append(s)
        s, sizes["cell using a named cell"], _ = timed(DOWN.format(k=i) + f"// {tag}\n", known=known)
        runs["cell using a named cell"].append(s)
        s, sizes["the named cell (dylib)"], _ = timed(UPSTREAM.format(k=i) + f"// {tag}\n", name="orders")
        runs["the named cell (dylib)"].append(s)
    print(f"| warm edit, `compile_cell` (median of {args.repeat}, min-max) | time | module |")
    print("|---|---|---|")
    for what, times in runs.items():
        print(
            f"| {what} | {statistics.median(times) * 1000:.0f} ms ({min(times) * 1000:.0f}-{max(times) * 1000:.0f}) "
            f"| {sizes[what] / 1e6:.3f} MB |"
        )


if __name__ == "__main__":
    main()
