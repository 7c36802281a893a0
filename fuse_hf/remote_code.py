"""Hub remote code: the Python files that let a pushed FUSE repo load on a machine without `fuse_hf`.

``DiffusionPipeline.from_pretrained("user/repo", trust_remote_code=True)`` needs, in the repo (diffusers 0.42,
`pipelines/pipeline_loading_utils.py` and `utils/dynamic_modules_utils.py`):

* a pipeline file at the root named by ``model_index.json``'s ``"_class_name": ["pipeline_fuse", "FUSEPipeline"]``;
* for every custom component, its module file in the component's folder, named by the component's entry:
  ``"vae": ["autoencoder_spectral", "SpectralAutoencoderKL"]`` -> ``vae/autoencoder_spectral.py``;
* siblings that the pipeline file imports relatively (``from .audio import ...``) next to it, at the root:
  diffusers fetches and copies them along, but only one level deep (``..`` is not followed). From a model folder
  (weights inside) it downloads nothing but the named module file, so a component's module is exported as one
  self-contained file, with the fuse_hf modules it imports pasted in (``conditioner/modeling_beats.py`` holds
  the BEATs configuration, filterbank and model).

transformers components of fuse_hf (the BEATs conditioner and its feature extractor) also get an ``auto_map`` in
their ``config.json`` / ``preprocessor_config.json`` naming the uploaded file next to it, so that
``AutoModel`` / ``AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)`` load a downloaded
component folder on its own (transformers reads remote code from a repo's root only, whatever ``subfolder`` says).
:func:`export_beats_remote_code` does the same at the root of a stand-alone BEATs folder (``fuse-hf convert-beats``
output), which then loads from the Hub by repo id.

So the export copies the pipeline module to the root, with every `fuse_hf` module it imports relatively next to
it (imports rewritten to ``from .name``), and each `fuse_hf` component module into its folder as one file.
Methods of the pipeline that only make sense with `fuse_hf` installed (its Hub-aware `from_pretrained` and
`push_to_hub`) are left out of the uploaded copy: diffusers builds the remote pipeline with the class's
constructor, and `DiffusionPipeline`'s own methods serve the rest.

The `fuse_hf` class entries are kept in ``model_index.json`` under ``"_fuse_hf_classes"`` (diffusers ignores keys
that start with ``_``), so that :func:`fuse_hf.hub.resolve_pipeline_folder` can load the same folder with the
installed package's classes and without running any of the uploaded code.

Every exported file is checked to import nothing but the standard library, torch, numpy, diffusers, transformers
and its uploaded siblings; soundfile and soxr may be imported inside functions (reading files, changing sample
rates).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

PIPELINE_MODULE = "fuse_hf.pipelines.pipeline_fuse"
PIPELINE_FILE = "pipeline_fuse"
NATIVE_KEY = "_fuse_hf_classes"
ALLOWED_PACKAGES = frozenset({"torch", "numpy", "diffusers", "transformers"})
# Imported lazily (inside functions) by fuse_hf.audio: only needed for file paths and sample rates other than 16 kHz.
OPTIONAL_LAZY_PACKAGES = frozenset({"soundfile", "soxr"})
# Methods of FUSEPipeline that import the rest of fuse_hf; the uploaded class inherits DiffusionPipeline's instead.
LOCAL_ONLY_METHODS = ("from_pretrained", "push_to_hub", "export_onnx")


def _module_source(module_name: str) -> Path:
    spec = importlib.util.find_spec(module_name)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise ValueError(f"{module_name}: no Python source file to export as Hub remote code.")
    return Path(spec.origin)


def _resolve_relative(module_name: str, level: int, target: str | None, is_package: bool = False) -> str:
    """The absolute module name of ``from {'.' * level}{target} import ...`` written in `module_name`."""
    base = module_name.split(".")
    base = base if is_package else base[:-1]
    if level - 1 > len(base) - 1:
        raise ValueError(f"{module_name}: relative import beyond the top-level package.")
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _strip_methods(source: str, class_name: str, methods: Sequence[str]) -> str:
    """Removes the named methods (with their decorators) from `class_name`, keeping all other lines as they are."""
    tree = ast.parse(source)
    drop: list[tuple[int, int]] = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name in methods:
                    first = min([item.lineno] + [d.lineno for d in item.decorator_list])
                    drop.append((first, item.end_lineno))
    lines = source.splitlines(keepends=True)
    for first, last in sorted(drop, reverse=True):
        del lines[first - 1 : last]
    return "".join(lines)


def _rewrite_relative_imports(source: str, module_name: str) -> tuple[str, dict[str, str]]:
    """Rewrites every relative import of a `fuse_hf` module to ``from .<leaf> import ...``.

    Returns the new source and ``{leaf: absolute module name}`` of the siblings it now needs.
    """
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    needed: dict[str, str] = {}
    edits = []
    for node, absolute in _relative_imports(module_name, tree):
        leaf = absolute.rsplit(".", 1)[-1]
        if needed.get(leaf, absolute) != absolute:
            raise ValueError(f"{module_name}: two imported modules are both named {leaf!r}; cannot flatten them.")
        needed[leaf] = absolute
        edits.append((node.lineno, node.col_offset, "." * node.level + node.module, "." + leaf))
    for lineno, col, old, new in sorted(edits, reverse=True):
        line = lines[lineno - 1]
        start = line.index(old, col)
        lines[lineno - 1] = line[:start] + new + line[start + len(old) :]
    return "".join(lines), needed


def _relative_imports(module_name: str, tree: ast.Module) -> list[tuple[ast.ImportFrom, str]]:
    """Every relative import of a module (at any depth) with the absolute name of the module it imports.

    Raises:
        ValueError: ``from . import name``, which names no module.
    """
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or node.level == 0:
            continue
        if node.module is None:
            raise ValueError(
                f"{module_name}: `from {'.' * node.level} import ...` cannot be exported; import a module."
            )
        found.append((node, _resolve_relative(module_name, node.level, node.module)))
    return found


def _self_contained_source(module_name: str) -> str:
    """The source of `module_name` as one file: the fuse_hf modules it imports relatively (recursively, each once,
    dependencies first) pasted in before its own code, the relative imports dropped.

    A model folder of a Hub pipeline repo is downloaded with only the module file `model_index.json` names, so a
    component's code cannot import siblings.

    Raises:
        ValueError: an import cycle, an aliased relative import, or two modules defining the same top-level name.
    """
    order: list[str] = []

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in stack:
            raise ValueError(f"{name}: import cycle {' -> '.join(stack + (name,))}; cannot make it one file.")
        if name in order:
            return
        tree = ast.parse(_module_source(name).read_text(encoding="utf-8"))
        for _, dependency in _relative_imports(name, tree):
            visit(dependency, stack + (name,))
        order.append(name)

    visit(module_name, ())
    defined: dict[str, str] = {}
    docstring, parts = "", []
    for name in order:
        source = _module_source(name).read_text(encoding="utf-8")
        tree = ast.parse(source)
        drop = []
        for node, _ in _relative_imports(name, tree):
            if node not in tree.body or any(alias.asname for alias in node.names):
                raise ValueError(f"{name}:{node.lineno}: a nested or aliased relative import; cannot make it one file.")
            drop.append(node)
        for index, node in enumerate(tree.body):
            is_docstring = index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            if is_docstring and name == module_name:
                docstring = ast.get_source_segment(source, node) + "\n\n"
            targets = _defined_names(node)
            is_future = isinstance(node, ast.ImportFrom) and node.module == "__future__"
            if is_docstring or is_future or targets == {"__all__"}:
                drop.append(node)
                continue
            for target in targets:
                if defined.setdefault(target, name) != name:
                    raise ValueError(f"{name} and {defined[target]} both define {target!r}; cannot make them one file.")
        lines = source.splitlines(keepends=True)
        for node in sorted(drop, key=lambda item: item.lineno, reverse=True):
            del lines[node.lineno - 1 : node.end_lineno]
        parts.append(f"# {'-' * 90} from {name}\n\n" + "".join(lines).strip("\n") + "\n")
    return docstring + "from __future__ import annotations\n\n" + "\n\n".join(parts)


def _defined_names(node: ast.stmt) -> set[str]:
    """Top-level names a statement defines (functions, classes, assignments; imports do not count)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
    return {name.id for target in targets for name in ast.walk(target) if isinstance(name, ast.Name)}


