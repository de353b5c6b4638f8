"""./dev train installs torch exactly when the run will need it (the pinned CPU wheel is large)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def needs_torch(*args: str | Path) -> bool:
    command = ["bash", str(ROOT / "dev"), "needs-torch", *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode == 0


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), False),
        (("--engine", "torch"), True),
        (("--engine=torch",), True),
        (("--engine", "numpy"), False),
        (("--config", ROOT / "configs" / "classic_torch.toml"), True),
        (("--config", ROOT / "configs" / "classic.toml"), False),
        (("--config", ROOT / "configs" / "classic.toml", "--engine", "torch"), True),
        (("--config", "missing.toml"), False),   # mlpkit itself reports the missing file
        (("--model", "vit"), True),                 # a ViT trains on the torch engine only
        (("--model", "mlp"), False),
        (("--config", ROOT / "configs" / "vit_fashion_mnist.toml"), True),
    ],
)
def test_needs_torch_reads_the_options_and_the_config_file(
    args: tuple[str | Path, ...], expected: bool
) -> None:
    assert needs_torch(*args) is expected


def test_needs_torch_reads_the_config_of_the_run_to_resume(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"run": {"engine": "torch"}}))
    assert needs_torch("--resume", tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"run": {"engine": "numpy"}}))
    assert not needs_torch("--resume", f"{tmp_path}/")
