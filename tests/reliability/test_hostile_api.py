"""Hostile input below HTTP: user ids and passwords into the framework on every backend,
storage URLs into ``storage_from_url`` and the CLI, and tampered backup files into
``authmw restore`` (truncated, corrupted, hostile JSON with a recomputed checksum).

Invariants: only typed errors (``authmw.errors``), a CLI failure is one line with no
traceback and no "unexpected" error, a refused call stores nothing, and no hostile id or
password ever authenticates as the victim.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import random
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from authmw import AuthFramework, InMemoryStorage
from authmw._accounts import normalize_user_id
from authmw.cli import main
from authmw.errors import AuthmwError
from authmw.storage import storage_from_url
from authmw.storage.migration import write_backup
from tests.support.hostile import CONFUSABLES, EXTREMES, json_field
from tests.support.reliability import CASES, FORMS, examples, fuzz_settings, make_config

PASSWORD = "the-victims-password-0123"
pytestmark = pytest.mark.parametrize("form", FORMS)


async def test_user_ids_and_passwords(auth: AuthFramework, form: str) -> None:
    """Every confusable, extreme and odd-typed id and password, on every backend: typed
    errors only, refused registrations store nothing, nothing logs in as the victim."""
    await auth.register_user("victim", PASSWORD)
    values: list[object] = [*CONFUSABLES, *EXTREMES, None, 7, ["victim"], b"victim", "victim"]
    passwords: list[object] = [PASSWORD + "x", PASSWORD.upper(), "", "\x00", "x" * (1 << 20), None]
    rounds = 1 if form == "bounded" else 20
    for _ in range(rounds):
        for user in values:
            for password in passwords:
                CASES["user-id/password", auth.storage.name] += 1
                with contextlib.suppress(AuthmwError):
                    await auth.authenticate(user, password)  # type: ignore[arg-type]
                    pytest.fail(f"{user!r} logged in with {password!r}")
            CASES["user-id/password", auth.storage.name] += 1
            before = await auth.storage.get_statistics()
            try:
                await auth.register_user(user, PASSWORD)  # type: ignore[arg-type]
            except AuthmwError:
                after = await auth.storage.get_statistics()
                assert after.total_users == before.total_users
    await auth.storage.kv_delete("lockout:victim")


# Alphabets the generated ids and passwords draw from: ASCII, controls, combining marks,
# invisible formats, full-width forms, lone surrogates, right-to-left text and emoji.
_ALPHABETS = [
    [chr(c) for c in range(0x20, 0x7F)],
    [chr(c) for c in [*range(0x20), 0x7F, 0x85, 0x2028, 0x2029]],
    [chr(c) for c in range(0x300, 0x370)],
    [chr(c) for c in [0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2060, 0xFEFF, 0x00AD]],
    [chr(c) for c in range(0xFF01, 0xFF5F)],
    [chr(c) for c in range(0xD800, 0xD810)],
    [chr(c) for c in [*range(0x5D0, 0x5EB), *range(0x627, 0x64B)]],
    [chr(c) for c in range(0x1F600, 0x1F650)],
]


def _junk(rng: random.Random, most: int) -> str:
    alphabet = rng.choice(_ALPHABETS)
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, most)))


def _hostile_id(rng: random.Random) -> str:
    """A user id near "victim": a listed confusable or extreme, "victim" with junk inserted,
    its letters in odd cases or forms, or junk alone (rarely 1 MB of it)."""
    roll = rng.random()
    if roll < 0.2:
        return str(rng.choice([*CONFUSABLES, *EXTREMES]))
    if roll < 0.5:
        at = rng.randint(0, 6)
        return "victim"[:at] + _junk(rng, 3) + "victim"[at:]
    if roll < 0.7:
        return "".join(
            rng.choice([c, c.upper(), chr(0xFF41 + ord(c) - ord("a"))]) for c in "victim"
        ) + rng.choice(["", " ", "\t", "\u3000", "\u200b"])
    if roll < 0.999:
        return _junk(rng, 40)
    return "v" * (1 << 20)


def _hostile_password(rng: random.Random) -> str:
    """The victim's password (so that only the id decides), a near miss, or junk."""
    roll = rng.random()
    if roll < 0.4:
        return PASSWORD
    if roll < 0.7:
        at = rng.randint(0, len(PASSWORD))
        return PASSWORD[:at] + _junk(rng, 2) + PASSWORD[at + 1 :]
    return _junk(rng, 64)


