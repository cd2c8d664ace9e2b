"""The form-field reader behind CSRF tokens in HTML forms: exact on real bodies, never raising
on hostile ones."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from authmw.middleware._edge import form_field, form_kind, form_like

MULTIPART = (
    b"--XyZ\r\n"
    b'Content-Disposition: form-data; name="item"\r\n\r\n'
    b"tea\r\n"
    b"--XyZ\r\n"
    b'Content-Disposition: form-data; name="upload"; filename="csrf_token"\r\n'
    b"Content-Type: text/plain\r\n\r\n"
    b'name="csrf_token"\r\n--Xy\r\n'
    b"--XyZ\r\n"
    b'content-disposition: form-data; name="csrf_token"\r\n\r\n'
    b"abc123\r\n"
    b"--XyZ--\r\n"
)


def test_reads_the_field_of_real_bodies() -> None:
    """The field is found in URL-encoded and multipart bodies (quoted boundary, any header
    case), and not in a file part whose name or content merely mentions it."""
    urlencoded = "application/x-www-form-urlencoded; charset=UTF-8"
    assert form_field(urlencoded, b"item=tea&csrf_token=ab%63", "csrf_token") == "abc"
    assert form_field(urlencoded, b"item=tea", "csrf_token") is None
    assert form_field('multipart/form-data; boundary="XyZ"', MULTIPART, "csrf_token") == "abc123"
    assert form_field("multipart/form-data; boundary=XyZ", MULTIPART, "item") == "tea"
    assert form_field("multipart/form-data", MULTIPART, "csrf_token") is None  # no boundary
    assert form_field("application/json", b'{"csrf_token": "x"}', "csrf_token") is None


def test_content_types() -> None:
    """Forms are the two form types; a foreign page can also send text/plain or no body."""
    assert form_kind("Multipart/Form-Data; boundary=x") == "multipart/form-data"
    assert form_kind("text/plain") is None
    assert form_like(None) and form_like("text/plain;charset=utf-8") and form_like("")
    assert not form_like("application/json")


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(
        [
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=a",
            "multipart/form-data; boundary=",
            'multipart/form-data; boundary="',
            "multipart/form-data; boundary=\u00e9\u0000",
        ]
    )
    | st.text(max_size=60),
    st.binary(max_size=400),
)
def test_never_raises(content_type: str, body: bytes) -> None:
    """Any content type and body gives a string or None, never an exception (no 500)."""
    found = form_field(content_type, body, "csrf_token")
    assert found is None or isinstance(found, str)
