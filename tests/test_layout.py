"""The folder tree is the architecture: imports run one way (README, "Architecture")."""

import ast
from pathlib import Path

import latentrec

PKG = Path(latentrec.__file__).parent
# A stage may import its own folder and the stages below it; use and solvers sit side by side.
RANK = {"errors": -1, "atomic": 0, "parallel": 0, "config": 0.5, "devices": 0.5, "progress": 0.5, "data": 1, "models": 2,
        "solvers": 3, "use": 3, "training": 4, "evaluation": 5, "cli": 6, "__init__": 7, "__main__": 7}


def stage(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "__init__"


def imports(path: Path) -> set[str]:
    """Every latentrec module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("latentrec"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("latentrec"))
    return {m for m in found if m != "latentrec"}


def test_imports_run_one_way():
    wrong = []
    for path in PKG.rglob("*.py"):
        own = path.relative_to(PKG).parts[0].removesuffix(".py")
        for target in imports(path):
            other = stage(target)
            if other not in RANK or other == own:
                continue
            if RANK[other] > RANK[own] or (RANK[other] == RANK[own] and own != other):
                wrong.append(f"{path.relative_to(PKG)} imports {target}")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_flat_modules_left_beside_the_stages():
    flat = {p.stem for p in PKG.glob("*.py")}
    assert flat <= {"__init__", "__main__", "atomic", "parallel", "config", "devices", "errors", "progress"}


def test_every_error_class_is_raised_somewhere():
    import inspect

    from latentrec import errors

    classes = [n for n, c in vars(errors).items() if inspect.isclass(c) and issubclass(c, errors.LatentrecError)]
    source = "\n".join(p.read_text() for p in PKG.rglob("*.py") if p.name != "errors.py")
    unused = [n for n in classes if n != "LatentrecError" and f"{n}(" not in source]
    assert unused == []
