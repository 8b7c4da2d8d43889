"""Tests of the startup bridge (``lm_edit/_plugin.py`` + ``zz_lm_edit_plugin.pth``).

Subprocess tests run the interpreter and the ``lm_eval`` executable of the environment
running pytest, so they exercise the installed ``.pth`` hook exactly as users meet it;
they fail when lm-edit is not installed there (``pip install -e .``). The one ``lm_eval
validate`` run (about fifteen seconds: it indexes every built-in task) is shared by the
tests that need it.
"""

import json
import os
import re
import site
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from lm_edit import _plugin
from lm_edit.paths import tasks_dir

REPO_ROOT = Path(__file__).resolve().parents[1]
PTH_NAME = "zz_lm_edit_plugin.pth"
PROBE_TASK = "lm_edit_probe_include_path"


def _installed_pth() -> Path | None:
    """Return the installed startup hook of this interpreter's environment, if any."""
    dirs = [*site.getsitepackages(), site.getusersitepackages()]
    for directory in dirs:
        candidate = Path(directory) / PTH_NAME
        if candidate.is_file():
            return candidate
    return None


def test_the_startup_hook_is_installed() -> None:
    """The subprocess tests below observe the installed hook: it must be there."""
    assert _installed_pth() is not None, (
        f"lm-edit is not installed here ({PTH_NAME} is not in site-packages): "
        "run `pip install -e .`"
    )


def requires_install(test):  # noqa: ANN001, ANN201
    """Mark of the tests that run the installed hook (see the test above)."""
    return test


def _env(**extra: str) -> dict[str, str]:
    """Return the current environment without the bridge's switches, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LM_EDIT_")}
    env.update(extra)
    return env


def _python(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter of this environment."""
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _write_task(directory: Path, name: str, dataset_path: str = "json") -> Path:
    """Write a minimal loglikelihood task YAML named ``name`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            task: {name}
            dataset_path: {dataset_path}
            test_split: test
            output_type: loglikelihood
            doc_to_text: "{{{{prompt}}}}"
            doc_to_target: "{{{{target}}}}"
            metric_list:
              - metric: acc
            """
        )
    )
    return path


@pytest.fixture(scope="module")
def native() -> dict[str, bool]:
    """Return which entry-point groups the installed lm-eval reads itself (then the bridge
    stands aside and lm-eval's own discovery is what the subprocess tests observe)."""
    import lm_eval.api.registry as registry
    import lm_eval.models as models
    import lm_eval.tasks.manager as manager

    return {
        "models": _plugin.lm_eval_discovers((registry, models), _plugin._MODEL_REGISTRY_MARKERS),
        "tasks": _plugin.lm_eval_discovers((manager,), _plugin._TASK_MANAGER_MARKERS),
    }


# --- interpreter start --------------------------------------------------------------

_FINDERS = """
def finders():
    kinds = []
    for finder in sys.meta_path:
        if hasattr(finder, "__lm_edit_plugin_lazy__"):
            kinds.append("lazy")
        elif getattr(finder, "__lm_edit_plugin_hook__", None) is True:
            kinds.append("hook")
    return kinds
"""

_STARTUP_SCRIPT = f"""
import json, sys
{_FINDERS}
out = {{"modules": sorted(sys.modules), "finders": finders()}}
import lm_eval
bootstrap = sys.modules.get("lm_edit._plugin")
hooks = [f for f in sys.meta_path if getattr(f, "__lm_edit_plugin_hook__", None) is True]
out["after_lm_eval"] = {{
    "finders": finders(),
    "bootstrap_loaded": bootstrap is not None,
    "package_imported": "lm_edit" in sys.modules,
    "hook_from_registered_module": bool(hooks)
    and all(type(f) is bootstrap._ImportHook for f in hooks),
}}
print(json.dumps(out))
"""


