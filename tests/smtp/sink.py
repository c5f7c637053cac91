"""A real SMTP server (aiosmtpd) for the mail tests.

Usage: python sink.py PORT OUT_DIR USER PASSWORD

Listens on 127.0.0.1:PORT, requires AUTH (PLAIN or LOGIN, allowed without TLS: loopback
only) with USER/PASSWORD, and writes every accepted message to OUT_DIR/<n>.json as
{"mail_from", "rcpt_tos", "login", "data"}. Prints READY once listening; runs until killed.
"""

import json
import pathlib
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def main() -> None:
    port, out, user, password = int(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    out.mkdir(parents=True, exist_ok=True)
    count = {"n": 0}

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            count["n"] += 1
            login = session.auth_data.login.decode() if session.auth_data else None
            record = {
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "login": login,
                "data": envelope.content.decode("utf-8", "replace"),
            }
            tmp = out / f".{count['n']}.json"
            tmp.write_text(json.dumps(record))
            tmp.rename(out / f"{count['n']}.json")
            return "250 Message accepted"

    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=False,
    )
    controller.start()
    print("READY", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
