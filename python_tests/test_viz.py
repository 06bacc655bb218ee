"""skelops.viz: the PNG encoder, the heatmap grid, and ``skelops viz``."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch

from skelops import cli, viz
from skelops.ops import available_backends

# The compiled CPU kernel where there is one, else the reference; not the slow Triton
# interpreter that conftest switches on for CPU-only machines.
RENDER = (
    "cpu" if "cpu" in available_backends("render_heatmaps", torch.device("cpu")) else "reference"
)


def read_png(data: bytes) -> tuple[int, int, int, torch.Tensor]:
    """(width, height, colour type, pixels [H, W, channels]) of an 8-bit unfiltered PNG,
    checking the signature, every chunk's CRC and the chunk order."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks = 8, []
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        chunks.append((kind, body))
        position += 12 + length
    assert position == len(data)
    assert [k for k, _ in chunks][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, color_type, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", chunks[0][1]
    )
    assert (depth, compression, filtering, interlace) == (8, 0, 0, 0)
    channels = {0: 1, 2: 3}[color_type]
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, 1 + width * channels)
    assert (rows[:, 0] == 0).all()  # filter type None on every row
    pixels = torch.from_numpy(rows[:, 1:].copy()).reshape(height, width, channels)
    return width, height, color_type, pixels