def _export_module(
    module_name: str,
    folder: Path,
    written: dict[Path, str],
    strip: tuple[str, Sequence[str]] | None = None,
    file_stem: str | None = None,
    self_contained: bool = False,
) -> Path:
    """Writes `module_name` into `folder`: as one file (`self_contained`, for component folders), or with the
    fuse_hf modules it imports relatively exported next to it (recursively), for the repository root."""
    if self_contained:
        source, needed = _self_contained_source(module_name), {}
    else:
        source = _module_source(module_name).read_text(encoding="utf-8")
        if strip is not None:
            source = _strip_methods(source, *strip)
        source, needed = _rewrite_relative_imports(source, module_name)
    target = folder / f"{file_stem or module_name.rsplit('.', 1)[-1]}.py"
    if written.get(target, module_name) != module_name:
        raise ValueError(f"{target.name}: both {written[target]} and {module_name} would be exported under this name.")
    header = f"# Exported from `{module_name}` of fuse-hf for Hub remote code (`trust_remote_code=True`).\n"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(header + source, encoding="utf-8")
    written[target] = module_name
    for leaf, absolute in needed.items():
        if folder / f"{leaf}.py" not in written:
            _export_module(absolute, folder, written)
    return target


def is_remote_code_index(index: dict) -> bool:
    """Whether a `model_index.json` dict is in the remote-code layout written by :func:`export_remote_code`."""
    return NATIVE_KEY in index or isinstance(index.get("_class_name"), (list, tuple))


