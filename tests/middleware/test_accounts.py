"""Account changes at the edge: the next HTTP request of an existing token or session sees them."""

from __future__ import annotations

from authmw import AuthFramework
from tests.support.apps import client, make_app


async def test_removed_role_and_disable_reach_the_next_request(auth: AuthFramework) -> None:
    """A role removed after login is refused (403) on the next request of the bearer token and
    of the session cookie; after disable_user both are anonymous (401)."""
    await auth.register_user("bob", "password", roles=["admin"])
    token = await auth.authenticate("bob", "password")
    bearer = {"Authorization": f"Bearer {token.access_token}"}
    async with client(make_app(auth)) as http:
        assert (await http.post("/login", json={"user": "Bob", "password": "password"})).is_success
        assert (await http.get("/admin")).status_code == 200  # the session cookie
        assert (await http.get("/admin", headers=bearer)).status_code == 200
        await auth.set_roles("bob", [])
        assert (await http.get("/admin")).status_code == 403
        assert (await http.get("/admin", headers=bearer)).status_code == 403
        assert (await http.get("/private")).status_code == 200
        await auth.set_roles("bob", ["admin"])
        assert (await http.get("/admin")).status_code == 200
        await auth.disable_user("bob")
        assert (await http.get("/private")).status_code == 403  # anonymous: the cookie is dead
        assert (await http.get("/private", headers=bearer)).status_code == 401
