"""Startup bridge that lets the stock ``lm_eval`` command find lm-edit's model and tasks.

lm-eval 0.4.13 reads no entry points: third-party models are only found when their
module has been imported, and third-party tasks only through ``--include_path``. Upstream
is adding entry-point groups (``lm_eval.models``, merged in PR #4013; ``lm_eval.tasks``,
PR #4015), which ``pyproject.toml`` already declares. Until a release ships them, this
module bridges the gap.

How it runs:

* ``zz_lm_edit_plugin.pth`` at the site-packages root puts a ten-line lazy finder on
  ``sys.meta_path`` at interpreter start; it loads nothing. On the first import of a
  module named ``lm_eval...`` or ``lm_edit...`` it removes itself, loads this file *by
  file path* (without importing the ``lm_edit`` package) and calls :func:`handover`,
  which installs :class:`_ImportHook` and lets it answer for that import.
* When ``lm_eval.models`` has executed (the built-in ``MODEL_MAPPING`` is registered by
  then), ``edited-hf`` is registered as the lazy placeholder :data:`MODEL_TARGET`.
  Registering earlier would leave the model registry non-empty, and ``get_model()`` then
  never imports ``lm_eval.models``, which breaks ``--model hf``.
* When ``TaskManager`` has been defined, its ``__init__`` is wrapped so that
  :func:`plugin_tasks_dir` is indexed after the built-in tasks and before any
  ``include_path`` given by the user (built-in < lm-edit < ``--include_path``, the
  precedence of PR #4015).
* ``lm_edit.tasks`` is made importable in an editable install too (where the YAMLs stay
  in the repository's ``tasks/``), so the ``lm_eval.tasks`` entry point resolves once
  lm-eval reads it.

Each half stands aside when the installed lm-eval discovers that entry-point group
itself. Setting ``LM_EDIT_NO_PLUGIN`` to anything but ``""`` or ``"0"`` disables the
bridge; with ``LM_EDIT_PLUGIN_DEBUG=1`` the ``.pth`` finder prints a traceback when this
module fails to load. Nothing here raises into the interpreter start or into an import.

At import time this module only uses modules that are always loaded (``os``, ``sys``);
everything else is imported once lm-eval (far heavier) is being imported anyway.
"""

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from collections.abc import Callable, Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType

MODEL_NAME = "edited-hf"
"""The ``--model`` name of lm-edit's model wrapper."""

MODEL_TARGET = "lm_edit.evaluation.model:EditedLM"
"""Lazy placeholder for :data:`MODEL_NAME`: must equal the decorated class's ``module:Class``
and the ``lm_eval.models`` entry point in ``pyproject.toml``."""

TASKS_PACKAGE = "lm_edit.tasks"
"""Importable package whose directory holds the task YAMLs (the ``lm_eval.tasks`` entry point)."""

OPT_OUT_ENV = "LM_EDIT_NO_PLUGIN"
"""Environment variable that disables the bridge when set to anything but ``""`` or ``"0"``."""

_HOOK_MARK = "__lm_edit_plugin_hook__"
"""Attribute set to ``True`` on the installed :class:`_ImportHook` (the ``.pth`` finder's
own marker is ``__lm_edit_plugin_lazy__``)."""
_WRAPPED_MARK = "__lm_edit_plugin_wrapped__"
_TASK_MANAGER_MARKERS = ("discover_plugin_task_paths", "TASKS_ENTRY_POINT_GROUP")
_MODEL_REGISTRY_MARKERS = ("load_plugins",)

_paths_module: "ModuleType | None" = None


def disabled() -> bool:
    """Return whether the user opted out of the bridge through :data:`OPT_OUT_ENV`."""
    return os.environ.get(OPT_OUT_ENV, "").strip() not in ("", "0")


def _log() -> "logging.Logger":
    """Return this module's logger (``logging`` is imported only when something is logged)."""
    import logging

    return logging.getLogger(__name__)


def _run_hook(hook: "Callable[[ModuleType], None]", module: "ModuleType") -> None:
    """Call ``hook(module)``; log a failure instead of letting it reach the importer."""
    try:
        hook(module)
    except Exception:
        _log().warning(
            "lm-edit: the lm-eval bridge failed after importing %s; `edited-hf` or the "
            "lm-edit tasks may be missing (set %s=1 to disable the bridge)",
            module.__name__,
            OPT_OUT_ENV,
            exc_info=True,
        )


class _PostExecLoader:
    """Loader proxy that runs a hook right after the real loader has executed a module.

    The real loader is put back on the module and its spec before the module runs, so
    the module, ``inspect``, ``importlib.resources`` and ``importlib.reload`` see the
    original loader; every other attribute is delegated to it.
    """

    def __init__(self, loader: object, hook: "Callable[[ModuleType], None]") -> None:
        """Wrap ``loader`` so that ``hook`` runs after each ``exec_module``."""
        self._loader = loader
        self._hook = hook

    def create_module(self, spec: "ModuleSpec") -> "ModuleType | None":
        """Delegate module creation to the real loader (``None``: the default module)."""
        create = getattr(self._loader, "create_module", None)
        return None if create is None else create(spec)

    def exec_module(self, module: "ModuleType") -> None:
        """Restore the real loader, execute the module, then run the hook."""
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.loader is self:
            spec.loader = self._loader
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self._loader
        self._loader.exec_module(module)
        _run_hook(self._hook, module)

    def __getattr__(self, name: str) -> object:
        """Delegate everything else (``get_source``, ``is_package``, ...) to the real loader."""
        return getattr(self._loader, name)