def native_index(index: dict) -> dict:
    """The `model_index.json` that names the installed `fuse_hf` classes (the inverse of the export)."""
    if NATIVE_KEY not in index:
        if is_remote_code_index(index):
            raise ValueError(
                "model_index.json names remote-code modules but has no `_fuse_hf_classes` entry to map them back to "
                "fuse_hf classes; load it with DiffusionPipeline.from_pretrained(..., trust_remote_code=True)."
            )
        return dict(index)
    native = {k: v for k, v in index.items() if k != NATIVE_KEY}
    native.update(index[NATIVE_KEY])
    return native


def export_remote_code(folder: str | os.PathLike) -> list[Path]:
    """Turns a `save_pretrained` folder of a FUSEPipeline into one that also loads as Hub remote code.

    Writes `pipeline_fuse.py` (+ siblings) at the root and each custom component's module into its folder, and
    rewrites `model_index.json` to name them (keeping the `fuse_hf` entries under ``"_fuse_hf_classes"``).
    Idempotent. Returns the written Python files.

    Raises:
        ValueError: a module that cannot be exported, or an exported file that imports something other than the
            standard library, torch, numpy, diffusers, transformers and its uploaded siblings.
    """
    folder = Path(folder)
    index_path = folder / "model_index.json"
    index = native_index(json.loads(index_path.read_text()))
    if index.get("_class_name") != "FUSEPipeline":
        raise ValueError(f"{index_path}: _class_name is {index.get('_class_name')!r}, expected 'FUSEPipeline'.")

    written: dict[Path, str] = {}
    strip = ("FUSEPipeline", LOCAL_ONLY_METHODS)
    _export_module(PIPELINE_MODULE, folder, written, strip=strip, file_stem=PIPELINE_FILE)
    remote = dict(index)
    remote["_class_name"] = [PIPELINE_FILE, "FUSEPipeline"]
    native_entries = {"_class_name": "FUSEPipeline"}
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, list) or spec[0] is None:
            continue
        library, class_name = spec
        if not library.startswith("fuse_hf."):
            continue  # diffusers / transformers components load as they are
        stem = library.rsplit(".", 1)[-1]
        _export_module(library, folder / name, written, self_contained=True)
        _write_auto_map(folder / name, library, class_name)
        remote[name] = [stem, class_name]
        native_entries[name] = [library, class_name]
    remote[NATIVE_KEY] = native_entries
    index_path.write_text(json.dumps(remote, indent=2, sort_keys=True) + "\n")
    files = sorted(written)
    check_remote_code(folder)
    return files


def _auto_map(module_name: str, class_name: str) -> tuple[str, dict[str, str]] | None:
    """`(config file, auto_map entries)` of a transformers model or feature extractor class; None for others."""
    from transformers import PreTrainedModel
    from transformers.feature_extraction_utils import FeatureExtractionMixin

    cls = getattr(importlib.import_module(module_name), class_name)
    stem = module_name.rsplit(".", 1)[-1]
    if issubclass(cls, PreTrainedModel):  # exported as one file, with its configuration class
        return "config.json", {"AutoConfig": f"{stem}.{cls.config_class.__name__}", "AutoModel": f"{stem}.{class_name}"}
    if issubclass(cls, FeatureExtractionMixin):
        return "preprocessor_config.json", {"AutoFeatureExtractor": f"{stem}.{class_name}"}
    return None


def _write_auto_map(folder: Path, module_name: str, class_name: str) -> None:
    """Adds the transformers `auto_map` of `class_name` to its config file in `folder`, if it has one.

    The file may be a link to the original folder's (:func:`fuse_hf.hub.stage_pipeline_folder` links data files), so
    it is replaced, never written through.
    """
    found = _auto_map(module_name, class_name)
    if found is None or not (folder / found[0]).is_file():
        return
    path = folder / found[0]
    config = json.loads(path.read_text())
    config["auto_map"] = {**config.get("auto_map", {}), **found[1]}
    path.unlink()
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


BEATS_MODULES = ("fuse_hf.models.beats.modeling_beats", "fuse_hf.models.beats.feature_extraction_beats")


