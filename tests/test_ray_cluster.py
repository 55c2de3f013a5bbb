"""Ray's plumbing (ray_cluster): addresses checked before any work, workers placed from a cluster's
resources. No cluster is started here."""

from __future__ import annotations

import importlib.util

import pytest

from sgacodec.cluster.workers import check_address
from sgacodec.errors import SgacodecError

from .support import run_process

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="Ray is not installed (pip install 'sgacodec[ray]'; CI installs it)")


def test_a_ray_address_is_checked_before_any_work():
    assert check_address(None) is None and check_address("") is None
    for address in ("auto", "local", "10.0.0.1:6379", "head-node:6379", "ray://head:10001"):
        assert check_address(address) == address
    with pytest.raises(SgacodecError, match="put --ray after the inputs"):
        check_address("photos/")
    res = run_process("encode", "--ray", "photos/", "-o", "coded/")  # --ray took the folder as its address
    assert res.returncode == 2 and b"put --ray after the inputs, or write --ray=ADDRESS" in res.stderr
    res = run_process("encode", "photos/", "-o", "coded/", "--workers", "2")
    assert res.returncode == 1 and res.stderr.strip() == b"sgacodec: error: --workers and --worker-cpus go with --ray"


@needs_ray
def test_one_worker_per_gpu_else_per_cpu(monkeypatch):
    """Placement from the cluster's resources (no cluster needed: its resources are given)."""
    import ray

    from sgacodec.cluster.workers import Placement, placement, unit_size

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 64.0, "GPU": 8.0})
    assert placement() == Placement(workers=8, gpus=1, cpus=8, device="cuda")
    assert placement("cuda", workers=4, worker_cpus=2) == Placement(4, 1, 2, "cuda")
    assert placement("cpu") == Placement(64, 0, 1, "cpu")
    assert unit_size(10_000, placement(), None) == 64  # what a local GPU run reads at once
    assert unit_size(10_000, placement(), 8) == 32
    assert unit_size(10_000, placement("cpu"), None) == 4
    assert unit_size(6, placement("cpu"), None) == 1  # an even share: every worker gets work
    with pytest.raises(SgacodecError, match="auto, cpu or cuda"):
        placement("cuda:1")
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    assert placement() == Placement(2, 0, 1, "cpu")
    with pytest.raises(SgacodecError, match="no GPU"):
        placement("cuda")
