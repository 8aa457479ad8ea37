"""The sub-commands of the ``reslab`` command line, one module per command group."""
