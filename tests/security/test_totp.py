"""The optional TOTP second factor for console staff, on the real server with a real code: an admin
enrols a user (the secret is shown once), who then needs the current code from an authenticator
(pyotp here) to sign in; a wrong or missing code is a failed sign-in like a wrong password."""

from __future__ import annotations

import re
import uuid

import pyotp
import pytest

from tests.security.conftest import PASSWORDS
from tests.security.helpers import csrf, sign_in

pytestmark = pytest.mark.models


async def test_an_enrolled_user_needs_the_current_code(target) -> None:
    status, admin = await sign_in(target.base, "ada", PASSWORDS["admin"], address="127.0.30.1")
    assert status == 303
    name, password = "t" + uuid.uuid4().hex[:8], "tara-password-123"
    try:
        r = await admin.post("/console/users", data={"csrf_token": await csrf(admin), "username": name,
                                                     "password": password, "role": "nurse"})
        assert r.status_code == 303
        page = (await admin.get("/console/users")).text
        user_id = re.search(r'action="/console/users/(\d+)/totp".*?</form>', page.split(name, 1)[1], re.S).group(1)
        r = await admin.post(f"/console/users/{user_id}/totp", data={"csrf_token": await csrf(admin),
                                                                   "action": "enrol"})
        secret = re.search(r'class="totp-secret">([A-Z2-7]+)<', r.text).group(1)
        assert "not shown again" in r.text
        assert secret not in (await admin.get("/console/users")).text, "the secret is shown once only"

        for code in ("", "000000" if pyotp.TOTP(secret).now() != "000000" else "111111", "abc"):
            status, c = await sign_in(target.base, name, password, address="127.0.30.2", otp=code)
            await c.aclose()
            assert status == 401, f"code {code!r} let the user in"
        status, c = await sign_in(target.base, name, password, address="127.0.30.3",
                                  otp=pyotp.TOTP(secret).now())
        await c.aclose()
        assert status == 303

        r = await admin.post(f"/console/users/{user_id}/totp", data={"csrf_token": await csrf(admin),
                                                                   "action": "remove"})
        assert r.status_code == 303
        status, c = await sign_in(target.base, name, password, address="127.0.30.4")
        await c.aclose()
        assert status == 303, "without enrolment the password is enough again"
    finally:
        await admin.aclose()
