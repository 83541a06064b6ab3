"""The layer order of STYLE.md, enforced: io -> data -> models -> losses -> tasks -> artifacts
-> training -> inference -> evaluation -> cli / apps. A module imports only from its own
layer or those before it (imports inside functions count too); errors, config, registry,
atomic and devices sit underneath everything. The viewer (apps) never imports training."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAYERS = {"io": 1, "data": 2, "models": 3, "losses": 4, "tasks": 5, "artifacts": 6, "training": 7,
          "inference": 8, "evaluation": 9, "cli": 10, "__main__": 10, "apps": 10}
BASE = 0  # medssl.errors, .config, .registry, .atomic, .devices, the package itself
FORBIDDEN = {"apps": {"training"}}  # read models through artifacts and inference only


def layer_of(module: str) -> tuple[str, int]:
    """('io', 1) for 'medssl.io.nifti'; ('apps', 10) for 'apps.viewer.render'; base modules 0."""
    parts = module.split(".")
    if parts[0] == "apps":
        return "apps", LAYERS["apps"]
    name = parts[1] if len(parts) > 1 else ""
    return (name, LAYERS[name]) if name in LAYERS else ("base", BASE)


def imports_of(path: Path, module: str) -> list[tuple[str, int]]:
    """(imported medssl/apps module, line) for every import in the file, nested ones included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((name, node.lineno))
            found += [(f"{name}.{a.name}", node.lineno) for a in node.names]  # `from medssl import io`
    return [(n, line) for n, line in found if n.split(".")[0] in ("medssl", "apps")]


def violations(root: Path, packages: tuple[str, ...] = ("medssl", "apps")) -> list[str]:
    out = []
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            module = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
            src_name, src_layer = layer_of(module)
            for target, line in imports_of(path, module):
                dst_name, dst_layer = layer_of(target)
                if target.count(".") == 1 and dst_name == "base" and target.split(".")[1] not in (
                        "errors", "config", "registry", "atomic", "devices", "__version__"):
                    continue  # `from medssl import X` names resolved by the line's other entry
                if dst_layer > src_layer or dst_name in FORBIDDEN.get(src_name, set()):
                    out.append(f"{path.relative_to(root)}:{line}: {module} ({src_name}) imports {target} ({dst_name})")
    return out


def test_medssl_imports_follow_the_layer_order():
    found = violations(REPO)
    assert not found, "imports against the layer order:\n" + "\n".join(found)


def test_the_check_fails_on_a_deliberate_bad_import(tmp_path):
    # the cycle the architecture review found: training importing evaluation
    pkg = tmp_path / "medssl"
    for sub in ("training", "evaluation", "io"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "training" / "finetune_run.py").write_text(
        "def validate():\n    from medssl.evaluation.evaluate import evaluate_cases\n")
    (pkg / "evaluation" / "evaluate.py").write_text("from medssl.training.finetune_run import validate\n")
    (pkg / "io" / "reader.py").write_text("from ..data import labeled\n")
    found = violations(tmp_path, ("medssl",))
    assert any("training.finetune_run (training) imports medssl.evaluation.evaluate" in v for v in found)
    assert any("medssl.io.reader (io) imports medssl.data" in v for v in found)
    assert not any("medssl.evaluation.evaluate (evaluation) imports" in v for v in found)  # downward is fine


@pytest.mark.parametrize("module", ["medssl.io", "medssl.data", "medssl.models", "medssl.tasks", "medssl.artifacts",
                                    "medssl.training", "medssl.inference", "medssl.evaluation", "medssl.cli"])
def test_every_subpackage_imports(module):
    # an import error in medssl itself must fail here, never turn tests into skips
    __import__(module)


def imports_inside_functions(root: Path, package: str = "medssl") -> list[str]:
    """medssl imports made inside a function body, as 'path:line: module'."""
    out = []
    for path in sorted((root / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for sub in ast.walk(node):
                if isinstance(sub, ast.ImportFrom) and (sub.level or (sub.module or "").startswith("medssl")):
                    out.append(f"{path.relative_to(root)}:{sub.lineno}: {'.' * sub.level}{sub.module or ''}")
                elif isinstance(sub, ast.Import) and any(a.name.startswith("medssl") for a in sub.names):
                    out.append(f"{path.relative_to(root)}:{sub.lineno}: {sub.names[0].name}")
    return sorted(set(out), key=lambda f: (f.split(":")[0], int(f.split(":")[1])))


def test_medssl_modules_import_medssl_at_the_top():
    # The commands (medssl/cli) import what they run when they run it, so `medssl --help`
    # and `data index` start without torch; the viewer (apps/) does the same for its first
    # page. Everywhere else an import inside a function only hides a dependency.
    found = [f for f in imports_inside_functions(REPO) if not f.startswith("medssl/cli/")]
    assert not found, "medssl imports inside functions (move them to the top):\n" + "\n".join(found)


def test_the_nested_import_check_sees_one(tmp_path):
    (tmp_path / "medssl" / "data").mkdir(parents=True)
    (tmp_path / "medssl" / "data" / "feed.py").write_text(
        "import json\n\ndef f():\n    if True:\n        from medssl.io import read_scan\n    from . import cache\n")
    assert imports_inside_functions(tmp_path) == ["medssl/data/feed.py:5: medssl.io", "medssl/data/feed.py:6: ."]
