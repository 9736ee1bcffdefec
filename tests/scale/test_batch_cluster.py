"""`bert14 batch` on a simulated two-node Ray cluster (a head and a worker node on this machine):
the artifact travels through the object store and rows are classified on both nodes."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the ray extra is not installed (pip install -r requirements/ray.txt)")
pq = pytest.importorskip("pyarrow.parquet")

from bert14.scale import BatchOptions, run_batch  # noqa: E402


def test_rows_are_classified_on_both_nodes_exactly_once(tiny_artifact: Path, tmp_path: Path) -> None:
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    context = ray.data.DataContext.get_current()
    waited = context.wait_for_min_actors_s
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="WARNING")
        # Ray Data feeds the pool as soon as one actor is up. In a fresh venv the second node's
        # actor took long enough to start (cold imports) that the first classified all 4 blocks,
        # so this test waits for both, as its subject is placement and shipping, not start-up.
        context.wait_for_min_actors_s = 120
        texts = [f"第{i}条新闻标题" for i in range(4000)]
        (tmp_path / "in.txt").write_text("".join(t + "\n" for t in texts), encoding="utf-8")
        report = run_batch(BatchOptions(tiny_artifact, str(tmp_path / "in.txt"), tmp_path / "out", progress=False))
    finally:
        context.wait_for_min_actors_s = waited
        ray.shutdown()
        cluster.shutdown()
    assert (report.workers, report.threads) == (2, 1), "by default one worker per node, with all its CPUs"
    assert len(report.rows_by_node) == 2 and min(report.rows_by_node.values()) > 0, report.rows_by_node
    assert sum(report.rows_by_node.values()) == 4000
    ids = pq.read_table(tmp_path / "out" / "part-00000.parquet").column("id").to_pylist()
    assert sorted(ids) == list(range(1, 4001))