def test_encode_png_round_trip():
    rgb = torch.randint(
        0, 256, (7, 13, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    width, height, color_type, pixels = read_png(viz.encode_png(rgb))
    assert (width, height, color_type) == (13, 7, 2)
    assert torch.equal(pixels, rgb)
    grey = rgb[..., 0]
    width, height, color_type, pixels = read_png(viz.encode_png(grey.t()))  # non-contiguous
    assert (width, height, color_type) == (7, 13, 0)
    assert torch.equal(pixels[..., 0], grey.t())


def test_colormap_is_dark_to_bright():
    colors = viz.apply_colormap(torch.linspace(0, 1, 11))
    assert colors.dtype == torch.uint8 and colors.shape == (11, 3)
    assert colors[0].tolist() == [0, 0, 0]
    brightness = colors.float().sum(-1)
    assert bool((brightness.diff() > 0).all()) and brightness[-1] > 600
    assert torch.equal(viz.apply_colormap(torch.tensor([-1.0, 2.0])), colors[[0, -1]])


def test_heatmap_png_is_bright_at_the_keypoint_and_dark_elsewhere(tmp_path):
    size, upscale, border = (32, 48), 3, viz.GRID_BORDER
    keypoints = torch.zeros(2, 17, 2)  # [T, V, 2] in heatmap pixels
    scores = torch.zeros(2, 17)
    keypoints[:, 0] = torch.tensor([[10.0, 20.0], [40.0, 5.0]])  # (x, y) of the nose per frame
    scores[:, 0] = 1.0
    options = dict(size=size, frames=[0, 1], fit=False, upscale=upscale, backend=RENDER)
    path = viz.save_heatmap_png(tmp_path / "grid.png", keypoints, scores, **options)
    width, height, color_type, pixels = read_png(path.read_bytes())
    cell_h, cell_w = size[0] * upscale, size[1] * upscale
    # Three rows (skeleton, keypoint heatmaps, limb heatmaps), two columns.
    assert (width, height, color_type) == (
        border + 2 * (cell_w + border),
        border + 3 * (cell_h + border),
        2,
    )
    assert torch.equal(pixels, viz.heatmap_grid(keypoints, scores, **options))
    for column, (x, y) in enumerate([(10, 20), (40, 5)]):
        x0 = border + column * (cell_w + border)
        heat_y0 = border + (cell_h + border)
        bright = pixels[heat_y0 + y * upscale + 1, x0 + x * upscale + 1]
        assert bright.int().sum() > 600, bright
        far_x, far_y = (x + 15) % size[1], (y + 12) % size[0]
        assert pixels[heat_y0 + far_y * upscale, x0 + far_x * upscale].tolist() == [0, 0, 0]
        # The skeleton panel: a white joint dot there, black far away.
        centre = (upscale - 1) // 2
        assert (
            pixels[border + y * upscale + centre, x0 + x * upscale + centre].tolist() == [255] * 3
        )
        assert pixels[border + far_y * upscale, x0 + far_x * upscale].tolist() == [0, 0, 0]
        # A lone keypoint draws no limb.
        limb_y0 = border + 2 * (cell_h + border)
        assert int(pixels[limb_y0 : limb_y0 + cell_h, x0 : x0 + cell_w].max()) == 0


def test_grid_of_a_fitted_multi_person_sequence():
    keypoints, scores = viz.synthetic_skeleton(12, num_persons=2)
    assert keypoints.shape == (2, 12, 17, 2) and scores.shape == (2, 12, 17)
    image = viz.heatmap_grid(
        keypoints, scores, frames=3, with_limbs=False, upscale=2, backend=RENDER
    )
    border = viz.GRID_BORDER
    assert image.shape == (border + 2 * (128 + border), border + 3 * (128 + border), 3)
    heat = image[border + 128 + border : border + 2 * 128 + border, border : border + 128]
    assert int(heat.max()) > 200  # the heatmaps are visible


def test_cli_writes_pngs(tmp_path, capsys):
    out = tmp_path / "synthetic.png"
    assert (
        cli.main(["viz", "--synthetic", "--output", str(out), "--frames", "3", "--backend", RENDER])
        == 0
    )
    width, height, _, _ = read_png(out.read_bytes())
    assert width == viz.GRID_BORDER + 3 * (256 + viz.GRID_BORDER)
    assert height == viz.GRID_BORDER + 3 * (256 + viz.GRID_BORDER)
    keypoints, scores = viz.synthetic_skeleton(6)
    npz = tmp_path / "pose.npz"
    np.savez(
        npz,
        keypoint=keypoints.numpy() * 4,
        keypoint_score=scores.numpy(),
        img_shape=np.array([1080, 1920]),
    )
    out = tmp_path / "npz.png"
    argv = ["viz", "--input", str(npz), "--output", str(out), "--size", "32", "48", "--no-limbs"]
    argv += ["--backend", RENDER]
    assert cli.main(argv) == 0
    width, height, _, _ = read_png(out.read_bytes())
    assert (width, height) == (
        viz.GRID_BORDER + 6 * (192 + viz.GRID_BORDER),
        viz.GRID_BORDER + 2 * (128 + viz.GRID_BORDER),
    )
    assert "wrote" in capsys.readouterr().err


def test_bad_inputs():
    with pytest.raises(TypeError, match="uint8"):
        viz.encode_png(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="image"):
        viz.encode_png(torch.zeros(4, 4, 2, dtype=torch.uint8))
    keypoints, scores = viz.synthetic_skeleton(4)
    with pytest.raises(ValueError, match="keypoints"):
        viz.heatmap_grid(keypoints[..., :1])
    with pytest.raises(ValueError, match="joints"):
        viz.heatmap_grid(keypoints[:, :, :5])
    with pytest.raises(ValueError, match="scores"):
        viz.heatmap_grid(keypoints, scores[:, :2])
    with pytest.raises(ValueError, match="frames"):
        viz.heatmap_grid(keypoints, frames=[4])
    with pytest.raises(ValueError, match="size"):
        viz.heatmap_grid(keypoints, size=(0, 64))
    with pytest.raises(ValueError, match="upscale"):
        viz.heatmap_grid(keypoints, upscale=0)
    with pytest.raises(SystemExit):
        cli.main(["viz", "--output", "x.png"])  # neither --input nor --synthetic


def test_npz_without_keypoints(tmp_path):
    path = tmp_path / "empty.npz"
    np.savez(path, something=np.zeros(3))
    with pytest.raises(KeyError, match="keypoint"):
        viz.load_pose_npz(path)
