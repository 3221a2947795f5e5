"""One base exception for the trainer package."""


class HvdOnlineError(Exception):
    """Base class for errors raised by hvd_online; messages say what to do."""


class ConfigError(HvdOnlineError):
    """The TOML config or a CLI override is wrong."""


class TemplateError(HvdOnlineError):
    """The model template cannot be loaded or does not follow the contract."""


class ControlError(HvdOnlineError):
    """A control request names no known flag."""
