"""``lm-edit sweep --grid``: each editor that takes a grid hyperparameter runs once per
value as its own named run (folder, manifest entry, recorded hyperparameters); bad grids
are refused before anything runs; the report lists every run."""

from __future__ import annotations

import json

import pytest

from lm_edit.studies.sweep.grid import Run, check_grid, expand, parse_grid
from lm_edit.studies.sweep.manifest import MANIFEST
from lm_edit.studies.sweep.runner import SweepConfig, build_task_manager, run_sweep
from tests.test_sweep import tiny_setup  # noqa: F401 - the module fixture


def test_the_grid_expands_only_editors_that_take_it():
    runs = expand(["grace", "ft-l"], parse_grid(["eps=0.5,3"]))
    assert runs == [
        Run("grace-eps=0.5", "grace", {"eps": "0.5"}),
        Run("grace-eps=3", "grace", {"eps": "3"}),
        Run("ft-l", "ft-l"),
    ]
    both = expand(["grace"], parse_grid(["eps=1,2", "n_iter=5,10"]))
    assert [r.name for r in both] == [
        "grace-eps=1-n_iter=5",
        "grace-eps=1-n_iter=10",
        "grace-eps=2-n_iter=5",
        "grace-eps=2-n_iter=10",
    ]


@pytest.mark.parametrize(
    ("options", "model_args", "message"),
    [
        (["eps"], {}, "expected NAME=V1,V2"),
        (["eps=1", "eps=2"], {}, "names 'eps' twice"),
        (["rank=4,8"], {}, "none of the sweep's editors"),
        (["eps=../up,1"], {}, "plain numbers or words"),
        (["eps=1,1"], {}, "given twice"),
        (["eps=1,2"], {"eps": "3"}, "both set 'eps'"),
    ],
)
def test_bad_grids_are_refused_by_name(options, model_args, message):
    with pytest.raises(ValueError, match=message):
        check_grid(parse_grid(options), ["grace", "ft-l"], model_args)


def test_a_grid_value_out_of_range_is_refused_before_anything_runs(tiny_setup, tmp_path):  # noqa: F811
    model_dir, tasks = tiny_setup
    config = SweepConfig(
        model_args={"pretrained": str(model_dir), "edit_data": "demo"},
        editors=["grace"],
        checkpoints=[1],
        tasks=["tiny_facts"],
        output_path=tmp_path / "sweep",
        device="cpu",
        include_path=[str(tasks)],
        grid={"eps": ["-1"]},
    )
    with pytest.raises(ValueError, match="eps"):
        run_sweep(config, build_task_manager(config))
    assert not (tmp_path / "sweep" / "grace-eps=-1").exists()


def test_each_grid_value_is_its_own_run_with_its_own_codebook(tiny_setup, tmp_path):  # noqa: F811
    from lm_edit.editors.codebook import CodebookAdaptor

    model_dir, tasks = tiny_setup
    config = SweepConfig(
        model_args={"pretrained": str(model_dir), "edit_data": "demo", "n_iter": 5},
        editors=["grace"],
        checkpoints=[2],
        tasks=["tiny_facts"],
        output_path=tmp_path / "sweep",
        device="cpu",
        include_path=[str(tasks)],
        grid={"eps": ["0.5", "40"]},
    )
    radii: dict[str, list[float]] = {}

    def keep(name, n_edits, lm):
        if not n_edits:
            return
        (adaptor,) = [m for m in lm.model.modules() if isinstance(m, CodebookAdaptor)]
        radii[name] = adaptor.radii.tolist()

    _, events = run_sweep(config, build_task_manager(config), on_checkpoint=keep)
    assert [(e, k, s) for e, k, s in events] == [
        ("unedited", 0, "evaluated"),
        ("grace-eps=0.5", 2, "evaluated"),
        ("grace-eps=40", 2, "evaluated"),
    ]
    assert max(radii["grace-eps=0.5"]) <= 0.5 and max(radii["grace-eps=40"]) > 0.5
    manifest = json.loads((tmp_path / "sweep" / MANIFEST).read_text())
    assert manifest["editor_arguments"]["grace-eps=0.5"]["eps"] == 0.5
    assert manifest["editor_arguments"]["grace-eps=40"]["eps"] == 40.0
    assert set(manifest["checkpoints"]) == {"unedited/0", "grace-eps=0.5/2", "grace-eps=40/2"}
    assert (tmp_path / "sweep" / "grace-eps=40" / "edits_0002" / "results.json").is_file()

    _, again = run_sweep(config, build_task_manager(config))
    assert {s for _, _, s in again} == {"skipped"}

    from lm_edit.studies.report.build import write_report

    write_report([tmp_path / "sweep"], tmp_path / "report")
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "grace-eps=0.5" in markdown and "grace-eps=40" in markdown
