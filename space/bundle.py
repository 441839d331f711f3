"""Write the folder that is pushed to a Hugging Face Space unchanged (`make space-bundle`, default `dist/space/`).

The folder holds app.py, the Space's README (its metadata), a Dockerfile, requirements.txt and this repo's wheel. A
Docker Space, not a Gradio one: the Gradio builder installs requirements.txt before it copies the repository in,
so a requirements line cannot point at a wheel that sits next to it. Our Dockerfile copies first, then installs.

    python space/bundle.py [--out dist/space]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FILES = ("app.py", "README.md", "Dockerfile")


def build_wheel(out: Path) -> Path:
    """Build this repo's wheel into `out`. As `python -m build` does by default: an sdist first, then the wheel
    from the unpacked sdist, so the wheel holds what a release would and no build/ folder lands in the tree."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "build", "--outdir", tmp, str(REPO)], capture_output=True, text=True
        )
        wheels = sorted(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise RuntimeError(f"building the wheel failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        return Path(shutil.copy2(wheels[0], out / wheels[0].name))


def bundle(out: Path) -> Path:
    """Write the Space folder at `out` (replacing it); returns `out`."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    wheel = build_wheel(out)
    for name in FILES:
        shutil.copy2(HERE / name, out / name)
    template = (HERE / "requirements.template.txt").read_text()
    (out / "requirements.txt").write_text(template.replace("{wheel}", wheel.name))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist" / "space")
    out = bundle(parser.parse_args().out)
    print(f"wrote {out}: {', '.join(sorted(p.name for p in out.iterdir()))}")


if __name__ == "__main__":
    main()
