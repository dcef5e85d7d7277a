"""The quick check's stamp: its key changes with every input the validation read, no secret is
ever written, and the Redis URL rebuilt without pydantic is the one the settings build."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from worker.commands import check_stamp
from worker.commands.check_redis_target import configured_redis_url
from worker.commands.check_stamp import read_stamp, secret_digest, stamp_key, write_stamp
from worker.settings import load_settings
from worker.state.ping import Unsupported

SECRET = "s3cret-Zq9!pass"


@pytest.fixture
def inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A working directory and an environment with a mapping file and a secret file."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mapping.yaml").write_text("version: 1\n")
    (tmp_path / "redis_password").write_text(SECRET + "\n")
    return {
        "HOME": str(tmp_path / "home"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "REDIS_URL": "redis://redis.example:6379/0",
        "REDIS_PASSWORD_FILE": str(tmp_path / "redis_password"),
        "CRMSYNC_MAPPING": str(tmp_path / "mapping.yaml"),
        "SALESFORCE_PASSWORD": SECRET,
    }


def files(tmp_path: Path) -> list[str]:
    return [str(tmp_path / "redis_password"), str(tmp_path / "mapping.yaml")]


def test_the_key_is_stable_for_the_same_inputs(inputs: dict[str, str], tmp_path: Path) -> None:
    assert stamp_key(files(tmp_path), inputs) == stamp_key(files(tmp_path), dict(inputs))


@pytest.mark.parametrize(
    "change",
    [
        "env var changed",
        "env var added",
        "env var removed",
        "lower-case field name added",
        ".env created",
        ".env changed",
        "mapping file changed",
        "secret file changed",
        "secret file gone",
        "version",
        "code",
        "working directory",
    ],
)
def test_any_changed_input_changes_the_key(
    change: str, inputs: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("CRMSYNC_POLL_INTERVAL_S=60\n")
    before = stamp_key(files(tmp_path), inputs)
    env = dict(inputs)
    cwd = None
    if change == "env var changed":
        env["SALESFORCE_PASSWORD"] = SECRET + "x"
    elif change == "env var added":
        env["CRMSYNC_OVERLAP_S"] = "30"
    elif change == "env var removed":
        del env["REDIS_URL"]
    elif change == "lower-case field name added":  # pydantic-settings reads `poll_interval_s`
        env["poll_interval_s"] = "5"
    elif change == ".env created":
        (tmp_path / ".env").unlink()
        before = stamp_key(files(tmp_path), inputs)
        (tmp_path / ".env").write_text("CRMSYNC_POLL_INTERVAL_S=60\n")
    elif change == ".env changed":
        (tmp_path / ".env").write_text("CRMSYNC_POLL_INTERVAL_S=61\n")
    elif change == "mapping file changed":
        (tmp_path / "mapping.yaml").write_text("version: 1\nname: {field: Account.Nmae}\n")
    elif change == "secret file changed":
        (tmp_path / "redis_password").write_text(SECRET + "2\n")
    elif change == "secret file gone":
        (tmp_path / "redis_password").unlink()
    elif change == "version":
        monkeypatch.setattr(check_stamp, "_installed_version", lambda: "crmsync-0.2.0.dist-info")
    elif change == "code":
        monkeypatch.setattr(check_stamp, "_code_digest", lambda: "an edited checkout")
    elif change == "working directory":
        (tmp_path / "elsewhere").mkdir()
        cwd = str(tmp_path / "elsewhere")
    assert stamp_key(files(tmp_path), env, cwd) != before


def test_a_shell_s_own_variables_do_not_change_the_key(
    inputs: dict[str, str], tmp_path: Path
) -> None:
    noisy = {**inputs, "PWD": "/elsewhere", "OLDPWD": "/x", "SHLVL": "3", "_": "/usr/bin/env"}
    assert stamp_key(files(tmp_path), noisy) == stamp_key(files(tmp_path), inputs)


def test_every_mapping_module_is_in_the_code_digest() -> None:
    root = Path(check_stamp.__file__).resolve().parents[2] / "mappings"
    modules = {p for p in root.rglob("*.py") if "__pycache__" not in p.parts}
    covered = {p for directory, pattern in check_stamp._CODE for p in directory.glob(pattern)}
    assert modules and modules <= covered


def test_the_stamp_holds_no_secret_and_is_private(inputs: dict[str, str], tmp_path: Path) -> None:
    url = f"redis://:{SECRET}@redis.example:6379/0"
    key = write_stamp(
        files(tmp_path),
        lambda key: {"redis": {"digest": secret_digest(key, url), "shown": "redis://***@x"}},
        inputs,
    )
    assert key is not None
    stamp = tmp_path / "cache" / "crmsync" / check_stamp.STAMP_FILE
    text = stamp.read_text()
    assert SECRET not in text and SECRET.encode().hex() not in text
    assert stamp.stat().st_mode & 0o077 == 0
    assert (stamp.parent.stat().st_mode & 0o077) == 0
    found = read_stamp(inputs)
    assert found is not None and found["key"] == key


def test_a_stamp_for_other_inputs_is_no_stamp(inputs: dict[str, str], tmp_path: Path) -> None:
    assert write_stamp(files(tmp_path), lambda key: {}, inputs) is not None
    (tmp_path / "mapping.yaml").write_text("version: 1\nbroken: [\n")
    assert read_stamp(inputs) is None


def test_an_unwritable_cache_stamps_nothing_and_says_nothing(
    inputs: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("")
    env = {**inputs, "XDG_CACHE_HOME": str(tmp_path / "a-file")}  # mkdir under a file fails
    assert write_stamp(files(tmp_path), lambda key: {}, env) is None
    assert read_stamp(env) is None
    assert write_stamp([], lambda key: {}, {"HOME": "relative"}) is None


@pytest.mark.parametrize(
    "variables",
    [
        {"REDIS_URL": "redis://redis.example:6379/0"},
        {"REDIS_URL": "redis://redis.example:6379/2", "REDIS_PASSWORD": "p@ss/w:rd&x %"},
        {"REDIS_URL": "rediss://user@redis.example:6380/0", "REDIS_PASSWORD": "pw"},
        {"REDIS_URL": "redis://:inline@redis.example/0"},
        {"REDIS_URL": "unix:///run/redis.sock?db=1", "REDIS_PASSWORD": "pw"},
        {"REDIS_URL": "redis://r:6379/0", "REDIS_PASSWORD_FILE": "{tmp}/redis_password"},
        {"redis_url": "redis://lower.example:6379/0", "redis_password": "pw"},
        {
            "REDIS_SENTINELS": "s1:26379, s2:26380",
            "REDIS_SENTINEL_MASTER": "mymaster",
            "REDIS_PASSWORD": "primary pw",
            "REDIS_SENTINEL_PASSWORD": "sentinel&pw",
            "REDIS_SENTINEL_TLS": "yes",
        },
        {
            "REDIS_SENTINELS": "s1:26379",
            "REDIS_SENTINEL_MASTER": "m",
            "REDIS_SENTINEL_PASSWORD_FILE": "{tmp}/redis_password",
        },
        {"REDIS_URL": ""},
        {},
    ],
)
def test_the_rebuilt_redis_url_is_the_one_the_settings_build(
    variables: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "redis_password").write_text(SECRET + "\n")
    env = {name: value.replace("{tmp}", str(tmp_path)) for name, value in variables.items()}
    for name in list(os.environ):
        if name.upper().startswith(("REDIS_", "CRMSYNC_", "SALESFORCE_", "METRONOME_")):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert configured_redis_url(env, str(tmp_path)) == load_settings().redis_url


def test_a_dotenv_naming_redis_is_left_to_the_full_check(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("REDIS_URL=redis://elsewhere:6379/0\n")
    with pytest.raises(Unsupported):
        configured_redis_url({}, str(tmp_path))
    (tmp_path / ".env").write_text("CRMSYNC_POLL_INTERVAL_S=30\n")
    assert configured_redis_url({"REDIS_URL": "redis://r:1/0"}, str(tmp_path)) == "redis://r:1/0"


def test_the_cheap_version_is_importlib_metadata_s() -> None:
    """``crmsync --version`` and the stamp read METADATA themselves (commands/installed.py)."""
    from importlib import metadata

    from worker.commands.installed import installed_version

    assert installed_version() == metadata.version("crmsync")
