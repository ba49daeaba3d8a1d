"""`read_torch_file`: tensors and plain values load; code never runs; every bad file is one line."""

from __future__ import annotations

import pickle
from collections import OrderedDict

import pytest
import torch

from vsr_core.errors import CheckpointError, PretrainedError
from vsr_core.torch_files import read_torch_file


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message and message
    return message


def test_the_payload_is_live_when_unpickled_without_weights_only(malicious_checkpoint):
    """The fixture is a real attack: loading it the old way runs its code (so the other tests can fail)."""
    path, marker = malicious_checkpoint
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_a_malicious_pickle_is_refused_without_running(malicious_checkpoint, tmp_path):
    path, marker = malicious_checkpoint
    with pytest.raises(CheckpointError) as err:
        read_torch_file(path, what="checkpoint", error=CheckpointError)
    assert not marker.exists()
    assert "refused" in one_line(err) and "posix.system" in one_line(err) and str(path) in one_line(err)
    # the same object as plain pickles (not torch's zip format): protocol 2 reaches the global and is
    # refused by name; protocol 5 stops at an opcode torch's safe unpickler does not take
    from malicious import MarkerPayload

    for protocol, expected in ((2, "refused: it holds posix.system"), (5, "not a file written by torch.save")):
        raw = tmp_path / f"raw{protocol}.pkl"
        raw.write_bytes(pickle.dumps({"x": MarkerPayload(marker)}, protocol=protocol))
        with pytest.raises(PretrainedError) as err:
            read_torch_file(raw)
        assert not marker.exists() and expected in one_line(err)


def test_tensors_and_plain_values_load(tmp_path):
    value = {"w": torch.arange(6.0).reshape(2, 3), "meta": OrderedDict(a=[1, 2.5, "x", None, True]), "t": (1, 2)}
    torch.save(value, tmp_path / "zip.pt")
    torch.save(value, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    for name in ("zip.pt", "legacy.pt"):
        loaded = read_torch_file(tmp_path / name)
        assert torch.equal(loaded["w"], value["w"]) and loaded["meta"] == value["meta"] and loaded["t"] == (1, 2)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "does not exist"),
        (b"", "is empty"),
        (b"hello, this is a text file\n" * 20, "not a file written by torch.save"),
        ("half", "truncated"),
    ],
    ids=["missing", "empty", "text", "truncated"],
)
def test_bad_files_are_one_line_naming_the_file(tmp_path, content, expected):
    path = tmp_path / "bad.ckpt"
    if content == "half":
        torch.save({"w": torch.zeros(1000)}, tmp_path / "good.pt")
        data = (tmp_path / "good.pt").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        read_torch_file(path, what="checkpoint", error=CheckpointError)
    assert expected in one_line(err) and str(path) in one_line(err)
    assert "_use_new_zipfile_serialization" not in one_line(err)