@requires_install
def test_startup_loads_nothing_until_lm_eval(tmp_path: Path) -> None:
    """Start-up adds one finder and no module; importing lm_eval swaps in the real hook."""
    runs = {}
    for label, env in (("on", _env()), ("off", _env(LM_EDIT_NO_PLUGIN="1"))):
        proc = _python(_STARTUP_SCRIPT, env, tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""
        runs[label] = json.loads(proc.stdout)
    assert runs["on"]["modules"] == runs["off"]["modules"]
    assert runs["on"]["finders"] == ["lazy"]
    assert runs["off"]["finders"] == []
    assert runs["on"]["after_lm_eval"] == {
        "finders": ["hook"],
        "bootstrap_loaded": True,
        "package_imported": False,
        "hook_from_registered_module": True,
    }
    assert runs["off"]["after_lm_eval"]["finders"] == []
    assert runs["off"]["after_lm_eval"]["bootstrap_loaded"] is False


_FAULTY_BOOTSTRAPS = {
    "raises_on_import": "raise RuntimeError('boom at import')\n",
    "syntax_error": "def broken(:\n",
    "handover_raises": "def handover(*args):\n    raise RuntimeError('boom in handover')\n",
    "no_handover": "X = 1\n",
}


@requires_install
@pytest.mark.parametrize("variant", sorted(_FAULTY_BOOTSTRAPS))
def test_broken_bootstrap_never_breaks_anything(tmp_path: Path, variant: str) -> None:
    """Whatever goes wrong in the bootstrap, start-up and the triggering import succeed,
    silently unless LM_EDIT_PLUGIN_DEBUG is set."""
    fake = tmp_path / "fake" / "lm_edit"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("VALUE = 'fake package'\n")
    (fake / "_plugin.py").write_text(_FAULTY_BOOTSTRAPS[variant])
    env = _env(PYTHONPATH=str(tmp_path / "fake"))
    code = "import lm_edit; print(lm_edit.VALUE)"
    proc = _python(code, env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "fake package"
    assert proc.stderr == ""
    debug = _python(code, {**env, "LM_EDIT_PLUGIN_DEBUG": "1"}, tmp_path)
    assert debug.returncode == 0
    assert debug.stdout.strip() == "fake package"
    assert "Traceback" in debug.stderr


# --- models -------------------------------------------------------------------------

_MODEL_SCRIPT = """
import json, sys
from lm_eval.api.registry import get_model, model_registry
out = {"registry_empty_at_start": len(model_registry) == 0}
try:
    cls = get_model("edited-hf")
    out["edited"] = f"{cls.__module__}:{cls.__name__}"
except ModuleNotFoundError as exc:
    out["edited_missing_module"] = exc.name
placeholder = dict(model_registry.items()).get("edited-hf")
out["placeholder"] = placeholder if isinstance(placeholder, str) else None
hf = get_model("hf")
out["hf"] = f"{hf.__module__}:{hf.__name__}"
from lm_eval.tasks import TaskManager
out["task_manager_wrapped"] = bool(getattr(TaskManager.__init__, "__lm_edit_plugin_wrapped__", 0))
print(json.dumps(out))
"""

_OPT_OUT_SCRIPT = f"""
import json, sys
{_FINDERS}
import lm_eval.models
from lm_eval.api.registry import model_registry
print(json.dumps({{
    "registered": "edited-hf" in model_registry,
    "builtins": "hf" in model_registry,
    "bootstrap_loaded": "lm_edit._plugin" in sys.modules,
    "finders": finders(),
}}))
"""


@pytest.fixture(scope="module")
def model_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, object]]:
    """Run the model-registry checks with the bridge on and opted out."""
    cwd = tmp_path_factory.mktemp("models")
    runs = {}
    for label, script, env in (
        ("on", _MODEL_SCRIPT, _env()),
        ("off", _OPT_OUT_SCRIPT, _env(LM_EDIT_NO_PLUGIN="1")),
    ):
        proc = _python(script, env, cwd)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[label] = json.loads(proc.stdout.strip().splitlines()[-1])
    return runs


@requires_install
def test_edited_hf_resolves_and_hf_still_works(
    model_runs: dict[str, dict[str, object]], native: dict[str, bool]
) -> None:
    """``edited-hf`` is registered after the built-ins, so ``hf`` keeps working after it."""
    run = model_runs["on"]
    assert run["registry_empty_at_start"] is True
    assert run["hf"] == "lm_eval.models.huggingface:HFLM"
    assert run["task_manager_wrapped"] is not native["tasks"]
    assert "edited_missing_module" not in run, f"importing edited-hf needs {run}"
    assert run["edited"] == _plugin.MODEL_TARGET


