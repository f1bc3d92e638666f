"""The PBX error tree: what can go wrong between the server and Asterisk.

One base (`PbxError`) with a stable `code` per error, so the web layer maps
them to JSON and logs can be queried by code; `failure_from_response` is
the one place that maps an AMI error response to an exception.
"""

from __future__ import annotations

from cti.pbx.wire import AmiMessage

# Response values Asterisk uses for a refused action (`Error`); `Failure`
# and `Fail` come from older modules and from OriginateResponse.
FAILED_RESPONSES = frozenset({"error", "failure", "fail"})


class PbxError(Exception):
    code = "pbx_error"


class AmiTimeout(PbxError):
    """Asterisk did not answer an action in time."""

    code = "ami_timeout"

    def __init__(self, action: str, timeout: float) -> None:
        self.action = action
        self.timeout = timeout
        super().__init__(f"AMI action {action} got no answer within {timeout:g} s")


class AmiDisconnected(PbxError):
    """The AMI connection is down (or went down while the action waited).

    The action was not re-sent and will not be: the caller decides.
    """

    code = "ami_disconnected"

    def __init__(self, action: str | None, reason: str) -> None:
        self.action = action
        self.reason = reason
        what = f"AMI action {action}" if action else "AMI link"
        super().__init__(f"{what}: not connected to Asterisk ({reason})")


class AmiLoginFailed(PbxError):
    """Asterisk refused the AMI login (bad user or secret, ACL)."""

    code = "ami_login_failed"

    def __init__(self, username: str, message: str) -> None:
        self.username = username
        self.message = message
        super().__init__(f"AMI login refused for user {username!r}: {message}")


class AmiActionFailed(PbxError):
    """Asterisk answered an action with an error response."""

    code = "ami_action_failed"

    def __init__(self, action: str, message: str) -> None:
        self.action = action
        self.message = message
        super().__init__(f"AMI action {action} failed: {message}")


class InvalidCommand(PbxError, ValueError):
    """A command value that must not reach Asterisk (injection, bad number,
    bad name); raised before any action is built, so nothing is sent."""

    code = "invalid_command"

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


def failure_from_response(action: str, response: AmiMessage) -> AmiActionFailed | None:
    """The error an AMI response stands for, or None when it is a success."""
    status = (response.response or "").lower()
    if status not in FAILED_RESPONSES:
        return None
    return AmiActionFailed(action, response.get("Message") or f"Response: {response.response}")
