"""`vsr restore` end to end, in process, with a checkpoint of a tiny installed plugin (``fake_tiny.TinyVSR``)."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from vsr_core.commands.restore import main
from vsr_core.data.video_io import VideoReader, probe_video


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny_plugin) -> Path:
    from vsr_core.testing import tiny_trainer

    root = tmp_path_factory.mktemp("ckpt")
    method = tiny_plugin(scale=2, width=4)
    trainer = tiny_trainer(root, max_steps=0)
    trainer.strategy.connect(method)
    path = root / "tiny.ckpt"
    trainer.save_checkpoint(path)
    return path


def write_video(
    path: Path, frames: int, height: int = 24, width: int = 32, audio: bool = False, options: dict | None = None
) -> np.ndarray:
    """A random ``frames``-frame H.264 clip at 24 fps (yuv444p for odd sizes), with silent AAC if ``audio``.

    ``options`` go to the muxer (``{"movflags": "faststart"}``: the mp4 index before the data).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(frames)
    data = rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream("libx264", rate=24)
        stream.height, stream.width = height, width
        stream.pix_fmt = "yuv420p" if height % 2 == 0 and width % 2 == 0 else "yuv444p"
        a_stream = container.add_stream("aac", rate=16000) if audio else None
        for img in data:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if a_stream is not None:
            samples = np.zeros((1, 16000 * frames // 24), dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in a_stream.encode(frame):
                container.mux(packet)
            for packet in a_stream.encode():
                container.mux(packet)
    return data


def test_restores_videos_and_frame_folders_keeping_count_fps_audio(ckpt, tmp_path, capsys):
    write_video(tmp_path / "in" / "clip.mp4", 21, audio=True)
    write_video(tmp_path / "in" / "one.mp4", 1, height=7, width=9)  # 1 frame, tiny odd size
    folder = tmp_path / "in" / "frames"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((10, 12, 3), 40 * i, np.uint8)).save(folder / f"{i:03d}.png")
    out = tmp_path / "out"
    assert (
        main(
            [
                str(tmp_path / "in"),
                "--ckpt",
                str(ckpt),
                "-o",
                str(out),
                "--window",
                "8",
                "--overlap",
                "2",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert sorted(os.listdir(out)) == ["clip.mp4", "frames.mp4", "one.mp4"]
    clip = probe_video(out / "clip.mp4")
    assert (clip.frames, clip.fps, clip.width, clip.height, clip.has_audio) == (
        21,
        Fraction(24),
        64,
        48,
        True,
    )
    one = probe_video(out / "one.mp4")
    assert (one.frames, one.width, one.height) == (1, 18, 14)
    frames = probe_video(out / "frames.mp4")
    assert (frames.frames, frames.width, frames.height) == (3, 24, 20)
    # the untrained method is a bicubic upsampler (zero-initialised residual): flat frames stay flat
    last = VideoReader(out / "frames.mp4").read_clip(2, 1)[0].float()
    assert abs(last.mean().item() - 80) < 3


def test_same_command_gives_the_same_video(ckpt, tmp_path):
    write_video(tmp_path / "a.mp4", 9)
    args = [
        str(tmp_path / "a.mp4"),
        "--ckpt",
        str(ckpt),
        "--device",
        "cpu",
        "--tile",
        "16",
        "--tile-overlap",
        "4",
        "--color-fix",
        "wavelet",
    ]
    assert main([*args, "-o", str(tmp_path / "o1")]) == 0
    assert main([*args, "-o", str(tmp_path / "o2")]) == 0
    a = VideoReader(tmp_path / "o1" / "a.mp4").read_clip(0, 9)
    b = VideoReader(tmp_path / "o2" / "a.mp4").read_clip(0, 9)
    assert torch.equal(a, b)


def run_error(argv, capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code != 0 and err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_bad_inputs_fail_with_one_line(ckpt, tmp_path, capsys):
    c = ["--ckpt", str(ckpt), "--device", "cpu", "-o", str(tmp_path / "out")]
    assert "does not exist" in run_error([str(tmp_path / "missing.mp4"), *c], capsys)
    (tmp_path / "empty_dir").mkdir()
    assert "no video files" in run_error([str(tmp_path / "empty_dir"), *c], capsys)
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert "empty.mp4" in run_error([str(tmp_path / "empty.mp4"), *c], capsys)
    (tmp_path / "junk.mp4").write_bytes(os.urandom(2000))
    assert "junk.mp4" in run_error([str(tmp_path / "junk.mp4"), *c], capsys)
    good = tmp_path / "good.mp4"
    write_video(good, 30)
    (tmp_path / "cut.mp4").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    run_error([str(tmp_path / "cut.mp4"), *c], capsys)
    assert "steps" in run_error([str(good), *c, "--steps", "4"], capsys)
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the output directory should be")
    assert "output directory" in run_error([str(good), "--ckpt", str(ckpt), "-o", str(blocked / "sub")], capsys)
    assert not (tmp_path / "out").exists() or not any(p.suffix == ".mp4" for p in (tmp_path / "out").iterdir())


def test_checkpoint_of_an_uninstalled_plugin_names_it(ckpt, tmp_path, capsys):
    checkpoint = torch.load(ckpt, weights_only=True)
    checkpoint["vsr_method"]["class_path"] = "gonevsr.model.GoneVSR"
    torch.save(checkpoint, tmp_path / "gone.ckpt")
    write_video(tmp_path / "v.mp4", 2)
    assert "gonevsr" in run_error(
        [
            str(tmp_path / "v.mp4"),
            "--ckpt",
            str(tmp_path / "gone.ckpt"),
            "-o",
            str(tmp_path / "o"),
        ],
        capsys,
    )


def test_ctrl_c_mid_video_leaves_no_file(ckpt, tmp_path, capsys, monkeypatch):
    from vsr_core.inference import engine

    calls = {"n": 0}
    original = engine.RestoreEngine._restore_tiles

    def interrupt_on_second_window(self, *args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(engine.RestoreEngine, "_restore_tiles", interrupt_on_second_window)
    write_video(tmp_path / "long.mp4", 30)
    code = main(
        [
            str(tmp_path / "long.mp4"),
            "--ckpt",
            str(ckpt),
            "-o",
            str(tmp_path / "o"),
            "--window",
            "8",
            "--device",
            "cpu",
        ]
    )
    assert code == 130 and calls["n"] == 2
    assert not (tmp_path / "o").exists()  # neither the partial file nor the folder this run created


# ---------------------------------------------------------------------------------------------
# What vsr promises on bad input (issue 9): each case is one `error:` line and leaves nothing.
# ---------------------------------------------------------------------------------------------


def cut(path: Path, fraction: float, name: str) -> Path:
    target = path.with_name(name)
    data = path.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


def test_a_malicious_checkpoint_never_runs(malicious_checkpoint, tmp_path, capsys):
    path, marker = malicious_checkpoint
    write_video(tmp_path / "v.mp4", 3)
    err = run_error(
        [str(tmp_path / "v.mp4"), "--ckpt", str(path), "-o", str(tmp_path / "out"), "--device", "cpu"], capsys
    )
    assert "refused" in err and not marker.exists()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("ext", "options", "fraction"),
    [("mp4", {"movflags": "faststart"}, 0.7), ("mkv", None, 0.3)],
    ids=["faststart-mp4-70%", "mkv-30%"],
)
def test_a_truncated_video_fails_unless_allowed_and_never_gets_invented_frames(
    ckpt, tmp_path, capsys, ext, options, fraction
):
    write_video(tmp_path / f"whole.{ext}", 48, options=options)
    source = cut(tmp_path / f"whole.{ext}", fraction, f"clip.{ext}")
    decodable = VideoReader(source).count_decodable()
    assert 0 < decodable < 48
    out = tmp_path / "out"
    common = [str(source), "--ckpt", str(ckpt), "-o", str(out), "--device", "cpu", "--window", "8"]
    err = run_error(common, capsys)
    assert f"only {decodable} of the 48 frames it promises decode" in err and "--allow-truncated" in err
    assert not out.exists()
    assert main([*common, "--allow-truncated"]) == 0
    warning = capsys.readouterr().err.strip()
    assert warning.startswith("warning: ") and f"the {decodable} of its 48 frames" in warning and "\n" not in warning
    restored = VideoReader(out / "clip.mp4")
    assert restored.num_frames == decodable  # what decoded, not 48 (no frozen copies of the last frame)
    # the untrained method upsamples bicubically: the last output frame is the last decodable input
    last_in = torch.stack(list(VideoReader(source).iter_frames()))[-1].float().mean()
    last_out = restored.read_clip(decodable - 1, 1)[0].float().mean()
    assert abs(last_in - last_out) < 4


def test_restore_never_replaces_its_input(ckpt, tmp_path, capsys):
    write_video(tmp_path / "dir" / "clip.mp4", 5)
    before = (tmp_path / "dir" / "clip.mp4").read_bytes()
    common = [str(tmp_path / "dir" / "clip.mp4"), "--ckpt", str(ckpt), "-o", str(tmp_path / "dir"), "--device", "cpu"]
    for extra in ([], ["--overwrite"]):
        err = run_error([*common, *extra], capsys)
        assert "is the input" in err
    assert (tmp_path / "dir" / "clip.mp4").read_bytes() == before
    assert os.listdir(tmp_path / "dir") == ["clip.mp4"]


def test_an_existing_output_is_replaced_only_with_overwrite(ckpt, tmp_path, capsys):
    from vsr_core.partial_files import partial_path

    write_video(tmp_path / "a.mp4", 4)
    common = [str(tmp_path / "a.mp4"), "--ckpt", str(ckpt), "-o", str(tmp_path / "out"), "--device", "cpu"]
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.mp4").write_bytes(b"precious")
    assert "exists; pass --overwrite" in run_error(common, capsys)
    assert (tmp_path / "out" / "a.mp4").read_bytes() == b"precious"
    # a partial left by a killed vsr process (a pid that is gone) is cleaned up by this run
    child = __import__("subprocess").Popen(["true"])
    child.wait()
    stale = partial_path(tmp_path / "out" / "a.mp4")
    stale = stale.with_name(stale.name.replace(f"-{os.getpid()}-", f"-{child.pid}-"))
    stale.write_bytes(b"half")
    assert main([*common, "--overwrite"]) == 0
    assert probe_video(tmp_path / "out" / "a.mp4").frames == 4
    assert sorted(os.listdir(tmp_path / "out")) == ["a.mp4"]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_an_unwritable_output_fails_before_any_work(ckpt, tmp_path, capsys, monkeypatch):
    import vsr_core.checkpoint

    def no_loading(*args, **kwargs):
        raise AssertionError("the method was loaded although the output cannot be written")

    monkeypatch.setattr(vsr_core.checkpoint, "load_method", no_loading)
    write_video(tmp_path / "a.mp4", 3)
    err = run_error([str(tmp_path / "a.mp4"), "--ckpt", str(ckpt), "-o", "/proc", "--device", "cpu"], capsys)
    assert "cannot write into output directory '/proc'" in err


SLOW_PLUGIN = """
import time

from vsr_core.testing import BoringMethod


class SlowVSR(BoringMethod):
    \"\"\"The core's BoringMethod, 0.3 s per window: slow enough to be stopped mid-video.\"\"\"

    def restore(self, lq, prompt=None, **sampling):
        time.sleep(0.3)
        return super().restore(lq, prompt, **sampling)
"""


def test_sigterm_mid_write_leaves_nothing_and_exits_143(tmp_path, fake_plugins):
    import subprocess
    import sys
    import time

    from vsr_core.testing import tiny_trainer

    site = fake_plugins({"fake_slowvsr": SLOW_PLUGIN})
    from fake_slowvsr import SlowVSR

    trainer = tiny_trainer(tmp_path, max_steps=0)
    trainer.strategy.connect(SlowVSR(scale=2, width=4))
    trainer.save_checkpoint(tmp_path / "slow.ckpt")
    write_video(tmp_path / "long.mp4", 60)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    command = [
        sys.executable,
        "-m",
        "vsr_core.cli",
        "restore",
        str(tmp_path / "long.mp4"),
        "--ckpt",
        str(tmp_path / "slow.ckpt"),
        "-o",
        str(out),
        "--window",
        "4",
        "--overlap",
        "1",
        "--device",
        "cpu",
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out.is_dir() and any(p.name.startswith(".long.") for p in out.iterdir())):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)
    time.sleep(0.7)  # a few windows into the video: frames are being written
    process.terminate()  # SIGTERM, what timeout/kill/docker stop/Slurm send
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert stderr.strip() == "terminated; no partial output was left"
    assert not out.exists()  # neither the partial nor the folder this run created


# ---------------------------------------------------------------------------------------------
# Sampling options: --steps, --sample, --prompt, --help-method; automatic tiling (issue 12 item 4, 6)
# ---------------------------------------------------------------------------------------------

OPTIONS_PLUGIN = """
from typing import Literal

from vsr_core.testing import BoringMethod


class OffsetVSR(BoringMethod):
    \"\"\"The core's BoringMethod plus an offset: a method-specific sampling option to set with --sample.\"\"\"

    min_size = 8

    def restore(self, lq, prompt=None, *, num_inference_steps=None, guidance_scale=None, generator=None,
                offset: float = 0.0, mode: Literal["add", "sub"] = "add"):
        \"\"\"Restore, then shift.

        Args:
            offset: added to (mode add) or taken from (mode sub) every pixel.
            mode: add or sub.
        \"\"\"
        out = super().restore(lq, prompt, num_inference_steps=num_inference_steps)
        return out + (offset if mode == "add" else -offset)
"""


@pytest.fixture
def offset_ckpt(tmp_path, fake_plugins) -> Path:
    from vsr_core.testing import tiny_trainer

    fake_plugins({"fake_offsetvsr": OPTIONS_PLUGIN})
    from fake_offsetvsr import OffsetVSR

    trainer = tiny_trainer(tmp_path / "offset", max_steps=0)
    trainer.strategy.connect(OffsetVSR(scale=2, width=4))
    trainer.save_checkpoint(tmp_path / "offset.ckpt")
    return tmp_path / "offset.ckpt"


def flat_video(path: Path, frames: int, value: int = 100, size: int = 16) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.height = stream.width = size
        stream.pix_fmt = "yuv420p"
        for _ in range(frames):
            img = np.full((size, size, 3), value, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_sample_options_reach_the_methods_restore(offset_ckpt, tmp_path):
    flat_video(tmp_path / "flat.mp4", 4)
    common = [str(tmp_path / "flat.mp4"), "--ckpt", str(offset_ckpt), "--device", "cpu"]
    assert main([*common, "-o", str(tmp_path / "plain"), "--threads", "1"]) == 0
    assert main([*common, "-o", str(tmp_path / "shifted"), "--sample", "offset=0.2", "--sample", "mode=sub"]) == 0
    plain = VideoReader(tmp_path / "plain" / "flat.mp4").read_clip(0, 4).float().mean().item()
    shifted = VideoReader(tmp_path / "shifted" / "flat.mp4").read_clip(0, 4).float().mean().item()
    assert abs(plain - 100) < 3 and abs(shifted - (100 - 0.2 * 127.5)) < 3


def test_bad_sampling_options_are_one_line(offset_ckpt, tmp_path, capsys):
    flat_video(tmp_path / "flat.mp4", 2)
    c = [str(tmp_path / "flat.mp4"), "--ckpt", str(offset_ckpt), "--device", "cpu", "-o", str(tmp_path / "out")]
    err = run_error([*c, "--sample", "gain=2"], capsys)
    assert err == "error: --sample gain: OffsetVSR has no such sampling option; it takes: guidance_scale, mode, offset"
    assert "expected add|sub" in run_error([*c, "--sample", "mode=mul"], capsys)
    assert "use --steps instead" in run_error([*c, "--sample", "num_inference_steps=2"], capsys)
    assert "BoringMethod restores in one pass; num_inference_steps=2" in run_error([*c, "--steps", "2"], capsys)
    assert "OffsetVSR has no text encoder, so --prompt cannot be used" in run_error([*c, "--prompt", "a cat"], capsys)
    assert "--tile 4 is smaller than OffsetVSR's minimum tile of 8 LQ pixels" in run_error([*c, "--tile", "4"], capsys)
    assert "does not implement prepare_window" in run_error([*c, "--fusion", "latent"], capsys)
    assert "--fusion tiles: OffsetVSR does not implement prepare_window" in run_error(
        [*c, "--fusion", "tiles"], capsys
    )
    assert "--threads must be >= 1" in run_error([*c, "--threads", "0"], capsys)
    assert not (tmp_path / "out").exists()


def test_help_method_lists_the_sampling_options(offset_ckpt, capsys):
    assert main(["--help-method", "fake_offsetvsr.OffsetVSR"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "  offset: float (default: 0.0)" in out
    assert "      added to (mode add) or taken from (mode sub) every pixel." in out
    assert "  mode: add|sub (default: 'add')" in out
    assert "  num_inference_steps: int | none (default: method default) [set with --steps]" in out
    assert main(["--help-method", "nosuchvsr.Nope"]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err


def test_steps_reach_a_latent_method(tmp_path):
    from vsr_core.testing import LatentBoringMethod, tiny_trainer

    trainer = tiny_trainer(tmp_path, max_steps=0)
    trainer.strategy.connect(LatentBoringMethod(scale=2, sigma=1.0))
    trainer.save_checkpoint(tmp_path / "latent.ckpt")
    flat_video(tmp_path / "flat.mp4", 3, value=128)
    spread = {}
    for steps in (1, 3):
        out = tmp_path / f"steps{steps}"
        assert (
            main(
                [
                    str(tmp_path / "flat.mp4"),
                    "--ckpt",
                    str(tmp_path / "latent.ckpt"),
                    "--device",
                    "cpu",
                    "-o",
                    str(out),
                    "--steps",
                    str(steps),
                ]
            )
            == 0
        )
        spread[steps] = VideoReader(out / "flat.mp4").read_clip(0, 3).float().std().item()
    # the noise left after N contractions by 1/2: 127.5 * 1/2 = 64 levels after one step, 16 after three
    assert spread[1] > 2.5 * spread[3] and spread[3] > 2


def test_frames_larger_than_the_native_tile_are_tiled_by_default(tmp_path, capsys, monkeypatch):
    from vsr_core.inference import engine
    from vsr_core.testing import LatentBoringMethod, tiny_trainer

    trainer = tiny_trainer(tmp_path, max_steps=0)
    trainer.strategy.connect(LatentBoringMethod(scale=2, native_tile=16))
    trainer.save_checkpoint(tmp_path / "latent.ckpt")
    write_video(tmp_path / "v.mp4", 3, height=24, width=40)
    grids = []
    original = engine.RestoreEngine.tile_grid
    monkeypatch.setattr(
        engine.RestoreEngine, "tile_grid", lambda self, h, w: grids.append(original(self, h, w)) or grids[-1]
    )
    base = [str(tmp_path / "v.mp4"), "--ckpt", str(tmp_path / "latent.ckpt"), "--device", "cpu"]
    assert main([*base, "-o", str(tmp_path / "auto")]) == 0
    assert main([*base, "-o", str(tmp_path / "off"), "--tile", "0"]) == 0
    assert {(t.height, t.width) for t in grids[0].tiles} == {(16, 16)} and len(grids[0].tiles) == 2 * 3
    assert grids[1].single
    assert probe_video(tmp_path / "auto" / "v.mp4").frames == 3


DIFFUSERS_PLUGIN = """
from vsr_core.testing import BoringMethod


class UNetVSR(BoringMethod):
    \"\"\"BoringMethod restoring through a tiny diffusers VAE and UNet: two models to offload.\"\"\"

    def __init__(self, **kwargs):
        from diffusers import UNet2DModel

        from vsr_core.latent import AutoencoderKLCodec

        super().__init__(**kwargs)
        self.codec = AutoencoderKLCodec.tiny(seed=1)
        self.unet = UNet2DModel(
            sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 8),
            down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
            norm_num_groups=4,
        )

    def restore(self, lq, prompt=None, *, num_inference_steps=None, guidance_scale=None, generator=None):
        z = self.codec.encode(super().restore(lq))
        b, c, t, h, w = z.shape
        frames = z.transpose(1, 2).reshape(b * t, c, h, w)
        frames = frames + 0.5 * self.unet(frames, 10).sample
        return self.codec.decode(frames.reshape(b, t, c, h, w).transpose(1, 2)).clamp(-1, 1)
"""


@pytest.fixture
def unet_ckpt(tmp_path, fake_plugins) -> Path:
    from vsr_core.testing import tiny_trainer

    fake_plugins({"fake_unetvsr": DIFFUSERS_PLUGIN})
    from fake_unetvsr import UNetVSR

    torch.manual_seed(0)
    trainer = tiny_trainer(tmp_path / "unet", max_steps=0)
    trainer.strategy.connect(UNetVSR(scale=2))
    trainer.save_checkpoint(tmp_path / "unet.ckpt")
    return tmp_path / "unet.ckpt"


@pytest.mark.parametrize("mode", ["model", "sequential"])
def test_offloaded_restore_writes_the_same_video(unet_ckpt, tmp_path, capsys, mode):
    """--offload keeps the diffusers models in CPU memory until called; the frames are the same."""
    import vsr

    flat_video(tmp_path / "clip.mp4", 3, value=90)
    common = [str(tmp_path / "clip.mp4"), "--ckpt", str(unet_ckpt), "--device", "cpu", "--tile", "0"]
    assert main([*common, "-o", str(tmp_path / "plain")]) == 0
    assert main([*common, "-o", str(tmp_path / "off"), "--offload", mode]) == 0
    assert f"offload ({mode}): codec.vae, unet stay in CPU memory" in capsys.readouterr().err
    plain = VideoReader(tmp_path / "plain" / "clip.mp4").read_clip(0, 3)
    assert torch.equal(VideoReader(tmp_path / "off" / "clip.mp4").read_clip(0, 3), plain)
    assert plain.float().std() > 0  # the UNet's output reaches the frames

    frames = VideoReader(tmp_path / "clip.mp4").read_clip(0, 3).numpy()
    pipe = vsr.load(unet_ckpt, device="cpu", offload=mode, tile=0)
    assert (pipe(frames) == vsr.load(unet_ckpt, device="cpu", tile=0)(frames)).all()


def test_compile_restores_the_same_video(ckpt, tmp_path, capsys):
    """--compile torch.compiles the method's blocks (also on CPU); the frames match the eager ones."""
    flat_video(tmp_path / "clip.mp4", 2)
    common = [str(tmp_path / "clip.mp4"), "--ckpt", str(ckpt), "--device", "cpu"]
    assert main([*common, "-o", str(tmp_path / "eager")]) == 0
    capsys.readouterr()
    assert main([*common, "-o", str(tmp_path / "compiled"), "--compile"]) == 0
    assert "compile: 1 blocks torch.compile'd" in capsys.readouterr().err
    eager = VideoReader(tmp_path / "eager" / "clip.mp4").read_clip(0, 2).int()
    compiled = VideoReader(tmp_path / "compiled" / "clip.mp4").read_clip(0, 2).int()
    assert (eager - compiled).abs().max() <= 1  # float reassociation may move a value across a level


def test_offload_and_compile_of_a_method_without_them_is_one_line(unet_ckpt, ckpt, tmp_path, capsys):
    flat_video(tmp_path / "clip.mp4", 2)
    common = [str(tmp_path / "clip.mp4"), "--device", "cpu", "-o", str(tmp_path / "out")]
    assert main([*common, "--ckpt", str(ckpt), "--offload", "model"]) == 2
    assert "has no diffusers or transformers model to offload; drop --offload" in capsys.readouterr().err
    assert main([*common, "--ckpt", str(unet_ckpt), "--compile"]) == 2
    assert "declares no fsdp_block_classes to compile; drop --compile" in capsys.readouterr().err
    assert not (tmp_path / "out" / "clip.mp4").exists()
