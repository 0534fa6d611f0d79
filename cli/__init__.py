"""The ``vecstore`` command line, installed as ``vecstore.cli``: thin click glue over the library."""
