"""Adjacency builders of skelops.graphs against the official definitions.

Convention under test: ``A[k, v, w]`` carries source joint ``v`` to target joint ``w``.
The counts and entries were read off running the official graph code:
- yysijie/st-gcn net/utils/graph.py ``Graph(layout, strategy, max_hop, dilation).A`` (already in
  this convention: ST-GCN applies it with ``einsum('nkctv,kvw->nctw')``);
- kennymckormick/pyskl pyskl/utils/graph.py ``Graph(layout, mode).A`` (``stgcn_spatial`` mode is
  in this convention; its ``spatial`` mode is the CTR-GCN graph);
- Uason-Chen/CTR-GCN graph/tools.py ``get_spatial_graph``, written ``A[target, source]``
  (CTR-GCN applies it with ``einsum('ncuv,nctv->nctu')``), hence transposed below.
"""

from __future__ import annotations

import pytest
import torch

from skelops import graphs


def nnz(adjacency: torch.Tensor) -> list[int]:
    return [int((a != 0).sum()) for a in adjacency]


def test_stgcn_spatial_legacy_reproduces_the_quirk_on_ntu():
    a = graphs.build_adjacency("ntu_stgcn", "spatial", legacy_stgcn=True)
    assert a.shape == (3, 25, 25) and a.dtype == torch.float32
    # st-gcn Graph('ntu-rgb+d', 'spatial'): 25 / 40 / 8 non-zeros, every column sums to 1
    assert nnz(a) == [25, 40, 8]
    torch.testing.assert_close(a.sum(dim=(0, 1)), torch.ones(25))
    assert a[0, 20, 20].item() == pytest.approx(1 / 5)
    assert a[0, 0, 0].item() == pytest.approx(1 / 4)
    assert a[1, 0, 1].item() == pytest.approx(1 / 3)
    assert a[2, 1, 0].item() == pytest.approx(1 / 4)
    # spine_base -> left_hip: both more than max_hop from the centre, so "root" (subset 1)
    assert a[1, 0, 12].item() == pytest.approx(1 / 3) and a[2, 0, 12] == 0
    assert a[1, 21, 22].item() == pytest.approx(1 / 3) and a[1, 22, 7].item() == pytest.approx(
        1 / 3
    )


def test_stgcn_spatial_true_distances():
    a = graphs.build_adjacency("ntu_stgcn", "spatial")
    assert nnz(a) == [25, 24, 24]
    assert a[1, 0, 12] == 0 and a[2, 0, 12].item() == pytest.approx(1 / 3)
    legacy = graphs.build_adjacency("ntu_stgcn", "spatial", legacy_stgcn=True)
    torch.testing.assert_close(a.sum(0), legacy.sum(0))


@pytest.mark.parametrize(
    ("layout", "max_hop", "expected"),
    [
        ("ntu_stgcn", 2, [25, 36, 12, 42, 12]),  # st-gcn Graph('ntu-rgb+d', 'spatial', max_hop=2)
        ("openpose18", 1, [18, 25, 9]),  # st-gcn Graph('openpose', 'spatial')
        ("openpose18", 2, [18, 19, 15, 26, 14]),
        ("coco", 1, [17, 22, 10]),  # pyskl Graph('coco', 'stgcn_spatial')
    ],
)
def test_stgcn_spatial_legacy_counts(layout, max_hop, expected):
    a = graphs.build_adjacency(layout, "spatial", max_hop=max_hop, legacy_stgcn=True)
    assert nnz(a) == expected


def test_pyskl_stgcn_spatial_entries():
    a = graphs.build_adjacency("coco", "spatial", legacy_stgcn=True)
    # pyskl Graph('coco', 'stgcn_spatial').A[0][0, 0], [1][5, 0], [2][0, 5]
    assert a[0, 0, 0].item() == pytest.approx(0.2)
    assert a[1, 5, 0].item() == pytest.approx(0.2)
    assert a[2, 0, 5].item() == pytest.approx(0.25)