class _ImportHook:
    """``sys.meta_path`` finder: post-import hooks for a few names, and ``lm_edit.tasks``.

    For a watched name it asks the finders behind it for the real spec and wraps the
    spec's loader in :class:`_PostExecLoader`. For every other name it returns ``None``
    after one dictionary lookup, so it costs next to nothing for unrelated imports.
    """

    def __init__(self, hooks: "dict[str, Callable[[ModuleType], None]]") -> None:
        """Watch the module names in ``hooks``; each hook runs once its module has executed."""
        self.hooks = hooks
        self._busy: set[str] = set()
        setattr(self, _HOOK_MARK, True)

    def find_spec(
        self,
        fullname: str,
        path: "Sequence[str] | None" = None,
        target: "ModuleType | None" = None,
    ) -> "ModuleSpec | None":
        """Return a spec whose loader runs the hook for ``fullname``, or ``None``."""
        if fullname != TASKS_PACKAGE and fullname not in self.hooks:
            return None
        try:
            if fullname == TASKS_PACKAGE:
                return _checkout_tasks_spec(path)
            if fullname in self._busy:
                return None
            self._busy.add(fullname)
            try:
                spec = self._find_real_spec(fullname, path, target)
            finally:
                self._busy.discard(fullname)
            if spec is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _PostExecLoader(spec.loader, self.hooks[fullname])
            return spec
        except Exception:
            return None

    def _find_real_spec(
        self,
        fullname: str,
        path: "Sequence[str] | None",
        target: "ModuleType | None",
    ) -> "ModuleSpec | None":
        """Ask the finders after this one for ``fullname``'s spec, as the import system would."""
        for finder in list(sys.meta_path):
            if finder is self:
                continue
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is None:
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                return spec
        return None


def _checkout_tasks_spec(path: "Sequence[str] | None") -> "ModuleSpec | None":
    """Return a package spec mapping ``lm_edit.tasks`` to a checkout's ``tasks/`` directory.

    In a wheel the YAMLs are package data in ``lm_edit/tasks`` and the ordinary finders
    handle the import (``None`` is returned). In an editable install the package runs from
    the checkout, whose task YAMLs sit in ``tasks/`` next to the ``lm_edit`` directory.
    """
    for entry in path or ():
        if os.path.isdir(os.path.join(entry, "tasks")):
            return None
    for entry in path or ():
        candidate = os.path.join(os.path.dirname(os.path.abspath(entry)), "tasks")
        if os.path.isdir(candidate):
            from importlib.machinery import ModuleSpec

            spec = ModuleSpec(TASKS_PACKAGE, None, is_package=True)
            spec.submodule_search_locations = [candidate]
            return spec
    return None


def _load_paths_module() -> "ModuleType":
    """Return :mod:`lm_edit.paths`, loading it by file path if the package is not imported.

    Going around the package keeps the bridge independent of whatever ``lm_edit/__init__``
    imports (and of any error in it).
    """
    global _paths_module
    loaded = sys.modules.get("lm_edit.paths")
    if loaded is not None:
        return loaded
    if _paths_module is None:
        import importlib.util

        location = os.path.join(os.path.dirname(os.path.abspath(__file__)), "paths.py")
        spec = importlib.util.spec_from_file_location("lm_edit.paths", location)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {location}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _paths_module = module
    return _paths_module


def plugin_tasks_dir() -> "str | None":
    """Return lm-edit's task directory (``lm_edit.paths.tasks_dir()``), or ``None`` if absent."""
    directory = _load_paths_module().tasks_dir()
    return str(directory) if directory.is_dir() else None


def lm_eval_discovers(modules: "Sequence[ModuleType]", markers: "Sequence[str]") -> bool:
    """Return whether the installed lm-eval discovers plugins itself: whether one of
    ``modules`` defines one of ``markers``, the functions upstream's entry-point discovery
    adds (``load_plugins`` for models, ``discover_plugin_task_paths`` for tasks). The
    feature is detected, not a version, so each half of the bridge stands aside the day
    lm-eval ships it."""
    return any(hasattr(module, marker) for module in modules for marker in markers)


def _on_lm_eval_models(models: "ModuleType") -> None:
    """Register ``edited-hf`` lazily once lm-eval's built-in model mapping is registered."""
    import lm_eval.api.registry as registry

    if lm_eval_discovers((registry, models), _MODEL_REGISTRY_MARKERS):
        _log().debug("lm-edit: lm-eval reads `lm_eval.models` entry points itself")
        return
    model_registry = getattr(registry, "model_registry", None)
    if model_registry is None or not hasattr(model_registry, "register"):
        _log().debug("lm-edit: this lm-eval has no lazy model registry; not registering")
        return
    if MODEL_NAME not in model_registry:
        model_registry.register(MODEL_NAME, target=MODEL_TARGET)


