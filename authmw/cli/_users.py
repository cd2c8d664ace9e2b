"""The account commands of ``authmw``: list, show, change and delete users.

Every change goes through the framework over a cached storage
(``storage_from_url(url, cache=True)``), so the writes are announced on the backend's
invalidation channel and running apps drop the changed user, tokens and sessions from their
caches at once. A command about a user that does not exist exits 1 with one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ..framework import AuthFramework
from ..models import UserRecord
from ..storage import storage_from_url
from ._commands import CommandFailed, _framework, _read_password, opened, storage_url
from ._output import emit_json, table

__all__ = ["USER_COMMANDS", "add_parsers"]


def add_parsers(sub: Any) -> None:
    """Add the account subcommands to the ``authmw`` parser's subparsers ``sub``."""

    def command(name: str, help_text: str, description: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(
            name, help=help_text, description=description
        )
        parser.add_argument(
            "url", nargs="?", metavar="URL", help="storage URL (default: $AUTHMW_STORAGE_URL)"
        )
        return parser

    def user_arg(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("user", metavar="USER", help="the user id")

    def json_flag(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true", help="print JSON")

    listing = command(
        "list-users",
        "list users, a page at a time",
        "List users in id order (code point order), at most --limit of them after the id "
        "--after. Password hashes are never shown.",
    )
    listing.add_argument("--after", metavar="USER", help="start after this user id")
    listing.add_argument(
        "--limit", type=int, default=100, metavar="N", help="at most N users (1-1000, default 100)"
    )
    listing.add_argument("--role", metavar="R", help="only users with this role")
    state = listing.add_mutually_exclusive_group()
    state.add_argument(
        "--active", dest="active", action="store_true", default=None, help="only enabled users"
    )
    state.add_argument(
        "--disabled", dest="active", action="store_false", help="only disabled users"
    )
    json_flag(listing)

    show = command("show-user", "show one user", "Show USER's roles, permissions and state.")
    user_arg(show)
    json_flag(show)

    password = command(
        "set-password",
        "set a user's password (logs the user out everywhere)",
        "Set USER's password without the old one, then revoke every token and session of "
        "the user. The password is read from the terminal without echo, or from stdin with "
        "--password-stdin; never from the command line.",
    )
    user_arg(password)
    password.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin's first line"
    )
    json_flag(password)

    for name, noun in (("set-roles", "role"), ("set-permissions", "permission")):
        names = command(
            name,
            f"replace a user's {noun}s",
            f"Replace USER's {noun}s with the ones given (none: remove them all). Live tokens "
            "and sessions carry the change from their next request.",
        )
        user_arg(names)
        names.add_argument("names", nargs="*", metavar=noun.upper(), help=f"the new {noun}s")
        json_flag(names)

    for name, help_text, description in (
        (
            "disable-user",
            "disable a user and revoke their tokens and sessions",
            "Disable USER: logins are refused and every token and session is revoked.",
        ),
        ("enable-user", "enable a disabled user", "Let USER log in again."),
        (
            "unlock-user",
            "clear a user's failed-login lockout",
            "Clear USER's failed-login count and lockout so they can log in at once.",
        ),
    ):
        simple = command(name, help_text, description)
        user_arg(simple)
        json_flag(simple)

    delete = command(
        "delete-user",
        "delete a user with their tokens and sessions",
        "Delete USER with every token, session and lockout counter (the audit log keeps the "
        "history). Asks for confirmation unless --yes is given.",
    )
    user_arg(delete)
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    json_flag(delete)


def _shown(user: UserRecord) -> dict[str, Any]:
    """A user for output: everything but the password hash."""
    data = user.to_dict()
    del data["password_hash"]
    return data


def _print_user(user: UserRecord, as_json: bool, done: str | None = None) -> None:
    if as_json:
        data = _shown(user)
        if done:
            data = {"done": done, "user": data}
        emit_json(data)
        return
    if done:
        print(f"{done} user {user.user_id!r}")
        return
    table(
        [
            ["field", "value"],
            ["user_id", user.user_id],
            ["active", "yes" if user.is_active else "no"],
            ["roles", ", ".join(user.roles) or "-"],
            ["permissions", ", ".join(user.permissions) or "-"],
            ["created", user.created_at.isoformat(timespec="seconds")],
            ["updated", user.updated_at.isoformat(timespec="seconds")],
        ]
    )


Action = Callable[[AuthFramework, argparse.Namespace], Awaitable[int]]


Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def _through_cache(action: Action) -> Command:
    """Run ``action`` with a framework over the URL's storage behind a cache layer (so the
    writes are announced to running apps)."""

    async def run(args: argparse.Namespace) -> int:
        url = storage_url(args.url)
        async with opened(url, storage_from_url(url, cache=True)) as storage:
            return await action(_framework(storage), args)

    return run


async def _list_users(auth: AuthFramework, args: argparse.Namespace) -> int:
    users = await auth.list_users(
        after=args.after, limit=args.limit, role=args.role, active=args.active
    )
    if args.json:
        emit_json(
            {
                "users": [_shown(u) for u in users],
                "next_after": users[-1].user_id if len(users) == args.limit else None,
            }
        )
        return 0
    rows: list[list[Any]] = [["user_id", "active", "roles", "permissions", "created"]]
    rows += [
        [
            u.user_id,
            "yes" if u.is_active else "no",
            ",".join(u.roles) or "-",
            ",".join(u.permissions) or "-",
            u.created_at.date().isoformat(),
        ]
        for u in users
    ]
    table(rows)
    if len(users) == args.limit:
        print(f"(more may follow: --after {users[-1].user_id})", file=sys.stderr)
    return 0


async def _show_user(auth: AuthFramework, args: argparse.Namespace) -> int:
    _print_user(await auth.get_user(args.user), args.json)
    return 0


async def _set_password(auth: AuthFramework, args: argparse.Namespace) -> int:
    await auth.get_user(args.user)  # an unknown user fails before the password prompt
    user = await auth.set_password(args.user, _read_password(args.password_stdin))
    _print_user(user, args.json, "set the password of (and logged out)")
    return 0


async def _set_roles(auth: AuthFramework, args: argparse.Namespace) -> int:
    _print_user(await auth.set_roles(args.user, args.names), args.json, "set the roles of")
    return 0


async def _set_permissions(auth: AuthFramework, args: argparse.Namespace) -> int:
    user = await auth.set_permissions(args.user, args.names)
    _print_user(user, args.json, "set the permissions of")
    return 0


async def _disable(auth: AuthFramework, args: argparse.Namespace) -> int:
    _print_user(await auth.disable_user(args.user), args.json, "disabled")
    return 0


async def _enable(auth: AuthFramework, args: argparse.Namespace) -> int:
    _print_user(await auth.enable_user(args.user), args.json, "enabled")
    return 0


async def _unlock(auth: AuthFramework, args: argparse.Namespace) -> int:
    user = await auth.get_user(args.user)
    await auth.unlock_user(user.user_id)
    if args.json:
        emit_json({"user_id": user.user_id, "unlocked": True})
    else:
        print(f"unlocked user {user.user_id!r}")
    return 0


async def _delete(auth: AuthFramework, args: argparse.Namespace) -> int:
    user = await auth.get_user(args.user)
    if not args.yes:
        if not sys.stdin.isatty():
            raise CommandFailed("not confirmed: no terminal to ask on; pass --yes")
        prompt = f"Delete user {user.user_id!r} with its tokens and sessions? [y/N] "
        answer = await asyncio.to_thread(input, prompt)
        if answer.strip().lower() not in ("y", "yes"):
            raise CommandFailed("not confirmed; nothing deleted")
    removed = await auth.delete_user(user.user_id)
    if args.json:
        emit_json({"user_id": user.user_id, "deleted": True, "revoked": removed})
    else:
        print(f"deleted user {user.user_id!r} and {removed} live tokens and sessions")
    return 0


USER_COMMANDS: dict[str, Command] = {
    "list-users": _through_cache(_list_users),
    "show-user": _through_cache(_show_user),
    "set-password": _through_cache(_set_password),
    "set-roles": _through_cache(_set_roles),
    "set-permissions": _through_cache(_set_permissions),
    "disable-user": _through_cache(_disable),
    "enable-user": _through_cache(_enable),
    "unlock-user": _through_cache(_unlock),
    "delete-user": _through_cache(_delete),
}
