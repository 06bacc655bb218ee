"""MP-GCN (``skelops.models.mpgcn``): parameter counts, graph, sparse vs dense graph
convolution, backends, training, ``torch.compile``, input checks and official weights.

The counts and outputs were checked against the official implementation (mgiant/MP-GCN
``src/model/MPGCN``) built with the official configs, its weights copied in with
``load_official_state_dict`` (logits equal in float64 to 2e-14 relative, eval and train mode);
these tests pin the counts and the official state-dict layout.
"""

from __future__ import annotations

import pytest
import torch
from helpers import adam_losses, assert_close_scaled

import skelops.models.mpgcn as mpgcn
from skelops import graphs
from skelops.models import count_parameters, create, get_preset, list_presets

OFFICIAL_COUNTS = {"volleyball": 4_204_584, "nba": 4_921_241}

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny(**overrides) -> mpgcn.MPGCN:
    """Two persons (V = 36), base width 8: a 100k-parameter MP-GCN."""
    kwargs = {"graph": "coco_ball-2", "base_channels": 8, "num_classes": 5, **overrides}
    return create("mpgcn", "volleyball", **kwargs)


def _twin(model: mpgcn.MPGCN, **overrides) -> mpgcn.MPGCN:
    twin = _tiny(**overrides)
    twin.load_state_dict(model.state_dict())
    return twin


