"""A FastAPI app: bearer-protected routes with dependencies, a session login, a sign-up that logs
in without asking for the password again (``authmw.login_user``), and authmw's ready error
handlers: a wrong password is a 401, a taken user id a 409, the storage down a 503.

python examples/fastapi_app.py            # exercise the app in-process and print the steps
python examples/fastapi_app.py --serve    # serve it; open http://127.0.0.1:8000/docs
"""

import asyncio
import os
import sys

import httpx
from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel

import authmw
from authmw import AuthConfig, AuthFramework, AuthMiddleware, AuthUser, storage_from_url
from authmw.errors import AuthmwError
from authmw.integrations.fastapi import current_user, document_auth, require_scopes, token_endpoint

auth = AuthFramework(
    storage_from_url(os.environ.get("AUTHMW_STORAGE_URL", "memory://")),
    AuthConfig(secret_key=os.environ.get("AUTHMW_SECRET_KEY", "example-only-key-0123456789abcdef")),
)
app = FastAPI(title="authmw example")
app.add_middleware(AuthMiddleware, auth=auth)
# Every AuthmwError answers by itself: status, headers (Retry-After...), JSON or HTML by Accept.
app.add_exception_handler(AuthmwError, authmw.handle_authmw_error)
# OAuth2 password flow at /oauth/token: /docs' "Authorize" logs in with user and password.
app.include_router(token_endpoint(auth, "/oauth/token"))
document_auth(app, token_url="/oauth/token")  # 401/403 answers and the password flow in /docs


class Credentials(BaseModel):
    user: str
    password: str


@app.post("/token")
async def token(credentials: Credentials) -> dict[str, str]:
    """Exchange a password for a bearer token."""
    issued = await auth.authenticate(credentials.user, credentials.password)
    return {"access_token": issued.access_token, "token_type": "bearer"}


@app.get("/me")
async def me(user: AuthUser = Depends(current_user)) -> dict[str, object]:
    """Who is calling (bearer token or session cookie)."""
    return {"user": user.user_id, "via": user.auth_method, "roles": list(user.roles)}


@app.get("/reports", dependencies=[Depends(require_scopes("role:analyst"))])
async def reports() -> list[str]:
    """Only for users with the analyst role."""
    return ["q1.pdf", "q2.pdf"]


@app.post("/login")
async def login(credentials: Credentials, request: Request) -> dict[str, str]:
    """Log a browser in with a session cookie."""
    user = await authmw.login(request, credentials.user, credentials.password)
    return {"logged_in": user.user_id}


@app.post("/sign-up", status_code=201)
async def sign_up(credentials: Credentials, request: Request) -> dict[str, str]:
    """Register and log in at once; a taken user id is a 409 (UserExists)."""
    await auth.register_user(credentials.user, credentials.password)
    user = await authmw.login_user(request, credentials.user)
    return {"signed_up": user.user_id}


async def selftest() -> None:
    await auth.register_user("grace", "correct horse battery", roles=["analyst"])
    await auth.register_user("linus", "correct horse battery")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://example") as client:
        issued = (
            await client.post("/token", json={"user": "grace", "password": "correct horse battery"})
        ).json()
        bearer = {"Authorization": f"Bearer {issued['access_token']}"}
        print("GET /me with a bearer token ->", (await client.get("/me", headers=bearer)).json())
        reports = (await client.get("/reports", headers=bearer)).json()
        print("GET /reports as an analyst ->", reports)
        await client.post("/login", json={"user": "linus", "password": "correct horse battery"})
        print("GET /me with linus's session cookie ->", (await client.get("/me")).json())
        denied = await client.get("/reports")
        print("GET /reports as linus ->", denied.status_code, denied.json())
        assert denied.status_code == 403
    async with httpx.AsyncClient(transport=transport, base_url="https://example") as client:
        new = await client.post("/sign-up", json={"user": "ken", "password": "a long passphrase"})
        print("POST /sign-up ->", new.status_code, new.json())
        print("GET /me right after sign-up ->", (await client.get("/me")).json())
    async with httpx.AsyncClient(transport=transport, base_url="https://example") as client:
        taken = await client.post("/sign-up", json={"user": "ken", "password": "whatever!!"})
        print("POST /sign-up with a taken id ->", taken.status_code, taken.json())
        wrong = await client.post("/token", json={"user": "ken", "password": "not it at all"})
        print("POST /token with a wrong password ->", wrong.status_code, wrong.json())
        assert new.status_code == 201 and taken.status_code == 409 and wrong.status_code == 401
        form = {"username": "grace", "password": "correct horse battery"}
        oauth = await client.post("/oauth/token", data=form)
        print("POST /oauth/token (what /docs' Authorize does) ->", oauth.status_code)
        assert oauth.json()["token_type"] == "bearer"
    responses = app.openapi()["paths"]["/reports"]["get"]["responses"]
    print("OpenAPI answers of /reports ->", sorted(responses))
    assert {"401", "403"} <= set(responses)


if __name__ == "__main__":
    if "--serve" in sys.argv:
        import uvicorn

        uvicorn.run(app, host="127.0.0.1", port=8000)
    else:
        asyncio.run(selftest())