def _with_plugin_tasks(include_path: object) -> object:
    """Return ``include_path`` with lm-edit's task directory put in front of the user's paths.

    Paths listed later win in lm-eval's index, so the user's own paths keep precedence over
    lm-edit's. ``include_path`` comes back unchanged if the task directory is missing or
    the user already lists it.
    """
    tasks = plugin_tasks_dir()
    if tasks is None:
        return include_path
    if not include_path:
        user_paths: list[object] = []
    elif isinstance(include_path, (list, tuple)):
        user_paths = list(include_path)
    else:
        user_paths = [include_path]
    real_tasks = os.path.realpath(tasks)
    for entry in user_paths:
        try:
            if os.path.realpath(os.fspath(entry)) == real_tasks:
                return include_path
        except TypeError:
            continue
    return [tasks, *user_paths]


def patch_task_manager(cls: type) -> bool:
    """Wrap ``cls.__init__`` so every ``TaskManager`` also indexes lm-edit's tasks.

    The instance's ``include_path`` attribute keeps the value the caller passed.

    Args:
        cls: lm-eval's ``TaskManager`` class.

    Returns:
        ``True`` if the class was patched now, ``False`` if it already was or has no
        ``include_path`` parameter.
    """
    import functools
    import inspect

    original = cls.__init__
    if getattr(original, _WRAPPED_MARK, False):
        return False
    signature = inspect.signature(original)
    if "include_path" not in signature.parameters:
        return False

    @functools.wraps(original)
    def __init__(self: object, *args: object, **kwargs: object) -> None:
        try:
            bound = signature.bind(self, *args, **kwargs)
            user_path = bound.arguments.get("include_path")
            merged = _with_plugin_tasks(user_path)
            bound.arguments["include_path"] = merged
        except Exception:
            _log().warning("lm-edit: could not add the lm-edit task directory", exc_info=True)
            original(self, *args, **kwargs)
            return
        original(*bound.args, **bound.kwargs)
        if merged is not user_path and getattr(self, "include_path", None) is merged:
            self.include_path = user_path

    setattr(__init__, _WRAPPED_MARK, True)
    cls.__init__ = __init__
    return True


def _on_lm_eval_tasks(module: "ModuleType") -> None:
    """Patch ``TaskManager`` once the module defining it has executed."""
    cls = getattr(module, "TaskManager", None)
    if not isinstance(cls, type) or getattr(cls.__init__, _WRAPPED_MARK, False):
        return
    defining = sys.modules.get(cls.__module__, module)
    if lm_eval_discovers((defining, module), _TASK_MANAGER_MARKERS):
        _log().debug("lm-edit: lm-eval reads `lm_eval.tasks` entry points itself")
        return
    if patch_task_manager(cls):
        _log().debug("lm-edit: TaskManager also indexes %s", plugin_tasks_dir())


def _on_lm_edit(package: "ModuleType") -> None:
    """Bind ``lm_edit._plugin`` on the package: the ``.pth`` line loads it before its package."""
    bootstrap = sys.modules.get("lm_edit._plugin")
    if bootstrap is not None and not hasattr(package, "_plugin"):
        package._plugin = bootstrap


def installed_hook() -> "_ImportHook | None":
    """Return the bridge's finder if one is on ``sys.meta_path``."""
    for finder in sys.meta_path:
        if getattr(finder, _HOOK_MARK, None) is True:
            return finder
    return None


def install() -> bool:
    """Put the import hook at the front of ``sys.meta_path``; idempotent and never raises.

    Modules it watches that are already imported get their hook run at once.

    Returns:
        ``True`` if the hook was installed by this call.
    """
    try:
        if disabled() or installed_hook() is not None:
            return False
        hooks = {
            "lm_edit": _on_lm_edit,
            "lm_eval.models": _on_lm_eval_models,
            "lm_eval.tasks.manager": _on_lm_eval_tasks,
            "lm_eval.tasks": _on_lm_eval_tasks,
        }
        sys.meta_path.insert(0, _ImportHook(hooks))
        for name, hook in hooks.items():
            module = sys.modules.get(name)
            if module is not None:
                _run_hook(hook, module)
        return True
    except Exception:
        return False


def handover(
    fullname: str,
    path: "Sequence[str] | None" = None,
    target: "ModuleType | None" = None,
) -> "ModuleSpec | None":
    """Install the hook and let it answer ``find_spec`` for the import that triggered it.

    The ``.pth`` finder calls this (after removing itself from ``sys.meta_path``) on the
    first import of an ``lm_eval`` or ``lm_edit`` module.
    """
    install()
    hook = installed_hook()
    return None if hook is None else hook.find_spec(fullname, path, target)
