"""The latent window protocol through the engine, checked by value against independent computations.

The test method (``LatentBoringMethod`` with nearest upsampling) is per pixel and per frame, so
fusing overlapping windows and tiles must give exactly what restoring the whole video in one
window and one tile gives, which has a closed form: ``D(z + sigma c^N noise)`` with ``z = E(up(lq))``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vsr_core.errors import ConfigError
from vsr_core.inference import EngineOptions, LatentFusion, LatentState, RestoreEngine, TimelineNoise
from vsr_core.testing import BoringMethod, LatentBoringMethod


def video_of(frames: int, height: int = 12, width: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(3, frames, height, width, generator=g) * 2 - 1


def closed_form(method: LatentBoringMethod, video: torch.Tensor, seed: int, steps: int) -> torch.Tensor:
    """Whole-video restoration written out: nearest x2, unshuffle, noise, N contractions, shuffle."""
    s, f, tf = method.scale, method.codec.spatial_factor, method.codec.temporal_factor
    up = video.repeat_interleave(s, dim=2).repeat_interleave(s, dim=3)  # [3, T, H, W]
    t = up.shape[1] // tf
    frames = up.reshape(3, t, tf, *up.shape[2:]).permute(1, 0, 2, 3, 4).reshape(t, 3 * tf, *up.shape[2:])
    z = F.pixel_unshuffle(frames, f).permute(1, 0, 2, 3)[None]  # [1, c, t, h, w]
    noise = TimelineNoise(seed, 1, z.shape[1]).slice(0, range(t), range(z.shape[3]), range(z.shape[4]))
    c = float(method.contraction.detach())
    x = z + method.sigma * c**steps * noise
    out = F.pixel_shuffle(x[0].permute(1, 0, 2, 3), f)  # [t, 3*tf, H, W]
    out = out.reshape(t, 3, tf, *out.shape[2:]).permute(1, 0, 2, 3, 4).reshape(3, t * tf, *out.shape[2:])
    return out.clamp(-1, 1)


@pytest.mark.parametrize(
    ("temporal_factor", "frames", "options"),
    [
        (1, 20, {"window": 8, "overlap": 3}),  # windows only
        (1, 20, {"window": 20, "tile": 6, "tile_overlap": 2}),  # tiles only
        (1, 20, {"window": 8, "overlap": 3, "tile": 6, "tile_overlap": 2}),  # both
        (4, 24, {"window": 12, "overlap": 4, "tile": 8, "tile_overlap": 4}),  # 4 frames per latent frame
    ],
    ids=["windows", "tiles", "windows+tiles", "temporal-factor-4"],
)
def test_fused_windows_and_tiles_equal_whole_video_processing(temporal_factor, frames, options):
    method = LatentBoringMethod(scale=2, upsample="nearest", temporal_factor=temporal_factor)
    video = video_of(frames)
    engine = RestoreEngine(method, EngineOptions(seed=11, **options))
    out = engine.restore_tensor(video)
    assert engine.latent and len(engine.plan(frames).windows) * len(engine.last_grid.tiles) > 1
    assert torch.allclose(out, closed_form(method, video, seed=11, steps=3), atol=1e-5)


def test_uint8_frames_take_the_same_path_and_round_once():
    from vsr_core.data.video_io import tensor_to_frames

    method = LatentBoringMethod(scale=2, upsample="nearest")
    video = video_of(10)
    frames = tensor_to_frames(video)
    as_float = frames.permute(3, 0, 1, 2).float().div(127.5).sub(1.0)
    engine = RestoreEngine(method, EngineOptions(window=6, overlap=2, tile=8, tile_overlap=4))
    out = torch.stack(list(engine.restore_frames(iter(frames), 10)))
    expected = tensor_to_frames(closed_form(method, as_float, seed=0, steps=3))
    assert (out.int() - expected.int()).abs().max() <= 1  # float summation order may flip a rounding


class Recorder(LatentBoringMethod):
    """Records the noise each window/tile starts from and the fused latents it decodes; adds a per-window bias."""

    def __init__(self, **kwargs):
        super().__init__(scale=2, upsample="nearest", **kwargs)
        self.prepared, self.finished = [], []

    def prepare_window(self, lq, prompt=None, *, noise=None, **sampling):
        state = super().prepare_window(lq, prompt, noise=noise, **sampling)
        state.context["bias"] = lq.mean()  # differs per window: the steps are not per frame any more
        state.latents = state.latents + state.context["bias"]  # so even the initial latents need fusing
        state.context["id"] = len(self.prepared)
        self.prepared.append(noise.clone())
        return state

    def denoise_step(self, state, i, latents):
        return super().denoise_step(state, i, latents) + state.context["bias"]

    def finish_window(self, state, latents):
        self.finished.append((state.context["id"], latents.clone()))
        return super().finish_window(state, latents)


class IndexWeights(LatentFusion):
    """Known weights: (window + 1) * (tile + 1) ** level, constant inside a window/tile; records every call."""

    def __init__(self):
        self.calls = []

    def weights(self, window, tile, level):
        self.calls.append((window.index, tile.index, level))
        return torch.full((1, 1, 1), float((window.index + 1) * (tile.index + 1) ** level))


@pytest.mark.parametrize("mode", ["latent", "tiles"])
def test_every_step_fuses_with_the_fusion_weights_and_shared_noise(mode):
    """Compare the latents each window/tile decodes with a plain lockstep loop over the whole timeline.

    ``latent``: every latent shared by windows or tiles is fused; ``tiles``: only tiles of one window are.
    """
    seed, frames, steps = 5, 14, 3
    method = Recorder(num_inference_steps=steps)
    fusion = IndexWeights()
    method.make_latent_fusion = lambda: fusion
    options = EngineOptions(seed=seed, window=6, overlap=2, tile=8, tile_overlap=4, fusion=mode)
    engine = RestoreEngine(method, options)
    video = video_of(frames, 12, 12)
    engine.restore_tensor(video)
    windows, tiles = engine.plan(frames).windows, engine.last_grid.tiles
    assert len(windows) == 3 and len(tiles) == 4
    units = [(w, t) for w in windows for t in tiles]  # prepare order: window by window, tiles in raster order
    # every (window, tile) was weighted at every level 0..steps exactly once
    assert sorted(fusion.calls) == sorted(
        (w.index, t.index, k) for w in windows for t in tiles for k in range(steps + 1)
    )

    # the reference: all units in lockstep, fused level by level on full [c, T, H, W] arrays
    reference = LatentBoringMethod(scale=2, upsample="nearest", num_inference_steps=steps)
    c, lat = 12, 1  # unshuffle 2 of the x2 upsampled LQ: 12 channels at the LQ size
    noise = TimelineNoise(seed, 1, c)
    states = {}
    for w, t in units:
        lq = video[None, :, w.start : w.end, t.y : t.y + t.height, t.x : t.x + t.width]
        region = (
            range(w.start, w.end),
            range(t.y * lat, (t.y + t.height) * lat),
            range(t.x * lat, (t.x + t.width) * lat),
        )
        expected_noise = noise.slice(0, *region)
        assert torch.equal(method.prepared[units.index((w, t))], expected_noise)  # the shared timeline noise
        state = reference.prepare_window(lq, noise=expected_noise)
        state.latents = state.latents + lq.mean()
        states[(w.index, t.index)] = (state, lq.mean(), region)

    def fuse(values, level):
        total = torch.zeros(1, c, frames, 12 * lat, 12 * lat)
        weight = torch.zeros(frames, 12 * lat, 12 * lat)
        for (wi, ti), x in values.items():
            region = states[(wi, ti)][2]
            k = (wi + 1) * (ti + 1) ** level
            idx = (
                slice(region[0].start, region[0].stop),
                slice(region[1].start, region[1].stop),
                slice(region[2].start, region[2].stop),
            )
            total[(slice(None), slice(None), *idx)] += k * x
            weight[idx] += k
        return total / weight

    def fused_of(values, level):
        """``{window index: fused [1,c,T,H,W]}``: one fusion of everything, or one per window (mode tiles)."""
        if mode == "latent":
            everything = fuse(values, level)
            return {w.index: everything for w in windows}
        return {w.index: fuse({k: v for k, v in values.items() if k[0] == w.index}, level) for w in windows}

    def cut(fused, region):
        return fused[
            :, :, region[0].start : region[0].stop, region[1].start : region[1].stop, region[2].start : region[2].stop
        ]

    values = {key: state.latents for key, (state, _, _) in states.items()}
    for level in range(steps):
        fused = fused_of(values, level)
        values = {}
        for key, (state, bias, region) in states.items():
            values[key] = reference.denoise_step(state, level, cut(fused[key[0]], region)) + bias
    fused = fused_of(values, steps)
    for unit_id, decoded in method.finished:
        w, t = units[unit_id]
        expected = cut(fused[w.index], states[(w.index, t.index)][2])
        assert torch.allclose(decoded, expected, atol=1e-5)
    assert len(method.finished) == len(units)
    # the frames windows 0 and 1 share (4, 5) decode alike only when windows are fused
    first = next(x for i, x in method.finished if units[i] == (windows[0], tiles[0]))
    second = next(x for i, x in method.finished if units[i] == (windows[1], tiles[0]))
    assert torch.allclose(first[:, :, 4:6], second[:, :, 0:2], atol=1e-5) == (mode == "latent")


def test_steps_that_draw_noise_get_the_shared_slice_of_their_level():
    seen = []

    class Stochastic(LatentBoringMethod):
        def denoise_step(self, state, i, latents, *, noise):
            seen.append((i, tuple(noise.shape), noise.clone()))
            return super().denoise_step(state, i, latents) + 0.1 * noise

    method = Stochastic(scale=2, upsample="nearest", num_inference_steps=2)
    engine = RestoreEngine(method, EngineOptions(seed=1, window=6, overlap=2))
    engine.restore_tensor(video_of(10))
    windows = engine.plan(10).windows  # 0-5, 4-9
    noise = TimelineNoise(1, 1, 12)
    assert len(seen) == 4
    for (i, shape, drawn), w in zip(sorted(seen, key=lambda s: s[0]), [windows[0], windows[1]] * 2):
        expected = noise.slice(i + 1, range(w.start, w.end), range(12), range(16))
        assert shape == tuple(expected.shape)
    by_step = {}
    for i, _, drawn in seen:
        by_step.setdefault(i, []).append(drawn)
    for i, (first, second) in by_step.items():
        assert torch.equal(first[:, :, 4:6], second[:, :, 0:2])  # frames 4 and 5 are shared
        assert torch.equal(first, noise.slice(i + 1, range(0, 6), range(12), range(16)))
    assert not torch.equal(by_step[0][0], by_step[1][0])  # each step draws its own noise


def test_a_long_video_keeps_a_bounded_number_of_windows_alive():
    method = LatentBoringMethod(scale=2, upsample="nearest", num_inference_steps=3)
    video = video_of(64, 4, 4)
    engine = RestoreEngine(method, EngineOptions(window=8, overlap=2, seed=2))
    out = engine.restore_tensor(video)
    assert len(engine.plan(64).windows) == 11
    assert engine.runner.peak_live <= 3 + 2  # steps + 2, not all 11 windows
    assert torch.allclose(out, closed_form(method, video, seed=2, steps=3), atol=1e-5)


def test_tile_states_release_their_initial_latents_once_fused():
    """Rows of tiles are alive at once: a state's own copy of its initial latents is dropped."""

    class Watcher(LatentBoringMethod):
        def __init__(self):
            super().__init__(scale=2, upsample="nearest", num_inference_steps=2)
            self.seen = []

        def denoise_step(self, state, i, latents):
            self.seen.append(state.latents)
            return super().denoise_step(state, i, latents)

        def finish_window(self, state, latents):
            self.seen.append(state.latents)
            return super().finish_window(state, latents)

    method = Watcher()
    video = video_of(12)
    engine = RestoreEngine(method, EngineOptions(window=8, overlap=2, tile=8, tile_overlap=4, seed=3))
    out = engine.restore_tensor(video)
    assert len(method.seen) == 3 * len(engine.plan(12).windows) * len(engine.last_grid.tiles) > 3
    assert all(latents is None for latents in method.seen)
    assert torch.allclose(out, closed_form(method, video, seed=3, steps=2), atol=1e-5)


