"""Every command, driven into every failure an operator can cause, answers one clear line.

Real processes (``python -m worker.cli ...``) with a clean environment, against a real Redis
and the emulators (no worker: none of these failures needs one). Each case asserts a non-zero
exit, exactly one line on stderr naming what failed, and no traceback anywhere. ``check``
reports on stdout, one line per check, so its cases assert the one FAIL line instead.

Long-lived services (worker, run, beat, listen, flower) touch only the mapping and Redis at
start: they are driven through those failures; Salesforce and Metronome are reached later, by
their tasks or the listener's stream, where a failure is a retry, a resubscription or a dead
letter, not an exit. ``demo`` and ``sandbox`` run their own emulators and need no
configuration, so none of these failures can reach them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.deals import close_deal
from tests.support.prewarmed import run_cli, start_service
from tests.support.processes import REPO_ROOT, crmsync_env
from tests.support.stack import salesforce_client
from worker.sandbox.httpserver import HttpServer, Request, Response
from worker.sandbox.salesforce.auth import INSTANCE_URL
from worker.sandbox.stack import SandboxStack
from worker.state.server import redis_server_binary

pytestmark = pytest.mark.integration

#: A well-formed id of no account in the org (plan and resync get past validation with it).
ABSENT_ID = "001Hp00000AbCdEIAV"

Result = subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxStack]:
    with SandboxStack(
        data_dir=tmp_path_factory.mktemp("failures") / "data", launcher=start_service
    ) as running:
        yield running


@pytest.fixture(scope="module")
def won_account(stack: SandboxStack) -> str:
    """A closed deal, so ``plan`` gets as far as Metronome."""
    return close_deal(salesforce_client(stack), "Failure Modes Inc")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


def crmsync(env: Mapping[str, str], *args: str, timeout: float = 120) -> Result:
    """About 80 commands: each forks from a prewarmed interpreter (tests/support/prewarmed.py)."""
    return run_cli(env, *args, timeout_s=timeout)


def run_all(env: Mapping[str, str], commands: Sequence[Sequence[str]]) -> dict[str, Result]:
    """The commands at once (each is mostly interpreter start-up; two cores here)."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {" ".join(c): pool.submit(crmsync, env, *c) for c in commands}
        return {name: future.result() for name, future in futures.items()}


#: ``check`` as a failing case runs it: it reports every check, the worker's aside.
CHECK = ("check", "--skip-worker")


def run_with_check(
    env: Mapping[str, str], commands: Sequence[Sequence[str]]
) -> tuple[dict[str, Result], Result]:
    """The commands and ``check`` on the same environment, all at once: each case's check used
    to start only after its slowest command ended, a process start-up per case on the
    module's (the suite's longest) critical path."""
    results = run_all(env, [*commands, CHECK])
    return results, results.pop(" ".join(CHECK))


def assert_one_clear_line(
    results: Mapping[str, Result], *words: str, code: int | None = None
) -> None:
    for name, result in results.items():
        output = f"crmsync {name} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
        assert result.returncode != 0, output
        if code is not None:
            assert result.returncode == code, output
        assert "Traceback" not in result.stdout + result.stderr, output
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, output
        for word in words:
            assert word in lines[0], output


def assert_check_fails(result: Result, name: str, *words: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert result.stderr == "", output
    failures = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failures) == 1 and failures[0].startswith(f"FAIL {name}:"), output
    for word in words:
        assert word in failures[0], output


#: Commands that need Redis; services exit at start, the others at their first read.
REDIS_COMMANDS: list[list[str]] = [
    ["poll"],
    ["resync", ABSENT_ID],
    ["plan", ABSENT_ID],
    ["status"],
    ["dead-letters", "list"],
    ["dead-letters", "redrive"],
    ["parked", "list"],
    ["parked", "retry-now"],
    ["worker", "--pool=solo"],
    ["run"],
    ["beat"],
    ["listen"],
    ["flower"],
]
#: Commands that read Salesforce from the CLI process itself.
SALESFORCE_COMMANDS: list[list[str]] = [["poll"], ["resync", ABSENT_ID], ["plan", ABSENT_ID]]
FLOWER = {"FLOWER_USER": "ops", "FLOWER_PASSWORD": "flower-pw", "CRMSYNC_REDIS_WAIT_S": "0"}


