"""aalp.sync's pieces that do not need a whole run (the e2e tests switch engines on the CI set's run)."""
import types

import pytest

from aalp import config as C, pipeline as P, sync as S


def test_every_snakemake_job_maps_to_its_dvc_stage(ci_params):
    cfg = C.validate(ci_params)
    names = {st.name for st in P.stages(cfg)}
    mapped = set()
    for st in P.stages(cfg):
        if st.kind == "report":
            mapped.add(S.stage_name(f"report_{st.name.split('-', 1)[1]}", {}))
        elif st.kind == "index":
            mapped.add(S.stage_name("report", {}))
        elif st.kind == "prepare":
            mapped.add(S.stage_name("prepare", {"dataset": st.name.split("-", 1)[1]}))
        else:
            kind, rest = st.name.split("-", 1)
            d, m, s = rest.rsplit("-", 2)
            mapped.add(S.stage_name(kind, {"dataset": d, "method": m, "seed": s[1:]}))
    assert mapped == names
    assert S.stage_name("all", {}) is None


@pytest.mark.parametrize("path", ["runs/synthetic/adv/s0/model.pt", "x" * 400 + "/deep/name.json"])
def test_record_path_is_snakemakes(tmp_path, path):
    """The metadata record we read is the file Snakemake's own persistence writes (long names split too)."""
    from snakemake.persistence.file import FilePersistence

    fake = types.SimpleNamespace(_max_len=None)
    fake._fetch_max_len = lambda subject: FilePersistence._fetch_max_len(fake, subject)
    meta = tmp_path / ".snakemake" / "metadata"
    meta.mkdir(parents=True)
    theirs = FilePersistence._record_path(fake, str(meta), path)
    assert S._record(tmp_path, path) == tmp_path / theirs


def test_no_dvc_repository_no_sync(ci_params, tmp_path):
    cfg = C.validate(ci_params)
    assert S.commit_to_dvc(cfg, ["train-synthetic-raw-s0"], tmp_path) is False
    assert S.adopt_dvc(cfg, "Snakefile", tmp_path) == []