def test_distance_and_uniform_with_hops_and_dilation():
    a = graphs.build_adjacency("ntu_stgcn", "distance", max_hop=2)
    # st-gcn Graph('ntu-rgb+d', 'distance', max_hop=2)
    assert nnz(a) == [25, 48, 54]
    assert a[2, 0, 20].item() == pytest.approx(1 / 9) and a[1, 0, 1].item() == pytest.approx(1 / 8)
    u = graphs.build_adjacency("ntu_stgcn", "uniform", max_hop=3, dilation=2)
    # st-gcn Graph('ntu-rgb+d', 'uniform', max_hop=3, dilation=2): hops 0 and 2 only
    assert u.shape == (1, 25, 25) and nnz(u) == [79]
    assert u[0, 0, 0].item() == pytest.approx(0.25) and u[0, 0, 8] == 0
    torch.testing.assert_close(u.sum(1), torch.ones(1, 25))


def test_inward_outward_is_ctrgcn_transposed():
    a = graphs.build_adjacency("ntu_stgcn", "inward_outward")
    # CTR-GCN Graph().A: I, In, Out with 25 / 24 / 24 non-zeros
    assert nnz(a) == [25, 24, 24]
    torch.testing.assert_close(a[0], torch.eye(25))
    # Normalised by the source's out-degree: every directed row sums to 1 (roots of In excepted).
    assert sorted(set(a[1].sum(1).tolist())) == [0.0, 1.0]
    # pyskl Graph('nturgb+d', 'spatial').A, read [target, source]: In[7, 21] = 1,
    # Out[21, 7] = 0.5, Out[1, 20] = 0.25, Out[12, 0] = 0.5
    p = graphs.build_adjacency("ntu_pyskl", "inward_outward")
    assert p[1, 21, 7].item() == 1.0 and p[2, 7, 21].item() == 0.5
    assert p[2, 20, 1].item() == 0.25 and p[2, 0, 12].item() == 0.5
    # pyskl Graph('coco', 'spatial').A: In[0, 5] = 1, Out[5, 0] = 0.25, Out[7, 5] = 0.5
    c = graphs.build_adjacency("coco", "inward_outward")
    assert c[1, 5, 0].item() == 1.0 and c[2, 0, 5].item() == 0.25 and c[2, 5, 7].item() == 0.5


def test_pyskl_use_of_its_spatial_graph():
    # pyskl's GCNs apply Graph('spatial').A as A[source, target]: that is the column-normalised
    # inward_outward graph with the directed subsets swapped.
    a = graphs.build_adjacency("coco", "inward_outward", normalization="column")[[0, 2, 1]]
    assert a[1, 0, 5].item() == 1.0 and a[2, 5, 0].item() == 0.25


def test_normalizations():
    binary = graphs.build_adjacency("ntu_stgcn", "uniform", normalization="none")[0]
    assert nnz(binary[None]) == [73] and set(binary.unique().tolist()) == {0.0, 1.0}
    degree = binary.sum(0)
    symmetric = graphs.build_adjacency("ntu_stgcn", "uniform", normalization="symmetric")[0]
    torch.testing.assert_close(symmetric, binary / torch.sqrt(degree[:, None] * degree[None, :]))
    torch.testing.assert_close(symmetric, symmetric.T)
    row = graphs.normalize_adjacency(binary, "row")
    torch.testing.assert_close(row.sum(1), torch.ones(25))
    column = graphs.normalize_adjacency(binary[None], "column")
    torch.testing.assert_close(column.sum(1), torch.ones(1, 25))
    zero = graphs.normalize_adjacency(torch.zeros(3, 3), "symmetric")
    assert zero.abs().sum() == 0 and not zero.isnan().any()


def test_hop_distance():
    hops = graphs.hop_distance("ntu_stgcn")
    # st-gcn get_hop_distance(25, edges, max_hop=12) row of joint 21 (0-based 20)
    assert hops[20].tolist() == [2, 1, 1, 2, 1, 2, 3, 4, 1, 2, 3, 4, 3, 4, 5, 6, 3, 4, 5, 6, 0, 6,
                                 5, 6, 5]  # fmt: skip
    assert hops.max() == 12 and torch.equal(hops, hops.T)
    truncated = graphs.hop_distance("ntu_stgcn", max_hop=1)
    assert int(torch.isfinite(truncated).sum()) == 73


