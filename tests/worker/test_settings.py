"""Settings: names are environment variables, secrets stay secret, bad values read well."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import AliasChoices, SecretStr

from worker.settings import (
    SalesforceAuthMode,
    Settings,
    SettingsError,
    environment_variable_names,
    load_settings,
    salesforce_auth_mode,
)

SOAP = {
    "SALESFORCE_USERNAME": "ops@example.com",
    "SALESFORCE_PASSWORD": "hunter2-password",
    "SALESFORCE_SECURITY_TOKEN": "tok-123",
}


def _set(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for key, value in values.items():
        monkeypatch.setenv(key, value)


def test_defaults_need_nothing() -> None:
    settings = load_settings()
    assert settings.redis_url is None
    assert salesforce_auth_mode(settings) is None
    assert settings.poll_interval_s == 60 and settings.overlap_s == 300


@pytest.mark.parametrize(
    ("env", "mode"),
    [
        (SOAP, SalesforceAuthMode.SOAP_PASSWORD),
        (
            {
                "SALESFORCE_USERNAME": "u@example.com",
                "SALESFORCE_PASSWORD": "p",
                "SALESFORCE_CONSUMER_KEY": "k",
                "SALESFORCE_CONSUMER_SECRET": "s",
            },
            SalesforceAuthMode.OAUTH_PASSWORD,
        ),
        (
            {
                "SALESFORCE_USERNAME": "u@example.com",
                "SALESFORCE_CONSUMER_KEY": "k",
                "SALESFORCE_PRIVATE_KEY_FILE": "/keys/sf.pem",
            },
            SalesforceAuthMode.JWT_BEARER,
        ),
        (
            {
                "SALESFORCE_CONSUMER_KEY": "k",
                "SALESFORCE_CONSUMER_SECRET": "s",
                "SALESFORCE_DOMAIN": "acme.my",
            },
            SalesforceAuthMode.CLIENT_CREDENTIALS,
        ),
        (
            {
                "SALESFORCE_SESSION_ID": "00D!abc",
                "SALESFORCE_INSTANCE_URL": "https://acme.my.salesforce.com",
            },
            SalesforceAuthMode.SESSION,
        ),
    ],
)
def test_each_auth_mode_is_recognised(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], mode: SalesforceAuthMode
) -> None:
    _set(monkeypatch, env)
    assert salesforce_auth_mode(load_settings()) is mode


def test_mixing_two_auth_modes_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _set(monkeypatch, {**SOAP, "SALESFORCE_SESSION_ID": "00D!abc"})
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "mix two auth modes" in message and "SALESFORCE_SESSION_ID" in message


def test_incomplete_mode_names_the_missing_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    _set(monkeypatch, {"SALESFORCE_USERNAME": "ops@example.com"})
    with pytest.raises(SettingsError, match="SALESFORCE_PASSWORD, SALESFORCE_SECURITY_TOKEN"):
        load_settings()


def test_client_credentials_needs_my_domain(monkeypatch: pytest.MonkeyPatch) -> None:
    _set(monkeypatch, {"SALESFORCE_CONSUMER_KEY": "k", "SALESFORCE_CONSUMER_SECRET": "s"})
    with pytest.raises(SettingsError, match="SALESFORCE_DOMAIN"):
        load_settings()


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("CRMSYNC_POLL_INTERVAL_S", "soon", "CRMSYNC_POLL_INTERVAL_S: Input should be a valid"),
        ("CRMSYNC_POLL_INTERVAL_S", "0", "CRMSYNC_POLL_INTERVAL_S: Input should be greater"),
        ("REDIS_URL", "localhost:6379", "REDIS_URL: must be a redis://"),
        ("METRONOME_BASE_URL", "api.metronome.com", "METRONOME_BASE_URL: must start with"),
        ("CRMSYNC_CONCURRENCY", "-1", "CRMSYNC_CONCURRENCY"),
    ],
)
def test_a_wrong_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert expected in str(caught.value)
    assert "Traceback" not in str(caught.value)


def test_secrets_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    _set(monkeypatch, {**SOAP, "METRONOME_BEARER_TOKEN": "mtr-secret-xyz"})
    settings = load_settings()
    for text in (repr(settings), str(settings), str(settings.model_dump())):
        assert "hunter2-password" not in text
        assert "tok-123" not in text
        assert "mtr-secret-xyz" not in text
    assert settings.salesforce_password is not None
    assert settings.salesforce_password.get_secret_value() == "hunter2-password"


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    # conftest chdirs into tmp_path, where settings look for .env
    (tmp_path / ".env").write_text("CRMSYNC_POLL_INTERVAL_S=15\nMETRONOME_BEARER_TOKEN=t\n")
    settings = load_settings()
    assert settings.poll_interval_s == 15
    assert settings.metronome_configured


def test_design_contract_variables_exist() -> None:
    names = environment_variable_names()
    for required in (
        "REDIS_URL",
        "METRONOME_BEARER_TOKEN",
        "METRONOME_BASE_URL",
        "SALESFORCE_USERNAME",
        "SALESFORCE_PASSWORD",
        "SALESFORCE_SECURITY_TOKEN",
        "SALESFORCE_CONSUMER_KEY",
        "SALESFORCE_CONSUMER_SECRET",
        "SALESFORCE_PRIVATE_KEY",
        "SALESFORCE_DOMAIN",
        "SALESFORCE_INSTANCE_URL",
        "SALESFORCE_SESSION_ID",
        "CRMSYNC_MAPPING",
        "CRMSYNC_POLL_INTERVAL_S",
        "CRMSYNC_OVERLAP_S",
        "CRMSYNC_CONCURRENCY",
        "CRMSYNC_DATA_DIR",
    ):
        assert required in names


def test_every_variable_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    undocumented = sorted(name for name in environment_variable_names() if name not in readme)
    assert not undocumented, f"README.md does not mention {undocumented}"


def test_a_secret_can_come_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("mtr-from-file\n")
    (tmp_path / "password").write_text("pw-from-file")
    _set(
        monkeypatch,
        {
            "SALESFORCE_USERNAME": "ops@example.com",
            "SALESFORCE_SECURITY_TOKEN": "tok-123",
            "SALESFORCE_PASSWORD_FILE": str(tmp_path / "password"),
            "METRONOME_BEARER_TOKEN_FILE": str(tmp_path / "token"),
        },
    )
    settings = load_settings()
    assert settings.metronome_bearer_token is not None
    assert settings.metronome_bearer_token.get_secret_value() == "mtr-from-file"
    assert settings.salesforce_password is not None
    assert settings.salesforce_password.get_secret_value() == "pw-from-file"
    assert salesforce_auth_mode(settings) is SalesforceAuthMode.SOAP_PASSWORD


def test_a_secret_and_its_file_together_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "token").write_text("t")
    monkeypatch.setenv("METRONOME_BEARER_TOKEN", "t")
    monkeypatch.setenv("METRONOME_BEARER_TOKEN_FILE", str(tmp_path / "token"))
    with pytest.raises(SettingsError, match="METRONOME_BEARER_TOKEN_FILE are both set"):
        load_settings()


def test_an_unreadable_secret_file_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWER_PASSWORD_FILE", "/nonexistent/flower")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.problems == [
        "FLOWER_PASSWORD_FILE: cannot read /nonexistent/flower: No such file or directory"
    ]


def test_every_secret_has_a_file_twin() -> None:
    names = environment_variable_names()
    secrets = [
        str(field.validation_alias.choices[0])
        for field in Settings.model_fields.values()
        if field.annotation == (SecretStr | None)
        and isinstance(field.validation_alias, AliasChoices)
    ]
    assert secrets
    assert all(f"{name}_FILE" in names for name in secrets), secrets


def test_redis_password_goes_into_the_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "redis").write_text("s3cret/with@chars\n")
    monkeypatch.setenv("REDIS_URL", "redis://redis:6379/0")
    monkeypatch.setenv("REDIS_PASSWORD_FILE", str(tmp_path / "redis"))
    settings = load_settings()
    assert settings.redis_url == "redis://:s3cret%2Fwith%40chars@redis:6379/0"
    assert "s3cret" not in repr(settings)


def test_redis_password_without_a_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_PASSWORD", "x")
    with pytest.raises(SettingsError, match="REDIS_PASSWORD is set but REDIS_URL is not"):
        load_settings()


def test_each_problem_is_a_line_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMSYNC_OVERLAP_S", "soon")
    monkeypatch.setenv("CRMSYNC_CONCURRENCY", "0")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert len(caught.value.problems) == 2
    assert str(caught.value).splitlines() == [
        f"crmsync: configuration: {p}" for p in caught.value.problems
    ]


def test_an_empty_variable_is_an_unset_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compose passes `${VAR:-}` as an empty string for every login mode's variables."""
    _set(monkeypatch, SOAP)
    for name in (
        "SALESFORCE_PRIVATE_KEY_FILE",
        "SALESFORCE_CONSUMER_KEY",
        "SALESFORCE_SESSION_ID",
        "METRONOME_BEARER_TOKEN_FILE",
        "REDIS_URL",
    ):
        monkeypatch.setenv(name, "")
    settings = load_settings()
    assert salesforce_auth_mode(settings) is SalesforceAuthMode.SOAP_PASSWORD
    assert settings.salesforce_private_key_file is None and settings.redis_url is None