async def test_generated_user_ids_and_passwords(auth: AuthFramework, form: str) -> None:
    """Generated ids near "victim" with the victim's password, near misses and junk (a
    fixed-seed fuzzer; 10,000 per backend in the long form), on every backend: typed errors
    only, and a login succeeds only with the exact password for an id that normalises to the
    victim's; a refused sign-up stores nothing."""
    await auth.register_user("victim", PASSWORD)
    rng = random.Random(1107)
    logins = 0
    for i in range(examples(form)):
        user, password = _hostile_id(rng), _hostile_password(rng)
        CASES["user-id/password", auth.storage.name] += 1
        try:
            issued = await auth.authenticate(user, password)
        except AuthmwError:
            pass
        else:
            assert password == PASSWORD and issued.user_id == "victim", (user, password)
            assert normalize_user_id(user) == "victim", user
            logins += 1
        if i % 50 == 0:
            # A sign-up with the generated id: refused with nothing stored, or one new user.
            before = (await auth.storage.get_statistics()).total_users
            try:
                await auth.register_user(user, PASSWORD + "!")
            except AuthmwError:
                assert (await auth.storage.get_statistics()).total_users == before, user
            else:
                assert (await auth.storage.get_statistics()).total_users == before + 1, user
        if i % 4 == 0:
            await auth.unlock_user("victim")  # keep the lockout from answering every case
    assert logins, "no generated id logged in: the generator lost the victim's forms"


def hostile_urls() -> st.SearchStrategy[str]:
    schemes = st.sampled_from(
        [
            "redis",
            "rediss",
            "redis+sentinel",
            "redis+cluster",
            "postgresql",
            "postgres",
            "memory",
            "",
            "http",
            "file",
        ]
    )
    rest = st.text(max_size=60)
    return st.one_of(
        st.builds(lambda s, r: f"{s}://{r}", schemes, rest),
        st.builds(
            lambda s, r, q: f"{s}://u:p@127.0.0.1:{r}/0?{q}",
            schemes,
            st.one_of(st.integers(-5, 70000).map(str), rest),
            st.text(max_size=40),
        ),
        st.text(max_size=80),
        st.sampled_from(["redis://[::1", "postgresql://%zz@h/db", "redis://h:99999999999", "\x00"]),
    )


def test_storage_urls(form: str) -> None:
    """storage_from_url refuses a hostile URL with ConfigurationError (or builds an unopened
    storage), never another exception."""

    @fuzz_settings(examples(form))
    @given(url=hostile_urls())
    # Found by the long run: urllib's ValueError and a NUL that reached the OS.
    @example(url="memory://[")
    @example(url="postgresql://\x00")
    @example(url="postgresql://h,,h2/db")
    def case(url: str) -> None:
        CASES["storage-url", "api"] += 1
        with contextlib.suppress(AuthmwError):
            storage_from_url(url)

    case()