def test_a_bad_mapping_stops_every_command_that_uses_it(
    stack: SandboxStack, tmp_path: Path
) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("version: 1\nname: {field: Account.Name}\nnmae_typo: 1\n")
    env = {**stack.env(), "CRMSYNC_MAPPING": str(mapping)}
    commands = [
        ["poll"],
        ["resync", ABSENT_ID],
        ["plan", ABSENT_ID],
        ["dead-letters", "redrive"],
        ["worker", "--pool=solo"],
        ["run"],
        ["beat"],
        ["listen"],
        ["mapping", "check", str(mapping)],
    ]
    results, check = run_with_check(env, commands)
    # The mapping's own message: file, line, key; exit 2 before anything starts.
    assert_one_clear_line(results, f"{mapping}:3: key nmae_typo", "unknown key", code=2)
    assert_check_fails(check, "mapping", f"{mapping}:3")


def test_redis_unreachable(stack: SandboxStack) -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    env = {**stack.env(), **FLOWER, "REDIS_URL": url}
    results, check = run_with_check(env, REDIS_COMMANDS)
    assert_one_clear_line(results, "cannot reach Redis", url, "REDIS_URL", code=1)
    assert_check_fails(check, "redis", "cannot reach Redis")


def test_redis_refusing_the_password(stack: SandboxStack, tmp_path: Path) -> None:
    port = closed_port()
    server = subprocess.Popen(
        [
            redis_server_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--requirepass",
            "right-password",
            "--save",
            "",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        env = {
            **stack.env(),
            **FLOWER,
            "REDIS_URL": f"redis://127.0.0.1:{port}/0",
            "REDIS_PASSWORD": "wrong-password",
        }
        _wait_for_port(port)
        results, check = run_with_check(env, REDIS_COMMANDS)
        assert_one_clear_line(results, "refused the credentials", "REDIS_PASSWORD", code=2)
        for result in results.values():
            assert "wrong-password" not in result.stderr
        assert_check_fails(check, "redis", "refused the credentials")
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_salesforce_unreachable(stack: SandboxStack) -> None:
    emulator = f"http://127.0.0.1:{closed_port()}"
    env = {**stack.env(), "CRMSYNC_SALESFORCE_EMULATOR_URL": emulator}
    results, check = run_with_check(env, SALESFORCE_COMMANDS)
    assert_one_clear_line(results, "cannot reach Salesforce", emulator, code=1)
    assert_check_fails(check, "salesforce", "cannot reach")


def test_salesforce_refusing_the_login(stack: SandboxStack) -> None:
    env = {**stack.env(), "SALESFORCE_PASSWORD": "not-the-password"}
    results, check = run_with_check(env, SALESFORCE_COMMANDS)
    assert_one_clear_line(
        results, "refused the login", "INVALID_LOGIN", "SALESFORCE_PASSWORD", code=2
    )
    for result in results.values():
        assert "not-the-password" not in result.stderr
    assert_check_fails(check, "salesforce", "INVALID_LOGIN")


def test_salesforce_session_expired(stack: SandboxStack) -> None:
    env = {
        k: v
        for k, v in stack.env().items()
        if k not in ("SALESFORCE_USERNAME", "SALESFORCE_PASSWORD", "SALESFORCE_SECURITY_TOKEN")
    }
    env |= {
        "SALESFORCE_SESSION_ID": "00DHp00000CrmSync!expired",
        "SALESFORCE_INSTANCE_URL": INSTANCE_URL,
    }
    results, check = run_with_check(env, SALESFORCE_COMMANDS)
    assert_one_clear_line(results, "SALESFORCE_SESSION_ID", code=2)
    assert_check_fails(check, "salesforce", "SALESFORCE_SESSION_ID")


def test_salesforce_quota_exhausted(stack: SandboxStack) -> None:
    assert stack.salesforce is not None
    used, limit = stack.salesforce.quota()
    stack.salesforce.set_quota(limit, limit)
    try:
        results, check = run_with_check(stack.env(), SALESFORCE_COMMANDS)
        assert_one_clear_line(results, "quota", code=1)
        assert_check_fails(check, "salesforce", "quota")
    finally:
        stack.salesforce.set_quota(used, limit)


def test_metronome_unreachable(stack: SandboxStack, won_account: str) -> None:
    base = f"http://127.0.0.1:{closed_port()}"
    env = {
        **stack.env(),
        "METRONOME_BASE_URL": base,
        "METRONOME_MAX_ATTEMPTS": "2",
        "CRMSYNC_RETRY_IMMEDIATELY": "1",
    }
    results, check = run_with_check(env, [["plan", won_account]])
    assert_one_clear_line(results, "cannot reach Metronome", base, code=1)
    assert_check_fails(check, "metronome", "cannot reach")


def test_metronome_refusing_the_token(stack: SandboxStack, won_account: str) -> None:
    env = {**stack.env(), "METRONOME_BEARER_TOKEN": "revoked-token-123"}
    results, check = run_with_check(env, [["plan", won_account]])
    assert_one_clear_line(results, "401", "METRONOME_BEARER_TOKEN", code=2)
    assert "revoked-token-123" not in results[f"plan {won_account}"].stderr
    assert_check_fails(check, "metronome", "401")


def test_metronome_forbidding_the_call(stack: SandboxStack, won_account: str) -> None:
    async def forbidden(request: Request) -> Response:
        body = json.dumps({"message": "this token may not read customers"}).encode()
        return Response(403, body, [("Content-Type", "application/json")])

    server = HttpServer(forbidden).start()
    try:
        env = {**stack.env(), "METRONOME_BASE_URL": server.url}
        results, check = run_with_check(env, [["plan", won_account]])
        assert_one_clear_line(results, "403", "METRONOME_BEARER_TOKEN", code=2)
        assert_check_fails(check, "metronome", "403")
    finally:
        server.stop()


MALFORMED_ID_COMMANDS: list[list[str]] = [
    ["plan", "not-an-id"],
    ["resync", "not-an-id"],
    ["plan", "001Hp00000AbCdEXXX"],  # the checksum suffix does not match
    ["resync", ABSENT_ID, "also-bad"],
    ["resync", "001Hp00000AbCdEXXX"],
    ["parked", "retry-now", "not-an-id"],
    ["parked", "list", "001Hp00000AbCdEXXX"],
]


@pytest.fixture(scope="module")
def malformed_id_results(stack: SandboxStack) -> dict[str, Result]:
    """Every malformed-id command, run at once (one at a time, each case waited for the last)."""
    return run_all(stack.env(), MALFORMED_ID_COMMANDS)


@pytest.mark.parametrize("command", MALFORMED_ID_COMMANDS)
def test_malformed_ids(malformed_id_results: dict[str, Result], command: list[str]) -> None:
    name = " ".join(command)
    assert_one_clear_line(
        {name: malformed_id_results[name]}, "Salesforce id", "15- or 18-character id", code=2
    )


def test_a_malformed_id_is_found_before_redis_is_asked(stack: SandboxStack) -> None:
    env = {**stack.env(), "REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0"}
    results = run_all(env, [["plan", "001Hp00000AbCdEXXX"], ["resync", "001Hp00000AbCdEXXX"]])
    assert_one_clear_line(results, "wrong checksum suffix", "15- or 18-character id", code=2)


def test_no_crmsync_running_here(stack: SandboxStack, tmp_path: Path) -> None:
    """Without REDIS_URL, commands that read or enqueue join an embedded server or stop; they
    never start one of their own."""
    env = {k: v for k, v in stack.env().items() if k != "REDIS_URL"}
    env["CRMSYNC_DATA_DIR"] = str(tmp_path / "empty")
    commands = [
        ["status"],
        ["dead-letters", "list"],
        ["dead-letters", "redrive"],
        ["parked", "list"],
        ["parked", "retry-now"],
        ["poll"],
        ["resync", ABSENT_ID],
        ["plan", ABSENT_ID],
    ]
    results = run_all(env, [*commands, ["check"]])
    check = results.pop("check")  # every check, the worker's too
    assert_one_clear_line(results, "no crmsync running here", "crmsync run", "REDIS_URL", code=1)
    assert check.returncode == 1 and check.stderr == ""
    assert "FAIL redis: no crmsync running here" in check.stdout
    assert not (tmp_path / "empty" / "redis.json").exists()
    assert not (tmp_path / "empty" / "appendonlydir").exists()


CLOSED_PIPE_CASES: list[tuple[list[str], int]] = [
    (["status"], 141),
    (["mapping", "check"], 141),
    (["check", "--skip-worker"], 141),
    (["--help"], 0),  # argparse ignores a failed write of its help, and exits 0
]


def into_a_closed_pipe(env: Mapping[str, str], command: Sequence[str]) -> Result:
    """``crmsync COMMAND | head`` where the reader is gone before the first write."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "worker.cli", *command],
            cwd=REPO_ROOT,
            env=crmsync_env(env),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)


@pytest.fixture(scope="module")
def closed_pipe_results(stack: SandboxStack) -> dict[str, Result]:
    """Every closed-pipe command, run at once, each into a pipe of its own."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {
            " ".join(command): pool.submit(into_a_closed_pipe, stack.env(), command)
            for command, _code in CLOSED_PIPE_CASES
        }
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize(("command", "code"), CLOSED_PIPE_CASES)
def test_a_closed_pipe_ends_quietly(
    closed_pipe_results: dict[str, Result], command: list[str], code: int
) -> None:
    """``crmsync status | head``: the reader is gone before the first write. Exit 141, as a
    tool killed by SIGPIPE, and nothing on stderr."""
    process = closed_pipe_results[" ".join(command)]
    assert process.returncode == code, process.stderr
    assert process.stderr == "", process.stderr


def test_quick_check_with_no_worker_ends_without_a_traceback(stack: SandboxStack) -> None:
    result = crmsync(stack.env(), "check", "--quick", "--worker-timeout=2")
    assert_check_fails(result, "worker", "no worker answered")


def _wait_for_port(port: int, timeout_s: float = 20.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)  # polling a condition (the port accepts), bounded
    raise AssertionError(f"redis-server did not listen on {port}")


def test_a_service_says_where_the_embedded_data_lives(stack: SandboxStack, tmp_path: Path) -> None:
    """beat without REDIS_URL starts the embedded server and says where its state is kept
    (kept between runs: no surprise when the next worker runs what this beat queued)."""
    env = {k: v for k, v in stack.env().items() if k != "REDIS_URL"}
    env["CRMSYNC_DATA_DIR"] = str(tmp_path / "data")
    process = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "beat"],
        cwd=REPO_ROOT,
        env=crmsync_env(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        first = process.stderr.readline()  # readiness: the announcement is the first line
    finally:
        process.terminate()
        process.wait(timeout=60)
        if process.stderr is not None:
            process.stderr.close()
    assert first.startswith("crmsync: started the embedded Redis at redis://127.0.0.1:")
    assert f"data in {tmp_path / 'data'}" in first
    assert not (tmp_path / "data" / "redis.json").exists(), "the owner stops it on exit"
