"""The storage guide's concurrency example: 100 tasks each register and log in a user.

Pass a storage URL to run it on another backend: python examples/concurrent_logins.py redis://...
"""

import asyncio
import sys

from authmw import AuthConfig, AuthFramework, storage_from_url


async def main(url: str) -> None:
    config = AuthConfig(secret_key="replace-me-with-a-real-secret-of-32-bytes+")
    async with AuthFramework(storage_from_url(url), config) as auth:

        async def one(i: int) -> None:
            user_id = f"user{i}"
            await auth.register_user(user_id, "password")
            token = await auth.authenticate(user_id, "password")
            print(f"User {user_id} authenticated: token id {token.token_id}")

        await asyncio.gather(*(one(i) for i in range(100)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "memory://"))
