from __future__ import annotations

from buildlib.core import graph

DEPS = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "e": []}


def test_topo_order_puts_dependencies_first_and_keeps_declaration_order() -> None:
    order = graph.topo_order(DEPS)
    assert order == ["a", "b", "c", "d", "e"]
    for node, deps in DEPS.items():
        assert all(order.index(d) < order.index(node) for d in deps)


def test_select_takes_transitive_dependencies_only() -> None:
    assert graph.select(DEPS, ["d"]) == {"a", "b", "c", "d"}
    assert graph.select(DEPS, ["e"]) == {"e"}


def test_downstream() -> None:
    assert graph.downstream(DEPS, ["b"]) == {"b", "d"}
    assert graph.downstream(DEPS, ["a"]) == {"a", "b", "c", "d"}


def test_remaining_critical_path_and_critical_path() -> None:
    durations = {"a": 1.0, "b": 5.0, "c": 1.0, "d": 2.0, "e": 3.0}
    remaining = graph.remaining_critical_path(DEPS, durations)
    assert remaining == {"a": 8.0, "b": 7.0, "c": 3.0, "d": 2.0, "e": 3.0}
    assert graph.critical_path(DEPS, durations) == ["a", "b", "d"]


def test_find_cycle_returns_the_cycle_in_order() -> None:
    assert graph.find_cycle(DEPS) is None
    assert graph.find_cycle({"x": ["y"], "y": ["z"], "z": ["x"], "w": []}) == ["x", "y", "z", "x"]


def test_long_chain_does_not_hit_the_recursion_limit() -> None:
    chain = {f"n{i}": [f"n{i - 1}"] if i else [] for i in range(5000)}
    assert graph.find_cycle(chain) is None
    assert graph.topo_order(chain)[-1] == "n4999"
