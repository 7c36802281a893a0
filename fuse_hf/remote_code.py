"""Hub remote code: the Python files that let a pushed FUSE repo load on a machine without `fuse_hf`.

``DiffusionPipeline.from_pretrained("user/repo", trust_remote_code=True)`` needs, in the repo (diffusers 0.42,
`pipelines/pipeline_loading_utils.py` and `utils/dynamic_modules_utils.py`):

* a pipeline file at the root named by ``model_index.json``'s ``"_class_name": ["pipeline_fuse", "FUSEPipeline"]``;
* for every custom component, its module file in the component's folder, named by the component's entry:
  ``"vae": ["autoencoder_spectral", "SpectralAutoencoderKL"]`` -> ``vae/autoencoder_spectral.py``;
* siblings that those files import relatively (``from .audio import ...``) next to them, in the same folder:
  diffusers fetches and copies them along, but only one level deep (``..`` is not followed).

So the export copies the pipeline module to the root and each `fuse_hf` component module into its folder, copies
every `fuse_hf` module they import relatively next to the importer and rewrites that import to ``from .name``.
Methods of the pipeline that only make sense with `fuse_hf` installed (its Hub-aware `from_pretrained` and
`push_to_hub`) are left out of the uploaded copy: diffusers builds the remote pipeline with the class's
constructor, and `DiffusionPipeline`'s own methods serve the rest.

The `fuse_hf` class entries are kept in ``model_index.json`` under ``"_fuse_hf_classes"`` (diffusers ignores keys
that start with ``_``), so that :func:`fuse_hf.hub.resolve_pipeline_folder` can load the same folder with the
installed package's classes and without running any of the uploaded code.

Every exported file is checked to import nothing but the standard library, torch, numpy, diffusers and its
uploaded siblings; soundfile and soxr may be imported inside functions (reading files, changing sample rates).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

PIPELINE_MODULE = "fuse_hf.pipelines.pipeline_fuse"
PIPELINE_FILE = "pipeline_fuse"
NATIVE_KEY = "_fuse_hf_classes"
ALLOWED_PACKAGES = frozenset({"torch", "numpy", "diffusers"})
# Imported lazily (inside functions) by fuse_hf.audio: only needed for file paths and sample rates other than 16 kHz.
OPTIONAL_LAZY_PACKAGES = frozenset({"soundfile", "soxr"})
# Methods of FUSEPipeline that import the rest of fuse_hf; the uploaded class inherits DiffusionPipeline's instead.
LOCAL_ONLY_METHODS = ("from_pretrained", "push_to_hub")


def _module_source(module_name: str) -> Path:
    spec = importlib.util.find_spec(module_name)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise ValueError(f"{module_name}: no Python source file to export as Hub remote code.")
    return Path(spec.origin)


def _resolve_relative(module_name: str, level: int, target: Optional[str], is_package: bool = False) -> str:
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
    drop: List[Tuple[int, int]] = []
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


def _rewrite_relative_imports(source: str, module_name: str) -> Tuple[str, Dict[str, str]]:
    """Rewrites every relative import of a `fuse_hf` module to ``from .<leaf> import ...``.

    Returns the new source and ``{leaf: absolute module name}`` of the siblings it now needs.
    """
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    needed: Dict[str, str] = {}
    edits = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or node.level == 0:
            continue
        absolute = _resolve_relative(module_name, node.level, node.module)
        if node.module is None:
            raise ValueError(f"{module_name}: `from {'.' * node.level} import ...` cannot be exported; import a module.")
        leaf = absolute.rsplit(".", 1)[-1]
        if needed.get(leaf, absolute) != absolute:
            raise ValueError(f"{module_name}: two imported modules are both named {leaf!r}; cannot flatten them.")
        needed[leaf] = absolute
        edits.append((node.lineno, node.col_offset, "." * node.level + node.module, "." + leaf))
    for lineno, col, old, new in sorted(edits, reverse=True):
        line = lines[lineno - 1]
        start = line.index(old, col)
        lines[lineno - 1] = line[:start] + new + line[start + len(old):]
    return "".join(lines), needed


def _export_module(module_name: str, folder: Path, written: Dict[Path, str], strip: Optional[Tuple[str, Sequence[str]]] = None,
                   file_stem: Optional[str] = None) -> Path:
    """Writes `module_name` (and, recursively, the fuse_hf modules it imports relatively) into `folder`."""
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


def export_remote_code(folder: str | os.PathLike) -> List[Path]:
    """Turns a `save_pretrained` folder of a FUSEPipeline into one that also loads as Hub remote code.

    Writes `pipeline_fuse.py` (+ siblings) at the root and each custom component's module into its folder, and
    rewrites `model_index.json` to name them (keeping the `fuse_hf` entries under ``"_fuse_hf_classes"``).
    Idempotent. Returns the written Python files.

    Raises:
        ValueError: a module that cannot be exported, or an exported file that imports something other than the
            standard library, torch, numpy, diffusers and its uploaded siblings.
    """
    folder = Path(folder)
    index_path = folder / "model_index.json"
    index = native_index(json.loads(index_path.read_text()))
    if index.get("_class_name") != "FUSEPipeline":
        raise ValueError(f"{index_path}: _class_name is {index.get('_class_name')!r}, expected 'FUSEPipeline'.")

    written: Dict[Path, str] = {}
    _export_module(PIPELINE_MODULE, folder, written, strip=("FUSEPipeline", LOCAL_ONLY_METHODS), file_stem=PIPELINE_FILE)
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
        _export_module(library, folder / name, written)
        remote[name] = [stem, class_name]
        native_entries[name] = [library, class_name]
    remote[NATIVE_KEY] = native_entries
    index_path.write_text(json.dumps(remote, indent=2, sort_keys=True) + "\n")
    files = sorted(written)
    check_remote_code(folder)
    return files


# ------------------------------------------------------------------------------------------- checks


def _imports(tree: ast.AST) -> Iterable[Tuple[ast.AST, bool]]:
    """Every import node with whether it sits inside a function (a lazy import)."""

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, in_function
            yield from visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    yield from visit(tree, False)


def check_remote_code(folder: str | os.PathLike) -> Dict[str, List[str]]:
    """Checks the uploaded Python files of a remote-code folder.

    Each file may import the standard library, torch, numpy and diffusers, plus modules that sit next to it (the
    only relative imports diffusers resolves), and soundfile/soxr inside functions. Returns
    ``{file: sorted top-level packages it imports}``.

    Raises:
        ValueError: naming the file and the import that would fail on a machine without fuse_hf.
    """
    folder = Path(folder)
    report: Dict[str, List[str]] = {}
    for path in sorted(folder.rglob("*.py")):
        relative = path.relative_to(folder).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=relative)
        packages = set()
        for node, lazy in _imports(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                if node.level != 1 or not node.module or "." in node.module:
                    raise ValueError(f"{relative}:{node.lineno}: relative import `{'.' * node.level}{node.module or ''}`"
                                     " is not a sibling module; diffusers only fetches `from .name import`.")
                if not (path.parent / f"{node.module}.py").is_file():
                    raise ValueError(f"{relative}:{node.lineno}: imports .{node.module}, which is not uploaded next to it.")
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
                    "library, torch, numpy and diffusers (and soundfile/soxr inside functions)."
                )
        report[relative] = sorted(packages)
    index = json.loads((folder / "model_index.json").read_text())
    pipeline_file = index.get("_class_name", [None])[0] if isinstance(index.get("_class_name"), list) else None
    if pipeline_file and not (folder / f"{pipeline_file}.py").is_file():
        raise ValueError(f"{folder}: model_index.json names {pipeline_file}.py, which is missing.")
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, list) or spec[0] is None or spec[0] in ("diffusers", "transformers"):
            continue
        if not (folder / name / f"{spec[0]}.py").is_file():
            raise ValueError(f"{folder}: model_index.json names {name}/{spec[0]}.py, which is missing.")
    return report