def _perturbed(model: mpgcn.MPGCN) -> mpgcn.MPGCN:
    """Random importance and BatchNorm affines, so that every entry and branch matters."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("edge_importance") or name.endswith("bn.weight"):
                parameter.uniform_(0.5, 1.5)
    return model


def _tiny_input(n: int = 2, t: int = 6, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    skeletons = torch.randn(n, 2, t, 18, 2, generator=generator)  # 2 persons, 2-D keypoints
    return graphs.jvbm_features(
        graphs.to_panoramic(skeletons), graphs.panoramic_graph("coco_ball-2")
    )


def test_presets_registered() -> None:
    assert list_presets("mpgcn") == ["nba", "volleyball"]
    for name, count in OFFICIAL_COUNTS.items():
        assert get_preset("mpgcn", name).parameter_count == count


@pytest.mark.parametrize("preset", sorted(OFFICIAL_COUNTS))
def test_parameter_count_matches_official(preset: str) -> None:
    model = create("mpgcn", preset)
    assert count_parameters(model) == OFFICIAL_COUNTS[preset]
    # 18 blocks, each with the official dense [3, V, V] edge importance
    importance = sum(p.numel() for n, p in model.named_parameters() if "edge_importance" in n)
    assert importance == 18 * 3 * model.num_nodes**2
    assert count_parameters(create("mpgcn", preset, sparse=False)) == OFFICIAL_COUNTS[preset]


@pytest.mark.parametrize(("preset", "nnz", "parts"), [("volleyball", 660, 72), ("nba", 696, 12)])
def test_graph_is_mpgcn_adjacency(preset: str, nnz: int, parts: int) -> None:
    model = create("mpgcn", preset)
    expected = graphs.mpgcn_adjacency(model.graph)[:3]
    gcn = model.main_stream[3].gcn
    assert gcn.adjacency_values.numel() == nnz == int((expected != 0).sum())
    torch.testing.assert_close(gcn.dense_adjacency(), expected, rtol=0, atol=0)
    assert model.input_branches[0].blocks[0].attention.num_parts == parts
    # the temporal dilations are the official effective (1, 2), not the configs' ignored [2, 3]
    branches = model.main_stream[0].tcn.branches
    assert [branches[b][3].dilation for b in range(2)] == [(1, 1), (2, 1)]


def test_part_assignment() -> None:
    body = mpgcn.part_assignment(graphs.panoramic_graph("coco_ball-12"), "body")
    assert len(body) == 72 and body[5] == (17,) and body[6] == (23, 25, 27)
    person = mpgcn.part_assignment(graphs.panoramic_graph("coco_ball_net-12"), "person")
    assert person[1] == tuple(range(19, 38))
    with pytest.raises(ValueError, match="parts must be"):
        mpgcn.part_assignment(graphs.panoramic_graph("coco_ball-2"), "limbs")


def test_forward_shape_official_input() -> None:
    model = create("mpgcn", "volleyball").eval()
    x = model.prepare_input(torch.randn(1, 2, 4, 18, 12))  # 12 players, 17 keypoints + ball
    assert x.shape == (1, 4, 4, 4, 216, 1)
    with torch.no_grad():
        y = model(x)
        features = model.forward_features(x)
    assert y.shape == (1, 8) and torch.isfinite(y).all()
    assert features.shape == (1, 256, 1, 216, 1)


def test_sparse_equals_dense_graph_convolution() -> None:
    torch.manual_seed(0)
    model = _perturbed(_tiny()).train()
    dense = _twin(model, sparse=False).train()
    x = _tiny_input()
    y_sparse, y_dense = model(x), dense(x)
    assert_close_scaled(y_sparse, y_dense, torch.float32)
    y_sparse.square().sum().backward()
    y_dense.square().sum().backward()
    pairs = zip(model.named_parameters(), dense.named_parameters(), strict=True)
    for (name, a), (_, b) in pairs:
        # the graph convolutions' gradients (other biases feed train-mode BatchNorms: zero)
        if name.endswith(("gcn.weight", "gcn.edge_importance")):
            assert_close_scaled(a.grad, b.grad, torch.float32)
    # only the stored entries of the importance get a gradient, in both forms
    importance = model.main_stream[1].gcn.edge_importance.grad
    assert int((importance != 0).sum()) <= model.main_stream[1].gcn.adjacency_values.numel()


def test_reference_backend_matches_default() -> None:
    torch.manual_seed(0)
    model = _perturbed(_tiny()).train()
    x = _tiny_input()
    with torch.no_grad():
        for sparse in (True, False):
            default = _twin(model, sparse=sparse).train()
            reference = _twin(model, sparse=sparse, backend="reference").train()
            assert_close_scaled(reference(x), default(x), torch.float32)


def test_training_steps_reduce_loss() -> None:
    torch.manual_seed(0)
    model = _tiny(base_channels=16, num_classes=4).train()
    generator = torch.Generator().manual_seed(1)
    target = torch.tensor([0, 1, 2, 3])
    # a small synthetic panoramic data set: each class moves the persons differently
    skeletons = 0.1 * torch.randn(4, 2, 8, 18, 2, generator=generator)
    steps = torch.arange(8.0).view(1, 1, 8, 1, 1)
    skeletons = skeletons + steps * (target.float() - 1.5).view(4, 1, 1, 1, 1) * 0.2
    x = model.prepare_input(skeletons)
    losses = adam_losses(model, x, target, lr=1e-2)
    assert model.main_stream[2].gcn.edge_importance.grad is not None  # learnt through the values
    assert losses[-1] < losses[0], losses


def test_compile_block_inductor_fullgraph() -> None:
    """A main-stream block (sparse graph convolution, temporal branches, person attention)
    through inductor; the whole model's inductor build takes minutes on CPU, so the model is
    captured as one graph below with the eager backend."""
    torch.manual_seed(0)
    block = _perturbed(_tiny()).main_stream[0].eval()
    x = torch.randn(1, 16, 4, 36)
    with torch.no_grad():
        assert_close_scaled(torch.compile(block, fullgraph=True)(x), block(x), torch.float32)


def test_compile_model_captures_one_graph() -> None:
    torch.manual_seed(0)
    model = _perturbed(_tiny(num_inputs=1)).eval()
    x = _tiny_input(n=1, t=4)[:, :1]
    with torch.no_grad():
        compiled = torch.compile(model, fullgraph=True, backend="eager")
        torch.testing.assert_close(compiled(x), model(x))


@pytest.mark.parametrize(
    "shape",
    [
        (1, 4, 4, 6, 36),  # no M
        (1, 3, 4, 6, 36, 1),  # three branches
        (1, 4, 6, 6, 36, 1),  # NBA's channels
        (1, 4, 4, 6, 37, 1),  # wrong node count
        (0, 4, 4, 6, 36, 1),  # empty
    ],
)
def test_bad_input_raises(shape: tuple[int, ...]) -> None:
    model = _tiny()
    with pytest.raises(ValueError, match=r"x must be \[N, 4, 4, T, 36, M\]"):
        model(torch.randn(shape))


def test_bad_input_names_the_preset_shape() -> None:
    model = create("mpgcn", "nba")
    with pytest.raises(ValueError, match=r"\[N, 4, 6, T, 228, M\].*12 persons x 19 nodes"):
        model(torch.randn(1, 4, 4, 4, 216, 1))
    with pytest.raises(ValueError, match=r"skeletons must be \[N, C, T, 19, 12\]"):
        model.prepare_input(torch.randn(1, 3, 4, 18, 12))


def test_bad_constructor_arguments_raise() -> None:
    with pytest.raises(ValueError, match="base_channels must be a multiple of 8"):
        _tiny(base_channels=12)
    with pytest.raises(ValueError, match="num_classes"):
        _tiny(num_classes=0)
    with pytest.raises(ValueError, match="temporal_kernel_size must be odd"):
        _tiny(temporal_kernel_size=4)


# this model's key (after the block prefix) -> the official one, first match wins
_TO_OFFICIAL = (
    ("gcn.bn.", "scn.bn."),
    ("gcn.residual.", "scn.residual."),
    ("tcn.branches.0.3.", "tcn.branches.0.3.conv."),
    ("tcn.branches.0.4.", "tcn.branches.0.3.bn."),
    ("tcn.branches.1.3.", "tcn.branches.1.3.conv."),
    ("tcn.branches.1.4.", "tcn.branches.1.3.bn."),
    ("tcn.branches.", "tcn.branches."),
    ("tcn.residual.0.", "tcn.residual.conv."),
    ("tcn.residual.1.", "tcn.residual.bn."),
    ("attention.squeeze.", "att.fcn."),
    ("attention.frame_gate.", "att.conv_t."),
    ("attention.part_gate.", "att.conv_v."),
    ("attention.bn.", "att.bn."),
)


def _official_state_dict(model: mpgcn.MPGCN) -> dict[str, torch.Tensor]:
    """``model``'s weights under the official ``MPGCN`` keys and shapes (the layout the converter
    was checked against with the official code), with a ``module.`` prefix."""
    blocks = {
        f"main_stream.{j}.": (f"main_stream.{j}.", b) for j, b in enumerate(model.main_stream)
    }
    for i, branch in enumerate(model.input_branches):
        for j, block in enumerate(branch.blocks):
            blocks[f"input_branches.{i}.blocks.{j}."] = (f"input_branches.{i}.layers.{j}.", block)
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        prefix = next((p for p in blocks if key.startswith(p)), None)
        if prefix is None:  # fc, input_branches.{i}.bn
            out[key.replace("fc.", "fcn.", 1) if key.startswith("fc.") else key] = value
            continue
        official_prefix, rest = blocks[prefix][0], key[len(prefix) :]
        if rest == "gcn.weight":
            out[official_prefix + "scn.conv.gcn.weight"] = value.flatten(0, 1)[..., None, None]
        elif rest == "gcn.bias":
            out[official_prefix + "scn.conv.gcn.bias"] = value.flatten()
        elif rest == "gcn.edge_importance":
            out[official_prefix + "scn.edge"] = value
        else:
            ours, official = next(pair for pair in _TO_OFFICIAL if rest.startswith(pair[0]))
            out[official_prefix + official + rest[len(ours) :]] = value
    for official_prefix, block in blocks.values():  # the official graph tensors
        out[official_prefix + "scn.A"] = block.gcn.dense_adjacency()
        out[official_prefix + "att.joints"] = block.attention.part_of_node
        out[official_prefix + "att.mat"] = block.attention.part_mean
    return {f"module.{k}": v.clone() for k, v in out.items()}


def test_load_official_state_dict() -> None:
    torch.manual_seed(0)
    model = _perturbed(create("mpgcn", "volleyball")).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    official = _official_state_dict(model)
    assert len(official) == 1431  # the official MPGCN state dict's key count (Volleyball)
    assert "module.main_stream.5.tcn.branches.1.3.conv.weight" in official
    assert official["module.input_branches.0.layers.0.scn.conv.gcn.weight"].shape == (192, 4, 1, 1)
    loaded = mpgcn.load_official_state_dict(create("mpgcn", "volleyball"), official).eval()
    loaded_parameters = dict(loaded.named_parameters())
    for name, parameter in model.named_parameters():  # every parameter converted
        assert torch.equal(loaded_parameters[name], parameter), name
    x = model.prepare_input(torch.randn(1, 2, 4, 18, 12))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="does not use"):
        mpgcn.load_official_state_dict(loaded, {**official, "module.extra.weight": x})
    wrong_graph = {**official, "module.main_stream.0.scn.A": torch.zeros(3, 216, 216)}
    with pytest.raises(ValueError, match="differs from the model's graph"):
        mpgcn.load_official_state_dict(loaded, wrong_graph)