def export_beats_remote_code(folder: str | os.PathLike) -> list[Path]:
    """Makes a BEATs folder (`save_pretrained` of a `BEATsModel`, with or without its feature extractor) load as
    transformers remote code: ``AutoModel`` / ``AutoFeatureExtractor.from_pretrained(folder_or_repo,
    trust_remote_code=True)`` without fuse-hf.

    Writes ``modeling_beats.py`` (the configuration, the filterbank and the model in one file) and
    ``feature_extraction_beats.py`` next to ``config.json``, and an ``auto_map`` into ``config.json`` (and
    ``preprocessor_config.json`` when present). Idempotent. Returns the written files.

    Raises:
        ValueError: the folder has no BEATs ``config.json``, or an exported file imports more than allowed.
    """
    folder = Path(folder)
    config = folder / "config.json"
    if not config.is_file() or json.loads(config.read_text()).get("model_type") != "beats":
        raise ValueError(f"{folder}: no config.json of a BEATs model (model_type 'beats'); save one there first.")
    written: dict[Path, str] = {}
    modeling, feature_extraction = BEATS_MODULES
    _export_module(modeling, folder, written, self_contained=True)
    _export_module(feature_extraction, folder, written, self_contained=True)
    _write_auto_map(folder, modeling, "BEATsModel")
    _write_auto_map(folder, feature_extraction, "BEATsFeatureExtractor")
    check_remote_code(folder)
    return sorted(written)


# ------------------------------------------------------------------------------------------- checks


def _imports(tree: ast.AST) -> Iterable[tuple[ast.AST, bool]]:
    """Every import node with whether it sits inside a function (a lazy import)."""

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, in_function
            yield from visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    yield from visit(tree, False)


def check_remote_code(folder: str | os.PathLike) -> dict[str, list[str]]:
    """Checks the uploaded Python files of a remote-code folder.

    Each file may import the standard library, torch, numpy, diffusers and transformers, plus, at the root, modules
    that sit next to it (the only relative imports diffusers resolves; a component folder's file must be
    self-contained), and soundfile/soxr inside functions. Every ``auto_map``
    entry of a ``config.json`` / ``preprocessor_config.json`` must name a file next to it. Returns
    ``{file: sorted top-level packages it imports}``.

    Raises:
        ValueError: naming the file and the import that would fail on a machine without fuse_hf.
    """
    folder = Path(folder)
    report: dict[str, list[str]] = {}
    for path in sorted(folder.rglob("*.py")):
        relative = path.relative_to(folder).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=relative)
        packages = set()
        for node, lazy in _imports(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                if path.parent != folder:
                    raise ValueError(
                        f"{relative}:{node.lineno}: relative import `{'.' * node.level}{node.module or ''}` in a "
                        "component folder; diffusers downloads only the module file model_index.json names from a "
                        "model folder, so a component's code must be one self-contained file."
                    )
                if node.level != 1 or not node.module or "." in node.module:
                    raise ValueError(
                        f"{relative}:{node.lineno}: relative import `{'.' * node.level}{node.module or ''}` is not a "
                        "sibling module; diffusers only fetches `from .name import`."
                    )
                if not (path.parent / f"{node.module}.py").is_file():
                    raise ValueError(
                        f"{relative}:{node.lineno}: imports .{node.module}, which is not uploaded next to it."
                    )
                continue
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            for name in names:
                top = name.split(".")[0]
                packages.add(top)
                if top in ALLOWED_PACKAGES or top in sys.stdlib_module_names or top == "__future__":
                    continue
                if lazy and top in OPTIONAL_LAZY_PACKAGES:
                    continue
                raise ValueError(
                    f"{relative}:{node.lineno}: imports {name!r}; uploaded remote code may only import the standard "
                    "library, torch, numpy, diffusers and transformers (and soundfile/soxr inside functions)."
                )
        report[relative] = sorted(packages)
    for config in sorted([*folder.rglob("config.json"), *folder.rglob("preprocessor_config.json")]):
        for auto_class, target in json.loads(config.read_text()).get("auto_map", {}).items():
            if not isinstance(target, str) or "--" in target:  # "repo--module.Class" is code of another repo
                continue
            module = target.rsplit(".", 1)[0]
            if not (config.parent / f"{module}.py").is_file():
                raise ValueError(
                    f"{config.relative_to(folder)}: auto_map names {auto_class} in {module}.py, which is not "
                    "uploaded next to it."
                )
    if not (folder / "model_index.json").is_file():  # a stand-alone model, not a pipeline
        return report
    index = json.loads((folder / "model_index.json").read_text())
    pipeline_file = index.get("_class_name", [None])[0] if isinstance(index.get("_class_name"), list) else None
    if pipeline_file and not (folder / f"{pipeline_file}.py").is_file():
        raise ValueError(f"{folder}: model_index.json names {pipeline_file}.py, which is missing.")
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, list) or spec[0] in (None, "diffusers", "transformers"):
            continue
        if not (folder / name / f"{spec[0]}.py").is_file():
            raise ValueError(f"{folder}: model_index.json names {name}/{spec[0]}.py, which is missing.")
    return report
