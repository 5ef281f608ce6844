"""``GET /api/v1/whoami``: the caller's name, admin flag and groups, for its own token only."""

from __future__ import annotations

import pytest

from coordinator.domain.model import User
from coordinator.tokens import hash_token, new_token
from tests.plugins.app_harness import AppFarm

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(("name", "admin"), [("alice", False), ("root", True)])
@pytest.mark.parametrize("scheme", ["bearer", "basic"])
async def test_whoami_names_the_tokens_user_and_whether_an_admin(
    farm: AppFarm, name: str, admin: bool, scheme: str
) -> None:
    farm.scheme = scheme
    answer = await farm.get("/api/v1/whoami", as_=name)
    assert answer.status_code == 200
    assert answer.json() == {"Name": name, "Admin": admin, "Groups": []}
    assert answer.headers["cache-control"] == "no-store"


async def test_whoami_lists_the_users_groups(farm: AppFarm) -> None:
    token = new_token()
    farm.store.add_user(User("carol", groups=("ci", "lab")), hash_token(token))
    answer = await farm.get(
        "/api/v1/whoami", headers={"Authorization": f"Bearer {token}"}, as_=None
    )
    assert answer.json() == {"Name": "carol", "Admin": False, "Groups": ["ci", "lab"]}


@pytest.mark.parametrize("authorization", [None, "Bearer brt_not-a-token", "Token abc"])
async def test_whoami_needs_valid_credentials(farm: AppFarm, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    answer = await farm.get("/api/v1/whoami", as_=None, headers=headers)
    assert answer.status_code == 401
    assert "WWW-Authenticate" in answer.headers
    assert "Name" not in answer.json()


async def test_whoami_takes_only_get_and_is_in_the_openapi_document(farm: AppFarm) -> None:
    assert (await farm.post("/api/v1/whoami")).status_code == 405
    document = (await farm.get("/api/v1/openapi.json", as_=None)).json()
    assert "get" in document["paths"]["/api/v1/whoami"]
