"""One base exception for the trainer package, and the exit code of a config error."""

#: `hvd-online` exits with this when the config (or the template it names) is wrong: a
#: permanent failure (sysexits' EX_CONFIG), which the supervisor never relaunches
CONFIG_ERROR_EXIT = 78


class HvdOnlineError(Exception):
    """Base class for errors raised by hvd_online; messages say what to do."""


class ConfigError(HvdOnlineError):
    """The TOML config or a CLI override is wrong."""


class TemplateError(HvdOnlineError):
    """The model template cannot be loaded or does not follow the contract."""


class ControlError(HvdOnlineError):
    """A control request names no known flag."""