def cli_examples(form: str) -> int:
    """Cases of a CLI surface: all of them in the long form, a quarter in the bounded one
    (each case runs a whole command)."""
    return examples(form) if form == "long" else max(10, examples(form) // 4)


def run_cli(*args: str) -> tuple[int, str]:
    """``authmw ARGS`` in-process: the exit code and stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's usage errors
            code = int(exc.code or 0)
    return code, err.getvalue()


def check_cli(code: int, err: str) -> None:
    assert "Traceback" not in err and "unexpected" not in err, err
    if code != 0:
        assert code in (1, 2, 3), (code, err)
        if code != 2:
            assert len(err.strip().splitlines()) == 1, err


def test_cli_storage_urls(form: str) -> None:
    """``authmw stats URL`` with hostile URLs: a one-line error, never a traceback."""

    @fuzz_settings(cli_examples(form))
    @given(url=hostile_urls().filter(lambda u: "127.0.0.1" not in u and not u.startswith("-")))
    # Found by the long run: "unexpected ValueError: embedded null character", and asyncpg's
    # IndexError on an empty entry in a host list.
    @example(url="postgresql://\x00")
    @example(url="memory://[")
    @example(url="postgresql://,")
    def case(url: str) -> None:
        CASES["storage-url", "cli"] += 1
        check_cli(*run_cli("stats", url))

    case()


@pytest.fixture(scope="module")
def backup_lines(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """The lines of a real portable backup of a small storage."""
    path = tmp_path_factory.mktemp("backup") / "good.jsonl"

    async def make() -> None:
        auth = AuthFramework(InMemoryStorage(), make_config())
        await auth.register_user("victim", PASSWORD, roles=["admin"])
        await auth.authenticate("victim", PASSWORD)
        await auth.create_session("victim", {"cart": [1]})
        await write_backup(auth.storage, path)
        await auth.close()

    asyncio.run(make())
    return path.read_bytes().splitlines(keepends=True)


def resealed(lines: list[bytes]) -> bytes:
    """``lines`` (header, records) with an end marker whose counts and checksum match, as an
    attacker able to edit the file would write it."""
    digest = hashlib.sha256()
    counts = {"users": 0, "tokens": 0, "sessions": 0, "kv": 0, "audit": 0}
    names = {
        "user": "users",
        "token": "tokens",
        "session": "sessions",
        "kv": "kv",
        "audit": "audit",
    }
    for line in lines:
        digest.update(line)
        with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError, RecursionError):
            counts[names[json.loads(line)["kind"]]] += 1
    end = {"kind": "end", "counts": counts, "sha256": digest.hexdigest()}
    return b"".join(lines) + json.dumps(end).encode() + b"\n"


def test_tampered_backups(form: str, backup_lines: list[bytes], tmp_path: Path) -> None:
    """``authmw restore memory:// FILE`` with truncated, corrupted and hostile (resealed)
    files: a one-line error naming the problem, or a restore; never a traceback."""
    whole = b"".join(backup_lines)
    body = backup_lines[:-1]

    def hostile_record(kind: str) -> st.SearchStrategy[bytes]:
        record = st.dictionaries(
            st.sampled_from(
                [
                    "user_id",
                    "password_hash",
                    "token_id",
                    "session_id",
                    "data",
                    "expires_at",
                    "key",
                    "value",
                    "roles",
                ]
            ),
            json_field(),
            max_size=6,
        )
        return record.map(lambda r: json.dumps({"kind": kind, "record": r}).encode() + b"\n")

    files = st.one_of(
        st.integers(0, len(whole) - 1).map(lambda n: whole[:n]),
        st.tuples(st.integers(0, len(whole) - 1), st.integers(0, 255)).map(
            lambda p: whole[: p[0]] + bytes([p[1]]) + whole[p[0] + 1 :]
        ),
        st.builds(
            lambda i, extra: resealed(body[: i + 1] + [extra] + body[i + 1 :]),
            st.integers(0, len(body) - 1),
            st.one_of(
                st.sampled_from(["user", "token", "session", "kv", "audit", "end", "?"]).flatmap(
                    hostile_record
                ),
                st.binary(max_size=80).map(lambda b: b.replace(b"\n", b"") + b"\n"),
                st.just(b"[" * 50_000 + b"]" * 50_000 + b"\n"),
            ),
        ),
    )
    path = tmp_path / "tampered.jsonl"

    @fuzz_settings(cli_examples(form))
    @given(content=files)
    def case(content: bytes) -> None:
        CASES["backup", "cli"] += 1
        path.write_bytes(content)
        check_cli(*run_cli("restore", "memory://", str(path), "--no-progress"))

    case()
