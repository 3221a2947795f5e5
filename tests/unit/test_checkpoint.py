import json
from pathlib import Path

import numpy as np

from hvd_online.state import checkpoint as ckpt
from hvd_online.state.run_state import RunState


def arrays(value: float) -> list[np.ndarray]:
    return [np.full((2, 3), value, dtype="f4"), np.arange(4, dtype="f4") + value]


def test_save_then_load_round_trip(tmp_path: Path):
    state = RunState(step=7, samples_total=70, sources={"t-partition-0": "ab"},
                     operators={"drift": {"steps": 3}})
    path = ckpt.save_checkpoint(tmp_path, arrays(1.0), arrays(2.0), state)
    loaded = ckpt.load_latest_checkpoint(tmp_path)
    assert loaded is not None and loaded.path == path
    assert loaded.state == state
    for got, want in zip(loaded.weights + loaded.optimizer, arrays(1.0) + arrays(2.0),
                         strict=True):
        np.testing.assert_array_equal(got, want)


def test_keeps_only_the_last_k(tmp_path: Path):
    for step in range(1, 6):
        ckpt.save_checkpoint(tmp_path, arrays(step), [], RunState(step=step), keep=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["ckpt-0000000004",
                                                                 "ckpt-0000000005"]


def test_corrupt_newest_falls_back_to_previous(tmp_path: Path, caplog):
    ckpt.save_checkpoint(tmp_path, arrays(1.0), [], RunState(step=1))
    newest = ckpt.save_checkpoint(tmp_path, arrays(2.0), [], RunState(step=2))
    data = bytearray((newest / "weights.npz").read_bytes())
    data[-10] ^= 0xFF
    (newest / "weights.npz").write_bytes(bytes(data))
    loaded = ckpt.load_latest_checkpoint(tmp_path)
    assert loaded is not None and loaded.state.step == 1
    assert loaded.skipped_newer == 1  # reported; sources read from its snapshots
    assert "does not match its manifest checksum" in caplog.text


def test_interrupted_write_leaves_previous_usable(tmp_path: Path, monkeypatch):
    ckpt.save_checkpoint(tmp_path, arrays(1.0), [], RunState(step=1))

    def crash(*args, **kwargs):
        raise OSError("disk full (simulated crash before the manifest)")

    monkeypatch.setattr(ckpt, "_sha256", crash)
    try:
        ckpt.save_checkpoint(tmp_path, arrays(2.0), [], RunState(step=2))
    except OSError:
        pass
    monkeypatch.undo()
    loaded = ckpt.load_latest_checkpoint(tmp_path)
    assert loaded is not None and loaded.state.step == 1
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["ckpt-0000000001"]


def test_directory_without_manifest_is_skipped(tmp_path: Path):
    ckpt.save_checkpoint(tmp_path, arrays(1.0), [], RunState(step=1))
    half = tmp_path / "ckpt-0000000009"
    half.mkdir()
    (half / "state.json").write_text(json.dumps({"step": 9}))
    loaded = ckpt.load_latest_checkpoint(tmp_path)
    assert loaded is not None and loaded.state.step == 1
