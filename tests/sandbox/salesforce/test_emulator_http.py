"""simple-salesforce itself against the emulator over HTTP: login modes, paging, sObjects,
limits and faults, as the worker will meet them in a real org."""

from __future__ import annotations

import itertools

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)
from simple_salesforce.format import format_soql

from tests.support.salesforce_emulator import error_code, sobject
from worker.salesforce import normalize_salesforce_id
from worker.sandbox.salesforce import SalesforceEmulator, SandboxCredentials
from worker.sandbox.salesforce.client import build_sandbox_salesforce
from worker.sandbox.salesforce.transport import emulator_session
from worker.settings import SalesforceAuthMode


def _key_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@pytest.fixture(scope="module")
def key_pair() -> tuple[str, str]:
    return _key_pair()


@pytest.mark.parametrize(
    ("mode", "login_endpoint"),
    [
        (SalesforceAuthMode.SOAP_PASSWORD, "soap_login 200"),
        (SalesforceAuthMode.OAUTH_PASSWORD, "oauth_token 200"),
        (SalesforceAuthMode.CLIENT_CREDENTIALS, "oauth_token 200"),
        (SalesforceAuthMode.JWT_BEARER, "oauth_token 200"),
        (SalesforceAuthMode.SESSION, None),
    ],
)
def test_every_auth_mode_logs_in_and_queries(
    mode: SalesforceAuthMode, login_endpoint: str | None, key_pair: tuple[str, str]
) -> None:
    private, public = key_pair
    creds = SandboxCredentials(jwt_public_key_pem=public)
    with SalesforceEmulator(creds) as emu:
        emu.seed(3)
        session_id = emu.issue_session() if mode is SalesforceAuthMode.SESSION else None
        sf = build_sandbox_salesforce(
            emu.url, creds, mode=mode, session_id=session_id, private_key_pem=private
        )
        assert sf.query("SELECT Id FROM Account")["totalSize"] == 3
        logins = {
            key: n for key, n in emu.request_counts().items()
            if key.startswith(("soap_login", "oauth_token"))
        }  # fmt: skip
        assert logins == ({login_endpoint: 1} if login_endpoint else {})
        sf.session.close()


def test_bad_credentials_and_a_foreign_jwt_key_are_refused(key_pair: tuple[str, str]) -> None:
    _, public = key_pair
    stranger_private, _ = _key_pair()
    creds = SandboxCredentials(jwt_public_key_pem=public)
    with SalesforceEmulator(creds) as emu:
        wrong_password = SandboxCredentials(password="nope")
        with pytest.raises(SalesforceAuthenticationFailed, match="INVALID_LOGIN"):
            build_sandbox_salesforce(emu.url, wrong_password)
        with pytest.raises(SalesforceAuthenticationFailed, match="invalid_grant"):
            build_sandbox_salesforce(
                emu.url, creds, mode=SalesforceAuthMode.JWT_BEARER, private_key_pem=stranger_private
            )
        with pytest.raises(SalesforceAuthenticationFailed, match="invalid_client"):
            build_sandbox_salesforce(
                emu.url,
                SandboxCredentials(consumer_secret="wrong"),
                mode=SalesforceAuthMode.CLIENT_CREDENTIALS,
            )
        assert emu.request_counts() == {
            "soap_login 500": 1,
            "oauth_token 400": 2,
        }


