"""The storage guide's example, in Python: register, authenticate, print the token."""

import asyncio

from authmw import AuthConfig, AuthFramework, InMemoryStorage


async def main() -> None:
    storage = InMemoryStorage()
    config = AuthConfig(secret_key="replace-me-with-a-real-secret-of-32-bytes+")
    auth = AuthFramework(storage, config)

    # Register and authenticate (the framework opens itself on first use).
    await auth.register_user("user123", "password")
    token = await auth.authenticate("user123", "password")

    # Token is stored in memory and will be automatically cleaned up.
    print(f"Token: {token.access_token}")
    await auth.close()


if __name__ == "__main__":
    asyncio.run(main())