def test_restore_is_prepare_then_steps_then_finish():
    method = LatentBoringMethod(scale=2, upsample="nearest", num_inference_steps=2)
    lq = video_of(3, 4, 4)[None]
    out = method.restore(lq, generator=torch.Generator().manual_seed(0))
    up = lq.repeat_interleave(2, dim=3).repeat_interleave(2, dim=4)
    z = method.codec.encode(up)
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, method.codec.decode(z + 0.5 * 0.5**2 * noise), atol=1e-6)


def test_protocol_mistakes_are_named():
    class WrongShape(LatentBoringMethod):
        def prepare_window(self, lq, prompt=None, *, noise=None, **sampling):
            state = super().prepare_window(lq, prompt, noise=noise, **sampling)
            return LatentState(state.latents[:, :, :-1], state.num_steps, state.context)

    with pytest.raises(
        RuntimeError, match=r"WrongShape returned latents \(1, 12, 5, 4, 4\) at level 0 .* expected \(1, 12, 6, 4, 4\)"
    ):
        RestoreEngine(WrongShape(scale=2), EngineOptions(window=6)).restore_tensor(video_of(6, 4, 4))

    class Zero(LatentFusion):
        def weights(self, window, tile, level):
            return torch.zeros(1)

    method = LatentBoringMethod(scale=2)
    method.make_latent_fusion = Zero
    with pytest.raises(ConfigError, match="Zero.weights must be positive"):
        RestoreEngine(method, EngineOptions()).restore_tensor(video_of(4, 4, 4))
    with pytest.raises(ConfigError, match="BoringMethod does not implement prepare_window"):
        RestoreEngine(BoringMethod(scale=2), EngineOptions(fusion="latent"))
    # --fusion pixel runs the protocol method through its restore instead
    pixel = RestoreEngine(LatentBoringMethod(scale=2), EngineOptions(fusion="pixel"))
    assert not pixel.latent and pixel.restore_tensor(video_of(4, 4, 4)).shape == (3, 4, 8, 8)