@requires_install
def test_opt_out_disables_the_bridge(
    model_runs: dict[str, dict[str, object]], native: dict[str, bool]
) -> None:
    """With LM_EDIT_NO_PLUGIN=1 lm-eval is stock: no bootstrap, no hook, and ``edited-hf``
    only if lm-eval reads the entry point itself."""
    assert model_runs["off"] == {
        "registered": native["models"],
        "builtins": True,
        "bootstrap_loaded": False,
        "finders": [],
    }


def test_entry_points_match_the_bridge() -> None:
    """pyproject's entry points name exactly what the bridge registers and maps."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    groups = project["entry-points"]
    assert groups["lm_eval.models"] == {_plugin.MODEL_NAME: _plugin.MODEL_TARGET}
    assert list(groups["lm_eval.tasks"].values()) == [_plugin.TASKS_PACKAGE]


# --- tasks: the real lm_eval executable ---------------------------------------------

LM_EDIT_TASK = "counterfact_edit"


def _has_lm_edit_task() -> bool:
    """Return whether lm-edit's ``counterfact_edit`` task YAML has been written yet."""
    return (tasks_dir() / f"{LM_EDIT_TASK}.yaml").is_file()


@pytest.fixture(scope="module")
def validate_run(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """Run ``lm_eval validate`` once for a built-in, a user --include_path and an lm-edit task.

    ``validate`` builds the same TaskManager as ``lm_eval run`` and reports the names it
    cannot find, at half the cost of ``lm_eval ls tasks`` (which also reads every YAML).
    """
    work = tmp_path_factory.mktemp("validate")
    _write_task(work / "include", PROBE_TASK)
    names = ["hellaswag", PROBE_TASK] + ([LM_EDIT_TASK] if _has_lm_edit_task() else [])
    executable = Path(sys.executable).with_name("lm_eval")
    command = [str(executable), "validate", "--tasks", ",".join(names)]
    return subprocess.run(
        [*command, "--include_path", str(work / "include")],
        env=_env(),
        cwd=work,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _missing(run: subprocess.CompletedProcess[str]) -> set[str]:
    """Return the task names ``lm_eval validate`` reported as not found."""
    match = re.search(r"^Tasks not found: (.*)$", run.stdout, flags=re.MULTILINE)
    return {name.strip() for name in match.group(1).split(",")} if match else set()


@requires_install
def test_lm_eval_keeps_user_include_path(validate_run: subprocess.CompletedProcess[str]) -> None:
    """With the bridge, lm_eval still finds built-in tasks and a user's --include_path."""
    assert "Validating tasks" in validate_run.stdout, validate_run.stderr[-3000:]
    assert not {"hellaswag", PROBE_TASK} & _missing(validate_run)


@requires_install
def test_lm_eval_finds_lm_edit_tasks(validate_run: subprocess.CompletedProcess[str]) -> None:
    """``counterfact_edit`` from lm-edit's task directory is found without --include_path."""
    assert _has_lm_edit_task(), f"{tasks_dir() / (LM_EDIT_TASK + '.yaml')} is missing"
    assert LM_EDIT_TASK not in _missing(validate_run), "does its YAML parse?"
    assert validate_run.returncode == 0, validate_run.stdout + validate_run.stderr[-3000:]


# --- tasks: the TaskManager wrapper in this process ---------------------------------


@pytest.fixture
def task_manager_cls(monkeypatch: pytest.MonkeyPatch, native: dict[str, bool]) -> Iterator[type]:
    """Yield lm-eval's TaskManager, patched by the bridge; restored after the test."""
    if native["tasks"]:
        pytest.skip("this lm-eval reads `lm_eval.tasks` entry points: the wrapper is unused")
    from lm_eval.tasks import TaskManager as task_manager

    monkeypatch.setattr(task_manager, "__init__", task_manager.__init__)
    _plugin.patch_task_manager(task_manager)
    yield task_manager


def test_task_precedence_builtin_plugin_user(
    task_manager_cls: type, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """lm-edit's tasks are indexed, a user's --include_path overrides them, and the
    instance's ``include_path`` is the caller's value."""
    plugin_dir, user_dir = tmp_path / "plugin", tmp_path / "user"
    _write_task(plugin_dir, "lm_edit_probe_plugin_only")
    _write_task(plugin_dir, "lm_edit_probe_shared", dataset_path="from_plugin")
    _write_task(user_dir, "lm_edit_probe_shared", dataset_path="from_user")
    monkeypatch.setattr(_plugin, "plugin_tasks_dir", lambda: str(plugin_dir))

    manager = task_manager_cls(include_path=str(user_dir), include_defaults=False)
    index = manager.task_index
    assert index["lm_edit_probe_plugin_only"].yaml_path.parent == plugin_dir
    assert index["lm_edit_probe_shared"].yaml_path.parent == user_dir
    assert manager.include_path == str(user_dir)

    alone = task_manager_cls(include_defaults=False)
    assert set(alone.task_index) == {"lm_edit_probe_plugin_only", "lm_edit_probe_shared"}
    assert alone.include_path is None

    listed_twice = task_manager_cls(include_path=[plugin_dir], include_defaults=False)
    assert listed_twice.include_path == [plugin_dir]


def test_patch_is_idempotent(task_manager_cls: type) -> None:
    """Patching an already patched TaskManager is a no-op."""
    wrapped = task_manager_cls.__init__
    assert _plugin.patch_task_manager(task_manager_cls) is False
    assert task_manager_cls.__init__ is wrapped


# --- mechanism ----------------------------------------------------------------------


def test_import_hook_survives_a_failing_hook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hook that raises is logged; the import succeeds with the original loader."""
    (tmp_path / "lm_edit_probe_module.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    calls: list[str] = []

    def failing(module: types.ModuleType) -> None:
        calls.append(module.__name__)
        raise RuntimeError("hook failure")

    hook = _plugin._ImportHook({"lm_edit_probe_module": failing})
    monkeypatch.setattr(sys, "meta_path", [hook, *sys.meta_path])
    monkeypatch.delitem(sys.modules, "lm_edit_probe_module", raising=False)
    import lm_edit_probe_module

    assert lm_edit_probe_module.VALUE == 42
    assert calls == ["lm_edit_probe_module"]
    assert not isinstance(lm_edit_probe_module.__loader__, _plugin._PostExecLoader)
    assert lm_edit_probe_module.__spec__.loader is lm_edit_probe_module.__loader__
    monkeypatch.delitem(sys.modules, "lm_edit_probe_module")


def test_checkout_tasks_spec(tmp_path: Path) -> None:
    """``lm_edit.tasks`` maps to the checkout's tasks/ only when the package has none."""
    (tmp_path / "lm_edit").mkdir()
    assert _plugin._checkout_tasks_spec([str(tmp_path / "lm_edit")]) is None
    (tmp_path / "tasks").mkdir()
    spec = _plugin._checkout_tasks_spec([str(tmp_path / "lm_edit")])
    assert spec is not None
    assert spec.name == _plugin.TASKS_PACKAGE
    assert list(spec.submodule_search_locations) == [str(tmp_path / "tasks")]
    (tmp_path / "lm_edit" / "tasks").mkdir()
    assert _plugin._checkout_tasks_spec([str(tmp_path / "lm_edit")]) is None


def test_stands_aside_for_native_discovery(native: dict[str, bool]) -> None:
    """Upstream's discovery functions, once present, make the bridge stand aside."""
    import lm_eval.api.registry as registry

    assert native["models"] is hasattr(registry, "load_plugins")
    marked = types.ModuleType("fake_manager")
    assert not _plugin.lm_eval_discovers((marked,), _plugin._TASK_MANAGER_MARKERS)
    marked.discover_plugin_task_paths = lambda: []
    assert _plugin.lm_eval_discovers((marked,), _plugin._TASK_MANAGER_MARKERS)

    class TaskManager:
        def __init__(self, include_path: object = None) -> None:
            self.include_path = include_path

    marked.TaskManager = TaskManager
    TaskManager.__module__ = marked.__name__
    original = TaskManager.__init__
    _plugin._on_lm_eval_tasks(marked)
    assert TaskManager.__init__ is original


def test_tasks_dir_in_checkout() -> None:
    """In a checkout (or editable install) the task YAMLs are the repository's tasks/."""
    if (Path(_plugin.__file__).parent / "tasks").is_dir():
        pytest.skip("running from an installed wheel")
    assert tasks_dir() == REPO_ROOT / "tasks"
