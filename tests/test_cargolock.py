"""cargolock.py, Cargo.lock as data: parsing cargo's short references, rendering cargo's
own layout, one version per compatible range, and the closure that names a module.
Pure and fast: no cargo runs here (test_lockfile.py has the sidecar and real cargo)."""

from __future__ import annotations

import pytest

from ipy_rustasync._base.errors import RustAsyncUsageError
from ipy_rustasync._sources import cargolock, crate, lockfile
from ipy_rustasync._sources.cargolock import REGISTRY, Lock, Package
from ipy_rustasync._sources.deps import Dep


def pkg(name: str, version: str, *dependencies: str) -> Package:
    return Package(name, version, REGISTRY, "0" * 64, dependencies)


def itoa(version: str) -> Package:
    return pkg("itoa", version)


#: A Cargo.lock as cargo writes one for a cell crate ``cell`` with two extra crates.
CELL_LOCK = f"""\
version = 4

[[package]]
name = "cell"
version = "0.1.0"
dependencies = [
 "itoa 1.0.19",
 "pyo3",
 "smallvec",
]

[[package]]
name = "itoa"
version = "0.4.8"
source = "{REGISTRY}"

[[package]]
name = "itoa"
version = "1.0.19"
source = "{REGISTRY}"

[[package]]
name = "pyo3"
version = "0.30.1"
source = "{REGISTRY}"
dependencies = [
 "itoa 0.4.8",
]

[[package]]
name = "smallvec"
version = "1.13.2"
source = "{REGISTRY}"
dependencies = [
 "serde",
]

[[package]]
name = "serde"
version = "1.0.200"
source = "{REGISTRY}"
"""


def test_render_writes_cargos_own_layout() -> None:
    path = crate.rust_dir() / "Cargo.lock"
    assert cargolock.render(lockfile.base()) == path.read_text(encoding="utf-8")


def test_short_references_get_their_version() -> None:
    lock = cargolock.parse(CELL_LOCK, "cell")
    cell = next(p for p in lock.packages if p.name == "cell")
    assert cell.dependencies == ("itoa 1.0.19", "pyo3 0.30.1", "smallvec 1.13.2")
    assert cargolock.parse(cargolock.render(lock), "again").slots() == lock.slots()


def test_render_points_references_at_the_version_the_lock_holds() -> None:
    lock = Lock([pkg("app", "1.0.0", "itoa 1.0.10", "ryu 1.0.0"), itoa("1.0.15")])
    text = cargolock.render(lock)
    assert 'dependencies = [\n "itoa",\n]' in text  # 1.0.10's slot holds 1.0.15; ryu is not in the lock
    both = cargolock.render(Lock([pkg("app", "1.0.0", "itoa 1.0.15", "itoa 0.4.1"), itoa("1.0.15"), itoa("0.4.1")]))
    assert 'dependencies = [\n "itoa 0.4.1",\n "itoa 1.0.15",\n]' in both
    sidecar = cargolock.render(lock, header="# pins\n", sidecar=True)
    assert sidecar.startswith("# pins\nversion = 4\n") and '"ryu 1.0.0"' in sidecar
    assert cargolock.render(Lock(), header="# none\n") == "# none\nversion = 4\n"


def test_merge_keeps_a_pin_until_a_build_needs_a_newer_compatible_release() -> None:
    pinned = Lock([itoa("1.0.15")])
    assert cargolock.merge(pinned, [itoa("1.0.10")]).packages == [itoa("1.0.15")]
    assert cargolock.merge(pinned, [itoa("1.0.19")]).packages == [itoa("1.0.19")]
    both = cargolock.merge(pinned, [itoa("0.4.8")])
    assert sorted(p.version for p in both.packages) == ["0.4.8", "1.0.15"]  # another range: both stay
    grown = cargolock.merge(Lock([pkg("a", "1.0.0", "b 1.0.0")]), [pkg("a", "1.0.0", "c 1.0.0")])
    assert grown.packages == [pkg("a", "1.0.0", "b 1.0.0", "c 1.0.0")]  # dependency lists add up


def test_seed_keeps_the_shared_graph_and_adds_the_notebooks_pins() -> None:
    shared = Lock([pkg("syn", "2.0.60"), pkg("quote", "1.0.36")])
    seeded = cargolock.seed(shared, Lock([pkg("syn", "2.0.1"), pkg("syn", "1.0.109"), itoa("1.0.15")]))
    assert {(p.name, p.version) for p in seeded.packages} == {
        ("syn", "2.0.60"),  # the shared graph's version wins its range
        ("syn", "1.0.109"),
        ("quote", "1.0.36"),
        ("itoa", "1.0.15"),
    }


def test_pinned_closure_takes_the_newest_accepted_pin_and_what_it_pulls_in() -> None:
    lock = Lock([itoa("1.0.15"), itoa("0.4.8"), pkg("smallvec", "1.13.2", "serde 1.0.0"), pkg("serde", "1.0.200")])
    found = cargolock.pinned_closure(lock, [Dep("itoa", "*"), Dep("vec", "1", package="smallvec")])
    assert found is not None
    assert cargolock.pins_of(found) == ("itoa 1.0.15", "serde 1.0.200", "smallvec 1.13.2")
    old = cargolock.pinned_closure(lock, [Dep("itoa", "0.4")])
    assert old is not None and cargolock.pins_of(old) == ("itoa 0.4.8",)
    assert cargolock.pinned_closure(lock, [Dep("itoa", ">=1.0.17")]) is None  # the pin does not do: resolve
    assert cargolock.pinned_closure(lock, [Dep("ryu", "1")]) is None  # not pinned at all


def test_resolved_closure_is_what_cargo_wrote_for_the_root() -> None:
    lock = cargolock.parse(CELL_LOCK, "cell")
    found = cargolock.resolved_closure(lock, "cell", [Dep("itoa", "*"), Dep("smallvec", "1")])
    assert found is not None
    # itoa 1.0.19, the version cargo chose, not the 0.4.8 pyo3 uses (which "*" accepts too)
    assert cargolock.pins_of(found) == ("itoa 1.0.19", "serde 1.0.200", "smallvec 1.13.2")
    assert cargolock.resolved_closure(lock, "another", [Dep("itoa", "*")]) is None


def test_as_deps_names_every_pin_exactly() -> None:
    pins = cargolock.as_deps(Lock([itoa("1.0.15"), itoa("0.4.8")]))
    assert sorted(d.flag() for d in pins) == ["itoa@=0.4.8", "itoa@=1.0.15"]
    assert len({d.name for d in pins}) == 2  # aliased apart, so one manifest can hold both


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('version = "1.0"', "'itoa' has the version '1.0', which is not semver"),
        ('version = "1.0.15"\ndependencies = "x"', "the dependencies of 'itoa' are not a list of names"),
        ('version = "1.0.15"\ndependencies = ["ryu"]', "the dependency 'ryu' of 'itoa' has no version"),
        ('version = "1.0.15"\ndependencies = ["ryu 1 x"]', "'ryu 1 x' is not a dependency of the form 'name version'"),
    ],
)
def test_a_sidecar_is_checked_strictly(entry: str, message: str) -> None:
    text = f'version = 4\n\n[[package]]\nname = "itoa"\nsource = "{REGISTRY}"\nchecksum = "{"0" * 64}"\n'
    with pytest.raises(RustAsyncUsageError, match="delete it") as err:
        cargolock.parse(text + entry + "\n", "the lock file nb.lock", sidecar=True)
    assert message in str(err.value)
