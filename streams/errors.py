"""One base exception for the streams package, so callers can catch all of ours at once."""


class StreamsError(Exception):
    """Base class for every error raised by the streams package."""


class AssignmentError(StreamsError):
    """Partitions cannot be shared among the ranks as asked."""


class CodecError(StreamsError):
    """A codec was configured wrongly (bad schema), or one record cannot be encoded."""


class BrokerError(StreamsError):
    """The embedded broker could not be started or stopped."""
