import subprocess

import pytest

from aalp import artifacts


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "metrics.json"
    artifacts.write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with artifacts.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert artifacts.read_json(target) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary file left


def test_code_version_outside_git(monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(OSError("no git")))
    v = artifacts.code_version()
    assert v.startswith("src-sha256:") and len(v) == len("src-sha256:") + 16


def test_write_json_writes_numpy_and_torch_scalars_as_their_values(tmp_path):
    """A numpy.bool_ False once went to metrics.json as the string "False", which the report read as a fired check."""
    import json

    import numpy as np
    import torch

    from aalp.artifacts import write_json

    write_json(tmp_path / "m.json", {"b": np.bool_(False), "f": np.float64(0.5), "i": np.int64(3),
                                     "t": torch.tensor(2.5), "p": tmp_path})
    got = json.loads((tmp_path / "m.json").read_text())
    assert got == {"b": False, "f": 0.5, "i": 3, "t": 2.5, "p": str(tmp_path)}