@pytest.mark.parametrize("steps", [0, 1, 3])
def test_a_tall_frame_keeps_a_band_of_tile_rows_alive(steps):
    """15 rows of tiles: a wavefront of steps + 2 rows is alive, and the fused latents are held per band, not per frame."""
    method = LatentBoringMethod(scale=2, upsample="nearest", num_inference_steps=steps)
    video = video_of(4, 64, 8)
    engine = RestoreEngine(method, EngineOptions(window=4, tile=8, tile_overlap=4, seed=2))
    out = engine.restore_tensor(video)
    runner = engine.runner
    assert len(engine.last_grid.tiles) == 15 and len(runner.bands) == 16  # rows start every 4 latent rows
    assert runner.peak_live == steps + 2
    one_level = 4 * (12 + 1) * 64 * 8  # [1,12,64,8] sums + [64,8] weights, 4 frames: what lockstep holds per level
    # each alive row holds its bands at its own level: about (steps + 2) rows of 4 bands of 4 latent rows
    assert runner.peak_fused_elements <= (steps + 3) * 2 * 4 * (12 + 1) * 4 * 8 < one_level
    assert torch.allclose(out, closed_form(method, video, seed=2, steps=steps), atol=1e-5)


@pytest.mark.parametrize(("mode", "most_alive"), [("latent", 33), ("tiles", 3)])
def test_fusing_only_tiles_keeps_one_window_band_alive_however_many_windows(mode, most_alive):
    """7 windows of 15 tile rows, 1 step: fusing windows too keeps rows of about steps + 1 windows alive."""
    method = LatentBoringMethod(scale=2, upsample="nearest", num_inference_steps=1)
    video = video_of(40, 64, 8)
    engine = RestoreEngine(method, EngineOptions(window=8, overlap=2, tile=8, tile_overlap=4, seed=2, fusion=mode))
    out = engine.restore_tensor(video)
    assert len(engine.plan(40).windows) == 7 and len(engine.last_grid.tiles) == 15
    assert engine.runner.peak_live == most_alive
    # per pixel and per frame, so windows restored alone and cross-faded give the whole-video result too
    assert torch.allclose(out, closed_form(method, video, seed=2, steps=1), atol=1e-5)


