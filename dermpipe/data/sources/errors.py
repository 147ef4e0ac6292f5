"""The error every source raises, below them all (spec, archive, the remote sources): none imports another for it."""


class IngestError(ValueError):
    """The source cannot be read as an ISIC 2019 data set; the message says which path and what was expected."""
