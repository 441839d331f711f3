"""environment.yml (conda) gives what `make install` gives: the same Python floor, torch pin and index, the same
package and extras, and the Makefile's environment variables except HF_HUB_OFFLINE, whose way in is documented."""

import re
import tomllib

import yaml

from deepmath_lib.paths import REPO_ROOT


def _makefile() -> str:
    return (REPO_ROOT / "Makefile").read_text()


def _conda() -> dict:
    return yaml.safe_load((REPO_ROOT / "environment.yml").read_text())


def _conda_pip() -> list[str]:
    (pip,) = [d["pip"] for d in _conda()["dependencies"] if isinstance(d, dict) and "pip" in d]
    return pip


def _install_recipe() -> str:
    """The commands of the Makefile's install rule (the `$(STAMP)` target)."""
    text = _makefile()
    start = text.index("$(STAMP): pyproject.toml")
    return text[start : text.index("\n\n", start)]


def test_same_torch_pin_and_index():
    (make_pin,) = re.findall(r"\btorch==[\w.+]+", _install_recipe())
    pins = [r for r in _conda_pip() if r.startswith("torch")]
    assert pins == [make_pin]
    # the Makefile takes torch from pip's default index unless TORCH_INDEX is given: no index line here either
    (default_index,) = re.findall(r"^TORCH_INDEX[ \t]*\?=[ \t]*(.*)$", _makefile(), flags=re.M)
    indexes = [r for r in _conda_pip() if r.startswith("-") and "index" in r]
    assert default_index.strip() == "" and indexes == []


def test_same_package_extras_and_python():
    (make_pkg,) = re.findall(r"install -q -e '([^']+)'", _install_recipe())
    assert f"-e {make_pkg}" in _conda_pip()
    floor = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    python = next(d for d in _conda()["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert floor == ">=" + python.split("=", 1)[1]


def test_same_variables_except_offline_mode():
    make_vars = dict(re.findall(r"^export (\w+)[ \t]*[:?]?=[ \t]*(\S+)[ \t]*$", _makefile(), flags=re.M))
    assert {"PYTHONHASHSEED", "TOKENIZERS_PARALLELISM", "MPLBACKEND", "HF_HUB_OFFLINE"} <= set(make_vars)
    conda_vars = {k: str(v) for k, v in _conda()["variables"].items()}
    assert conda_vars == {k: v for k, v in make_vars.items() if k != "HF_HUB_OFFLINE"}
    # a conda user may reach the hub; the file says how to turn offline mode on
    assert "conda env config vars set HF_HUB_OFFLINE=1" in (REPO_ROOT / "environment.yml").read_text()
