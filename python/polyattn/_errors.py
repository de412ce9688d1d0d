"""Exceptions: one polyattn.Error subclass per library status."""


class Error(RuntimeError):
    """A failed polyattn call.  `status` is the library's status name, `code` its value;
    the message is the library's own (polyattn_context_last_error), which names the field."""

    status = "ERROR"
    code = -1

    def __init__(self, message, function=None):
        self.function = function
        super().__init__(f"{function}: {message}" if function else message)


class InvalidArgumentError(Error, ValueError):
    status, code = "INVALID_ARGUMENT", 1


class UnsupportedError(Error):
    status, code = "UNSUPPORTED", 2


class OutOfMemoryError(Error, MemoryError):
    status, code = "OUT_OF_MEMORY", 3


class OverBudgetError(Error):
    status, code = "OVER_BUDGET", 4


class NotFoundError(Error):
    status, code = "NOT_FOUND", 5


class DeviceError(Error):
    status, code = "DEVICE_ERROR", 6


class KernelBuildFailedError(Error):
    status, code = "KERNEL_BUILD_FAILED", 7


class InternalError(Error):
    status, code = "INTERNAL_ERROR", 8


ERROR_BY_STATUS = {
    cls.code: cls
    for cls in (InvalidArgumentError, UnsupportedError, OutOfMemoryError, OverBudgetError,
                NotFoundError, DeviceError, KernelBuildFailedError, InternalError)
}


def error_for(code, message, function=None):
    """The exception for a non-zero status `code` (an unknown code gives plain Error)."""
    cls = ERROR_BY_STATUS.get(code)
    if cls is None:
        err = Error(f"status {code}: {message}", function)
        err.code = code
        return err
    return cls(message, function)
