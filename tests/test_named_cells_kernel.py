"""Named cells (issue 14) in a real Jupyter kernel: the issue's scenario as a notebook
runs it. A named cell with a ``static`` and a ``#[pyclass]``, two downstream cells
sharing both, and, after the named cell is re-run with an edit, a downstream function
that names the cell (and its ``In [n]``) to re-run."""

from __future__ import annotations

import pytest

from ipy_rustasync._settings import toolchain

from .kernels import Kernel

pytestmark = pytest.mark.skipif(not toolchain.shared_runtime(), reason="named cells need the shared runtime")

ORDERS = """%%rust_async --name kernel_orders
use pyo3::prelude::*;
use std::sync::atomic::{{AtomicU64, Ordering}};

pub static SEEN: AtomicU64 = AtomicU64::new({start});

#[pyclass]
pub struct Order {{ pub cents: u64 }}

pub fn order(cents: u64) -> Order {{ Order {{ cents }} }}

pub fn seen() -> u64 {{ SEEN.load(Ordering::SeqCst) }}

pub fn note() -> u64 {{ SEEN.fetch_add(1, Ordering::SeqCst) + 1 }}
"""

PAYMENTS = """%%rust_async
use kernel_orders::{note, Order};
use pyo3::prelude::*;

/// Pays an order made by the named cell's function: counts it in its SEEN.
pub async fn pay(order: Py<Order>) -> u64 {
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let cents = Python::attach(|py| order.borrow(py).cents);
    note();
    cents
}
"""

REFUNDS = """%%rust_async
use pyo3::prelude::*;

pub fn refund(order: PyRef<kernel_orders::Order>) -> u64 {
    kernel_orders::note();
    order.cents
}
"""


def test_a_named_cells_static_and_pyclass_are_shared_and_an_edit_names_the_cell_to_rerun(kernel: Kernel) -> None:
    built = kernel.ok(ORDERS.format(start=0))
    assert all(name in built for name in ("Order", "order", "seen", "note")), built
    reply, _ = kernel.execute(PAYMENTS)
    assert reply["status"] == "ok", reply
    payments_count = reply["execution_count"]
    kernel.ok(REFUNDS)

    # one Order type and one SEEN: the object the named cell made is accepted by both
    # downstream cells' functions, and every note() lands on the same counter
    assert (
        kernel.ok("o = order(250)\n[await pay(o), refund(o), await pay(order(100)), seen()]") == "[250, 250, 100, 3]\n"
    )
    assert kernel.ok("type(o) is Order") == "True\n"

    # an edit of the named cell: a new build, with its own SEEN
    kernel.ok(ORDERS.format(start=1000))
    reply, _ = kernel.execute("await pay(order(1))")
    assert reply["status"] == "error" and reply["ename"] == "RustAsyncUsageError", reply
    assert reply["evalue"] == (
        "`pay` was built against an earlier build of the cell named `kernel_orders`, which has been re-run "
        f"since: re-run the cell that defines `pay` (In [{payments_count}]) to rebuild it"
    )
    reply, _ = kernel.execute("refund(order(1))")
    assert reply["status"] == "error" and "re-run the cell that defines `refund`" in reply["evalue"], reply

    # re-running the two downstream cells links them to the new build
    kernel.ok(PAYMENTS)
    kernel.ok(REFUNDS)
    assert kernel.ok("o = order(7)\n[await pay(o), refund(o), seen()]") == "[7, 7, 1002]\n"
