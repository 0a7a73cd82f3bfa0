"""Every error the host tools raise: one family under PumpError (as pyserial's under
SerialException). Catch PumpError for all of them, a subclass for one kind; each message says
what was expected. pumpctl's exit codes (host/cli.py): PumpRefused and RxError 1; UsageError,
KeyFileError and KeyMissing 2; every other PumpError 3. A refusal's code is explained in words,
with what to do next, by host.refusals (docs/codes.md)."""

from __future__ import annotations


class PumpError(Exception):
    """Base of every error the host package raises. `here` may say what a refusal's code
    means in this case (pumpctl prints it between the code's meaning and what to do)."""

    here = ""


class UsageError(PumpError):
    """Bad arguments or a bad input file (a program file, a label); `usage` is the command's
    usage line when the arguments did not parse."""

    usage = ""


class KeyFileError(PumpError):
    """A key file that cannot be read or is not a key ring ({"c": hex, "s": hex})."""


class KeyMissing(PumpError):
    """A privileged command, and no key for its role in the key ring."""


class PumpConnectionError(PumpError):
    """The port could not be opened or failed while in use."""


class PumpTimeout(PumpError):
    """No reply to a frame after every retry, or not the awaited state in time."""


class PumpProtocolError(PumpError):
    """The pump said something that is not a valid frame of the protocol."""


class FrameTooLarge(PumpError):
    """A request that would not fit in the pump's largest frame (pump.protocol.MAX_FRAME)."""


class PumpRefused(PumpError):
    """The pump answered ERR: `code` says why (docs/codes.md, host.refusals); `role` is the
    role the command was sent as (patient, clinician, service)."""

    def __init__(self, command: str, code: str, why: str = "", role: str = "patient") -> None:
        self.command = command
        self.code = code
        self.why = why
        self.role = role
        super().__init__(f"{command} refused: {code}" + (f" ({why})" if why else ""))


class NotConfirmed(PumpRefused):
    """The operator did not confirm the pump's echo: nothing was programmed (pumpctl exits 1,
    as for a refusal)."""

    def __init__(self, message: str) -> None:
        super().__init__("CONFIRM", "NOT_CONFIRMED")
        self.message = message

    def __str__(self) -> str:
        return self.message


class NotAuthorised(PumpRefused):
    """NOT_AUTHORISED or REPLAYED: the role or the authentication was not accepted."""


class FlashError(PumpError):
    """Listing, copying or verifying failed (the message names the file or the command)."""


class RxError(PumpError):
    """A prescription the pharmacy calculator will not prepare; `code` is the pump's
    rejection code when there is one."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code