@pytest.mark.parametrize("batch", [None, 200, 50, 5000])
def test_paging_returns_every_row_once(
    emulator: SalesforceEmulator, sf: Salesforce, batch: int | None
) -> None:
    emulator.seed(4500, seed=3)  # about 9,000 opportunities
    expected = set(emulator.ids("Opportunity"))
    emulator.reset()
    headers = {} if batch is None else {"Sforce-Query-Options": f"batchSize={batch}"}
    first = sf.query("SELECT Id FROM Opportunity ORDER BY Id", headers=headers)
    page_size = len(first["records"])
    assert first["totalSize"] == len(expected)
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/")
    ids = [
        r["Id"]
        for r in sf.query_all_iter("SELECT Id FROM Opportunity ORDER BY Id", headers=headers)
    ]
    assert len(ids) == len(set(ids)) == len(expected)
    assert set(ids) == expected
    # 200..2,000 is honoured; outside it Salesforce clamps. 9k rows -> pages of that size.
    assert page_size == min(2000, max(200, batch or 2000))
    pages = -(-len(expected) // page_size)
    counts = emulator.request_counts()
    assert counts["query 200"] == 2 and counts["query_more 200"] == pages - 1
    assert emulator.api_calls() == 2 + pages - 1


def test_ids_are_eighteen_characters_with_valid_checksums(emulator: SalesforceEmulator) -> None:
    emulator.seed(20)
    for sobject_name, prefix in (("Account", "001"), ("Opportunity", "006")):
        for record_id in emulator.ids(sobject_name):
            assert record_id.startswith(prefix) and len(record_id) == 18
            assert normalize_salesforce_id(record_id[:15]) == record_id


def test_sobject_writes_drive_stage_flags_stamps_and_soft_delete(
    emulator: SalesforceEmulator, sf: Salesforce
) -> None:
    account = sobject(sf, "Account").create({"Name": "Rep's New Account"})["id"]
    deal = sobject(sf, "Opportunity").create(
        {
            "AccountId": account,
            "Name": "Big deal",
            "StageName": "Prospecting",
            "CloseDate": "2026-12-01",
        }
    )["id"]
    before = sobject(sf, "Opportunity").get(deal)
    assert (before["IsWon"], before["IsClosed"]) == (False, False)
    sobject(sf, "Opportunity").update(deal, {"StageName": "Closed Won", "Amount": 1200})
    after = sobject(sf, "Opportunity").get(deal)
    assert (after["IsWon"], after["IsClosed"], after["Amount"]) == (True, True, 1200.0)
    assert after["SystemModstamp"] > before["SystemModstamp"]
    assert after["LastModifiedDate"] == after["SystemModstamp"]
    sobject(sf, "Opportunity").update(deal, {"StageName": "Closed Lost"})
    assert (
        sobject(sf, "Opportunity").get(deal)["IsWon"],
        sobject(sf, "Opportunity").get(deal)["IsClosed"],
    ) == (
        False,
        True,
    )

    with pytest.raises(SalesforceMalformedRequest, match="INVALID_FIELD_FOR_INSERT_UPDATE"):
        sobject(sf, "Opportunity").update(deal, {"IsWon": True})
    with pytest.raises(SalesforceMalformedRequest, match="REQUIRED_FIELD_MISSING"):
        sobject(sf, "Account").create({"Website": "https://x.example"})

    sobject(sf, "Account").delete(account)
    assert sf.query(format_soql("SELECT Id FROM Account WHERE Id = {}", account))["totalSize"] == 0
    everything = sf.query_all(
        format_soql("SELECT Id, IsDeleted FROM Opportunity WHERE AccountId = {}", account),
        include_deleted=True,
    )
    assert [r["IsDeleted"] for r in everything["records"]] == [True]  # deletes cascade
    with pytest.raises(SalesforceResourceNotFound):
        sobject(sf, "Account").get(account)


def test_stamps_strictly_increase_even_within_one_millisecond(emulator: SalesforceEmulator) -> None:
    account = emulator.insert("Account", {"Name": "Busy"})
    stamps = []
    for n in range(300):
        emulator.update("Account", account, {"Website": f"https://{n}.example"})
        stamps.append(emulator.get("Account", account)["SystemModstamp"])
    assert all(b > a for a, b in itertools.pairwise(stamps))


def test_merge_deletes_the_loser_with_master_record_id_and_moves_its_deals(
    emulator: SalesforceEmulator, sf: Salesforce
) -> None:
    master = emulator.insert("Account", {"Name": "Master"})
    loser = emulator.insert("Account", {"Name": "Duplicate"})
    deal = emulator.insert(
        "Opportunity",
        {"AccountId": loser, "Name": "d", "StageName": "Closed Won", "CloseDate": "2026-01-02"},
    )
    emulator.merge_accounts(master, loser)
    gone = sf.query_all(
        format_soql("SELECT Id, IsDeleted, MasterRecordId FROM Account WHERE Id = {}", loser),
        include_deleted=True,
    )["records"][0]
    assert (gone["IsDeleted"], gone["MasterRecordId"]) == (True, master)
    assert sobject(sf, "Opportunity").get(deal)["AccountId"] == master


def test_malformed_and_invalid_queries_answer_in_salesforces_error_shape(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.query("SELECT Id FROM Account GROUP BY Name")
    assert error_code(caught.value) == "MALFORMED_QUERY"
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.query("SELECT Id, Bogus__c FROM Account")
    assert error_code(caught.value) == "INVALID_FIELD"


def test_query_paths_with_and_without_trailing_slash(
    emulator: SalesforceEmulator, sf: Salesforce
) -> None:
    emulator.seed(2)
    for path in ("query", "query/", "queryAll", "queryAll/"):
        answer = sf.session.get(
            f"{sf.base_url}{path}", params={"q": "SELECT Id FROM Account"}, headers=sf.headers
        )
        assert answer.status_code == 200 and answer.json()["totalSize"] == 2


def test_limit_info_header_quota_and_refusal(emulator: SalesforceEmulator, sf: Salesforce) -> None:
    emulator.set_quota(used=41, max=50)
    sf.query("SELECT Id FROM Account")
    usage = sf.api_usage["api-usage"]
    assert (usage.used, usage.total) == (42, 50)
    assert sf.limits()["DailyApiRequests"] == {"Max": 50, "Remaining": 7}  # the call counts
    emulator.set_quota(used=50, max=50)
    with pytest.raises(SalesforceRefusedRequest) as caught:
        sf.query("SELECT Id FROM Account")
    assert error_code(caught.value) == "REQUEST_LIMIT_EXCEEDED"


def test_sessions_expire_after_their_ttl() -> None:
    with SalesforceEmulator(session_ttl_s=0.0) as emu:
        direct = Salesforce(
            session_id=emu.issue_session(),
            instance_url=emu.instance_url,
            session=emulator_session(emu.url),
        )
        with pytest.raises(SalesforceExpiredSession) as caught:
            direct.query("SELECT Id FROM Account")
        assert error_code(caught.value) == "INVALID_SESSION_ID"
        direct.session.close()


def test_injected_faults_and_the_sandbox_control_endpoint(
    emulator: SalesforceEmulator, sf: Salesforce
) -> None:
    emulator.set_faults(server_error_rate=1.0)
    with pytest.raises(SalesforceGeneralError):
        sf.query("SELECT Id FROM Account")
    control = requests.Session()
    base = emulator.url + "/_sandbox"
    assert control.post(f"{base}/faults", json={"server_error_rate": 0}).status_code == 200
    assert sf.query("SELECT Id FROM Account")["totalSize"] == 0
    counts = control.get(f"{base}/requests").json()
    assert counts["counts"]["query 503"] == 1 and counts["counts"]["query 200"] == 1
    assert control.post(f"{base}/seed", json={"n_accounts": 4}).status_code == 200
    assert control.post(f"{base}/expire-sessions").status_code == 200
    assert sf.query("SELECT Id FROM Account")["totalSize"] == 4  # re-logged in
    assert control.post(f"{base}/reset").status_code == 200
    assert control.get(f"{base}/requests").json()["api_calls"] == 0
    control.close()


def test_the_session_has_timeouts(emulator: SalesforceEmulator) -> None:
    sf = build_sandbox_salesforce(emulator.url, timeout_s=0.3)
    emulator.set_faults(latency_s=1.0)
    with pytest.raises(requests.exceptions.ReadTimeout):
        sf.query("SELECT Id FROM Account")
    sf.session.close()