def test_dilated_kernels():
    d = graphs.dilated_adjacency("ntu_stgcn", [1, 2, 3])
    assert d.shape == (3, 3, 25, 25)
    torch.testing.assert_close(d[0], graphs.build_adjacency("ntu_stgcn"))
    # Pairs exactly d hops apart: 48 / 54 / 60 (st-gcn Graph('ntu-rgb+d', 'distance',
    # max_hop=d, dilation=d) subset 1), split by distance to the centre.
    assert [nnz(k) for k in d] == [[25, 24, 24], [25, 34, 20], [25, 30, 30]]
    hops = graphs.hop_distance("ntu_stgcn")
    for i, dilation in enumerate([1, 2, 3]):
        support = d[i, 1:].sum(0) != 0
        assert torch.equal(support, hops == dilation)
        torch.testing.assert_close(d[i].sum(dim=(0, 1)), torch.ones(25))
    # st-gcn Graph('ntu-rgb+d', 'distance', max_hop=2, dilation=2).A[1][0, 20] = 1/5
    dist = graphs.dilated_adjacency("ntu_stgcn", [2], "distance")
    assert dist.shape == (1, 2, 25, 25) and dist[0, 1, 0, 20].item() == pytest.approx(0.2)


def test_dilation_beyond_diameter_raises():
    # ntu_stgcn's diameter is 12 hops (hop_distance max); coco's is 8.
    assert graphs.dilated_adjacency("ntu_stgcn", [12]).shape == (1, 3, 25, 25)
    message = r"dilations\[1\]=13 exceeds the diameter of layout 'ntu_stgcn' \(12 hops\)"
    with pytest.raises(ValueError, match=message):
        graphs.dilated_adjacency("ntu_stgcn", [1, 13])
    with pytest.raises(ValueError, match=r"dilations\[0\]=9 exceeds .* 'coco' \(8 hops\)"):
        graphs.dilated_adjacency(graphs.get_layout("coco"), [9], "distance")


def test_dtype_and_device():
    a = graphs.build_adjacency("coco", dtype=torch.float64, device="cpu")
    assert a.dtype == torch.float64 and a.device.type == "cpu"
    with pytest.raises(TypeError, match="floating-point"):
        graphs.build_adjacency("coco", dtype=torch.int64)


def test_adjacency_errors():
    with pytest.raises(KeyError, match="unknown layout"):
        graphs.build_adjacency("ntu")
    with pytest.raises(ValueError, match="strategy must be one of"):
        graphs.build_adjacency("coco", "radial")
    with pytest.raises(ValueError, match="dilation must be >= 1, got -1"):
        graphs.build_adjacency("coco", dilation=-1)
    with pytest.raises(ValueError, match="max_hop must be >= 0, got -2"):
        graphs.build_adjacency("coco", max_hop=-2)
    with pytest.raises(TypeError, match="max_hop must be an int"):
        graphs.build_adjacency("coco", max_hop=1.5)
    with pytest.raises(ValueError, match="normalization must be one of"):
        graphs.build_adjacency("coco", normalization="l2")
    with pytest.raises(ValueError, match="legacy_stgcn=True only applies"):
        graphs.build_adjacency("coco", "uniform", legacy_stgcn=True)
    with pytest.raises(ValueError, match="max_hop and dilation must be 1"):
        graphs.build_adjacency("coco", "inward_outward", max_hop=2)
    with pytest.raises(ValueError, match=r"dilations\[1\] must be >= 1, got -2"):
        graphs.dilated_adjacency("coco", [1, -2])
    with pytest.raises(TypeError, match="non-empty sequence"):
        graphs.dilated_adjacency("coco", 2)
    with pytest.raises(ValueError, match="strategy must be one of"):
        graphs.dilated_adjacency("coco", [1], "inward_outward")
    with pytest.raises(ValueError, match="must be"):
        graphs.normalize_adjacency(torch.zeros(2, 3), "row")