class WindowsMeetInLatents(LatentFusion):
    always_fuse_windows = True


@pytest.mark.parametrize(
    ("options", "fusion", "fused"),
    [
        ({"window": 8, "overlap": 2, "tile": 8, "tile_overlap": 4}, None, False),  # tiled, several windows
        ({"window": 8, "overlap": 2, "tile": 0}, None, True),  # one tile
        ({"window": 40, "tile": 8, "tile_overlap": 4}, None, True),  # one window
        ({"window": 8, "overlap": 2, "tile": 8, "tile_overlap": 4}, WindowsMeetInLatents, True),
        ({"window": 8, "overlap": 2, "tile": 8, "tile_overlap": 4, "fusion": "latent"}, None, True),
        ({"window": 8, "overlap": 2, "tile": 0, "fusion": "tiles"}, None, False),
    ],
    ids=["auto-tiled-windows", "auto-one-tile", "auto-one-window", "auto-fusion-insists", "latent", "tiles"],
)
def test_auto_fuses_windows_unless_a_tiled_video_has_several(options, fusion, fused):
    method = LatentBoringMethod(scale=2, upsample="nearest", num_inference_steps=1)
    if fusion is not None:
        method.make_latent_fusion = fusion
    engine = RestoreEngine(method, EngineOptions(seed=2, **options))
    engine.restore_tensor(video_of(40, 16, 8))
    assert engine.runner.fuse_windows is fused
